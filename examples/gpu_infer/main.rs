//! gpu_infer: classify photos (files, folders) or a tensor with a RegNet, ResNet, ResNeXt,
//! Wide ResNet, ReXNet or any AnyNet, on the GPU or the CPU.
//!
//! ```text
//! gpu_infer [--model NAME | --regnet SPEC | --anynet SPEC] [--weights FILE]
//!           [--image FILE|DIR ...] [--batch N] [--input-tensor FILE] [--save-logits FILE]
//!           [--backend gpu|cpu] [--precision f32|f16] [--top K] [--json | --csv] [OPTIONS]
//! ```
//!
//! With no arguments it runs regnet_y_400mf on the bundled photo `assets/chelsea.png`.
//! Without `--weights` the weights are deterministic random ones, and it says so.
//!
//! Examples:
//! ```text
//! cargo run --release --example gpu_infer
//! cargo run --release --example gpu_infer -- --weights regnet_y_400mf-e6988f5f.pth --image photo.jpg
//! cargo run --release --example gpu_infer -- --model resnet50 --weights resnet50.safetensors \
//!     --image photos/ --batch 8 --json > results.jsonl
//! cargo run --release --example gpu_infer -- --model regnet_x_400mf --backend cpu \
//!     --input-tensor in.safetensors --save-logits out.safetensors
//! cargo run --release --example gpu_infer -- --tuning tune   # time tiles once, keep them
//! ```

mod inputs;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use inputs::{Batch, Item, Source};
use regnet_wgpu::config::{pretrained, Architecture};
use regnet_wgpu::gpu::autotune::{table_for, TuneBudget, TuneTable, TuningMode};
use regnet_wgpu::gpu::pipeline_cache::default_cache_dir;
use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions, ShaderChecks};
use regnet_wgpu::preprocess::EvalTransform;
use regnet_wgpu::tensor::{read_input_tensor, write_safetensors};
use regnet_wgpu::{cpu::CpuBackend, Error, Plan, Result, Tensor, Weights};
use report::{Format, Report, Summary};

const USAGE: &str = "gpu_infer [--model NAME | --regnet SPEC | --anynet SPEC] [--weights FILE]
                 [--image FILE|DIR ...] [--batch N] [--input-tensor FILE] [--save-logits FILE]
                 [--backend gpu|cpu] [--precision f32|f16] [--top K] [--json | --csv] [OPTIONS]";

const DEFAULT_MODEL: &str = "regnet_y_400mf";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Gpu,
    Cpu,
}

/// Classify photos with a RegNet, ResNet, ResNeXt, Wide ResNet (torchvision-exact), ReXNet
/// (timm-exact) or AnyNet, on the GPU through wgpu or on the CPU.
///
/// With no arguments: regnet_y_400mf, random weights, the bundled photo assets/chelsea.png.
/// Errors exit with status 1, usage errors (bad flags) with status 2.
#[derive(Parser, Debug)]
#[command(name = "gpu_infer", version, override_usage = USAGE)]
struct Args {
    /// A named model [default: regnet_y_400mf]: regnet_{x,y}_{200mf,...,32gf}, regnet_y_128gf;
    /// resnet{18,34,50,101,152}, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d,
    /// wide_resnet{50,101}_2; rexnet_{100,130,150,200}.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["regnet", "anynet"])]
    model: Option<String>,
    /// A RegNet spec: depth=16,w0=48,wa=27.89,wm=2.09,group_width=8[,bottleneck=1.0][,se=0.25][,stem=32][,classes=1000].
    #[arg(long, value_name = "SPEC", conflicts_with = "anynet")]
    regnet: Option<String>,
    /// An AnyNet spec: depths=1:2:4:2,widths=24:64:144:320,group_widths=8:16:24:40,bottlenecks=1:1:1:1,strides=2:2:2:2[,se=0.25][,stem=32][,classes=1000].
    #[arg(long, value_name = "SPEC")]
    anynet: Option<String>,
    /// A torchvision / timm state_dict: a `.pth` checkpoint (torch.save) or safetensors, told
    /// apart by content. Without it: deterministic random weights (the program says so).
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// JPEG or PNG files, and folders searched (recursively) for *.jpg, *.jpeg, *.png; each image
    /// through torchvision's ImageNet evaluation transform [default: the bundled photo].
    #[arg(long, value_name = "FILE|DIR", num_args = 1.., conflicts_with = "input_tensor")]
    image: Vec<PathBuf>,
    /// Images per inference; the next batch is decoded on CPU threads meanwhile.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = parse_count)]
    batch: usize,
    /// The shorter side of each photo before the 224x224 centre crop (torchvision's
    /// `resize_size`: 256 for V1 weights, 232 for most V2 weights; see --help of --weights).
    #[arg(long, value_name = "PIXELS", default_value_t = 256, value_parser = parse_count)]
    resize: usize,
    /// A safetensors file holding `input` [N,3,H,W] (f32), instead of images.
    #[arg(long, value_name = "FILE")]
    input_tensor: Option<PathBuf>,
    /// Write the logits [images, classes] (f32) as the tensor `logits` of a safetensors file.
    #[arg(long, value_name = "FILE")]
    save_logits: Option<PathBuf>,
    /// Where to run [default: the GPU, falling back to the CPU when there is no adapter].
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Numeric precision (f16 needs the GPU and its shader-f16 feature).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Compile the GPU kernels without wgpu's runtime checks (bounds checks, loop bounding);
    /// the kernels are in bounds by construction.
    #[arg(long)]
    unchecked_shaders: bool,
    /// Keep compiled GPU pipelines in this folder, so that the next run starts faster
    /// [default: $XDG_CACHE_HOME/regnet-wgpu or ~/.cache/regnet-wgpu].
    #[arg(long, value_name = "DIR")]
    pipeline_cache: Option<PathBuf>,
    /// Neither read nor write the pipeline cache.
    #[arg(long, conflicts_with = "pipeline_cache")]
    no_pipeline_cache: bool,
    /// The GPU kernels' tiles and workgroup sizes: `rules` (the documented tile rules),
    /// `cached` (the autotuner's table for this adapter where one is on disk, beside the
    /// pipeline cache; the rules elsewhere) or `tune` (first time the shape classes the table
    /// lacks, within --tune-budget, and save them). Changes speed, never results.
    #[arg(long, value_name = "MODE", default_value = "cached")]
    tuning: TuningMode,
    /// Seconds `--tuning tune` may spend (compiling included).
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    tune_budget: f64,
    /// How many classes to print per image (at most the model's classes).
    #[arg(long, value_name = "K", default_value_t = 5, value_parser = parse_count)]
    top: usize,
    /// One JSON object per image on stdout (a line each), then a line {"summary": ...}.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// One CSV row per image on stdout (source, then index, class and probability of each of
    /// the top K, then an error column); the summary goes to stderr.
    #[arg(long)]
    csv: bool,
}

/// A whole number of at least 1.
fn parse_count(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a whole number of at least 1")),
    }
}

/// What to classify.
enum Inputs {
    /// A tensor from `--input-tensor`, one batch, with a source name per image.
    Tensor(Tensor, Vec<String>),
    /// Photos, decoded batch by batch.
    Images(Vec<Source>),
}

impl Inputs {
    fn from_args(args: &Args) -> Result<Self> {
        if let Some(path) = &args.input_tensor {
            let t = read_input_tensor(path)?;
            let names = (0..t.shape[0])
                .map(|i| format!("{}[{i}]", path.display()))
                .collect();
            return Ok(Inputs::Tensor(t, names));
        }
        if args.image.is_empty() {
            return Ok(Inputs::Images(vec![Source::Bundled]));
        }
        let sources = inputs::collect(&args.image)?;
        if sources.is_empty() {
            return Err(Error::Input(format!(
                "no JPEG or PNG files in {}",
                args.image
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Inputs::Images(sources))
    }

    fn len(&self) -> usize {
        match self {
            Inputs::Tensor(t, _) => t.shape[0],
            Inputs::Images(s) => s.len(),
        }
    }
}

/// The autotuner's table for `--tuning` (kept beside the pipeline cache); what a tuning did
/// goes to stderr.
fn tuning_table(
    args: &Args,
    ctx: &GpuContext,
    plan: &Plan,
    opts: &RunnerOptions,
) -> Result<Option<std::sync::Arc<TuneTable>>> {
    let dir = args.pipeline_cache.clone().or_else(default_cache_dir);
    let budget = TuneBudget {
        time: std::time::Duration::from_secs_f64(args.tune_budget.max(0.0)),
        ..Default::default()
    };
    let (table, report) = table_for(
        ctx,
        &plan.graph(),
        opts,
        args.tuning,
        dir.as_deref(),
        &budget,
    )?;
    if let Some(r) = report {
        eprintln!(
            "autotune: {} shape classes tuned in {:.1} s, {} from the cache, {} left for a later run",
            r.tuned.len(),
            r.seconds,
            r.cached,
            r.left
        );
    }
    Ok(table)
}

/// A backend ready to run batches.
enum Engine {
    Gpu(GpuContext, Box<GpuRunner>),
    Cpu(CpuBackend),
}

impl Engine {
    /// The GPU runner (batch `batch`), or the CPU backend when `--backend cpu` or no adapter.
    fn new(args: &Args, plan: Plan, weights: Weights, batch: usize) -> Result<Self> {
        let precision = args.precision;
        if args.backend != Some(Backend::Cpu) {
            match GpuContext::new(precision) {
                Ok(mut ctx) => {
                    let dir = args.pipeline_cache.clone().or_else(default_cache_dir);
                    if let Some(dir) = dir.filter(|_| !args.no_pipeline_cache) {
                        ctx = ctx.with_pipeline_cache(dir);
                    }
                    let shader_checks = if args.unchecked_shaders {
                        // SAFETY: the runner sizes every buffer it binds; tests/robustness.rs
                        // shows checked and unchecked kernels agree on every fixture.
                        unsafe { ShaderChecks::unchecked() }
                    } else {
                        ShaderChecks::checked()
                    };
                    let mut opts = RunnerOptions {
                        batch,
                        precision,
                        shader_checks,
                        ..Default::default()
                    };
                    opts.tuned = tuning_table(args, &ctx, &plan, &opts)?;
                    let runner = GpuRunner::new(&ctx, &plan, &weights, opts)?;
                    return Ok(Engine::Gpu(ctx, Box::new(runner)));
                }
                Err(e) if args.backend == Some(Backend::Gpu) || precision == Precision::F16 => {
                    return Err(e)
                }
                Err(e) => eprintln!("note: {e}\nnote: falling back to the CPU backend"),
            }
        }
        if precision == Precision::F16 {
            return Err(Error::Input(
                "--precision f16 needs the GPU backend; the CPU backend computes in f32".into(),
            ));
        }
        Ok(Engine::Cpu(CpuBackend::new(plan, weights)?))
    }

    fn describe(&self, args: &Args) -> String {
        match self {
            Engine::Gpu(ctx, _) => format!("gpu: {} ({:?})", ctx.describe(), args.precision),
            Engine::Cpu(_) => format!("cpu (f32, {} threads)", rayon::current_num_threads()),
        }
        .to_lowercase()
    }

    /// The batch a GPU runner was built for (inputs are padded to it); the CPU takes any.
    fn fixed_batch(&self) -> usize {
        match self {
            Engine::Gpu(_, r) => r.input_shape()[0],
            Engine::Cpu(_) => 0,
        }
    }

    fn run(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Engine::Gpu(_, r) => r.run(x),
            Engine::Cpu(c) => c.run(x),
        }
    }

    fn pipeline_cache_state(&self, args: &Args) -> &'static str {
        match self {
            Engine::Cpu(_) => "unsupported",
            Engine::Gpu(..) if args.no_pipeline_cache => "off",
            Engine::Gpu(ctx, _) if ctx.pipeline_cache().is_none() => "unsupported",
            Engine::Gpu(ctx, _) if ctx.pipeline_cache_loaded() => "warm",
            Engine::Gpu(..) => "cold",
        }
    }

    /// Saves the pipeline cache, if any; a failure is a note, not an error.
    fn save_pipeline_cache(&self) {
        if let Engine::Gpu(ctx, _) = self {
            if let Err(e) = ctx.save_pipeline_cache() {
                eprintln!("note: pipeline cache not saved: {e}");
            }
        }
    }
}

/// What the RANDOM-weights line says: what to do about it.
fn random_note(arch: &Architecture) -> String {
    let mut s = "RANDOM (deterministic, seed 0): no --weights given, so the classes below are \
                 meaningless"
        .to_string();
    match arch.name().and_then(pretrained) {
        Some(p) => s.push_str(&format!(
            ".\n         Real ones: download {} ({}) and pass --weights FILE{}",
            p.url,
            p.source,
            if p.resize != 256 {
                format!(" --resize {}", p.resize)
            } else {
                String::new()
            }
        )),
        None => s.push_str(
            ".\n         Real ones: --weights FILE, a torchvision/timm state_dict (.pth or .safetensors)",
        ),
    }
    s
}

/// A progress bar on stderr for runs of more than one batch (hidden when stderr is not a
/// terminal, as indicatif does).
fn progress(total: usize, batch: usize) -> ProgressBar {
    if total <= batch {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} images  {per_sec:.1}  elapsed {elapsed}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn run(args: &Args, started: Instant) -> Result<()> {
    let arch = Architecture::from_args(
        args.model.as_deref(),
        args.regnet.as_deref(),
        args.anynet.as_deref(),
    )?
    .map_or_else(|| Architecture::named(DEFAULT_MODEL), Ok)?;
    let tf = EvalTransform {
        resize: args.resize,
        ..Default::default()
    };
    let inputs = Inputs::from_args(args)?;
    let (h, w) = match &inputs {
        Inputs::Tensor(t, _) => (t.shape[2], t.shape[3]),
        Inputs::Images(_) => tf.crop,
    };
    let plan = Plan::new(&arch, h, w)?;
    let classes = plan.values[plan.output].channels;
    if args.top > classes {
        eprintln!(
            "note: --top {} is more than the model's {classes} classes; printing all {classes}",
            args.top
        );
    }
    let (weights, random) = match &args.weights {
        Some(p) => (Weights::load(p, &plan)?, false),
        None => (Weights::random(&plan, 0), true),
    };
    let batch = match &inputs {
        Inputs::Tensor(t, _) => t.shape[0],
        Inputs::Images(s) => args.batch.min(s.len()),
    };
    let mut summary = Summary {
        model: arch.to_string(),
        params: plan.num_params(),
        macs: plan.macs(),
        precision: args.precision.to_string(),
        weights: weights.source.clone(),
        random_weights: random,
        input_shape: vec![batch, 3, h, w],
        ..Default::default()
    };
    let t_setup = Instant::now();
    let engine = Engine::new(args, plan, weights, batch)?;
    summary.setup_ms = ms(t_setup);
    summary.backend = engine.describe(args);
    summary.pipeline_cache = engine.pipeline_cache_state(args).into();

    let format = match (args.json, args.csv) {
        (true, _) => Format::JsonLines,
        (_, true) => Format::Csv,
        _ => Format::Text,
    };
    let mut report = Report::new(format, args.top.min(classes));
    report.set_header(&summary, &random_note(&arch));
    let logits = classify(
        &engine,
        inputs,
        batch,
        tf,
        &mut report,
        &mut summary,
        started,
    )?;
    if let Some(path) = &args.save_logits {
        write_safetensors(path, &[("logits", &logits)])?;
    }
    report.summary(&summary);
    if let (Some(path), Format::Text) = (&args.save_logits, format) {
        println!("logits written to {}", path.display());
    }
    Ok(())
}

/// Runs every batch, reporting each image; returns the logits of all classified images.
fn classify(
    engine: &Engine,
    inputs: Inputs,
    batch: usize,
    tf: EvalTransform,
    report: &mut Report,
    summary: &mut Summary,
    started: Instant,
) -> Result<Tensor> {
    let total = inputs.len();
    let bar = progress(total, batch);
    let batches: Box<dyn Iterator<Item = Batch>> = match inputs {
        Inputs::Tensor(t, names) => Box::new(std::iter::once(tensor_batch(t, names))),
        Inputs::Images(sources) => Box::new(inputs::batches(sources, batch, tf).into_iter()),
    };
    let mut all = Tensor::zeros(vec![0, 0]);
    let t_wall = Instant::now();
    for b in batches {
        summary.decode_ms += b.decode.as_secs_f64() * 1e3;
        summary.transform_ms += b.transform.as_secs_f64() * 1e3;
        let mut logits = None;
        if let Some((x, ok)) = b.input(engine.fixed_batch())? {
            let t0 = Instant::now();
            let out = engine.run(&x)?;
            let dt = ms(t0);
            if summary.images == 0 {
                summary.first_batch_ms = dt;
                summary.first_logits_ms = ms(started);
                engine.save_pipeline_cache();
            }
            summary.time_ms += dt;
            summary.images += ok.len();
            append_rows(&mut all, &out, ok.len());
            logits = Some(out);
        }
        // In input order: row n of the logits is the n-th image that could be read.
        let mut n = 0;
        bar.suspend(|| {
            for it in &b.items {
                match (&it.image, &logits) {
                    (Ok(_), Some(l)) => {
                        report.result(&it.source, l, n);
                        n += 1;
                    }
                    (Ok(_), None) => {}
                    (Err(e), _) => {
                        eprintln!("warning: skipped {}: {e}", it.source);
                        report.skipped(&it.source, &e.to_string());
                        summary.skipped += 1;
                    }
                }
            }
        });
        bar.inc(b.items.len() as u64);
    }
    bar.finish_and_clear();
    summary.wall_ms = ms(t_wall);
    summary.images_per_s = summary.images as f64 / (summary.wall_ms / 1e3);
    if summary.images == 0 {
        return Err(Error::Input(format!(
            "none of the {total} inputs could be read (see the warnings above)"
        )));
    }
    Ok(all)
}

/// `--input-tensor`'s images as one batch (already transformed).
fn tensor_batch(t: Tensor, names: Vec<String>) -> Batch {
    let plane = t.data.len() / t.shape[0].max(1);
    let shape = t.shape[1..].to_vec();
    let items = names
        .into_iter()
        .zip(t.data.chunks(plane))
        .map(|(source, d)| Item {
            source,
            image: Tensor::new(shape.clone(), d.to_vec()),
        })
        .collect();
    Batch {
        items,
        decode: Default::default(),
        transform: Default::default(),
    }
}

/// Appends the first `rows` rows of `logits` to `all` (`[0, 0]` to start with).
fn append_rows(all: &mut Tensor, logits: &Tensor, rows: usize) {
    let classes = logits.shape[1];
    all.data.extend_from_slice(&logits.data[..rows * classes]);
    all.shape = vec![all.shape[0] + rows, classes];
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    let started = Instant::now();
    let args = Args::parse();
    match run(&args, started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
