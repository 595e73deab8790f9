//! # regnet-wgpu
//!
//! RegNet image classifiers (RegNetX and RegNetY, torchvision's zoo) and their neighbours
//! (torchvision's ResNet, ResNeXt and Wide ResNet, timm's ReXNet, any AnyNet) on any GPU through
//! wgpu, with hand-written WGSL compute shaders, and a multithreaded CPU backend that runs the
//! same plan as the correctness reference.
//!
//! Data flows one way: [`config`] (a family's parameters, [`config::Architecture`]) →
//! [`plan`] (ops with shapes, one producer per family) → [`weights`] (torchvision or timm
//! `state_dict`, BatchNorm folded) → a backend → logits.
//!
//! ```no_run
//! use regnet_wgpu::{config::Architecture, cpu::CpuBackend, Plan, Tensor, Weights};
//! let plan = Plan::new(Architecture::named("resnet50")?, 224, 224)?;
//! let weights = Weights::load("resnet50.safetensors", &plan)?;
//! let logits = CpuBackend::new(plan, weights)?.run(&Tensor::zeros(vec![1, 3, 224, 224]))?;
//! # Ok::<(), regnet_wgpu::Error>(())
//! ```

pub mod config;
#[cfg(feature = "cpu")]
#[cfg_attr(docsrs, doc(cfg(feature = "cpu")))]
pub mod cpu;
pub mod error;
#[cfg(feature = "gpu")]
#[cfg_attr(docsrs, doc(cfg(feature = "gpu")))]
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
