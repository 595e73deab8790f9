//! gpu_infer: classify images (or a tensor) with a RegNet, ResNet, ResNeXt, Wide ResNet, ReXNet
//! or any AnyNet, on the GPU or the CPU.
//!
//! ```text
//! gpu_infer (--model NAME | --regnet SPEC | --anynet SPEC) [--weights FILE] [--image FILE ...]
//!           [--input-tensor FILE] [--save-logits FILE] [--backend gpu|cpu]
//!           [--precision f32|f16] [--unchecked-shaders] [--top K] [--json]
//! ```
//!
//! With no arguments it runs regnet_y_400mf on the bundled photo `assets/chelsea.png`.
//! Without `--weights` the weights are deterministic random ones, and it says so.
//!
//! Examples:
//! ```text
//! cargo run --release --example gpu_infer
//! cargo run --release --example gpu_infer -- --model regnet_y_400mf \
//!     --weights regnet_y_400mf-c65dace8.pth --image photo.jpg --top 5
//! cargo run --release --example gpu_infer -- --model resnet50 --weights resnet50.safetensors
//! cargo run --release --example gpu_infer -- --model regnet_x_400mf --backend cpu \
//!     --input-tensor in.safetensors --save-logits out.safetensors
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use regnet_wgpu::config::Architecture;
use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions, ShaderChecks};
use regnet_wgpu::preprocess::{stack, EvalTransform};
use regnet_wgpu::tensor::{read_input_tensor, write_safetensors};
use regnet_wgpu::{cpu::CpuBackend, Error, Plan, Result, Tensor, Weights};

/// The bundled sample photo (CC0, scikit-image's `chelsea`), built into the program.
const SAMPLE_PHOTO: &[u8] = include_bytes!("../assets/chelsea.png");
const IMAGENET_CLASSES: &str = include_str!("../assets/imagenet_classes.txt");

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Gpu,
    Cpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Prec {
    F32,
    F16,
}

/// Classify images with a RegNet, ResNet, ResNeXt, Wide ResNet (torchvision-exact), ReXNet
/// (timm-exact) or AnyNet, on the GPU through wgpu or on the CPU.
#[derive(Parser, Debug)]
#[command(name = "gpu_infer", version)]
struct Args {
    /// A named model: regnet_{x,y}_{200mf,...,32gf}, regnet_y_128gf; resnet{18,34,50,101,152},
    /// resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet{50,101}_2;
    /// rexnet_{100,130,150,200}.
    #[arg(long, conflicts_with_all = ["regnet", "anynet"])]
    model: Option<String>,
    /// A RegNet spec: depth=16,w0=48,wa=27.89,wm=2.09,group_width=8[,bottleneck=1.0][,se=0.25][,stem=32][,classes=1000].
    #[arg(long, conflicts_with = "anynet")]
    regnet: Option<String>,
    /// An AnyNet spec: depths=1:2:4:2,widths=24:64:144:320,group_widths=8:16:24:40,bottlenecks=1:1:1:1,strides=2:2:2:2[,se=0.25][,stem=32][,classes=1000].
    #[arg(long)]
    anynet: Option<String>,
    /// torchvision / timm state_dict: a PyTorch checkpoint (torch.save, zip or legacy format, e.g. torchvision's .pth downloads) or safetensors, told apart by content. Without it: random weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// JPEG or PNG images, each through torchvision's ImageNet evaluation transform.
    #[arg(long, num_args = 1.., conflicts_with = "input_tensor")]
    image: Vec<PathBuf>,
    /// A safetensors file holding `input` [N,3,H,W] (f32).
    #[arg(long)]
    input_tensor: Option<PathBuf>,
    /// Write the logits [N,classes] (f32) as the tensor `logits` of a safetensors file.
    #[arg(long)]
    save_logits: Option<PathBuf>,
    /// Where to run. Default: the GPU, falling back to the CPU when there is no adapter.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Numeric precision (f16 needs the GPU and its shader-f16 feature).
    #[arg(long, value_enum, default_value = "f32")]
    precision: Prec,
    /// Compile the GPU kernels without wgpu's runtime checks (bounds checks, loop bounding):
    /// about 5x faster on lavapipe (BENCHMARKS.md); the kernels are in bounds by construction.
    #[arg(long)]
    unchecked_shaders: bool,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    top: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The model, its input and where they came from.
struct Job {
    name: String,
    arch: Architecture,
    input: Tensor,
    sources: Vec<String>,
}

fn load_job(args: &Args) -> Result<Job> {
    let arch = Architecture::from_args(
        args.model.as_deref(),
        args.regnet.as_deref(),
        args.anynet.as_deref(),
    )?;
    let arch = match arch {
        Some(a) => a,
        None => Architecture::named("regnet_y_400mf")?,
    };
    let name = arch.to_string();
    let (input, sources) = if let Some(path) = &args.input_tensor {
        let t = read_input_tensor(path)?;
        let sources = (0..t.shape[0])
            .map(|i| format!("{}[{i}]", path.display()))
            .collect();
        (t, sources)
    } else if args.image.is_empty() {
        let img = image::load_from_memory(SAMPLE_PHOTO)
            .map_err(|e| Error::Input(format!("bundled sample photo: {e}")))?
            .to_rgb8();
        let x = EvalTransform::default().apply(&img)?;
        (
            stack(&[x])?,
            vec!["assets/chelsea.png (bundled)".to_string()],
        )
    } else {
        let paths = args.image.clone();
        let tf = EvalTransform::default();
        let images = paths
            .iter()
            .map(|p| tf.load(p))
            .collect::<Result<Vec<_>>>()?;
        let sources = paths.iter().map(|p| p.display().to_string()).collect();
        (stack(&images)?, sources)
    };
    Ok(Job {
        name,
        arch,
        input,
        sources,
    })
}

/// Runs the job on the chosen backend; returns logits, a description of the backend and the time.
/// The default (no `--backend`) is the GPU, falling back to the CPU when there is no adapter.
fn infer(
    args: &Args,
    plan: Plan,
    weights: Weights,
    input: &Tensor,
) -> Result<(Tensor, String, f64)> {
    let precision = match args.precision {
        Prec::F32 => Precision::F32,
        Prec::F16 => Precision::F16,
    };
    if args.backend != Some(Backend::Cpu) {
        match GpuContext::new(precision) {
            Ok(ctx) => {
                let shader_checks = if args.unchecked_shaders {
                    // SAFETY: the runner sizes every buffer it binds; tests/robustness.rs shows
                    // checked and unchecked kernels agree on every fixture.
                    unsafe { ShaderChecks::unchecked() }
                } else {
                    ShaderChecks::checked()
                };
                let opts = RunnerOptions {
                    batch: input.shape[0],
                    precision,
                    shader_checks,
                    ..Default::default()
                };
                let runner = GpuRunner::new(&ctx, &plan, &weights, opts)?;
                let t0 = Instant::now();
                let logits = runner.run(input)?;
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                let desc = format!("gpu: {} ({:?})", ctx.describe(), precision).to_lowercase();
                return Ok((logits, desc, ms));
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
    let cpu = CpuBackend::new(plan, weights)?;
    let t0 = Instant::now();
    let logits = cpu.run(input)?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let desc = format!("cpu (f32, {} threads)", rayon::current_num_threads());
    Ok((logits, desc, ms))
}

fn class_name(classes: usize, i: usize) -> String {
    if classes == 1000 {
        IMAGENET_CLASSES.lines().nth(i).unwrap_or("?").to_string()
    } else {
        format!("class {i}")
    }
}

fn run(args: &Args) -> Result<()> {
    let job = load_job(args)?;
    let (h, w) = (job.input.shape[2], job.input.shape[3]);
    let plan = Plan::new(&job.arch, h, w)?;
    let (weights, random) = match &args.weights {
        Some(p) => (Weights::load(p, &plan)?, false),
        None => (Weights::random(&plan, 0), true),
    };
    let weights_desc = weights.source.clone();
    let (macs, nparams) = (plan.macs(), plan.num_params());
    let (logits, backend, ms) = infer(args, plan, weights, &job.input)?;
    if let Some(path) = &args.save_logits {
        write_safetensors(path, &[("logits", &logits)])?;
    }
    let probs = logits.softmax_rows();
    let classes = logits.shape[1];
    let k = (args.top as usize).min(classes);
    if args.json {
        let results: Vec<serde_json::Value> = (0..logits.shape[0])
            .map(|n| {
                let top: Vec<serde_json::Value> = probs
                    .top_k(n, k)
                    .into_iter()
                    .map(|(i, p)| {
                        serde_json::json!({"index": i, "class": class_name(classes, i),
                            "prob": p, "logit": logits.data[n * classes + i]})
                    })
                    .collect();
                serde_json::json!({"source": job.sources[n], "top": top})
            })
            .collect();
        let out = serde_json::json!({
            "model": job.name, "backend": backend, "precision": format!("{:?}", args.precision).to_lowercase(),
            "weights": weights_desc, "random_weights": random, "input_shape": job.input.shape,
            "time_ms": ms, "results": results,
        });
        println!("{out}");
    } else {
        println!(
            "model:   {} ({:.2}M params, {:.2} GFLOPS per image at {h}x{w})",
            job.name,
            nparams as f64 / 1e6,
            macs as f64 / 1e9
        );
        if random {
            println!("weights: RANDOM (deterministic, seed 0): no --weights given, so the classes below are meaningless");
        } else {
            println!("weights: {weights_desc}");
        }
        println!("backend: {backend}");
        println!("input:   {:?} in {ms:.1} ms", job.input.shape);
        for n in 0..logits.shape[0] {
            println!("{}:", job.sources[n]);
            for (rank, (i, p)) in probs.top_k(n, k).into_iter().enumerate() {
                println!(
                    "  {:>2}. {:>6.2}%  {} ({i})",
                    rank + 1,
                    p * 100.0,
                    class_name(classes, i)
                );
            }
        }
        if let Some(path) = &args.save_logits {
            println!("logits written to {}", path.display());
        }
    }
    Ok(())
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
