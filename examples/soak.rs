//! soak: many inferences on one runner, to show that memory stays flat and results stay equal.
//!
//! ```text
//! soak [--model NAME] [--size N] [--batch N] [--iters N] [--backend gpu|cpu]
//! ```
//!
//! It builds one runner (random weights), runs `--iters` inferences, checks every result is
//! bit-identical to the first, and prints the process's resident memory (VmRSS) after the
//! first inference, every tenth of the way, and at the end. Exit status 1 if a result differs
//! or an error occurs.
//!
//! ```text
//! cargo run --release --example soak -- --model regnet_x_200mf --size 32 --iters 10000
//! ```

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use regnet_wgpu::config::Architecture;
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions};
use regnet_wgpu::{Error, Plan, Result, Tensor, Weights};

/// Runs many inferences on one runner and reports resident memory.
#[derive(Parser, Debug)]
#[command(name = "soak")]
struct Args {
    /// A named model (any family).
    #[arg(long, default_value = "regnet_x_200mf")]
    model: String,
    /// Input size (square).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Images per inference.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Number of inferences.
    #[arg(long, default_value_t = 10_000)]
    iters: usize,
    /// gpu or cpu.
    #[arg(long, default_value = "gpu")]
    backend: String,
}

/// Resident memory of this process in KiB (Linux), 0 where unknown.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn run(args: &Args) -> Result<()> {
    if args.iters == 0 || args.batch == 0 || args.size == 0 {
        return Err(Error::Input(
            "--iters, --batch and --size must be at least 1".into(),
        ));
    }
    let plan = Plan::new(Architecture::named(&args.model)?, args.size, args.size)?;
    let weights = Weights::random(&plan, 0);
    let n = args.batch * 3 * args.size * args.size;
    let x = Tensor::new(
        vec![args.batch, 3, args.size, args.size],
        (0..n).map(|i| (i % 97) as f32 / 48.0 - 1.0).collect(),
    )?;
    let infer: Box<dyn Fn() -> Result<Tensor>> = match args.backend.as_str() {
        "gpu" => {
            let ctx = GpuContext::new(Precision::F32)?;
            println!("adapter: {}", ctx.describe());
            let opts = RunnerOptions {
                batch: args.batch,
                ..Default::default()
            };
            let runner = GpuRunner::new(&ctx, &plan, &weights, opts)?;
            Box::new(move || runner.run(&x))
        }
        "cpu" => {
            let cpu = CpuBackend::new(plan, weights)?;
            Box::new(move || cpu.run(&x))
        }
        other => {
            return Err(Error::Input(format!(
                "unknown backend `{other}` (gpu, cpu)"
            )))
        }
    };
    let first = infer()?;
    let start_rss = rss_kib();
    let t0 = Instant::now();
    println!(
        "{} x {} inferences of {} at {}x{} on the {}",
        args.iters, args.batch, args.model, args.size, args.size, args.backend
    );
    println!("after inference 1: RSS {start_rss} KiB");
    let step = (args.iters / 10).max(1);
    for i in 2..=args.iters {
        let y = infer()?;
        if y != first {
            return Err(Error::Gpu(format!("inference {i} differs from the first")));
        }
        if i % step == 0 || i == args.iters {
            println!(
                "after inference {i}: RSS {} KiB ({:.2} ms per inference so far)",
                rss_kib(),
                t0.elapsed().as_secs_f64() * 1e3 / (i - 1) as f64
            );
        }
    }
    let end_rss = rss_kib();
    println!(
        "RSS start {start_rss} KiB, end {end_rss} KiB, change {:+} KiB over {} inferences; all results identical",
        end_rss as i64 - start_rss as i64,
        args.iters
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
