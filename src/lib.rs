//! # regnet-wgpu
//!
//! RegNet image classifiers (RegNetX and RegNetY, torchvision's zoo) and their neighbours
//! (torchvision's ResNet, ResNeXt, Wide ResNet, MobileNetV2 and ShuffleNetV2, timm's ReXNet, any
//! AnyNet) on any GPU through wgpu, with hand-written WGSL compute shaders, and a multithreaded
//! CPU backend that runs the same plan as the correctness reference. The same kernels are a
//! library of single operations with torch's semantics ([`ops`], [`gpu::GpuOp`]).
//!
//! Data flows one way: [`config`] (a family's parameters, [`config::Architecture`]) →
//! [`plan`] (ops with shapes, one producer per family) → [`weights`] (torchvision or timm
//! `state_dict` from a `.pth` checkpoint or safetensors, BatchNorm folded) → a backend
//! (`cpu::CpuBackend` or `gpu::GpuRunner`) → logits.
//!
//! # Cargo features
//!
//! | feature | default | what it adds | pulls |
//! |---|---|---|---|
//! | `cpu` | yes | the `cpu` module: the multithreaded CPU backend | gemm, rayon |
//! | `gpu` | yes | the `gpu` module: WGSL kernels, runner, texture preprocessing, readback | wgpu, pollster |
//! | `image` | yes | `EvalTransform::apply` / `load`, the PIL-exact resampler, PNG/JPEG decoding | image, rayon |
//! | `plot` | yes | the `plot` module: charts as SVG strings (the examples' `--svg`) | plotters (SVG backend only) |
//!
//! Without any of them the crate still has [`config`], [`plan`], [`weights`], [`tensor`] and
//! the transform's description in [`preprocess`]. A wgpu host or a wasm build takes only the
//! GPU path:
//!
//! ```toml
//! regnet-wgpu = { version = "0.1", default-features = false, features = ["gpu"] }
//! ```
//!
//! The examples below use the default features.
//!
//! # Run a model
//!
//! Name a model (or build one from its parameters), plan it at an input size, load its
//! torchvision or timm weights (a `.pth` checkpoint or safetensors; BatchNorm is folded
//! here), and run a backend. Both backends take the same plan and weights; the tests hold each
//! within 1e-4 relative error of torchvision's float64 logits in f32 (measured: under 5e-7).
//!
//! ```no_run
//! use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions};
//! use regnet_wgpu::preprocess::{stack, EvalTransform};
//! use regnet_wgpu::{config::Architecture, cpu::CpuBackend, Plan, Weights};
//!
//! let plan = Plan::new(Architecture::named("regnet_y_400mf")?, 224, 224)?;
//! let weights = Weights::load("regnet_y_400mf.safetensors", &plan)?;
//! // torchvision's evaluation transform (PIL-exact), one image -> [1, 3, 224, 224].
//! let input = stack(&[EvalTransform::default().load("photo.jpg")?])?;
//!
//! // On the GPU (the library's own device; Error::NoAdapter when there is none) ...
//! let ctx = GpuContext::new(Precision::F32)?;
//! let runner = GpuRunner::new(&ctx, &plan, &weights, RunnerOptions::default())?;
//! let logits = runner.run(&input)?; // [1, 1000]
//! println!("{:?}", logits.softmax_rows().top_k(0, 5));
//!
//! // ... or on the CPU, from the same plan and weights.
//! let logits = CpuBackend::new(plan, weights)?.run(&input)?;
//! println!("{:?}", logits.softmax_rows().top_k(0, 5));
//! # Ok::<(), regnet_wgpu::Error>(())
//! ```
//!
//! # Embed in a wgpu application
//!
//! Inference runs on the host's own `wgpu::Device`, inside its command encoder, reading its
//! texture; only the logits leave the GPU. The library requests no features or limits: it
//! checks the device's and names what is missing. `examples/embed.rs` is a complete host, and
//! the [`gpu::preprocess`] module documents the texture formats.
//!
//! ```no_run
//! use regnet_wgpu::gpu::{GpuContext, GpuPreprocess, GpuRunner, LogitsReadback, RunnerOptions};
//! use regnet_wgpu::preprocess::EvalTransform;
//! use regnet_wgpu::{zoo, Plan, Weights};
//!
//! # async fn host(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo,
//! #               frame: &wgpu::Texture) -> regnet_wgpu::Result<()> {
//! // Once, on the host's device.
//! let ctx = GpuContext::from_device(device, queue, info);
//! let plan = Plan::new(zoo::get("regnet_y_400mf")?, 224, 224)?;
//! let weights = Weights::load("regnet_y_400mf.safetensors", &plan)?;
//! let runner = GpuRunner::new(&ctx, &plan, &weights, RunnerOptions::default())?;
//! let classify = GpuPreprocess::for_runner(&runner, EvalTransform::default())?
//!     .bind_runner(frame, &runner, 0)?; // the host's texture -> image 0 of the input
//! let readback = LogitsReadback::new(&runner);
//!
//! // Every frame, in the host's encoder, after its passes drew `frame`.
//! let mut encoder = ctx.device.create_command_encoder(&Default::default());
//! classify.encode(&mut encoder);      // torchvision's transform on the GPU
//! runner.encode(&mut encoder);        // the whole network -> runner.logits_buffer()
//! readback.encode_copy(&mut encoder); // logits -> a staging buffer
//! ctx.queue.submit([encoder.finish()]);
//! let logits = readback.read().await?; // a future that never blocks (also on wasm)
//! # let _ = logits;
//! # Ok(()) }
//! ```
//!
//! # Benchmark the GPU against the CPU
//!
//! One plan and one set of weights on both backends: wall time per inference, the GPU's own
//! device time where the adapter has timestamp queries, and the logits' agreement.
//! `examples/bench.rs` does this with warm-up, medians, a per-dispatch profile and the
//! adapter's FMA peak ([`gpu::peak`]).
//!
//! ```no_run
//! use std::time::Instant;
//! use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions};
//! use regnet_wgpu::{cpu::CpuBackend, zoo, Plan, Tensor, Weights};
//!
//! let plan = Plan::new(zoo::get("regnet_y_400mf")?, 224, 224)?;
//! let weights = Weights::random(&plan, 0); // timing needs no trained weights
//! let input = Tensor::zeros(vec![8, 3, 224, 224]);
//!
//! let ctx = GpuContext::new(Precision::F32)?;
//! let opts = RunnerOptions { batch: 8, ..Default::default() };
//! let gpu = GpuRunner::new(&ctx, &plan, &weights, opts)?;
//! let cpu = CpuBackend::new(plan.clone(), weights)?;
//!
//! let time = |f: &dyn Fn() -> regnet_wgpu::Result<Tensor>| -> regnet_wgpu::Result<(f64, Tensor)> {
//!     f()?; // warm-up: pipelines compiled, buffers touched
//!     let t = Instant::now();
//!     let out = f()?;
//!     Ok((t.elapsed().as_secs_f64() * 1e3, out))
//! };
//! let (gpu_ms, gpu_logits) = time(&|| gpu.run(&input))?;
//! let (cpu_ms, cpu_logits) = time(&|| cpu.run(&input))?;
//! let gflops = 2.0 * plan.macs() as f64 * 8.0 / 1e9;
//! println!("gpu {gpu_ms:.1} ms ({:.1} GFLOP/s), cpu {cpu_ms:.1} ms ({:.1} GFLOP/s)",
//!          gflops / (gpu_ms / 1e3), gflops / (cpu_ms / 1e3));
//! if let Some(device_ms) = gpu.time_gpu(&input, 10)? {
//!     println!("gpu device time per batch: {device_ms:?} ms");
//! }
//! let worst = gpu_logits.data.iter().zip(&cpu_logits.data)
//!     .map(|(g, c)| (g - c).abs()).fold(0f32, f32::max);
//! println!("largest logit difference: {worst:e}");
//! # Ok::<(), regnet_wgpu::Error>(())
//! ```

#![warn(missing_docs)]
// On wasm32 WebGPU's handles are neither Send nor Sync, so the Arcs that make contexts, models
// and runners shareable across threads on native hold non-Send values there (one thread only).
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod classes;
pub mod config;
#[cfg(feature = "cpu")]
#[cfg_attr(docsrs, doc(cfg(feature = "cpu")))]
pub mod cpu;
pub mod design_space;
pub mod error;
#[cfg(feature = "gpu")]
#[cfg_attr(docsrs, doc(cfg(feature = "gpu")))]
pub mod gpu;
pub mod ops;
pub mod plan;
#[cfg(feature = "plot")]
#[cfg_attr(docsrs, doc(cfg(feature = "plot")))]
pub mod plot;
pub mod preprocess;
mod rng;
pub mod tensor;
pub mod weights;

pub use config::{zoo, BlockSpec, RegNetParams, Stage};
pub use error::{Error, PthError, Result};
pub use plan::Plan;
pub use tensor::Tensor;
pub use weights::Weights;
