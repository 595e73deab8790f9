//! The `plan` example as a command: its JSON against torchvision's (and timm's) numbers for
//! every family, `--size`, `--svg`, and clean errors. It runs through `cargo run --release --example plan` (built once).

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

const Y_400MF_SPEC: &str = "depth=16,w0=48,wa=27.89,wm=2.09,group_width=8,se=0.25";
const TINY_SPEC: &str = "depth=4,w0=16,wa=12,wm=2,group_width=8,se=0.25,stem=16,classes=10";
/// `anynet_a` of the family fixtures (`../shared/fixtures/families/manifest.json`).
const ANYNET_A: &str = "depths=1:2:4:2,widths=24:64:144:320,group_widths=8:16:24:40,bottlenecks=1:1:1:1,strides=2:2:2:2,stem=24,classes=100";

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
        "0.40 GMACs",
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
    roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
}

#[test]
fn errors_are_clean() {
    let err = plan_error(&["--model", "vgg16"]);
    assert!(err.contains("vgg16"), "{err}");
    for known in ["regnet_y_400mf", "resnet50", "rexnet_100"] {
        assert!(err.contains(known), "known models: {err}");
    }

    let err = plan_error(&["--regnet", "depth=16,w0=50,wa=27.89,wm=2.09,group_width=8"]);
    assert!(err.contains("w0"), "{err}");

    let err = plan_error(&["--regnet", "depth=16,w0=48,wa=27.89,wm=2.09"]);
    assert!(err.contains("group_width"), "{err}");

    for size in ["0", "abc", "10x", "0x10", "99999"] {
        plan_error(&["--model", "regnet_y_400mf", "--size", size]);
    }

    plan_error(&["--model", "regnet_y_400mf", "--regnet", Y_400MF_SPEC]);
    plan_error(&["--model", "resnet18", "--anynet", ANYNET_A]);
    plan_error(&["--regnet", Y_400MF_SPEC, "--anynet", ANYNET_A]);
    plan_error(&[]);
}

// ---------------------------------------------------------------------------------------------
// Every family (counts: torch's own, ../shared/fixtures/families/manifest.json)
// ---------------------------------------------------------------------------------------------

/// Checks the counts, and that the stem, the stages and the head add up to them.
fn check_counts(v: &Value, num_params: u64, macs: u64) {
    assert_eq!(u64_of(v, "num_params"), num_params, "num_params");
    assert_eq!(u64_of(v, "macs"), macs, "macs");
    for key in ["num_params", "macs", "activations"] {
        let stages: u64 = v["stages"]
            .as_array()
            .expect("`stages` is an array")
            .iter()
            .map(|s| u64_of(s, key))
            .sum();
        let parts = u64_of(&v["stem"], key) + stages + u64_of(&v["head"], key);
        assert_eq!(parts, u64_of(v, key), "stem + stages + head {key}");
    }
}

/// The stages' names.
fn stage_names(v: &Value) -> Vec<String> {
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().expect("a stage `name`").to_string())
        .collect()
}

/// The `depth` of each stage, checked against its `blocks`.
fn stage_depths(v: &Value) -> Vec<u64> {
    let stages = v["stages"].as_array().unwrap();
    for s in stages {
        let blocks = s["blocks"].as_array().expect("`blocks` is an array");
        assert_eq!(blocks.len() as u64, u64_of(s, "depth"), "{}", s["name"]);
    }
    stages.iter().map(|s| u64_of(s, "depth")).collect()
}

#[test]
fn resnet18_json_matches_torch() {
    let v = plan_json(&["--model", "resnet18"]);
    check_counts(&v, 11_689_512, 1_814_073_344);
    assert_eq!(v["model"], "resnet18");
    assert_eq!(v["family"], "ResNet");
    assert!(v["spec"].is_null(), "{}", v["spec"]);
    assert_eq!(v["params"]["layers"], serde_json::json!([2, 2, 2, 2]));
    assert_eq!(stage_names(&v), ["layer1", "layer2", "layer3", "layer4"]);
    assert_eq!(stage_depths(&v), [2, 2, 2, 2]);
    assert_eq!(v["size"], serde_json::json!([224, 224]));
    // conv1 and the max pool: 224 -> 56.
    assert_eq!(v["stem"]["output_size"], serde_json::json!([56, 56]));
    assert_eq!(v["stages"][3]["output"]["channels"], 512);
}

#[test]
fn resnext50_at_160_matches_torch() {
    let v = plan_json(&["--model", "resnext50_32x4d", "--size", "160"]);
    check_counts(&v, 25_028_904, 2_159_411_200);
    let l1 = &v["stages"][0];
    assert_eq!(
        [
            l1["width_bottleneck"].clone(),
            l1["groups"].clone(),
            l1["group_width"].clone()
        ],
        [128, 32, 4]
    );
    assert_eq!(v["stages"][3]["output_size"], serde_json::json!([5, 5]));
}

#[test]
fn rexnet_100_json_matches_timm() {
    let v = plan_json(&["--model", "rexnet_100"]);
    check_counts(&v, 4_796_873, 398_370_392);
    assert_eq!(v["family"], "ReXNet");
    let names = stage_names(&v);
    assert_eq!(names.first().map(String::as_str), Some("features.0"));
    assert_eq!(names.last().map(String::as_str), Some("features.11-15"));
    assert_eq!(stage_depths(&v), [1, 2, 2, 3, 3, 5]);
    // The output channels grow linearly, block by block.
    let outs: Vec<u64> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["blocks"].as_array().unwrap().clone())
        .map(|b| u64_of(&b, "out_chs"))
        .collect();
    assert_eq!(
        outs,
        [16, 27, 38, 50, 61, 72, 84, 95, 106, 117, 128, 140, 151, 162, 174, 185]
    );
    // The head is the final 1x1 conv to 1280, the pool and the fc.
    assert!(u64_of(&v["head"], "num_params") > 1280 * 1000);
}

#[test]
fn anynet_json_matches_torch() {
    let v = plan_json(&["--anynet", ANYNET_A, "--size", "96x80"]);
    check_counts(&v, 997_116, 24_477_440);
    assert!(v["model"].is_null(), "{}", v["model"]);
    assert_eq!(v["family"], "AnyNet");
    assert_eq!(v["spec"], ANYNET_A);
    assert_eq!(v["size"], serde_json::json!([96, 80]));
    assert_eq!(stage_names(&v), ["block1", "block2", "block3", "block4"]);
    assert_eq!(stage_depths(&v), [1, 2, 4, 2]);
    let widths: Vec<u64> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| u64_of(s, "width_out"))
        .collect();
    assert_eq!(widths, [24, 64, 144, 320]);
}

#[test]
fn bad_anynet_spec_names_the_parameter() {
    // Stage 4's bottleneck width, 320, is not a multiple of 48.
    let bad = ANYNET_A.replace("group_widths=8:16:24:40", "group_widths=8:16:24:48");
    let err = plan_error(&["--anynet", &bad]);
    assert!(err.contains("group_widths"), "{err}");

    let err = plan_error(&[
        "--anynet",
        &ANYNET_A.replace("depths=1:2:4:2", "depths=1:2:4"),
    ]);
    assert!(err.contains("widths"), "{err}");
}

#[test]
fn tables_name_each_familys_stages() {
    for (model, needles) in [
        (
            "resnet50",
            &["resnet50", "layer1", "layer4", "25,557,032", "4.09 GMACs"][..],
        ),
        (
            "rexnet_100",
            &[
                "rexnet_100",
                "features.0",
                "features.1-2",
                "features.11-15",
                "4,796,873",
            ][..],
        ),
    ] {
        let o = plan(&["--model", model]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        for needle in needles {
            assert!(
                out.contains(needle),
                "{model}: table lacks `{needle}`:\n{out}"
            );
        }
    }
    let o = plan(&["--anynet", ANYNET_A]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("custom AnyNet"), "{}", stdout(&o));
}

#[test]
fn rexnet_svg_is_written() {
    let path: PathBuf =
        std::env::temp_dir().join(format!("plan_cli_rexnet_{}.svg", std::process::id()));
    let p = path.to_str().unwrap();
    let o = plan(&["--model", "rexnet_100", "--svg", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(&path).expect("the SVG file");
    let _ = std::fs::remove_file(&path);
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains("linear scale"),
        "ReXNet's widths are drawn on a linear axis"
    );
    assert!(svg.contains("features.1-2"));
    // As many opening tags as closing ones: well formed enough to parse.
    let opened = svg.matches("<text").count();
    assert_eq!(opened, svg.matches("</text>").count());
    roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
}
