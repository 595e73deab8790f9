//! bench: latency, throughput and achieved GFLOP/s of a model (any family) on the GPU and the CPU.
//!
//! ```text
//! bench (--model NAME | --regnet SPEC | --anynet SPEC) [--batch 1,8,...] [--size 224] [--backend gpu,cpu]
//!       [--precision f32|f16] [--iters N] [--warmup N] [--json] [--profile] [--svg FILE]
//!       [--shader-checks checked,unchecked,...] [--textures auto,on,off] [--peak] [--roofline]
//!       [--tuning rules,cached,tune] [--tune-budget SECS] [--tuning-cache DIR]
//! bench --zoo [--zoo-max-gmacs G] [--zoo-min-gmacs G] [--peers [--python PY]] [--markdown FILE] [--svg FILE] [...]
//! bench --zoo --zoo-from RUN.jsonl ... [--markdown FILE] [--svg FILE]
//! ```
//!
//! Weights are deterministic random ones (speed does not depend on their values). For each
//! (backend, batch) it warms up, then runs `--iters` inferences and reports the median and the
//! spread of the latency, images/s and GFLOP/s (2 x multiply-adds / median time). GPU time
//! comes from timestamp queries when the adapter has them (`"timing": "gpu-timestamps"`),
//! wall time otherwise (`"timing": "wall"`); the GPU's wall time of a whole `run` (upload,
//! dispatches, readback) is reported beside it as `wall_median_ms`.
//!
//! `--json` prints one JSON object per line per (backend, batch). `--profile` prints each
//! backend's per-layer table (time, share, GFLOP/s) for the first batch: the GPU's dispatches
//! (timestamp queries) and the CPU's ops (`CpuBackend::profile`, wall time, median of 5 runs);
//! `--svg FILE` draws the first of them (one bar per dispatch or op, with the library's `plot`
//! module).
//!
//! `--roofline` first measures the adapter's limits with two microkernels (`gpu::peak`: the
//! FMA peak, and the storage bandwidth of a streaming copy) and prints them (`peak_gflops`,
//! `peak_gb_s`; the GPU rows get them too, with `fraction_of_peak`), and what a load costs from
//! a storage buffer, a texture and a uniform buffer (`load_storage_g_s`, ...); the profile then shows each
//! dispatch's GB/s (the bytes its op reads and writes, its parameters included), its arithmetic
//! intensity and its fraction of the roofline, min(FMA peak, bandwidth x intensity), and
//! `--svg` draws the roofline chart instead of the bars.
//!
//! `--zoo` runs every zoo model in turn (those over `--zoo-max-gmacs` left out), each row
//! printed as usual; `--peers` puts ONNX Runtime CPU beside each model
//! (`scripts/bench_peers.py`, same threads, batches, iterations); then it prints, per backend
//! and batch, how well the logarithm of the time correlates with that of the multiply-adds
//! and with that of the activations (Pearson's r over the models), writes the table with
//! `--markdown FILE`, and draws both as log-log charts with `--svg FILE` (time against MACs
//! there, against activations in `FILE-activations.svg`). `--zoo-from` makes the same from the
//! JSON lines of earlier runs (a zoo measured in parts with `--zoo-min-gmacs` and
//! `--zoo-max-gmacs`, say) without measuring.
//!
//! `--tuning` picks the kernels' tiles and workgroup sizes (`gpu::autotune`): the documented
//! rules, the autotuner's table kept on disk for this adapter (the default; the rules where it
//! has nothing), or a tuning first (each shape class's candidates timed, the winners saved, a
//! line per class on stderr). Several, comma separated, are timed in turns in one run, each row
//! labelled with its `tuning`.
//!
//! ```text
//! cargo run --release --example bench -- --model regnet_y_400mf --batch 1,8 --backend gpu,cpu
//! cargo run --release --example bench -- --model regnet_y_400mf --batch 1 --profile --svg profile.svg
//! cargo run --release --example bench -- --model regnet_y_400mf --batch 8 --backend gpu --roofline --profile --svg roofline.svg
//! cargo run --release --example bench -- --zoo --batch 1,8 --iters 3 --peers --markdown zoo.md --svg zoo.svg
//! ```

mod zoo;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{ArgGroup, Parser};
use regnet_wgpu::config::Architecture;
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::gpu::autotune::{table_for, TuneBudget, TuneReport, TuningMode};
use regnet_wgpu::gpu::pipeline_cache::default_cache_dir;
use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions, ShaderChecks};
use regnet_wgpu::plan::OpKind;
use regnet_wgpu::plot::{Axis, Bars, Chart, Series};
use regnet_wgpu::{Error, Plan, Result, Tensor, Weights};
use serde_json::json;

/// Times inference on the GPU (wgpu) and the CPU.
#[derive(Parser, Debug, Clone)]
#[command(name = "bench", group(ArgGroup::new("network").required(true).args(["model", "regnet", "anynet", "zoo"])))]
struct Args {
    /// A named model (regnet_y_400mf, resnet50, resnext50_32x4d, rexnet_100, ...).
    #[arg(long)]
    model: Option<String>,
    /// A RegNet spec: depth=..,w0=..,wa=..,wm=..,group_width=..[,bottleneck=..][,se=..][,stem=..][,classes=..].
    #[arg(long)]
    regnet: Option<String>,
    /// An AnyNet spec: depths=..,widths=..,group_widths=..,bottlenecks=..,strides=..[,se=..][,stem=..][,classes=..].
    #[arg(long)]
    anynet: Option<String>,
    /// Batch sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    batch: Vec<usize>,
    /// Input size (square).
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Backends, comma separated: gpu, cpu.
    #[arg(long, value_delimiter = ',', default_value = "gpu,cpu")]
    backend: Vec<String>,
    /// GPU storage precision: f32 or f16.
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Timed iterations per (backend, batch).
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// One JSON object per line per (backend, batch).
    #[arg(long)]
    json: bool,
    /// Per-layer GPU table (timestamp queries).
    #[arg(long)]
    profile: bool,
    /// Draw the per-layer profile as SVG.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// wgpu's runtime checks in the kernels, comma separated to compare them in one run:
    /// checked (the default), unchecked, bounds (bounds checks only), loops (loop bounding
    /// only). Rows other than `checked` are labelled `gpu/<checks>`.
    #[arg(long, value_delimiter = ',', default_value = "checked")]
    shader_checks: Vec<String>,
    /// Where the convolutions read their inputs and weights, comma separated to compare them in
    /// one run: auto (the adapter's rule: textures on CPU-backed adapters), on (textures), off
    /// (storage buffers). Rows other than `auto` are labelled `gpu/textures` or `gpu/storage`.
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    textures: Vec<String>,
    /// Also measure the adapter's FMA peak (a register-only microkernel,
    /// `shaders/fma_peak.wgsl`), to compare the kernels' GFLOP/s with.
    #[arg(long)]
    peak: bool,
    /// Measure the adapter's roofline: its FMA peak and its storage bandwidth (a streaming
    /// copy, `shaders/bandwidth_peak.wgsl`), printed with the JSON keys `peak_gflops` and
    /// `peak_gb_s`; then `--profile` shows each dispatch's GB/s and its fraction of the roofline,
    /// and `--svg` draws the roofline chart.
    #[arg(long)]
    roofline: bool,
    /// Tiles and workgroup sizes, comma separated to compare them in one run (interleaved):
    /// `rules` (the documented tile rules), `cached` (the autotuner's table for this adapter
    /// where one is on disk, the rules elsewhere) or `tune` (first time the shape classes the
    /// table lacks, within --tune-budget, and save them).
    #[arg(long, value_delimiter = ',', default_value = "cached")]
    tuning: Vec<TuningMode>,
    /// Seconds `--tuning tune` may spend per batch size (compiling included).
    #[arg(long, default_value_t = 120.0)]
    tune_budget: f64,
    /// Where the autotuner's tables are kept [default: $XDG_CACHE_HOME/regnet-wgpu or
    /// ~/.cache/regnet-wgpu].
    #[arg(long)]
    tuning_cache: Option<PathBuf>,
    /// Every zoo model in turn (see the module docs); `--svg` then draws latency against MACs
    /// and against activations.
    #[arg(long)]
    zoo: bool,
    /// With --zoo: leave out models of more multiply-adds per image than this (GMACs, at
    /// --size).
    #[arg(long, requires = "zoo")]
    zoo_max_gmacs: Option<f64>,
    /// With --zoo: leave out models of fewer multiply-adds per image than this (GMACs, at
    /// --size), to measure a zoo in parts.
    #[arg(long, requires = "zoo")]
    zoo_min_gmacs: Option<f64>,
    /// With --zoo: measure nothing; read the rows of earlier runs from these files (the JSON
    /// lines `bench --zoo --json` printed, concatenated in any order) and make the table, charts
    /// and correlations from them.
    #[arg(long, requires = "zoo", num_args = 1..)]
    zoo_from: Vec<PathBuf>,
    /// With --zoo: these models only, in this order (comma separated; default: every named
    /// model).
    #[arg(long, requires = "zoo", value_delimiter = ',')]
    zoo_models: Vec<String>,
    /// With --zoo: ONNX Runtime CPU beside each model (scripts/bench_peers.py, run by
    /// --python; it needs torch, torchvision, timm and onnxruntime).
    #[arg(long, requires = "zoo")]
    peers: bool,
    /// The Python that runs scripts/bench_peers.py for --peers.
    #[arg(long, default_value = "python3")]
    python: String,
    /// With --zoo: write the table (a row per model, a column per backend and batch) here, as
    /// Markdown.
    #[arg(long, requires = "zoo")]
    markdown: Option<PathBuf>,
}

/// The adapter's measured limits.
#[derive(Clone, Copy)]
struct Roofline {
    gflops: f64,
    gb_s: f64,
}

impl Roofline {
    /// What a kernel of `intensity` FLOPs per byte can reach at most, in GFLOP/s.
    fn bound(&self, intensity: f64) -> f64 {
        self.gflops.min(self.gb_s * intensity)
    }
}

/// The runtime checks a `--shader-checks` name stands for.
fn shader_checks(name: &str) -> Result<ShaderChecks> {
    // SAFETY: the runner sizes every buffer it binds (tests/robustness.rs compares checked and
    // unchecked results on every fixture); this example only measures the difference.
    Ok(match name {
        "checked" => ShaderChecks::checked(),
        "unchecked" => unsafe { ShaderChecks::unchecked() },
        "bounds" => unsafe { ShaderChecks::with(true, false) },
        "loops" => unsafe { ShaderChecks::with(false, true) },
        other => {
            return Err(Error::Input(format!(
                "unknown --shader-checks `{other}` (checked, unchecked, bounds, loops)"
            )))
        }
    })
}

/// Median, min and max of a set of times.
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

fn wall_times(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    (0..iters)
        .map(|_| {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

fn input(batch: usize, size: usize) -> Tensor {
    let n = batch * 3 * size * size;
    Tensor {
        shape: vec![batch, 3, size, size],
        data: (0..n)
            .map(|i| ((i * 2654435761) % 2000) as f32 / 1000.0 - 1.0)
            .collect(),
    }
}

/// A backend's per-layer profile of one batch: (batch, [(dispatch or op, ms)]).
type Profile = (usize, Vec<(String, f64)>);

/// Profiled CPU runs; each op's median is shown.
const CPU_PROFILE_RUNS: usize = 5;

/// One measured (backend, batch).
struct Row {
    backend: String,
    adapter: String,
    batch: usize,
    timing: &'static str,
    st: Stats,
    wall: Option<Stats>,
    /// GPU rows: the tuning mode and the tuned classes the runner had.
    tuning: Option<(TuningMode, usize)>,
}

/// Multiply-adds of one dispatch, by its label (an op's name; a split convolution's parts carry
/// a suffix and count nothing here).
fn dispatch_macs(plan: &Plan, label: &str) -> u64 {
    plan.ops
        .iter()
        .find(|o| o.name == label)
        .map_or(0, |op| plan.op_macs(op))
}

/// The per-dispatch times as bars, each labelled with its dispatch and its GFLOP/s.
fn profile_svg(rows: &[Dispatch], title: &str) -> Result<String> {
    let bars = rows
        .iter()
        .map(|d| (format!("{} ({:.1} GFLOP/s)", d.label, d.gflops), d.ms))
        .collect();
    Bars {
        title: title.to_string(),
        value_label: "GPU time per dispatch (ms)".into(),
        bars,
    }
    .to_svg()
}

fn run(args: &Args) -> Result<()> {
    if args.iters == 0 || args.batch.contains(&0) || args.size == 0 {
        return Err(Error::Input(
            "--iters, --batch and --size must be at least 1".into(),
        ));
    }
    if args.zoo {
        if args.peak {
            print_peak(args)?;
        }
        if args.roofline {
            measure_roofline(args)?;
        }
        return zoo::run_zoo(args);
    }
    let arch = Architecture::from_args(
        args.model.as_deref(),
        args.regnet.as_deref(),
        args.anynet.as_deref(),
    )?
    .ok_or_else(|| Error::Input("give --model, --regnet or --anynet".into()))?;
    let name = arch.to_string();
    let plan = Plan::new(&arch, args.size, args.size)?;
    let weights = Weights::random(&plan, 0);
    if args.peak {
        print_peak(args)?;
    }
    let roof = if args.roofline {
        Some(measure_roofline(args)?)
    } else {
        None
    };
    let mut profiles = Vec::new();
    let rows = measure_rows(args, &plan, &weights, &mut profiles)?;
    let prec_name = args.precision.to_string();
    print_rows(args, &name, plan.macs() as f64, &prec_name, &rows, roof);
    if (args.profile || args.svg.is_some()) && profiles.is_empty() {
        eprintln!("note: no per-layer profile: it needs the cpu backend, or the gpu backend on an adapter with timestamp queries");
    }
    // The SVG draws the first profile (the GPU's when both backends ran).
    for (k, (backend, (b, prof))) in profiles.iter().enumerate() {
        let roof = roof.filter(|_| *backend == "GPU");
        let svg = args.svg.as_deref().filter(|_| k == 0);
        print_profile(args, &name, &plan, (backend, *b, prof), roof, svg)?;
    }
    Ok(())
}

/// The rows of every `--backend` on one model, each backend's per-layer profile into
/// `profiles` (labelled "GPU" or "CPU") when it is asked for.
fn measure_rows(
    args: &Args,
    plan: &Plan,
    weights: &Weights,
    profiles: &mut Vec<(&'static str, Profile)>,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for backend in &args.backend {
        match backend.as_str() {
            "gpu" => {
                let mut profile = None;
                rows.extend(gpu_rows(args, plan, weights, &mut profile)?);
                profiles.extend(profile.map(|p| ("GPU", p)));
            }
            "cpu" => {
                let mut profile = None;
                rows.extend(cpu_rows(args, plan, weights, &mut profile)?);
                profiles.extend(profile.map(|p| ("CPU", p)));
            }
            other => {
                return Err(Error::Input(format!(
                    "unknown backend `{other}` (gpu, cpu)"
                )))
            }
        }
    }
    Ok(rows)
}

/// `--roofline`: the adapter's FMA peak and storage bandwidth, printed.
fn measure_roofline(args: &Args) -> Result<Roofline> {
    let ctx = GpuContext::new(args.precision)?;
    let roof = Roofline {
        gflops: regnet_wgpu::gpu::peak::fma_peak(&ctx, 5)?,
        gb_s: regnet_wgpu::gpu::peak::bandwidth_peak(&ctx, 5)?,
    };
    let loads = regnet_wgpu::gpu::peak::load_rates(&ctx, 3)?;
    if args.json {
        let j = json!({"backend": "gpu-roofline", "adapter": ctx.describe(),
                       "peak_gflops": roof.gflops, "peak_gb_s": roof.gb_s,
                       "load_storage_g_s": loads.storage, "load_texture_g_s": loads.texture,
                       "load_uniform_g_s": loads.uniform, "load_none_g_s": loads.none});
        println!("{j}");
    } else {
        println!(
            "adapter roofline: FMA peak {:.1} GFLOP/s, storage bandwidth {:.1} GB/s (ridge at {:.2} \
             FLOPs per byte; {}, shaders/fma_peak.wgsl, shaders/bandwidth_peak.wgsl)",
            roof.gflops,
            roof.gb_s,
            roof.gflops / roof.gb_s,
            ctx.describe()
        );
        println!(
            "adapter loads (billions of vec4 lane loads/s, 8 FMAs each; shaders/load_peak.wgsl): \
             storage {:.3}, texture {:.3}, uniform {:.3}, none (FMAs alone) {:.3}",
            loads.storage, loads.texture, loads.uniform, loads.none
        );
    }
    Ok(roof)
}

/// `--peak`: the adapter's FMA peak (shaders/fma_peak.wgsl).
fn print_peak(args: &Args) -> Result<()> {
    let ctx = GpuContext::new(args.precision)?;
    let gflops = regnet_wgpu::gpu::peak::fma_peak(&ctx, 5)?;
    if args.json {
        println!(
            "{}",
            json!({"backend": "gpu-fma-peak", "adapter": ctx.describe(), "gflops": gflops})
        );
    } else {
        println!(
            "adapter FMA peak: {gflops:.1} GFLOP/s ({}, shaders/fma_peak.wgsl)",
            ctx.describe()
        );
    }
    Ok(())
}

/// The GPU's rows: one per (batch, shader checks, tuning), the configurations of a batch timed
/// in turns; the first batch's per-layer profile into `profile` when it is asked for.
fn gpu_rows(
    args: &Args,
    plan: &Plan,
    weights: &Weights,
    profile: &mut Option<Profile>,
) -> Result<Vec<Row>> {
    let ctx = GpuContext::new(args.precision)?;
    let mut rows = Vec::new();
    for &b in &args.batch {
        let mut configs = Vec::new();
        for checks in &args.shader_checks {
            for textures in &args.textures {
                for &mode in &args.tuning {
                    let setup = (checks.as_str(), textures.as_str(), mode);
                    configs.push(gpu_config(args, &ctx, plan, weights, b, setup)?);
                }
            }
        }
        let x = input(b, args.size);
        for c in &configs {
            for _ in 0..args.warmup {
                c.runner.run(&x)?;
            }
        }
        let mut wall = vec![Vec::new(); configs.len()];
        let mut device = vec![Vec::new(); configs.len()];
        for _ in 0..args.iters {
            for (k, c) in configs.iter().enumerate() {
                wall[k].extend(wall_times(1, || c.runner.run(&x).map(|_| ()))?);
                device[k].extend(c.runner.time_gpu(&x, 1)?.unwrap_or_default());
            }
        }
        if (args.profile || args.svg.is_some()) && !args.zoo && profile.is_none() {
            *profile = configs[0].runner.profile(&x)?.map(|p| (b, p));
        }
        for ((c, wall), device) in configs.into_iter().zip(wall).zip(device) {
            let (timing, times) = if device.is_empty() {
                ("wall", wall.clone())
            } else {
                ("gpu-timestamps", device)
            };
            rows.push(Row {
                backend: c.label,
                adapter: ctx.describe(),
                batch: b,
                timing,
                st: stats(times),
                wall: Some(stats(wall)),
                tuning: Some((c.mode, c.classes)),
            });
        }
    }
    Ok(rows)
}

/// One GPU configuration of a batch: its runner, row label, tuning and tuned classes in use.
struct GpuConfig {
    runner: GpuRunner,
    label: String,
    mode: TuningMode,
    classes: usize,
}

fn gpu_config(
    args: &Args,
    ctx: &GpuContext,
    plan: &Plan,
    weights: &Weights,
    batch: usize,
    (checks, textures, mode): (&str, &str, TuningMode),
) -> Result<GpuConfig> {
    let mut opts = RunnerOptions {
        batch,
        precision: args.precision,
        shader_checks: shader_checks(checks)?,
        textures: match textures {
            "auto" => None,
            "on" => Some(true),
            "off" => Some(false),
            other => {
                return Err(Error::Input(format!(
                    "unknown --textures `{other}` (auto, on, off)"
                )))
            }
        },
        ..Default::default()
    };
    let dir = args.tuning_cache.clone().or_else(default_cache_dir);
    let budget = TuneBudget {
        time: std::time::Duration::from_secs_f64(args.tune_budget.max(0.0)),
        ..Default::default()
    };
    let (table, report) = table_for(ctx, &plan.graph(), &opts, mode, dir.as_deref(), &budget)?;
    if let Some(r) = report {
        print_tuning(&r, batch);
    }
    let classes = table.as_ref().map_or(0, |t| t.len());
    opts.tuned = table;
    let mut label = "gpu".to_string();
    if checks != "checked" {
        label += &format!("/{checks}");
    }
    match textures {
        "on" => label += "/textures",
        "off" => label += "/storage",
        _ => {}
    }
    if mode != TuningMode::Cached {
        label += &format!("/{mode}");
    }
    Ok(GpuConfig {
        runner: GpuRunner::new(ctx, plan, weights, opts)?,
        label,
        mode,
        classes,
    })
}

/// What the autotuner did, on stderr: each class tuned now, its winner against the rules.
fn print_tuning(r: &TuneReport, batch: usize) {
    eprintln!(
        "autotune (batch {batch}): {} classes tuned in {:.1} s, {} from the cache, {} left for \
         a later run (budget)",
        r.tuned.len(),
        r.seconds,
        r.cached,
        r.left
    );
    for t in &r.tuned {
        let c = t.entry.choice;
        eprintln!(
            "  {:<44} {:<24} tile {}x{} subgroup {:<5} wg {:>2}: {:.3} ms, rules {:.3} ms ({} candidates)",
            t.class.to_string(),
            t.layer,
            c.tile[0],
            c.tile[1],
            c.subgroup,
            c.wg,
            t.entry.ms,
            t.entry.rules_ms,
            t.candidates
        );
    }
}

/// The CPU backend's rows: one per batch (f32 whatever `--precision` says).
fn cpu_rows(
    args: &Args,
    plan: &Plan,
    weights: &Weights,
    profile: &mut Option<Profile>,
) -> Result<Vec<Row>> {
    if args.precision != Precision::F32 {
        eprintln!("note: the CPU backend runs f32");
    }
    let cpu = CpuBackend::new(plan.clone(), weights.clone())?;
    let mut rows = Vec::new();
    for &b in &args.batch {
        let x = input(b, args.size);
        for _ in 0..args.warmup {
            cpu.run(&x)?;
        }
        let wall = wall_times(args.iters, || cpu.run(&x).map(|_| ()))?;
        rows.push(Row {
            backend: "cpu".into(),
            adapter: format!("{} ({} threads)", cpu_name(), rayon::current_num_threads()),
            batch: b,
            timing: "wall",
            st: stats(wall),
            wall: None,
            tuning: None,
        });
        if (args.profile || args.svg.is_some()) && !args.zoo && profile.is_none() {
            *profile = Some((b, cpu_profile(&cpu, &x)?));
        }
    }
    Ok(rows)
}

/// Each op's median wall time over [`CPU_PROFILE_RUNS`] profiled runs of `x`.
fn cpu_profile(cpu: &CpuBackend, x: &Tensor) -> Result<Vec<(String, f64)>> {
    let runs: Vec<Vec<(String, f64)>> = (0..CPU_PROFILE_RUNS)
        .map(|_| cpu.profile(x))
        .collect::<Result<_>>()?;
    Ok(runs[0]
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let times = runs.iter().map(|r| r[i].1).collect();
            (name.clone(), stats(times).median)
        })
        .collect())
}

/// The rows as a table, or one JSON object per row.
fn print_rows(
    args: &Args,
    name: &str,
    macs: f64,
    prec_name: &str,
    rows: &[Row],
    roof: Option<Roofline>,
) {
    if !args.json {
        println!(
            "{name} at {0}x{0}, {1:.3} GMACs per image, {2} iterations after {3} warm-ups \
             (GFLOP/s counts 2 FLOPs per multiply-add, as the FMA peak does)",
            args.size,
            macs / 1e9,
            args.iters,
            args.warmup
        );
        println!(
            "{:<8} {:>5} {:>10} {:>19} {:>10} {:>9}  {:<15} adapter",
            "backend", "batch", "median ms", "min..max ms", "images/s", "GFLOP/s", "timing"
        );
    }
    for r in rows {
        let ips = r.batch as f64 / (r.st.median / 1e3);
        let gflops = 2.0 * macs * r.batch as f64 / (r.st.median / 1e3) / 1e9;
        let prec = if r.backend == "cpu" {
            "f32".to_string()
        } else {
            prec_name.to_string()
        };
        if args.json {
            let mut j = json!({
                "backend": r.backend, "adapter": r.adapter, "model": name, "batch": r.batch,
                "size": args.size, "precision": prec, "median_ms": r.st.median, "min_ms": r.st.min,
                "max_ms": r.st.max, "images_per_s": ips, "gflops": gflops, "timing": r.timing,
                "iters": args.iters,
            });
            if let Some(w) = &r.wall {
                j["wall_median_ms"] = json!(w.median);
            }
            if let Some((mode, classes)) = r.tuning {
                j["tuning"] = json!(mode.to_string());
                j["tuned_classes"] = json!(classes);
            }
            if let (Some(roof), true) = (roof, r.backend.starts_with("gpu")) {
                j["peak_gflops"] = json!(roof.gflops);
                j["peak_gb_s"] = json!(roof.gb_s);
                j["fraction_of_peak"] = json!(gflops / roof.gflops);
            }
            println!("{j}");
        } else {
            println!(
                "{:<8} {:>5} {:>10.2} {:>19} {:>10.1} {:>9.1}  {:<15} {}{}",
                r.backend,
                r.batch,
                r.st.median,
                format!("{:.2}..{:.2}", r.st.min, r.st.max),
                ips,
                gflops,
                r.timing,
                r.adapter,
                r.wall
                    .as_ref()
                    .map(|w| format!(" (whole run incl. upload/readback: {:.2} ms)", w.median))
                    .unwrap_or_default()
            );
        }
    }
}

/// Bytes one dispatch moves at least, by its label (an op's name): the values it reads and
/// writes at `batch` images and its parameters, `elem` bytes each (0 for a split
/// convolution's parts, as [`dispatch_macs`]).
fn dispatch_bytes(plan: &Plan, label: &str, batch: usize, elem: usize) -> u64 {
    plan.ops.iter().find(|o| o.name == label).map_or(0, |op| {
        let read: usize = op.reads().into_iter().map(|v| plan.values[v].numel()).sum();
        // Squeeze-and-excitation writes its gate only (the next conv applies it).
        let written = match &op.kind {
            OpKind::SqueezeExcite(se) => se.channels,
            _ => plan.values[op.output].numel(),
        };
        ((read + written) as u64 * batch as u64 + plan.op_params(op)) * elem as u64
    })
}

/// One dispatch of the profile: its label, time, GFLOP/s and GB/s.
struct Dispatch {
    label: String,
    ms: f64,
    gflops: f64,
    gb_s: f64,
}

/// The per-dispatch profile of batch `b` as a table (`--profile`) and an SVG (`--svg`): the
/// time bars, or with `--roofline` the roofline chart.
fn print_profile(
    args: &Args,
    name: &str,
    plan: &Plan,
    (backend, b, prof): (&str, usize, &[(String, f64)]),
    roof: Option<Roofline>,
    svg: Option<&Path>,
) -> Result<()> {
    let total: f64 = prof.iter().map(|p| p.1).sum();
    let elem = args.precision.bytes() as usize;
    let rows: Vec<Dispatch> = prof
        .iter()
        .map(|(l, ms)| {
            let secs = (ms / 1e3).max(1e-12);
            Dispatch {
                label: l.replace("trunk_output.", ""),
                ms: *ms,
                gflops: 2.0 * dispatch_macs(plan, l) as f64 * b as f64 / secs / 1e9,
                gb_s: dispatch_bytes(plan, l, b, elem) as f64 / secs / 1e9,
            }
        })
        .collect();
    if args.profile && !args.json {
        let how = if backend == "GPU" {
            "each dispatch timed in its own pass"
        } else {
            "each op's wall time, median of 5 runs; the parts of a batch run side by side, the longest counts"
        };
        println!("\nper-layer {backend} profile, batch {b} ({how}; total {total:.2} ms)");
        print!(
            "{:<48} {:>9} {:>7} {:>9}",
            if backend == "GPU" { "dispatch" } else { "op" },
            "ms",
            "share",
            "GFLOP/s"
        );
        println!(
            "{}",
            if roof.is_some() {
                format!(" {:>8} {:>8} {:>8}", "GB/s", "FLOP/B", "of roof")
            } else {
                String::new()
            }
        );
        for d in &rows {
            print!(
                "{:<48} {:>9.3} {:>6.1}% {:>9.1}",
                d.label,
                d.ms,
                d.ms / total * 100.0,
                d.gflops
            );
            match roof {
                Some(roof) if d.gb_s > 0.0 => {
                    let intensity = d.gflops / d.gb_s;
                    let of_roof = d.gflops / roof.bound(intensity) * 100.0;
                    println!(" {:>8.1} {intensity:>8.2} {of_roof:>7.1}%", d.gb_s);
                }
                _ => println!(),
            }
        }
    }
    if let Some(path) = svg {
        let what = match (roof.is_some(), backend) {
            (true, _) => "roofline".to_string(),
            (false, "GPU") => "per-dispatch GPU time".to_string(),
            (false, _) => format!("per-op {backend} time"),
        };
        let title = format!(
            "{name} {0}x{0} batch {b}: {what} (total {total:.2} ms)",
            args.size
        );
        let svg = match roof {
            Some(roof) => roofline_svg(&rows, roof, &title)?,
            None => profile_svg(&rows, &title)?,
        };
        std::fs::write(path, svg).map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The roofline: GFLOP/s against arithmetic intensity (log-log), the adapter's two roofs, each
/// dispatch with multiply-adds a point.
fn roofline_svg(rows: &[Dispatch], roof: Roofline, title: &str) -> Result<String> {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .filter(|d| d.gflops > 0.0 && d.gb_s > 0.0)
        .map(|d| (d.gflops / d.gb_s, d.gflops))
        .collect();
    let lo = points
        .iter()
        .map(|p| p.0)
        .fold(f64::INFINITY, f64::min)
        .min(0.1);
    let hi = points
        .iter()
        .map(|p| p.0)
        .fold(0.0, f64::max)
        .max(4.0 * roof.gflops / roof.gb_s);
    let ridge = roof.gflops / roof.gb_s;
    let mut chart = Chart::new(
        title,
        Axis::log("arithmetic intensity (FLOPs per byte moved)"),
        Axis::log("GFLOP/s"),
    );
    chart.subtitle = Some(format!(
        "roof: {:.1} GFLOP/s FMA peak, {:.1} GB/s storage bandwidth (ridge {ridge:.2} FLOP/B)",
        roof.gflops, roof.gb_s
    ));
    chart.series.push(Series::line(
        "roofline",
        [
            (lo, roof.gb_s * lo),
            (ridge, roof.gflops),
            (hi, roof.gflops),
        ],
    ));
    chart.series.push(Series::points("dispatches", points));
    chart.to_svg()
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "cpu".into())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
