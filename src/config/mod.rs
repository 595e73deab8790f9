//! Model configuration: RegNet parameters, the stages they expand to, and the named zoo.
//!
//! This is pure Rust and needs no GPU. The expansion follows torchvision's
//! `BlockParams.from_init_params` and `_adjust_widths_groups_compatibilty` exactly,
//! float32 arithmetic where torch computes in float32 included.

mod regnet;
mod spec;
pub mod zoo;

pub use regnet::{BlockSpec, RegNetParams, Stage};
