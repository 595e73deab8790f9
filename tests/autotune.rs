//! The autotuner (`gpu::autotune`) changes speed, never results: every candidate tile, subgroup
//! entry point and workgroup size it may choose computes torch's convolution (the cases of
//! tests/fixtures/tiles, made by `scripts/gen_op_fixtures.py --tiles`: 1x1 GEMMs with enough
//! channel blocks for the subgroup GEMM, grouped, depthwise, strided and 7x7 direct convs); a
//! model run with a table the tuner made gives torchvision's logits; the table's file round-trips
//! and a damaged one loads as nothing.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{fixtures_dir, gpu_ctx, Fixture, F32_REL_TOL};
use regnet_wgpu::gpu::autotune::{
    candidates, tune, ShapeClass, TileChoice, TuneBudget, TuneCache, TuneTable, TunedChoice,
};
use regnet_wgpu::gpu::lower::is_pointwise;
use regnet_wgpu::gpu::{GpuOp, GpuRunner, Precision, RunnerOptions};
use regnet_wgpu::ops::{OpFile, Operation};
use regnet_wgpu::plan::OpKind;

fn tile_cases() -> Vec<PathBuf> {
    common::fixture_files("tiles", 8)
}

/// The largest elementwise error over the largest reference magnitude, and the error of the
/// whole tensor by the norm.
fn errors(got: &[f32], want: &[f64]) -> (f64, f64) {
    let (mut d2, mut r2, mut dmax, mut rmax) = (0f64, 0f64, 0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        let d = (g as f64 - w).abs();
        d2 += d * d;
        r2 += w * w;
        dmax = dmax.max(d);
        rmax = rmax.max(w.abs());
    }
    (dmax / rmax.max(1e-30), d2.sqrt() / r2.sqrt().max(1e-30))
}

/// The workgroup sizes the candidates take in turn (the tuner tries each on its winner).
const WGS: [u32; 4] = [8, 16, 32, 64];

#[test]
fn every_candidate_matches_torch() {
    let ctx = gpu_ctx(Precision::F32);
    let mut ran = 0;
    for path in tile_cases() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let file = OpFile::read(&path).unwrap();
        let op = Operation::parse(&file.metadata["op"], &file.params())
            .and_then(|o| o.build(&file.tensors))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let OpKind::Conv2d(c) = &op.ops[0].kind else {
            panic!("{name}: not a convolution")
        };
        let out = op.values[op.ops[0].output];
        let size = [out.height as u64, out.width as u64];
        let pw = is_pointwise(c);
        let class = ShapeClass::of(c, pw, c.out_channels, op.batch as u64, size);
        // Every candidate of the class, as if the rules had chosen the largest tile.
        let rules = TileChoice {
            tile: if pw { [16, 16] } else { [8, 8] },
            subgroup: true,
            wg: 64,
        };
        let (_, want) = file.output.as_ref().expect("reference");
        for (k, cand) in candidates(&class, rules, ctx.has_subgroups())
            .into_iter()
            .enumerate()
        {
            let choice = TileChoice {
                wg: WGS[k % WGS.len()],
                ..cand
            };
            let mut table = TuneTable::new();
            let entry = TunedChoice {
                choice,
                ms: 0.0,
                rules_ms: 0.0,
            };
            table.insert(class, entry);
            let opts = RunnerOptions {
                tuned: Some(Arc::new(table)),
                ..Default::default()
            };
            let got = GpuOp::with_options(ctx, &op, &opts)
                .and_then(|g| g.run(&file.tensors))
                .unwrap_or_else(|e| panic!("{name} {choice:?}: {e}"));
            let (elem, norm) = errors(&got.data, want);
            println!("{name} ({class}) {choice:?}: {elem:.1e} elementwise, {norm:.1e} by the norm");
            assert!(
                elem <= F32_REL_TOL && norm <= F32_REL_TOL,
                "{name} {choice:?}: {elem:.2e} / {norm:.2e}"
            );
            ran += 1;
        }
    }
    assert!(ran >= 40, "{ran} candidates run");
}

#[test]
fn a_tuned_model_matches_torchvision_and_its_table_keeps() {
    let ctx = gpu_ctx(Precision::F32);
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let weights = fx.load_weights(&plan);
    let mut opts = RunnerOptions {
        batch: fx.input().shape[0],
        ..Default::default()
    };
    let dir = std::env::temp_dir().join(format!("regnet-wgpu-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = TuneCache::open(&dir, ctx, &opts);
    assert!(cache.load().is_empty());
    let mut table = TuneTable::new();
    // Every class must be tuned here, however slow the machine is today: no time limit
    // that a loaded machine could reach (the default two minutes did, under CI's load).
    let budget = TuneBudget {
        rounds: 1,
        time: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let report = tune(ctx, &plan.graph(), &opts, &mut table, &budget).unwrap();
    assert!(!report.tuned.is_empty() && report.left == 0, "{report:?}");
    assert_eq!(table.len(), report.tuned.len());
    for t in &report.tuned {
        assert!(t.entry.ms <= t.entry.rules_ms, "{t:?}");
    }
    // A second call has nothing left to do.
    let again = tune(ctx, &plan.graph(), &opts, &mut table, &budget).unwrap();
    assert!(again.tuned.is_empty() && again.cached == report.tuned.len());
    cache.save(&table).unwrap();
    let loaded = cache.load();
    assert_eq!(loaded.len(), table.len());
    for (class, e) in table.entries() {
        assert_eq!(loaded.get(&class), Some(e.choice), "{class}");
    }
    // Another precision is another file; a damaged file loads as nothing.
    let f16 = RunnerOptions {
        precision: Precision::F16,
        ..opts.clone()
    };
    assert_ne!(TuneCache::open(&dir, ctx, &f16).path(), cache.path());
    std::fs::write(cache.path(), b"{\"key\": 3").unwrap();
    assert!(cache.load().is_empty());
    let _ = std::fs::remove_dir_all(&dir);

    opts.tuned = Some(Arc::new(table));
    let runner = GpuRunner::new(ctx, &plan, &weights, opts).unwrap();
    let logits = runner.run(fx.input()).unwrap();
    let e = common::assert_close(
        "tiny_y tuned logits",
        &logits,
        &fx.io["logits"],
        F32_REL_TOL,
    );
    common::assert_same_top1("tiny_y tuned logits", &logits, &fx.io["logits"]);
    println!(
        "tiny_y tuned ({} classes): logits rel err {e:.2e}",
        report.tuned.len()
    );
}
