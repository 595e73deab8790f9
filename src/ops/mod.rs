//! The kernels as a library of operations with PyTorch's semantics, on both backends.
//!
//! An [`Operation`] is one of torch's ops with its keyword arguments (`conv2d`,
//! `deform_conv2d`, `max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d`, `channel_shuffle`,
//! `batch_norm` in eval mode, squeeze-excitation, CBAM, the activations). Given its tensors'
//! shapes and its parameters (weights, BatchNorm statistics) it becomes an [`OpGraph`]: the same
//! op kinds the models are planned into ([`crate::plan::OpKind`]), run by the same kernels,
//! lowering and CPU twins as a model's layers, so a model and a lone op never take two paths.
//!
//! - On the CPU: [`OpGraph::run_cpu`].
//! - On a GPU: [`crate::gpu::GpuOp`], which records into the caller's command encoder over the
//!   caller's buffers (or runs on tensors for convenience).
//!
//! | op | torch | op kinds |
//! |---|---|---|
//! | `conv2d` | `F.conv2d` (+ fused residual and activation) | [`OpKind::Conv2d`] |
//! | `deform_conv2d` | `torchvision.ops.deform_conv2d` | [`OpKind::DeformConv2d`] |
//! | `max_pool2d`, `avg_pool2d` | `F.max_pool2d`, `F.avg_pool2d` | [`OpKind::Pool2d`] |
//! | `adaptive_avg_pool2d` | `F.adaptive_avg_pool2d` | [`OpKind::AdaptiveAvgPool2d`] |
//! | `channel_shuffle` | `F.channel_shuffle` | [`OpKind::ChannelShuffle`] |
//! | `batch_norm` | `F.batch_norm(training=False)` | a folded depthwise 1x1 [`OpKind::Conv2d`] |
//! | `squeeze_excitation` | `torchvision.ops.SqueezeExcitation` | [`OpKind::SqueezeExcite`] + gate |
//! | `cbam` | CBAM (Woo et al., 2018) | SE with max pooling, channel pool, 7x7 conv, [`OpKind::SpatialGate`] |
//! | `relu`, `relu6`, `silu`, `sigmoid` | `F.relu`, ... | an identity depthwise 1x1 [`OpKind::Conv2d`] with the activation |
//!
//! ```
//! use std::collections::HashMap;
//! use regnet_wgpu::ops::{ConvArgs, Operation};
//! use regnet_wgpu::Tensor;
//!
//! // A dilated 3x3 conv, 4 -> 8 channels, on a [1, 4, 9, 9] input.
//! let conv = Operation::Conv2d(ConvArgs { padding: [2, 2], dilation: [2, 2], ..Default::default() });
//! let mut tensors = HashMap::new();
//! tensors.insert("input".to_string(), Tensor::zeros(vec![1, 4, 9, 9]));
//! tensors.insert("weight".to_string(), Tensor::zeros(vec![8, 4, 3, 3]));
//! let op = conv.build(&tensors)?;
//! assert_eq!(op.output_shape(), [1, 8, 9, 9]);
//! # #[cfg(feature = "cpu")]
//! assert_eq!(op.run_cpu(&tensors)?.shape, [1, 8, 9, 9]);
//! # Ok::<(), regnet_wgpu::Error>(())
//! ```

mod build;
mod file;
mod parse;

pub use file::OpFile;

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::plan::{Activation, Graph, Op, Shape, ValueId};
use crate::tensor::Tensor;
use crate::weights::Weights;

#[cfg(doc)]
use crate::plan::OpKind;

/// A convolution's keyword arguments (torch's names; per axis `[height, width]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvArgs {
    /// Stride.
    pub stride: [usize; 2],
    /// Zero padding on both sides of each axis.
    pub padding: [usize; 2],
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
    /// Groups (`conv2d`; `deform_conv2d` takes it from the weight's shape, as torchvision does).
    pub groups: usize,
    /// Applied after the bias and the residual (not a torch argument: the fused epilogue).
    pub activation: Activation,
    /// `conv2d` with `bn.weight`, `bn.bias`, `bn.running_mean`, `bn.running_var` tensors:
    /// the BatchNorm's epsilon (it is folded into the conv, as a model's are).
    pub bn_eps: f64,
}

impl Default for ConvArgs {
    fn default() -> Self {
        ConvArgs {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            activation: Activation::Identity,
            bn_eps: 1e-5,
        }
    }
}

/// A pooling op's keyword arguments (torch's names; per axis `[height, width]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolArgs {
    /// Window.
    pub kernel_size: [usize; 2],
    /// Stride (torch's default: the window).
    pub stride: [usize; 2],
    /// Padding on both sides of each axis (at most half the window).
    pub padding: [usize; 2],
    /// Spacing between window taps (`max_pool2d` only).
    pub dilation: [usize; 2],
    /// Rounds the output size up.
    pub ceil_mode: bool,
    /// `avg_pool2d`: padding counts in the divisor (torch's default: true).
    pub count_include_pad: bool,
}

impl PoolArgs {
    /// A `k` x `k` window with torch's defaults (stride `k`, no padding).
    pub fn new(k: usize) -> PoolArgs {
        PoolArgs {
            kernel_size: [k, k],
            stride: [k, k],
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: true,
        }
    }
}

/// One operation with torch's semantics and keyword arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Operation {
    /// `F.conv2d(input, weight, bias, stride, padding, dilation, groups)`, then optionally a
    /// BatchNorm in eval mode (`bn.weight`, `bn.bias`, `bn.running_mean`, `bn.running_var`;
    /// folded), a `residual` input (the output's shape) and `activation`: the fused epilogue.
    Conv2d(ConvArgs),
    /// `torchvision.ops.deform_conv2d(input, offset, weight, bias, stride, padding, dilation,
    /// mask)`; groups from the weight, offset groups from the offset's channels.
    DeformConv2d(ConvArgs),
    /// `F.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode)`.
    MaxPool2d(PoolArgs),
    /// `F.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad)`.
    AvgPool2d(PoolArgs),
    /// `F.adaptive_avg_pool2d(input, output_size)`.
    AdaptiveAvgPool2d {
        /// Output height and width.
        output_size: [usize; 2],
    },
    /// `F.channel_shuffle(input, groups)`.
    ChannelShuffle {
        /// Groups.
        groups: usize,
    },
    /// `F.batch_norm(input, running_mean, running_var, weight, bias, training=False, eps)`.
    BatchNorm {
        /// Added to the variance.
        eps: f64,
    },
    /// `torchvision.ops.SqueezeExcitation`: `x * sigmoid(fc2(relu(fc1(mean(x)))))`, fc1 and fc2
    /// 1x1 convs with bias (`fc1.weight` `[S, C, 1, 1]`, `fc1.bias`, `fc2.weight`, `fc2.bias`).
    SqueezeExcitation,
    /// CBAM: channel attention `sigmoid(mlp(avg) + mlp(max))` (`mlp.0` `[R, C]`, ReLU, `mlp.2`
    /// `[C, R]`, with biases), then spatial attention `sigmoid(conv([mean_c, max_c]))` with a
    /// `kernel_size` conv of 2 -> 1 channels padded by `kernel_size / 2` (`spatial.weight`,
    /// `spatial.bias`), each multiplying its input.
    Cbam {
        /// The spatial attention's kernel side (7 in the paper).
        kernel_size: usize,
    },
    /// An activation alone (`relu`, `relu6`, `silu`, `sigmoid`).
    Activation(Activation),
}

/// The tensors an op reads at run time (the rest of its tensors are parameters).
pub const RUN_INPUTS: [&str; 4] = ["input", "residual", "offset", "mask"];

/// An operation made concrete for its input shapes and parameters: values, ops of the plan's
/// kinds and their weights, ready for either backend.
#[derive(Clone, Debug)]
pub struct OpGraph {
    /// The operation's name (`conv2d`, ...).
    pub name: &'static str,
    /// Images.
    pub batch: usize,
    /// Every value's shape per image; value 0 is `input`.
    pub values: Vec<Shape>,
    /// The ops, in order.
    pub ops: Vec<Op>,
    /// Their parameters (BatchNorm folded).
    pub weights: Weights,
    /// The tensors read at run time, by torch's argument name, with their values.
    pub inputs: Vec<(String, ValueId)>,
    /// The value returned.
    pub output: ValueId,
}

impl OpGraph {
    /// The values and ops, as the backends lower them.
    pub fn graph(&self) -> Graph<'_> {
        Graph {
            values: &self.values,
            ops: &self.ops,
        }
    }

    /// The `[N, C, H, W]` shape of value `v`.
    pub fn shape_of(&self, v: ValueId) -> [usize; 4] {
        let s = self.values[v];
        [self.batch, s.channels, s.height, s.width]
    }

    /// The shape of the input named `name` (`input`, `offset`, ...), if the op reads it.
    pub fn input_shape(&self, name: &str) -> Option<[usize; 4]> {
        self.inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| self.shape_of(v))
    }

    /// The output's shape `[N, C, H, W]`.
    pub fn output_shape(&self) -> [usize; 4] {
        self.shape_of(self.output)
    }

    /// Checks that `tensors` hold every run-time input with its shape; returns them in the
    /// order of [`OpGraph::inputs`].
    pub fn check_inputs<'t>(
        &self,
        tensors: &'t HashMap<String, Tensor>,
    ) -> Result<Vec<&'t Tensor>> {
        self.inputs
            .iter()
            .map(|(name, v)| {
                let t = tensors.get(name).ok_or_else(|| Error::MissingTensor {
                    name: name.clone(),
                    context: format!(" among the inputs of `{}`", self.name),
                })?;
                let want = self.shape_of(*v);
                if t.shape != want {
                    return Err(Error::ShapeMismatch {
                        name: name.clone(),
                        found: t.shape.clone(),
                        expected: want.to_vec(),
                    });
                }
                Ok(t)
            })
            .collect()
    }

    /// Runs the op on the CPU backend's kernels: `tensors` holds the run-time inputs by name
    /// (others are ignored).
    #[cfg(feature = "cpu")]
    pub fn run_cpu(&self, tensors: &HashMap<String, Tensor>) -> Result<Tensor> {
        let given = self.check_inputs(tensors)?;
        let inputs: Vec<(ValueId, &[f32])> = self
            .inputs
            .iter()
            .zip(&given)
            .map(|((_, v), t)| (*v, t.data.as_slice()))
            .collect();
        let data = crate::cpu::run_graph(
            self.graph(),
            &self.weights,
            &inputs,
            self.batch,
            self.output,
        )?;
        Tensor::new(self.output_shape().to_vec(), data)
    }
}

impl Operation {
    /// The op's name as torch spells it (`conv2d`, `max_pool2d`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Conv2d(_) => "conv2d",
            Operation::DeformConv2d(_) => "deform_conv2d",
            Operation::MaxPool2d(_) => "max_pool2d",
            Operation::AvgPool2d(_) => "avg_pool2d",
            Operation::AdaptiveAvgPool2d { .. } => "adaptive_avg_pool2d",
            Operation::ChannelShuffle { .. } => "channel_shuffle",
            Operation::BatchNorm { .. } => "batch_norm",
            Operation::SqueezeExcitation => "squeeze_excitation",
            Operation::Cbam { .. } => "cbam",
            Operation::Activation(a) => match a {
                Activation::Relu => "relu",
                Activation::Relu6 => "relu6",
                Activation::Silu => "silu",
                Activation::Sigmoid => "sigmoid",
                Activation::Identity => "identity",
            },
        }
    }

    /// Every op's name.
    pub const NAMES: [&'static str; 13] = [
        "conv2d",
        "deform_conv2d",
        "max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "channel_shuffle",
        "batch_norm",
        "squeeze_excitation",
        "cbam",
        "relu",
        "relu6",
        "silu",
        "sigmoid",
    ];

    /// The op for `tensors` (by torch's argument names: run-time inputs, whose values are not
    /// read here, and parameters): shapes checked, BatchNorm folded.
    pub fn build(&self, tensors: &HashMap<String, Tensor>) -> Result<OpGraph> {
        build::build(self, tensors)
    }

    /// The op named `name` with `params` in the `op` example's syntax (torch's keyword names;
    /// tuples as `a,b`, one number for both axes; `true`/`false`), torch's defaults for the
    /// rest.
    pub fn parse(name: &str, params: &[(String, String)]) -> Result<Operation> {
        parse::parse(name, params)
    }
}
