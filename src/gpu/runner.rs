//! The graph runner: a plan lowered once ([`super::lower`]) onto a model's weights
//! ([`GpuModel`]) and this runner's activation buffers ([`super::memory`]), as pipelines and bind
//! groups for one (batch, height, width); then every inference is one queue submission that
//! dispatches op by op and reads back only the logits (and any taps asked for).

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};

use wgpu::util::DeviceExt;

use super::autotune::TuneTable;
use super::kernels::{Operands, ShaderChecks};
use super::lower::{
    grid, lower_plan, squeeze_excite_scratch_len, status_dispatch, Binding, Dispatch, LowerOptions,
};
use super::memory::{plan_memory, Loc};
use super::model::{max_binding, scoped, to_store, GpuModel};
use super::operands;
use super::readback::staging;
use super::tiling::Tiling;
use super::{GpuContext, Precision};
use crate::error::{Error, Result};
use crate::plan::{OpKind, Plan, ValueId};
use crate::tensor::{check_image_batch, Tensor};
use crate::weights::Weights;

/// What a runner is built for, besides the plan.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// Images per inference.
    pub batch: usize,
    /// Storage precision (a model-level option: see [`GpuModel`]).
    pub precision: Precision,
    /// Intermediate values to read back with the logits (`stem`, `block1`, ...).
    pub taps: Vec<String>,
    /// Split convolutions and linear heads whose packed weights exceed this many bytes (in any
    /// case the device's storage binding limit applies); `None`: the device's limit. Lowering it
    /// exercises the splitting that the largest models need on small adapters. A model-level
    /// option.
    pub max_binding_bytes: Option<u64>,
    /// The kernels' register tiles; `None`: the rules of the adapter's type
    /// ([`Tiling::for_adapter`]).
    pub tiling: Option<Tiling>,
    /// Use subgroup operations where the device has them and the tile rules call for them
    /// ([`GpuContext::has_subgroups`], [`Tiling::pointwise_subgroup`]); default true. Turning
    /// them off changes speed, never results. A model-level option.
    pub subgroups: bool,
    /// wgpu's runtime checks in the kernels (default: checked). A model-level option.
    pub shader_checks: ShaderChecks,
    /// The autotuner's choices of tiles and workgroup sizes by shape class
    /// ([`super::autotune`]); `None` (the default): the tile rules for every layer. Changes
    /// speed, never results.
    pub tuned: Option<Arc<TuneTable>>,
    /// Read the inputs and weights of the convolutions and of squeeze-and-excitation from
    /// textures rather than storage buffers ([`Operands::Texture`]): each one's input is
    /// copied into a texture before it runs, and the weights are uploaded as textures too.
    /// `None` (the default): on CPU-backed adapters (`wgpu::DeviceType::Cpu`: lavapipe,
    /// SwiftShader, WARP), where a texel fetch costs a tenth of a storage load. Changes speed,
    /// never results. A model-level option.
    pub textures: Option<bool>,
    /// The 1x1 GEMM takes 4 input channels per trip of its channel loop rather than one
    /// (`CHANNEL_STEP`); `None` (the default): on SwiftShader ([`unrolled_channels`]). Changes
    /// speed, never results.
    ///
    /// [`unrolled_channels`]: super::tiling::unrolled_channels
    pub unrolled_channels: Option<bool>,
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
            shader_checks: ShaderChecks::checked(),
            tuned: None,
            textures: None,
            unrolled_channels: None,
        }
    }
}

struct Step {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    grid: (u32, u32),
    /// The value copied into the input texture first (texture operands), and its texels.
    copy: Option<(Loc, u64)>,
}

/// The runner's own buffers (the weights are the model's).
struct Buffers {
    input: wgpu::Buffer,
    logits: wgpu::Buffer,
    status: wgpu::Buffer,
    slots: Vec<wgpu::Buffer>,
    /// Per squeeze-and-excitation op: its scratch and its gate.
    scratch: HashMap<usize, wgpu::Buffer>,
    gates: HashMap<usize, wgpu::Buffer>,
    dummy: wgpu::Buffer,
    uniforms: wgpu::Buffer,
    uniform_stride: u64,
    /// The convolutions' input texture (texture operands; sized for the largest input).
    x_texture: Option<(wgpu::Texture, wgpu::TextureView)>,
}

/// Reports values the kernels could not store, naming the dispatch ([`super::lower::status_tag`]).
#[derive(Clone, Debug)]
pub(crate) struct StatusDecoder {
    pub(crate) labels: Arc<Vec<String>>,
    pub(crate) precision: Precision,
}

impl StatusDecoder {
    /// `Ok` for a zero status word, else the error naming the first op that overflowed.
    pub(crate) fn check(&self, status: u32) -> Result<()> {
        match status_dispatch(status, self.labels.len()) {
            None => Ok(()),
            Some(k) => Err(Error::PrecisionOverflow {
                precision: match self.precision {
                    Precision::F32 => "f32",
                    Precision::F16 => "f16",
                },
                what: format!(
                    "the output of `{}` (a value past its range, or not finite)",
                    self.labels.get(k).map_or("?", |l| l.as_str())
                ),
            }),
        }
    }
}

struct TapOut {
    name: String,
    loc: Loc,
    shape: Vec<usize>,
    bytes: u64,
    staging: wgpu::Buffer,
}

/// A compiled network on a wgpu device.
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
    model: GpuModel,
    batch: usize,
    precision: Precision,
    input_shape: Vec<usize>,
    input_bytes: u64,
    classes: usize,
    bufs: Buffers,
    readback: wgpu::Buffer,
    dispatches: Vec<Dispatch>,
    steps: Vec<Step>,
    taps: Vec<TapOut>,
    status: StatusDecoder,
    loc: Vec<Loc>,
    peak_activation_bytes: u64,
    lock: Mutex<()>,
}

/// Bytes between two dispatches' parameters in the uniform buffer.
pub(crate) fn uniform_stride(dispatches: &[Dispatch], limits: &wgpu::Limits) -> u64 {
    let align = limits.min_uniform_buffer_offset_alignment.max(16) as usize;
    let largest = dispatches
        .iter()
        .map(|d| d.params.bytes().len())
        .max()
        .unwrap_or(16);
    largest.next_multiple_of(align) as u64
}

/// One uniform buffer holds every dispatch's parameters at aligned offsets.
pub(crate) fn uniform_buffer(
    device: &wgpu::Device,
    dispatches: &[Dispatch],
    limits: &wgpu::Limits,
) -> wgpu::Buffer {
    let stride = uniform_stride(dispatches, limits) as usize;
    let mut bytes = vec![0u8; dispatches.len().max(1) * stride];
    for (k, d) in dispatches.iter().enumerate() {
        let b = d.params.bytes();
        bytes[k * stride..k * stride + b.len()].copy_from_slice(b);
    }
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("dispatch parameters"),
        contents: &bytes,
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

pub(crate) fn from_store(bytes: &[u8], n: usize, precision: Precision) -> Vec<f32> {
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
pub(crate) fn align16(n: u64) -> u64 {
    n.div_ceil(16).max(1) * 16
}

pub(crate) fn storage_buffer(
    device: &wgpu::Device,
    label: &str,
    size: u64,
    extra: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: align16(size),
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    })
}

/// The bind group of dispatch `d`: its parameters at `uniforms` (a buffer and offset), then
/// the buffers `resolve` gives for its bindings (the runner's, or a host's for [`super::GpuOp`]).
pub(crate) fn bind_group<'a>(
    model: &GpuModel,
    (uniforms, offset): (&wgpu::Buffer, u64),
    d: &Dispatch,
    x_texture: Option<&wgpu::TextureView>,
    resolve: &dyn Fn(Binding) -> &'a wgpu::Buffer,
) -> wgpu::BindGroup {
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: uniforms,
            offset,
            size: wgpu::BufferSize::new(d.params.bytes().len() as u64),
        }),
    }];
    let textures = d.variant.operands == Operands::Texture;
    for (j, b) in d.bindings.iter().enumerate() {
        let resource = match *b {
            Binding::Value(_) if textures && j == 0 => wgpu::BindingResource::TextureView(
                x_texture.expect("texture operands without an input texture"),
            ),
            Binding::Weight { op, part } if textures => wgpu::BindingResource::TextureView(
                &model
                    .op_buffers(op)
                    .expect("op with weights")
                    .weight_textures[part],
            ),
            _ => resolve(*b).as_entire_binding(),
        };
        entries.push(wgpu::BindGroupEntry {
            binding: j as u32 + 1,
            resource,
        });
    }
    model
        .context()
        .device
        .create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&d.label),
            layout: model.kernels().bind_group_layout(&d.variant),
            entries: &entries,
        })
}

/// The values named by `taps` (`stem`, `block1`, ...).
fn tap_values(plan: &Plan, taps: &[String]) -> Result<Vec<(String, ValueId)>> {
    taps.iter()
        .map(|t| {
            plan.tap(t)
                .map(|v| (t.clone(), v))
                .ok_or_else(|| Error::Input(format!("no tap named `{t}` in this plan")))
        })
        .collect()
}

/// The 2-D grid of a dispatch, or the limit it exceeds.
pub(crate) fn dispatch_grid(d: &Dispatch, limits: &wgpu::Limits) -> Result<(u32, u32)> {
    let max_dim = limits.max_compute_workgroups_per_dimension;
    grid(d.workgroups, max_dim).ok_or_else(|| Error::DeviceLimit {
        what: format!("op `{}` ({} workgroups)", d.label, d.workgroups),
        limit: "max_compute_workgroups_per_dimension",
        have: max_dim as u64,
        needed: d.workgroups.div_ceil(max_dim as u64),
        advice: "; use a smaller batch or input".into(),
    })
}

/// Texels (4 values each) of value `v` for `batch` images.
fn value_texels(plan: &Plan, v: ValueId, batch: u64) -> u64 {
    (batch * plan.values[v].numel() as u64).div_ceil(4)
}

/// The input texture of the convolutions reading texture operands ([`operands::input_texture`]).
fn input_texture(
    device: &wgpu::Device,
    plan: &Plan,
    batch: u64,
    prec: Precision,
    dispatches: &[Dispatch],
) -> Result<Option<(wgpu::Texture, wgpu::TextureView)>> {
    let texels = operands::largest_input(dispatches, |v| value_texels(plan, v, batch));
    operands::input_texture(device, texels, prec)
}

/// The staging buffer `run` reads: the logits (`logits_bytes`), then the status word.
fn readback_buffer(device: &wgpu::Device, logits_bytes: u64) -> wgpu::Buffer {
    staging(device, "logits readback", align4(logits_bytes) + 4)
}

impl TapOut {
    fn new(
        device: &wgpu::Device,
        name: &str,
        plan: &Plan,
        v: ValueId,
        loc: Loc,
        batch: u64,
        prec: Precision,
    ) -> Self {
        let s = plan.values[v];
        let bytes = batch * s.numel() as u64 * prec.bytes();
        TapOut {
            name: name.to_string(),
            loc,
            shape: vec![batch as usize, s.channels, s.height, s.width],
            bytes,
            staging: staging(device, name, bytes),
        }
    }
}

impl Buffers {
    /// The runner's own buffers for `batch` images: input, logits, status, activation slots
    /// (`slot_sizes`), each squeeze-and-excitation's scratch and gate, the parameters.
    fn new(
        device: &wgpu::Device,
        plan: &Plan,
        batch: u64,
        prec: Precision,
        slot_sizes: &[u64],
        dispatches: &[Dispatch],
    ) -> Result<Self> {
        let limits = device.limits();
        let max_buffer = max_binding(&limits);
        let input_bytes = batch * plan.values[0].numel() as u64 * prec.bytes();
        if input_bytes > max_buffer {
            return Err(Error::binding_limit(
                format!("the input batch ({input_bytes} bytes)"),
                max_buffer,
                input_bytes,
                "; use a smaller batch or input",
            ));
        }
        let usage = wgpu::BufferUsages::COPY_SRC;
        let logits_bytes = batch * plan.values[plan.output].channels as u64 * 4;
        let mut scratch = HashMap::new();
        let mut gates = HashMap::new();
        for (i, op) in plan.ops.iter().enumerate() {
            if let OpKind::SqueezeExcite(se) = &op.kind {
                let len = batch * squeeze_excite_scratch_len(se) * 4;
                let gate = batch * se.channels as u64 * 4;
                let label = |what: &str| format!("{}.{what}", op.name);
                scratch.insert(i, storage_buffer(device, &label("scratch"), len, usage));
                gates.insert(i, storage_buffer(device, &label("gate"), gate, usage));
            }
        }
        let copy_dst = usage | wgpu::BufferUsages::COPY_DST;
        Ok(Buffers {
            input: storage_buffer(device, "input", input_bytes, copy_dst),
            logits: storage_buffer(device, "logits", logits_bytes, usage),
            status: storage_buffer(device, "status", 4, copy_dst),
            slots: slot_sizes
                .iter()
                .enumerate()
                .map(|(i, &s)| storage_buffer(device, &format!("activations {i}"), s, usage))
                .collect(),
            scratch,
            gates,
            dummy: storage_buffer(device, "unused binding", 16, wgpu::BufferUsages::empty()),
            uniforms: uniform_buffer(device, dispatches, &limits),
            uniform_stride: uniform_stride(dispatches, &limits),
            x_texture: input_texture(device, plan, batch, prec, dispatches)?,
        })
    }

    fn resolve<'a>(&'a self, model: &'a GpuModel, loc: &[Loc], b: &Binding) -> &'a wgpu::Buffer {
        match *b {
            Binding::Value(v) => self.at(loc[v]),
            Binding::Weight { op, part } => {
                &model.op_buffers(op).expect("op with weights").weights[part]
            }
            Binding::Bias(op) => &model.op_buffers(op).expect("op with weights").bias,
            Binding::Scratch(op) => &self.scratch[&op],
            Binding::Gate(op) => &self.gates[&op],
            Binding::Status => &self.status,
            Binding::Unused => &self.dummy,
        }
    }

    fn at(&self, loc: Loc) -> &wgpu::Buffer {
        match loc {
            Loc::Input => &self.input,
            Loc::Logits => &self.logits,
            Loc::Slot(s) => &self.slots[s],
        }
    }
}

impl GpuRunner {
    /// Uploads `weights` and compiles `plan` for `opts.batch` images at `opts.precision`: a
    /// [`GpuModel`] of its own, then [`GpuRunner::with_model`].
    pub fn new(
        ctx: &GpuContext,
        plan: &Plan,
        weights: &Weights,
        opts: RunnerOptions,
    ) -> Result<Self> {
        let model = GpuModel::new(ctx, plan, weights, &opts)?;
        Self::with_model(&model, plan, opts)
    }

    /// A runner on a model's weights, for `plan` (the model's ops at any input size) and
    /// `opts.batch` images; nothing is uploaded again. The model-level fields of `opts`
    /// (`precision`, `max_binding_bytes`, `subgroups`, `shader_checks`) must be the model's.
    pub fn with_model(model: &GpuModel, plan: &Plan, opts: RunnerOptions) -> Result<Self> {
        model.check_compatible(plan, &opts)?;
        scoped(&model.context().device, "building the runner", || {
            Self::build(model, plan, opts)
        })
    }

    fn build(model: &GpuModel, plan: &Plan, opts: RunnerOptions) -> Result<Self> {
        let ctx = model.context();
        let limits = ctx.device.limits();
        let prec = model.precision();
        if opts.batch == 0 {
            return Err(Error::Input("batch must be at least 1".into()));
        }
        let n = opts.batch as u64;
        let keep = tap_values(plan, &opts.taps)?;
        let kept: Vec<ValueId> = keep.iter().map(|(_, v)| *v).collect();
        let lower = LowerOptions::new(ctx, model, &opts, n);
        let parts = |i: usize| {
            model
                .op_buffers(i)
                .map(|b| b.parts.clone())
                .unwrap_or_default()
        };
        let dispatches = lower_plan(&plan.graph(), &parts, &lower)?;
        let memory = plan_memory(plan, n, prec.bytes(), &kept, max_binding(&limits))?;
        let bufs = Buffers::new(&ctx.device, plan, n, prec, &memory.slot_sizes, &dispatches)?;
        let variants: Vec<_> = dispatches.iter().map(|d| d.variant).collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        model.kernels().prepare(&variants, threads);
        let copies = operands::copies(&dispatches, &memory.loc);
        let steps = dispatches
            .iter()
            .zip(copies)
            .enumerate()
            .map(|(k, (d, copy))| {
                Ok(Step {
                    pipeline: model.kernels().pipeline(d.variant),
                    bind_group: Self::bind_group(model, &bufs, &memory.loc, k, d),
                    grid: dispatch_grid(d, &limits)?,
                    copy: copy.map(|v| (memory.loc[v], value_texels(plan, v, n))),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let taps = keep
            .iter()
            .map(|(name, v)| TapOut::new(&ctx.device, name, plan, *v, memory.loc[*v], n, prec))
            .collect();
        let classes = plan.values[plan.output].channels;
        Ok(GpuRunner {
            model: model.clone(),
            batch: opts.batch,
            precision: prec,
            input_shape: vec![opts.batch, 3, plan.values[0].height, plan.values[0].width],
            input_bytes: n * plan.values[0].numel() as u64 * prec.bytes(),
            classes,
            readback: readback_buffer(&ctx.device, n * classes as u64 * 4),
            status: StatusDecoder {
                labels: Arc::new(dispatches.iter().map(|d| d.label.clone()).collect()),
                precision: prec,
            },
            peak_activation_bytes: memory.peak_bytes,
            bufs,
            dispatches,
            steps,
            taps,
            loc: memory.loc,
            lock: Mutex::new(()),
        })
    }

    /// The bind group of dispatch `k`: its parameters in the uniform buffer, then its buffers.
    fn bind_group(
        model: &GpuModel,
        bufs: &Buffers,
        loc: &[Loc],
        k: usize,
        d: &Dispatch,
    ) -> wgpu::BindGroup {
        let uniforms = (&bufs.uniforms, k as u64 * bufs.uniform_stride);
        let x_texture = bufs.x_texture.as_ref().map(|(_, v)| v);
        bind_group(model, uniforms, d, x_texture, &|b| {
            bufs.resolve(model, loc, &b)
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

    /// Bytes of the model's weight and bias buffers (shared with the model's other runners).
    pub fn weight_bytes(&self) -> u64 {
        self.model.weight_bytes()
    }

    /// The model whose weights this runner reads.
    pub fn model(&self) -> &GpuModel {
        &self.model
    }

    /// Number of dispatches that run a subgroup entry point (0 when the device's subgroups
    /// are not used: see [`GpuContext::has_subgroups`]).
    pub fn subgroup_dispatches(&self) -> usize {
        self.dispatches
            .iter()
            .filter(|d| d.variant.subgroup)
            .count()
    }

    /// Number of dispatches that read their operands from textures
    /// ([`RunnerOptions::textures`]).
    pub fn texture_dispatches(&self) -> usize {
        self.dispatches
            .iter()
            .filter(|d| d.variant.operands == Operands::Texture)
            .count()
    }

    /// Number of copies into the convolutions' input texture per inference (texture
    /// operands): one per convolution input, fewer where consecutive convolutions share one.
    pub fn texture_copies(&self) -> usize {
        self.steps.iter().filter(|s| s.copy.is_some()).count()
    }

    /// Number of dispatches per inference.
    pub fn dispatches(&self) -> usize {
        self.steps.len()
    }

    /// The label (op name) of each dispatch, in order.
    pub fn dispatch_labels(&self) -> Vec<&str> {
        self.dispatches.iter().map(|d| d.label.as_str()).collect()
    }

    /// Number of distinct compute pipelines this runner uses.
    pub fn pipelines(&self) -> usize {
        let v: std::collections::HashSet<_> = self.dispatches.iter().map(|d| d.variant).collect();
        v.len()
    }

    /// The context the runner works on.
    pub fn context(&self) -> &GpuContext {
        self.model.context()
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
    /// `STORAGE`, and `COPY_SRC` when the runner copies its input into a texture
    /// ([`RunnerOptions::textures`], the default on CPU-backed adapters); at least
    /// [`GpuRunner::input_buffer_size`] long, same layout as [`GpuRunner::input_buffer`]).
    /// [`GpuRunner::run`] writes its input into that buffer with `Queue::write_buffer`, so it
    /// needs `COPY_DST` too (and says so); [`GpuRunner::encode`] reads whatever the host put
    /// there.
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
        let copied = self
            .steps
            .iter()
            .any(|s| matches!(s.copy, Some((Loc::Input, _))));
        if copied && !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::Input(
                "input buffer lacks the COPY_SRC usage, which this runner needs to copy the input \
                 into the first convolution's texture; add it, or build the model with \
                 RunnerOptions::textures set to Some(false)"
                    .into(),
            ));
        }
        self.bufs.input = buffer;
        for (k, d) in self.dispatches.iter().enumerate() {
            let reads_input = d
                .bindings
                .iter()
                .any(|b| matches!(b, Binding::Value(v) if self.loc[*v] == Loc::Input));
            if reads_input {
                self.steps[k].bind_group =
                    Self::bind_group(&self.model, &self.bufs, &self.loc, k, d);
            }
        }
        Ok(())
    }

    /// The buffer the logits are written to: `[N, classes]` f32, usage `STORAGE | COPY_SRC`,
    /// so a host can bind it in its own passes or copy it out.
    pub fn logits_buffer(&self) -> &wgpu::Buffer {
        &self.bufs.logits
    }

    /// The buffer holding the inference's status word (`u32`, 0 when every value was stored;
    /// `STORAGE | COPY_SRC`). [`LogitsReadback`](super::LogitsReadback) reads it with the
    /// logits and turns a non-zero word into an error.
    pub fn status_buffer(&self) -> &wgpu::Buffer {
        &self.bufs.status
    }

    pub(crate) fn status_decoder(&self) -> StatusDecoder {
        self.status.clone()
    }

    /// Records a whole inference (clearing the status word, then one compute pass with every
    /// dispatch) into the host's encoder.
    /// It reads [`GpuRunner::input_buffer`] and writes [`GpuRunner::logits_buffer`]; the host
    /// submits when it likes. Inferences recorded on one runner share its activation buffers:
    /// submit them in order (the queue does), never record the same runner from two threads at
    /// once without your own ordering.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        self.encode_pass(encoder, None);
    }

    /// Records the inference: one compute pass, or with texture operands one pass per run of
    /// dispatches between two copies into the input texture; `timestamps` at the beginning of
    /// the first pass and the end of the last.
    fn encode_pass(&self, encoder: &mut wgpu::CommandEncoder, timestamps: Option<&wgpu::QuerySet>) {
        encoder.clear_buffer(&self.bufs.status, 0, None);
        let n = self.steps.len();
        let mut k = 0;
        while k < n {
            self.encode_copy(encoder, &self.steps[k]);
            let end = (k + 1..n)
                .find(|&j| self.steps[j].copy.is_some())
                .unwrap_or(n);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("regnet"),
                timestamp_writes: timestamps.filter(|_| k == 0 || end == n).map(|q| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: q,
                        beginning_of_pass_write_index: (k == 0).then_some(0),
                        end_of_pass_write_index: (end == n).then_some(1),
                    }
                }),
            });
            for s in &self.steps[k..end] {
                pass.set_pipeline(&s.pipeline);
                pass.set_bind_group(0, &s.bind_group, &[]);
                pass.dispatch_workgroups(s.grid.0, s.grid.1, 1);
            }
            k = end;
        }
    }

    /// Records a step's copy into the input texture, if it has one.
    fn encode_copy(&self, encoder: &mut wgpu::CommandEncoder, step: &Step) {
        if let (Some((loc, texels)), Some((texture, _))) = (step.copy, &self.bufs.x_texture) {
            operands::encode_copy(encoder, self.bufs.at(loc), texture, texels, self.precision);
        }
    }

    /// Logits `[N, classes]` for an input of exactly [`GpuRunner::input_shape`].
    pub fn run(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.run_with_taps(input)?.0)
    }

    /// [`run`](Self::run) without blocking, for async hosts and the browser (wasm32 +
    /// WebGPU, where nothing may block): writes the input, submits one inference with the
    /// copy of its logits, and awaits the mapping (see [`readback`](super::readback) for who
    /// polls the device on native). Not for taps.
    ///
    /// ```no_run
    /// # async fn demo(runner: &regnet_wgpu::gpu::GpuRunner, x: &regnet_wgpu::Tensor)
    /// #     -> regnet_wgpu::Result<()> {
    /// let logits = runner.run_async(x).await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_async(&self, input: &Tensor) -> Result<Tensor> {
        let data = self.check_input(input)?;
        self.context().check_lost()?;
        let device = &self.context().device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let readback = super::readback::LogitsReadback::new(self);
        self.context()
            .queue
            .write_buffer(&self.bufs.input, 0, &data);
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("regnet"),
        });
        self.encode(&mut enc);
        readback.encode_copy(&mut enc);
        self.context().queue.submit([enc.finish()]);
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("inference failed: {e}")));
        }
        // A failed map after a lost device: the loss is the error to name.
        let logits = readback.read().await;
        logits.map_err(|e| self.context().check_lost().err().unwrap_or(e))
    }

    /// Checks the input and converts it to the storage precision.
    fn check_input(&self, input: &Tensor) -> Result<Vec<u8>> {
        check_image_batch(input)?;
        if input.shape != self.input_shape {
            return Err(Error::Input(format!(
                "this runner was built for input {:?}; got {:?}",
                self.input_shape, input.shape
            )));
        }
        if !self
            .bufs
            .input
            .usage()
            .contains(wgpu::BufferUsages::COPY_DST)
        {
            return Err(Error::Input(
                "the input buffer given to set_input_buffer lacks COPY_DST, which run() needs to write the input; \
                 add it, or fill the buffer yourself and use encode()"
                    .into(),
            ));
        }
        to_store(&input.data, self.precision, "the input")
    }

    /// Logits and the taps named in [`RunnerOptions::taps`].
    pub fn run_with_taps(&self, input: &Tensor) -> Result<(Tensor, Vec<(String, Tensor)>)> {
        let data = self.check_input(input)?;
        self.context().check_lost()?;
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let device = &self.context().device;
        let queue = &self.context().queue;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        queue.write_buffer(&self.bufs.input, 0, &data);
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("regnet"),
        });
        self.encode(&mut enc);
        let logits_bytes = (self.batch * self.classes * 4) as u64;
        enc.copy_buffer_to_buffer(&self.bufs.logits, 0, &self.readback, 0, logits_bytes);
        enc.copy_buffer_to_buffer(
            &self.bufs.status,
            0,
            &self.readback,
            align4(logits_bytes),
            4,
        );
        for t in &self.taps {
            let src = self.bufs.at(t.loc);
            enc.copy_buffer_to_buffer(src, 0, &t.staging, 0, align4(t.bytes));
        }
        queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("inference failed: {e}")));
        }
        let bytes = self
            .read_bytes(&self.readback)
            .map_err(|e| self.context().check_lost().err().unwrap_or(e))?;
        let at = align4(logits_bytes) as usize;
        self.status.check(u32::from_le_bytes([
            bytes[at],
            bytes[at + 1],
            bytes[at + 2],
            bytes[at + 3],
        ]))?;
        let logits = from_store(&bytes, self.batch * self.classes, Precision::F32);
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
        let (device, queue) = (&self.context().device, &self.context().queue);
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
        let (resolve, bytes) = self.submit_profile();
        let t = super::readback::read_buffer_blocking(self.context(), &resolve, 0, bytes)?;
        Ok(Some(self.profile_rows(&t)))
    }

    /// [`profile`](Self::profile) without blocking, for async hosts and the browser (see
    /// [`run_async`](Self::run_async)).
    ///
    /// ```no_run
    /// # async fn demo(runner: &regnet_wgpu::gpu::GpuRunner, x: &regnet_wgpu::Tensor)
    /// #     -> regnet_wgpu::Result<()> {
    /// if let Some(rows) = runner.profile_async(x).await? {
    ///     for (label, ms) in rows {
    ///         println!("{label}: {ms:.3} ms");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn profile_async(&self, input: &Tensor) -> Result<Option<Vec<(String, f64)>>> {
        let data = self.check_input(input)?;
        self.context().check_lost()?;
        if !self.has_timestamps() {
            return Ok(None);
        }
        self.context()
            .queue
            .write_buffer(&self.bufs.input, 0, &data);
        let (resolve, bytes) = self.submit_profile();
        let t = super::readback::read_buffer(self.context(), &resolve, 0, bytes).await?;
        Ok(Some(self.profile_rows(&t)))
    }

    /// Submits every dispatch in a timed pass of its own, the timestamps resolved into the
    /// returned buffer (`COPY_SRC`) of the returned size in bytes.
    fn submit_profile(&self) -> (wgpu::Buffer, u64) {
        let (device, queue) = (&self.context().device, &self.context().queue);
        let n = self.steps.len() as u32;
        let (qs, resolve) = self.timestamp_queries(2 * n);
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("profile"),
        });
        for (k, (s, d)) in self.steps.iter().zip(&self.dispatches).enumerate() {
            // The copy into the input texture is outside the timed pass.
            self.encode_copy(&mut enc, s);
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&d.label),
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
        queue.submit([enc.finish()]);
        (resolve, 16 * n as u64)
    }

    /// Each dispatch's label and milliseconds from the resolved timestamps (`u64` pairs).
    fn profile_rows(&self, bytes: &[u8]) -> Vec<(String, f64)> {
        let t: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let period = self.context().queue.get_timestamp_period() as f64;
        self.dispatches
            .iter()
            .enumerate()
            .map(|(k, d)| {
                let ticks = t[2 * k + 1].saturating_sub(t[2 * k]);
                (d.label.clone(), ticks as f64 * period / 1e6)
            })
            .collect()
    }

    fn has_timestamps(&self) -> bool {
        self.context()
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Checks the input, takes the runner's lock and uploads the input for a timed run;
    /// `None` when the device has no `timestamp-query`.
    fn begin_timed(&self, input: &Tensor) -> Result<Option<std::sync::MutexGuard<'_, ()>>> {
        let data = self.check_input(input)?;
        if !self.has_timestamps() {
            return Ok(None);
        }
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.context()
            .queue
            .write_buffer(&self.bufs.input, 0, &data);
        Ok(Some(guard))
    }

    fn timestamp_buffers(&self, count: u32) -> (wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer) {
        let (qs, resolve) = self.timestamp_queries(count);
        let staging = self
            .context()
            .device
            .create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps readback"),
                size: 8 * count as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
        (qs, resolve, staging)
    }

    /// `count` timestamp queries and the buffer (`COPY_SRC`) they resolve into.
    fn timestamp_queries(&self, count: u32) -> (wgpu::QuerySet, wgpu::Buffer) {
        let device = &self.context().device;
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
        (qs, resolve)
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
        self.context()
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
