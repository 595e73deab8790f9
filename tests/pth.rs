//! PyTorch checkpoints (`torch.save` of a state_dict) loaded directly: the files in
//! tests/data/pth (made by scripts/gen_pth_fixtures.py from the tiny_y fixture's state_dict)
//! give the same folded weights and logits as the safetensors they were made from, and
//! torchvision's logits; broken and hostile checkpoints (built here, in memory) give named
//! errors.

mod common;

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use common::*;
use regnet_wgpu::weights::{Format, StateDict};
use regnet_wgpu::{Error, Plan, PthError, Result, Weights};

/// float16 weights must land this close (‖out−ref‖/‖ref‖) to torchvision's float64 outputs.
const F16_REL_TOL: f64 = 5e-3;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pth")
}

fn data(name: &str) -> PathBuf {
    let p = data_dir().join(name);
    assert!(
        p.is_file(),
        "missing {} (run scripts/gen_pth_fixtures.py)",
        p.display()
    );
    p
}

fn tiny_y() -> Fixture {
    Fixture::load(&fixtures_dir(), "tiny_y")
}

/// Asserts that two weights hold the same folded parameters, op by op, bit for bit.
fn assert_same_weights(what: &str, plan: &Plan, a: &Weights, b: &Weights) {
    for op in &plan.ops {
        if let (Ok(x), Ok(y)) = (a.get(&op.name), b.get(&op.name)) {
            assert_eq!(x, y, "{what}: op {}", op.name);
        }
    }
    assert_eq!(a.len(), b.len(), "{what}");
}

/// Loads `file`, checks its format, and compares its weights and CPU logits with those of
/// `reference` (a safetensors file of the same values) and with torchvision's logits.
fn check(file: &str, format: Format, reference: &Path, tol: f64) -> f64 {
    let fx = tiny_y();
    let plan = fx.plan();
    let path = data(file);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(Format::detect(&bytes), format, "{file}");
    let w = Weights::load(&path, &plan).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(w.source, path.display().to_string());
    let r = Weights::load(reference, &plan).unwrap();
    assert_same_weights(file, &plan, &w, &r);
    let out = cpu_logits(&plan, &w, fx.input());
    let same = cpu_logits(&plan, &r, fx.input());
    let (diff, _) = max_abs_err(&out, &same);
    assert!(
        diff <= 1e-6,
        "{file}: logits differ by {diff:e} from {reference:?}'s"
    );
    let label = format!("{file} logits (cpu)");
    let e = assert_close(&label, &out, &fx.io["logits"], tol);
    assert_same_top1(&label, &out, &fx.io["logits"]);
    println!("{file:<24} rel err {e:.3e} to torchvision");
    e
}

#[test]
fn zip_f32_equals_safetensors() {
    check(
        "tiny_y.zip.pth",
        Format::PthZip,
        &tiny_y().weights,
        F32_REL_TOL,
    );
}

#[test]
fn legacy_f32_equals_safetensors() {
    check(
        "tiny_y.legacy.pth",
        Format::PthLegacy,
        &tiny_y().weights,
        F32_REL_TOL,
    );
}

#[test]
fn views_offsets_and_strides_equal_safetensors() {
    check(
        "tiny_y.views.pth",
        Format::PthZip,
        &tiny_y().weights,
        F32_REL_TOL,
    );
}

#[test]
fn f16_zip_and_legacy_equal_their_safetensors() {
    let reference = data("tiny_y.f16.safetensors");
    check("tiny_y.f16.pth", Format::PthZip, &reference, F16_REL_TOL);
    check(
        "tiny_y.f16.legacy.pth",
        Format::PthLegacy,
        &reference,
        F16_REL_TOL,
    );
}

#[test]
fn module_prefix_is_stripped() {
    let reference = data("tiny_y.f16.safetensors");
    check("tiny_y.module.pth", Format::PthZip, &reference, F16_REL_TOL);
    let bytes = std::fs::read(data("tiny_y.module.pth")).unwrap();
    let sd = StateDict::from_bytes(&bytes, Path::new("m.pth")).unwrap();
    assert!(sd.get("stem.0.weight").is_some());
    assert!(sd.names().all(|n| !n.starts_with("module.")));
}

#[test]
fn state_dict_holds_every_tensor_with_its_dtype() {
    let bytes = std::fs::read(data("tiny_y.legacy.pth")).unwrap();
    let sd = StateDict::from_bytes(&bytes, Path::new("l.pth")).unwrap();
    let st_bytes = std::fs::read(tiny_y().weights).unwrap();
    let st = StateDict::from_bytes(&st_bytes, Path::new("s")).unwrap();
    assert_eq!(st.format(), Format::Safetensors);
    assert_eq!(sd.len(), st.len());
    for (name, t) in st.iter() {
        let p = sd.get(name).unwrap_or_else(|| panic!("no `{name}`"));
        assert_eq!((&p.dtype, &p.shape), (&t.dtype, &t.shape), "{name}");
        assert_eq!(p.data, t.data, "{name}");
    }
    let nbt = sd.get("stem.1.num_batches_tracked").unwrap();
    assert_eq!(nbt.dtype, regnet_wgpu::weights::Dtype::Other("I64".into()));
}

// ---------------------------------------------------------------------------------------------
// Checkpoints built here: a protocol-2 pickle as torch writes it, in a zip or legacy container.
// ---------------------------------------------------------------------------------------------

/// One tensor of a hand-built checkpoint.
struct T<'a> {
    name: &'a str,
    class: &'a str,
    key: &'a str,
    numel: u64,
    offset: u64,
    shape: &'a [u64],
    stride: &'a [u64],
}

fn unicode(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend((s.len() as u32).to_le_bytes());
    p.extend(s.as_bytes());
}

fn int(p: &mut Vec<u8>, v: u64) {
    if v <= i32::MAX as u64 {
        p.push(b'J');
        p.extend((v as u32).to_le_bytes());
    } else {
        // LONG1: 8 bytes and a zero sign byte.
        p.extend([0x8a, 9]);
        p.extend(v.to_le_bytes());
        p.push(0);
    }
}

/// `OrderedDict` of `_rebuild_tensor_v2` calls, as torch.save writes it (protocol 2); `legacy`:
/// persistent ids as the legacy format writes them, ending with a `view_metadata` None.
fn pickle_for(tensors: &[T<'_>], legacy: bool) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)R(".to_vec();
    for t in tensors {
        unicode(&mut p, t.name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        unicode(&mut p, "storage");
        p.extend(format!("ctorch\n{}\n", t.class).as_bytes());
        unicode(&mut p, t.key);
        unicode(&mut p, "cpu");
        int(&mut p, t.numel);
        if legacy {
            p.push(b'N');
        }
        p.extend(b"tQ");
        int(&mut p, t.offset);
        p.push(b'(');
        for &s in t.shape {
            int(&mut p, s);
        }
        p.extend(b"t(");
        for &s in t.stride {
            int(&mut p, s);
        }
        p.extend(b"t\x89h\x00)RtR");
    }
    p.extend(b"u.");
    p
}

fn pickle(tensors: &[T<'_>]) -> Vec<u8> {
    pickle_for(tensors, false)
}

fn legacy_pickle(tensors: &[T<'_>]) -> Vec<u8> {
    pickle_for(tensors, true)
}

/// A zip checkpoint: `archive/data.pkl`, `archive/byteorder`, `archive/data/<key>`.
fn zip_checkpoint(pkl: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("archive/data.pkl", opts).unwrap();
    w.write_all(pkl).unwrap();
    w.start_file("archive/byteorder", opts).unwrap();
    w.write_all(b"little").unwrap();
    for (key, data) in storages {
        w.start_file(format!("archive/data/{key}"), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A legacy checkpoint: magic, protocol, sys_info, the pickle, the keys, the storages.
fn legacy_checkpoint(pkl: &[u8], storages: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let mut b = vec![0x80, 2, 0x8a, 10];
    b.extend(&0x1950a86a20f9469cfc6cu128.to_le_bytes()[..10]);
    b.push(b'.');
    b.extend(b"\x80\x02M\xe9\x03.");
    b.extend(b"\x80\x02}(");
    unicode(&mut b, "little_endian");
    b.extend(b"\x88u.");
    b.extend(pkl);
    b.extend(b"\x80\x02](");
    for (key, _, _) in storages {
        unicode(&mut b, key);
    }
    b.extend(b"e.");
    for (_, numel, data) in storages {
        b.extend(numel.to_le_bytes());
        b.extend(*data);
    }
    b
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read(bytes: &[u8]) -> Result<StateDict<'_>> {
    StateDict::from_bytes(bytes, Path::new("test.pth"))
}

fn pth_err(r: Result<StateDict<'_>>, what: &str) -> PthError {
    match r {
        Err(Error::Pth { path, source }) => {
            assert_eq!(path, Path::new("test.pth"), "{what}");
            source
        }
        Err(e) => panic!("{what}: expected a PyTorch checkpoint error, got {e:?}"),
        Ok(_) => panic!("{what}: loaded"),
    }
}

const SIX: [f32; 6] = [0., 1., 2., 3., 4., 5.];

fn six(name: &str) -> T<'_> {
    T {
        name,
        class: "FloatStorage",
        key: "0",
        numel: 6,
        offset: 0,
        shape: &[2, 3],
        stride: &[3, 1],
    }
}

#[test]
fn hand_built_checkpoints_load_in_both_containers() {
    let tensors = [
        six("a"),
        T {
            name: "module.b",
            shape: &[3, 2],
            stride: &[1, 3],
            ..six("")
        },
        T {
            name: "c",
            offset: 4,
            shape: &[2],
            stride: &[1],
            ..six("")
        },
    ];
    let data = f32_bytes(&SIX);
    for (bytes, format) in [
        (
            zip_checkpoint(&pickle(&tensors), &[("0", &data)]),
            Format::PthZip,
        ),
        (
            legacy_checkpoint(&legacy_pickle(&tensors), &[("0", 6, &data)]),
            Format::PthLegacy,
        ),
    ] {
        let sd = read(&bytes).unwrap();
        assert_eq!(sd.format(), format);
        assert_eq!(sd.len(), 3);
        let v = |n: &str| sd.get(n).unwrap().to_f32(n).unwrap();
        assert_eq!(v("a"), SIX);
        assert_eq!(sd.get("b").unwrap().shape, [3, 2]);
        assert_eq!(v("b"), [0., 3., 1., 4., 2., 5.]);
        assert_eq!(v("c"), [4., 5.]);
    }
}

#[test]
fn truncated_files_are_named_errors() {
    let bytes = std::fs::read(data("tiny_y.legacy.pth")).unwrap();
    for cut in [20, 200, 5000, bytes.len() - 1] {
        let e = pth_err(read(&bytes[..cut]), &format!("legacy cut at {cut}"));
        assert!(
            matches!(e, PthError::Truncated { .. }),
            "cut at {cut}: {e:?}"
        );
        assert!(e.to_string().contains("truncated"), "{e}");
    }
    let bytes = std::fs::read(data("tiny_y.zip.pth")).unwrap();
    for cut in [10, 1000, bytes.len() / 2, bytes.len() - 1] {
        let e = pth_err(read(&bytes[..cut]), &format!("zip cut at {cut}"));
        assert!(matches!(e, PthError::Zip { .. }), "cut at {cut}: {e:?}");
    }
    // Through Weights::load too: the file's path is named.
    let dir = std::env::temp_dir().join(format!("regnet-pth-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.pth");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Weights::load(&path, &tiny_y().plan()).unwrap_err();
    assert!(err.to_string().contains("cut.pth"), "{err}");
    assert!(err.to_string().contains("PyTorch checkpoint"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn disallowed_globals_and_opcodes_are_refused() {
    let data = f32_bytes(&SIX);
    // `os.system` where OrderedDict should be: refused by name, never called.
    let pkl = pickle(&[six("a")]);
    let from = b"collections\nOrderedDict";
    let at = pkl.windows(from.len()).position(|w| w == from).unwrap();
    let evil = [&pkl[..at], b"os\nsystem", &pkl[at + from.len()..]].concat();
    for bytes in [
        zip_checkpoint(&evil, &[("0", &data)]),
        legacy_checkpoint(&evil, &[("0", 6, &data)]),
    ] {
        let e = pth_err(read(&bytes), "os.system");
        assert!(
            matches!(&e, PthError::DisallowedGlobal { module, name } if module == "os" && name == "system"),
            "{e:?}"
        );
        assert!(e.to_string().contains("os.system"), "{e}");
    }
    // builtins.eval through STACK_GLOBAL.
    let mut p = b"\x80\x04".to_vec();
    unicode(&mut p, "builtins");
    unicode(&mut p, "eval");
    p.extend(b"\x93.");
    let e = pth_err(read(&zip_checkpoint(&p, &[])), "eval");
    assert!(matches!(e, PthError::DisallowedGlobal { .. }), "{e:?}");
    // A REDUCE on a storage class; an INST opcode; a whole pickled object (not a dict).
    let e = pth_err(
        read(&zip_checkpoint(b"\x80\x02ctorch\nFloatStorage\n)R.", &[])),
        "call",
    );
    assert!(matches!(e, PthError::DisallowedCall { .. }), "{e:?}");
    let e = pth_err(
        read(&zip_checkpoint(b"\x80\x02(ios\nsystem\n.", &[])),
        "INST",
    );
    assert!(matches!(e, PthError::Opcode { opcode: b'i', .. }), "{e:?}");
    let e = pth_err(read(&zip_checkpoint(b"\x80\x02]q\x00.", &[])), "list");
    assert!(matches!(e, PthError::NotAStateDict { .. }), "{e:?}");
}

#[test]
fn missing_storages_and_bad_sizes_are_refused() {
    let data = f32_bytes(&SIX);
    let pkl = pickle(&[six("a")]);
    let e = pth_err(
        read(&zip_checkpoint(&pkl, &[("1", &data)])),
        "zip, no key 0",
    );
    assert!(
        matches!(&e, PthError::MissingStorage { tensor, key } if tensor == "a" && key == "0"),
        "{e:?}"
    );
    let e = pth_err(
        read(&legacy_checkpoint(&pkl, &[])),
        "legacy, no storage listed",
    );
    assert!(matches!(&e, PthError::MissingStorage { .. }), "{e:?}");
    // The storage holds fewer bytes than its reference says.
    let e = pth_err(read(&zip_checkpoint(&pkl, &[("0", &data[..20])])), "short");
    assert!(
        matches!(
            e,
            PthError::StorageSize {
                expected: 24,
                found: 20,
                ..
            }
        ),
        "{e:?}"
    );
    let e = pth_err(
        read(&legacy_checkpoint(&pkl, &[("0", 5, &data[..20])])),
        "legacy count",
    );
    assert!(matches!(e, PthError::StorageSize { .. }), "{e:?}");
}

#[test]
fn views_outside_their_storage_are_refused() {
    let data = f32_bytes(&SIX);
    let cases: [(&str, T<'_>); 5] = [
        (
            "offset past the end",
            T {
                offset: 5,
                ..six("a")
            },
        ),
        (
            "size past the end",
            T {
                shape: &[3, 3],
                ..six("a")
            },
        ),
        (
            "stride past the end",
            T {
                stride: &[4, 1],
                ..six("a")
            },
        ),
        (
            "overflowing stride",
            T {
                stride: &[u64::MAX / 2, 1],
                ..six("a")
            },
        ),
        (
            "broadcast view",
            T {
                shape: &[100, 6],
                stride: &[0, 1],
                ..six("a")
            },
        ),
    ];
    for (what, t) in cases {
        let pkl = pickle(&[t]);
        for bytes in [
            zip_checkpoint(&pkl, &[("0", &data)]),
            legacy_checkpoint(&pkl, &[("0", 6, &data)]),
        ] {
            let e = pth_err(read(&bytes), what);
            assert!(
                matches!(&e, PthError::OutOfRange { tensor, .. } if tensor == "a"),
                "{what}: {e:?}"
            );
        }
    }
    // A storage count no memory could hold.
    let pkl = pickle(&[T {
        numel: u64::MAX / 2,
        ..six("a")
    }]);
    let e = pth_err(read(&zip_checkpoint(&pkl, &[("0", &data)])), "huge storage");
    assert!(matches!(e, PthError::StorageSize { .. }), "{e:?}");
    let e = pth_err(
        read(&legacy_checkpoint(&pkl, &[("0", u64::MAX / 2, &data)])),
        "huge legacy storage",
    );
    assert!(
        matches!(e, PthError::StorageSize { .. } | PthError::Truncated { .. }),
        "{e:?}"
    );
}

#[test]
fn unsupported_dtypes_name_the_tensor() {
    // The tiny_y checkpoint with its stem weight in float64: the tensor is named.
    let fx = tiny_y();
    let plan = fx.plan();
    let bytes = std::fs::read(data("tiny_y.zip.pth")).unwrap();
    let sd = StateDict::from_bytes(&bytes, Path::new("x")).unwrap();
    let stem = sd.get("stem.0.weight").unwrap().to_f32("w").unwrap();
    let f64s: Vec<u8> = stem
        .iter()
        .flat_map(|&v| (v as f64).to_le_bytes())
        .collect();
    let t = T {
        name: "stem.0.weight",
        class: "DoubleStorage",
        key: "0",
        numel: stem.len() as u64,
        offset: 0,
        shape: &[16, 3, 3, 3],
        stride: &[27, 9, 3, 1],
    };
    let ck = zip_checkpoint(&pickle(&[t]), &[("0", &f64s)]);
    let err = Weights::from_bytes(&ck, Path::new("f64.pth"), &plan).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedDtype { name, dtype, .. } if name == "stem.0.weight" && dtype == "F64"),
        "{err:?}"
    );
    // An unknown storage class is a disallowed global.
    let t = T {
        class: "QInt8Storage",
        ..six("a")
    };
    let e = pth_err(
        read(&zip_checkpoint(&pickle(&[t]), &[("0", &[0; 6])])),
        "qint8",
    );
    assert!(matches!(e, PthError::DisallowedGlobal { .. }), "{e:?}");
}

#[test]
fn duplicate_names_after_the_module_prefix_are_refused() {
    let data = f32_bytes(&SIX);
    let pkl = pickle(&[six("a"), six("module.a")]);
    let err = read(&zip_checkpoint(&pkl, &[("0", &data)])).unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateTensor { name, .. } if name == "a"),
        "{err:?}"
    );
}

#[test]
fn other_files_are_still_safetensors_errors() {
    // Neither zip nor a legacy checkpoint: read as safetensors, and refused as such.
    for bytes in [&b"\x80\x02K\x01."[..], b"", b"PK\x05\x06"] {
        let err = read(bytes).unwrap_err();
        assert!(
            matches!(err, Error::Safetensors { .. }),
            "{bytes:?}: {err:?}"
        );
    }
}
