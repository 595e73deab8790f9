//! The GPU backend: hand-written WGSL kernels (in `shaders/`) dispatched through wgpu.
//!
//! - [`context`]: the adapter, device and queue (the library's own, or a host application's).
//! - [`kernels`]: one Rust dispatcher per shader family and the pipeline cache.
//! - [`params`]: each kernel family's parameters as a typed struct (the WGSL `Params` twin).
//! - [`lower`]: each op kind to its dispatches, and its weights to its kernel's layout.
//! - [`memory`]: where each value lives (activation buffers reused by liveness).
//! - `operands`: texture operands for CPU-backed adapters: which convolutions copy their input
//!   into a texture first, and the copy.
//! - [`model`]: a [`Plan`](crate::Plan)'s [`Weights`](crate::Weights) uploaded once per device
//!   ([`GpuModel`]), shared by runners of any batch and input size.
//! - [`op`]: one operation of the op library ([`crate::ops`]) over a host's buffers.
//! - [`runner`]: a plan lowered onto a model and its own buffers, bind groups and dispatch
//!   list; then one submission per inference.
//! - [`preprocess`]: torchvision's evaluation transform as a compute pass from a host's
//!   `wgpu::Texture` to a runner's input.
//! - [`readback`]: logits off the GPU through futures, without blocking.
//! - [`tiling`]: the register tiles the kernels use, per adapter type.
//! - [`autotune`]: tiles and workgroup sizes timed on the device per shape class, kept on disk.
//! - [`unroll`]: the `// unroll` loops of the kernels written out before compilation.
//! - [`peak`]: the adapter's measured FMA peak, for benchmarks.
//!
//! Embedding in a wgpu application: [`GpuContext::from_device`] on the host's device,
//! [`GpuPreprocess`] and [`GpuRunner::encode`] into the host's encoder, [`LogitsReadback`]
//! (see the [`preprocess`] module for the whole frame).

pub mod autotune;
pub mod context;
pub mod kernels;
pub mod lower;
pub mod memory;
pub mod model;
pub mod op;
mod operands;
pub mod params;
pub mod peak;
pub mod pipeline_cache;
pub mod preprocess;
pub mod readback;
pub mod runner;
pub mod tiling;
pub mod unroll;

pub use context::{quiet_headless_wayland, GpuContext, Precision};
pub use kernels::ShaderChecks;
pub use model::GpuModel;
pub use op::GpuOp;
pub use preprocess::{GpuPreprocess, PreprocessBinding, PreprocessOptions, Rounding};
pub use readback::{read_logits, read_logits_blocking, LogitsReadback};
pub use runner::{GpuRunner, RunnerOptions};
pub use tiling::Tiling;
