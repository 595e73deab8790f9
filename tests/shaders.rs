//! Every shader parses and validates with naga, in both precisions, before any adapter runs it.

use regnet_wgpu::gpu::kernels::Family;
use regnet_wgpu::gpu::{preprocess, Precision};

fn validate(name: &str, precision: Precision, src: &str) {
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| {
        panic!(
            "{name} ({precision:?}) does not parse:\n{}",
            e.emit_to_string(src)
        )
    });
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    validator.validate(&module).unwrap_or_else(|e| {
        panic!(
            "{name} ({precision:?}) does not validate:\n{}",
            e.emit_to_string(src)
        )
    });
}

#[test]
fn preprocess_shader_parses_and_validates() {
    for precision in [Precision::F32, Precision::F16] {
        validate(
            preprocess::SHADER_FILE,
            precision,
            &preprocess::source(precision),
        );
    }
}

#[test]
fn every_shader_parses_and_validates() {
    for precision in [Precision::F32, Precision::F16] {
        for (family, src) in Family::ALL.iter().flat_map(|&f| {
            [
                (f, f.source(precision)),
                (f, f.source_with_subgroups(precision)),
            ]
        }) {
            let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
                panic!(
                    "{} ({precision:?}) does not parse:\n{}",
                    family.file(),
                    e.emit_to_string(&src)
                )
            });
            let mut validator = naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::all(),
            );
            validator.validate(&module).unwrap_or_else(|e| {
                panic!(
                    "{} ({precision:?}) does not validate:\n{}",
                    family.file(),
                    e.emit_to_string(&src)
                )
            });
        }
    }
}

#[test]
fn every_wgsl_file_is_used() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        // The prelude opens every module; the subgroup entry points are appended to the conv
        // families' modules (Family::source_with_subgroups).
        if name == "prelude.wgsl"
            || name == preprocess::SHADER_FILE
            || name == "conv_pointwise_subgroup.wgsl"
            || name == "conv_subgroup.wgsl"
            || name == "subgroup.wgsl"
        {
            continue;
        }
        assert!(
            Family::ALL.iter().any(|f| f.file() == name),
            "shaders/{name} is not loaded by any kernel family"
        );
    }
}
