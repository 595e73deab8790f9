//! The `bench` example's roofline (issue #13): the adapter's FMA peak and storage bandwidth
//! under the JSON keys `peak_gflops` and `peak_gb_s`, each GPU row's fraction of the peak, and
//! the roofline chart.

mod common;

use serde_json::Value;

#[test]
fn the_roofline_is_measured_printed_and_drawn() {
    let dir = std::env::temp_dir().join(format!("regnet-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("roofline.svg");
    let o = std::process::Command::new(common::example_exe("bench"))
        .args([
            "--model",
            "regnet_x_200mf",
            "--size",
            "32",
            "--backend",
            "gpu",
        ])
        .args([
            "--iters",
            "1",
            "--warmup",
            "0",
            "--roofline",
            "--json",
            "--svg",
        ])
        .arg(&svg)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
