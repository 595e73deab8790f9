//! The GPU backend: hand-written WGSL kernels (in `shaders/`) dispatched through wgpu.
//!
//! - [`context`]: the adapter, device and queue (the library's own, or a host application's).
//! - [`kernels`]: one Rust dispatcher per shader family and the pipeline cache.
//! - [`runner`]: a [`Plan`](crate::Plan) and [`Weights`](crate::Weights) compiled once into
//!   buffers, bind groups and a dispatch list; then one submission per inference.
//! - [`preprocess`]: torchvision's evaluation transform as a compute pass from a host's
//!   `wgpu::Texture` to a runner's input.
//! - [`readback`]: logits off the GPU through futures, without blocking.
//! - [`tiling`]: the register tiles the kernels use, per adapter type.
//!
//! Embedding in a wgpu application: [`GpuContext::from_device`] on the host's device,
//! [`GpuPreprocess`] and [`GpuRunner::encode`] into the host's encoder, [`LogitsReadback`]
//! (see the [`preprocess`] module for the whole frame).

pub mod context;
pub mod kernels;
pub mod preprocess;
pub mod readback;
pub mod runner;
pub mod tiling;

pub use context::{GpuContext, Precision};
pub use preprocess::{GpuPreprocess, PreprocessBinding, PreprocessOptions, Rounding};
pub use readback::{read_logits, read_logits_blocking, LogitsReadback};
pub use runner::{GpuRunner, RunnerOptions};
pub use tiling::Tiling;
