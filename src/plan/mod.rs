//! The layer plan: a model expanded, for one input size, into a list of ops over values
//! with their shapes, and the counts that describe its cost.
//!
//! A plan is family-agnostic: each family is one small producer (config → ops) in a module of
//! its own (`src/plan/{regnet,resnet,rexnet,mobilenet,shufflenet}.rs`), all of them building with the same
//! [`builder::Builder`]; the backends run op kinds, never families.
//!
//! | op kind | what it is | CPU twin | GPU lowering |
//! |---|---|---|---|
//! | [`OpKind::Conv2d`] | any conv (dense, grouped, depthwise, 7x7 stem), BN folded, fused bias + (partial) residual + activation | `cpu::conv` | `gpu::lower::lower_conv` |
//! | [`OpKind::Pool2d`] | max / average pooling (torch's options) | `cpu::ops::pool2d` | `gpu::lower::lower_pool2d` |
//! | [`OpKind::AdaptiveAvgPool2d`] | average pooling to an output size | `cpu::ops::adaptive_avg_pool` | `gpu::lower::lower_pool2d` |
//! | [`OpKind::ChannelShuffle`] | ShuffleNet's channel shuffle | `cpu::ops::channel_shuffle` | `gpu::lower::lower_channel_shuffle` |
//! | [`OpKind::DeformConv2d`] | torchvision's `deform_conv2d` (v1, v2) | `cpu::deform` | `gpu::lower::lower_deform_conv` |
//! | [`OpKind::ChannelPool`] | mean and max over channels (CBAM) | `cpu::ops::channel_pool` | `gpu::lower::lower_channel_pool` |
//! | [`OpKind::SpatialGate`] | channels times a `[1, H, W]` map (CBAM) | `cpu::ops::spatial_gate` | `gpu::lower::lower_spatial_gate` |
//! | [`OpKind::ChannelSlice`], [`OpKind::Concat`] | channel ranges copied (ShuffleNetV2) | `cpu::ops::copy_channels` | `gpu::lower::lower_channel_copy` |
//! | [`OpKind::SqueezeExcite`] | SE, with an optional norm inside and an activation after the gate | `cpu::ops::squeeze_excite` | `gpu::lower::lower_squeeze_excite` |
//! | [`OpKind::GlobalAvgPool`] | mean over the plane | `cpu::ops::global_avg_pool` | `gpu::lower::lower_pool` |
//! | [`OpKind::Linear`] | the classifier | `cpu::ops::linear` | `gpu::lower::lower_linear` |

pub mod builder;
mod mobilenet;
mod regnet;
mod resnet;
mod rexnet;
mod shufflenet;

use serde::Serialize;

use crate::config::Architecture;
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
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x * sigmoid(x)` (SiLU, "swish").
    Silu,
}

impl Activation {
    /// Applies the activation to one value.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Silu => x / (1.0 + (-x).exp()),
        }
    }
}

/// A 2-D convolution, BatchNorm folded in at load, with a fused epilogue:
/// `out = act(conv(x) + bias + residual)`. The residual may have fewer channels than the output
/// (ReXNet's `x[:, :in_chs] += shortcut`): it is added to the first ones.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conv2d {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride `[height, width]` (torch's `stride`).
    pub stride: [usize; 2],
    /// Zero padding `[height, width]`, on both sides of each axis (torch's `padding`).
    pub padding: [usize; 2],
    /// Spacing between kernel taps `[height, width]` (torch's `dilation`; 1 is dense).
    pub dilation: [usize; 2],
    /// Groups; `in_channels` and `out_channels` are multiples of it.
    pub groups: usize,
    /// Activation after the bias and the residual.
    pub activation: Activation,
    /// A value of the output's plane size and at most its channels, added to the first
    /// channels before the activation.
    pub residual: Option<ValueId>,
    /// Name of the weight tensor `[out, in / groups, kh, kw]`.
    pub weight: String,
    /// Name of the conv's own bias tensor, if it has one.
    pub bias: Option<String>,
    /// Prefix of the BatchNorm that follows (`{prefix}.weight`, `.bias`, `.running_mean`, `.running_var`).
    pub norm: Option<String>,
}

impl Conv2d {
    /// A convolution's extent on one axis: `(kernel - 1) * dilation + 1` input values.
    pub fn extent(&self, axis: usize) -> usize {
        (self.kernel[axis] - 1) * self.dilation[axis] + 1
    }

    /// Output height and width for an input of `h` x `w` (torch's formula); `None` when the
    /// padded input is smaller than the kernel's extent on an axis.
    pub fn checked_output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let o = |x: usize, a: usize| {
            let padded = x + 2 * self.padding[a];
            let e = self.extent(a);
            (padded >= e && self.stride[a] > 0).then(|| (padded - e) / self.stride[a] + 1)
        };
        Some((o(h, 0)?, o(w, 1)?))
    }

    /// Output height and width for an input of `h` x `w`; 0 on an axis the kernel does not fit.
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        self.checked_output_size(h, w).unwrap_or((0, 0))
    }

    /// Whether stride and padding are the same on both axes and the kernel is dense (no
    /// dilation): what the specialised kernels (`cpu::direct`, the 1x1 GEMMs) are written for.
    pub fn is_uniform(&self) -> bool {
        self.stride[0] == self.stride[1]
            && self.padding[0] == self.padding[1]
            && self.dilation == [1, 1]
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

/// Squeeze-and-excitation: `act(x * sigmoid(fc2(relu(norm(fc1(mean_hw(x)))))))`, fc1/fc2 being
/// 1x1 convs with bias, `norm` an optional BatchNorm (timm's `SEModule(norm_layer=...)`), `act`
/// an activation after the gate (ReXNet's ReLU6; identity in RegNet).
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
    /// Prefix of the BatchNorm after fc1, if any (folded into fc1 at load).
    pub norm: Option<String>,
    /// Applied to the gated value; must map 0 to 0 (identity, ReLU, ReLU6, SiLU).
    pub activation: Activation,
    /// CBAM's channel attention: the max over the plane goes through the same MLP as the mean
    /// and the two are summed before the sigmoid (`fc2(relu(fc1(mean))) + fc2(relu(fc1(max)))`).
    pub pool_max: bool,
}

/// What a pooling window computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PoolMode {
    /// The largest value; padding never wins (torch's `max_pool2d`).
    Max,
    /// The mean (torch's `avg_pool2d`): divided by the window's size within the padded input
    /// (`count_include_pad`), else by the values of the input it covers.
    Avg {
        /// Padding counts in the divisor.
        count_include_pad: bool,
    },
}

/// Pooling over windows with torch's `max_pool2d` / `avg_pool2d` semantics, per axis
/// `[height, width]`: stride, padding (at most half the window), dilation (max only) and
/// `ceil_mode` (a last, partial window when it starts inside the input or its left padding).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pool2d {
    /// Max or average.
    pub mode: PoolMode,
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding on each side of each axis.
    pub padding: [usize; 2],
    /// Spacing between window taps (1 is dense; average pooling has none in torch).
    pub dilation: [usize; 2],
    /// Rounds the output size up (torch's `ceil_mode`).
    pub ceil_mode: bool,
}

impl Pool2d {
    /// torch's `MaxPool2d(kernel, stride, padding)`, the same on both axes.
    pub fn max(kernel: usize, stride: usize, padding: usize) -> Pool2d {
        Pool2d {
            mode: PoolMode::Max,
            kernel: [kernel; 2],
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [1, 1],
            ceil_mode: false,
        }
    }

    /// Outputs along one axis of `x` inputs (torch's `pooling_output_shape`); `None` when the
    /// window does not fit or the parameters are out of torch's range.
    fn axis_output(&self, x: usize, a: usize) -> Option<usize> {
        let (k, s, p, d) = (
            self.kernel[a],
            self.stride[a],
            self.padding[a],
            self.dilation[a],
        );
        if k == 0 || s == 0 || d == 0 || p > k / 2 {
            return None;
        }
        let span = x + 2 * p;
        let extent = d * (k - 1) + 1;
        if span < extent {
            return None;
        }
        let steps = span - extent;
        let mut o = if self.ceil_mode {
            steps.div_ceil(s)
        } else {
            steps / s
        } + 1;
        // The last window must start inside the input or its left padding.
        if self.ceil_mode && (o - 1) * s >= x + p {
            o -= 1;
        }
        Some(o)
    }

    /// Output height and width for an input of `h` x `w`; `None` when a window does not fit.
    pub fn checked_output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        Some((self.axis_output(h, 0)?, self.axis_output(w, 1)?))
    }

    /// Output height and width for an input of `h` x `w` (0 where a window does not fit).
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        self.checked_output_size(h, w).unwrap_or((0, 0))
    }
}

/// torchvision's `deform_conv2d`: a convolution whose taps sample the input at learned
/// fractional offsets (bilinear, zero outside the image), optionally scaled by a mask
/// (deformable convolution v2). The geometry, weights and epilogue are `conv`'s (no residual).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeformConv2d {
    /// The convolution (groups, kernel, stride, padding, dilation, weight and bias names).
    pub conv: Conv2d,
    /// Offset groups: input channels `[g * C / og, (g + 1) * C / og)` share offsets.
    pub offset_groups: usize,
    /// `[2 * offset_groups * kh * kw, out_h, out_w]`: (dy, dx) per offset group and tap.
    pub offset: ValueId,
    /// `[offset_groups * kh * kw, out_h, out_w]`, multiplying each sample (v2).
    pub mask: Option<ValueId>,
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
    /// Max or average pooling over windows.
    Pool2d(Pool2d),
    /// Average pooling to a given output size (torch's `adaptive_avg_pool2d`): output `i`
    /// averages inputs `floor(i * H / O) .. ceil((i + 1) * H / O)` on each axis.
    AdaptiveAvgPool2d([usize; 2]),
    /// Mean over height and width, to `[C, 1, 1]`.
    GlobalAvgPool,
    /// ShuffleNet's channel shuffle in `groups` groups (torch's `channel_shuffle`): output
    /// channel `j * groups + i` is input channel `i * C / groups + j`.
    ChannelShuffle(usize),
    /// Deformable convolution.
    DeformConv2d(DeformConv2d),
    /// The mean and the max over the channels: `[2, H, W]` (CBAM's spatial attention input).
    ChannelPool,
    /// Every channel times the `[1, H, W]` value given (CBAM's spatial attention).
    SpatialGate(ValueId),
    /// The input's channels `begin .. begin + C_out` (ShuffleNetV2's channel split).
    ChannelSlice(usize),
    /// The input and these values, concatenated along the channels in order.
    Concat(Vec<ValueId>),
    /// Fully connected layer.
    Linear(Linear),
}

/// One op: reads `input` (and the values its kind names: [`Op::reads`]), writes `output`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Op {
    /// The reference's module path (`trunk_output.block1.block1-0.f.a`, `layer1.0.conv1`,
    /// `features.3.conv_dw`).
    pub name: String,
    /// What it computes.
    pub kind: OpKind,
    /// The value it reads.
    pub input: ValueId,
    /// The value it writes.
    pub output: ValueId,
}

impl Op {
    /// Every value the op reads: its input, then a conv's residual, a deformable conv's
    /// offsets and mask, a spatial gate's map.
    pub fn reads(&self) -> Vec<ValueId> {
        let mut v = vec![self.input];
        match &self.kind {
            OpKind::Conv2d(c) => v.extend(c.residual),
            OpKind::DeformConv2d(d) => v.extend([d.offset].into_iter().chain(d.mask)),
            OpKind::SpatialGate(m) => v.push(*m),
            OpKind::Concat(others) => v.extend(others),
            _ => {}
        }
        v
    }
}

/// A stage of a plan: blocks at one resolution and width rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanStage {
    /// Its name in the reference (`block1`, `layer1`, `features.1-2`).
    pub name: String,
    /// Blocks.
    pub blocks: usize,
    /// The value it ends with.
    pub output: ValueId,
}

/// Values and ops without a model around them: what the backends lower and run, whether it is
/// a [`Plan`]'s ([`Plan::graph`]) or one op's ([`crate::ops`]). Value shapes are per image.
#[derive(Clone, Copy, Debug)]
pub struct Graph<'a> {
    /// Shapes of all values.
    pub values: &'a [Shape],
    /// The ops in execution order.
    pub ops: &'a [Op],
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
    /// The model the plan was made from.
    pub arch: Architecture,
    /// The stages, in order (the ops between the stem and the head).
    pub stages: Vec<PlanStage>,
    /// Shapes of all values; value 0 is the input `[3, H, W]`.
    pub values: Vec<Shape>,
    /// The ops in execution order.
    pub ops: Vec<Op>,
    /// Named intermediate values: `stem`, then the reference's module names (`block1`, ...;
    /// `layer1`, ...; `features.0`, ...).
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

impl Graph<'_> {
    /// For each value, the index of the last op that reads it (`None`: never read, e.g. the
    /// output).
    pub fn last_use(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.values.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for v in op.reads() {
                last[v] = Some(i);
            }
        }
        last
    }
}

impl Plan {
    /// Expands a model for `height` x `width` input images.
    pub fn new(arch: impl Into<Architecture>, height: usize, width: usize) -> Result<Plan> {
        let arch = arch.into();
        if height == 0 || width == 0 || height > MAX_INPUT_SIDE || width > MAX_INPUT_SIDE {
            return Err(Error::Input(format!(
                "input size {height}x{width} is out of range (1..={MAX_INPUT_SIDE} per side)"
            )));
        }
        let mut b = builder::Builder::new(height, width);
        match &arch {
            Architecture::RegNet(p) => {
                regnet::build(&mut b, &p.stages()?, p.stem_width, p.num_classes)?
            }
            Architecture::AnyNet(p) => {
                regnet::build(&mut b, &p.stages()?, p.stem_width, p.num_classes)?
            }
            Architecture::ResNet(p) => resnet::build(&mut b, p)?,
            Architecture::ReXNet(p) => rexnet::build(&mut b, p)?,
            Architecture::MobileNetV2(p) => mobilenet::build(&mut b, p)?,
            Architecture::ShuffleNetV2(p) => shufflenet::build(&mut b, p)?,
        }
        let plan = b.finish(arch)?;
        plan.check_size()?;
        Ok(plan)
    }

    /// Its values and ops, as the backends lower them.
    pub fn graph(&self) -> Graph<'_> {
        Graph {
            values: &self.values,
            ops: &self.ops,
        }
    }

    /// The same model planned for another input size.
    pub fn resized(&self, height: usize, width: usize) -> Result<Plan> {
        Plan::new(&self.arch, height, width)
    }

    /// Refuses a plan whose counts do not fit in u64, or whose activations are absurdly large.
    fn check_size(&self) -> Result<()> {
        let total = |f: fn(&Plan, &Op) -> u128| self.ops.iter().map(|o| f(self, o)).sum::<u128>();
        let params_total = total(Plan::op_params_wide);
        let macs_total = total(Plan::op_macs_wide);
        let largest = self
            .values
            .iter()
            .map(|v| v.channels as u128 * v.height as u128 * v.width as u128)
            .max()
            .unwrap_or(0);
        if params_total > u64::MAX as u128
            || macs_total > u64::MAX as u128
            || largest > MAX_VALUE_ELEMENTS as u128
        {
            let (height, width) = self.input_size();
            return Err(Error::Input(format!(
                "this model is absurdly large at {height}x{width}: {params_total} parameters, \
                 {macs_total} multiply-adds per image, {largest} values in its largest activation"
            )));
        }
        Ok(())
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
                2 * w(se.channels) * w(se.squeeze)
                    + w(se.channels)
                    + w(se.squeeze)
                    + se.norm.as_ref().map_or(0, |_| 2 * w(se.squeeze))
            }
            OpKind::DeformConv2d(d) => {
                let c = &d.conv;
                c.weight_shape().iter().map(|&d| w(d)).product::<u128>()
                    + c.bias.as_ref().map_or(0, |_| w(c.out_channels))
            }
            OpKind::Linear(l) => {
                w(l.in_features) * w(l.out_features)
                    + l.bias.as_ref().map_or(0, |_| w(l.out_features))
            }
            _ => 0, // pools, shuffles, copies, gates: no parameters
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
            OpKind::DeformConv2d(d) => {
                d.conv
                    .weight_shape()
                    .iter()
                    .map(|&d| w(d))
                    .product::<u128>()
                    * w(out.height)
                    * w(out.width)
            }
            OpKind::SqueezeExcite(se) => 2 * w(se.channels) * w(se.squeeze),
            OpKind::Linear(l) => w(l.in_features) * w(l.out_features),
            _ => 0,
        }
    }

    fn op_activations_wide(&self, op: &Op) -> u128 {
        let out = self.values[op.output];
        match &op.kind {
            OpKind::Conv2d(_) | OpKind::DeformConv2d(_) | OpKind::Linear(_) => {
                out.channels as u128 * out.height as u128 * out.width as u128
            }
            OpKind::SqueezeExcite(se) => se.squeeze as u128 + se.channels as u128,
            _ => 0,
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
        self.graph().last_use()
    }

    /// The value of a tap (`stem`, `block1`, ...) by name.
    pub fn tap(&self, name: &str) -> Option<ValueId> {
        self.taps.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}
