//! A model's weights on a device, uploaded once, with the compiled kernels: any number of
//! [`GpuRunner`](super::GpuRunner)s (batch sizes, input sizes) share one [`GpuModel`].

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::kernels::{Kernels, ShaderChecks, TEXTURE_ROW};
use super::lower::{
    pack_conv_weights, pack_linear, pack_squeeze_excite, split_conv, split_linear, ConvPart,
};
use super::operands;
use super::runner::RunnerOptions;
use super::{GpuContext, Precision};
use crate::error::{Error, Result};
use crate::plan::{DeformConv2d, Op, OpKind, Plan};
use crate::weights::Weights;

/// The largest workgroup any kernel dispatches.
pub(crate) const MAX_WORKGROUP: u32 = 64;

/// Storage bindings per shader stage the kernels use at most (`conv.wgsl`: x, w, bias,
/// residual, gate, y, status).
const MAX_STORAGE_BINDINGS: u32 = 7;

/// One op's buffers: a convolution's parts (one weight buffer each), or the one weight buffer
/// of squeeze-and-excitation and linear ops; and the biases (f32). A model with texture
/// operands holds each convolution part's and each squeeze-and-excitation's weights as a
/// texture instead
/// ([`Operands::Texture`](super::kernels::Operands::Texture)), `texture_bytes` in all.
#[derive(Debug)]
pub(crate) struct OpBuffers {
    pub parts: Vec<ConvPart>,
    pub weights: Vec<wgpu::Buffer>,
    pub weight_textures: Vec<wgpu::TextureView>,
    pub texture_bytes: u64,
    pub bias: wgpu::Buffer,
}

#[derive(Debug)]
struct ModelInner {
    ctx: GpuContext,
    ops: Vec<Op>,
    precision: Precision,
    max_binding_bytes: Option<u64>,
    shader_checks: ShaderChecks,
    subgroups_requested: bool,
    subgroups: bool,
    textures_requested: Option<bool>,
    textures: bool,
    kernels: Arc<Kernels>,
    buffers: Vec<Option<OpBuffers>>,
    weight_bytes: u64,
}

/// A plan's weights uploaded to a device once, in the layout its kernels read, and the
/// compiled kernels (shader modules and a pipeline cache). Cheap to clone (shared).
///
/// ```no_run
/// use regnet_wgpu::gpu::{GpuContext, GpuModel, GpuRunner, RunnerOptions};
/// use regnet_wgpu::{zoo, Plan, Tensor, Weights};
/// let ctx = GpuContext::new(Default::default())?;
/// let params = zoo::get("regnet_y_400mf")?;
/// let plan = Plan::new(&params, 224, 224)?;
/// let weights = Weights::random(&plan, 0);
/// let model = GpuModel::new(&ctx, &plan, &weights, &RunnerOptions::default())?;
/// // One runner per batch size and input size, one copy of the weights.
/// let one = GpuRunner::with_model(&model, &plan, RunnerOptions::default())?;
/// let eight = GpuRunner::with_model(&model, &plan, RunnerOptions { batch: 8, ..Default::default() })?;
/// let small = GpuRunner::with_model(&model, &Plan::new(&params, 160, 160)?, RunnerOptions::default())?;
/// assert_eq!(one.run(&Tensor::zeros(vec![1, 3, 224, 224]))?.shape, [1, 1000]);
/// # Ok::<(), regnet_wgpu::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct GpuModel {
    inner: Arc<ModelInner>,
}

/// `data` in the storage precision, as bytes (a non-zero multiple of 4, as storage bindings must
/// be); an error naming `what` when a value does not fit f16.
pub(crate) fn to_store(data: &[f32], precision: Precision, what: &str) -> Result<Vec<u8>> {
    let mut bytes: Vec<u8> = match precision {
        Precision::F32 => bytemuck::cast_slice(data).to_vec(),
        Precision::F16 => {
            if let Some(i) = data.iter().position(|v| v.abs() >= F16_LIMIT) {
                return Err(Error::PrecisionOverflow {
                    precision: "f16",
                    what: format!("{what}: value {} at flat index {i}", data[i]),
                });
            }
            data.iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect()
        }
    };
    bytes.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
    Ok(bytes)
}

/// Whether a model on `ctx` reads its convolutions' operands from textures: as `requested`,
/// or by default on CPU-backed adapters (`wgpu::DeviceType::Cpu`) whose 2-D textures are at
/// least [`TEXTURE_ROW`] wide.
pub(crate) fn texture_operands(ctx: &GpuContext, requested: Option<bool>) -> Result<bool> {
    let fits = ctx.device.limits().max_texture_dimension_2d >= TEXTURE_ROW;
    match requested {
        Some(true) if !fits => Err(Error::DeviceLimit {
            what: "texture operands".into(),
            limit: "max_texture_dimension_2d",
            have: ctx.device.limits().max_texture_dimension_2d as u64,
            needed: TEXTURE_ROW as u64,
            advice: "; set RunnerOptions::textures to Some(false)".into(),
        }),
        Some(t) => Ok(t),
        None => Ok(fits && ctx.info.device_type == wgpu::DeviceType::Cpu),
    }
}

/// The smallest magnitude f16 cannot hold (it rounds to infinity); 65504 is f16's largest.
pub(crate) const F16_LIMIT: f32 = 65520.0;

/// The largest buffer a storage binding of the device may hold.
pub(crate) fn max_binding(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
}

/// Names the first limit of the device below what the kernels need.
fn check_limits(ctx: &GpuContext) -> Result<()> {
    let l = ctx.device.limits();
    let need = [
        ("max_bind_groups", l.max_bind_groups, 1),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage,
            MAX_STORAGE_BINDINGS,
        ),
        (
            "max_uniform_buffers_per_shader_stage",
            l.max_uniform_buffers_per_shader_stage,
            1,
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup,
            MAX_WORKGROUP,
        ),
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x,
            MAX_WORKGROUP,
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size,
            256,
        ),
    ];
    match need.iter().find(|(_, have, want)| have < want) {
        Some((limit, have, want)) => Err(Error::DeviceLimit {
            what: format!("the runner on `{}`", ctx.info.name),
            limit,
            have: *have as u64,
            needed: *want as u64,
            advice: "; request it when creating the device (regnet-wgpu requests nothing of a host's device)"
                .into(),
        }),
        None => Ok(()),
    }
}

/// Runs `f` inside validation and out-of-memory error scopes: wgpu's errors become named
/// errors instead of reaching the device's uncaptured-error handler.
pub(crate) fn scoped<T>(
    device: &wgpu::Device,
    what: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let out = f();
    // Error scopes resolve at once on native; no executor in the core path (WebGPU reports
    // what is still pending to the device's error handler).
    let oom_err = super::readback::ready_now(oom.pop()).flatten();
    let val_err = super::readback::ready_now(validation.pop()).flatten();
    let out = out?;
    if let Some(e) = oom_err {
        return Err(Error::OutOfMemory(format!("while {what}: {e}")));
    }
    if let Some(e) = val_err {
        return Err(Error::Gpu(format!("{what} failed: {e}")));
    }
    Ok(out)
}

/// Uploads ops' weights in their kernels' layouts, checked against the binding limit.
struct Uploader<'a> {
    device: &'a wgpu::Device,
    queue: &'a wgpu::Queue,
    precision: Precision,
    limit: u64,
    /// Convolution and squeeze-and-excitation weights go into textures instead of storage
    /// buffers.
    textures: bool,
}

impl Uploader<'_> {
    /// A storage buffer holding `data` in `precision`; `what` names it in errors.
    fn upload(&self, what: &str, data: &[f32], precision: Precision) -> Result<wgpu::Buffer> {
        let bytes = to_store(data, precision, what)?;
        if bytes.len() as u64 > self.limit {
            return Err(Error::binding_limit(
                format!("{what} ({} bytes)", bytes.len()),
                self.limit,
                bytes.len() as u64,
                "",
            ));
        }
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents: &bytes,
                usage: wgpu::BufferUsages::STORAGE,
            }))
    }

    /// A texture holding `data` in `precision` as vec4 texels, [`TEXTURE_ROW`] a row (the
    /// layout `operands_texture.wgsl` reads), padded with zeros to whole rows.
    /// Returns its view and its bytes.
    fn upload_texture(&self, what: &str, data: &[f32]) -> Result<(wgpu::TextureView, u64)> {
        let mut bytes = to_store(data, self.precision, what)?;
        let texel = operands::texel_bytes(self.precision);
        let rows = operands::rows((bytes.len() as u64).div_ceil(texel));
        operands::check_rows(&self.device.limits(), what, rows)?;
        bytes.resize((rows * TEXTURE_ROW as u64 * texel) as usize, 0);
        let texture = self.device.create_texture_with_data(
            self.queue,
            &operands::descriptor(what, rows as u32, self.precision),
            wgpu::util::TextureDataOrder::LayerMajor,
            &bytes,
        );
        Ok((texture.create_view(&Default::default()), bytes.len() as u64))
    }

    /// The buffers of one op: weights in the storage precision (a convolution's split into
    /// parts of at most `split_at` bytes), biases in f32; `None` for ops without weights.
    fn op(&self, op: &Op, weights: &Weights, split_at: u64) -> Result<Option<OpBuffers>> {
        let what = format!("the weights of `{}`", op.name);
        let bias_name = format!("the biases of `{}`", op.name);
        let mut textures = Vec::new();
        let (parts, ws, bias) = match &op.kind {
            OpKind::Conv2d(c) | OpKind::DeformConv2d(DeformConv2d { conv: c, .. }) => {
                let p = weights.conv(&op.name)?;
                let parts = split_conv(c, self.precision.bytes(), split_at, &op.name)?;
                let packed: Vec<Vec<f32>> = parts
                    .iter()
                    .map(|part| pack_conv_weights(c, &p.weight, part))
                    .collect();
                let ws = if self.textures && matches!(op.kind, OpKind::Conv2d(_)) {
                    textures = packed
                        .iter()
                        .map(|w| self.upload_texture(&what, w))
                        .collect::<Result<Vec<_>>>()?;
                    Vec::new()
                } else {
                    packed
                        .iter()
                        .map(|w| self.upload(&what, w, self.precision))
                        .collect::<Result<Vec<_>>>()?
                };
                (parts, ws, p.bias.clone())
            }
            OpKind::SqueezeExcite(se) => {
                let p = weights.se(&op.name)?;
                let w = pack_squeeze_excite(se, &p.w1, &p.w2);
                let bias = p.b1.iter().chain(&p.b2).copied().collect();
                let ws = if self.textures {
                    textures.push(self.upload_texture(&what, &w)?);
                    Vec::new()
                } else {
                    vec![self.upload(&what, &w, self.precision)?]
                };
                (Vec::new(), ws, bias)
            }
            OpKind::Linear(l) => {
                let p = weights.linear(&op.name)?;
                let w = pack_linear(l, &p.weight);
                let row = l.in_features.div_ceil(4) * 4;
                let parts = split_linear(l, self.precision.bytes(), split_at, &op.name)?;
                let ws = parts
                    .iter()
                    .map(|part| {
                        let rows = &w[part.first_row * row..(part.first_row + part.rows) * row];
                        self.upload(&what, rows, self.precision)
                    })
                    .collect::<Result<Vec<_>>>()?;
                (parts, ws, p.bias.clone())
            }
            _ => return Ok(None),
        };
        let texture_bytes = textures.iter().map(|(_, b)| b).sum();
        Ok(Some(OpBuffers {
            parts,
            weights: ws,
            weight_textures: textures.into_iter().map(|(v, _)| v).collect(),
            texture_bytes,
            bias: self.upload(&bias_name, &bias, Precision::F32)?,
        }))
    }
}

impl GpuModel {
    /// Uploads `weights` (for `plan`'s ops) and compiles the kernels, with the model-level
    /// fields of `opts`: `precision`, `max_binding_bytes`, `shader_checks`, `subgroups`.
    pub fn new(
        ctx: &GpuContext,
        plan: &Plan,
        weights: &Weights,
        opts: &RunnerOptions,
    ) -> Result<Self> {
        Self::for_ops(ctx, &plan.ops, weights, opts)
    }

    /// [`GpuModel::new`] for any ops (a plan's, or one op's from [`crate::ops`]).
    pub(crate) fn for_ops(
        ctx: &GpuContext,
        ops: &[Op],
        weights: &Weights,
        opts: &RunnerOptions,
    ) -> Result<Self> {
        scoped(&ctx.device, "uploading the model", || {
            Self::build(ctx, ops, weights, opts)
        })
    }

    fn build(
        ctx: &GpuContext,
        ops: &[Op],
        weights: &Weights,
        opts: &RunnerOptions,
    ) -> Result<Self> {
        let prec = opts.precision;
        if prec == Precision::F16 && !ctx.has_f16() {
            return Err(Error::UnsupportedFeature {
                feature: "shader-f16",
                adapter: ctx.info.name.clone(),
                needed_for: "f16 storage".into(),
            });
        }
        check_limits(ctx)?;
        let textures = texture_operands(ctx, opts.textures)?;
        let up = Uploader {
            device: &ctx.device,
            queue: &ctx.queue,
            precision: prec,
            limit: max_binding(&ctx.device.limits()),
            textures,
        };
        let split_at = up.limit.min(opts.max_binding_bytes.unwrap_or(u64::MAX));
        let buffers = ops
            .iter()
            .map(|op| up.op(op, weights, split_at))
            .collect::<Result<Vec<_>>>()?;
        let weight_bytes = buffers
            .iter()
            .flatten()
            .map(|b| {
                let buffers: u64 = b.weights.iter().chain([&b.bias]).map(|w| w.size()).sum();
                buffers + b.texture_bytes
            })
            .sum();
        let subgroups = opts.subgroups && ctx.has_subgroups();
        Ok(GpuModel {
            inner: Arc::new(ModelInner {
                ctx: ctx.clone(),
                ops: ops.to_vec(),
                precision: prec,
                max_binding_bytes: opts.max_binding_bytes,
                shader_checks: opts.shader_checks,
                subgroups_requested: opts.subgroups,
                subgroups,
                textures_requested: opts.textures,
                textures,
                kernels: ctx.kernels(prec, subgroups, opts.shader_checks, textures),
                buffers,
                weight_bytes,
            }),
        })
    }

    /// The context the model lives on.
    pub fn context(&self) -> &GpuContext {
        &self.inner.ctx
    }

    /// The storage precision.
    pub fn precision(&self) -> Precision {
        self.inner.precision
    }

    /// Whether the kernels run their subgroup entry points where the tile rules call for them.
    pub fn subgroups(&self) -> bool {
        self.inner.subgroups
    }

    /// Whether the convolutions read their inputs and weights from textures
    /// ([`RunnerOptions::textures`]).
    pub fn textures(&self) -> bool {
        self.inner.textures
    }

    /// Bytes of weight and bias buffers (and weight textures, with texture operands).
    pub fn weight_bytes(&self) -> u64 {
        self.inner.weight_bytes
    }

    /// Number of distinct compute pipelines compiled so far, shared by every model and runner
    /// made on the same context at the same precision and checks.
    pub fn pipelines(&self) -> usize {
        self.inner.kernels.pipeline_count()
    }

    pub(crate) fn kernels(&self) -> &Kernels {
        &self.inner.kernels
    }

    pub(crate) fn op_buffers(&self, op: usize) -> Option<&OpBuffers> {
        self.inner.buffers.get(op).and_then(|b| b.as_ref())
    }

    /// Checks that a runner for `plan` with `opts` can use this model: the same ops (names,
    /// kinds, channels; any input size) and the same model-level options.
    pub(crate) fn check_compatible(&self, plan: &Plan, opts: &RunnerOptions) -> Result<()> {
        let m = &self.inner;
        if plan.ops != m.ops {
            let differs = plan
                .ops
                .iter()
                .zip(&m.ops)
                .find(|(a, b)| a != b)
                .map_or("a different number of ops".to_string(), |(a, _)| {
                    format!("op `{}` differs", a.name)
                });
            return Err(Error::Input(format!(
                "the plan is not the model's: {differs} (the same model at another input size is fine)"
            )));
        }
        let mismatch = [
            ("precision", opts.precision != m.precision),
            (
                "max_binding_bytes",
                opts.max_binding_bytes != m.max_binding_bytes,
            ),
            ("shader_checks", opts.shader_checks != m.shader_checks),
            ("subgroups", opts.subgroups != m.subgroups_requested),
            ("textures", opts.textures != m.textures_requested),
        ];
        if let Some((field, _)) = mismatch.iter().find(|(_, d)| *d) {
            return Err(Error::Input(format!(
                "RunnerOptions::{field} differs from the model's: it is set when the model is made"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_storage_refuses_values_it_cannot_hold() {
        assert_eq!(to_store(&[65504.0], Precision::F16, "w").unwrap().len(), 4);
        // 65519 rounds to 65504; 65520 rounds to infinity.
        to_store(&[-65519.0], Precision::F16, "w").unwrap();
        let e = to_store(&[1.0, 7e4], Precision::F16, "the input").unwrap_err();
        assert!(
            matches!(&e, Error::PrecisionOverflow { what, .. } if what.contains("the input") && what.contains("index 1")),
            "{e}"
        );
        assert!(half::f16::from_f32(65519.0).is_finite());
        assert!(half::f16::from_f32(F16_LIMIT).is_infinite());
        // f32 storage holds any finite value.
        to_store(&[7e4, 3e38], Precision::F32, "x").unwrap();
    }
}
