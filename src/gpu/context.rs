//! The adapter, device and queue the runners work on.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use super::kernels::{Kernels, ShaderChecks};
use super::pipeline_cache::DiskPipelineCache;
use crate::error::{Error, Result};

/// Storage and arithmetic precision of a runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 storage and arithmetic.
    #[default]
    F32,
    /// f16 storage (activations and weights), f32 accumulation; needs the `shader-f16` feature.
    F16,
}

impl std::str::FromStr for Precision {
    type Err = Error;

    /// `f32` or `f16` (any case), as the examples' `--precision` takes it.
    ///
    /// ```
    /// use regnet_wgpu::gpu::Precision;
    /// assert_eq!("F16".parse::<Precision>().unwrap(), Precision::F16);
    /// assert!("f64".parse::<Precision>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            _ => Err(Error::Input(format!("unknown precision `{s}`: f32 or f16"))),
        }
    }
}

impl std::fmt::Display for Precision {
    /// `f32` or `f16`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}

impl Precision {
    /// Bytes per stored element.
    pub fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
}

/// How to get an adapter: what every message about a missing adapter says.
pub const NO_ADAPTER_HELP: &str =
    "no GPU adapter found. wgpu needs a Vulkan, Metal or DX12 driver; \
     on Debian/Ubuntu without a GPU, install Mesa's software Vulkan adapter (lavapipe) with \
     `sudo apt-get install mesa-vulkan-drivers`, or run on the CPU with `--backend cpu`";

/// A wgpu device and queue, with what the runners need to know about them.
#[derive(Clone, Debug)]
pub struct GpuContext {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter's description (name, backend, device type).
    pub info: wgpu::AdapterInfo,
    /// Whether the device lays its subgroups as the subgroup kernels assume (probed once).
    subgroup_layout: Arc<OnceLock<bool>>,
    /// Why the device was lost, once it is (the library's own devices only).
    lost: Arc<Mutex<Option<String>>>,
    /// Compiled pipelines kept on disk ([`GpuContext::with_pipeline_cache`]).
    pipeline_cache: Option<Arc<DiskPipelineCache>>,
    /// Shader modules and pipelines, shared by every model made on this context
    /// ([`GpuContext::kernels`]).
    kernels: Arc<Mutex<HashMap<KernelsKey, Arc<Kernels>>>>,
}

/// What a set of kernels is compiled for: precision, subgroup entry points, shader checks,
/// texture operands.
type KernelsKey = (Precision, bool, ShaderChecks, bool);

impl GpuContext {
    /// Creates the library's own device on the best adapter (Vulkan, Metal, DX12 or WebGPU),
    /// with every limit the adapter offers, `shader-f16` when `precision` is f16, and the
    /// `timestamp-query`, `subgroups` and `pipeline-cache` features when the adapter has them.
    ///
    /// On Linux, when `XDG_RUNTIME_DIR` is unset (headless machines, containers, CI) it first
    /// points it at a private temporary directory: Vulkan drivers probe for a Wayland display
    /// while the instance is made, and without it libwayland prints `error: XDG_RUNTIME_DIR is
    /// invalid or not set in the environment.` on stderr, twice per process, which reads like
    /// an error of the program's own. A variable that is already set is left as it is.
    pub async fn new_async(precision: Precision) -> Result<Self> {
        quiet_headless_wayland();
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter(format!("{NO_ADAPTER_HELP} ({e})")))?;
        let info = adapter.get_info();
        let mut features = wgpu::Features::empty();
        if precision == Precision::F16 {
            if !adapter.features().contains(wgpu::Features::SHADER_F16) {
                return Err(Error::UnsupportedFeature {
                    feature: "shader-f16",
                    adapter: info.name.clone(),
                    needed_for: "f16 storage (--precision f16; use f32)".into(),
                });
            }
            features |= wgpu::Features::SHADER_F16;
        }
        if adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        for optional in [wgpu::Features::SUBGROUP, wgpu::Features::PIPELINE_CACHE] {
            if adapter.features().contains(optional) {
                features |= optional;
            }
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("regnet-wgpu"),
                required_features: features,
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::NoAdapter(format!("adapter `{}` refused a device: {e}", info.name))
            })?;
        // Errors are caught by error scopes around each operation; anything that escapes them
        // (e.g. a device lost between calls) is reported rather than aborting the host process.
        device.on_uncaptured_error(std::sync::Arc::new(|e| {
            eprintln!("regnet-wgpu: uncaptured wgpu error: {e}");
        }));
        let ctx = GpuContext::from_device(device, queue, info);
        let lost = ctx.lost.clone();
        ctx.device.set_device_lost_callback(move |reason, message| {
            *lost.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("{reason:?}: {message}"));
        });
        Ok(ctx)
    }

    /// Blocking [`GpuContext::new_async`].
    ///
    /// ```no_run
    /// use regnet_wgpu::gpu::{GpuContext, Precision};
    /// let ctx = GpuContext::new(Precision::F32)?;
    /// println!("adapter: {}", ctx.describe());
    /// # Ok::<(), regnet_wgpu::Error>(())
    /// ```
    pub fn new(precision: Precision) -> Result<Self> {
        pollster::block_on(Self::new_async(precision))
    }

    /// A context on a device and queue that a host application created. It requests nothing
    /// of the device: [`GpuRunner::new`](super::GpuRunner::new) and
    /// [`GpuPreprocess::new`](super::GpuPreprocess::new) check its features and limits and
    /// name what is missing.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        GpuContext {
            device,
            queue,
            info,
            subgroup_layout: Arc::new(OnceLock::new()),
            lost: Arc::new(Mutex::new(None)),
            pipeline_cache: None,
            kernels: Arc::default(),
        }
    }

    /// This context with an on-disk pipeline cache in `dir` (see
    /// [`pipeline_cache`](super::pipeline_cache)): the runners and models made on it afterwards
    /// create their pipelines through it, so a second process skips most of the driver's
    /// compilation. Call [`GpuContext::save_pipeline_cache`] after building them. Where wgpu
    /// cannot cache pipelines for this device (not Vulkan, or a host's device without the
    /// `pipeline-cache` feature) the context is returned unchanged.
    ///
    /// ```no_run
    /// use regnet_wgpu::gpu::{pipeline_cache::default_cache_dir, GpuContext, Precision};
    /// let mut ctx = GpuContext::new(Precision::F32)?;
    /// if let Some(dir) = default_cache_dir() {
    ///     ctx = ctx.with_pipeline_cache(&dir);
    /// }
    /// // ... build runners on `ctx`, then:
    /// ctx.save_pipeline_cache()?;
    /// # Ok::<(), regnet_wgpu::Error>(())
    /// ```
    pub fn with_pipeline_cache(mut self, dir: impl AsRef<Path>) -> Self {
        self.pipeline_cache =
            DiskPipelineCache::open(&self.device, &self.info, dir.as_ref()).map(Arc::new);
        // Kernels compiled from now on go through the cache: a set of its own.
        self.kernels = Arc::default();
        self
    }

    /// The pipeline cache pipelines are created with, if any.
    pub fn pipeline_cache(&self) -> Option<&wgpu::PipelineCache> {
        self.pipeline_cache.as_ref().map(|c| &c.cache)
    }

    /// The kernels for `precision`, compiled once per context: every model made on it (and
    /// so every runner) shares their shader modules and pipelines, so a second model of the
    /// same shapes of convolution compiles nothing. Kernels made before
    /// [`GpuContext::with_pipeline_cache`] belong to the context it was called on.
    pub(crate) fn kernels(
        &self,
        precision: Precision,
        subgroups: bool,
        checks: ShaderChecks,
        textures: bool,
    ) -> Arc<Kernels> {
        let mut map = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((precision, subgroups, checks, textures))
            .or_insert_with(|| Arc::new(Kernels::new(self, precision, subgroups, checks, textures)))
            .clone()
    }

    /// Whether the pipeline cache was seeded from a valid file (a warm start).
    pub fn pipeline_cache_loaded(&self) -> bool {
        self.pipeline_cache.as_ref().is_some_and(|c| c.loaded)
    }

    /// Writes the pipeline cache to its file; `Ok(false)` when there is no cache or the driver
    /// had nothing to give. An error names the file that could not be written.
    pub fn save_pipeline_cache(&self) -> Result<bool> {
        match &self.pipeline_cache {
            Some(c) => c.save(),
            None => Ok(false),
        }
    }

    /// [`Error::DeviceLost`] once the device is lost. Known for the library's own devices
    /// ([`GpuContext::new`]); a host that made the device owns its device-lost callback.
    pub fn check_lost(&self) -> Result<()> {
        match self.lost.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(why) => Err(Error::DeviceLost(why.clone())),
            None => Ok(()),
        }
    }

    /// `name (backend, device type)`, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Whether the device runs the subgroup entry points: the `subgroups` feature is enabled,
    /// subgroups are exactly [`SUBGROUP_SIZE`](super::kernels::SUBGROUP_SIZE) invocations
    /// (lavapipe on 256-bit SIMD), and a probe kernel (`shaders/subgroup_probe.wgsl`, run once
    /// per context) found each subgroup to be 8 consecutive, active invocations of a workgroup
    /// with lanes in order, which the kernels assume and WGSL does not promise.
    pub fn has_subgroups(&self) -> bool {
        // The probe reads its result back blocking, which the browser forbids: on wasm32 the
        // portable kernels run.
        !cfg!(target_arch = "wasm32")
            && self.device.features().contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size == super::kernels::SUBGROUP_SIZE
            && self.info.subgroup_max_size == super::kernels::SUBGROUP_SIZE
            && *self
                .subgroup_layout
                .get_or_init(|| probe_subgroup_layout(self))
    }

    /// Whether the device has `shader-f16` enabled.
    pub fn has_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }
}

/// Points `XDG_RUNTIME_DIR` at a private directory when it is unset or not absolute (Linux
/// only, once per process). Vulkan drivers probe for a Wayland display while a `wgpu::Instance`
/// is made, and libwayland prints `error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment.` on headless machines without it. [`GpuContext::new_async`] calls this; a host
/// that makes its own instance can call it first. libwayland only checks that the variable
/// names an absolute path; the directory is made (mode 0700) so that anything else that uses
/// it finds one it owns.
pub fn quiet_headless_wayland() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let set =
                std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|v| Path::new(&v).is_absolute());
            if set {
                return;
            }
            use std::os::unix::fs::{DirBuilderExt, MetadataExt};
            let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
            let dir = std::env::temp_dir().join(format!("regnet-wgpu-runtime-{uid}"));
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            // The variable is set once, before this process makes its first wgpu instance.
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        });
    }
}

/// Workgroup sizes the runner dispatches (see [`super::tiling::Tiling::workgroup`]).
pub(crate) const PROBED_WORKGROUPS: [u32; 4] = [8, 16, 32, 64];

/// Runs `shaders/subgroup_probe.wgsl` for every workgroup size the runner uses; true when every
/// invocation found its subgroup laid out as the subgroup kernels assume. False on any error.
fn probe_subgroup_layout(ctx: &GpuContext) -> bool {
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let ok = run_subgroup_probe(ctx);
    let err = super::readback::ready_now(scope.pop()).flatten();
    ok.is_some_and(|v| v.iter().all(|&x| x == 1)) && err.is_none()
}

fn run_subgroup_probe(ctx: &GpuContext) -> Option<Vec<u32>> {
    let (device, queue) = (&ctx.device, &ctx.queue);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("subgroup_probe.wgsl"),
        source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/subgroup_probe.wgsl").into()),
    });
    let slot = 64 * 4; // bytes per workgroup size: 64 u32 (a valid storage offset alignment)
    let size = slot * PROBED_WORKGROUPS.len() as u64;
    let out = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("subgroup probe"),
        size,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    for (k, wg) in PROBED_WORKGROUPS.iter().enumerate() {
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("subgroup probe"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[("WG", *wg as f64)],
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("subgroup probe"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &out,
                    offset: k as u64 * slot,
                    size: wgpu::BufferSize::new(*wg as u64 * 4),
                }),
            }],
        });
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    queue.submit([enc.finish()]);
    let bytes = super::readback::read_buffer_blocking(ctx, &out, 0, size).ok()?;
    let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
    Some(
        PROBED_WORKGROUPS
            .iter()
            .enumerate()
            .flat_map(|(k, wg)| words[k * 64..k * 64 + *wg as usize].to_vec())
            .collect(),
    )
}
