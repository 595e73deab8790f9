//! The plan both weight-loading targets fuzz against: that of
//! tests/fixtures/tiny_y.safetensors (its config in tests/fixtures/manifest.json), built once.

use std::sync::OnceLock;

use regnet_wgpu::{Plan, RegNetParams};

pub fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let p = RegNetParams::new(6, 16, 12.0, 2.0, 8)
            .with_se(0.25)
            .with_classes(10)
            .with_stem(16);
        Plan::new(&p, 32, 32).expect("tiny_y plan")
    })
}
