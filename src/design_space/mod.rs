//! The RegNet paper's method (Radosavovic et al., "Designing Network Design Spaces", 2020)
//! for deployment: sample models from a design space, keep those whose multiply-adds fall in a
//! window, measure them, and compare by what was measured.
//!
//! - [`Sampler`] draws models deterministically from a seed, from the paper's RegNet space or
//!   its free AnyNetX space ([`Space`]), keeping those inside a [`MacsWindow`], each with its
//!   spec in the `--regnet` / `--anynet` syntax and the plan's counts.
//! - [`stats`] compares what was measured: Pearson and Spearman correlation, the empirical
//!   distribution (EDF), the Pareto front of MACs against latency, the best model under a
//!   latency budget.
//!
//! Measuring is the caller's: `examples/design_space` times each sample on either backend.
//!
//! ```
//! use regnet_wgpu::design_space::{MacsWindow, Sampler, SamplerOptions, Space};
//! let opts = SamplerOptions {
//!     space: Space::RegNet,
//!     seed: 1,
//!     size: (224, 224),
//!     macs: "360M:400M".parse()?,
//!     se: false,
//! };
//! let samples = Sampler::new(opts).take_samples(3)?;
//! assert_eq!(samples.len(), 3);
//! for s in &samples {
//!     assert!((360_000_000..=400_000_000).contains(&s.macs));
//!     println!("{} ({} MACs)", s.spec, s.macs);
//! }
//! # Ok::<(), regnet_wgpu::Error>(())
//! ```

mod sample;
pub mod stats;

pub use sample::{
    MacsWindow, Sample, Sampler, SamplerOptions, Space, ANYNET_BOTTLENECK_RATIOS, ANYNET_MAX_DEPTH,
    ANYNET_MAX_WIDTH, ANYNET_STAGES, GROUP_WIDTHS, MAX_DRAWS_PER_SAMPLE, REGNET_MAX_DEPTH,
    REGNET_STAGES, REGNET_W0, REGNET_WA, REGNET_WM,
};
