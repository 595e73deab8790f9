//! Each [`Operation`] as values and ops of the plan's kinds, with its weights.

use std::collections::HashMap;

use super::{ConvArgs, OpGraph, Operation, PoolArgs};
use crate::error::{Error, Result};
use crate::plan::{
    Activation, Conv2d, DeformConv2d, Op, OpKind, Pool2d, PoolMode, Shape, SqueezeExcite, ValueId,
};
use crate::tensor::Tensor;
use crate::weights::{fold_bn, ConvParams, OpParams, SeParams, Weights};

/// The graph under construction, over the op's tensors.
struct Builder<'t> {
    name: &'static str,
    tensors: &'t HashMap<String, Tensor>,
    batch: usize,
    values: Vec<Shape>,
    ops: Vec<Op>,
    weights: Weights,
    inputs: Vec<(String, ValueId)>,
}

impl<'t> Builder<'t> {
    /// A builder whose value 0 is the `input` tensor's `[C, H, W]`.
    fn new(name: &'static str, tensors: &'t HashMap<String, Tensor>) -> Result<Self> {
        let mut b = Builder {
            name,
            tensors,
            batch: 0,
            values: Vec::new(),
            ops: Vec::new(),
            weights: Weights::default(),
            inputs: Vec::new(),
        };
        let [n, c, h, w] = b.shape4("input")?;
        if n == 0 || c == 0 || h == 0 || w == 0 {
            return Err(Error::Input(format!(
                "`{name}`: the input's shape [{n}, {c}, {h}, {w}] has an empty dimension"
            )));
        }
        b.batch = n;
        b.input("input", shape(c, h, w));
        b.weights.source = format!("the tensors of `{name}`");
        Ok(b)
    }

    fn get(&self, name: &str) -> Result<&'t Tensor> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            context: format!(" for `{}`", self.name),
        })
    }

    fn shape4(&self, name: &str) -> Result<[usize; 4]> {
        let t = self.get(name)?;
        <[usize; 4]>::try_from(t.shape.as_slice()).map_err(|_| {
            Error::Input(format!(
                "`{}`: `{name}` must be 4-D, got shape {:?}",
                self.name, t.shape
            ))
        })
    }

    /// The tensor `name` with exactly `shape`.
    fn exact(&self, name: &str, shape: &[usize]) -> Result<&'t Tensor> {
        let t = self.get(name)?;
        if t.shape != shape {
            return Err(Error::ShapeMismatch {
                name: name.to_string(),
                found: t.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        Ok(t)
    }

    /// An optional tensor: `None` when absent, else it must have `shape`.
    fn optional(&self, name: &str, shape: &[usize]) -> Result<Option<&'t Tensor>> {
        match self.tensors.contains_key(name) {
            true => self.exact(name, shape).map(Some),
            false => Ok(None),
        }
    }

    /// A run-time input of `[batch, s]`: its value.
    fn input(&mut self, name: &str, s: Shape) -> ValueId {
        self.values.push(s);
        let v = self.values.len() - 1;
        self.inputs.push((name.to_string(), v));
        v
    }

    /// A run-time input that must have `[batch, s]`.
    fn checked_input(&mut self, name: &str, s: Shape) -> Result<ValueId> {
        self.exact(name, &[self.batch, s.channels, s.height, s.width])?;
        Ok(self.input(name, s))
    }

    fn op(&mut self, name: &str, kind: OpKind, input: ValueId, out: Shape) -> ValueId {
        self.values.push(out);
        let output = self.values.len() - 1;
        self.ops.push(Op {
            name: name.to_string(),
            kind,
            input,
            output,
        });
        output
    }

    /// A convolution op `name` on `input` with `params`, its output shape checked.
    fn conv(
        &mut self,
        name: &str,
        input: ValueId,
        c: Conv2d,
        params: ConvParams,
    ) -> Result<ValueId> {
        let s = self.values[input];
        let (h, w) = c.checked_output_size(s.height, s.width).ok_or_else(|| {
            Error::Input(format!(
                "`{}`: a {}x{} input is smaller than the {:?} kernel dilated by {:?} with \
                 padding {:?}",
                self.name, s.height, s.width, c.kernel, c.dilation, c.padding
            ))
        })?;
        let out = shape(c.out_channels, h, w);
        self.weights.insert(name, OpParams::Conv(params));
        Ok(self.op(name, OpKind::Conv2d(c), input, out))
    }

    /// A depthwise 1x1 convolution per channel `y = act(scale * x + shift)` (batch norm, a lone
    /// activation, the gate of squeeze-excitation).
    fn affine(
        &mut self,
        name: &str,
        input: ValueId,
        (scale, shift): (Vec<f32>, Vec<f32>),
        activation: Activation,
    ) -> Result<ValueId> {
        let c = self.values[input].channels;
        let conv = conv2d(
            c,
            c,
            [1, 1],
            &ConvArgs {
                groups: c,
                activation,
                ..Default::default()
            },
        );
        self.conv(
            name,
            input,
            conv,
            ConvParams {
                weight: scale,
                bias: shift,
            },
        )
    }

    fn finish(self, output: ValueId) -> OpGraph {
        OpGraph {
            name: self.name,
            batch: self.batch,
            values: self.values,
            ops: self.ops,
            weights: self.weights,
            inputs: self.inputs,
            output,
        }
    }
}

fn shape(channels: usize, height: usize, width: usize) -> Shape {
    Shape {
        channels,
        height,
        width,
    }
}

/// A convolution from `cin` to `cout` channels with `kernel` and `a`'s arguments.
fn conv2d(cin: usize, cout: usize, kernel: [usize; 2], a: &ConvArgs) -> Conv2d {
    Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel,
        stride: a.stride,
        padding: a.padding,
        dilation: a.dilation,
        groups: a.groups,
        activation: a.activation,
        residual: None,
        weight: "weight".into(),
        bias: None,
        norm: None,
    }
}

pub(super) fn build(op: &Operation, tensors: &HashMap<String, Tensor>) -> Result<OpGraph> {
    let mut b = Builder::new(op.name(), tensors)?;
    let out = match op {
        Operation::Conv2d(a) => build_conv(&mut b, a)?,
        Operation::DeformConv2d(a) => build_deform(&mut b, a)?,
        Operation::MaxPool2d(a) => build_pool(&mut b, a, PoolMode::Max)?,
        Operation::AvgPool2d(a) => build_pool(
            &mut b,
            a,
            PoolMode::Avg {
                count_include_pad: a.count_include_pad,
            },
        )?,
        Operation::AdaptiveAvgPool2d { output_size } => {
            if output_size.contains(&0) {
                return Err(Error::Input(format!(
                    "`adaptive_avg_pool2d`: output_size {output_size:?} has a zero"
                )));
            }
            let c = b.values[0].channels;
            let out = shape(c, output_size[0], output_size[1]);
            b.op("pool", OpKind::AdaptiveAvgPool2d(*output_size), 0, out)
        }
        Operation::ChannelShuffle { groups } => {
            let s = b.values[0];
            if *groups == 0 || !s.channels.is_multiple_of(*groups) {
                return Err(Error::Input(format!(
                    "`channel_shuffle`: {} channels cannot be split into {groups} groups",
                    s.channels
                )));
            }
            b.op("shuffle", OpKind::ChannelShuffle(*groups), 0, s)
        }
        Operation::BatchNorm { eps } => build_batch_norm(&mut b, *eps)?,
        Operation::SqueezeExcitation => build_squeeze_excitation(&mut b)?,
        Operation::Cbam { kernel_size } => build_cbam(&mut b, *kernel_size)?,
        Operation::Activation(a) => {
            let c = b.values[0].channels;
            b.affine("activation", 0, (vec![1.0; c], vec![0.0; c]), *a)?
        }
    };
    Ok(b.finish(out))
}

/// Checks a convolution's arguments and weight against `cin` input channels; returns its
/// output channels and kernel.
fn check_conv(b: &Builder, a: &ConvArgs, cin: usize) -> Result<(usize, [usize; 2])> {
    let [cout, cin_g, kh, kw] = b.shape4("weight")?;
    let name = b.name;
    if a.stride.contains(&0) || a.dilation.contains(&0) || kh == 0 || kw == 0 {
        return Err(Error::Input(format!(
            "`{name}`: stride {:?}, dilation {:?} and the kernel [{kh}, {kw}] must be positive",
            a.stride, a.dilation
        )));
    }
    let g = a.groups;
    if g == 0 || cin_g == 0 || cin_g * g != cin || !cout.is_multiple_of(g) {
        return Err(Error::Input(format!(
            "`{name}`: a weight of shape [{cout}, {cin_g}, {kh}, {kw}] does not fit {cin} input \
             channels in {g} group(s) (weight[1] * groups must equal the input's channels, and \
             groups divide weight[0])"
        )));
    }
    Ok((cout, [kh, kw]))
}

fn conv_params(b: &Builder, cout: usize) -> Result<ConvParams> {
    Ok(ConvParams {
        weight: b.get("weight")?.data.clone(),
        bias: match b.optional("bias", &[cout])? {
            Some(t) => t.data.clone(),
            None => vec![0.0; cout],
        },
    })
}

fn build_conv(b: &mut Builder, a: &ConvArgs) -> Result<ValueId> {
    let cin = b.values[0].channels;
    let (cout, kernel) = check_conv(b, a, cin)?;
    let mut conv = conv2d(cin, cout, kernel, a);
    let s = b.values[0];
    if let Some((h, w)) = conv.checked_output_size(s.height, s.width) {
        if b.tensors.contains_key("residual") {
            conv.residual = Some(b.checked_input("residual", shape(cout, h, w))?);
        }
    }
    let mut params = conv_params(b, cout)?;
    if b.tensors.contains_key("bn.running_mean") {
        params = fold_conv_bn(b, params, cout, a.bn_eps)?;
    }
    b.conv("conv", 0, conv, params)
}

/// A conv's parameters with the BatchNorm of the `bn.*` tensors folded in.
fn fold_conv_bn(b: &Builder, p: ConvParams, cout: usize, eps: f64) -> Result<ConvParams> {
    let mean = &b.exact("bn.running_mean", &[cout])?.data;
    let var = &b.exact("bn.running_var", &[cout])?.data;
    check_variance(b.name, "bn.running_var", var, eps)?;
    let (ones, zeros) = (vec![1.0; cout], vec![0.0; cout]);
    let gamma = b.optional("bn.weight", &[cout])?.map_or(&ones, |t| &t.data);
    let beta = b.optional("bn.bias", &[cout])?.map_or(&zeros, |t| &t.data);
    Ok(fold_bn(
        &p.weight,
        Some(&p.bias),
        gamma,
        beta,
        mean,
        var,
        eps,
    ))
}

/// An error unless every `var[i] + eps` is positive.
fn check_variance(op: &str, name: &str, var: &[f32], eps: f64) -> Result<()> {
    let bad = var
        .iter()
        .position(|&v| (v as f64 + eps).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater));
    match bad {
        Some(i) => Err(Error::Input(format!(
            "`{op}`: {name}[{i}] + eps = {} is not positive",
            var[i] as f64 + eps
        ))),
        None => Ok(()),
    }
}

fn build_deform(b: &mut Builder, a: &ConvArgs) -> Result<ValueId> {
    let s = b.values[0];
    let [_, cin_g, _, _] = b.shape4("weight")?;
    let groups = s.channels.checked_div(cin_g).unwrap_or(0);
    let a = ConvArgs { groups, ..*a };
    let (cout, kernel) = check_conv(b, &a, s.channels)?;
    let conv = conv2d(s.channels, cout, kernel, &a);
    let (h, w) = conv.checked_output_size(s.height, s.width).ok_or_else(|| {
        Error::Input(format!(
            "`deform_conv2d`: a {}x{} input is smaller than the {kernel:?} kernel dilated by \
             {:?} with padding {:?}",
            s.height, s.width, a.dilation, a.padding
        ))
    })?;
    let taps = kernel[0] * kernel[1];
    let [_, off_c, _, _] = b.shape4("offset")?;
    let og = off_c / (2 * taps);
    if og == 0 || off_c != 2 * og * taps || !s.channels.is_multiple_of(og) {
        return Err(Error::Input(format!(
            "`deform_conv2d`: offset has {off_c} channels; it needs 2 * offset_groups * {taps} \
             (the kernel's taps), offset_groups dividing the input's {} channels",
            s.channels
        )));
    }
    let offset = b.checked_input("offset", shape(off_c, h, w))?;
    let mask = match b.tensors.contains_key("mask") {
        true => Some(b.checked_input("mask", shape(og * taps, h, w))?),
        false => None,
    };
    let params = conv_params(b, cout)?;
    b.weights.insert("deform", OpParams::Conv(params));
    let kind = OpKind::DeformConv2d(DeformConv2d {
        conv,
        offset_groups: og,
        offset,
        mask,
    });
    Ok(b.op("deform", kind, 0, shape(cout, h, w)))
}

fn build_pool(b: &mut Builder, a: &PoolArgs, mode: PoolMode) -> Result<ValueId> {
    let pool = Pool2d {
        mode,
        kernel: a.kernel_size,
        stride: a.stride,
        padding: a.padding,
        dilation: a.dilation,
        ceil_mode: a.ceil_mode,
    };
    let s = b.values[0];
    let (h, w) = pool.checked_output_size(s.height, s.width).ok_or_else(|| {
        Error::Input(format!(
            "`{}`: kernel_size {:?}, stride {:?}, padding {:?}, dilation {:?} do not fit a \
             {}x{} input (positive sizes, padding at most half the window, the dilated window \
             within the padded input)",
            b.name, a.kernel_size, a.stride, a.padding, a.dilation, s.height, s.width
        ))
    })?;
    Ok(b.op("pool", OpKind::Pool2d(pool), 0, shape(s.channels, h, w)))
}

fn build_batch_norm(b: &mut Builder, eps: f64) -> Result<ValueId> {
    let c = b.values[0].channels;
    let mean = &b.exact("running_mean", &[c])?.data;
    let var = &b.exact("running_var", &[c])?.data;
    check_variance(b.name, "running_var", var, eps)?;
    let ones = vec![1.0; c];
    let zeros = vec![0.0; c];
    let gamma = b.optional("weight", &[c])?.map_or(&ones, |t| &t.data);
    let beta = b.optional("bias", &[c])?.map_or(&zeros, |t| &t.data);
    let p = fold_bn(&ones, None, gamma, beta, mean, var, eps);
    b.affine("norm", 0, (p.weight, p.bias), Activation::Identity)
}

/// Squeeze-excitation's (or CBAM's channel attention's) gate on value 0 and its application:
/// the gated value.
fn gate(b: &mut Builder, names: [&str; 4], squeeze: usize, pool_max: bool) -> Result<ValueId> {
    let c = b.values[0].channels;
    let w1 = b.get(names[0])?;
    let w1 = if w1.shape.len() == 4 {
        b.exact(names[0], &[squeeze, c, 1, 1])?
    } else {
        b.exact(names[0], &[squeeze, c])?
    };
    let w2 = b.get(names[2])?;
    let w2 = if w2.shape.len() == 4 {
        b.exact(names[2], &[c, squeeze, 1, 1])?
    } else {
        b.exact(names[2], &[c, squeeze])?
    };
    let se = SeParams {
        w1: w1.data.clone(),
        b1: b.exact(names[1], &[squeeze])?.data.clone(),
        w2: w2.data.clone(),
        b2: b.exact(names[3], &[c])?.data.clone(),
    };
    b.weights.insert("attention", OpParams::Se(se));
    let kind = OpKind::SqueezeExcite(SqueezeExcite {
        channels: c,
        squeeze,
        fc1: "fc1".into(),
        fc2: "fc2".into(),
        norm: None,
        activation: Activation::Identity,
        pool_max,
    });
    let s = b.values[0];
    let gated = b.op("attention", kind, 0, s);
    // The gate is applied as the input reads of the next conv: an identity one here.
    b.affine(
        "gate",
        gated,
        (vec![1.0; c], vec![0.0; c]),
        Activation::Identity,
    )
}

fn build_squeeze_excitation(b: &mut Builder) -> Result<ValueId> {
    let squeeze = b.get("fc1.weight")?.shape.first().copied().unwrap_or(0);
    if squeeze == 0 {
        return Err(Error::Input(
            "`squeeze_excitation`: fc1.weight must be [squeeze_channels, channels, 1, 1]".into(),
        ));
    }
    gate(
        b,
        ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"],
        squeeze,
        false,
    )
}

fn build_cbam(b: &mut Builder, k: usize) -> Result<ValueId> {
    let squeeze = b.get("mlp.0.weight")?.shape.first().copied().unwrap_or(0);
    if squeeze == 0 || k.is_multiple_of(2) {
        return Err(Error::Input(format!(
            "`cbam`: mlp.0.weight must be [hidden, channels] and kernel_size odd (got {k})"
        )));
    }
    let x1 = gate(
        b,
        ["mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"],
        squeeze,
        true,
    )?;
    let s = b.values[x1];
    let pooled = b.op(
        "channel_pool",
        OpKind::ChannelPool,
        x1,
        shape(2, s.height, s.width),
    );
    let w = b.exact("spatial.weight", &[1, 2, k, k])?.data.clone();
    let bias = b
        .optional("spatial.bias", &[1])?
        .map_or(vec![0.0], |t| t.data.clone());
    let args = ConvArgs {
        padding: [k / 2, k / 2],
        activation: Activation::Sigmoid,
        ..Default::default()
    };
    let map = b.conv(
        "spatial",
        pooled,
        conv2d(2, 1, [k, k], &args),
        ConvParams { weight: w, bias },
    )?;
    Ok(b.op("spatial_gate", OpKind::SpatialGate(map), x1, s))
}
