//! The `design_space` example as a command: small sweeps on the CPU backend and on the GPU
//! (lavapipe in CI): the JSON lines and summary, the paper's ranges, the MACs window, the
//! counts against `plan`'s, the SVGs, bad input, and Ctrl-C. Built once by
//! `cargo build --release --example design_space`, then run directly.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use regnet_wgpu::config::{AnyNetParams, Architecture, RegNetParams};
use regnet_wgpu::design_space::{GROUP_WIDTHS, REGNET_STAGES};
use regnet_wgpu::Plan;
use serde_json::Value;

fn exe() -> PathBuf {
    common::example_exe("design_space")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(exe())
        .args(args)
        .output()
        .expect("cannot run design_space")
}

/// A small, fast sweep: 64x64 inputs (the 400MF regime at 224 is about 8M MACs there).
const SMALL: [&str; 8] = [
    "--size", "64", "--macs", "20M:40M", "--runs", "1", "--warmup", "0",
];

/// The JSON lines of a sweep: the models, then the summary.
fn sweep(extra: &[&str]) -> (Vec<Value>, Value, String) {
    let mut args = SMALL.to_vec();
    args.extend(extra);
    args.push("--json");
    let o = run(&args);
    let err = text(&o.stderr);
    assert!(o.status.success(), "design_space {args:?}: {err}");
    let mut lines: Vec<Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line")["summary"].clone();
    assert!(summary.is_object(), "the last line is {{\"summary\": ...}}");
    (lines, summary, err)
}

fn u64_of(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// A model line: its keys, its space's ranges, the window, the plan's counts.
fn check_line(v: &Value, size: usize) {
    for k in [
        "space",
        "spec",
        "params",
        "macs",
        "activations",
        "median_ms",
    ] {
        assert!(!v[k].is_null(), "{k} missing in {v}");
    }
    assert!(v["median_ms"].as_f64().unwrap() > 0.0, "{v}");
    let spec = v["spec"].as_str().unwrap();
    let arch = match v["space"].as_str().unwrap() {
        "regnet" => {
            let p: RegNetParams = spec.parse().unwrap();
            assert!(
                (1..=64).contains(&p.depth) && p.w0 <= 256 && p.w0.is_multiple_of(8),
                "{spec}"
            );
            assert!(
                p.wa > 0.0 && p.wa <= 256.0 && (1.5..=3.0).contains(&p.wm),
                "{spec}"
            );
            assert!(
                GROUP_WIDTHS.contains(&p.group_width) && p.bottleneck == 1.0,
                "{spec}"
            );
            assert_eq!(p.stages().unwrap().len(), REGNET_STAGES, "{spec}");
            Architecture::RegNet(p)
        }
        "anynet" => {
            let p: AnyNetParams = spec.parse().unwrap();
            assert_eq!(p.depths.len(), 4, "{spec}");
            assert!(p.depths.iter().all(|d| (1..=16).contains(d)), "{spec}");
            assert!(
                p.widths.iter().all(|w| w.is_multiple_of(8) && *w <= 1024),
                "{spec}"
            );
            assert!(
                p.group_widths.iter().all(|g| GROUP_WIDTHS.contains(g)),
                "{spec}"
            );
            assert!(
                p.bottlenecks.iter().all(|b| [1.0, 0.5, 0.25].contains(b)),
                "{spec}"
            );
            Architecture::AnyNet(p)
        }
        other => panic!("space {other}"),
    };
    let plan = Plan::new(&arch, size, size).unwrap();
    assert_eq!(u64_of(v, "params"), plan.num_params(), "{spec}");
    assert_eq!(u64_of(v, "macs"), plan.macs(), "{spec}");
    assert_eq!(u64_of(v, "activations"), plan.activations(), "{spec}");
    assert_eq!(u64_of(v, "ops"), plan.ops.len() as u64, "{spec}");
    assert!(
        (20_000_000..=40_000_000).contains(&plan.macs()),
        "{spec} outside the window"
    );
}

fn check_summary(s: &Value, lines: &[Value]) {
    for k in ["pearson", "spearman"] {
        for what in ["macs", "params", "activations", "ops"] {
            let r = &s[k][what];
            assert!(
                r.is_null() || r.as_f64().unwrap().abs() <= 1.0,
                "{k}.{what} = {r}"
            );
        }
    }
    let specs: Vec<&str> = lines.iter().map(|l| l["spec"].as_str().unwrap()).collect();
    let front = s["pareto"].as_array().expect("pareto");
    assert!(!front.is_empty());
    assert!(
        front.iter().all(|p| specs.contains(&p.as_str().unwrap())),
        "{front:?}"
    );
    assert_eq!(s["samples"].as_u64(), Some(lines.len() as u64));
    assert_eq!(s["interrupted"], false);
}

fn check_svg(path: &Path, must_have: &[&str]) {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&svg)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    for s in must_have {
        assert!(svg.contains(s), "{} lacks `{s}`", path.display());
    }
}

#[test]
fn cpu_sweep_reports_json_svgs_and_the_plans_counts() {
    let dir = std::env::temp_dir().join(format!("design_space_cpu_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let (lines, s, _) = sweep(&[
        "--backend",
        "cpu",
        "--samples",
        "4",
        "--seed",
        "7",
        "--svg",
        d,
        "--budget-ms",
        "1000",
    ]);
    assert_eq!(lines.len(), 4);
    for l in &lines {
        assert_eq!(l["space"], "regnet");
        check_line(l, 64);
    }
    check_summary(&s, &lines);
    assert_eq!(s["backend"], "cpu");
    assert_eq!(s["timing"], "wall");
    // Every model runs under a second at 64x64: the pick is the one with the most MACs.
    let most = lines.iter().map(|l| u64_of(l, "macs")).max().unwrap();
    assert_eq!(u64_of(&s["best_under_budget"], "macs"), most);
    // The zoo models near the window are timed and marked, outside the statistics.
    let zoo = s["zoo"].as_array().unwrap();
    assert!(
        zoo.iter().any(|z| z["model"] == "regnet_y_400mf"),
        "{zoo:?}"
    );
    check_svg(&dir.join("latency_edf.svg"), &["regnet", "EDF"]);
    check_svg(
        &dir.join("latency_vs_macs.svg"),
        &["Pareto", "regnet_y_400mf"],
    );
    check_svg(&dir.join("latency_vs_activations.svg"), &["activations"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_spec_counts_as_plan_counts_it() {
    let (lines, _, _) = sweep(&["--backend", "cpu", "--samples", "1", "--no-zoo"]);
    let spec = lines[0]["spec"].as_str().unwrap();
    let o = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--release", "--quiet", "--example", "plan", "--"])
        .args(["--regnet", spec, "--size", "64", "--json"])
        .output()
        .expect("cannot run plan");
    assert!(o.status.success(), "plan: {}", text(&o.stderr));
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(u64_of(&p, "num_params"), u64_of(&lines[0], "params"));
    assert_eq!(u64_of(&p, "macs"), u64_of(&lines[0], "macs"));
    assert_eq!(u64_of(&p, "activations"), u64_of(&lines[0], "activations"));
}

#[test]
fn the_seed_decides_the_models() {
    let specs = |seed: &str| -> Vec<String> {
        let (lines, _, _) = sweep(&[
            "--backend",
            "cpu",
            "--samples",
            "3",
            "--no-zoo",
            "--space",
            "anynet",
            "--seed",
            seed,
        ]);
        lines
            .iter()
            .map(|l| l["spec"].as_str().unwrap().to_string())
            .collect()
    };
    let a = specs("3");
    assert_eq!(a, specs("3"));
    assert_ne!(a, specs("4"));
}

#[test]
fn gpu_sweep_compares_two_spaces() {
    let mut args = SMALL.to_vec();
    args.extend([
        "--backend",
        "gpu",
        "--space",
        "regnet,anynet",
        "--samples",
        "2",
        "--no-zoo",
        "--json",
    ]);
    let o = run(&args);
    let err = text(&o.stderr);
    if !o.status.success() && err.contains("no GPU adapter") {
        common::skip("design_space on the GPU: no adapter");
        return;
    }
    assert!(o.status.success(), "{err}");
    let mut lines: Vec<Value> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let s = lines.pop().unwrap()["summary"].clone();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines.iter().filter(|l| l["space"] == "anynet").count(), 2);
    for l in &lines {
        check_line(l, 64);
    }
    check_summary(&s, &lines);
    assert_eq!(s["backend"], "gpu");
    assert_eq!(s["by_space"]["regnet"]["samples"], 2);
    assert_eq!(s["by_space"]["anynet"]["samples"], 2);
}

#[test]
fn bad_input_is_named() {
    for (args, needle) in [
        (vec!["--macs", "400M:360M"], "MIN is above MAX"),
        (vec!["--macs", "lots"], "MIN:MAX"),
        (vec!["--space", "resnet"], "unknown design space `resnet`"),
        (vec!["--samples", "0"], "--samples"),
        (vec!["--budget-ms", "0"], "--budget-ms"),
        (vec!["--macs", "1:2", "--size", "32"], "widen the window"),
    ] {
        let mut all = vec!["--backend", "cpu"];
        all.extend(&args);
        let o = run(&all);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{all:?}: {err}");
        assert!(err.contains(needle), "{all:?}: {err}");
        assert!(!err.contains("panicked"), "{all:?}: {err}");
        assert!(o.stdout.is_empty(), "{all:?} wrote to stdout");
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_what_was_measured() {
    use std::io::{BufRead, BufReader};
    let mut args = SMALL.to_vec();
    args.extend(["--backend", "cpu", "--samples", "500", "--no-zoo", "--json"]);
    let mut child = Command::new(exe())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot run design_space");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("\"spec\""), "{first}");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("cannot run kill");
    assert!(kill.success());
    let rest: Vec<String> = out.lines().map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status after Ctrl-C");
    let summary: Value = serde_json::from_str(rest.last().expect("a summary")).unwrap();
    let s = &summary["summary"];
    assert_eq!(s["interrupted"], true);
    let measured = s["samples"].as_u64().unwrap();
    assert!((1..500).contains(&measured), "{measured} measured");
    assert_eq!(measured as usize, rest.len()); // the first line, the rest, less the summary
}
