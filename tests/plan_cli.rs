//! The `plan` example as a command: its JSON against torchvision's numbers, `--size`, `--svg`,
//! and clean errors. It runs through `cargo run --release --example plan` (built once).

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const Y_400MF_SPEC: &str = "depth=16,w0=48,wa=27.89,wm=2.09,group_width=8,se=0.25";
const TINY_SPEC: &str = "depth=4,w0=16,wa=12,wm=2,group_width=8,se=0.25,stem=16,classes=10";

/// Runs `plan ARGS` and returns its output.
fn plan(args: &[&str]) -> Output {
    Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--release", "--quiet", "--example", "plan", "--"])
        .args(args)
        .output()
        .expect("cannot run cargo")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `plan ARGS --json`, checks it succeeded, and parses stdout as exactly one JSON object.
fn plan_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let o = plan(&all);
    assert!(o.status.success(), "plan {all:?} failed: {}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("stdout of plan {all:?} is not one JSON value ({e})"));
    assert!(v.is_object(), "plan {all:?}: not a JSON object");
    v
}

/// Runs `plan ARGS`, checks it failed cleanly (non-zero, `error:`, no panic) and returns stderr.
fn plan_error(args: &[&str]) -> String {
    let o = plan(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "plan {args:?} should fail");
    assert!(
        matches!(o.status.code(), Some(1 | 2)),
        "plan {args:?}: exit status {:?}",
        o.status.code()
    );
    assert!(!err.contains("panicked"), "plan {args:?} panicked: {err}");
    assert!(err.contains("error:"), "plan {args:?}: {err}");
    assert!(o.stdout.is_empty(), "plan {args:?} wrote to stdout");
    err
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not an integer: {}", v[key]))
}

/// The counts and stages, which two ways of naming the same model must agree on.
fn essentials(v: &Value) -> Value {
    let stages: Vec<Value> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let blocks: Vec<Value> = s["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    serde_json::json!([b["width_in"], b["stride"], b["se_width"], b["projection"]])
                })
                .collect();
            serde_json::json!([
                s["depth"],
                s["width_out"],
                s["width_bottleneck"],
                s["group_width"],
                s["groups"],
                s["stride"],
                blocks
            ])
        })
        .collect();
    serde_json::json!([v["num_params"], v["macs"], v["activations"], stages])
}

#[test]
fn zoo_model_json_matches_torchvision() {
    let v = plan_json(&["--model", "regnet_y_400mf"]);
    assert_eq!(u64_of(&v, "num_params"), 4_344_144);
    assert_eq!(u64_of(&v, "macs"), 401_842_848);
    assert_eq!(u64_of(&v, "activations"), 3_892_496);
    let stages = v["stages"].as_array().expect("`stages` is an array");
    assert_eq!(stages.len(), 4);
    let widths: Vec<u64> = stages.iter().map(|s| u64_of(s, "width_out")).collect();
    assert_eq!(widths, [48, 104, 208, 440]);
    let depths: Vec<u64> = stages.iter().map(|s| u64_of(s, "depth")).collect();
    assert_eq!(depths, [1, 3, 6, 6]);
    for s in stages {
        for key in ["width_bottleneck", "group_width", "groups", "stride"] {
            u64_of(s, key);
        }
        let blocks = s["blocks"].as_array().expect("`blocks` is an array");
        assert_eq!(blocks.len() as u64, u64_of(s, "depth"));
    }
    let b0 = &stages[0]["blocks"][0];
    assert_eq!(u64_of(b0, "width_in"), 32);
    assert_eq!(u64_of(b0, "stride"), 2);
    assert_eq!(u64_of(b0, "se_width"), 8);
    assert_eq!(b0["projection"], Value::Bool(true));
    let b1 = &stages[1]["blocks"][1];
    assert_eq!(u64_of(b1, "width_in"), 104);
    assert_eq!(u64_of(b1, "stride"), 1);
    assert_eq!(b1["projection"], Value::Bool(false));

    // RegNetX has no SE: `se_width` is null, not absent.
    let x = plan_json(&["--model", "regnet_x_400mf"]);
    let bx = &x["stages"][0]["blocks"][0];
    assert!(bx.get("se_width").is_some_and(Value::is_null), "{bx}");
}

#[test]
fn spec_json_equals_the_zoo_model() {
    let by_name = plan_json(&["--model", "regnet_y_400mf"]);
    let by_spec = plan_json(&["--regnet", Y_400MF_SPEC]);
    assert_eq!(essentials(&by_spec), essentials(&by_name));
}

#[test]
fn size_changes_macs() {
    let square = plan_json(&["--regnet", TINY_SPEC]);
    let odd = plan_json(&["--regnet", TINY_SPEC, "--size", "37x29"]);
    let same = plan_json(&["--regnet", TINY_SPEC, "--size", "224"]);
    assert_eq!(square["macs"], same["macs"], "the default size is 224");
    assert_ne!(u64_of(&odd, "macs"), u64_of(&square, "macs"));
    assert!(u64_of(&odd, "macs") < u64_of(&square, "macs"));
    assert_eq!(odd["num_params"], square["num_params"]);
}

#[test]
fn table_names_stages_and_totals() {
    let o = plan(&["--model", "regnet_y_400mf"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "regnet_y_400mf",
        "224x224",
        "block1",
        "block4",
        "4,344,144",
        "401,842,848",
        "3,892,496",
        "0.40 GFLOPS",
    ] {
        assert!(out.contains(needle), "table lacks `{needle}`:\n{out}");
    }
}

#[test]
fn svg_is_written() {
    let path: PathBuf = std::env::temp_dir().join(format!("plan_cli_{}.svg", std::process::id()));
    let p = path.to_str().unwrap();
    let o = plan(&["--regnet", Y_400MF_SPEC, "--svg", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrote"), "{}", stderr(&o));
    let svg = std::fs::read_to_string(&path).expect("the SVG file");
    let _ = std::fs::remove_file(&path);
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..svg.len().min(80)]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("stage 1") && svg.contains("stage 4"));
}

#[test]
fn errors_are_clean() {
    let err = plan_error(&["--model", "resnet50"]);
    assert!(err.contains("resnet50"), "{err}");
    assert!(err.contains("regnet_y_400mf"), "known models: {err}");

    let err = plan_error(&["--regnet", "depth=16,w0=50,wa=27.89,wm=2.09,group_width=8"]);
    assert!(err.contains("w0"), "{err}");

    let err = plan_error(&["--regnet", "depth=16,w0=48,wa=27.89,wm=2.09"]);
    assert!(err.contains("group_width"), "{err}");

    for size in ["0", "abc", "10x", "0x10", "99999"] {
        plan_error(&["--model", "regnet_y_400mf", "--size", size]);
    }

    plan_error(&["--model", "regnet_y_400mf", "--regnet", Y_400MF_SPEC]);
    plan_error(&[]);
}
