//! Arbitrary bytes as a safetensors `state_dict`: `Weights::from_bytes` against the
//! `tiny_y` fixture's plan, and the same bytes through `tensor::read_input_tensor` and
//! `tensor::read_safetensors` (which only read files, so the bytes go to a scratch file).
//!
//! Any panic, abort, hang or runaway allocation is a finding; an `Err` is the expected
//! answer to bad input.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use regnet_wgpu::Weights;

#[path = "tiny_y_plan.rs"]
mod tiny_y_plan;
use tiny_y_plan::plan;

/// One scratch file per fuzzing process (parallel jobs must not share it).
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("regnet-fuzz-{}.safetensors", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let plan = plan();
    if let Ok(w) = Weights::from_bytes(data, Path::new("fuzz.safetensors"), plan) {
        // Loaded weights must hold every op the plan needs, with the plan's sizes.
        assert!(!w.is_empty());
        for op in &plan.ops {
            if let regnet_wgpu::plan::OpKind::Conv2d(c) = &op.kind {
                let conv = w.conv(&op.name).expect("a conv the plan needs");
                let n: usize = c.weight_shape().iter().product();
                assert_eq!(conv.weight.len(), n, "{}", op.name);
                assert_eq!(conv.bias.len(), c.out_channels, "{}", op.name);
                assert!(conv.weight.iter().chain(&conv.bias).all(|v| v.is_finite()));
            }
        }
    }

    let path = scratch();
    if std::fs::write(path, data).is_ok() {
        if let Ok(t) = regnet_wgpu::tensor::read_input_tensor(path) {
            assert_eq!(t.shape.len(), 4);
            assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
        }
        if let Ok(all) = regnet_wgpu::tensor::read_safetensors(path) {
            for t in all.values() {
                assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
            }
        }
    }
});
