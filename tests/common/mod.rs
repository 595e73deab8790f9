//! Shared by the integration tests: torchvision fixtures and their configurations.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regnet_wgpu::config::{AnyNetParams, Architecture};
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions};
use regnet_wgpu::tensor::read_safetensors;
use regnet_wgpu::{zoo, Plan, RegNetParams, Tensor, Weights};
use serde_json::Value;

/// float32 paths must land this close (‖out−ref‖/‖ref‖) to torchvision's float64 outputs.
pub const F32_REL_TOL: f64 = 1e-4;

/// The tiny fixtures copied into tests/fixtures.
pub const TINY: &[&str] = &[
    "tiny_x",
    "tiny_y",
    "tiny_bottleneck_half",
    "tiny_depthwise",
    "tiny_odd_input",
    "tiny_clipped_groups",
    "tiny_six_stages",
];

/// The zoo fixtures, found where `REGNET_FIXTURES` points.
pub const ZOO: &[&str] = &["regnet_y_400mf", "regnet_x_400mf"];

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Where skipped checks are recorded; `scripts/test` prints this file after the run.
/// The executable of example `name`, built once per test binary by `cargo build --release
/// --example NAME` (running each command through `cargo run` would cost a quarter second of
/// cargo apiece).
pub fn example_exe(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Option<HashMap<String, PathBuf>>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(name) {
        return p.clone();
    }
    let o = std::process::Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--release", "--quiet", "--example", name])
        .arg("--message-format=json")
        .output()
        .expect("cannot run cargo");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        o.status.success(),
        "cannot build {name}: {}",
        text(&o.stderr)
    );
    let exe = text(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo named no {name} executable"));
    map.insert(name.to_string(), exe.clone());
    exe
}

pub fn skip_log() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped.txt")
}

/// A deterministic input batch in [-1, 1).
pub fn test_input(n: usize, h: usize, w: usize) -> Tensor {
    let data = (0..n * 3 * h * w)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::new(vec![n, 3, h, w], data).unwrap()
}

/// The CPU backend's logits (itself checked against torchvision in tests/cpu.rs).
pub fn cpu_logits(plan: &Plan, weights: &Weights, x: &Tensor) -> Tensor {
    CpuBackend::new(plan.clone(), weights.clone())
        .unwrap()
        .run(x)
        .unwrap()
}

/// Appends a line to [`skip_log`].
fn log_skip(line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_log())
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Records a check that cannot run here (a missing fixture folder, an adapter without a
/// feature): printed at once, and appended to [`skip_log`] so that `scripts/test` shows one
/// summary of every skip (cargo hides a passing test's output). Under `CI=true` a skip is a
/// failure: CI must run everything.
pub fn skip(what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and this check cannot run: {what}");
    }
    println!("SKIPPED: {what}");
    eprintln!("SKIPPED: {what}");
    log_skip(what);
}

/// Records a check that this device cannot run and CI's may not either (a device without
/// 8-lane subgroups): listed like [`skip`], never a failure.
pub fn skip_optional(what: &str) {
    println!("SKIPPED (optional): {what}");
    log_skip(&format!("(optional) {what}"));
}

/// The folder named by `REGNET_FIXTURES`, if set; a set variable naming a missing folder panics.
/// Unset, the caller's check is recorded as skipped ([`skip`]; a failure under `CI=true`).
pub fn external_fixtures_for(what: &str) -> Option<PathBuf> {
    let found = external_fixtures();
    if found.is_none() {
        skip(&format!("REGNET_FIXTURES is not set: {what}"));
    }
    found
}

/// The folder named by `REGNET_FIXTURES`, if set; a set variable naming a missing folder panics.
pub fn external_fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("REGNET_FIXTURES")?;
    let dir = PathBuf::from(dir);
    assert!(
        dir.is_dir(),
        "REGNET_FIXTURES={} is not a folder",
        dir.display()
    );
    Some(dir)
}

/// A fixture: its parameters, weights file and torchvision's input and outputs.
pub struct Fixture {
    pub name: String,
    pub params: RegNetParams,
    pub weights: PathBuf,
    pub io: HashMap<String, Tensor>,
}

impl Fixture {
    pub fn load(dir: &Path, name: &str) -> Fixture {
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures_dir().join("manifest.json")).unwrap(),
        )
        .unwrap();
        let cfg = &manifest[name]["config"];
        let params = if cfg["kind"] == "builder" {
            zoo::get(name).unwrap()
        } else {
            let mut p = RegNetParams::new(
                cfg["depth"].as_u64().unwrap() as usize,
                cfg["w_0"].as_u64().unwrap() as usize,
                cfg["w_a"].as_f64().unwrap(),
                cfg["w_m"].as_f64().unwrap(),
                cfg["group_width"].as_u64().unwrap() as usize,
            );
            p.bottleneck = cfg["bottleneck_multiplier"].as_f64().unwrap();
            p.se_ratio = cfg["se_ratio"].as_f64();
            p.stem_width = cfg["stem_width"].as_u64().unwrap() as usize;
            p.num_classes = cfg["num_classes"].as_u64().unwrap() as usize;
            p
        };
        let weights = dir.join(format!("{name}.safetensors"));
        let io_path = dir.join(format!("{name}.io.safetensors"));
        assert!(weights.is_file(), "missing fixture {}", weights.display());
        assert!(io_path.is_file(), "missing fixture {}", io_path.display());
        let io = read_safetensors(&io_path).unwrap();
        Fixture {
            name: name.to_string(),
            params,
            weights,
            io,
        }
    }

    pub fn input(&self) -> &Tensor {
        &self.io["input"]
    }

    pub fn plan(&self) -> Plan {
        let s = &self.input().shape;
        Plan::new(&self.params, s[2], s[3]).unwrap()
    }

    pub fn load_weights(&self, plan: &Plan) -> Weights {
        Weights::load(&self.weights, plan).unwrap()
    }

    /// Names of the stage outputs held by the fixture (`stem`, `block1`, ...).
    pub fn taps(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .io
            .keys()
            .filter(|k| *k == "stem" || k.starts_with("block"))
            .cloned()
            .collect();
        t.sort();
        t
    }
}

/// Asserts `rel_err(out, reference) <= tol` (the whole tensor's norm), and that no element is
/// off by more than `tol` times the reference's largest magnitude (which one bad pixel cannot
/// hide in), naming what is compared.
pub fn assert_close(what: &str, out: &Tensor, reference: &Tensor, tol: f64) -> f64 {
    assert_eq!(out.shape, reference.shape, "{what}: shape");
    let e = out.rel_err(reference);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
    let (worst, at) = max_abs_err(out, reference);
    let scale = reference
        .data
        .iter()
        .fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    assert!(
        worst <= tol * scale,
        "{what}: element {at} is off by {worst:.3e}, over {tol:.0e} x the largest magnitude {scale:.3e}"
    );
    e
}

/// The largest elementwise absolute difference and where it is.
pub fn max_abs_err(out: &Tensor, reference: &Tensor) -> (f64, usize) {
    out.data
        .iter()
        .zip(&reference.data)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .enumerate()
        .fold(
            (0.0, 0),
            |(m, at), (i, d)| if d > m { (d, i) } else { (m, at) },
        )
}

/// Asserts both logits tensors pick the same class for every image.
pub fn assert_same_top1(what: &str, out: &Tensor, reference: &Tensor) {
    for n in 0..out.shape[0] {
        assert_eq!(
            out.top_k(n, 1)[0].0,
            reference.top_k(n, 1)[0].0,
            "{what}: top-1 of image {n}"
        );
    }
}

/// A fixture of `../shared/fixtures/families` (other families than RegNet): its model, weights
/// file, the reference's input and outputs, and the counts torch measured.
pub struct FamilyFixture {
    pub name: String,
    pub arch: Architecture,
    pub weights: PathBuf,
    pub io: HashMap<String, Tensor>,
    /// Tap names the fixture holds (`stem`, `layer1`, `features.4`, ...).
    pub taps: Vec<String>,
    pub params: u64,
    pub macs: u64,
}

/// The names in the families manifest, or `None` (recorded as skipped) without the folder.
pub fn family_fixtures(what: &str) -> Option<(PathBuf, Vec<String>)> {
    let dir = external_fixtures_for(what)?.join("families");
    assert!(dir.is_dir(), "missing {}", dir.display());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut names: Vec<String> = manifest
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_'))
        .cloned()
        .collect();
    names.sort();
    Some((dir, names))
}

impl FamilyFixture {
    pub fn load(dir: &Path, name: &str) -> FamilyFixture {
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        let m = &manifest[name];
        let arch = match m["config"]["kind"].as_str().unwrap() {
            "anynet" => Architecture::AnyNet(
                m["config"]["spec"]
                    .as_str()
                    .unwrap()
                    .parse::<AnyNetParams>()
                    .unwrap(),
            ),
            _ => Architecture::named(name).unwrap(),
        };
        let io = read_safetensors(dir.join(format!("{name}.io.safetensors"))).unwrap();
        let taps = m["taps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        FamilyFixture {
            name: name.to_string(),
            arch,
            weights: dir.join(format!("{name}.safetensors")),
            io,
            taps,
            params: m["params"].as_u64().unwrap(),
            macs: m["macs_per_image"].as_u64().unwrap(),
        }
    }

    pub fn input(&self) -> &Tensor {
        &self.io["input"]
    }

    pub fn plan(&self) -> Plan {
        let s = &self.input().shape;
        Plan::new(&self.arch, s[2], s[3]).unwrap()
    }

    pub fn load_weights(&self, plan: &Plan) -> Weights {
        Weights::load(&self.weights, plan).unwrap()
    }
}

/// The GPU context of a precision, made once per test binary (its adapter printed); no adapter
/// is a failure, not a skip.
pub fn gpu_ctx(precision: Precision) -> &'static GpuContext {
    static F32: OnceLock<GpuContext> = OnceLock::new();
    static F16: OnceLock<GpuContext> = OnceLock::new();
    let cell = if precision == Precision::F16 {
        &F16
    } else {
        &F32
    };
    cell.get_or_init(|| match GpuContext::new(precision) {
        Ok(c) => {
            eprintln!("adapter: {}", c.describe());
            c
        }
        Err(e) => panic!("GPU tests need an adapter: {e}"),
    })
}

/// Runs `plan` with `weights` on the GPU at `precision` on the reference's `input` and checks
/// every tap in `taps` and the logits against `io` within `tol`, and the same top-1; returns the
/// runner and the logits' relative error.
pub fn check_gpu_against(
    what: &str,
    (plan, weights): (&Plan, &Weights),
    io: &HashMap<String, Tensor>,
    taps: &[String],
    precision: Precision,
    tol: f64,
) -> (GpuRunner, f64) {
    let opts = RunnerOptions {
        batch: io["input"].shape[0],
        precision,
        taps: taps.to_vec(),
        ..Default::default()
    };
    let runner = GpuRunner::new(gpu_ctx(precision), plan, weights, opts).unwrap();
    let (logits, outs) = runner.run_with_taps(&io["input"]).unwrap();
    assert_eq!(outs.len(), taps.len());
    for (name, t) in &outs {
        assert_close(
            &format!("{what} {name} (gpu {precision:?})"),
            t,
            &io[name],
            tol,
        );
    }
    let label = format!("{what} logits (gpu {precision:?})");
    let e = assert_close(&label, &logits, &io["logits"], tol);
    assert_same_top1(&label, &logits, &io["logits"]);
    (runner, e)
}

/// Runs `plan` on `x` on the GPU (f32, default options, the batch of `x`) and on the CPU
/// backend, and asserts they agree within the f32 tolerance.
pub fn assert_gpu_equals_cpu(what: &str, plan: &Plan, weights: &Weights, x: &Tensor) {
    let cpu = cpu_logits(plan, weights, x);
    let opts = RunnerOptions {
        batch: x.shape[0],
        ..Default::default()
    };
    let gpu = GpuRunner::new(gpu_ctx(Precision::F32), plan, weights, opts)
        .unwrap()
        .run(x)
        .unwrap();
    assert_close(what, &gpu, &cpu, F32_REL_TOL);
}

/// The `.safetensors` files of `tests/fixtures/<folder>`, sorted; at least `min` of them.
pub fn fixture_files(folder: &str, min: usize) -> Vec<PathBuf> {
    let dir = fixtures_dir().join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    assert!(
        files.len() >= min,
        "{}: {} files",
        dir.display(),
        files.len()
    );
    files
}
