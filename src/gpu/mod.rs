//! The GPU backend: hand-written WGSL kernels (in `shaders/`) dispatched through wgpu.
//!
//! - [`context`]: the adapter, device and queue (the library's own, or a host application's).
//! - [`kernels`]: one Rust dispatcher per shader family and the pipeline cache.
//! - [`runner`]: a [`Plan`](crate::Plan) and [`Weights`](crate::Weights) compiled once into
//!   buffers, bind groups and a dispatch list; then one submission per inference.

pub mod context;
pub mod kernels;
pub mod runner;

pub use context::{GpuContext, Precision};
pub use runner::{GpuRunner, RunnerOptions};
