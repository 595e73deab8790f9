//! The `bench` example's roofline (issue #13): the adapter's FMA peak and storage bandwidth
//! under the JSON keys `peak_gflops` and `peak_gb_s`, each GPU row's fraction of the peak, and
//! the roofline chart; `--zoo` (every named model, a table, time against MACs and activations);
//! `--tuning` (the autotuner's rows).

mod common;

use serde_json::Value;

/// `bench` with `args`: its JSON lines (it must succeed) and its stderr.
fn bench_json(args: &[&str]) -> (Vec<Value>, String) {
    let o = std::process::Command::new(common::example_exe("bench"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    let rows = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (rows, stderr)
}

/// One timed run of the smallest RegNet at 32x32 on the GPU, as JSON: the other tests' start.
const SMALL_GPU_RUN: [&str; 11] = [
    "--model",
    "regnet_x_200mf",
    "--size",
    "32",
    "--backend",
    "gpu",
    "--iters",
    "1",
    "--warmup",
    "0",
    "--json",
];

/// A temporary path as an argument.
fn arg(p: &std::path::Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn the_roofline_is_measured_printed_and_drawn() {
    let dir = std::env::temp_dir().join(format!("regnet-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("roofline.svg");
    let args = [&SMALL_GPU_RUN[..], &["--roofline", "--svg", arg(&svg)]].concat();
    let (lines, _) = bench_json(&args);
    let roof = lines
        .iter()
        .find(|l| l["backend"] == "gpu-roofline")
        .expect("a roofline line");
    let (peak, bw) = (
        roof["peak_gflops"].as_f64().unwrap(),
        roof["peak_gb_s"].as_f64().unwrap(),
    );
    assert!(peak > 0.1 && bw > 0.01, "{roof}");
    let gpu = lines
        .iter()
        .find(|l| l["backend"] == "gpu")
        .expect("a gpu row");
    assert_eq!(gpu["peak_gflops"].as_f64(), Some(peak));
    let f = gpu["fraction_of_peak"].as_f64().unwrap();
    assert!(f > 0.0 && f < 1.5, "{gpu}");
    // With --roofline, --svg draws the roofline: the two roofs and the dispatches.
    let text = std::fs::read_to_string(&svg).unwrap();
    roxmltree::Document::parse(&text).unwrap();
    assert!(
        text.contains("roofline") && text.contains("arithmetic intensity"),
        "{}",
        &text[..200]
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `bench --zoo`: every named model under the MACs bound, a row each per backend and batch, the
/// table and the two log-log charts.
#[test]
fn the_zoo_is_measured_tabled_and_drawn() {
    let dir = std::env::temp_dir().join(format!("regnet-bench-zoo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (md, svg) = (dir.join("zoo.md"), dir.join("zoo.svg"));
    let args = [
        "--zoo",
        "--zoo-max-gmacs",
        "0.15",
        "--size",
        "64",
        "--batch",
        "1",
        "--backend",
        "cpu",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--json",
        "--markdown",
        arg(&md),
        "--svg",
        arg(&svg),
    ];
    let (rows, _) = bench_json(&args);
    // The bound counts multiply-adds at --size: at 64x64 the small models pass (ShuffleNetV2
    // x0.5 at 0.003 GMACs), ResNet-50 (0.33 GMACs there) does not.
    let models: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert!(models.contains(&"shufflenet_v2_x0_5"), "{models:?}");
    assert!(!models.contains(&"resnet50"), "{models:?}");
    let table = std::fs::read_to_string(&md).unwrap();
    assert!(table.contains("| shufflenet_v2_x0_5 |") && table.contains("cpu batch 1 (ms)"));
    assert!(table.contains("r(log time, log activations)"), "{table}");
    for f in [svg.clone(), dir.join("zoo-activations.svg")] {
        let text = std::fs::read_to_string(&f).unwrap();
        roxmltree::Document::parse(&text).unwrap();
        assert!(text.contains("cpu batch 1"), "{}", f.display());
    }
    // The same table from the run's rows, read back in two parts, measuring nothing.
    let (a, b) = rows.split_at(rows.len() / 2);
    let part = |name: &str, rows: &[Value]| {
        let path = dir.join(name);
        let lines: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        path
    };
    let (pa, pb, md2) = (part("a.jsonl", a), part("b.jsonl", b), dir.join("again.md"));
    let args = [
        "--zoo",
        "--zoo-from",
        arg(&pa),
        arg(&pb),
        "--markdown",
        arg(&md2),
    ];
    let (again, _) = bench_json(&args);
    assert!(again.is_empty(), "nothing measured");
    assert_eq!(std::fs::read_to_string(&md2).unwrap(), table);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--tuning rules,tune`: a row per tuning, labelled, the tuned one with its classes, the table
/// saved.
#[test]
fn tuning_modes_are_rows_of_their_own() {
    let dir = std::env::temp_dir().join(format!("regnet-bench-tune-{}", std::process::id()));
    let tuning = ["--tuning", "rules,tune", "--tuning-cache", arg(&dir)];
    let args = [&SMALL_GPU_RUN[..], &tuning].concat();
    let (rows, stderr) = bench_json(&args);
    let tunings: Vec<&str> = rows.iter().map(|r| r["tuning"].as_str().unwrap()).collect();
    assert_eq!(tunings, ["rules", "tune"]);
    assert_eq!(rows[0]["backend"], "gpu/rules");
    assert!(
        rows[1]["tuned_classes"].as_u64().unwrap() > 0,
        "{}",
        rows[1]
    );
    assert!(stderr.contains("classes tuned"), "{stderr}");
    // The table was saved: one file in the folder.
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bench --profile --backend cpu`: the CPU's per-op table (`CpuBackend::profile`), an op a
/// row, and its bars with `--svg`.
#[test]
fn the_cpu_profile_is_printed_and_drawn() {
    let dir = std::env::temp_dir().join(format!("regnet-bench-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("cpu.svg");
    let o = std::process::Command::new(common::example_exe("bench"))
        .args([
            "--model",
            "regnet_x_200mf",
            "--size",
            "32",
            "--backend",
            "cpu",
        ])
        .args(["--batch", "2", "--iters", "1", "--warmup", "0", "--profile"])
        .args(["--svg", arg(&svg)])
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    let table = out
        .split("per-layer CPU profile, batch 2")
        .nth(1)
        .unwrap_or_else(|| panic!("no CPU profile in:\n{out}"));
    // The stem, a block's convolutions and the classifier each have a row.
    for op in ["stem", "block1", "fc"] {
        assert!(
            table.lines().any(|l| l.contains(op)),
            "{op} missing:\n{table}"
        );
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    roxmltree::Document::parse(&text).unwrap();
    assert!(text.contains("per-op CPU time"), "{}", &text[..200]);
    std::fs::remove_dir_all(&dir).ok();
}
