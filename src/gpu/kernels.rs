//! One dispatcher per shader family, and the pipeline cache.
//!
//! Shaders are real `.wgsl` files under `shaders/`. The templating steps: each module is
//! the precision line (`alias store_t = f32;` or `enable f16; alias store_t = f16;`), then
//! `prelude.wgsl`, then (the two convolution families) how they read their operands
//! ([`Operands`]: `operands_storage.wgsl` or `operands_texture.wgsl`), then the kernel, with
//! its loops marked `// unroll` written out ([`super::unroll`]); on devices with 8-invocation
//! subgroups the convolutions'
//! modules also get `subgroup.wgsl` and `conv_pointwise_subgroup.wgsl` / `conv_subgroup.wgsl`, a
//! second entry point of the same kernel. Variants (activation, fused residual, fused SE gate,
//! register tile, workgroup size) are pipeline-overridable constants; the register tiles come
//! from the adapter type's rules in [`super::tiling`]. The modules are compiled with wgpu's
//! runtime checks unless the runner is given [`ShaderChecks::unchecked`].

use std::collections::HashMap;
use std::sync::Mutex;

use super::{GpuContext, Precision};
use crate::plan::Activation;

const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");
const SUBGROUP_POINTWISE: &str = include_str!("../../shaders/conv_pointwise_subgroup.wgsl");
const SUBGROUP_CONV: &str = include_str!("../../shaders/conv_subgroup.wgsl");
const SUBGROUP_SHARED: &str = include_str!("../../shaders/subgroup.wgsl");

/// Where the convolutions read their input and weights from: the two files that declare
/// bindings 1 (`x`) and 2 (`w`) of `conv.wgsl` and `conv_pointwise.wgsl` and their
/// `load_x` / `load_w`. Same values either way; only speed differs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Operands {
    /// Storage buffers (`operands_storage.wgsl`): every adapter.
    #[default]
    Storage,
    /// 2-D textures, [`TEXTURE_ROW`] vec4 texels a row (`operands_texture.wgsl`): CPU-backed
    /// adapters, where a texel fetch is one gather and a storage load a loop over the lanes.
    Texture,
}

impl Operands {
    /// The WGSL file under `shaders/`.
    pub fn file(self) -> &'static str {
        match self {
            Operands::Storage => "operands_storage.wgsl",
            Operands::Texture => "operands_texture.wgsl",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Operands::Storage => include_str!("../../shaders/operands_storage.wgsl"),
            Operands::Texture => include_str!("../../shaders/operands_texture.wgsl"),
        }
    }
}

/// `log2` of the texels per row of an operand texture (`TEXTURE_ROW_BITS` in
/// `operands_texture.wgsl`).
pub const TEXTURE_ROW_BITS: u32 = 12;
/// Texels (vec4s) per row of an operand texture: 4096, inside every WebGPU device's 2-D limit.
pub const TEXTURE_ROW: u32 = 1 << TEXTURE_ROW_BITS;

/// The subgroup size the subgroup entry points are written for (`SG` in `shaders/subgroup.wgsl`;
/// `tests/shaders.rs` checks that the two agree).
pub const SUBGROUP_SIZE: u32 = 8;

/// Whether the kernels are compiled with wgpu's runtime checks ([`wgpu::ShaderRuntimeChecks`]):
/// bounds checks on every buffer access, and loops bounded against infinite iteration.
///
/// Checked is the default. The kernels compute every index in bounds by construction (the
/// runner sizes each buffer from the same parameters, and refuses plans whose indices would
/// overflow), and the tests compare checked and unchecked results on every fixture; unchecked
/// runs faster (BENCHMARKS.md says how much, and which check costs what), but an index out of
/// bounds is then undefined behaviour on Metal and DX12. Hence the `unsafe` constructors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShaderChecks {
    bounds_checks: bool,
    force_loop_bounding: bool,
}

impl Default for ShaderChecks {
    fn default() -> Self {
        Self::checked()
    }
}

impl ShaderChecks {
    /// Every runtime check (the default).
    pub const fn checked() -> Self {
        ShaderChecks {
            bounds_checks: true,
            force_loop_bounding: true,
        }
    }

    /// No runtime checks.
    ///
    /// # Safety
    /// The kernels then read and write buffers without bounds checks, which is undefined
    /// behaviour on some backends if an index is ever out of bounds. regnet-wgpu sizes every
    /// buffer it binds and checks a host's buffers, so this holds unless a host binds buffers
    /// smaller than the runner says ([`GpuRunner::input_buffer_size`](super::GpuRunner::input_buffer_size)).
    pub const unsafe fn unchecked() -> Self {
        ShaderChecks {
            bounds_checks: false,
            force_loop_bounding: false,
        }
    }

    /// Only one of the checks, to measure what each costs.
    ///
    /// # Safety
    /// As [`ShaderChecks::unchecked`] for the checks turned off.
    pub const unsafe fn with(bounds_checks: bool, force_loop_bounding: bool) -> Self {
        ShaderChecks {
            bounds_checks,
            force_loop_bounding,
        }
    }

    /// Whether these are all the checks.
    pub fn is_checked(self) -> bool {
        self == Self::checked()
    }

    fn runtime_checks(self) -> wgpu::ShaderRuntimeChecks {
        let mut c = wgpu::ShaderRuntimeChecks::checked();
        c.bounds_checks = self.bounds_checks;
        c.force_loop_bounding = self.force_loop_bounding;
        c
    }
}

/// A kernel family: one `.wgsl` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `conv.wgsl`: direct convolution, any kernel, stride, padding, dilation, groups.
    Conv,
    /// `conv_pointwise.wgsl`: 1x1 convolution (one group, any stride) as a register-tiled GEMM.
    ConvPointwise,
    /// `pool.wgsl`: global average pooling.
    Pool,
    /// `pool2d.wgsl`: max, average and adaptive average pooling over windows.
    Pool2d,
    /// `channel_shuffle.wgsl`: ShuffleNet's channel shuffle.
    ChannelShuffle,
    /// `deform_conv.wgsl`: torchvision's deformable convolution.
    DeformConv,
    /// `channel_pool.wgsl`: the mean and max over channels (CBAM).
    ChannelPool,
    /// `spatial_gate.wgsl`: channels times a spatial map (CBAM).
    SpatialGate,
    /// `channel_copy.wgsl`: channel ranges copied (ShuffleNetV2's split and concatenation).
    ChannelCopy,
    /// `linear.wgsl`: fully connected layer (the head).
    Linear,
    /// `squeeze_excite.wgsl`: squeeze-and-excitation's gate (pool, two 1x1 convs) in one pass.
    SqueezeExcite,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 11] = [
        Family::Conv,
        Family::ConvPointwise,
        Family::Pool,
        Family::Pool2d,
        Family::Linear,
        Family::SqueezeExcite,
        Family::ChannelShuffle,
        Family::DeformConv,
        Family::ChannelPool,
        Family::SpatialGate,
        Family::ChannelCopy,
    ];

    /// The file name under `shaders/`.
    pub fn file(self) -> &'static str {
        match self {
            Family::Conv => "conv.wgsl",
            Family::ConvPointwise => "conv_pointwise.wgsl",
            Family::Pool => "pool.wgsl",
            Family::Pool2d => "pool2d.wgsl",
            Family::ChannelShuffle => "channel_shuffle.wgsl",
            Family::DeformConv => "deform_conv.wgsl",
            Family::ChannelPool => "channel_pool.wgsl",
            Family::SpatialGate => "spatial_gate.wgsl",
            Family::ChannelCopy => "channel_copy.wgsl",
            Family::Linear => "linear.wgsl",
            Family::SqueezeExcite => "squeeze_excite.wgsl",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Family::Conv => include_str!("../../shaders/conv.wgsl"),
            Family::ConvPointwise => include_str!("../../shaders/conv_pointwise.wgsl"),
            Family::Pool => include_str!("../../shaders/pool.wgsl"),
            Family::Pool2d => include_str!("../../shaders/pool2d.wgsl"),
            Family::ChannelShuffle => include_str!("../../shaders/channel_shuffle.wgsl"),
            Family::DeformConv => include_str!("../../shaders/deform_conv.wgsl"),
            Family::ChannelPool => include_str!("../../shaders/channel_pool.wgsl"),
            Family::SpatialGate => include_str!("../../shaders/spatial_gate.wgsl"),
            Family::ChannelCopy => include_str!("../../shaders/channel_copy.wgsl"),
            Family::Linear => include_str!("../../shaders/linear.wgsl"),
            Family::SqueezeExcite => include_str!("../../shaders/squeeze_excite.wgsl"),
        }
    }

    /// The complete WGSL source of this family at `precision` (precision line + prelude +
    /// kernel), its `// unroll` loops written out ([`super::unroll`]); the convolutions read
    /// their operands from storage buffers.
    pub fn source(self, precision: Precision) -> String {
        self.source_with(precision, Operands::Storage, false)
    }

    /// Whether the family reads its input and weights through [`Operands`] (the two
    /// convolution families and squeeze-and-excitation's gate, which reads the input of the
    /// convolution after it).
    pub fn has_operands(self) -> bool {
        matches!(
            self,
            Family::Conv | Family::ConvPointwise | Family::SqueezeExcite
        )
    }

    /// The complete source with the convolutions' operands read as `operands` (ignored by the
    /// other families) and, when `subgroups`, the convolutions' subgroup entry point appended
    /// (it needs the device's `subgroups` feature).
    pub fn source_with(self, precision: Precision, operands: Operands, subgroups: bool) -> String {
        let mut src = self.raw_source(precision, operands);
        let entry = match self {
            Family::ConvPointwise if subgroups => SUBGROUP_POINTWISE,
            Family::Conv if subgroups => SUBGROUP_CONV,
            _ => return unrolled(src),
        };
        src.push('\n');
        src.push_str(SUBGROUP_SHARED);
        src.push('\n');
        src.push_str(entry);
        unrolled(src)
    }

    fn raw_source(self, precision: Precision, operands: Operands) -> String {
        // STORE_LIMIT: the f32 bit pattern of the smallest magnitude store_t cannot hold
        // (infinity for f32; 65520 for f16, which rounds to infinity).
        let line = match precision {
            Precision::F32 => "alias store_t = f32;\nconst STORE_LIMIT: u32 = 0x7f800000u;\n",
            Precision::F16 => {
                "enable f16;\nalias store_t = f16;\nconst STORE_LIMIT: u32 = 0x477ff000u;\n"
            }
        };
        let operands = if self.has_operands() {
            operands.source()
        } else {
            ""
        };
        format!("{line}{PRELUDE}\n{operands}\n{}", self.body())
    }

    /// [`Family::source`] with, for the two convolution families, their subgroup entry point
    /// appended (it needs the device's `subgroups` feature).
    pub fn source_with_subgroups(self, precision: Precision) -> String {
        self.source_with(precision, Operands::Storage, true)
    }

    /// The fields of the family's `Params` struct (name, byte offset), from its Rust twin in
    /// [`super::params`].
    pub fn params_fields(self) -> &'static [(&'static str, usize)] {
        use super::params::*;
        match self {
            Family::Conv => ConvParams::FIELDS,
            Family::ConvPointwise => PointwiseParams::FIELDS,
            Family::Pool => PoolParams::FIELDS,
            Family::Pool2d => Pool2dParams::FIELDS,
            Family::ChannelShuffle => ChannelShuffleParams::FIELDS,
            Family::DeformConv => DeformConvParams::FIELDS,
            Family::ChannelPool => ChannelPoolParams::FIELDS,
            Family::SpatialGate => SpatialGateParams::FIELDS,
            Family::ChannelCopy => ChannelCopyParams::FIELDS,
            Family::Linear => LinearParams::FIELDS,
            Family::SqueezeExcite => SqueezeExciteParams::FIELDS,
        }
    }

    /// The storage bindings after the uniform at binding 0: (binding, read-only).
    pub fn storage_bindings(self) -> &'static [(u32, bool)] {
        match self {
            // x, w, bias, residual (deform: offset), gate (deform: mask), y, status
            Family::Conv | Family::ConvPointwise | Family::DeformConv => &[
                (1, true),
                (2, true),
                (3, true),
                (4, true),
                (5, true),
                (6, false),
                (7, false),
            ],
            // x, y
            Family::Pool
            | Family::Pool2d
            | Family::ChannelShuffle
            | Family::ChannelPool
            | Family::ChannelCopy => &[(1, true), (2, false)],
            // x, map, y
            Family::SpatialGate => &[(1, true), (2, true), (3, false)],
            // x, w, b, y, status
            Family::Linear => &[(1, true), (2, true), (3, true), (4, false), (5, false)],
            // x, w (W1 then W2), b (b1 then b2), scratch, gate
            Family::SqueezeExcite => &[(1, true), (2, true), (3, true), (4, false), (5, false)],
        }
    }

    /// Invocations per workgroup.
    pub fn workgroup_size(self) -> u32 {
        64
    }
}

/// A pipeline variant: its family and the values of its overridable constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// The kernel family.
    pub family: Family,
    /// Activation at the end.
    pub act: u32,
    /// Residual added before the activation (conv families).
    pub residual: bool,
    /// Squeeze-and-excitation gate fused into the input reads (conv families).
    pub gate: bool,
    /// Activation of the gated input (`GATE_ACT`, conv families).
    pub gate_act: u32,
    /// Conv and pointwise: kernel height, width and horizontal stride (`KH`, `KW`, `STRIDE`;
    /// pointwise: a 1x1 at any stride, or a "same" kernel at stride 1); 0 for other families.
    pub kernel: [u32; 3],
    /// Conv: horizontal dilation (`DIL`) and kernel columns per row span (`KC`); 0 otherwise.
    pub columns: [u32; 2],
    /// An invocation's register tile: output channels and pixels (conv: `OCN`, `PX`;
    /// pointwise: `TM`, `TN`; deformable conv: vec4s of output channels `OCV`, 0).
    pub tile: [u32; 2],
    /// Pointwise: planes are a multiple of 4 pixels (`ALIGNED`).
    pub aligned: bool,
    /// Conv families: the subgroup entry point (`main_subgroup`) rather than `main`.
    pub subgroup: bool,
    /// Invocations per workgroup (`WG`); 0 means the family's default.
    pub wg: u32,
    /// Where the conv families read their input and weights (the module, and bindings 1 and
    /// 2 of the layout); [`Operands::Storage`] for the other families.
    pub operands: Operands,
    /// A family's switch: pool2d's `MODE` (0 max, 1 average, 2 adaptive average), deform
    /// conv's `HAS_MASK`, squeeze-and-excitation's `POOL_MAX`, pointwise's `ROW_TILES`; 0
    /// otherwise.
    pub mode: u32,
    /// Pointwise: input channels per trip of the channel loop (`CHANNEL_STEP`, 1 or 4); 1
    /// otherwise.
    pub channel_step: u32,
}

impl Variant {
    /// A variant of a family without conv-specific constants.
    pub fn simple(family: Family, act: u32) -> Self {
        Variant {
            family,
            act,
            residual: false,
            gate: false,
            gate_act: 0,
            kernel: [0; 3],
            columns: [0; 2],
            tile: [0; 2],
            aligned: false,
            subgroup: false,
            wg: 0,
            operands: Operands::Storage,
            mode: 0,
            channel_step: 1,
        }
    }
}

/// `src` with its marked loops written out. The marks are in this crate's own shaders, and
/// `tests/shaders.rs` compiles every family's source: an unsupported mark is a bug found there.
fn unrolled(src: String) -> String {
    super::unroll::expand(&src).unwrap_or_else(|e| panic!("{e}"))
}

/// The bind group layout (and pipeline layout) of a family: its parameters as a uniform at
/// binding 0, then its storage buffers, of which a conv family reading [`Operands::Texture`]
/// has textures at bindings 1 and 2 instead.
fn layout(
    device: &wgpu::Device,
    f: Family,
    operands: Operands,
) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
    let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty,
        count: None,
    };
    let uniform = wgpu::BindingType::Buffer {
        ty: wgpu::BufferBindingType::Uniform,
        has_dynamic_offset: false,
        min_binding_size: None,
    };
    let mut entries = vec![entry(0, uniform)];
    for &(binding, read_only) in f.storage_bindings() {
        let texture = operands == Operands::Texture && (binding == 1 || binding == 2);
        entries.push(entry(
            binding,
            if texture {
                wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                }
            } else {
                wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                }
            },
        ));
    }
    let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(f.file()),
        entries: &entries,
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(f.file()),
        bind_group_layouts: &[Some(&bgl)],
        immediate_size: 0,
    });
    (bgl, pl)
}

/// The `ACT` constant of an activation.
pub fn act_code(a: Activation) -> u32 {
    match a {
        Activation::Identity => 0,
        Activation::Relu => 1,
        Activation::Sigmoid => 2,
        Activation::Relu6 => 3,
        Activation::Silu => 4,
    }
}

/// Shader modules, bind group layouts and a pipeline cache for one device and precision.
#[derive(Debug)]
pub struct Kernels {
    device: wgpu::Device,
    cache: Option<wgpu::PipelineCache>,
    modules: HashMap<(Family, Operands), wgpu::ShaderModule>,
    layouts: HashMap<(Family, Operands), (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    pipelines: Mutex<HashMap<Variant, wgpu::ComputePipeline>>,
}

impl Kernels {
    /// Compiles every family's module for `precision`; `subgroups`: the device runs the
    /// subgroup entry points ([`GpuContext::has_subgroups`]),
    /// so the convolutions' modules get them; `textures`: the convolutions also get modules
    /// that read their operands from textures ([`Operands::Texture`]). Pipelines go through the
    /// context's pipeline cache, if it has one ([`GpuContext::with_pipeline_cache`]).
    pub fn new(
        ctx: &GpuContext,
        precision: Precision,
        subgroups: bool,
        checks: ShaderChecks,
        textures: bool,
    ) -> Self {
        let device = &ctx.device;
        let mut modules = HashMap::new();
        let mut layouts = HashMap::new();
        let texture_families = Family::ALL
            .into_iter()
            .filter(|f| textures && f.has_operands());
        let keys = Family::ALL
            .into_iter()
            .map(|f| (f, Operands::Storage))
            .chain(texture_families.map(|f| (f, Operands::Texture)));
        for (f, operands) in keys {
            let src = f.source_with(precision, operands, subgroups);
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(f.file()),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            };
            let module = if checks.is_checked() {
                device.create_shader_module(desc)
            } else {
                // SAFETY: the caller chose unchecked shaders through an `unsafe` constructor of
                // ShaderChecks, whose contract this is.
                unsafe { device.create_shader_module_trusted(desc, checks.runtime_checks()) }
            };
            modules.insert((f, operands), module);
            layouts.insert((f, operands), layout(device, f, operands));
        }
        Kernels {
            device: device.clone(),
            cache: ctx.pipeline_cache().cloned(),
            modules,
            layouts,
            pipelines: Mutex::new(HashMap::new()),
        }
    }

    /// The bind group layout of a variant's family and operands.
    pub fn bind_group_layout(&self, v: &Variant) -> &wgpu::BindGroupLayout {
        &self.layouts[&(v.family, v.operands)].0
    }

    /// The pipeline of a variant, compiled on first use.
    pub fn pipeline(&self, v: Variant) -> wgpu::ComputePipeline {
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        cache.entry(v).or_insert_with(|| self.compile(v)).clone()
    }

    /// Compiles the pipelines of `variants` not compiled yet, on up to `threads` threads at
    /// once: drivers that compile on the CPU (lavapipe: about a second per convolution
    /// pipeline) then use every core, which divides a first run's setup by about the number
    /// of cores.
    pub fn prepare(&self, variants: &[Variant], threads: usize) {
        let todo: Vec<Variant> = {
            let cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
            let mut seen = std::collections::HashSet::new();
            variants
                .iter()
                .filter(|v| !cache.contains_key(v) && seen.insert(**v))
                .copied()
                .collect()
        };
        let compiled = self.compile_all(&todo, threads);
        let mut cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        for (v, p) in compiled {
            cache.entry(v).or_insert(p);
        }
    }

    /// Compiles `todo` on up to `threads` threads, each taking the next variant left.
    #[cfg(not(target_arch = "wasm32"))]
    fn compile_all(
        &self,
        todo: &[Variant],
        threads: usize,
    ) -> Vec<(Variant, wgpu::ComputePipeline)> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.clamp(1, todo.len().max(1)))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&v) = todo.get(i) else { break out };
                            out.push((v, self.compile(v)));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        })
    }

    /// In the browser (no threads; wgpu's WebGPU types are not `Send`): one after another.
    #[cfg(target_arch = "wasm32")]
    fn compile_all(
        &self,
        todo: &[Variant],
        _threads: usize,
    ) -> Vec<(Variant, wgpu::ComputePipeline)> {
        todo.iter().map(|&v| (v, self.compile(v))).collect()
    }

    /// Creates the pipeline of a variant: its module with the variant's override constants.
    fn compile(&self, v: Variant) -> wgpu::ComputePipeline {
        let wg = if v.wg == 0 {
            v.family.workgroup_size()
        } else {
            v.wg
        } as f64;
        let mut constants: Vec<(&str, f64)> = Vec::new();
        match v.family {
            Family::Conv | Family::ConvPointwise => {
                constants.push(("ACT", v.act as f64));
                constants.push(("HAS_RESIDUAL", v.residual as u32 as f64));
                constants.push(("HAS_GATE", v.gate as u32 as f64));
                constants.push(("GATE_ACT", v.gate_act as f64));
                constants.push(("WG", wg));
                if v.family == Family::Conv {
                    constants.push(("KH", v.kernel[0] as f64));
                    constants.push(("KW", v.kernel[1] as f64));
                    constants.push(("STRIDE", v.kernel[2] as f64));
                    constants.push(("DIL", v.columns[0] as f64));
                    constants.push(("KC", v.columns[1] as f64));
                    constants.push(("OCN", v.tile[0] as f64));
                    constants.push(("PX", v.tile[1] as f64));
                } else {
                    constants.push(("TM", v.tile[0] as f64));
                    constants.push(("TN", v.tile[1] as f64));
                    constants.push(("KH", v.kernel[0] as f64));
                    constants.push(("KW", v.kernel[1] as f64));
                    constants.push(("STRIDE", v.kernel[2] as f64));
                    constants.push(("ALIGNED", v.aligned as u32 as f64));
                    constants.push(("ROW_TILES", v.mode as f64));
                    constants.push(("CHANNEL_STEP", v.channel_step as f64));
                }
            }
            Family::Linear => {
                constants.push(("ACT", v.act as f64));
                constants.push(("WG", wg));
            }
            Family::DeformConv => {
                constants.push(("ACT", v.act as f64));
                constants.push(("HAS_MASK", v.mode as f64));
                constants.push(("OCV", v.tile[0] as f64));
                constants.push(("WG", wg));
            }
            Family::Pool2d => {
                constants.push(("MODE", v.mode as f64));
                constants.push(("WG", wg));
            }
            Family::SqueezeExcite => {
                constants.push(("POOL_MAX", v.mode as f64));
                constants.push(("WG", wg));
            }
            Family::Pool
            | Family::ChannelShuffle
            | Family::ChannelPool
            | Family::SpatialGate
            | Family::ChannelCopy => constants.push(("WG", wg)),
        }
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(v.family.file()),
                layout: Some(&self.layouts[&(v.family, v.operands)].1),
                module: &self.modules[&(v.family, v.operands)],
                entry_point: Some(if v.subgroup { "main_subgroup" } else { "main" }),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: self.cache.as_ref(),
            })
    }

    /// Number of pipelines compiled so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.lock().map(|c| c.len()).unwrap_or(0)
    }
}
