//! Weights: a torchvision or timm `state_dict`, checked against a [`Plan`], with every
//! BatchNorm folded into its convolution at load.
//!
//! The file is a PyTorch checkpoint (`torch.save(state_dict)`, zip or legacy format: [`pth`],
//! read by a restricted unpickler, [`pickle`]) or safetensors, told apart by content; each is
//! read into one [`StateDict`] ([`state_dict`]), which this module checks and folds.
//!
//! Names are torchvision's own (`stem.0.weight`, `stem.1.running_mean`,
//! `trunk_output.block1.block1-0.f.a.0.weight`, `...f.se.fc1.weight`, `...proj.1.bias`,
//! `fc.weight`, ...), a leading `module.` (DataParallel) stripped. F32, F16 and BF16 tensors
//! are accepted; `num_batches_tracked` buffers are ignored. Every tensor the plan needs must be
//! present with its shape, and nothing else may be left over.

pub mod pickle;
pub mod pth;
pub mod state_dict;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::error::{Error, Result};
use crate::plan::{DeformConv2d, OpKind, Plan};
use crate::rng::SplitMix;
use crate::tensor::read_file;

pub use state_dict::{Dtype, Format, RawTensor, StateDict};

/// BatchNorm's epsilon: torch's default, which every model here uses (torchvision's, timm's).
pub const BN_EPS: f64 = 1e-5;

/// A convolution with its BatchNorm folded in.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvParams {
    /// `[out, in / groups, kh, kw]`, row-major.
    pub weight: Vec<f32>,
    /// `[out]`.
    pub bias: Vec<f32>,
}

/// Squeeze-and-excitation's two 1x1 convolutions.
#[derive(Clone, Debug, PartialEq)]
pub struct SeParams {
    /// fc1 weight `[squeeze, channels]`.
    pub w1: Vec<f32>,
    /// fc1 bias `[squeeze]`.
    pub b1: Vec<f32>,
    /// fc2 weight `[channels, squeeze]`.
    pub w2: Vec<f32>,
    /// fc2 bias `[channels]`.
    pub b2: Vec<f32>,
}

/// A linear layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearParams {
    /// `[out, in]`.
    pub weight: Vec<f32>,
    /// `[out]`.
    pub bias: Vec<f32>,
}

/// The parameters of one op.
#[derive(Clone, Debug, PartialEq)]
pub enum OpParams {
    /// A convolution (BN folded).
    Conv(ConvParams),
    /// A squeeze-and-excitation.
    Se(SeParams),
    /// A linear layer.
    Linear(LinearParams),
}

/// The loaded, BN-folded parameters of a model, by op name. The same weights serve every
/// plan (input size) of the model they were checked against.
#[derive(Clone, Debug, Default)]
pub struct Weights {
    ops: HashMap<String, OpParams>,
    /// Where they came from (a path, or `random(seed)`), for messages.
    pub source: String,
}

struct Reader<'a> {
    st: StateDict<'a>,
    used: HashSet<String>,
    path: &'a Path,
}

impl Reader<'_> {
    fn invalid(&self, name: &str, reason: String) -> Error {
        Error::InvalidTensor {
            name: name.to_string(),
            path: self.path.to_path_buf(),
            reason,
        }
    }

    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.st.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            context: format!(" in {}", self.path.display()),
        })?;
        if t.shape != shape {
            return Err(Error::ShapeMismatch {
                name: name.to_string(),
                found: t.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        let data = t.to_f32(name)?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(self.invalid(
                name,
                format!("holds a non-finite value ({}) at {i}", data[i]),
            ));
        }
        self.used.insert(name.to_string());
        Ok(data)
    }
}

impl Reader<'_> {
    /// A conv's `weight` (tensor `name`, `out` rows) and optional bias, with the BatchNorm
    /// `norm` (a prefix) folded in when it has one.
    fn folded(
        &mut self,
        name: &str,
        out: usize,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        norm: Option<&str>,
    ) -> Result<ConvParams> {
        let Some(bn) = norm else {
            return Ok(ConvParams {
                bias: bias.unwrap_or_else(|| vec![0.0; out]),
                weight,
            });
        };
        let n = [out];
        let gamma = self.get(&format!("{bn}.weight"), &n)?;
        let beta = self.get(&format!("{bn}.bias"), &n)?;
        let mean = self.get(&format!("{bn}.running_mean"), &n)?;
        let var = self.get(&format!("{bn}.running_var"), &n)?;
        if let Some(i) = var.iter().position(|&v| v < 0.0) {
            let var_name = format!("{bn}.running_var");
            return Err(self.invalid(&var_name, format!("holds a negative variance at {i}")));
        }
        let p = fold_bn(&weight, bias.as_deref(), &gamma, &beta, &mean, &var, BN_EPS);
        if p.weight.iter().chain(&p.bias).any(|v| !v.is_finite()) {
            return Err(self.invalid(
                name,
                format!("folding BatchNorm `{bn}` into it overflows f32 (running_var too small or weight/gamma too large)"),
            ));
        }
        Ok(p)
    }
}

/// Folds `BN(conv(x) + conv_bias)` into one convolution (computed in f64).
pub(crate) fn fold_bn(
    weight: &[f32],
    conv_bias: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> ConvParams {
    let out = gamma.len();
    let per = weight.len() / out;
    let mut w = Vec::with_capacity(weight.len());
    let mut b = Vec::with_capacity(out);
    for o in 0..out {
        let scale = gamma[o] as f64 / (var[o] as f64 + eps).sqrt();
        w.extend(
            weight[o * per..(o + 1) * per]
                .iter()
                .map(|&v| (v as f64 * scale) as f32),
        );
        let cb = conv_bias.map_or(0.0, |cb| cb[o] as f64);
        b.push(((cb - mean[o] as f64) * scale + beta[o] as f64) as f32);
    }
    ConvParams { weight: w, bias: b }
}

impl Weights {
    /// Loads a `state_dict` and checks it against `plan`: a PyTorch checkpoint
    /// (`torch.save(model.state_dict(), ...)`, such as torchvision's downloads, in the zip or
    /// the legacy format) or a safetensors file, told apart by content, not by the file's name
    /// ([`Format::detect`]). A `module.` prefix (DataParallel) is stripped.
    ///
    /// PyTorch checkpoints are read by a restricted unpickler that runs nothing: anything but
    /// tensors in a dict is refused with [`Error::Pth`].
    ///
    /// ```no_run
    /// use regnet_wgpu::{zoo, Plan, Weights};
    /// let plan = Plan::new(&zoo::get("regnet_y_400mf")?, 224, 224)?;
    /// // torchvision's own checkpoint, as downloaded:
    /// let weights = Weights::load("regnet_y_400mf-c65dace8.pth", &plan)?;
    /// // or a safetensors file:
    /// let weights = Weights::load("regnet_y_400mf.safetensors", &plan)?;
    /// # Ok::<(), regnet_wgpu::Error>(())
    /// ```
    pub fn load(path: impl AsRef<Path>, plan: &Plan) -> Result<Weights> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        Self::from_bytes(&bytes, path, plan)
    }

    /// Reads a `state_dict` held in memory (a PyTorch checkpoint or safetensors, as
    /// [`Weights::load`]); `label` names it in errors.
    pub fn from_bytes(bytes: &[u8], label: &Path, plan: &Plan) -> Result<Weights> {
        Self::from_state_dict(StateDict::from_bytes(bytes, label)?, label, plan)
    }

    /// Checks a [`StateDict`] against `plan` and folds it; `label` names it in errors.
    pub fn from_state_dict(st: StateDict<'_>, label: &Path, plan: &Plan) -> Result<Weights> {
        let mut r = Reader {
            st,
            used: HashSet::new(),
            path: label,
        };
        let mut ops = HashMap::new();
        for op in &plan.ops {
            let p = match &op.kind {
                OpKind::Conv2d(c) | OpKind::DeformConv2d(DeformConv2d { conv: c, .. }) => {
                    let weight = r.get(&c.weight, &c.weight_shape())?;
                    let bias = match &c.bias {
                        Some(b) => Some(r.get(b, &[c.out_channels])?),
                        None => None,
                    };
                    OpParams::Conv(r.folded(
                        &c.weight,
                        c.out_channels,
                        weight,
                        bias,
                        c.norm.as_deref(),
                    )?)
                }
                OpKind::SqueezeExcite(se) => {
                    let fc1 = format!("{}.weight", se.fc1);
                    let w1 = r.get(&fc1, &[se.squeeze, se.channels, 1, 1])?;
                    let b1 = r.get(&format!("{}.bias", se.fc1), &[se.squeeze])?;
                    let fc1 = r.folded(&fc1, se.squeeze, w1, Some(b1), se.norm.as_deref())?;
                    OpParams::Se(SeParams {
                        w1: fc1.weight,
                        b1: fc1.bias,
                        w2: r.get(
                            &format!("{}.weight", se.fc2),
                            &[se.channels, se.squeeze, 1, 1],
                        )?,
                        b2: r.get(&format!("{}.bias", se.fc2), &[se.channels])?,
                    })
                }
                OpKind::Linear(l) => OpParams::Linear(LinearParams {
                    weight: r.get(&l.weight, &[l.out_features, l.in_features])?,
                    bias: match &l.bias {
                        Some(b) => r.get(b, &[l.out_features])?,
                        None => vec![0.0; l.out_features],
                    },
                }),
                _ => continue,
            };
            ops.insert(op.name.clone(), p);
        }
        let mut left: Vec<String> =
            r.st.names()
                .filter(|n| !r.used.contains(*n) && !n.ends_with("num_batches_tracked"))
                .map(str::to_string)
                .collect();
        if !left.is_empty() {
            left.sort();
            return Err(Error::UnexpectedTensors {
                count: left.len(),
                examples: left
                    .iter()
                    .take(3)
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(Weights {
            ops,
            source: label.display().to_string(),
        })
    }

    /// Deterministic random weights for `plan` (He-style scaling, so activations stay in range).
    /// For demos, tests and benchmarks: they classify nothing.
    pub fn random(plan: &Plan, seed: u64) -> Weights {
        let mut rng = SplitMix::new(seed ^ 0x0005_eed0_f4e6_70e7);
        let mut uniform = |n: usize, bound: f64| -> Vec<f32> {
            (0..n)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                .collect()
        };
        let mut ops = HashMap::new();
        for op in &plan.ops {
            let p = match &op.kind {
                OpKind::Conv2d(c) | OpKind::DeformConv2d(DeformConv2d { conv: c, .. }) => {
                    let fan_in = c.in_channels / c.groups * c.kernel[0] * c.kernel[1];
                    // U(-a, a) has variance a^2 / 3: a = sqrt(6 / fan_in) gives He's 2 / fan_in;
                    // convs that end a residual branch get a smaller gain.
                    let gain = if c.residual.is_some() { 0.5 } else { 1.0 };
                    let n = c.weight_shape().iter().product();
                    OpParams::Conv(ConvParams {
                        weight: uniform(n, gain * (6.0 / fan_in as f64).sqrt()),
                        bias: uniform(c.out_channels, 0.1),
                    })
                }
                OpKind::SqueezeExcite(se) => OpParams::Se(SeParams {
                    w1: uniform(se.squeeze * se.channels, (6.0 / se.channels as f64).sqrt()),
                    b1: uniform(se.squeeze, 0.1),
                    w2: uniform(se.channels * se.squeeze, (3.0 / se.squeeze as f64).sqrt()),
                    b2: uniform(se.channels, 0.1),
                }),
                OpKind::Linear(l) => OpParams::Linear(LinearParams {
                    weight: uniform(
                        l.in_features * l.out_features,
                        (3.0 / l.in_features as f64).sqrt(),
                    ),
                    bias: uniform(l.out_features, 0.1),
                }),
                _ => continue,
            };
            ops.insert(op.name.clone(), p);
        }
        Weights {
            ops,
            source: format!("random(seed={seed})"),
        }
    }

    /// Sets the parameters of the op named `name` (weights made in code: [`crate::ops`]).
    pub fn insert(&mut self, name: &str, params: OpParams) {
        self.ops.insert(name.to_string(), params);
    }

    /// The parameters of the op named `name`.
    pub fn get(&self, name: &str) -> Result<&OpParams> {
        self.ops.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            context: format!(
                " (no parameters for this op in weights from {})",
                self.source
            ),
        })
    }

    /// The folded convolution named `name`.
    pub fn conv(&self, name: &str) -> Result<&ConvParams> {
        match self.get(name)? {
            OpParams::Conv(c) => Ok(c),
            _ => Err(Error::Input(format!("op `{name}` is not a convolution"))),
        }
    }

    /// The folded convolution named `name`, to change (pruning, perturbation experiments).
    pub fn conv_mut(&mut self, name: &str) -> Result<&mut ConvParams> {
        match self.ops.get_mut(name) {
            Some(OpParams::Conv(c)) => Ok(c),
            _ => Err(Error::Input(format!("no convolution named `{name}`"))),
        }
    }

    /// The squeeze-and-excitation named `name`.
    pub fn se(&self, name: &str) -> Result<&SeParams> {
        match self.get(name)? {
            OpParams::Se(s) => Ok(s),
            _ => Err(Error::Input(format!(
                "op `{name}` is not a squeeze-and-excitation"
            ))),
        }
    }

    /// The linear layer named `name`.
    pub fn linear(&self, name: &str) -> Result<&LinearParams> {
        match self.get(name)? {
            OpParams::Linear(l) => Ok(l),
            _ => Err(Error::Input(format!("op `{name}` is not a linear layer"))),
        }
    }

    /// Total number of f32 parameters held (after folding).
    pub fn len(&self) -> usize {
        self.ops
            .values()
            .map(|p| match p {
                OpParams::Conv(c) => c.weight.len() + c.bias.len(),
                OpParams::Se(s) => s.w1.len() + s.b1.len() + s.w2.len() + s.b2.len(),
                OpParams::Linear(l) => l.weight.len() + l.bias.len(),
            })
            .sum()
    }

    /// True when no op has parameters.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
