//! op: one operation of the op library on a safetensors file's tensors, on the GPU or the CPU.
//!
//! ```text
//! op NAME --in IN.safetensors --out OUT.safetensors [--backend gpu|cpu] [--precision f32|f16]
//!    [--param key=value ...]
//! ```
//!
//! NAME is one of torch's ops (`conv2d`, `deform_conv2d`, `max_pool2d`, `avg_pool2d`,
//! `adaptive_avg_pool2d`, `channel_shuffle`, `batch_norm`, `squeeze_excitation`, `cbam`,
//! `relu`, `relu6`, `silu`, `sigmoid`). IN holds its tensors under torch's argument names
//! (`input`, `weight`, `bias`, `offset`, `mask`, `running_mean`, ...; F32, F16, BF16 or F64).
//! Parameters take torch's keyword names, a tuple written `a,b` (`--param stride=2,1
//! --param padding=3,0`); when IN's metadata names the same op (the test fixtures do), its
//! parameters are the defaults. The result is written to OUT as `output` (f32); when IN holds
//! a reference `output` (float64 in the fixtures), the relative error against it is printed.
//!
//! Exit status: 0 on success, 1 on an error (named), 2 on a usage error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use regnet_wgpu::gpu::{GpuContext, GpuOp, Precision};
use regnet_wgpu::ops::{OpFile, Operation};
use regnet_wgpu::tensor::write_safetensors;
use regnet_wgpu::{Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Gpu,
    Cpu,
}

/// Run one op of the op library (torch's semantics) on a safetensors file's tensors.
#[derive(Parser, Debug)]
#[command(name = "op")]
struct Args {
    /// The op: conv2d, deform_conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d,
    /// channel_shuffle, batch_norm, squeeze_excitation, cbam, relu, relu6, silu, sigmoid.
    name: String,
    /// Its tensors under torch's argument names (safetensors).
    #[arg(long = "in", value_name = "IN.safetensors")]
    input: PathBuf,
    /// Where to write the result (as `output`, safetensors).
    #[arg(long = "out", value_name = "OUT.safetensors")]
    output: PathBuf,
    /// Where to run it.
    #[arg(long, value_enum, default_value = "gpu")]
    backend: Backend,
    /// Storage precision on the GPU (f16 needs shader-f16); the CPU computes in f32.
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// A keyword argument, torch's name: `stride=2,1`, `ceil_mode=true`, `groups=4`.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = key_value)]
    params: Vec<(String, String)>,
}

fn key_value(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// The parameters: the file's (when its metadata names this op), then the command line's.
fn params(file: &OpFile, name: &str, given: &[(String, String)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = match file.metadata.get("op") {
        Some(op) if op == name => file.params(),
        _ => Vec::new(),
    };
    for (k, v) in given {
        all.retain(|(a, _)| a != k);
        all.push((k.clone(), v.clone()));
    }
    all
}

/// Relative error of `got` against a float64 reference, by the norm.
fn rel_err(got: &Tensor, (shape, want): &(Vec<usize>, Vec<f64>)) -> Option<f64> {
    if &got.shape != shape {
        return None;
    }
    let (d2, r2) = got
        .data
        .iter()
        .zip(want)
        .fold((0.0, 0.0), |(d, r), (&g, &w)| {
            (d + (g as f64 - w).powi(2), r + w * w)
        });
    Some(d2.sqrt() / f64::max(r2.sqrt(), 1e-30))
}

fn run(args: &Args) -> Result<()> {
    let file = OpFile::read(&args.input)?;
    let op = Operation::parse(&args.name, &params(&file, &args.name, &args.params))?;
    let graph = op.build(&file.tensors)?;
    let (out, where_, ms) = match args.backend {
        Backend::Cpu => {
            graph.run_cpu(&file.tensors)?; // warm-up: threads started, buffers touched
            let t = Instant::now();
            let out = graph.run_cpu(&file.tensors)?;
            (out, "the CPU".to_string(), t.elapsed().as_secs_f64() * 1e3)
        }
        Backend::Gpu => {
            let ctx = GpuContext::new(args.precision)?;
            let gpu = GpuOp::new(&ctx, &graph, args.precision)?;
            gpu.run(&file.tensors)?; // warm-up: pipelines compiled
            let t = Instant::now();
            let out = gpu.run(&file.tensors)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let at = format!(
                "{} ({}; upload and readback included)",
                ctx.info.name, args.precision
            );
            (out, at, ms)
        }
    };
    write_safetensors(&args.output, &[("output", &out)])?;
    println!(
        "{} on {where_}: output {:?} -> {} in {ms:.3} ms",
        args.name,
        out.shape,
        args.output.display()
    );
    if let Some(reference) = &file.output {
        match rel_err(&out, reference) {
            Some(e) => println!("relative error against the file's `output`: {e:.2e}"),
            None => println!(
                "the file's `output` has shape {:?}, not the result's: not compared",
                reference.0
            ),
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
