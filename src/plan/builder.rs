//! What every family's producer builds a plan with: values with their shapes, ops in order,
//! taps and stages.

use super::{
    Activation, Conv2d, Linear, Op, OpKind, Plan, PlanStage, Pool2d, Shape, SqueezeExcite, ValueId,
};
use crate::config::Architecture;
use crate::error::{Error, Result};

/// A convolution's shape and epilogue, before it is named; `(kernel - 1) / 2` padding, as
/// every family here pads.
#[derive(Clone, Copy, Debug)]
pub struct ConvDef {
    /// Output channels.
    pub out: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Groups.
    pub groups: usize,
    /// Activation of the epilogue.
    pub act: Activation,
    /// Residual added before it.
    pub residual: Option<ValueId>,
}

impl ConvDef {
    /// A `kernel` x `kernel` convolution to `out` channels: stride 1, one group, no activation.
    pub fn new(out: usize, kernel: usize) -> ConvDef {
        ConvDef {
            out,
            kernel,
            stride: 1,
            groups: 1,
            act: Activation::Identity,
            residual: None,
        }
    }

    /// With another stride.
    pub fn stride(self, stride: usize) -> ConvDef {
        ConvDef { stride, ..self }
    }

    /// With `groups` groups.
    pub fn groups(self, groups: usize) -> ConvDef {
        ConvDef { groups, ..self }
    }

    /// With an activation.
    pub fn act(self, act: Activation) -> ConvDef {
        ConvDef { act, ..self }
    }

    /// Adding `residual` before the activation.
    pub fn residual(self, residual: ValueId) -> ConvDef {
        ConvDef {
            residual: Some(residual),
            ..self
        }
    }
}

/// A plan under construction.
pub struct Builder {
    values: Vec<Shape>,
    ops: Vec<Op>,
    taps: Vec<(String, ValueId)>,
    stages: Vec<PlanStage>,
}

impl Builder {
    /// A builder whose value 0 is a `[3, height, width]` image.
    pub fn new(height: usize, width: usize) -> Builder {
        Builder {
            values: vec![Shape {
                channels: 3,
                height,
                width,
            }],
            ops: Vec::new(),
            taps: Vec::new(),
            stages: Vec::new(),
        }
    }

    /// The shape of value `v`.
    pub fn shape(&self, v: ValueId) -> Shape {
        self.values[v]
    }

    /// Appends an op writing a new value of `shape`; returns that value.
    pub fn push(&mut self, name: String, kind: OpKind, input: ValueId, shape: Shape) -> ValueId {
        self.values.push(shape);
        let output = self.values.len() - 1;
        self.ops.push(Op {
            name,
            kind,
            input,
            output,
        });
        output
    }

    /// A convolution op `name` with weight tensor `weight` and BatchNorm `norm` (a prefix).
    pub fn conv(
        &mut self,
        name: String,
        input: ValueId,
        d: ConvDef,
        weight: String,
        norm: Option<String>,
    ) -> Result<ValueId> {
        let s = self.values[input];
        if d.groups == 0 || !s.channels.is_multiple_of(d.groups) || !d.out.is_multiple_of(d.groups)
        {
            return Err(Error::InvalidPlan(format!(
                "conv `{name}`: {} -> {} channels cannot be split into {} groups",
                s.channels, d.out, d.groups
            )));
        }
        let padding = (d.kernel - 1) / 2;
        if s.height + 2 * padding < d.kernel || s.width + 2 * padding < d.kernel {
            return Err(Error::Input(format!(
                "the input is too small for `{name}`: its {}x{} plane is smaller than its {}x{} kernel",
                s.height, s.width, d.kernel, d.kernel
            )));
        }
        let conv = Conv2d {
            in_channels: s.channels,
            out_channels: d.out,
            kernel: [d.kernel, d.kernel],
            stride: [d.stride; 2],
            padding: [padding; 2],
            dilation: [1, 1],
            groups: d.groups,
            activation: d.act,
            residual: d.residual,
            weight,
            bias: None,
            norm,
        };
        let (height, width) = conv.output_size(s.height, s.width);
        if let Some(r) = d.residual {
            let rs = self.values[r];
            if (rs.height, rs.width) != (height, width) || rs.channels > d.out {
                return Err(Error::InvalidPlan(format!(
                    "conv `{name}`: its residual {rs:?} does not fit its output ({}, {height}x{width})",
                    d.out
                )));
            }
        }
        let shape = Shape {
            channels: d.out,
            height,
            width,
        };
        Ok(self.push(name, OpKind::Conv2d(conv), input, shape))
    }

    /// Squeeze-and-excitation op `name` of `squeeze` channels on `input`.
    pub fn squeeze_excite(
        &mut self,
        name: String,
        input: ValueId,
        squeeze: usize,
        norm: bool,
        activation: Activation,
    ) -> ValueId {
        let shape = self.values[input];
        let kind = OpKind::SqueezeExcite(SqueezeExcite {
            channels: shape.channels,
            squeeze,
            fc1: format!("{name}.fc1"),
            fc2: format!("{name}.fc2"),
            norm: norm.then(|| format!("{name}.bn")),
            activation,
            pool_max: false,
        });
        self.push(name, kind, input, shape)
    }

    /// Pooling op `name`.
    pub fn pool(&mut self, name: String, input: ValueId, pool: Pool2d) -> Result<ValueId> {
        let s = self.values[input];
        let Some((height, width)) = pool.checked_output_size(s.height, s.width) else {
            return Err(Error::Input(format!(
                "the input is too small for `{name}`: a {}x{} plane under its {:?} window \
                 (padding {:?}, dilation {:?})",
                s.height, s.width, pool.kernel, pool.padding, pool.dilation
            )));
        };
        let shape = Shape {
            channels: s.channels,
            height,
            width,
        };
        Ok(self.push(name, OpKind::Pool2d(pool), input, shape))
    }

    /// Channels `begin .. begin + count` of `input`, as op `name`.
    pub fn slice(&mut self, name: String, input: ValueId, begin: usize, count: usize) -> ValueId {
        let s = self.values[input];
        let shape = Shape {
            channels: count,
            ..s
        };
        self.push(name, OpKind::ChannelSlice(begin), input, shape)
    }

    /// `input` and `others` concatenated along the channels (all of one plane size), as op
    /// `name`.
    pub fn concat(&mut self, name: String, input: ValueId, others: Vec<ValueId>) -> ValueId {
        let s = self.values[input];
        let channels = s.channels
            + others
                .iter()
                .map(|&v| self.values[v].channels)
                .sum::<usize>();
        let shape = Shape { channels, ..s };
        self.push(name, OpKind::Concat(others), input, shape)
    }

    /// ShuffleNet's channel shuffle of `input` in `groups` groups, as op `name`.
    pub fn shuffle(&mut self, name: String, input: ValueId, groups: usize) -> ValueId {
        let s = self.values[input];
        self.push(name, OpKind::ChannelShuffle(groups), input, s)
    }

    /// The head: global average pooling, then the linear layer `{fc}.weight`, `{fc}.bias`.
    pub fn head(&mut self, pool: &str, fc: &str, input: ValueId, classes: usize) -> ValueId {
        let c = self.values[input].channels;
        let one = |channels| Shape {
            channels,
            height: 1,
            width: 1,
        };
        let pooled = self.push(pool.into(), OpKind::GlobalAvgPool, input, one(c));
        let linear = Linear {
            in_features: c,
            out_features: classes,
            weight: format!("{fc}.weight"),
            bias: Some(format!("{fc}.bias")),
        };
        self.push(fc.into(), OpKind::Linear(linear), pooled, one(classes))
    }

    /// Names value `v` (a tap).
    pub fn tap(&mut self, name: impl Into<String>, v: ValueId) {
        self.taps.push((name.into(), v));
    }

    /// Ends a stage of `blocks` blocks at value `output`.
    pub fn stage(&mut self, name: impl Into<String>, blocks: usize, output: ValueId) {
        self.stages.push(PlanStage {
            name: name.into(),
            blocks,
            output,
        });
    }

    /// The plan, its output the last op's.
    pub fn finish(self, arch: Architecture) -> Result<Plan> {
        let output = self
            .ops
            .last()
            .map(|o| o.output)
            .ok_or_else(|| Error::InvalidPlan("a plan with no ops".into()))?;
        Ok(Plan {
            arch,
            stages: self.stages,
            values: self.values,
            ops: self.ops,
            taps: self.taps,
            output,
        })
    }
}
