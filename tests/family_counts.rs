//! Parameter counts, multiply-adds and tap shapes of the ResNet, ReXNet, MobileNetV2 and
//! ShuffleNetV2 plans against torch.
//!
//! The numbers in `tests/fixtures/family_counts.json` come from torchvision's and timm's own
//! models (no weights, eval mode) at 224x224 and 160x128: the sum of the parameters' numel,
//! `FlopCounterMode` total FLOPs / 2 for one image, and the output shapes of the taps seen by
//! forward hooks. The file is committed, so this test needs no Python. To regenerate it:
//!
//! ```text
//! /path/to/python scripts/gen_family_counts.py tests/fixtures/family_counts.json
//! ```
//!
//! (the python needs torch, torchvision and timm).

use std::collections::BTreeMap;

use regnet_wgpu::config::Architecture;
use regnet_wgpu::Plan;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    versions: BTreeMap<String, String>,
    models: BTreeMap<String, Model>,
}

#[derive(Deserialize)]
struct Model {
    params: u64,
    /// By `{height}x{width}`.
    sizes: BTreeMap<String, Size>,
}

#[derive(Deserialize)]
struct Size {
    macs: u64,
    /// Tap name to [C, H, W].
    taps: BTreeMap<String, [usize; 3]>,
}

/// The ResNets' and ReXNets' counts, then MobileNetV2's and the ShuffleNetV2s'
/// (`scripts/gen_mobile_counts.py`, `tests/fixtures/mobile_counts.json`), in one list.
fn fixture() -> Fixture {
    let text = include_str!("fixtures/family_counts.json");
    let mut all: Fixture = serde_json::from_str(text).expect("tests/fixtures/family_counts.json");
    let text = include_str!("fixtures/mobile_counts.json");
    let mobile: Fixture = serde_json::from_str(text).expect("tests/fixtures/mobile_counts.json");
    for (k, v) in &mobile.versions {
        assert_eq!(all.versions.get(k), Some(v), "both made with the same {k}");
    }
    all.models.extend(mobile.models);
    all
}

fn parse_size(size: &str) -> (usize, usize) {
    let (h, w) = size.split_once('x').expect("size is HxW");
    (h.parse().unwrap(), w.parse().unwrap())
}

#[test]
fn counts_and_taps_match_torch() {
    let fx = fixture();
    assert!(fx.models.len() >= 19, "the fixtures list every model");
    eprintln!("reference: {:?}", fx.versions);
    for (name, model) in &fx.models {
        let arch = Architecture::named(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.sizes.len(), 2, "{name}: both sizes");
        for (size, want) in &model.sizes {
            let (h, w) = parse_size(size);
            let plan = Plan::new(&arch, h, w).unwrap_or_else(|e| panic!("{name} {size}: {e}"));
            assert_eq!(plan.num_params(), model.params, "{name} {size}: params");
            assert_eq!(plan.macs(), want.macs, "{name} {size}: macs");
            assert!(!want.taps.is_empty(), "{name} {size}: no taps recorded");
            for (tap, shape) in &want.taps {
                let v = plan
                    .tap(tap)
                    .unwrap_or_else(|| panic!("{name} {size}: the plan has no tap {tap}"));
                let s = plan.values[v];
                assert_eq!(
                    [s.channels, s.height, s.width],
                    *shape,
                    "{name} {size}: tap {tap} [C, H, W]"
                );
            }
        }
    }
}
