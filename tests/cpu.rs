//! The CPU backend against torchvision's float64 outputs: logits and every stage output.

mod common;

use common::*;
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::{Plan, Tensor, Weights};

fn check(fx: &Fixture) {
    let plan = fx.plan();
    let weights = fx.load_weights(&plan);
    let cpu = CpuBackend::new(plan, weights).unwrap();
    let taps = fx.taps();
    let tap_refs: Vec<&str> = taps.iter().map(String::as_str).collect();
    let (logits, outs) = cpu.run_with_taps(fx.input(), &tap_refs).unwrap();
    assert_eq!(outs.len(), taps.len());
    for (name, t) in &outs {
        assert_close(&format!("{} {name}", fx.name), t, &fx.io[name], F32_REL_TOL);
    }
    let e = assert_close(
        &format!("{} logits", fx.name),
        &logits,
        &fx.io["logits"],
        F32_REL_TOL,
    );
    assert_same_top1(&fx.name, &logits, &fx.io["logits"]);
    eprintln!("{}: logits rel err {e:.2e}", fx.name);
}

#[test]
fn tiny_fixtures_match_torchvision() {
    for name in TINY {
        check(&Fixture::load(&fixtures_dir(), name));
    }
}

#[test]
fn zoo_fixtures_match_torchvision() {
    let Some(dir) = external_fixtures_for("cpu zoo fixtures") else {
        return;
    };
    for name in ZOO {
        check(&Fixture::load(&dir, name));
    }
}

/// Batch items are independent: one image alone gives the same logits as inside a batch.
#[test]
fn batch_items_are_independent() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let cpu = CpuBackend::new(plan.clone(), fx.load_weights(&plan)).unwrap();
    let all = cpu.run(fx.input()).unwrap();
    let s = &fx.input().shape;
    let per = s[1] * s[2] * s[3];
    for n in 0..s[0] {
        let one = Tensor::new(
            vec![1, s[1], s[2], s[3]],
            fx.input().data[n * per..(n + 1) * per].to_vec(),
        )
        .unwrap();
        let l = cpu.run(&one).unwrap();
        let k = all.shape[1];
        let reference = Tensor::new(vec![1, k], all.data[n * k..(n + 1) * k].to_vec()).unwrap();
        assert_close("single image vs batch", &l, &reference, 1e-6);
    }
}

/// `CpuBackend::profile`: a time for every op, in the plan's order, at the plan's size and
/// another, for one image and a batch split into parts; the run still gives torchvision's
/// logits afterwards (profiling leaves the backend as it was).
#[test]
fn every_op_is_timed() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let cpu = CpuBackend::new(plan.clone(), fx.load_weights(&plan)).unwrap();
    let s = &fx.input().shape;
    for shape in [s.clone(), vec![1, 3, 24, 40], vec![5, 3, 17, 17]] {
        let times = cpu.profile(&Tensor::zeros(shape.clone())).unwrap();
        let names: Vec<&str> = times.iter().map(|t| t.0.as_str()).collect();
        let ops: Vec<&str> = plan.ops.iter().map(|op| op.name.as_str()).collect();
        assert_eq!(names, ops, "{shape:?}");
        assert!(
            times.iter().all(|t| t.1.is_finite() && t.1 >= 0.0),
            "{times:?}"
        );
        assert!(times.iter().map(|t| t.1).sum::<f64>() > 0.0);
    }
    let logits = cpu.run(fx.input()).unwrap();
    assert_close(
        "tiny_y after profiling",
        &logits,
        &fx.io["logits"],
        F32_REL_TOL,
    );
}

/// Any H, W >= 1 runs, down to 1x1 (every stage then is 1x1), with finite logits.
#[test]
fn tiny_and_odd_sizes_run() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let cpu = CpuBackend::new(plan.clone(), fx.load_weights(&plan)).unwrap();
    for (h, w) in [(1, 1), (1, 7), (5, 2), (3, 3), (17, 9)] {
        let x = Tensor::new(
            vec![2, 3, h, w],
            (0..2 * 3 * h * w)
                .map(|i| (i as f32 * 0.37).sin())
                .collect(),
        )
        .unwrap();
        let l = cpu.run(&x).unwrap();
        assert_eq!(l.shape, [2, 10]);
        assert!(l.data.iter().all(|v| v.is_finite()), "{h}x{w}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let plan = Plan::new(regnet_wgpu::zoo::get("regnet_x_200mf").unwrap(), 32, 32).unwrap();
    let cpu = CpuBackend::new(plan.clone(), Weights::random(&plan, 1)).unwrap();
    for (shape, what) in [
        (vec![1, 3, 32], "rank"),
        (vec![1, 4, 32, 32], "channels"),
        (vec![0, 3, 32, 32], "empty"),
    ] {
        let t = Tensor::zeros(shape);
        let e = cpu.run(&t).unwrap_err().to_string();
        assert!(e.contains(what), "{e}");
    }
    let mut t = Tensor::zeros(vec![1, 3, 8, 8]);
    t.data[5] = f32::NAN;
    assert!(cpu.run(&t).unwrap_err().to_string().contains("non-finite"));
}

/// `CpuBackend` is `Send + Sync`, and one backend serves several threads at once.
#[test]
fn one_backend_from_several_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CpuBackend>();
    let fx = Fixture::load(&fixtures_dir(), "tiny_bottleneck_half");
    let plan = fx.plan();
    let cpu = std::sync::Arc::new(CpuBackend::new(plan.clone(), fx.load_weights(&plan)).unwrap());
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let cpu = cpu.clone();
            let x = fx.input().clone();
            std::thread::spawn(move || (0..4).map(|_| cpu.run(&x).unwrap()).collect::<Vec<_>>())
        })
        .collect();
    for h in handles {
        for logits in h.join().unwrap() {
            assert_close("threaded cpu", &logits, &fx.io["logits"], F32_REL_TOL);
        }
    }
}
