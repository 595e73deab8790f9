//! The layer plan: a model expanded, for one input size, into a list of ops over values
//! with their shapes, and the counts that describe its cost.
//!
//! Ops are general (kernel size, stride, padding, groups, activation, fused residual) so
//! that other families can be expressed with the same kinds; RegNet is one producer of plans.

use serde::Serialize;

use crate::config::{RegNetParams, Stage};
use crate::error::{Error, Result};

/// Index of a value (an activation tensor) in [`Plan::values`]; value 0 is the input image.
pub type ValueId = usize;

/// The shape of one image's activation: channels, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
}

impl Shape {
    /// Elements of one image's tensor.
    pub fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Elementwise activation applied at the end of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Activation {
    /// No activation.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Activation {
    /// Applies the activation to one value.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }
}

/// A 2-D convolution, BatchNorm folded in at load, with a fused epilogue:
/// `out = act(conv(x) + bias + residual)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conv2d {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (both directions).
    pub stride: usize,
    /// Zero padding (both directions, both sides).
    pub padding: usize,
    /// Groups; `in_channels` and `out_channels` are multiples of it.
    pub groups: usize,
    /// Activation after the bias and the residual.
    pub activation: Activation,
    /// A value of the output's shape added before the activation.
    pub residual: Option<ValueId>,
    /// Name of the weight tensor `[out, in / groups, kh, kw]`.
    pub weight: String,
    /// Name of the conv's own bias tensor, if it has one.
    pub bias: Option<String>,
    /// Prefix of the BatchNorm that follows (`{prefix}.weight`, `.bias`, `.running_mean`, `.running_var`).
    pub norm: Option<String>,
}

impl Conv2d {
    /// Output height and width for an input of `h` x `w`.
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let o = |x: usize, k: usize| (x + 2 * self.padding - k) / self.stride + 1;
        (o(h, self.kernel[0]), o(w, self.kernel[1]))
    }

    /// Shape of the weight tensor.
    pub fn weight_shape(&self) -> Vec<usize> {
        vec![
            self.out_channels,
            self.in_channels / self.groups,
            self.kernel[0],
            self.kernel[1],
        ]
    }
}

/// Squeeze-and-excitation: `x * sigmoid(fc2(relu(fc1(mean_hw(x)))))`, fc1/fc2 being 1x1 convs with bias.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SqueezeExcite {
    /// Channels of `x`.
    pub channels: usize,
    /// Channels of the squeeze (fc1's output).
    pub squeeze: usize,
    /// Module prefix of fc1 (`{prefix}.weight` `[squeeze, channels, 1, 1]`, `{prefix}.bias`).
    pub fc1: String,
    /// Module prefix of fc2 (`{prefix}.weight` `[channels, squeeze, 1, 1]`, `{prefix}.bias`).
    pub fc2: String,
}

/// A fully connected layer on a `[C, 1, 1]` value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Linear {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Name of the weight tensor `[out, in]`.
    pub weight: String,
    /// Name of the bias tensor `[out]`.
    pub bias: Option<String>,
}

/// What an op computes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum OpKind {
    /// Convolution (+ folded BN, + residual, + activation).
    Conv2d(Conv2d),
    /// Squeeze-and-excitation (scales its input's channels).
    SqueezeExcite(SqueezeExcite),
    /// Mean over height and width, to `[C, 1, 1]`.
    GlobalAvgPool,
    /// Fully connected layer.
    Linear(Linear),
}

/// One op: reads `input` (and a conv's `residual`), writes `output`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Op {
    /// torchvision's module path (`trunk_output.block1.block1-0.f.a`).
    pub name: String,
    /// What it computes.
    pub kind: OpKind,
    /// The value it reads.
    pub input: ValueId,
    /// The value it writes.
    pub output: ValueId,
}

/// A model expanded for one input size (per image; the batch is the backend's business).
///
/// ```
/// use regnet_wgpu::{zoo, Plan};
/// let plan = Plan::new(&zoo::get("regnet_y_400mf").unwrap(), 224, 224).unwrap();
/// assert_eq!(plan.macs(), 401_842_848);
/// assert_eq!(plan.num_params(), 4_344_144);
/// assert_eq!(plan.activations(), 3_892_496);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// The parameters the plan was made from.
    pub params: RegNetParams,
    /// The stages.
    pub stages: Vec<Stage>,
    /// Shapes of all values; value 0 is the input `[3, H, W]`.
    pub values: Vec<Shape>,
    /// The ops in execution order.
    pub ops: Vec<Op>,
    /// Named intermediate values: `stem`, `block1`, ... (torchvision's module names).
    pub taps: Vec<(String, ValueId)>,
    /// The logits value `[classes, 1, 1]`.
    pub output: ValueId,
}

fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Most elements one image's activation may hold (16 GiB in f32): beyond it a plan is refused.
pub const MAX_VALUE_ELEMENTS: u64 = 1 << 32;

/// Largest input side accepted (well beyond any real use; it bounds the arithmetic).
pub const MAX_INPUT_SIDE: usize = 1 << 15;

struct Builder {
    values: Vec<Shape>,
    ops: Vec<Op>,
}

impl Builder {
    fn push(&mut self, name: String, kind: OpKind, input: ValueId, shape: Shape) -> ValueId {
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

    /// A torchvision `Conv2dNormActivation` at `module` (conv `{module}.0`, BN `{module}.1`).
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        module: String,
        input: ValueId,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        activation: Activation,
        residual: Option<ValueId>,
    ) -> ValueId {
        let s = self.values[input];
        let conv = Conv2d {
            in_channels: s.channels,
            out_channels,
            kernel: [kernel, kernel],
            stride,
            padding: (kernel - 1) / 2,
            groups,
            activation,
            residual,
            weight: format!("{module}.0.weight"),
            bias: None,
            norm: Some(format!("{module}.1")),
        };
        let (height, width) = conv.output_size(s.height, s.width);
        let shape = Shape {
            channels: out_channels,
            height,
            width,
        };
        self.push(module, OpKind::Conv2d(conv), input, shape)
    }
}

impl Plan {
    /// Expands `params` for `height` x `width` input images.
    pub fn new(params: &RegNetParams, height: usize, width: usize) -> Result<Plan> {
        if height == 0 || width == 0 || height > MAX_INPUT_SIDE || width > MAX_INPUT_SIDE {
            return Err(Error::Input(format!(
                "input size {height}x{width} is out of range (1..={MAX_INPUT_SIDE} per side)"
            )));
        }
        let stages = params.stages()?;
        let mut b = Builder {
            values: vec![Shape {
                channels: 3,
                height,
                width,
            }],
            ops: Vec::new(),
        };
        let mut taps = Vec::new();
        let relu = Activation::Relu;
        let mut x = b.conv_bn("stem".into(), 0, params.stem_width, 3, 2, 1, relu, None);
        taps.push(("stem".to_string(), x));
        for (si, stage) in stages.iter().enumerate() {
            let sname = format!("block{}", si + 1);
            for (bi, blk) in stage.blocks.iter().enumerate() {
                let m = format!("trunk_output.{sname}.{sname}-{bi}");
                let block_in = x;
                let wb = stage.width_bottleneck;
                let a = b.conv_bn(format!("{m}.f.a"), x, wb, 1, 1, 1, relu, None);
                let mut y = b.conv_bn(
                    format!("{m}.f.b"),
                    a,
                    wb,
                    3,
                    blk.stride,
                    stage.groups,
                    relu,
                    None,
                );
                if let Some(se) = blk.se_width {
                    let shape = b.values[y];
                    let kind = OpKind::SqueezeExcite(SqueezeExcite {
                        channels: wb,
                        squeeze: se,
                        fc1: format!("{m}.f.se.fc1"),
                        fc2: format!("{m}.f.se.fc2"),
                    });
                    y = b.push(format!("{m}.f.se"), kind, y, shape);
                }
                let shortcut = if blk.projection {
                    b.conv_bn(
                        format!("{m}.proj"),
                        block_in,
                        stage.width_out,
                        1,
                        blk.stride,
                        1,
                        Activation::Identity,
                        None,
                    )
                } else {
                    block_in
                };
                x = b.conv_bn(
                    format!("{m}.f.c"),
                    y,
                    stage.width_out,
                    1,
                    1,
                    1,
                    relu,
                    Some(shortcut),
                );
            }
            taps.push((sname, x));
        }
        let c = b.values[x].channels;
        let pooled = b.push(
            "avgpool".into(),
            OpKind::GlobalAvgPool,
            x,
            Shape {
                channels: c,
                height: 1,
                width: 1,
            },
        );
        let fc = Linear {
            in_features: c,
            out_features: params.num_classes,
            weight: "fc.weight".into(),
            bias: Some("fc.bias".into()),
        };
        let output = b.push(
            "fc".into(),
            OpKind::Linear(fc),
            pooled,
            Shape {
                channels: params.num_classes,
                height: 1,
                width: 1,
            },
        );
        let plan = Plan {
            params: params.clone(),
            stages,
            values: b.values,
            ops: b.ops,
            taps,
            output,
        };
        // Every count must be exact in u64, and no activation absurdly large.
        let total = |f: fn(&Plan, &Op) -> u128| plan.ops.iter().map(|o| f(&plan, o)).sum::<u128>();
        let params_total = total(Plan::op_params_wide);
        let macs_total = total(Plan::op_macs_wide);
        let largest = plan
            .values
            .iter()
            .map(|v| v.channels as u128 * v.height as u128 * v.width as u128)
            .max()
            .unwrap_or(0);
        if params_total > u64::MAX as u128
            || macs_total > u64::MAX as u128
            || largest > MAX_VALUE_ELEMENTS as u128
        {
            return Err(Error::Input(format!(
                "this model is absurdly large at {height}x{width}: {params_total} parameters, \
                 {macs_total} multiply-adds per image, {largest} values in its largest activation"
            )));
        }
        Ok(plan)
    }

    /// Input height and width.
    pub fn input_size(&self) -> (usize, usize) {
        (self.values[0].height, self.values[0].width)
    }

    /// Learnable parameters of one op (conv/linear weights and biases, BN weight and bias).
    pub fn op_params(&self, op: &Op) -> u64 {
        saturate(self.op_params_wide(op))
    }

    /// Multiply-adds of one op for one image (convolutions and linear layers, SE's 1x1 convs included).
    pub fn op_macs(&self, op: &Op) -> u64 {
        saturate(self.op_macs_wide(op))
    }

    /// Activations of one op as pycls counts them: elements of every conv and linear output.
    pub fn op_activations(&self, op: &Op) -> u64 {
        saturate(self.op_activations_wide(op))
    }

    // The counts in u128: no product of a plan's dimensions (each below 2^32) can overflow it.
    // `Plan::new` checks that the model's totals fit in u64, so the u64 counts are exact.

    fn op_params_wide(&self, op: &Op) -> u128 {
        let w = |v: usize| v as u128;
        match &op.kind {
            OpKind::Conv2d(c) => {
                c.weight_shape().iter().map(|&d| w(d)).product::<u128>()
                    + c.bias.as_ref().map_or(0, |_| w(c.out_channels))
                    + c.norm.as_ref().map_or(0, |_| 2 * w(c.out_channels))
            }
            OpKind::SqueezeExcite(se) => {
                2 * w(se.channels) * w(se.squeeze) + w(se.channels) + w(se.squeeze)
            }
            OpKind::GlobalAvgPool => 0,
            OpKind::Linear(l) => {
                w(l.in_features) * w(l.out_features)
                    + l.bias.as_ref().map_or(0, |_| w(l.out_features))
            }
        }
    }

    fn op_macs_wide(&self, op: &Op) -> u128 {
        let w = |v: usize| v as u128;
        let out = self.values[op.output];
        match &op.kind {
            OpKind::Conv2d(c) => {
                c.weight_shape().iter().map(|&d| w(d)).product::<u128>()
                    * w(out.height)
                    * w(out.width)
            }
            OpKind::SqueezeExcite(se) => 2 * w(se.channels) * w(se.squeeze),
            OpKind::GlobalAvgPool => 0,
            OpKind::Linear(l) => w(l.in_features) * w(l.out_features),
        }
    }

    fn op_activations_wide(&self, op: &Op) -> u128 {
        let out = self.values[op.output];
        match &op.kind {
            OpKind::Conv2d(_) | OpKind::Linear(_) => {
                out.channels as u128 * out.height as u128 * out.width as u128
            }
            OpKind::SqueezeExcite(se) => se.squeeze as u128 + se.channels as u128,
            OpKind::GlobalAvgPool => 0,
        }
    }

    /// Learnable parameters of the model.
    pub fn num_params(&self) -> u64 {
        saturate(self.ops.iter().map(|o| self.op_params_wide(o)).sum())
    }

    /// Multiply-adds for one image (what torchvision publishes as GFLOPS).
    pub fn macs(&self) -> u64 {
        saturate(self.ops.iter().map(|o| self.op_macs_wide(o)).sum())
    }

    /// Activations for one image, as pycls counts them.
    pub fn activations(&self) -> u64 {
        saturate(self.ops.iter().map(|o| self.op_activations_wide(o)).sum())
    }

    /// For each value, the index of the last op that reads it (`None`: never read, e.g. the output).
    pub fn last_use(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.values.len()];
        for (i, op) in self.ops.iter().enumerate() {
            last[op.input] = Some(i);
            if let OpKind::Conv2d(Conv2d {
                residual: Some(r), ..
            }) = &op.kind
            {
                last[*r] = Some(i);
            }
        }
        last
    }

    /// The value of a tap (`stem`, `block1`, ...) by name.
    pub fn tap(&self, name: &str) -> Option<ValueId> {
        self.taps.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}
