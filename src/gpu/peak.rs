//! The adapter's measured arithmetic peak (`shaders/fma_peak.wgsl`): what benchmarks compare
//! the kernels' GFLOP/s with ("half of the adapter's FMA peak").

use std::time::Instant;

use super::GpuContext;
use crate::error::{Error, Result};

const SOURCE: &str = include_str!("../../shaders/fma_peak.wgsl");
const WG: u32 = 64;
const ITERS: u32 = 1024;
/// Workgroups per dispatch: enough invocations to fill any adapter's lanes many times.
const WORKGROUPS: u32 = 2048;
/// FLOPs of one dispatch: 2 per FMA, 32 FMAs a round.
const FLOPS: f64 = (WORKGROUPS * WG) as f64 * ITERS as f64 * 64.0;

/// The best of `runs` timed dispatches of the FMA microkernel, in GFLOP/s (wall time of a
/// submission and its completion; one warm-up run first).
///
/// ```no_run
/// let ctx = regnet_wgpu::gpu::GpuContext::new(regnet_wgpu::gpu::Precision::F32)?;
/// println!("{:.1} GFLOP/s", regnet_wgpu::gpu::peak::fma_peak(&ctx, 5)?);
/// # Ok::<(), regnet_wgpu::Error>(())
/// ```
pub fn fma_peak(ctx: &GpuContext, runs: usize) -> Result<f64> {
    let device = &ctx.device;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("fma_peak.wgsl"),
        source: wgpu::ShaderSource::Wgsl(SOURCE.into()),
    });
    let constants = [("WG", WG as f64), ("ITERS", ITERS as f64)];
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("fma_peak"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    let out = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("fma_peak out"),
        size: (WORKGROUPS * WG * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("fma_peak"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: out.as_entire_binding(),
        }],
    });
    let mut best = f64::INFINITY;
    for run in 0..=runs.max(1) {
        let mut enc = device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(WORKGROUPS, 1, 1);
        }
        let t0 = Instant::now();
        ctx.queue.submit([enc.finish()]);
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the FMA microkernel: {e}")))?;
        if run > 0 {
            best = best.min(t0.elapsed().as_secs_f64());
        }
    }
    Ok(FLOPS / best / 1e9)
}
