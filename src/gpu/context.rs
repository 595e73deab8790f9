//! The adapter, device and queue the runners work on.

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
}

impl GpuContext {
    /// Creates the library's own device on the best adapter (Vulkan, Metal, DX12 or WebGPU),
    /// with every limit the adapter offers, `shader-f16` when `precision` is f16, and the
    /// `timestamp-query` and `subgroups` features when the adapter has them.
    pub async fn new_async(precision: Precision) -> Result<Self> {
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
            .map_err(|e| Error::Gpu(format!("{NO_ADAPTER_HELP} ({e})")))?;
        let info = adapter.get_info();
        let mut features = wgpu::Features::empty();
        if precision == Precision::F16 {
            if !adapter.features().contains(wgpu::Features::SHADER_F16) {
                return Err(Error::Gpu(format!(
                    "adapter `{}` lacks the `shader-f16` feature that --precision f16 needs; use f32",
                    info.name
                )));
            }
            features |= wgpu::Features::SHADER_F16;
        }
        if adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        if adapter.features().contains(wgpu::Features::SUBGROUP) {
            features |= wgpu::Features::SUBGROUP;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("regnet-wgpu"),
                required_features: features,
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("adapter `{}` refused a device: {e}", info.name)))?;
        // Errors are caught by error scopes around each operation; anything that escapes them
        // (e.g. a device lost between calls) is reported rather than aborting the host process.
        device.on_uncaptured_error(std::sync::Arc::new(|e| {
            eprintln!("regnet-wgpu: uncaptured wgpu error: {e}");
        }));
        Ok(GpuContext {
            device,
            queue,
            info,
        })
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
        }
    }

    /// `name (backend, device type)`, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Whether the device runs subgroups of exactly
    /// [`SUBGROUP_SIZE`](super::kernels::SUBGROUP_SIZE) invocations with the `subgroups`
    /// feature enabled (lavapipe on 256-bit SIMD does): the 1x1 GEMM's subgroup entry point
    /// needs both.
    pub fn has_subgroups(&self) -> bool {
        self.device.features().contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size == super::kernels::SUBGROUP_SIZE
            && self.info.subgroup_max_size == super::kernels::SUBGROUP_SIZE
    }

    /// Whether the device has `shader-f16` enabled.
    pub fn has_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }
}
