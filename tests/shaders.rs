//! Every shader parses and validates with naga, in both precisions, before any adapter runs it.

use regnet_wgpu::gpu::kernels::{Family, Operands};
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
fn subgroup_probe_parses_and_validates() {
    validate(
        "subgroup_probe.wgsl",
        Precision::F32,
        include_str!("../shaders/subgroup_probe.wgsl"),
    );
}

#[test]
fn the_roofline_microkernels_parse_and_validate() {
    validate(
        "fma_peak.wgsl",
        Precision::F32,
        include_str!("../shaders/fma_peak.wgsl"),
    );
    validate(
        "bandwidth_peak.wgsl",
        Precision::F32,
        include_str!("../shaders/bandwidth_peak.wgsl"),
    );
    validate(
        "load_peak.wgsl",
        Precision::F32,
        include_str!("../shaders/load_peak.wgsl"),
    );
}

#[test]
fn every_shader_parses_and_validates() {
    for precision in [Precision::F32, Precision::F16] {
        for (family, src) in Family::ALL.iter().flat_map(|&f| {
            [
                (f, f.source(precision)),
                (f, f.source_with_subgroups(precision)),
                (f, f.source_with(precision, Operands::Texture, false)),
                (f, f.source_with(precision, Operands::Texture, true)),
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
        // families' modules (Family::source_with_subgroups); the roofline's microkernels
        // (gpu::peak) and the probes stand alone.
        // The convolutions read their operands through one of the operands files.
        if name == "prelude.wgsl"
            || name == Operands::Storage.file()
            || name == Operands::Texture.file()
            || name == preprocess::SHADER_FILE
            || name == "conv_pointwise_subgroup.wgsl"
            || name == "conv_subgroup.wgsl"
            || name == "subgroup.wgsl"
            || name == "subgroup_probe.wgsl"
            || name == "fma_peak.wgsl"
            || name == "bandwidth_peak.wgsl"
            || name == "load_peak.wgsl"
        {
            continue;
        }
        assert!(
            Family::ALL.iter().any(|f| f.file() == name),
            "shaders/{name} is not loaded by any kernel family"
        );
    }
}

/// The kernels' `Params` structs, as naga reads them from the WGSL, field by field against
/// their Rust twins (`regnet_wgpu::gpu::params`): names, offsets and size.
#[test]
fn kernel_params_match_their_wgsl_structs() {
    for family in Family::ALL {
        let src = family.source(Precision::F32);
        let module = naga::front::wgsl::parse_str(&src).unwrap();
        let (_, params) = module
            .global_variables
            .iter()
            .find(|(_, g)| {
                g.binding
                    .as_ref()
                    .is_some_and(|b| b.group == 0 && b.binding == 0)
            })
            .unwrap_or_else(|| panic!("{}: no binding 0", family.file()));
        let naga::TypeInner::Struct { members, span } = &module.types[params.ty].inner else {
            panic!("{}: binding 0 is not a struct", family.file());
        };
        let wgsl: Vec<(String, usize)> = members
            .iter()
            .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
            .collect();
        let rust: Vec<(String, usize)> = family
            .params_fields()
            .iter()
            .map(|(n, o)| (n.to_string(), *o))
            .collect();
        assert_eq!(
            wgsl,
            rust,
            "{}: Params differs from its Rust struct",
            family.file()
        );
        assert_eq!(
            *span as usize,
            4 * rust.len(),
            "{}: Params size",
            family.file()
        );
        for m in members {
            assert!(
                matches!(
                    module.types[m.ty].inner,
                    naga::TypeInner::Scalar(naga::Scalar::U32)
                ),
                "{}: Params.{:?} is not a u32",
                family.file(),
                m.name
            );
        }
    }
}

/// The subgroup size the WGSL is written for (`SG`) is the one the runner plans for.
#[test]
fn subgroup_size_is_one_constant() {
    let src = Family::Conv.source_with_subgroups(Precision::F32);
    let line = format!(
        "const SG: u32 = {}u;",
        regnet_wgpu::gpu::kernels::SUBGROUP_SIZE
    );
    assert!(src.contains(&line), "subgroup.wgsl lacks `{line}`");
    let probe = include_str!("../shaders/subgroup_probe.wgsl");
    let eight = format!("size == {}u", regnet_wgpu::gpu::kernels::SUBGROUP_SIZE);
    assert!(
        probe.contains(&eight),
        "subgroup_probe.wgsl lacks `{eight}`"
    );
}

/// The expressions a store's pointer goes through, from the store down to a global variable.
fn pointer_chain(
    f: &naga::Function,
    mut e: naga::Handle<naga::Expression>,
) -> Option<(naga::Handle<naga::GlobalVariable>, Vec<Option<u32>>)> {
    let mut steps = Vec::new();
    loop {
        match f.expressions[e] {
            naga::Expression::GlobalVariable(g) => {
                steps.reverse();
                return Some((g, steps));
            }
            naga::Expression::Access { base, .. } => {
                steps.push(None);
                e = base;
            }
            naga::Expression::AccessIndex { base, index } => {
                steps.push(Some(index));
                e = base;
            }
            _ => return None,
        }
    }
}

fn stores(block: &naga::Block, out: &mut Vec<naga::Handle<naga::Expression>>) {
    for s in block.iter() {
        match s {
            naga::Statement::Store { pointer, .. } => out.push(*pointer),
            naga::Statement::Block(b) => stores(b, out),
            naga::Statement::If { accept, reject, .. } => {
                stores(accept, out);
                stores(reject, out);
            }
            naga::Statement::Switch { cases, .. } => {
                cases.iter().for_each(|c| stores(&c.body, out))
            }
            naga::Statement::Loop {
                body, continuing, ..
            } => {
                stores(body, out);
                stores(continuing, out);
            }
            _ => {}
        }
    }
}

/// No kernel writes one component of a vector in storage: WGSL's memory model lets such a
/// write touch the whole vector, a data race when other invocations write its other components
/// (squeeze_excite.wgsl's scratch did).
#[test]
fn no_kernel_writes_part_of_a_vector_in_storage() {
    for family in Family::ALL {
        for src in [
            family.source(Precision::F32),
            family.source_with_subgroups(Precision::F16),
        ] {
            let module = naga::front::wgsl::parse_str(&src).unwrap();
            let functions = module
                .functions
                .iter()
                .map(|(_, f)| f)
                .chain(module.entry_points.iter().map(|e| &e.function));
            for f in functions {
                let mut ptrs = Vec::new();
                stores(&f.body, &mut ptrs);
                for p in ptrs {
                    let Some((g, steps)) = pointer_chain(f, p) else {
                        continue;
                    };
                    let global = &module.global_variables[g];
                    if !matches!(global.space, naga::AddressSpace::Storage { .. }) {
                        continue;
                    }
                    let mut ty = &module.types[global.ty].inner;
                    for step in steps {
                        ty = match (ty, step) {
                            (naga::TypeInner::Array { base, .. }, _) => &module.types[*base].inner,
                            (naga::TypeInner::Struct { members, .. }, Some(i)) => {
                                &module.types[members[i as usize].ty].inner
                            }
                            (naga::TypeInner::Vector { .. }, _) => panic!(
                                "{}: a store to one component of a vector in storage `{}`",
                                family.file(),
                                global.name.clone().unwrap_or_default()
                            ),
                            _ => break,
                        };
                    }
                }
            }
        }
    }
}

/// The register arrays' sizes the tile rules are written against are the WGSL's.
#[test]
fn shader_constants_match_the_tile_rules() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for (file, name, value) in regnet_wgpu::gpu::tiling::SHADER_CONSTANTS {
        let src = std::fs::read_to_string(dir.join(file)).unwrap();
        let decl = format!("const {name}: u32 = {value}u;");
        assert!(src.contains(&decl), "{file} lacks `{decl}`");
    }
}
