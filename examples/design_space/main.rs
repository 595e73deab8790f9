//! design_space: the RegNet paper's method on your own adapter. Samples models from a design
//! space into a window of MACs, times each, and says what predicts latency here.
//!
//! ```text
//! design_space [--space regnet[,anynet]] [--samples N] [--seed S] [--macs MIN:MAX] [--se]
//!              [--backend gpu|cpu] [--precision f32|f16] [--batch N] [--size H]
//!              [--warmup N] [--runs N] [--budget-ms X] [--no-zoo] [--json] [--svg DIR]
//! ```
//!
//! - `--space`: `regnet` (the paper's ranges: d <= 64, w0 <= 256 a multiple of 8,
//!   0 < wa <= 256, 1.5 <= wm <= 3, group width in {1, 2, 4, 8, 16, 32}, bottleneck 1, four
//!   stages) or
//!   `anynet` (AnyNetX: four stages, each with depth <= 16, width <= 1024 a multiple of 8,
//!   bottleneck ratio in {1, 2, 4} and a group width from the same set); comma separated to
//!   compare spaces, `--samples` each. `--se` gives every block squeeze-excitation (Y models).
//! - Models are drawn deterministically from `--seed` and kept when their MACs at `--size`
//!   fall inside `--macs` (default `360M:400M`, the paper's 400MF regime). Each is built with
//!   random weights and timed: `--warmup` runs, then the median of `--runs` (GPU timestamps
//!   when the adapter has them, wall time otherwise).
//! - The RegNet zoo models within a factor of two of the window are timed too and marked on
//!   the charts (`--no-zoo` skips them); they stay out of the statistics.
//! - `--json`: one line per model (`space`, `spec`, `params`, `macs`, `activations`, `ops`,
//!   `median_ms`), then `{"summary": {...}}` with `pearson` and `spearman` (each with `macs`,
//!   `params`, `activations` and `ops`, the plan's op count), `pareto` (the specs on the front of MACs vs latency, fastest
//!   first), `best_under_budget` (with `--budget-ms`), `zoo`, and how the sweep ran. Without
//!   it, a table and the summary in words.
//! - `--svg DIR`: `latency_edf.svg`, `latency_vs_macs.svg` (with the Pareto front) and
//!   `latency_vs_activations.svg`.
//!
//! A progress bar runs on stderr; Ctrl-C stops after the model being timed and writes what was
//! measured (exit status 130).
//!
//! ```text
//! cargo run --release --example design_space -- --backend cpu --samples 100 --svg sweep-cpu
//! cargo run --release --example design_space -- --space regnet,anynet --samples 20 --json
//! ```

mod measure;
mod report;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use measure::{Backend, Timing};
use regnet_wgpu::config::Architecture;
use regnet_wgpu::design_space::{MacsWindow, Sample, Sampler, SamplerOptions, Space};
use regnet_wgpu::gpu::{GpuContext, Precision};
use regnet_wgpu::{zoo, Error, Plan, Result};
use report::Row;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Gpu,
    Cpu,
}

/// Samples a design space, times each model on this machine, and compares.
#[derive(Parser, Debug)]
#[command(name = "design_space")]
struct Args {
    /// Design spaces, comma separated: regnet, anynet.
    #[arg(long, value_delimiter = ',', default_value = "regnet")]
    space: Vec<String>,
    /// Models to time from each space.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Seed of the sampler: the same seed draws the same models on every machine.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Window of multiply-adds (one image at --size), MIN:MAX with K, M or G suffixes.
    #[arg(long, default_value = "360M:400M")]
    macs: String,
    /// Squeeze-excitation (ratio 0.25) in every block.
    #[arg(long)]
    se: bool,
    /// Where the models run.
    #[arg(long, value_enum, default_value = "gpu")]
    backend: BackendArg,
    /// GPU storage precision, f32 or f16 (the CPU runs f32).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Images per run.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Input size (square).
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Untimed runs per model.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs per model (the median is kept).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Report the sampled model with the most MACs whose median is at most this.
    #[arg(long)]
    budget_ms: Option<f64>,
    /// Do not time the zoo models near the window.
    #[arg(long)]
    no_zoo: bool,
    /// One JSON line per model, then a summary line.
    #[arg(long)]
    json: bool,
    /// Write the charts (SVG) into this directory.
    #[arg(long)]
    svg: Option<PathBuf>,
}

/// What the sweep is, checked: spaces, window, timing, backend.
struct Sweep {
    spaces: Vec<Space>,
    window: MacsWindow,
    timing: Timing,
    backend: Backend,
}

fn sweep(args: &Args) -> Result<Sweep> {
    let spaces = args
        .space
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<Space>>>()?;
    if args.samples == 0 || args.runs == 0 || args.batch == 0 {
        return Err(Error::Input(
            "--samples, --runs and --batch must be at least 1".into(),
        ));
    }
    if args.budget_ms.is_some_and(|b| !(b.is_finite() && b > 0.0)) {
        return Err(Error::Input("--budget-ms must be a positive number".into()));
    }
    let window: MacsWindow = args.macs.parse()?;
    let backend = match args.backend {
        BackendArg::Cpu => Backend::Cpu,
        BackendArg::Gpu => {
            let p = args.precision;
            Backend::Gpu(Box::new(GpuContext::new(p)?), p)
        }
    };
    let timing = Timing {
        size: args.size,
        batch: args.batch,
        warmup: args.warmup,
        runs: args.runs,
    };
    Ok(Sweep {
        spaces,
        window,
        timing,
        backend,
    })
}

/// Every space's samples, drawn before anything is timed; and the draws each took.
fn draw(args: &Args, sw: &Sweep) -> Result<(Vec<Sample>, Value)> {
    let mut samples = Vec::new();
    let mut draws = serde_json::Map::new();
    for &space in &sw.spaces {
        let mut s = Sampler::new(SamplerOptions {
            space,
            seed: args.seed,
            size: (args.size, args.size),
            macs: sw.window,
            se: args.se,
        });
        samples.extend(s.take_samples(args.samples)?);
        draws.insert(space.to_string(), json!(s.draws()));
    }
    Ok((samples, Value::Object(draws)))
}

/// The RegNet zoo models whose MACs lie within a factor of two of the window.
fn zoo_near(window: MacsWindow, size: usize) -> Result<Vec<(String, Architecture, Plan)>> {
    let mut v = Vec::new();
    for name in zoo::names() {
        let arch = Architecture::named(name)?;
        let plan = Plan::new(&arch, size, size)?;
        if plan.macs() >= window.min / 2 && plan.macs() <= window.max.saturating_mul(2) {
            v.push((name.to_string(), arch, plan));
        }
    }
    Ok(v)
}

fn progress(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} models, {elapsed} (eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Prints a row as it is measured: a JSON line, or a table line (the header first).
fn emit(args: &Args, i: usize, row: &Row) {
    let line = if args.json {
        row.json().to_string()
    } else {
        if i == 1 {
            println!("{}", report::table_header());
        }
        report::table_row(i, row)
    };
    println!("{line}");
    let _ = std::io::stdout().flush();
}

fn run(args: &Args, stop: &AtomicBool) -> Result<bool> {
    let sw = sweep(args)?;
    let (samples, draws) = draw(args, &sw)?;
    let zoo = if args.no_zoo {
        Vec::new()
    } else {
        zoo_near(sw.window, args.size)?
    };
    let bar = progress(samples.len() + zoo.len());
    let (mut rows, mut zoo_rows, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let mut timing = "wall";
    for s in &samples {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        bar.set_message(s.spec.clone());
        match sw.backend.measure(&s.arch, &sw.timing) {
            Ok(m) => {
                timing = m.timing;
                rows.push(Row::sample(s, m.median_ms));
                bar.suspend(|| emit(args, rows.len(), rows.last().expect("pushed")));
            }
            Err(e) => {
                bar.suspend(|| eprintln!("skipped {}: {e}", s.spec));
                failed.push(json!({"spec": s.spec, "error": e.to_string()}));
            }
        }
        bar.inc(1);
    }
    for (name, arch, plan) in &zoo {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        bar.set_message(name.clone());
        let m = sw.backend.measure(arch, &sw.timing)?;
        zoo_rows.push(Row {
            space: "zoo".into(),
            model: Some(name.clone()),
            spec: arch.to_string(),
            params: plan.num_params(),
            macs: plan.macs(),
            activations: plan.activations(),
            ops: plan.ops.len() as u64,
            median_ms: m.median_ms,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let interrupted = stop.load(Ordering::SeqCst);
    let mut summary = report::statistics(&rows, args.budget_ms);
    let title = format!(
        "{} at {}x{}, batch {}, {}",
        args.space.join(" + "),
        args.size,
        args.size,
        args.batch,
        sw.backend.describe()
    );
    let svgs = match &args.svg {
        Some(dir) if !rows.is_empty() => report::write_svgs(dir, &rows, &zoo_rows, &title)?,
        _ => Vec::new(),
    };
    let extra = json!({
        "space": args.space,
        "backend": format!("{:?}", args.backend).to_lowercase(),
        "adapter": sw.backend.describe(),
        "precision": args.precision.to_string(),
        "batch": args.batch,
        "size": args.size,
        "seed": args.seed,
        "se": args.se,
        "macs_window": [sw.window.min, sw.window.max],
        "warmup": args.warmup,
        "runs": args.runs,
        "timing": timing,
        "draws": draws,
        "failed": failed,
        "interrupted": interrupted,
        "zoo": zoo_rows.iter().map(Row::json).collect::<Vec<_>>(),
        "svg": svgs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    if let Value::Object(m) = extra {
        summary.extend(m);
    }
    if args.json {
        println!("{}", json!({ "summary": summary }));
    } else {
        print_summary(&summary, &zoo_rows, &svgs, &title, interrupted);
    }
    Ok(interrupted)
}

fn print_summary(
    summary: &serde_json::Map<String, Value>,
    zoo: &[Row],
    svgs: &[PathBuf],
    title: &str,
    interrupted: bool,
) {
    println!();
    if interrupted {
        println!("interrupted: what was measured so far");
    }
    println!("{} models timed: {title}", summary["samples"]);
    for r in zoo {
        println!(
            "zoo model {:<16} {:>7.1} MMACs {:>9.2} ms",
            r.model.as_deref().unwrap_or_default(),
            r.macs as f64 / 1e6,
            r.median_ms
        );
    }
    print!("{}", report::summary_text(summary));
    for p in svgs {
        println!("wrote {}", p.display());
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        eprintln!("note: Ctrl-C will not stop cleanly ({e})");
    }
    match run(&args, &stop) {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(130),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
