//! Plans against torchvision: the 25 zoo models (zoo_plans.json, made by torchvision's own
//! `BlockParams` and `RegNet`), the fixtures' manifest, and random design-space samples.

use regnet_wgpu::{zoo, Plan, RegNetParams};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn params_from_json(p: &Value) -> RegNetParams {
    let mut r = RegNetParams::new(
        p["depth"].as_u64().unwrap() as usize,
        p["w_0"].as_u64().unwrap() as usize,
        p["w_a"].as_f64().unwrap(),
        p["w_m"].as_f64().unwrap(),
        p["group_width"].as_u64().unwrap() as usize,
    );
    r.bottleneck = p["bottleneck_multiplier"].as_f64().unwrap_or(1.0);
    r.se_ratio = p["se_ratio"].as_f64();
    if let Some(s) = p.get("stem_width").and_then(Value::as_u64) {
        r.stem_width = s as usize;
    }
    if let Some(c) = p.get("num_classes").and_then(Value::as_u64) {
        r.num_classes = c as usize;
    }
    r
}

/// Compares our stages with a torchvision plan entry (`stages` with `blocks`).
fn check_stages(label: &str, plan: &Plan, want: &Value) {
    let want = want.as_array().unwrap();
    let stages = plan.arch.regnet_stages().unwrap().unwrap();
    assert_eq!(plan.stages.len(), want.len(), "{label}: number of stages");
    assert_eq!(stages.len(), want.len(), "{label}: number of stages");
    for (i, (s, w)) in stages.iter().zip(want).enumerate() {
        assert_eq!(plan.stages[i].blocks, s.depth, "{label}: plan stage {i}");
        let ctx = format!("{label} stage {}", i + 1);
        assert_eq!(s.depth as u64, w["depth"].as_u64().unwrap(), "{ctx} depth");
        assert_eq!(
            s.width_out as u64,
            w["width_out"].as_u64().unwrap(),
            "{ctx} width_out"
        );
        assert_eq!(
            s.width_bottleneck as u64,
            w["width_bottleneck"].as_u64().unwrap(),
            "{ctx} w_b"
        );
        assert_eq!(
            s.groups as u64,
            w["groups"].as_u64().unwrap(),
            "{ctx} groups"
        );
        assert_eq!(
            s.group_width as u64,
            w["group_width"].as_u64().unwrap(),
            "{ctx} group_width"
        );
        if let Some(stride) = w.get("stride") {
            assert_eq!(s.stride as u64, stride.as_u64().unwrap(), "{ctx} stride");
        }
        if let Some(blocks) = w.get("blocks").and_then(Value::as_array) {
            assert_eq!(s.blocks.len(), blocks.len(), "{ctx} blocks");
            for (j, (b, wb)) in s.blocks.iter().zip(blocks).enumerate() {
                let ctx = format!("{ctx} block {j}");
                assert_eq!(
                    b.width_in as u64,
                    wb["width_in"].as_u64().unwrap(),
                    "{ctx} width_in"
                );
                assert_eq!(
                    b.stride as u64,
                    wb["stride"].as_u64().unwrap(),
                    "{ctx} stride"
                );
                assert_eq!(
                    b.se_width.map(|x| x as u64),
                    wb["se_width"].as_u64(),
                    "{ctx} se"
                );
                assert_eq!(
                    b.projection,
                    wb["projection"].as_bool().unwrap(),
                    "{ctx} projection"
                );
            }
        } else if let Some(se) = w.get("se_width") {
            assert_eq!(
                s.blocks[0].se_width.map(|x| x as u64),
                se.as_u64(),
                "{ctx} se_width"
            );
        }
    }
}

#[test]
fn all_25_zoo_models_match_torchvision() {
    let zoo_json = fixture("zoo_plans.json");
    let obj = zoo_json.as_object().unwrap();
    assert_eq!(obj.len(), 25);
    assert_eq!(zoo::names().count(), 25);
    for name in zoo::names() {
        let entry = &obj[name];
        let params = zoo::get(name).unwrap();
        assert_eq!(
            params,
            params_from_json(&entry["params"]),
            "{name}: zoo parameters"
        );
        let plan = Plan::new(&params, 224, 224).unwrap();
        check_stages(name, &plan, &entry["stages"]);
        assert_eq!(
            plan.num_params(),
            entry["num_params"].as_u64().unwrap(),
            "{name} params"
        );
        assert_eq!(
            plan.macs(),
            entry["macs_224"].as_u64().unwrap(),
            "{name} macs"
        );
        if let Some(acts) = entry.get("acts_224_pycls") {
            assert_eq!(
                plan.activations(),
                acts.as_u64().unwrap(),
                "{name} activations"
            );
        }
    }
}

#[test]
fn fixture_manifest_plans_match_torchvision() {
    let manifest = fixture("manifest.json");
    for (name, entry) in manifest.as_object().unwrap() {
        if name.starts_with('_') {
            continue;
        }
        let cfg = &entry["config"];
        let params = if cfg["kind"] == "builder" {
            zoo::get(name).unwrap()
        } else {
            params_from_json(cfg)
        };
        let shape: Vec<usize> = entry["input_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let plan = Plan::new(&params, shape[2], shape[3]).unwrap();
        check_stages(name, &plan, &entry["stages"]);
        assert_eq!(
            plan.num_params(),
            entry["params"].as_u64().unwrap(),
            "{name} params"
        );
        assert_eq!(
            plan.macs(),
            entry["macs_per_image"].as_u64().unwrap(),
            "{name} macs"
        );
    }
}

/// 400 random design-space samples expanded by torchvision (scripts/gen_random_plans.py),
/// at random input sizes from 1x1 up; the ones torchvision rejects must be rejected too.
#[test]
fn random_configurations_match_torchvision() {
    let samples = fixture("random_plans.json");
    let samples = samples.as_array().unwrap();
    assert!(samples.len() >= 400);
    for (i, s) in samples.iter().enumerate() {
        let params = params_from_json(&s["params"]);
        let label = format!("sample {i} ({params})");
        if s.get("rejected").and_then(Value::as_bool) == Some(true) {
            assert!(
                Plan::new(&params, 32, 32).is_err(),
                "{label}: torchvision rejects it ({}) but we accept it",
                s["error"]
            );
            continue;
        }
        let size: Vec<usize> = s["size"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let plan = Plan::new(&params, size[0], size[1]).unwrap_or_else(|e| panic!("{label}: {e}"));
        check_stages(&label, &plan, &s["stages"]);
        assert_eq!(
            plan.num_params(),
            s["num_params"].as_u64().unwrap(),
            "{label} params"
        );
        assert_eq!(
            plan.macs(),
            s["macs"].as_u64().unwrap(),
            "{label} macs at {size:?}"
        );
    }
}

/// The fuzzer's findings (fuzz/regressions/spec_parser: 4 bytes of size, then a spec) are
/// errors now, never panics or wrapped counts.
#[test]
fn fuzz_regressions_are_errors_not_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/spec_parser");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let side = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) as usize % 32768 + 1;
        let (h, w) = (side(&data[0..2]), side(&data[2..4]));
        let spec = String::from_utf8_lossy(&data[4..]);
        if let Ok(p) = spec.parse::<RegNetParams>() {
            if let Ok(plan) = Plan::new(&p, h, w) {
                assert!(
                    plan.macs() < u64::MAX && plan.num_params() < u64::MAX,
                    "{spec}"
                );
            }
        }
        n += 1;
    }
    assert!(n >= 6);
    for spec in [
        "depth=16,d=17,w0=48,wa=27.89,wm=2.09,group_width=8",
        "depth=1,w0=8,wa=0,wm=2,group_width=8,se=1e300",
        "depth=1,w0=8,wa=0,wm=2,group_width=8,stem=1000000000000000",
        "depth=1,w0=8,wa=0,wm=2,group_width=8,bottleneck=1e18",
        "depth=1,w0=8,wa=0,wm=2,group_width=8,classes=18446744073709551615",
    ] {
        assert!(
            spec.parse::<RegNetParams>().is_err(),
            "{spec} should be refused"
        );
    }
    // Widths within the limits, but multiply-adds beyond u64 at the largest input.
    let p: RegNetParams = "depth=2,w0=8,wa=500000,wm=100000,group_width=8"
        .parse()
        .unwrap();
    assert!(Plan::new(&p, 224, 224).is_ok());
    let e = Plan::new(&p, 32768, 32768).unwrap_err().to_string();
    assert!(e.contains("absurdly large"), "{e}");
}
