//! The adapter's measured limits, what benchmarks compare the kernels with: its arithmetic peak
//! (`shaders/fma_peak.wgsl`: "half of the adapter's FMA peak") and its storage bandwidth
//! (`shaders/bandwidth_peak.wgsl`, a streaming copy): together the roofline, where a kernel of
//! arithmetic intensity I (FLOPs per byte moved) can reach at most min(peak FLOP/s, I x
//! bandwidth). And what one load costs by where it reads (`shaders/load_peak.wgsl`).

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
    let out = buffer(ctx, "fma_peak out", (WORKGROUPS * WG * 4) as u64);
    let constants = [("WG", WG as f64), ("ITERS", ITERS as f64)];
    let secs = best_time(
        ctx,
        ("fma_peak", SOURCE, &constants),
        &[&out],
        WORKGROUPS,
        runs,
    )?;
    Ok(FLOPS / secs / 1e9)
}

/// Bytes of each of the streaming copy's two buffers: 64 MiB, far past any cache, inside
/// WebGPU's default 128 MiB storage binding.
const STREAM_BYTES: u64 = 64 << 20;

/// The best of `runs` timed dispatches of a streaming copy (`shaders/bandwidth_peak.wgsl`, the
/// faster of its two access patterns), in GB/s of storage traffic (bytes read plus bytes written over the wall time of a
/// submission and its completion; one warm-up run first): the bandwidth roof of the roofline.
///
/// ```no_run
/// let ctx = regnet_wgpu::gpu::GpuContext::new(regnet_wgpu::gpu::Precision::F32)?;
/// println!("{:.1} GB/s", regnet_wgpu::gpu::peak::bandwidth_peak(&ctx, 5)?);
/// # Ok::<(), regnet_wgpu::Error>(())
/// ```
pub fn bandwidth_peak(ctx: &GpuContext, runs: usize) -> Result<f64> {
    let bytes = STREAM_BYTES.min(ctx.device.limits().max_storage_buffer_binding_size / 16 * 16);
    let src = buffer(ctx, "bandwidth_peak src", bytes);
    let dst = buffer(ctx, "bandwidth_peak dst", bytes);
    let mut best = f64::INFINITY;
    for interleaved in [true, false] {
        let constants = [
            ("WG", WG as f64),
            ("INTERLEAVED", interleaved as u32 as f64),
        ];
        let source = ("bandwidth_peak", STREAM_SOURCE, &constants[..]);
        best = best.min(best_time(ctx, source, &[&src, &dst], 1024, runs)?);
    }
    Ok(2.0 * bytes as f64 / best / 1e9)
}

const STREAM_SOURCE: &str = include_str!("../../shaders/bandwidth_peak.wgsl");

const LOAD_SOURCE: &str = include_str!("../../shaders/load_peak.wgsl");
/// Workgroups of the load microkernel.
const LOAD_WORKGROUPS: u32 = 256;

/// What a load costs the adapter by where it reads ([`load_rates`]): lane loads per second in
/// billions (one vec4 each, every invocation at its own address), each with 8 FMAs on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadRates {
    /// From a storage buffer (`var<storage>`).
    pub storage: f64,
    /// From a 2-D texture (`textureLoad`), as the convolutions' texture operands read.
    pub texture: f64,
    /// From a uniform buffer.
    pub uniform: f64,
    /// No load: the FMAs alone, the ceiling of the three.
    pub none: f64,
}

/// The best of `runs` timed dispatches of the load microkernel (`shaders/load_peak.wgsl`) per
/// source: on lavapipe a storage load is a loop over the SIMD lanes, about ten times a texel
/// fetch, which decides where the convolutions read their operands
/// ([`RunnerOptions::textures`](super::RunnerOptions::textures)).
///
/// ```no_run
/// let ctx = regnet_wgpu::gpu::GpuContext::new(regnet_wgpu::gpu::Precision::F32)?;
/// let r = regnet_wgpu::gpu::peak::load_rates(&ctx, 3)?;
/// println!("storage {:.2}, texture {:.2} G loads/s", r.storage, r.texture);
/// # Ok::<(), regnet_wgpu::Error>(())
/// ```
pub fn load_rates(ctx: &GpuContext, runs: usize) -> Result<LoadRates> {
    let s = buffer(ctx, "load_peak storage", 65536 * 16);
    let u = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("load_peak uniform"),
        size: 4096 * 16,
        usage: wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    });
    let t = ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("load_peak texture"),
        size: wgpu::Extent3d {
            width: 256,
            height: 256,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING,
        view_formats: &[],
    });
    let view = t.create_view(&Default::default());
    let out = buffer(ctx, "load_peak out", (LOAD_WORKGROUPS * WG * 4) as u64);
    let bindings = [
        s.as_entire_binding(),
        wgpu::BindingResource::TextureView(&view),
        u.as_entire_binding(),
        out.as_entire_binding(),
    ];
    let loads = (LOAD_WORKGROUPS * WG) as f64 * ITERS as f64;
    let rate = |mode: u32| -> Result<f64> {
        let constants = [
            ("WG", WG as f64),
            ("ITERS", ITERS as f64),
            ("MODE", mode as f64),
        ];
        let source = ("load_peak", LOAD_SOURCE, &constants[..]);
        Ok(loads / best_time_with(ctx, source, &bindings, LOAD_WORKGROUPS, runs)? / 1e9)
    };
    Ok(LoadRates {
        storage: rate(0)?,
        texture: rate(1)?,
        uniform: rate(2)?,
        none: rate(3)?,
    })
}

fn buffer(ctx: &GpuContext, label: &str, size: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

/// The best wall time in seconds of `runs` submissions (after one warm-up) of a microkernel
/// `(label, source, constants)` dispatched on `workgroups` x 1 x 1 with `buffers` bound in order.
fn best_time(
    ctx: &GpuContext,
    source: (&str, &str, &[(&str, f64)]),
    buffers: &[&wgpu::Buffer],
    workgroups: u32,
    runs: usize,
) -> Result<f64> {
    let bindings: Vec<_> = buffers.iter().map(|b| b.as_entire_binding()).collect();
    best_time_with(ctx, source, &bindings, workgroups, runs)
}

/// [`best_time`] with any resources bound in order.
fn best_time_with(
    ctx: &GpuContext,
    (label, source, constants): (&str, &str, &[(&str, f64)]),
    bindings: &[wgpu::BindingResource],
    workgroups: u32,
    runs: usize,
) -> Result<f64> {
    let device = &ctx.device;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    let entries: Vec<wgpu::BindGroupEntry> = bindings
        .iter()
        .enumerate()
        .map(|(i, r)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: r.clone(),
        })
        .collect();
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let mut best = f64::INFINITY;
    for run in 0..=runs.max(1) {
        let mut enc = device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(workgroups, 1, 1);
        }
        let t0 = Instant::now();
        ctx.queue.submit([enc.finish()]);
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the {label} microkernel: {e}")))?;
        if run > 0 {
            best = best.min(t0.elapsed().as_secs_f64());
        }
    }
    Ok(best)
}
