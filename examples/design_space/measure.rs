//! Timing one model on the chosen backend: warm-up runs, then the median of timed runs.

use std::time::Instant;

use regnet_wgpu::config::Architecture;
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::design_space::stats::median;
use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions};
use regnet_wgpu::{Plan, Result, Tensor, Weights};

/// How each model is timed.
#[derive(Clone, Copy)]
pub struct Timing {
    /// Input size (square).
    pub size: usize,
    /// Images per run.
    pub batch: usize,
    /// Untimed runs first (the GPU compiles any pipeline it has not seen in the first).
    pub warmup: usize,
    /// Timed runs.
    pub runs: usize,
}

/// Where the models run.
pub enum Backend {
    /// The CPU backend (f32).
    Cpu,
    /// The GPU: one context, so every model shares the pipelines already compiled.
    Gpu(Box<GpuContext>, Precision),
}

/// One model's median latency, and how it was taken.
pub struct Measured {
    /// Median milliseconds per run (a batch).
    pub median_ms: f64,
    /// `wall` or `gpu-timestamps`.
    pub timing: &'static str,
}

impl Backend {
    /// `cpu (NAME, N threads)` or the adapter.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Backend::Gpu(ctx, _) => ctx.describe(),
        }
    }

    /// Builds `arch` with random weights and times it.
    pub fn measure(&self, arch: &Architecture, t: &Timing) -> Result<Measured> {
        let plan = Plan::new(arch, t.size, t.size)?;
        let weights = Weights::random(&plan, 0);
        let x = input(t.batch, t.size);
        match self {
            Backend::Cpu => {
                let cpu = CpuBackend::new(plan, weights)?;
                wall_median(t, || cpu.run(&x).map(drop))
            }
            Backend::Gpu(ctx, precision) => {
                let opts = RunnerOptions {
                    batch: t.batch,
                    precision: *precision,
                    ..Default::default()
                };
                let runner = GpuRunner::new(ctx, &plan, &weights, opts)?;
                for _ in 0..t.warmup {
                    runner.run(&x)?;
                }
                match runner.time_gpu(&x, t.runs)? {
                    Some(times) => Ok(Measured {
                        median_ms: median(&times).unwrap_or(f64::NAN),
                        timing: "gpu-timestamps",
                    }),
                    None => wall_median(&Timing { warmup: 0, ..*t }, || runner.run(&x).map(drop)),
                }
            }
        }
    }
}

fn wall_median(t: &Timing, mut run: impl FnMut() -> Result<()>) -> Result<Measured> {
    for _ in 0..t.warmup {
        run()?;
    }
    let times = (0..t.runs)
        .map(|_| {
            let start = Instant::now();
            run()?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(Measured {
        median_ms: median(&times).unwrap_or(f64::NAN),
        timing: "wall",
    })
}

/// A deterministic input batch (values do not change the speed).
fn input(batch: usize, size: usize) -> Tensor {
    let n = batch * 3 * size * size;
    let data = (0..n).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
    Tensor::new(vec![batch, 3, size, size], data).expect("shape and data agree")
}
