//! The weights loader: torchvision `state_dict`s in safetensors, BatchNorm folding, F16/BF16,
//! and every way a weights file can be wrong (each must be an error that names the tensor,
//! the shapes or the file, never a panic).
//!
//! Broken files are built in memory from the tiny fixtures (`safetensors::serialize`, then
//! `Weights::from_bytes`) or, where the path matters, written to a temporary folder.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::weights::BN_EPS;
use regnet_wgpu::{zoo, Error, Plan, Result, Tensor, Weights};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One tensor of a state_dict, as raw little-endian bytes.
#[derive(Clone)]
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// A state_dict held in memory (sorted by name) that tests modify and serialize again.
#[derive(Clone)]
struct StateDict {
    entries: Vec<Entry>,
}

impl StateDict {
    fn read(path: &Path) -> StateDict {
        let bytes = std::fs::read(path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut entries: Vec<Entry> = st
            .tensors()
            .into_iter()
            .map(|(name, v)| Entry {
                name,
                dtype: v.dtype(),
                shape: v.shape().to_vec(),
                data: v.data().to_vec(),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        StateDict { entries }
    }

    fn fixture(name: &str) -> StateDict {
        StateDict::read(&fixtures_dir().join(format!("{name}.safetensors")))
    }

    fn to_bytes(&self) -> Vec<u8> {
        let views = self.entries.iter().map(|e| {
            (
                e.name.clone(),
                TensorView::new(e.dtype, e.shape.clone(), &e.data).unwrap(),
            )
        });
        safetensors::serialize(views, None).unwrap()
    }

    fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.name == name)
    }

    fn get_mut(&mut self, name: &str) -> &mut Entry {
        self.entries
            .iter_mut()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("fixture has no tensor `{name}`"))
    }

    fn remove(&mut self, name: &str) -> Entry {
        let i = self
            .entries
            .iter()
            .position(|e| e.name == name)
            .unwrap_or_else(|| panic!("fixture has no tensor `{name}`"));
        self.entries.remove(i)
    }

    fn insert(&mut self, e: Entry) {
        assert!(!self.has(&e.name), "`{}` is already there", e.name);
        self.entries.push(e);
    }

    /// The values of an F32 tensor.
    fn f32s(&self, name: &str) -> Vec<f32> {
        let e = self.entries.iter().find(|e| e.name == name).unwrap();
        assert_eq!(e.dtype, Dtype::F32, "`{name}`");
        bytemuck::pod_collect_to_vec(&e.data)
    }

    /// Replaces a tensor's values (as F32, same shape).
    fn set_f32s(&mut self, name: &str, values: &[f32]) {
        let e = self.get_mut(name);
        assert_eq!(values.len(), e.shape.iter().product::<usize>());
        e.dtype = Dtype::F32;
        e.data = bytemuck::cast_slice(values).to_vec();
    }

    /// Applies `f` to every F32 tensor: returns its new dtype and bytes.
    fn map_floats(&self, f: impl Fn(&[f32]) -> (Dtype, Vec<u8>)) -> StateDict {
        let mut out = self.clone();
        for e in &mut out.entries {
            if e.dtype == Dtype::F32 {
                let v: Vec<f32> = bytemuck::pod_collect_to_vec(&e.data);
                (e.dtype, e.data) = f(&v);
            }
        }
        out
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

/// The state_dict with every float tensor stored as F16.
fn to_f16(sd: &StateDict) -> StateDict {
    sd.map_floats(|v| {
        let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        (Dtype::F16, bytemuck::cast_slice(&h).to_vec())
    })
}

/// The state_dict with every float tensor stored as BF16.
fn to_bf16(sd: &StateDict) -> StateDict {
    sd.map_floats(|v| {
        let h: Vec<half::bf16> = v.iter().map(|&x| half::bf16::from_f32(x)).collect();
        (Dtype::BF16, bytemuck::cast_slice(&h).to_vec())
    })
}

/// The state_dict with every float tensor rounded to F16 but stored as F32.
fn rounded_f16(sd: &StateDict) -> StateDict {
    sd.map_floats(|v| {
        let r: Vec<f32> = v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
        (Dtype::F32, f32_bytes(&r))
    })
}

/// The state_dict with every float tensor rounded to BF16 but stored as F32.
fn rounded_bf16(sd: &StateDict) -> StateDict {
    sd.map_floats(|v| {
        let r: Vec<f32> = v
            .iter()
            .map(|&x| half::bf16::from_f32(x).to_f32())
            .collect();
        (Dtype::F32, f32_bytes(&r))
    })
}

/// A label for in-memory weights; errors must name it.
const LABEL: &str = "in-memory/tiny_test.safetensors";

fn from_bytes(bytes: &[u8], plan: &Plan) -> Result<Weights> {
    Weights::from_bytes(bytes, Path::new(LABEL), plan)
}

/// The error of a load that must fail (a success is reported without dumping the weights).
fn expect_err(r: Result<Weights>, what: &str) -> Error {
    match r {
        Ok(w) => panic!("{what}: loaded without error ({} parameters)", w.len()),
        Err(e) => {
            eprintln!("{what}: {e}");
            e
        }
    }
}

/// Asserts that `msg` contains every one of `parts`.
fn assert_names(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message `{msg}` does not name `{p}`");
    }
}

fn run_cpu(plan: &Plan, weights: Weights, input: &Tensor) -> Tensor {
    CpuBackend::new(plan.clone(), weights)
        .unwrap()
        .run(input)
        .unwrap()
}

/// A file in the temporary folder, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "regnet_wgpu_weights_test_{}_{tag}.safetensors",
            std::process::id()
        ));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A tensor the tiny fixtures all hold (block1's first BN).
const VAR: &str = "trunk_output.block1.block1-0.f.a.1.running_var";
/// A conv weight the tiny fixtures all hold: `[16, 16, 1, 1]`.
const CONV_A: &str = "trunk_output.block1.block1-0.f.a.0.weight";

// ---------------------------------------------------------------------------------------------
// Fixtures load, BN folding is right
// ---------------------------------------------------------------------------------------------

/// The tiny fixtures load from their files, and the CPU logits (BN folded at load) land
/// within `F32_REL_TOL` of torchvision's, from the file and from the same bytes in memory.
#[test]
fn tiny_fixtures_load_and_match_torchvision() {
    for name in ["tiny_y", "tiny_x"] {
        let fx = Fixture::load(&fixtures_dir(), name);
        let plan = fx.plan();
        let weights = Weights::load(&fx.weights, &plan).unwrap();
        assert!(!weights.is_empty());
        assert_eq!(weights.source, fx.weights.display().to_string());
        let logits = run_cpu(&plan, weights, fx.input());
        let e = assert_close(
            &format!("{name} logits"),
            &logits,
            &fx.io["logits"],
            F32_REL_TOL,
        );
        eprintln!("{name}: logits rel err {e:.2e}");

        let bytes = std::fs::read(&fx.weights).unwrap();
        let mem = Weights::from_bytes(&bytes, &fx.weights, &plan).unwrap();
        let mem_logits = run_cpu(&plan, mem, fx.input());
        assert_eq!(mem_logits, logits, "{name}: from_bytes vs load");
    }
}

/// Every conv's folded weight and bias equal `w * gamma / sqrt(var + eps)` and
/// `(0 - mean) * gamma / sqrt(var + eps) + beta` (RegNet convs have no bias of their own),
/// computed here in f64 from the raw tensors.
#[test]
fn bn_folding_matches_the_formula() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let weights = fx.load_weights(&plan);
    // (`read_safetensors` refuses the I64 `num_batches_tracked`, so read the raw tensors here.)
    let sd = StateDict::fixture("tiny_y");
    let mut convs = 0;
    for op in &plan.ops {
        let regnet_wgpu::plan::OpKind::Conv2d(c) = &op.kind else {
            continue;
        };
        let bn = c.norm.as_ref().expect("every RegNet conv has a BN");
        let w = sd.f32s(&c.weight);
        let gamma = sd.f32s(&format!("{bn}.weight"));
        let beta = sd.f32s(&format!("{bn}.bias"));
        let mean = sd.f32s(&format!("{bn}.running_mean"));
        let var = sd.f32s(&format!("{bn}.running_var"));
        let folded = weights.conv(&op.name).unwrap();
        assert_eq!(folded.weight.len(), w.len(), "{}", op.name);
        assert_eq!(folded.bias.len(), c.out_channels, "{}", op.name);
        let per = w.len() / c.out_channels;
        for o in 0..c.out_channels {
            let scale = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
            for i in 0..per {
                let want = w[o * per + i] as f64 * scale;
                let got = folded.weight[o * per + i] as f64;
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs() + 1e-30,
                    "{} weight [{o}, {i}]: {got} vs {want}",
                    op.name
                );
            }
            let want = -(mean[o] as f64) * scale + beta[o] as f64;
            let got = folded.bias[o] as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want.abs() + 1e-7,
                "{} bias [{o}]: {got} vs {want}",
                op.name
            );
        }
        convs += 1;
    }
    assert!(convs > 10, "tiny_y has {convs} convs");
}

/// `num_batches_tracked` may be present (torchvision writes it) or absent: same logits.
#[test]
fn num_batches_tracked_is_optional() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let sd = StateDict::fixture("tiny_y");
    assert!(
        sd.entries
            .iter()
            .any(|e| e.name.ends_with("num_batches_tracked")),
        "the fixture should hold num_batches_tracked"
    );
    let with = run_cpu(
        &plan,
        from_bytes(&sd.to_bytes(), &plan).unwrap(),
        fx.input(),
    );
    let mut without = sd.clone();
    without
        .entries
        .retain(|e| !e.name.ends_with("num_batches_tracked"));
    let w = from_bytes(&without.to_bytes(), &plan).unwrap();
    assert_eq!(run_cpu(&plan, w, fx.input()), with);
}

// ---------------------------------------------------------------------------------------------
// F16 and BF16
// ---------------------------------------------------------------------------------------------

/// Tolerances against torchvision's logits (computed from the f32 weights). Rounding every
/// weight and BN statistic perturbs each by up to half an ulp: 2^-11 ≈ 4.9e-4 relative for
/// f16, 2^-8 ≈ 3.9e-3 for bf16 (about 0.6x that on average). Measured over the seven tiny
/// fixtures (`REPORT` lines with `-- --nocapture`), the logits' relative L2 error was
/// f16: 1.7e-4 (tiny_y) .. 7.0e-4 (tiny_x), bf16: 2.4e-3 (tiny_odd_input) .. 3.9e-3
/// (tiny_depthwise). The bounds leave ~2.5-3x headroom over the worst fixture; an error that
/// exceeds them means a wrong conversion (e.g. a byte-order or exponent-bias bug), which
/// shows up as O(1).
const F16_REL_TOL: f64 = 2e-3;
const BF16_REL_TOL: f64 = 1e-2;

/// Exactness of the half-precision reading: loading F16/BF16 must be the same as loading the
/// same rounded values stored as F32. f16/bf16 -> f32 is exact, so the two runs see identical
/// f32 weights (measured difference: 0); the bound only allows for a future backend that
/// does not reduce in a fixed order.
const SAME_WEIGHTS_TOL: f64 = 1e-5;

fn check_half(
    name: &str,
    half: fn(&StateDict) -> StateDict,
    rounded: fn(&StateDict) -> StateDict,
    tol: f64,
    label: &str,
) {
    let fx = Fixture::load(&fixtures_dir(), name);
    let plan = fx.plan();
    let sd = StateDict::fixture(name);
    let h = half(&sd);
    let n_half = h
        .entries
        .iter()
        .filter(|e| e.dtype == Dtype::F16 || e.dtype == Dtype::BF16)
        .count();
    let n_float = sd.entries.iter().filter(|e| e.dtype == Dtype::F32).count();
    assert_eq!(n_half, n_float, "every float tensor converted");

    let logits = run_cpu(&plan, from_bytes(&h.to_bytes(), &plan).unwrap(), fx.input());
    let e = assert_close(
        &format!("{name} {label} logits vs torchvision"),
        &logits,
        &fx.io["logits"],
        tol,
    );
    let r = rounded(&sd);
    let reference = run_cpu(&plan, from_bytes(&r.to_bytes(), &plan).unwrap(), fx.input());
    let same = assert_close(
        &format!("{name} {label} logits vs f32 run on the rounded weights"),
        &logits,
        &reference,
        SAME_WEIGHTS_TOL,
    );
    eprintln!("REPORT {name} {label}: vs torchvision {e:.2e}, vs rounded f32 {same:.2e}");
}

#[test]
fn f16_weights_are_accepted() {
    for name in TINY {
        check_half(name, to_f16, rounded_f16, F16_REL_TOL, "f16");
    }
}

#[test]
fn bf16_weights_are_accepted() {
    for name in TINY {
        check_half(name, to_bf16, rounded_bf16, BF16_REL_TOL, "bf16");
    }
}

/// A file may mix dtypes tensor by tensor.
#[test]
fn mixed_dtypes_are_accepted() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let sd = StateDict::fixture("tiny_y");
    let (h, b) = (to_f16(&sd), to_bf16(&sd));
    let mut mixed = sd.clone();
    for (i, e) in mixed.entries.iter_mut().enumerate() {
        if e.dtype == Dtype::F32 {
            match i % 3 {
                0 => *e = h.entries[i].clone(),
                1 => *e = b.entries[i].clone(),
                _ => {}
            }
        }
    }
    let logits = run_cpu(
        &plan,
        from_bytes(&mixed.to_bytes(), &plan).unwrap(),
        fx.input(),
    );
    assert_close("mixed dtypes", &logits, &fx.io["logits"], BF16_REL_TOL);
}

// ---------------------------------------------------------------------------------------------
// Wrong tensors
// ---------------------------------------------------------------------------------------------

fn tiny_y() -> (Plan, StateDict) {
    (
        Fixture::load(&fixtures_dir(), "tiny_y").plan(),
        StateDict::fixture("tiny_y"),
    )
}

/// F64, I32, I64, U8 and F8 weights are refused, naming the tensor and the dtype.
#[test]
fn unsupported_dtype_names_the_tensor() {
    let (plan, sd) = tiny_y();
    for (dtype, bytes_per) in [
        (Dtype::F64, 8),
        (Dtype::I32, 4),
        (Dtype::I64, 8),
        (Dtype::U8, 1),
        (Dtype::F8_E4M3, 1),
    ] {
        let mut bad = sd.clone();
        let e = bad.get_mut(CONV_A);
        let n: usize = e.shape.iter().product();
        e.dtype = dtype;
        e.data = vec![0; n * bytes_per];
        let err = expect_err(from_bytes(&bad.to_bytes(), &plan), &format!("{dtype:?}"));
        let msg = err.to_string();
        assert!(
            matches!(&err, Error::UnsupportedDtype { name, .. } if name == CONV_A),
            "{dtype:?}: wrong error {err:?}"
        );
        assert_names(&msg, &[CONV_A, &format!("{dtype:?}")]);
    }
    // An F64 BN statistic (a common result of `model.double()`).
    let mut bad = sd.clone();
    let e = bad.get_mut(VAR);
    let v: Vec<f64> = bytemuck::pod_collect_to_vec::<u8, f32>(&e.data)
        .iter()
        .map(|&x| x as f64)
        .collect();
    e.dtype = Dtype::F64;
    e.data = bytemuck::cast_slice(&v).to_vec();
    let err = expect_err(from_bytes(&bad.to_bytes(), &plan), "F64 running_var");
    assert!(
        matches!(&err, Error::UnsupportedDtype { name, .. } if name == VAR),
        "{err:?}"
    );
    assert_names(&err.to_string(), &[VAR, "F64"]);
}

/// A missing tensor is named, with the file it was looked for in.
#[test]
fn missing_tensor_is_named() {
    let (plan, sd) = tiny_y();
    for name in [
        VAR,
        "stem.0.weight",
        "fc.bias",
        "trunk_output.block3.block3-2.f.se.fc2.weight",
    ] {
        let mut bad = sd.clone();
        bad.remove(name);
        let err = expect_err(from_bytes(&bad.to_bytes(), &plan), name);
        assert!(
            matches!(&err, Error::MissingTensor { name: n, .. } if n == name),
            "{name}: wrong error {err:?}"
        );
        assert_names(&err.to_string(), &[name, LABEL]);
    }
}

/// A wrongly shaped tensor is named with both shapes: transposed, flattened, wrong size,
/// missing the 1x1 dims, an extra dim, a scalar.
#[test]
fn shape_mismatch_names_tensor_and_shapes() {
    let (plan, sd) = tiny_y();
    let cases: &[(&str, Vec<usize>, Vec<usize>)] = &[
        // (tensor, shape written with the same number of elements when possible, expected)
        ("fc.weight", vec![64, 10], vec![10, 64]),
        ("fc.weight", vec![640], vec![10, 64]),
        ("stem.0.weight", vec![16, 3, 9, 1], vec![16, 3, 3, 3]),
        (CONV_A, vec![16, 16], vec![16, 16, 1, 1]),
        (VAR, vec![1, 16], vec![16]),
        (VAR, vec![17], vec![16]),
        ("fc.bias", vec![], vec![10]),
    ];
    for (name, shape, expected) in cases {
        let mut bad = sd.clone();
        let e = bad.get_mut(name);
        let n: usize = shape.iter().product();
        e.data = f32_bytes(&vec![0.5; n]);
        e.shape = shape.clone();
        let err = expect_err(from_bytes(&bad.to_bytes(), &plan), name);
        match &err {
            Error::ShapeMismatch {
                name: n,
                found,
                expected: x,
            } => {
                assert_eq!(n, name);
                assert_eq!(found, shape);
                assert_eq!(x, expected);
            }
            _ => panic!("{name} {shape:?}: wrong error {err:?}"),
        }
        assert_names(
            &err.to_string(),
            &[name, &format!("{shape:?}"), &format!("{expected:?}")],
        );
    }
}

/// A tensor the model does not use is named, whatever its dtype; any number of them are
/// counted.
#[test]
fn unexpected_tensor_is_named() {
    let (plan, sd) = tiny_y();
    let extra = "trunk_output.block4.block4-0.f.a.0.weight";
    let mut bad = sd.clone();
    bad.insert(Entry {
        name: extra.into(),
        dtype: Dtype::F32,
        shape: vec![2, 2],
        data: f32_bytes(&[1.0; 4]),
    });
    let err = expect_err(from_bytes(&bad.to_bytes(), &plan), "extra tensor");
    assert!(
        matches!(&err, Error::UnexpectedTensors { count: 1, examples } if examples.contains(extra)),
        "wrong error {err:?}"
    );
    assert_names(&err.to_string(), &[extra]);

    // A `module.` prefix (a DataParallel checkpoint) is stripped, as from a PyTorch checkpoint
    // (tests/pth.rs): the prefixed tensor loads under its plain name...
    let mut prefixed = sd.clone();
    let mut e = prefixed.remove("fc.bias");
    e.name = "module.fc.bias".into();
    prefixed.insert(e.clone());
    let w = from_bytes(&prefixed.to_bytes(), &plan).unwrap();
    let plain = from_bytes(&sd.to_bytes(), &plan).unwrap();
    assert_eq!(w.linear("fc").unwrap(), plain.linear("fc").unwrap());
    // ...and a name present both with and without it is an error naming it.
    let mut both = sd.clone();
    both.insert(e);
    let err = expect_err(from_bytes(&both.to_bytes(), &plan), "module. prefix twice");
    assert!(
        matches!(&err, Error::DuplicateTensor { name, .. } if name == "fc.bias"),
        "{err:?}"
    );
    assert_names(&err.to_string(), &["fc.bias", "module."]);

    // Several extras, of odd dtypes: all counted, the first (sorted) named.
    let mut bad = sd.clone();
    for (i, dtype) in [Dtype::I64, Dtype::F64, Dtype::U8].into_iter().enumerate() {
        bad.insert(Entry {
            name: format!("aux.{i}.weight"),
            dtype,
            shape: vec![1],
            data: vec![0; dtype.bitsize() / 8],
        });
    }
    let err = expect_err(from_bytes(&bad.to_bytes(), &plan), "three extras");
    assert!(
        matches!(&err, Error::UnexpectedTensors { count: 3, .. }),
        "{err:?}"
    );
    assert_names(&err.to_string(), &["3", "aux.0.weight"]);

    // An extra `num_batches_tracked`, even one the model has no BN for, is ignored.
    let mut ok = sd.clone();
    ok.insert(Entry {
        name: "fc.num_batches_tracked".into(),
        dtype: Dtype::I64,
        shape: vec![],
        data: 7i64.to_le_bytes().to_vec(),
    });
    from_bytes(&ok.to_bytes(), &plan).unwrap();
}

/// Non-finite values (NaN, +inf, -inf) in a weight, a BN statistic or the classifier are
/// refused, naming the tensor; so is a negative running variance.
#[test]
fn non_finite_values_are_refused() {
    let (plan, sd) = tiny_y();
    for (name, value) in [
        (CONV_A, f32::NAN),
        ("stem.1.weight", f32::INFINITY),
        (VAR, f32::NEG_INFINITY),
        ("fc.weight", f32::NAN),
        ("trunk_output.block2.block2-1.f.se.fc1.bias", f32::INFINITY),
    ] {
        let mut bad = sd.clone();
        let mut v = bad.f32s(name);
        let last = v.len() - 1;
        v[last] = value;
        bad.set_f32s(name, &v);
        let err = expect_err(from_bytes(&bad.to_bytes(), &plan), name);
        assert!(
            matches!(&err, Error::InvalidTensor { .. }),
            "{name}: wrong error {err:?}"
        );
        assert_names(&err.to_string(), &[name, "non-finite"]);
    }
    // The same in F16 (where 1e5 overflows to inf) and BF16 (NaN).
    let mut bad = to_f16(&sd);
    let e = bad.get_mut(CONV_A);
    e.data[..2].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
    let err = expect_err(from_bytes(&bad.to_bytes(), &plan), "f16 inf");
    assert_names(&err.to_string(), &[CONV_A, "non-finite"]);
    let mut bad = to_bf16(&sd);
    let e = bad.get_mut(CONV_A);
    e.data[..2].copy_from_slice(&half::bf16::NAN.to_le_bytes());
    let err = expect_err(from_bytes(&bad.to_bytes(), &plan), "bf16 nan");
    assert_names(&err.to_string(), &[CONV_A, "non-finite"]);

    let mut bad = sd.clone();
    let mut v = bad.f32s(VAR);
    v[3] = -0.25;
    bad.set_f32s(VAR, &v);
    let err = expect_err(from_bytes(&bad.to_bytes(), &plan), "negative variance");
    assert!(matches!(&err, Error::InvalidTensor { .. }), "{err:?}");
    assert_names(&err.to_string(), &[VAR, "negative"]);
}

// ---------------------------------------------------------------------------------------------
// Another model's weights
// ---------------------------------------------------------------------------------------------

/// RegNetX weights for the RegNetY plan: the first SE tensor is missing.
#[test]
fn x_weights_for_y_plan_fail() {
    let plan = Fixture::load(&fixtures_dir(), "tiny_y").plan();
    let x = Fixture::load(&fixtures_dir(), "tiny_x");
    let err = expect_err(Weights::load(&x.weights, &plan), "tiny_x for tiny_y");
    let se = "trunk_output.block1.block1-0.f.se.fc1.weight";
    assert!(
        matches!(&err, Error::MissingTensor { name, .. } if name == se),
        "{err:?}"
    );
    assert_names(&err.to_string(), &[se, &x.weights.display().to_string()]);
}

/// RegNetY weights for the RegNetX plan: the SE tensors are left over.
#[test]
fn y_weights_for_x_plan_fail() {
    let plan = Fixture::load(&fixtures_dir(), "tiny_x").plan();
    let y = Fixture::load(&fixtures_dir(), "tiny_y");
    let err = expect_err(Weights::load(&y.weights, &plan), "tiny_y for tiny_x");
    assert!(
        matches!(&err, Error::UnexpectedTensors { count, .. } if *count > 4),
        "{err:?}"
    );
    assert_names(
        &err.to_string(),
        &[
            "trunk_output.block1.block1-0.f.se.fc1.bias",
            "another model",
        ],
    );
}

/// Tiny weights for a zoo-size plan (and other tiny models' weights for each tiny plan):
/// always an error naming a tensor, never a panic.
#[test]
fn other_models_weights_fail_with_a_named_tensor() {
    for (zoo_name, tiny) in [("regnet_y_400mf", "tiny_y"), ("regnet_x_400mf", "tiny_x")] {
        let plan = Plan::new(zoo::get(zoo_name).unwrap(), 224, 224).unwrap();
        let fx = Fixture::load(&fixtures_dir(), tiny);
        let err = expect_err(Weights::load(&fx.weights, &plan), zoo_name);
        // The stem is 32 wide in the zoo, 16 in the tiny models.
        match &err {
            Error::ShapeMismatch {
                name,
                found,
                expected,
            } => {
                assert_eq!(name, "stem.0.weight");
                assert_eq!(found, &[16, 3, 3, 3]);
                assert_eq!(expected, &[32, 3, 3, 3]);
            }
            _ => panic!("{tiny} for {zoo_name}: wrong error {err:?}"),
        }
        assert_names(&err.to_string(), &["stem.0.weight"]);
    }
    // Every pair of distinct tiny models.
    let fixtures: Vec<Fixture> = TINY
        .iter()
        .map(|n| Fixture::load(&fixtures_dir(), n))
        .collect();
    for a in &fixtures {
        let plan = a.plan();
        for b in &fixtures {
            if a.name == b.name {
                continue;
            }
            let what = format!("{} weights for {} plan", b.name, a.name);
            let err = expect_err(Weights::load(&b.weights, &plan), &what);
            let named = match &err {
                Error::MissingTensor { name, .. }
                | Error::ShapeMismatch { name, .. }
                | Error::UnsupportedDtype { name, .. } => name.clone(),
                Error::UnexpectedTensors { examples, .. } => examples.clone(),
                _ => panic!("{what}: wrong error {err:?}"),
            };
            assert!(!named.is_empty(), "{what}");
            assert_names(&err.to_string(), &[&named]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Broken files
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let plan = Fixture::load(&fixtures_dir(), "tiny_y").plan();
    let path = std::env::temp_dir().join(format!(
        "regnet_wgpu_weights_test_{}_does_not_exist.safetensors",
        std::process::id()
    ));
    let err = expect_err(Weights::load(&path, &plan), "missing file");
    assert!(
        matches!(&err, Error::Io { path: p, source } if p == &path
            && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert_names(&err.to_string(), &[&path.display().to_string()]);

    // A folder is not a file either.
    let dir = std::env::temp_dir();
    let err = expect_err(Weights::load(&dir, &plan), "folder");
    assert!(matches!(&err, Error::Io { .. }), "{err:?}");
    assert_names(&err.to_string(), &[&dir.display().to_string()]);
}

/// Truncated, garbage, empty and absurd-header files: each a `Safetensors` error naming
/// the file (read from disk and from memory), never a panic.
#[test]
fn malformed_files_are_safetensors_errors() {
    let (plan, sd) = tiny_y();
    let good = sd.to_bytes();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("four_bytes", vec![1, 2, 3, 4]),
        ("cut_in_header", good[..8 + header_len / 2].to_vec()),
        ("cut_after_header", good[..8 + header_len].to_vec()),
        ("cut_in_data", good[..good.len() - 100].to_vec()),
        ("cut_one_byte", good[..good.len() - 1].to_vec()),
        (
            "garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("text", b"this is not a safetensors file\n".repeat(10)),
        ("json_not_object", {
            let h = b"[1, 2, 3]";
            let mut v = (h.len() as u64).to_le_bytes().to_vec();
            v.extend_from_slice(h);
            v
        }),
        ("header_u64_max", {
            let mut v = good.clone();
            v[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            v
        }),
        ("header_2_pow_40", {
            let mut v = good.clone();
            v[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            v
        }),
        ("header_past_end", {
            let mut v = good.clone();
            v[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
            v
        }),
        ("header_zero", {
            let mut v = good.clone();
            v[..8].copy_from_slice(&0u64.to_le_bytes());
            v
        }),
    ];
    // Data offsets that point past the data, in an otherwise valid header.
    let header = std::str::from_utf8(&good[8..8 + header_len]).unwrap();
    let bad_header = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[999999999,", 1);
    assert_ne!(bad_header, header, "header layout changed: {header:.200}");
    let mut v = (bad_header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(bad_header.as_bytes());
    v.extend_from_slice(&good[8 + header_len..]);
    cases.push(("bad_offsets", v));

    for (tag, bytes) in &cases {
        let err = expect_err(from_bytes(bytes, &plan), tag);
        assert!(
            matches!(&err, Error::Safetensors { path, .. } if path == Path::new(LABEL)),
            "{tag} (memory): wrong error {err:?}"
        );
        assert_names(&err.to_string(), &[LABEL, "safetensors"]);

        let file = TempFile::new(tag, bytes);
        let err = expect_err(Weights::load(&file.0, &plan), tag);
        assert!(
            matches!(&err, Error::Safetensors { path, .. } if path == &file.0),
            "{tag} (file): wrong error {err:?}"
        );
        assert_names(&err.to_string(), &[&file.0.display().to_string()]);
    }
}

// ---------------------------------------------------------------------------------------------
// Random weights
// ---------------------------------------------------------------------------------------------

#[test]
fn random_weights_are_deterministic() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let a = run_cpu(&plan, Weights::random(&plan, 7), fx.input());
    let b = run_cpu(&plan, Weights::random(&plan, 7), fx.input());
    assert_eq!(a, b, "same seed, same logits");
    assert!(a.data.iter().all(|v| v.is_finite()));
    let c = run_cpu(&plan, Weights::random(&plan, 8), fx.input());
    assert!(
        c.rel_err(&a) > 1e-2,
        "different seeds: rel diff {:.2e}",
        c.rel_err(&a)
    );
    // Same parameter count as the fixture's weights, and the seed in the source.
    let w = Weights::random(&plan, 7);
    assert_eq!(w.len(), fx.load_weights(&plan).len());
    assert_names(&w.source, &["7"]);
    // Random weights work for a zoo-size plan too.
    let zoo_plan = Plan::new(zoo::get("regnet_y_400mf").unwrap(), 32, 32).unwrap();
    let z = run_cpu(
        &zoo_plan,
        Weights::random(&zoo_plan, 1),
        &Tensor::zeros(vec![1, 3, 32, 32]),
    );
    assert_eq!(z.shape, [1, 1000]);
    assert!(z.data.iter().all(|v| v.is_finite()));
}

// ---------------------------------------------------------------------------------------------
// Converted torchvision checkpoints (scripts/pth_to_safetensors.py)
// ---------------------------------------------------------------------------------------------

/// Full-size state_dicts converted by `scripts/pth_to_safetensors.py`, checked when
/// `REGNET_CONVERTED` lists them (`:`-separated, e.g.
/// `REGNET_CONVERTED=/tmp/regnet_y_400mf.safetensors:/tmp/regnet_y_400mf.f16.safetensors`).
/// The model is the file name up to its first `.`, which must be a zoo name. When the same
/// folder holds `{model}.io.safetensors` (`input` `[N, 3, H, W]` and torchvision's `logits`),
/// the CPU logits are compared with it: within `F32_REL_TOL` for F32 files, and within the
/// f16/bf16 bounds for files named `*.f16.*` / `*.bf16.*` (measured on randomly initialised
/// regnet_y_400mf / regnet_x_400mf with randomised BN, 2 images of 224x224: f32 3.8e-7,
/// f16 3.9e-4 / 4.9e-4, bf16 3.3e-3 / 4.1e-3). Skipped when the variable is not set.
#[test]
fn converted_checkpoints_load() {
    let Some(list) = std::env::var_os("REGNET_CONVERTED") else {
        // Optional (real checkpoints converted by the user), so not a CI failure.
        println!("REGNET_CONVERTED not set: converted checkpoint check skipped");
        return;
    };
    for path in std::env::split_paths(&list) {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let model = file.split('.').next().unwrap();
        let params = zoo::get(model).unwrap();
        let io_path = path.with_file_name(format!("{model}.io.safetensors"));
        let io = io_path
            .is_file()
            .then(|| regnet_wgpu::tensor::read_safetensors(&io_path).unwrap());
        let input = match &io {
            Some(io) => io["input"].clone(),
            None => Tensor::new(
                vec![1, 3, 224, 224],
                (0..3 * 224 * 224)
                    .map(|i| ((i % 97) as f32 / 48.0) - 1.0)
                    .collect(),
            )
            .unwrap(),
        };
        let plan = Plan::new(&params, input.shape[2], input.shape[3]).unwrap();
        let w = Weights::load(&path, &plan).unwrap();
        let logits = run_cpu(&plan, w, &input);
        assert!(logits.data.iter().all(|v| v.is_finite()), "{file}");
        match &io {
            Some(io) => {
                let tol = if file.contains(".bf16.") {
                    BF16_REL_TOL
                } else if file.contains(".f16.") {
                    F16_REL_TOL
                } else {
                    F32_REL_TOL
                };
                let e = assert_close(&file, &logits, &io["logits"], tol);
                eprintln!("REPORT {file}: loads for {model}, logits rel err {e:.2e}");
            }
            None => eprintln!("REPORT {file}: loads for {model} (no {model}.io.safetensors)"),
        }
    }
}

/// Finite tensors whose BatchNorm fold overflows f32 are refused, not silently turned into inf.
#[test]
fn bn_fold_overflow_is_refused() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let bytes = std::fs::read(&fx.weights).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    for (name, _, shape, data) in tensors.iter_mut() {
        let n: usize = shape.iter().product();
        if name == "stem.1.weight" {
            *data = f32_bytes(&vec![3e38; n]);
        } else if name == "stem.1.running_var" {
            *data = f32_bytes(&vec![0.0; n]);
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    let err =
        Weights::from_bytes(&out, std::path::Path::new("overflow.safetensors"), &plan).unwrap_err();
    assert!(matches!(&err, Error::InvalidTensor { .. }), "{err:?}");
    assert_names(
        &err.to_string(),
        &["stem.0.weight", "overflows", "overflow.safetensors"],
    );
}
