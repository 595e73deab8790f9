//! The `gpu_infer` example as a user runs it: torchvision's logits reproduced through
//! `--input-tensor`/`--weights`/`--save-logits` on the CPU and on the GPU (f32 and f16),
//! its `--json` output, and clean errors. The example is built once by
//! `cargo build --release --example gpu_infer` and then run directly.
//!
//! Fixtures: the tiny ones in tests/fixtures, the holdout ones in tests/fixtures/holdout
//! (made by scripts/gen_holdout_fixtures.py), the zoo ones where `REGNET_FIXTURES` points,
//! and, when present, the zoo holdout in /tmp/zoo-holdout.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use regnet_wgpu::tensor::{read_safetensors, write_safetensors};
use regnet_wgpu::Tensor;
use serde_json::Value;

/// float16 paths must land this close (‖out−ref‖/‖ref‖) to torchvision's float64 outputs.
const F16_REL_TOL: f64 = 5e-3;

const TINY_X_SPEC: &str = "depth=6,w0=16,wa=12,wm=2,group_width=8,stem=16,classes=10";
const TINY_Y_SPEC: &str = "depth=6,w0=16,wa=12,wm=2,group_width=8,se=0.25,stem=16,classes=10";

/// The zoo holdout, generated locally by scripts/gen_holdout_fixtures.py (not committed).
const ZOO_HOLDOUT_DIR: &str = "/tmp/zoo-holdout";

/// The `gpu_infer` executable, built once.
fn gpu_infer_exe() -> PathBuf {
    common::example_exe("gpu_infer")
}

/// Runs `gpu_infer ARGS` (in the crate's folder, as `cargo run` would) and returns its output.
fn gpu_infer<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(gpu_infer_exe())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("cannot run gpu_infer")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `gpu_infer ARGS`, checks it failed cleanly (status 1 or 2, `error:`, no panic, nothing
/// on stdout) and returns stderr.
fn gpu_infer_error<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let o = gpu_infer(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "gpu_infer {args:?} should fail");
    assert!(
        matches!(o.status.code(), Some(1 | 2)),
        "gpu_infer {args:?}: exit status {:?}: {err}",
        o.status.code()
    );
    assert!(
        !err.contains("panicked"),
        "gpu_infer {args:?} panicked: {err}"
    );
    assert!(err.contains("error:"), "gpu_infer {args:?}: {err}");
    assert!(
        o.stdout.is_empty(),
        "gpu_infer {args:?} wrote to stdout: {}",
        stdout(&o)
    );
    err
}

/// A path in the temporary folder, unique to this process and call.
fn temp_path(what: &str, ext: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "gpu_infer_cli_{}_{n}_{what}.{ext}",
        std::process::id()
    ))
}

/// Removes a file when dropped (also when the test fails).
struct TempFile(PathBuf);

impl TempFile {
    fn new(what: &str, ext: &str) -> Self {
        TempFile(temp_path(what, ext))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The `--model NAME`, `--regnet SPEC` or `--anynet SPEC` arguments of a fixture, from its
/// manifest entry.
fn model_args(name: &str, entry: &Value) -> Vec<String> {
    let cfg = &entry["config"];
    match cfg["kind"].as_str() {
        Some("builder" | "torchvision" | "timm") => return vec!["--model".into(), name.into()],
        Some("anynet") => return vec!["--anynet".into(), cfg["spec"].as_str().unwrap().into()],
        _ => {}
    }
    let int = |k: &str| {
        cfg[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: config `{k}` is not an integer: {}", cfg[k]))
    };
    let float = |k: &str| {
        cfg[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: config `{k}` is not a number: {}", cfg[k]))
    };
    let mut spec = format!(
        "depth={},w0={},wa={},wm={},group_width={},bottleneck={}",
        int("depth"),
        int("w_0"),
        float("w_a"),
        float("w_m"),
        int("group_width"),
        float("bottleneck_multiplier"),
    );
    if let Some(se) = cfg["se_ratio"].as_f64() {
        spec += &format!(",se={se}");
    }
    spec += &format!(",stem={},classes={}", int("stem_width"), int("num_classes"));
    vec!["--regnet".into(), spec]
}

/// The manifest of a fixture folder.
fn manifest(dir: &Path) -> Value {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What one run is compared with.
struct Run {
    label: &'static str,
    args: &'static [&'static str],
    tol: f64,
}

const RUNS: &[Run] = &[
    Run {
        label: "cpu",
        args: &["--backend", "cpu"],
        tol: common::F32_REL_TOL,
    },
    Run {
        label: "gpu f32",
        args: &["--backend", "gpu", "--precision", "f32"],
        tol: common::F32_REL_TOL,
    },
    Run {
        label: "gpu f16",
        args: &["--backend", "gpu", "--precision", "f16"],
        tol: F16_REL_TOL,
    },
];

/// Runs fixture `name` of `dir` on every backend through `--input-tensor`, `--weights` and
/// `--save-logits`, and checks the saved logits against torchvision's (relative L2 error and
/// top-1 of every image). Returns the errors, one per backend checked.
fn check_fixture(dir: &Path, name: &str) -> Vec<(&'static str, f64)> {
    check_fixture_on(dir, name, RUNS)
}

/// [`check_fixture`] on the backends of `runs` only.
fn check_fixture_on(dir: &Path, name: &str, runs: &[Run]) -> Vec<(&'static str, f64)> {
    let entry = &manifest(dir)[name];
    assert!(
        entry.is_object(),
        "{name} is not in {}",
        dir.join("manifest.json").display()
    );
    let weights = dir.join(format!("{name}.safetensors"));
    let io_path = dir.join(format!("{name}.io.safetensors"));
    assert!(weights.is_file(), "missing fixture {}", weights.display());
    assert!(io_path.is_file(), "missing fixture {}", io_path.display());
    let io = read_safetensors(&io_path).unwrap();
    let reference = &io["logits"];
    let n = io["input"].shape[0];
    assert_eq!(reference.shape[0], n, "{name}: logits and input disagree");

    let mut errors = Vec::new();
    for run in runs {
        let out = TempFile::new(&format!("{name}_logits"), "safetensors");
        let mut args = model_args(name, entry);
        args.extend(run.args.iter().map(|s| s.to_string()));
        args.extend([
            "--weights".into(),
            weights.display().to_string(),
            "--input-tensor".into(),
            io_path.display().to_string(),
            "--save-logits".into(),
            out.0.display().to_string(),
            "--top".into(),
            "1".into(),
        ]);
        let o = gpu_infer(&args);
        if run.label == "gpu f16"
            && !o.status.success()
            && stderr(&o).contains("lacks the `shader-f16`")
        {
            // An adapter without shader-f16 must refuse f16 cleanly; its accuracy needs one.
            assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
            common::skip(&format!(
                "gpu_infer {name} f16 accuracy: the adapter lacks shader-f16"
            ));
            continue;
        }
        assert!(
            o.status.success(),
            "{name} ({}): gpu_infer {args:?} failed: {}",
            run.label,
            stderr(&o)
        );
        let saved = read_safetensors(&out.0)
            .unwrap_or_else(|e| panic!("{name} ({}): saved logits: {e}", run.label));
        let logits = saved
            .get("logits")
            .unwrap_or_else(|| panic!("{name} ({}): no `logits` tensor saved", run.label));
        let what = format!("{name} logits ({})", run.label);
        let e = common::assert_close(&what, logits, reference, run.tol);
        common::assert_same_top1(&what, logits, reference);
        // What is printed is what was saved: the top-1 of every image.
        let text = stdout(&o);
        for i in 0..n {
            let top = logits.top_k(i, 1)[0].0;
            assert!(
                text.contains(&format!("({top})")),
                "{what}: image {i} top-1 {top} not printed:\n{text}"
            );
        }
        println!("{name:<22} {:<8} rel err {e:.3e}", run.label);
        errors.push((run.label, e));
    }
    errors
}

/// One test per fixture (all backends), and `NAMES`, the fixtures tested.
macro_rules! fixture_tests {
    ($dir:expr; $($name:ident),* $(,)?) => {
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                check_fixture(&$dir, stringify!($name));
            }
        )*
    };
}

mod tiny {
    use super::*;
    fixture_tests!(common::fixtures_dir(); tiny_x, tiny_y, tiny_bottleneck_half, tiny_depthwise,
        tiny_odd_input, tiny_clipped_groups, tiny_six_stages);
}

mod holdout {
    use super::*;
    fixture_tests!(common::fixtures_dir().join("holdout"); hold_a, hold_b, hold_c, hold_d);
}

/// The fixtures of a manifest whose names start with `prefix`, sorted.
fn manifest_names(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = manifest(dir)
        .as_object()
        .expect("the manifest is a JSON object")
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Every tiny and holdout fixture in the manifests has a test above.
#[test]
fn every_fixture_is_tested() {
    let dir = common::fixtures_dir();
    assert_eq!(manifest_names(&dir, "tiny_"), sorted(tiny::NAMES));
    assert_eq!(manifest_names(&dir, "tiny_"), sorted(common::TINY));
    assert_eq!(
        manifest_names(&dir.join("holdout"), "hold_"),
        sorted(holdout::NAMES)
    );
    assert_eq!(
        manifest_names(&dir.join("holdout"), ""),
        [vec!["_about".to_string()], sorted(holdout::NAMES)].concat(),
        "the holdout folder holds only the tested fixtures"
    );
}

/// The other families' fixtures (`../shared/fixtures/families`) through `--model` /
/// `--anynet`: on the CPU (the WGSL path of the same fixtures is tests/families.rs), and the
/// small AnyNet on every backend.
#[test]
fn families_reproduce_their_references() {
    let Some(dir) = common::external_fixtures_for("gpu_infer on the family fixtures") else {
        return;
    };
    let dir = dir.join("families");
    let names = manifest_names(&dir, "");
    assert_eq!(
        names,
        [
            "_about",
            "anynet_a",
            "resnet18",
            "resnext50_32x4d",
            "rexnet_100"
        ]
    );
    for name in &names[1..] {
        let runs = if name == "anynet_a" { RUNS } else { &RUNS[..1] };
        check_fixture_on(&dir, name, runs);
    }
}

fn check_zoo(name: &str) {
    let Some(dir) = common::external_fixtures_for(&format!("gpu_infer on zoo fixture {name}"))
    else {
        return;
    };
    check_fixture(&dir, name);
}

#[test]
fn zoo_regnet_y_400mf() {
    check_zoo(common::ZOO[0]);
}

#[test]
fn zoo_regnet_x_400mf() {
    check_zoo(common::ZOO[1]);
}

/// The zoo holdout in /tmp/zoo-holdout, when someone generated it there.
#[test]
fn zoo_holdout_when_present() {
    let dir = Path::new(ZOO_HOLDOUT_DIR);
    if !dir.join("manifest.json").is_file() {
        return;
    }
    let names = manifest_names(dir, "");
    for name in names.iter().filter(|n| !n.starts_with('_')) {
        check_fixture(dir, name);
    }
}

/// Runs `gpu_infer ARGS --json`, checks it succeeded and printed JSON lines (one object per
/// input, then `{"summary": ...}`), and returns the summary with the per-input lines added as
/// `results`.
fn gpu_infer_json<S: AsRef<str>>(args: &[S]) -> Value {
    let mut all: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
    all.push("--json");
    let o = gpu_infer(&all);
    assert!(
        o.status.success(),
        "gpu_infer {all:?} failed: {}",
        stderr(&o)
    );
    let out = stdout(&o);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("gpu_infer {all:?}: a line of stdout is not JSON ({e}): {l}\n{out}")
            })
        })
        .collect();
    let (summary, results) = lines.split_last().expect("no JSON lines");
    let mut v = summary["summary"].clone();
    assert!(
        v.is_object(),
        "gpu_infer {all:?}: last line is no summary: {summary}"
    );
    assert!(results.iter().all(|r| r["source"].is_string()), "{out}");
    v["results"] = Value::Array(results.to_vec());
    v
}

/// `--weights X.pth` (a torch.save checkpoint, zip and legacy; tests/data/pth, made by
/// scripts/gen_pth_fixtures.py) reproduces torchvision's logits on the CPU backend, and the
/// source is named in the output.
#[test]
fn pth_weights_on_the_cpu() {
    let dir = common::fixtures_dir();
    let io_path = dir.join("tiny_y.io.safetensors");
    let io = read_safetensors(&io_path).unwrap();
    let reference = &io["logits"];
    for file in ["tiny_y.zip.pth", "tiny_y.legacy.pth"] {
        let weights = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/pth")
            .join(file);
        assert!(weights.is_file(), "missing {}", weights.display());
        let out = TempFile::new("pth_logits", "safetensors");
        let args = [
            "--regnet",
            TINY_Y_SPEC,
            "--weights",
            weights.to_str().unwrap(),
            "--input-tensor",
            io_path.to_str().unwrap(),
            "--save-logits",
            out.0.to_str().unwrap(),
            "--backend",
            "cpu",
        ];
        let o = gpu_infer(&args);
        assert!(
            o.status.success(),
            "gpu_infer {args:?} failed: {}",
            stderr(&o)
        );
        assert!(stdout(&o).contains(file), "{file}: {}", stdout(&o));
        let saved = read_safetensors(&out.0).unwrap();
        let what = format!("gpu_infer --weights {file} logits (cpu)");
        common::assert_close(&what, &saved["logits"], reference, common::F32_REL_TOL);
        common::assert_same_top1(&what, &saved["logits"], reference);
    }
    // A checkpoint that is not a state_dict's is refused with its reason, and no panic.
    let bad = TempFile::new("evil", "pth");
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pth_loader/seed-os_system.pth"),
    )
    .unwrap();
    std::fs::write(&bad.0, bytes).unwrap();
    let err = gpu_infer_error(&[
        "--regnet",
        TINY_Y_SPEC,
        "--weights",
        bad.0.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(err.contains("os.system"), "{err}");
}

#[test]
fn json_has_per_image_top_k() {
    let dir = common::fixtures_dir();
    let weights = dir.join("tiny_y.safetensors");
    let io_path = dir.join("tiny_y.io.safetensors");
    let io = read_safetensors(&io_path).unwrap();
    let reference = &io["logits"];
    let (n, classes) = (reference.shape[0], reference.shape[1]);
    for backend in ["cpu", "gpu"] {
        let v = gpu_infer_json(&[
            "--regnet",
            TINY_Y_SPEC,
            "--weights",
            weights.to_str().unwrap(),
            "--input-tensor",
            io_path.to_str().unwrap(),
            "--backend",
            backend,
            "--top",
            "3",
        ]);
        assert_eq!(v["precision"], "f32", "{v}");
        assert_eq!(v["random_weights"], false, "{v}");
        assert_eq!(
            v["input_shape"],
            serde_json::json!(io["input"].shape),
            "{v}"
        );
        assert!(
            v["backend"].as_str().unwrap().starts_with(backend),
            "{}",
            v["backend"]
        );
        assert!(v["model"].is_string() && v["time_ms"].is_number(), "{v}");
        let results = v["results"].as_array().expect("`results` is an array");
        assert_eq!(results.len(), n, "one result per image");
        for (i, r) in results.iter().enumerate() {
            assert!(
                r["source"]
                    .as_str()
                    .unwrap()
                    .contains("tiny_y.io.safetensors"),
                "{r}"
            );
            let top = r["top"].as_array().expect("`top` is an array");
            assert_eq!(top.len(), 3, "--top 3: {r}");
            let want = reference.top_k(i, 3);
            let mut last = f64::INFINITY;
            for (t, (k, logit)) in top.iter().zip(&want) {
                let index = t["index"].as_u64().expect("`index`") as usize;
                assert!(index < classes);
                assert_eq!(t["class"], format!("class {index}"), "{t}");
                let p = t["prob"].as_f64().expect("`prob`");
                assert!((0.0..=1.0).contains(&p) && p <= last, "{r}");
                last = p;
                // The reference's top 3 are well separated in tiny_y.
                assert_eq!(index, *k, "{backend}: image {i}: {r}");
                let l = t["logit"].as_f64().expect("`logit`");
                assert!(
                    (l - *logit as f64).abs() < 1e-3,
                    "{backend}: {t} vs {logit}"
                );
            }
        }
    }

    // Without --weights: random weights, and the JSON says so. --top is capped by the classes.
    let v = gpu_infer_json(&[
        "--regnet",
        TINY_Y_SPEC,
        "--input-tensor",
        io_path.to_str().unwrap(),
        "--backend",
        "cpu",
        "--top",
        "50",
    ]);
    assert_eq!(v["random_weights"], true, "{v}");
    let top = v["results"][0]["top"].as_array().unwrap();
    assert_eq!(top.len(), classes);
}

/// Writes `tensors` to a fresh temporary safetensors file.
fn temp_safetensors(what: &str, tensors: &[(&str, &Tensor)]) -> TempFile {
    let f = TempFile::new(what, "safetensors");
    write_safetensors(&f.0, tensors).unwrap();
    f
}

/// gpu_infer's error for `--input-tensor` of a file holding `tensors` (tiny_x, CPU backend).
fn input_tensor_error(what: &str, tensors: &[(&str, &Tensor)]) -> String {
    let f = temp_safetensors(what, tensors);
    gpu_infer_error(&[
        "--regnet",
        TINY_X_SPEC,
        "--input-tensor",
        f.0.to_str().unwrap(),
        "--backend",
        "cpu",
    ])
}

fn random_input(shape: Vec<usize>) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
        .collect();
    Tensor::new(shape, data).unwrap()
}

#[test]
fn errors_are_clean() {
    let dir = common::fixtures_dir();
    let tiny_x_w = dir.join("tiny_x.safetensors");
    let tiny_x_io = dir.join("tiny_x.io.safetensors");
    let (w, io) = (tiny_x_w.to_str().unwrap(), tiny_x_io.to_str().unwrap());

    // A missing weights file: the message names the path.
    let missing = temp_path("missing_weights", "safetensors");
    let m = missing.to_str().unwrap();
    let err = gpu_infer_error(&[
        "--regnet",
        TINY_X_SPEC,
        "--weights",
        m,
        "--input-tensor",
        io,
        "--backend",
        "cpu",
    ]);
    assert!(err.contains(m), "{err}");

    // Weights of another model: tiny_x (no SE) for tiny_y's spec names the missing tensor.
    let err = gpu_infer_error(&[
        "--regnet",
        TINY_Y_SPEC,
        "--weights",
        w,
        "--input-tensor",
        io,
        "--backend",
        "cpu",
    ]);
    assert!(
        err.contains("trunk_output.") && err.contains(".se."),
        "{err}"
    );

    // An unknown model lists the known ones, of every family.
    let err = gpu_infer_error(&["--model", "vgg16", "--backend", "cpu"]);
    assert!(err.contains("vgg16"), "{err}");
    assert!(
        err.contains("regnet_y_400mf") && err.contains("resnet50") && err.contains("rexnet_100"),
        "known models: {err}"
    );
    // An AnyNet whose bottleneck width is not a multiple of its group width names the list.
    let err = gpu_infer_error(&[
        "--anynet",
        "depths=1,widths=24,group_widths=7,bottlenecks=1,strides=2",
        "--backend",
        "cpu",
    ]);
    assert!(err.contains("group_widths") && err.contains("24"), "{err}");

    // Malformed specs name the key.
    let err = gpu_infer_error(&["--regnet", &format!("{TINY_X_SPEC},colour=red")]);
    assert!(err.contains("colour"), "{err}");
    let err = gpu_infer_error(&["--regnet", "depth=6,w0=16,wa=12,wm=2"]);
    assert!(err.contains("group_width"), "{err}");
    let err = gpu_infer_error(&["--regnet", "depth=six,w0=16,wa=12,wm=2,group_width=8"]);
    assert!(err.contains("depth"), "{err}");
    let err = gpu_infer_error(&["--regnet", "depth=6,w0=16,wa=12,wm,group_width=8"]);
    assert!(err.contains("wm"), "{err}");

    // An invalid parameter: w0 must be a multiple of 8.
    let err = gpu_infer_error(&["--regnet", "depth=16,w0=50,wa=27.89,wm=2.09,group_width=8"]);
    assert!(err.contains("w0"), "{err}");

    // An input file without `input`; one with 4 channels; one holding NaN.
    let x = random_input(vec![1, 3, 16, 16]);
    let err = input_tensor_error("no_input", &[("pixels", &x)]);
    assert!(err.contains("input") && err.contains("pixels"), "{err}");
    let x4 = random_input(vec![1, 4, 16, 16]);
    let err = input_tensor_error("four_channels", &[("input", &x4)]);
    assert!(err.contains("channels") && err.contains('4'), "{err}");
    let mut xn = random_input(vec![2, 3, 16, 16]);
    xn.data[1000] = f32::NAN;
    let err = input_tensor_error("nan", &[("input", &xn)]);
    assert!(
        err.contains("NaN") || err.contains("non-finite"),
        "NaN input: {err}"
    );

    // --image of a missing file, and of a file that is not an image.
    let missing_img = temp_path("missing_image", "png");
    let mi = missing_img.to_str().unwrap();
    let err = gpu_infer_error(&["--regnet", TINY_X_SPEC, "--image", mi, "--backend", "cpu"]);
    assert!(err.contains(mi), "{err}");
    let not_image = TempFile::new("not_an_image", "png");
    std::fs::write(&not_image.0, "this is text, not a PNG\n").unwrap();
    let ni = not_image.0.to_str().unwrap();
    let err = gpu_infer_error(&["--regnet", TINY_X_SPEC, "--image", ni, "--backend", "cpu"]);
    assert!(err.contains(ni), "{err}");

    // f16 on the CPU is refused, not silently run in f32.
    let err = gpu_infer_error(&[
        "--regnet",
        TINY_X_SPEC,
        "--weights",
        w,
        "--input-tensor",
        io,
        "--backend",
        "cpu",
        "--precision",
        "f16",
    ]);
    assert!(err.contains("f16"), "{err}");

    // Flags that cannot go together, and bad values, are clap's errors.
    gpu_infer_error(&["--model", "regnet_y_400mf", "--regnet", TINY_X_SPEC]);
    gpu_infer_error(&["--regnet", TINY_X_SPEC, "--backend", "tpu"]);
    gpu_infer_error(&["--regnet", TINY_X_SPEC, "--precision", "f64"]);
    gpu_infer_error(&["--regnet", TINY_X_SPEC, "--image", mi, "--input-tensor", io]);
}

/// A folder of photos: every JPEG/PNG in it (recursively, sorted) is classified in batches,
/// exactly as torchvision's preprocessed tensors of the same photos are; a file that cannot
/// be decoded is reported and skipped; JSON lines, CSV and the GPU with a padded last batch.
#[test]
fn folder_of_photos() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = temp_path("photos", "d");
    std::fs::create_dir_all(dir.join("a")).unwrap();
    let photo = root.join("assets/chelsea.png");
    std::fs::copy(&photo, dir.join("a/chelsea.png")).unwrap();
    std::fs::copy(&photo, dir.join("b.png")).unwrap();
    std::fs::write(dir.join("broken.jpg"), b"not a jpeg").unwrap();
    std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();
    let weights = common::fixtures_dir().join("tiny_y.safetensors");
    let w = weights.to_str().unwrap();
    let d = dir.to_str().unwrap();

    // The reference: torchvision's own transform of the photo, twice, through --input-tensor.
    let tv = read_safetensors(common::fixtures_dir().join("preprocess_torchvision.safetensors"))
        .unwrap();
    let chelsea = &tv["chelsea"];
    let both = Tensor::new(
        vec![2, 3, 224, 224],
        [&chelsea.data[..], &chelsea.data[..]].concat(),
    )
    .unwrap();
    let input = temp_safetensors("photos_ref", &[("input", &both)]);
    let ref_logits = TempFile::new("photos_ref_logits", "safetensors");
    let _ = gpu_infer_json(&[
        "--regnet",
        TINY_Y_SPEC,
        "--weights",
        w,
        "--backend",
        "cpu",
        "--input-tensor",
        input.0.to_str().unwrap(),
        "--save-logits",
        ref_logits.0.to_str().unwrap(),
    ]);
    let reference = &read_safetensors(&ref_logits.0).unwrap()["logits"];

    for (backend, batch) in [("cpu", "2"), ("gpu", "4")] {
        let logits = TempFile::new("photos_logits", "safetensors");
        let v = gpu_infer_json(&[
            "--regnet",
            TINY_Y_SPEC,
            "--weights",
            w,
            "--backend",
            backend,
            "--image",
            d,
            "--batch",
            batch,
            "--top",
            "3",
            "--save-logits",
            logits.0.to_str().unwrap(),
        ]);
        let results = v["results"].as_array().unwrap();
        let sources: Vec<&str> = results
            .iter()
            .map(|r| r["source"].as_str().unwrap())
            .collect();
        let want: Vec<String> = ["a/chelsea.png", "b.png", "broken.jpg"]
            .iter()
            .map(|f| dir.join(f).display().to_string())
            .collect();
        assert_eq!(
            sources, want,
            "{backend}: one line per input, in path order"
        );
        assert_eq!(
            results[0]["top"], results[1]["top"],
            "{backend}: same photo, same result"
        );
        assert!(
            results[2]["error"].as_str().unwrap().contains("broken.jpg"),
            "{}",
            results[2]
        );
        assert_eq!(
            (v["images"].as_u64(), v["skipped"].as_u64()),
            (Some(2), Some(1)),
            "{v}"
        );
        let out = &read_safetensors(&logits.0).unwrap()["logits"];
        assert_eq!(out.shape, vec![2, 10], "{backend}: logits of the 2 photos");
        common::assert_close(
            &format!("{backend} folder vs torchvision's transform"),
            out,
            reference,
            1e-4,
        );
    }

    // CSV: a header, then one row per input; the summary goes to stderr.
    let o = gpu_infer(&[
        "--regnet",
        TINY_Y_SPEC,
        "--weights",
        w,
        "--backend",
        "cpu",
        "--image",
        d,
        "--csv",
        "--top",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rows = csv::Reader::from_reader(o.stdout.as_slice());
    let header: Vec<String> = rows.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        ["source", "index_1", "class_1", "prob_1", "index_2", "class_2", "prob_2", "error"]
    );
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].get(1), rows[1].get(1));
    assert!(rows[2].get(7).unwrap().contains("broken.jpg") && rows[0].get(7) == Some(""));
    assert!(
        stderr(&o).contains("2 images classified, 1 skipped"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("warning: skipped"), "{}", stderr(&o));

    // Nothing to classify: an error, not an empty success.
    let empty = temp_path("no_photos", "d");
    std::fs::create_dir_all(&empty).unwrap();
    let err = gpu_infer_error(&["--backend", "cpu", "--image", empty.to_str().unwrap()]);
    assert!(err.contains("no JPEG or PNG"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}

/// Usage errors exit 2 with clap's message, errors exit 1; --top is checked and capped aloud.
#[test]
fn exit_statuses_and_top() {
    let o = gpu_infer(&["--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = gpu_infer(&["--top", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a whole number of at least 1"),
        "{}",
        stderr(&o)
    );
    let o = gpu_infer(&["--model", "vgg16"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = gpu_infer(&["--regnet", TINY_X_SPEC, "--backend", "cpu", "--top", "2000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--top 2000 is more than the model's 10 classes"),
        "{}",
        stderr(&o)
    );
    let ranks = stdout(&o).lines().filter(|l| l.contains("% ")).count();
    assert_eq!(ranks, 10, "{}", stdout(&o));
    let help = stdout(&gpu_infer(&["--help"]));
    for needle in [
        "default: regnet_y_400mf",
        "default: the bundled photo",
        "FILE|DIR",
    ] {
        assert!(help.contains(needle), "--help lacks `{needle}`:\n{help}");
    }
}

/// Without XDG_RUNTIME_DIR (headless machines), the GPU path prints no libwayland error; the
/// RANDOM-weights line says where real weights come from; the pipeline cache is written and
/// a second run reads it (where the driver supports one) with the same logits.
#[test]
fn quiet_headless_run_and_pipeline_cache() {
    let o = gpu_infer(&[
        "--model",
        "regnet_y_400mf",
        "--backend",
        "cpu",
        "--top",
        "1",
    ]);
    let out = stdout(&o);
    assert!(out.contains("weights: RANDOM"), "{out}");
    assert!(
        out.contains("download https://download.pytorch.org/models/regnet_y_400mf"),
        "{out}"
    );
    assert!(out.contains("--resize 232"), "{out}");

    let cache = temp_path("pipeline_cache", "d");
    let run = || {
        Command::new(gpu_infer_exe())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("XDG_RUNTIME_DIR")
            .args(["--regnet", TINY_X_SPEC, "--top", "1"])
            .arg("--pipeline-cache")
            .arg(&cache)
            .output()
            .expect("cannot run gpu_infer")
    };
    let first = run();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        !stderr(&first).contains("XDG_RUNTIME_DIR"),
        "{}",
        stderr(&first)
    );
    let out = stdout(&first);
    if !out.contains("backend: gpu") {
        common::skip("gpu_infer pipeline cache: no GPU adapter (ran on the CPU)");
        return;
    }
    let second = run();
    let out2 = stdout(&second);
    let top1 = |s: &str| s.lines().find(|l| l.contains("% ")).map(String::from);
    assert_eq!(top1(&out), top1(&out2), "{out}\n{out2}");
    let cached = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    if out.contains("pipeline cache: unsupported") {
        assert_eq!(cached, 0);
    } else {
        assert!(out.contains("pipeline cache: cold") && cached == 1, "{out}");
        assert!(out2.contains("pipeline cache: warm"), "{out2}");
    }
    let _ = std::fs::remove_dir_all(&cache);
}
