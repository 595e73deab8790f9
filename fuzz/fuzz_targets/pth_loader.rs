//! Arbitrary bytes as a PyTorch checkpoint: `StateDict::from_bytes` (which tells zip, legacy
//! and safetensors apart by content, and reads the pickle with the restricted unpickler), then
//! `Weights::from_bytes` against the `tiny_y` fixture's plan.
//!
//! Any panic, abort, hang or runaway allocation is a finding; an `Err` is the expected
//! answer to bad input.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use regnet_wgpu::weights::{Format, StateDict};
use regnet_wgpu::Weights;

#[path = "tiny_y_plan.rs"]
mod tiny_y_plan;
use tiny_y_plan::plan;

fuzz_target!(|data: &[u8]| {
    let label = Path::new("fuzz.pth");
    let format = Format::detect(data);
    if let Ok(sd) = StateDict::from_bytes(data, label) {
        assert_eq!(sd.format(), format);
        // Every tensor's data hold exactly its shape's elements, within the input's size.
        for (name, t) in sd.iter() {
            assert!(!name.starts_with("module."), "{name}");
            let n: usize = t.shape.iter().product();
            if let Some(es) = t.dtype.float_size() {
                assert_eq!(t.data.len(), n * es, "{name}");
                assert!(t.data.len() <= data.len(), "{name}");
                assert_eq!(t.to_f32(name).expect("a float tensor").len(), n, "{name}");
            } else {
                assert!(t.to_f32(name).is_err(), "{name}");
            }
        }
    }
    if let Ok(w) = Weights::from_bytes(data, label, plan()) {
        // Loaded weights must hold every op the plan needs, with the plan's sizes.
        for op in &plan().ops {
            if let regnet_wgpu::plan::OpKind::Conv2d(c) = &op.kind {
                let conv = w.conv(&op.name).expect("a conv the plan needs");
                let n: usize = c.weight_shape().iter().product();
                assert_eq!(conv.weight.len(), n, "{}", op.name);
                assert_eq!(conv.bias.len(), c.out_channels, "{}", op.name);
                assert!(conv.weight.iter().chain(&conv.bias).all(|v| v.is_finite()));
            }
        }
    }
});
