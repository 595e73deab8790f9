//! The graph runner: a plan and its weights compiled once into pipelines, buffers and bind
//! groups for one (model, batch, height, width, precision); then every inference is one queue
//! submission that dispatches op by op and reads back only the logits (and any taps asked for).

use std::sync::{mpsc, Mutex};

use wgpu::util::DeviceExt;

use super::kernels::{act_code, Family, Kernels, Variant, SUBGROUP_SIZE};
use super::tiling::Tiling;
use super::{GpuContext, Precision};
use crate::error::{Error, Result};
use crate::plan::{Conv2d, OpKind, Plan, ValueId};
use crate::tensor::{check_image_batch, Tensor};
use crate::weights::Weights;

/// What a runner is built for, besides the plan.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Images per inference.
    pub batch: usize,
    /// Storage precision.
    pub precision: Precision,
    /// Intermediate values to read back with the logits (`stem`, `block1`, ...).
    pub taps: Vec<String>,
    /// Split convolutions whose weights exceed this many bytes (in any case the device's
    /// storage binding limit applies); `None`: the device's limit. Lowering it exercises the
    /// splitting that the largest models need on small adapters.
    pub max_binding_bytes: Option<u64>,
    /// The kernels' register tiles; `None`: the rules of the adapter's type
    /// ([`Tiling::for_adapter`]).
    pub tiling: Option<Tiling>,
    /// Use subgroup operations where the device has them and the tile rules call for them
    /// ([`GpuContext::has_subgroups`], [`Tiling::pointwise_subgroup`]); default true. Turning
    /// them off changes speed, never results.
    pub subgroups: bool,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            batch: 1,
            precision: Precision::F32,
            taps: Vec::new(),
            max_binding_bytes: None,
            tiling: None,
            subgroups: true,
        }
    }
}

/// Where a value lives.
#[derive(Clone, Copy, Debug)]
enum Loc {
    /// The input buffer.
    Input,
    /// A pooled activation buffer (slot index).
    Slot(usize),
    /// The logits buffer.
    Logits,
}

/// A buffer a bind group refers to, resolved once all buffers exist.
#[derive(Clone, Copy, Debug)]
enum BufRef {
    Value(Loc),
    Own(usize),
    Dummy,
}

struct StepPlan {
    label: String,
    variant: Variant,
    params: Vec<u32>,
    buffers: Vec<BufRef>,
    workgroups: u64,
}

struct Step {
    label: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    grid: (u32, u32),
}

/// Every buffer a bind group may refer to.
struct Buffers {
    input: wgpu::Buffer,
    logits: wgpu::Buffer,
    slots: Vec<wgpu::Buffer>,
    own: Vec<wgpu::Buffer>,
    dummy: wgpu::Buffer,
    uniforms: wgpu::Buffer,
    uniform_stride: u64,
}

impl Buffers {
    fn resolve(&self, r: &BufRef) -> &wgpu::Buffer {
        match r {
            BufRef::Value(Loc::Input) => &self.input,
            BufRef::Value(Loc::Logits) => &self.logits,
            BufRef::Value(Loc::Slot(s)) => &self.slots[*s],
            BufRef::Own(i) => &self.own[*i],
            BufRef::Dummy => &self.dummy,
        }
    }

    /// The bind group of step `k`: its parameters in the uniform buffer, then its buffers.
    fn bind_group(
        &self,
        device: &wgpu::Device,
        kernels: &Kernels,
        k: usize,
        s: &StepPlan,
    ) -> wgpu::BindGroup {
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.uniforms,
                offset: k as u64 * self.uniform_stride,
                size: wgpu::BufferSize::new((s.params.len() * 4) as u64),
            }),
        }];
        for (j, r) in s.buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: j as u32 + 1,
                resource: self.resolve(r).as_entire_binding(),
            });
        }
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&s.label),
            layout: kernels.bind_group_layout(s.variant.family),
            entries: &entries,
        })
    }
}

struct TapOut {
    name: String,
    loc: Loc,
    shape: Vec<usize>,
    bytes: u64,
    staging: wgpu::Buffer,
}

/// A compiled RegNet on a wgpu device.
///
/// ```no_run
/// use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions};
/// use regnet_wgpu::{zoo, Plan, Tensor, Weights};
/// let ctx = GpuContext::new(Precision::F32)?;
/// let plan = Plan::new(&zoo::get("regnet_y_400mf")?, 224, 224)?;
/// let weights = Weights::random(&plan, 0);
/// let runner = GpuRunner::new(&ctx, &plan, &weights, RunnerOptions::default())?;
/// let logits = runner.run(&Tensor::zeros(vec![1, 3, 224, 224]))?;
/// assert_eq!(logits.shape, [1, 1000]);
/// # Ok::<(), regnet_wgpu::Error>(())
/// ```
pub struct GpuRunner {
    ctx: GpuContext,
    batch: usize,
    precision: Precision,
    input_shape: Vec<usize>,
    input_bytes: u64,
    classes: usize,
    bufs: Buffers,
    readback: wgpu::Buffer,
    kernels: Kernels,
    plans: Vec<StepPlan>,
    steps: Vec<Step>,
    taps: Vec<TapOut>,
    peak_activation_bytes: u64,
    weight_bytes: u64,
    pipelines: usize,
    lock: Mutex<()>,
}

fn to_store(data: &[f32], precision: Precision) -> Vec<u8> {
    let mut bytes: Vec<u8> = match precision {
        Precision::F32 => bytemuck::cast_slice(data).to_vec(),
        Precision::F16 => data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
    };
    // Storage bindings must be a non-zero multiple of 4 bytes.
    bytes.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
    bytes
}

fn from_store(bytes: &[u8], n: usize, precision: Precision) -> Vec<f32> {
    match precision {
        Precision::F32 => bytemuck::cast_slice::<u8, f32>(&bytes[..n * 4]).to_vec(),
        Precision::F16 => bytes[..n * 2]
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

fn align4(n: u64) -> u64 {
    n.div_ceil(4).max(1) * 4
}

/// Activation buffers are sized in whole vec4s of f32 so that vec4 views of them are valid.
fn align16(n: u64) -> u64 {
    n.div_ceil(16).max(1) * 16
}

/// The largest workgroup any kernel dispatches.
const MAX_WORKGROUP: u32 = 64;

/// The spatial shape of a convolution for a batch.
struct ConvShape {
    batch: u64,
    in_h: u64,
    in_w: u64,
    out_h: u64,
    out_w: u64,
}

/// A range of a convolution's output channels dispatched with its own weight buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConvPart {
    first_row: usize,
    rows: usize,
}

/// Splits a convolution whose weights exceed `max_binding` bytes into parts that each fit:
/// ranges of whole groups, or (a single group) ranges of output channels. One part when it fits.
fn split_conv(c: &Conv2d, row_bytes: u64, max_binding: u64) -> Vec<ConvPart> {
    let cout_g = c.out_channels / c.groups;
    let rows_fit = (max_binding / row_bytes.max(1)).max(1) as usize;
    // A part is whole groups when a group fits, else a channel range of one group.
    let step = if cout_g <= rows_fit {
        (rows_fit / cout_g) * cout_g
    } else {
        rows_fit
    };
    let mut parts = Vec::new();
    let mut first = 0;
    while first < c.out_channels {
        // Never let a part straddle a group boundary when splitting inside groups.
        let group_end = if cout_g <= rows_fit {
            c.out_channels
        } else {
            (first / cout_g + 1) * cout_g
        };
        let rows = step.min(group_end - first);
        parts.push(ConvPart {
            first_row: first,
            rows,
        });
        first += rows;
    }
    parts
}

/// A part's weights in the layout its kernel loads as vec4, output channels innermost and
/// padded with zeros to a multiple of 4: pointwise `[in, oc_pad]`; direct
/// `[part groups, in / groups, kh, kw, oc_pad]` (the part's groups as in `conv_dispatch`).
fn pack_conv_weights(c: &Conv2d, w: &[f32], part: &ConvPart) -> Vec<f32> {
    let cout_g = c.out_channels / c.groups;
    let per_oc = (c.in_channels / c.groups) * c.kernel[0] * c.kernel[1];
    // (first channel of each group in the part, channels per group in the part)
    let (groups, part_cout): (Vec<usize>, usize) = if part.rows >= cout_g {
        (
            (0..part.rows / cout_g)
                .map(|k| part.first_row + k * cout_g)
                .collect(),
            cout_g,
        )
    } else {
        (vec![part.first_row], part.rows)
    };
    let oc_pad = part_cout.div_ceil(4) * 4;
    let mut out = vec![0.0; groups.len() * per_oc * oc_pad];
    for (gl, &first) in groups.iter().enumerate() {
        for j in 0..part_cout {
            let row = &w[(first + j) * per_oc..(first + j + 1) * per_oc];
            for (k, &v) in row.iter().enumerate() {
                // k = (c * kh + ky) * kw + kx: one input tap
                out[(gl * per_oc + k) * oc_pad + j] = v;
            }
        }
    }
    out
}

/// The pipeline variant (kernel family, shape constants, tile, workgroup size), the
/// parameters and the workgroup count of one part of a convolution.
fn conv_dispatch(
    c: &Conv2d,
    s: &ConvShape,
    part: &ConvPart,
    tiling: Tiling,
    subgroups: bool,
    name: &str,
) -> Result<(Variant, Vec<u32>, u64)> {
    let hw = s.out_h * s.out_w;
    let cout_g = c.out_channels / c.groups;
    let pointwise = c.kernel == [1, 1] && c.padding == 0 && c.groups == 1;
    let mut params = vec![
        s.batch,
        c.in_channels as u64,
        s.in_h,
        s.in_w,
        c.out_channels as u64,
        s.out_h,
        s.out_w,
        c.groups as u64,
        c.padding as u64,
    ];
    let (family, tile, wg, total);
    let subgroup;
    if pointwise {
        // One invocation per (image, block of TM output channels, tile of TN pixels); the
        // subgroup entry point has the blocks innermost and rounds up to whole subgroups.
        let [tm, tn] = tiling.pointwise();
        let ocb = (part.rows as u64).div_ceil(tm as u64);
        let tiles = hw.div_ceil(tn as u64);
        subgroup = subgroups && tiling.pointwise_subgroup(ocb);
        let invocations = if subgroup {
            let lanes = SUBGROUP_SIZE as u64;
            (s.batch * tiles * ocb).div_ceil(lanes) * lanes
        } else {
            s.batch * ocb * tiles
        };
        wg = tiling.workgroup(invocations);
        total = invocations.div_ceil(wg as u64);
        params.extend([
            ocb,
            tiles,
            invocations,
            0,
            part.first_row as u64,
            part.rows as u64,
            (part.rows as u64).div_ceil(4),
            (s.batch * c.in_channels as u64 * s.in_h * s.in_w).div_ceil(4),
            (s.batch * c.out_channels as u64 * hw).div_ceil(4),
        ]);
        (family, tile) = (Family::ConvPointwise, [tm, tn]);
    } else {
        // One invocation per (image, group, block of OCN channels, row tile of PX pixels).
        let [ocn, px] = tiling
            .conv(cout_g, c.kernel[1], c.stride, s.out_w)
            .ok_or_else(|| {
                Error::Gpu(format!(
                "conv `{name}`: kernel {:?} with stride {} is wider than the conv kernel supports",
                c.kernel, c.stride
            ))
            })?;
        let (g_begin, part_groups, part_cout, oc_skip) = if part.rows >= cout_g {
            (part.first_row / cout_g, part.rows / cout_g, cout_g, 0)
        } else {
            (
                part.first_row / cout_g,
                1,
                part.rows,
                part.first_row % cout_g,
            )
        };
        let ocb = (part_cout as u64).div_ceil(ocn as u64);
        let per_row = s.out_w.div_ceil(px as u64);
        let tiles = s.out_h * per_row;
        // The subgroup entry point pads each (image, group, block)'s tiles to whole subgroups.
        subgroup = subgroups && tiling.conv_subgroup(c.kernel, ocn, tiles);
        let lanes = SUBGROUP_SIZE as u64;
        let tiles_pad = tiles.div_ceil(lanes) * lanes;
        let per_combo = if subgroup { tiles_pad } else { tiles };
        let invocations = s.batch * part_groups as u64 * ocb * per_combo;
        wg = tiling.workgroup(invocations);
        total = invocations.div_ceil(wg as u64);
        params.extend([ocb, per_row, invocations, tiles_pad]);
        params.extend(
            [
                g_begin,
                part_groups,
                part_cout,
                oc_skip,
                part_cout.div_ceil(4),
            ]
            .map(|v| v as u64),
        );
        params.push((s.batch * c.in_channels as u64 * s.in_h * s.in_w).div_ceil(4));
        (family, tile) = (Family::Conv, [ocn, px]);
    }
    if total * wg as u64 > u32::MAX as u64 || params.iter().any(|&v| v > u32::MAX as u64) {
        return Err(Error::Gpu(format!(
            "conv `{name}` is too large to dispatch ({total} workgroups)"
        )));
    }
    params.resize(20, 0);
    let variant = Variant {
        family,
        act: 0,
        residual: false,
        gate: false,
        kernel: [c.kernel[0] as u32, c.kernel[1] as u32, c.stride as u32],
        tile,
        aligned: hw.is_multiple_of(4),
        subgroup,
        wg,
    };
    Ok((
        variant,
        params.into_iter().map(|v| v as u32).collect(),
        total,
    ))
}

/// Activation buffers reused by liveness: a value takes the best-fitting free slot (growing the
/// largest free one when none fits) and gives it back once its last reader has run.
#[derive(Default)]
struct SlotPlanner {
    sizes: Vec<u64>,
    free: Vec<usize>,
    refs: Vec<usize>,
}

impl SlotPlanner {
    fn take(&mut self, bytes: u64) -> usize {
        let fit = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, &s)| self.sizes[s] >= bytes)
            .min_by_key(|(_, &s)| self.sizes[s])
            .map(|(i, _)| i);
        let slot = match fit {
            Some(i) => self.free.swap_remove(i),
            None => match self
                .free
                .iter()
                .enumerate()
                .max_by_key(|(_, &s)| self.sizes[s])
                .map(|(i, _)| i)
            {
                Some(i) => {
                    let s = self.free.swap_remove(i);
                    self.sizes[s] = bytes;
                    s
                }
                None => {
                    self.sizes.push(bytes);
                    self.refs.push(0);
                    self.sizes.len() - 1
                }
            },
        };
        self.refs[slot] = 1;
        slot
    }

    fn retain(&mut self, slot: usize) {
        self.refs[slot] += 1;
    }

    fn release(&mut self, slot: usize) {
        self.refs[slot] -= 1;
        if self.refs[slot] == 0 {
            self.free.push(slot);
        }
    }
}

impl GpuRunner {
    /// Compiles `plan` with `weights` for `opts.batch` images at `opts.precision`.
    pub fn new(
        ctx: &GpuContext,
        plan: &Plan,
        weights: &Weights,
        opts: RunnerOptions,
    ) -> Result<Self> {
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let built = Self::build(ctx, plan, weights, opts);
        // Error scopes resolve at once on native; no executor in the core path (WebGPU
        // reports what is still pending to the device's error handler).
        let oom_err = super::readback::ready_now(oom.pop()).flatten();
        let val_err = super::readback::ready_now(scope.pop()).flatten();
        let runner = built?;
        if let Some(e) = oom_err {
            return Err(Error::Gpu(format!(
                "out of device memory while building the runner: {e}"
            )));
        }
        if let Some(e) = val_err {
            return Err(Error::Gpu(format!("building the runner failed: {e}")));
        }
        Ok(runner)
    }

    fn build(
        ctx: &GpuContext,
        plan: &Plan,
        weights: &Weights,
        opts: RunnerOptions,
    ) -> Result<Self> {
        let device = &ctx.device;
        let limits = device.limits();
        let prec = opts.precision;
        if opts.batch == 0 {
            return Err(Error::Input("batch must be at least 1".into()));
        }
        if prec == Precision::F16 && !ctx.has_f16() {
            return Err(Error::Gpu(format!(
                "device on `{}` does not have the `shader-f16` feature enabled; f16 needs it",
                ctx.info.name
            )));
        }
        // A host's device: the runner requests nothing; it checks and names every shortfall.
        let need = [
            ("max_bind_groups", limits.max_bind_groups, 1),
            (
                "max_storage_buffers_per_shader_stage",
                limits.max_storage_buffers_per_shader_stage,
                6,
            ),
            (
                "max_uniform_buffers_per_shader_stage",
                limits.max_uniform_buffers_per_shader_stage,
                1,
            ),
            (
                "max_compute_invocations_per_workgroup",
                limits.max_compute_invocations_per_workgroup,
                MAX_WORKGROUP,
            ),
            (
                "max_compute_workgroup_size_x",
                limits.max_compute_workgroup_size_x,
                MAX_WORKGROUP,
            ),
            (
                "max_compute_workgroup_storage_size",
                limits.max_compute_workgroup_storage_size,
                256,
            ),
        ];
        let missing: Vec<String> = need
            .iter()
            .filter(|(_, have, want)| have < want)
            .map(|(name, have, want)| format!("{name} is {have}, needs {want}"))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Gpu(format!(
                "the device on `{}` lacks what the runner needs: {}; request these limits when \
                 creating the device (regnet-wgpu requests nothing of a host's device)",
                ctx.info.name,
                missing.join(", ")
            )));
        }
        let n = opts.batch as u64;
        let esize = prec.bytes();
        let tiling = opts
            .tiling
            .unwrap_or_else(|| Tiling::for_adapter(&ctx.info));
        let subgroups = opts.subgroups && ctx.has_subgroups();
        // Weight buffers above this are split (RunnerOptions::max_binding_bytes may lower it).
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(opts.max_binding_bytes.unwrap_or(u64::MAX));
        let check = |what: &str, bytes: u64| -> Result<()> {
            let max = limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size);
            if bytes > max {
                Err(Error::Gpu(format!(
                    "{what} needs a {bytes}-byte buffer, over the device's limit of {max} bytes \
                     (max_storage_buffer_binding_size {}, max_buffer_size {}); use a smaller batch or input",
                    limits.max_storage_buffer_binding_size, limits.max_buffer_size
                )))
            } else {
                Ok(())
            }
        };

        let mut own: Vec<wgpu::Buffer> = Vec::new();
        let upload = |label: &str, bytes: Vec<u8>, own: &mut Vec<wgpu::Buffer>| -> Result<BufRef> {
            check(label, bytes.len() as u64)?;
            own.push(
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: &bytes,
                    usage: wgpu::BufferUsages::STORAGE,
                }),
            );
            Ok(BufRef::Own(own.len() - 1))
        };
        let scratch = |label: &str, bytes: u64, own: &mut Vec<wgpu::Buffer>| -> Result<BufRef> {
            check(label, bytes)?;
            own.push(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: align16(bytes),
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }));
            Ok(BufRef::Own(own.len() - 1))
        };

        let keep: Vec<(String, ValueId)> = opts
            .taps
            .iter()
            .map(|t| {
                plan.tap(t)
                    .map(|v| (t.clone(), v))
                    .ok_or_else(|| Error::Input(format!("no tap named `{t}` in this plan")))
            })
            .collect::<Result<_>>()?;
        let kept = |v: ValueId| keep.iter().any(|(_, k)| *k == v);
        let last_use = plan.last_use();

        let mut slots = SlotPlanner::default();
        let mut loc: Vec<Option<Loc>> = vec![None; plan.values.len()];
        let mut gate_of: Vec<Option<BufRef>> = vec![None; plan.values.len()];
        loc[0] = Some(Loc::Input);
        let mut steps: Vec<StepPlan> = Vec::new();
        let mut peak = 0u64;

        let value_bytes = |v: ValueId, elem: u64| n * plan.values[v].numel() as u64 * elem;
        let get = |loc: &Vec<Option<Loc>>, v: ValueId| -> Loc {
            loc[v].expect("value computed before use")
        };

        for (i, op) in plan.ops.iter().enumerate() {
            let out = op.output;
            let in_shape = plan.values[op.input];
            let out_shape = plan.values[out];
            let f32_out = matches!(op.kind, OpKind::GlobalAvgPool | OpKind::Linear(_));
            // Where the output goes (an SE's output aliases its input's buffer).
            if !matches!(op.kind, OpKind::SqueezeExcite(_)) {
                let bytes = value_bytes(out, if f32_out { 4 } else { esize });
                check(&format!("value `{}` of op `{}`", out, op.name), bytes)?;
                loc[out] = Some(if out == plan.output {
                    Loc::Logits
                } else {
                    Loc::Slot(slots.take(bytes))
                });
            }
            let input_loc = get(&loc, op.input);
            let input_gate = gate_of[op.input];
            if input_gate.is_some() && !matches!(op.kind, OpKind::Conv2d(_)) {
                return Err(Error::Gpu(format!(
                    "unsupported plan: op `{}` reads a squeeze-and-excitation output; only convolutions can",
                    op.name
                )));
            }
            match &op.kind {
                OpKind::Conv2d(c) => {
                    if plan.ops.iter().any(|o| {
                        o.output == op.input
                            && matches!(o.kind, OpKind::GlobalAvgPool | OpKind::Linear(_))
                    }) {
                        return Err(Error::Gpu(format!(
                            "unsupported plan: conv `{}` reads an f32 vector",
                            op.name
                        )));
                    }
                    let residual = match c.residual {
                        Some(r) if gate_of[r].is_some() => {
                            return Err(Error::Gpu(format!(
                                "unsupported plan: residual of `{}` is gated",
                                op.name
                            )));
                        }
                        Some(r) => BufRef::Value(get(&loc, r)),
                        None => BufRef::Dummy,
                    };
                    let p = weights.conv(&op.name)?;
                    let b = upload(
                        &format!("{}.bias", op.name),
                        to_store(&p.bias, Precision::F32),
                        &mut own,
                    )?;
                    let shape = ConvShape {
                        batch: n,
                        in_h: in_shape.height as u64,
                        in_w: in_shape.width as u64,
                        out_h: out_shape.height as u64,
                        out_w: out_shape.width as u64,
                    };
                    let row_bytes = (p.weight.len() / c.out_channels) as u64 * esize;
                    for part in split_conv(c, row_bytes, max_binding) {
                        let label = if part.rows == c.out_channels {
                            op.name.clone()
                        } else {
                            format!(
                                "{} (channels {}..{})",
                                op.name,
                                part.first_row,
                                part.first_row + part.rows
                            )
                        };
                        let packed = pack_conv_weights(c, &p.weight, &part);
                        let w = upload(
                            &format!("{label} weight"),
                            to_store(&packed, prec),
                            &mut own,
                        )?;
                        let (variant, params, workgroups) =
                            conv_dispatch(c, &shape, &part, tiling, subgroups, &op.name)?;
                        steps.push(StepPlan {
                            label,
                            variant: Variant {
                                act: act_code(c.activation),
                                residual: c.residual.is_some(),
                                gate: input_gate.is_some(),
                                ..variant
                            },
                            params,
                            buffers: vec![
                                BufRef::Value(input_loc),
                                w,
                                b,
                                residual,
                                input_gate.unwrap_or(BufRef::Dummy),
                                BufRef::Value(get(&loc, out)),
                            ],
                            workgroups,
                        });
                    }
                }
                OpKind::SqueezeExcite(se) => {
                    let p = weights.se(&op.name)?;
                    let planes = n * se.channels as u64;
                    let (c, r) = (se.channels, se.squeeze);
                    let (c4, r4) = (c.div_ceil(4) * 4, r.div_ceil(4) * 4);
                    // W1 [R, c4] then W2 [C, r4], rows padded with zeros; b1 then b2.
                    let mut w = vec![0.0f32; r * c4 + c * r4];
                    for j in 0..r {
                        w[j * c4..j * c4 + c].copy_from_slice(&p.w1[j * c..(j + 1) * c]);
                    }
                    for k in 0..c {
                        let at = r * c4 + k * r4;
                        w[at..at + r].copy_from_slice(&p.w2[k * r..(k + 1) * r]);
                    }
                    let wb = upload(&format!("{}.weight", op.name), to_store(&w, prec), &mut own)?;
                    let bias: Vec<f32> = p.b1.iter().chain(&p.b2).copied().collect();
                    let bb = upload(
                        &format!("{}.bias", op.name),
                        to_store(&bias, Precision::F32),
                        &mut own,
                    )?;
                    let work = scratch(
                        &format!("{}.scratch", op.name),
                        n * (c4 + r4) as u64 * 4,
                        &mut own,
                    )?;
                    let gate = scratch(&format!("{}.gate", op.name), planes * 4, &mut own)?;
                    let hw = (in_shape.height * in_shape.width) as u64;
                    let params = [
                        n,
                        c as u64,
                        r as u64,
                        hw,
                        c4 as u64,
                        r4 as u64,
                        (r * c4 / 4) as u64,
                        (planes * hw).div_ceil(4),
                    ];
                    if params.iter().any(|&v| v > u32::MAX as u64) {
                        return Err(Error::Gpu(format!(
                            "squeeze-and-excitation `{}` is too large to dispatch",
                            op.name
                        )));
                    }
                    steps.push(StepPlan {
                        label: op.name.clone(),
                        variant: Variant::simple(Family::SqueezeExcite, 0),
                        params: params.map(|v| v as u32).to_vec(),
                        buffers: vec![BufRef::Value(input_loc), wb, bb, work, gate],
                        workgroups: n,
                    });
                    // The output is the input with a pending per-channel scale.
                    loc[out] = Some(input_loc);
                    gate_of[out] = Some(gate);
                    if let Loc::Slot(s) = input_loc {
                        slots.retain(s);
                    }
                    if kept(out) {
                        return Err(Error::Gpu(format!(
                            "unsupported plan: tap on SE output `{}`",
                            op.name
                        )));
                    }
                }
                OpKind::GlobalAvgPool => {
                    let planes = n * in_shape.channels as u64;
                    steps.push(StepPlan {
                        label: op.name.clone(),
                        variant: Variant::simple(Family::Pool, 0),
                        params: vec![
                            planes as u32,
                            (in_shape.height * in_shape.width) as u32,
                            0,
                            0,
                        ],
                        buffers: vec![BufRef::Value(input_loc), BufRef::Value(get(&loc, out))],
                        workgroups: planes.div_ceil(Family::Pool.workgroup_size() as u64),
                    });
                }
                OpKind::Linear(l) => {
                    let p = weights.linear(&op.name)?;
                    let (inf, outf) = (l.in_features, l.out_features);
                    let in4 = inf.div_ceil(4);
                    let mut padded = vec![0.0f32; outf * in4 * 4];
                    for o in 0..outf {
                        padded[o * in4 * 4..o * in4 * 4 + inf]
                            .copy_from_slice(&p.weight[o * inf..(o + 1) * inf]);
                    }
                    let w = upload(&l.weight, to_store(&padded, prec), &mut own)?;
                    let b = upload(
                        &format!("{}.bias", op.name),
                        to_store(&p.bias, Precision::F32),
                        &mut own,
                    )?;
                    steps.push(StepPlan {
                        label: op.name.clone(),
                        variant: Variant::simple(Family::Linear, 0),
                        params: vec![
                            n as u32,
                            inf as u32,
                            outf as u32,
                            in4 as u32,
                            (n * inf as u64).div_ceil(4) as u32,
                            0,
                            0,
                            0,
                        ],
                        buffers: vec![
                            BufRef::Value(input_loc),
                            w,
                            b,
                            BufRef::Value(get(&loc, out)),
                        ],
                        workgroups: (n * l.out_features as u64)
                            .div_ceil(Family::Linear.workgroup_size() as u64),
                    });
                }
            }
            let live: u64 = slots
                .sizes
                .iter()
                .zip(&slots.refs)
                .filter(|(_, &r)| r > 0)
                .map(|(s, _)| *s)
                .sum();
            peak = peak.max(live);
            // Release what no later op reads.
            let mut dead: Vec<ValueId> = vec![op.input];
            if let OpKind::Conv2d(c) = &op.kind {
                dead.extend(c.residual);
            }
            if last_use[out].is_none() {
                dead.push(out);
            }
            dead.sort_unstable();
            dead.dedup();
            for v in dead {
                let unused_after = last_use[v].is_none_or(|l| l <= i);
                if unused_after && !kept(v) && v != plan.output {
                    if let Some(Loc::Slot(s)) = loc[v] {
                        slots.release(s);
                    }
                }
            }
        }

        // Create the buffers.
        let input_bytes = n * plan.values[0].numel() as u64 * esize;
        check("the input batch", input_bytes)?;
        let input = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("input"),
            size: align16(input_bytes),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let classes = plan.values[plan.output].channels;
        let logits_bytes = n * classes as u64 * 4;
        let logits = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits"),
            size: align4(logits_bytes),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits readback"),
            size: align4(logits_bytes),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let slot_bufs: Vec<wgpu::Buffer> = slots
            .sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("activations {i}")),
                    size: align16(s),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused binding"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });

        // One uniform buffer holds every step's parameters at aligned offsets.
        let align = limits.min_uniform_buffer_offset_alignment.max(16) as usize;
        let largest = steps.iter().map(|s| s.params.len() * 4).max().unwrap_or(16);
        let stride = largest.div_ceil(align) * align;
        let mut uniform_bytes = vec![0u8; steps.len() * stride];
        for (k, s) in steps.iter().enumerate() {
            let b: &[u8] = bytemuck::cast_slice(&s.params);
            uniform_bytes[k * stride..k * stride + b.len()].copy_from_slice(b);
        }
        let uniforms = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("step parameters"),
            contents: &uniform_bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });

        let kernels = Kernels::new(device, prec, subgroups);
        let bufs = Buffers {
            input,
            logits,
            slots: slot_bufs,
            own,
            dummy,
            uniforms,
            uniform_stride: stride as u64,
        };
        let max_dim = limits.max_compute_workgroups_per_dimension as u64;
        let mut built = Vec::with_capacity(steps.len());
        for (k, s) in steps.iter().enumerate() {
            let x = s.workgroups.clamp(1, max_dim);
            let y = s.workgroups.div_ceil(x);
            if y > max_dim {
                return Err(Error::Gpu(format!(
                    "op `{}` needs {} workgroups, over the device's {}x{} grid",
                    s.label, s.workgroups, max_dim, max_dim
                )));
            }
            built.push(Step {
                label: s.label.clone(),
                pipeline: kernels.pipeline(s.variant),
                bind_group: bufs.bind_group(device, &kernels, k, s),
                grid: (x as u32, y as u32),
            });
        }

        let taps = keep
            .iter()
            .map(|(name, v)| {
                let s = plan.values[*v];
                let bytes = value_bytes(*v, esize);
                TapOut {
                    name: name.clone(),
                    loc: loc[*v].expect("tap computed"),
                    shape: vec![opts.batch, s.channels, s.height, s.width],
                    bytes,
                    staging: device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(name),
                        size: align4(bytes),
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    }),
                }
            })
            .collect();

        Ok(GpuRunner {
            ctx: ctx.clone(),
            batch: opts.batch,
            precision: prec,
            input_shape: vec![opts.batch, 3, plan.values[0].height, plan.values[0].width],
            input_bytes,
            classes,
            readback,
            peak_activation_bytes: peak,
            weight_bytes: bufs.own.iter().map(|b| b.size()).sum(),
            pipelines: kernels.pipeline_count(),
            bufs,
            kernels,
            plans: steps,
            steps: built,
            taps,
            lock: Mutex::new(()),
        })
    }

    /// The input shape `[N, 3, H, W]` this runner was built for.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Number of classes (the logits are `[N, classes]`).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The storage precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Peak bytes of activation buffers live at once (buffers are reused by liveness).
    pub fn peak_activation_bytes(&self) -> u64 {
        self.peak_activation_bytes
    }

    /// Bytes of all activation buffers allocated.
    pub fn activation_bytes(&self) -> u64 {
        self.bufs.slots.iter().map(|b| b.size()).sum()
    }

    /// Bytes of weight, bias and scratch buffers.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Number of dispatches per inference.
    pub fn dispatches(&self) -> usize {
        self.steps.len()
    }

    /// The label (op name) of each dispatch, in order.
    pub fn dispatch_labels(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.label.as_str()).collect()
    }

    /// Number of distinct compute pipelines.
    pub fn pipelines(&self) -> usize {
        self.pipelines
    }

    /// The context the runner works on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The buffer the inference reads its input from: `[N, 3, H, W]` row-major, in the
    /// runner's precision (f32, or f16 little-endian), [`GpuRunner::input_bytes`] long.
    /// A host may write it (`Queue::write_buffer`), copy into it, or fill it from a compute pass.
    pub fn input_buffer(&self) -> &wgpu::Buffer {
        &self.bufs.input
    }

    /// Bytes of input the inference reads.
    pub fn input_bytes(&self) -> u64 {
        self.input_bytes
    }

    /// The size an input buffer must have at least: [`GpuRunner::input_bytes`] rounded up to a
    /// multiple of 16 (the kernels read their input as vec4s).
    pub fn input_buffer_size(&self) -> u64 {
        align16(self.input_bytes)
    }

    /// Makes the inference read its input from a buffer the host owns (usage must include
    /// `STORAGE`; at least [`GpuRunner::input_buffer_size`] long, same layout as
    /// [`GpuRunner::input_buffer`]).
    pub fn set_input_buffer(&mut self, buffer: wgpu::Buffer) -> Result<()> {
        if buffer.size() < self.input_buffer_size() {
            return Err(Error::Input(format!(
                "input buffer holds {} bytes; this runner reads {} ({:?} in {:?}), in a buffer of at least {} bytes",
                buffer.size(),
                self.input_bytes,
                self.input_shape,
                self.precision,
                self.input_buffer_size()
            )));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::Input("input buffer lacks the STORAGE usage".into()));
        }
        self.bufs.input = buffer;
        let device = self.ctx.device.clone();
        for (k, plan) in self.plans.iter().enumerate() {
            if plan
                .buffers
                .iter()
                .any(|b| matches!(b, BufRef::Value(Loc::Input)))
            {
                self.steps[k].bind_group = self.bufs.bind_group(&device, &self.kernels, k, plan);
            }
        }
        Ok(())
    }

    /// The buffer the logits are written to: `[N, classes]` f32, usage `STORAGE | COPY_SRC`,
    /// so a host can bind it in its own passes or copy it out.
    pub fn logits_buffer(&self) -> &wgpu::Buffer {
        &self.bufs.logits
    }

    /// Records a whole inference (one compute pass, every dispatch) into the host's encoder.
    /// It reads [`GpuRunner::input_buffer`] and writes [`GpuRunner::logits_buffer`]; the host
    /// submits when it likes. Inferences recorded on one runner share its activation buffers:
    /// submit them in order (the queue does), never record the same runner from two threads at
    /// once without your own ordering.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        self.encode_pass(encoder, None);
    }

    fn encode_pass(&self, encoder: &mut wgpu::CommandEncoder, timestamps: Option<&wgpu::QuerySet>) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("regnet"),
            timestamp_writes: timestamps.map(|q| wgpu::ComputePassTimestampWrites {
                query_set: q,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            }),
        });
        for s in &self.steps {
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.dispatch_workgroups(s.grid.0, s.grid.1, 1);
        }
    }

    /// Logits `[N, classes]` for an input of exactly [`GpuRunner::input_shape`].
    pub fn run(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.run_with_taps(input)?.0)
    }

    fn check_input(&self, input: &Tensor) -> Result<()> {
        check_image_batch(input)?;
        if input.shape != self.input_shape {
            return Err(Error::Input(format!(
                "this runner was built for input {:?}; got {:?}",
                self.input_shape, input.shape
            )));
        }
        Ok(())
    }

    /// Logits and the taps named in [`RunnerOptions::taps`].
    pub fn run_with_taps(&self, input: &Tensor) -> Result<(Tensor, Vec<(String, Tensor)>)> {
        self.check_input(input)?;
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let device = &self.ctx.device;
        let queue = &self.ctx.queue;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        queue.write_buffer(&self.bufs.input, 0, &to_store(&input.data, self.precision));
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("regnet"),
        });
        self.encode(&mut enc);
        let logits_bytes = (self.batch * self.classes * 4) as u64;
        enc.copy_buffer_to_buffer(
            &self.bufs.logits,
            0,
            &self.readback,
            0,
            align4(logits_bytes),
        );
        for t in &self.taps {
            let src = self.bufs.resolve(&BufRef::Value(t.loc));
            enc.copy_buffer_to_buffer(src, 0, &t.staging, 0, align4(t.bytes));
        }
        queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("inference failed: {e}")));
        }
        let logits = self.read(&self.readback, self.batch * self.classes, Precision::F32)?;
        let logits = Tensor::new(vec![self.batch, self.classes], logits)?;
        let mut taps = Vec::new();
        for t in &self.taps {
            let n: usize = t.shape.iter().product();
            let data = self.read(&t.staging, n, self.precision)?;
            taps.push((t.name.clone(), Tensor::new(t.shape.clone(), data)?));
        }
        Ok((logits, taps))
    }

    /// Runs `iters` inferences back to back on the GPU and returns the device time of each in
    /// milliseconds (from timestamp queries), or `None` when the device has no `timestamp-query`.
    pub fn time_gpu(&self, input: &Tensor, iters: usize) -> Result<Option<Vec<f64>>> {
        let Some(_guard) = self.begin_timed(input)? else {
            return Ok(None);
        };
        let (device, queue) = (&self.ctx.device, &self.ctx.queue);
        let (qs, resolve, staging) = self.timestamp_buffers(2);
        let period = queue.get_timestamp_period() as f64;
        let mut out = Vec::with_capacity(iters);
        for _ in 0..iters {
            let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("timed"),
            });
            self.encode_pass(&mut enc, Some(&qs));
            enc.resolve_query_set(&qs, 0..2, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, 16);
            queue.submit([enc.finish()]);
            let t = self.read_u64(&staging, 2)?;
            out.push(t[1].saturating_sub(t[0]) as f64 * period / 1e6);
        }
        Ok(Some(out))
    }

    /// Device time of every dispatch in milliseconds (each dispatch in its own timed pass),
    /// labelled with its op; `None` when the device has no `timestamp-query`.
    pub fn profile(&self, input: &Tensor) -> Result<Option<Vec<(String, f64)>>> {
        let Some(_guard) = self.begin_timed(input)? else {
            return Ok(None);
        };
        let (device, queue) = (&self.ctx.device, &self.ctx.queue);
        let n = self.steps.len() as u32;
        let (qs, resolve, staging) = self.timestamp_buffers(2 * n);
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("profile"),
        });
        for (k, s) in self.steps.iter().enumerate() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&s.label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &qs,
                    beginning_of_pass_write_index: Some(2 * k as u32),
                    end_of_pass_write_index: Some(2 * k as u32 + 1),
                }),
            });
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.dispatch_workgroups(s.grid.0, s.grid.1, 1);
        }
        enc.resolve_query_set(&qs, 0..2 * n, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, 16 * n as u64);
        queue.submit([enc.finish()]);
        let t = self.read_u64(&staging, 2 * n as usize)?;
        let period = queue.get_timestamp_period() as f64;
        Ok(Some(
            self.steps
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    (
                        s.label.clone(),
                        t[2 * k + 1].saturating_sub(t[2 * k]) as f64 * period / 1e6,
                    )
                })
                .collect(),
        ))
    }

    /// Checks the input, takes the runner's lock and uploads the input for a timed run;
    /// `None` when the device has no `timestamp-query`.
    fn begin_timed(&self, input: &Tensor) -> Result<Option<std::sync::MutexGuard<'_, ()>>> {
        self.check_input(input)?;
        if !self
            .ctx
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return Ok(None);
        }
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let data = to_store(&input.data, self.precision);
        self.ctx.queue.write_buffer(&self.bufs.input, 0, &data);
        Ok(Some(guard))
    }

    fn timestamp_buffers(&self, count: u32) -> (wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer) {
        let device = &self.ctx.device;
        let qs = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps resolve"),
            size: 8 * count as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps readback"),
            size: 8 * count as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        (qs, resolve, staging)
    }

    fn read_u64(&self, buf: &wgpu::Buffer, n: usize) -> Result<Vec<u64>> {
        let bytes = self.read_bytes(buf)?;
        Ok(bytemuck::cast_slice::<u8, u64>(&bytes[..8 * n]).to_vec())
    }

    /// Maps a readback buffer, waits, and converts `n` stored values to f32.
    fn read(&self, buf: &wgpu::Buffer, n: usize, precision: Precision) -> Result<Vec<f32>> {
        Ok(from_store(&self.read_bytes(buf)?, n, precision))
    }

    fn read_bytes(&self, buf: &wgpu::Buffer) -> Result<Vec<u8>> {
        let slice = buf.slice(..);
        let (tx, rx) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device failed: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Gpu("the device dropped a readback".into()))?
            .map_err(|e| Error::Gpu(format!("reading results back failed: {e}")))?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading results back failed: {e}")))?;
        let out = view.to_vec();
        drop(view);
        buf.unmap();
        Ok(out)
    }
}
