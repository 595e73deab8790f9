//! Register tiles per adapter type: how many outputs each kernel invocation computes.
//!
//! A CPU-backed adapter (lavapipe, SwiftShader, WARP) runs a workgroup on one core, 8 or 16
//! invocations per SIMD instruction; a storage-buffer load there costs as much as dozens of
//! FMAs (it is a loop over the lanes), so the fastest kernels compute many outputs per
//! invocation from few loads. A GPU hides load latency with occupancy instead, which large
//! register tiles would lower. The runner therefore picks the tiles by these documented rules,
//! per adapter type ([`Tiling::for_adapter`]) and layer shape; [`RunnerOptions::tiling`]
//! overrides the choice (the tests run both rule sets on every adapter: results are the same,
//! only speed differs).
//!
//! [`RunnerOptions::tiling`]: super::RunnerOptions::tiling

/// The tile rules of one adapter type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tiling {
    /// Large tiles for CPU-backed adapters (`wgpu::DeviceType::Cpu`): the 1x1 GEMM computes
    /// 16 output channels x 16 pixels per invocation.
    Cpu,
    /// Small tiles for GPUs (every other device type): the 1x1 GEMM computes 8 output channels
    /// x 4 pixels per invocation.
    Gpu,
}

impl Tiling {
    /// The rules for an adapter: [`Tiling::Cpu`] for `DeviceType::Cpu`, else [`Tiling::Gpu`].
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        if info.device_type == wgpu::DeviceType::Cpu {
            Tiling::Cpu
        } else {
            Tiling::Gpu
        }
    }

    /// The 1x1 GEMM's register tile `[TM, TN]`: output channels x pixels per invocation (each a
    /// multiple of 4; `TM * TN <= 256`, what the kernel's accumulator array holds).
    pub fn pointwise(self) -> [u32; 2] {
        match self {
            Tiling::Cpu => [16, 16],
            Tiling::Gpu => [8, 4],
        }
    }
}
