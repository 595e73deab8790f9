//! # regnet-wgpu
//!
//! RegNet image classifiers (RegNetX and RegNetY, torchvision's zoo) on any GPU through wgpu,
//! with hand-written WGSL compute shaders, and a multithreaded CPU backend that runs the same
//! plan as the correctness reference.
//!
//! Data flows one way: [`config`] (parameters → stages) → [`plan`] (ops with shapes) →
//! [`weights`] (torchvision `state_dict`, BatchNorm folded) → a backend → logits.

pub mod config;
pub mod cpu;
pub mod error;
pub mod gpu;
pub mod plan;
pub mod preprocess;
pub mod tensor;
pub mod weights;

pub use config::{zoo, BlockSpec, RegNetParams, Stage};
pub use error::{Error, Result};
pub use plan::Plan;
pub use tensor::Tensor;
pub use weights::Weights;
