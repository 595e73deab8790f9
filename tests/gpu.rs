//! The WGSL path against torchvision's float64 outputs, on whatever adapter wgpu finds
//! (lavapipe in CI). A missing adapter is a failure, not a skip.

mod common;

use common::*;
use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions, Tiling};
use regnet_wgpu::{zoo, Plan, Tensor, Weights};

/// f16 storage must land this close to torchvision's logits (the WGSL-path issue's bound).
const F16_REL_TOL: f64 = 5e-3;

fn check(fx: &Fixture, precision: Precision, tol: f64) {
    let plan = fx.plan();
    let weights = fx.load_weights(&plan);
    let (runner, e) = check_gpu_against(
        &fx.name,
        (&plan, &weights),
        &fx.io,
        &fx.taps(),
        precision,
        tol,
    );
    eprintln!(
        "{} gpu {precision:?}: logits rel err {e:.2e}; {} dispatches, {} pipelines, peak activations {} KiB",
        fx.name,
        runner.dispatches(),
        runner.pipelines(),
        runner.peak_activation_bytes() / 1024
    );
}

#[test]
fn tiny_fixtures_f32_match_torchvision() {
    for name in TINY {
        check(
            &Fixture::load(&fixtures_dir(), name),
            Precision::F32,
            F32_REL_TOL,
        );
    }
}

#[test]
fn zoo_fixtures_f32_match_torchvision() {
    let Some(dir) = external_fixtures_for("gpu f32 zoo fixtures") else {
        return;
    };
    for name in ZOO {
        check(&Fixture::load(&dir, name), Precision::F32, F32_REL_TOL);
    }
}

#[test]
fn f16_matches_torchvision_within_5e3() {
    if !gpu_ctx(Precision::F32).has_f16() && GpuContext::new(Precision::F16).is_err() {
        // The error for a missing feature is checked here; the accuracy needs the feature.
        let e = GpuContext::new(Precision::F16).unwrap_err().to_string();
        assert!(e.contains("shader-f16"), "{e}");
        skip("gpu f16 accuracy: the adapter lacks shader-f16");
        return;
    }
    for name in TINY {
        check(
            &Fixture::load(&fixtures_dir(), name),
            Precision::F16,
            F16_REL_TOL,
        );
    }
    if let Some(dir) = external_fixtures_for("gpu f16 zoo fixtures") {
        for name in ZOO {
            check(&Fixture::load(&dir, name), Precision::F16, F16_REL_TOL);
        }
    }
}

/// Shapes the fixtures do not cover: batch 1 and 3, sizes down to 1x1, odd and non-square,
/// against the CPU backend (itself checked against torchvision in tests/cpu.rs).
#[test]
fn odd_shapes_match_the_cpu_backend() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    for (n, h, w) in [(1, 1, 1), (3, 2, 5), (1, 7, 3), (2, 33, 17), (1, 64, 48)] {
        let plan = Plan::new(&fx.params, h, w).unwrap();
        let weights = fx.load_weights(&plan);
        let what = format!("tiny_y {n}x{h}x{w}");
        assert_gpu_equals_cpu(&what, &plan, &weights, &test_input(n, h, w));
    }
}

/// A zoo model with random weights: GPU equals CPU (covers the widest group counts).
#[test]
fn zoo_model_random_weights_match_the_cpu_backend() {
    let plan = Plan::new(zoo::get("regnet_x_200mf").unwrap(), 64, 64).unwrap();
    let weights = Weights::random(&plan, 7);
    let x = Tensor::new(
        vec![2, 3, 64, 64],
        (0..2 * 3 * 64 * 64)
            .map(|i| ((i % 255) as f32 / 127.0) - 1.0)
            .collect(),
    )
    .unwrap();
    let cpu = cpu_logits(&plan, &weights, &x);
    let opts = RunnerOptions {
        batch: 2,
        ..Default::default()
    };
    let runner = GpuRunner::new(gpu_ctx(Precision::F32), &plan, &weights, opts).unwrap();
    let gpu = runner.run(&x).unwrap();
    assert_close("regnet_x_200mf random", &gpu, &cpu, F32_REL_TOL);
    // Runs are repeatable on one runner (buffers are reused, nothing leaks between runs).
    let again = runner.run(&x).unwrap();
    assert_eq!(gpu, again);
}

/// The subgroup GEMM's edge cases, against the CPU backend: group width 5 makes the blocks 105
/// channels wide, so the last 1x1 conv of each block reads an odd number of channels (the last
/// round of two has one) into 7 blocks of 16 (subgroups span two tiles, and at batch 2 two
/// images), on 7x7 planes (realigned reads) and 14x14 ones, with SE gating and a residual.
#[test]
fn subgroup_gemm_edges_match_the_cpu_backend() {
    let params: regnet_wgpu::RegNetParams = "depth=2,w0=104,wa=8,wm=2,group_width=5,se=0.25"
        .parse()
        .unwrap();
    for (n, size) in [(2, 28), (1, 56)] {
        let plan = Plan::new(&params, size, size).unwrap();
        let weights = Weights::random(&plan, 3);
        let x = test_input(n, size, size);
        let cpu = cpu_logits(&plan, &weights, &x);
        for subgroups in [true, false] {
            let opts = RunnerOptions {
                batch: n,
                subgroups,
                tiling: Some(Tiling::Cpu),
                // The subgroup entry points read storage operands only.
                textures: Some(false),
                ..Default::default()
            };
            let runner = GpuRunner::new(gpu_ctx(Precision::F32), &plan, &weights, opts).unwrap();
            // The subgroup kernels really ran (or the device has none, and that is said).
            let ran = runner.subgroup_dispatches();
            if !subgroups {
                assert_eq!(ran, 0);
            } else if gpu_ctx(Precision::F32).has_subgroups() {
                assert!(ran >= 2, "{ran} subgroup dispatches");
            } else {
                skip_optional("subgroup kernels: the device has no probed 8-lane subgroups");
            }
            let gpu = runner.run(&x).unwrap();
            assert_close(
                &format!("group width 5, {n}x{size}x{size}, subgroups {subgroups}"),
                &gpu,
                &cpu,
                F32_REL_TOL,
            );
        }
    }
}

#[test]
fn wrong_input_shape_is_an_error() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_x");
    let plan = fx.plan();
    let runner = GpuRunner::new(
        gpu_ctx(Precision::F32),
        &plan,
        &fx.load_weights(&plan),
        RunnerOptions::default(),
    )
    .unwrap();
    let e = runner
        .run(&Tensor::zeros(vec![2, 3, 32, 32]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("built for input"), "{e}");
}

/// `profile_async` (what the browser's bench page calls) times every dispatch, by label, as
/// the blocking `profile` does; polled here like a frame loop would, without blocking.
#[test]
fn profile_async_times_every_dispatch() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let x = fx.input().clone();
    let opts = RunnerOptions {
        batch: x.shape[0],
        ..Default::default()
    };
    let runner = GpuRunner::new(
        gpu_ctx(Precision::F32),
        &plan,
        &fx.load_weights(&plan),
        opts,
    )
    .unwrap();
    let Some(blocking) = runner.profile(&x).unwrap() else {
        skip("the adapter has no timestamp-query: profile_async");
        return;
    };
    let mut fut = std::pin::pin!(runner.profile_async(&x));
    let mut cx = Context::from_waker(Waker::noop());
    let mut polls = 0;
    let rows = loop {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            break r.unwrap().expect("timestamps, as profile had");
        }
        polls += 1;
        assert!(polls < 10_000_000, "profile_async never completed");
        std::thread::yield_now();
    };
    let labels: Vec<&str> = rows.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, runner.dispatch_labels());
    assert_eq!(
        labels,
        blocking.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>()
    );
    assert!(
        rows.iter().all(|(_, ms)| ms.is_finite() && *ms >= 0.0),
        "{rows:?}"
    );
    assert!(rows.iter().any(|(_, ms)| *ms > 0.0), "{rows:?}");
}

/// Convolutions whose packed weights exceed the binding limit are split into dispatches over
/// whole groups or channel ranges (what RegNetY-128GF needs on lavapipe's 128 MiB): forced here
/// with tiny limits (down to a few channels' weights), the results still match torchvision. The
/// device's own limit is tested in tests/robustness.rs.
#[test]
fn split_convolutions_match_torchvision() {
    for name in [
        "tiny_y",
        "tiny_depthwise",
        "tiny_clipped_groups",
        "tiny_odd_input",
    ] {
        let fx = Fixture::load(&fixtures_dir(), name);
        let plan = fx.plan();
        let weights = fx.load_weights(&plan);
        // The smallest limit that holds 4 output channels of every conv's packed weights.
        let min = plan
            .ops
            .iter()
            .filter_map(|op| match &op.kind {
                regnet_wgpu::plan::OpKind::Conv2d(c) => {
                    Some((c.in_channels / c.groups * c.kernel[0] * c.kernel[1] * 16) as u64)
                }
                regnet_wgpu::plan::OpKind::Linear(l) => Some(l.in_features.div_ceil(4) as u64 * 16),
                _ => None,
            })
            .max()
            .unwrap();
        for limit in [min, 3 * min, 10 * min] {
            let opts = RunnerOptions {
                batch: fx.input().shape[0],
                max_binding_bytes: Some(limit),
                ..Default::default()
            };
            let runner = GpuRunner::new(gpu_ctx(Precision::F32), &plan, &weights, opts).unwrap();
            assert!(
                limit > min || runner.dispatches() > plan.ops.len(),
                "{name}: limit {limit} split nothing"
            );
            let logits = runner.run(fx.input()).unwrap();
            assert_close(
                &format!("{name} split at {limit} bytes"),
                &logits,
                &fx.io["logits"],
                F32_REL_TOL,
            );
        }
    }
}

/// Both tile rule sets (the CPU-backed adapters' and the GPUs'), with and without the subgroup
/// GEMM, with the convolutions' operands in storage buffers and in textures, compute the same
/// thing: each, forced on this adapter, matches torchvision on every tiny fixture (odd planes,
/// clipped and depthwise groups, batches).
#[test]
fn every_tiling_matches_torchvision() {
    eprintln!(
        "subgroup GEMM available: {}",
        gpu_ctx(Precision::F32).has_subgroups()
    );
    for (tiling, subgroups, textures) in [
        (Tiling::Cpu, true, false),
        (Tiling::Cpu, false, false),
        (Tiling::Cpu, true, true),
        (Tiling::Gpu, true, false),
        (Tiling::Gpu, true, true),
    ] {
        for name in TINY {
            let fx = Fixture::load(&fixtures_dir(), name);
            let plan = fx.plan();
            let weights = fx.load_weights(&plan);
            let opts = RunnerOptions {
                batch: fx.input().shape[0],
                tiling: Some(tiling),
                subgroups,
                textures: Some(textures),
                ..Default::default()
            };
            let runner = GpuRunner::new(gpu_ctx(Precision::F32), &plan, &weights, opts).unwrap();
            if !subgroups || tiling == Tiling::Gpu {
                // The GPU rules never pick the subgroup kernels (untested on GPUs).
                assert_eq!(runner.subgroup_dispatches(), 0);
            }
            if textures {
                // Every convolution reads textures.
                assert!(
                    runner.texture_dispatches() > 0,
                    "{name}: no texture operands"
                );
            } else {
                assert_eq!(runner.texture_dispatches(), 0);
            }
            let logits = runner.run(fx.input()).unwrap();
            assert_close(
                &format!(
                    "{name} with {tiling:?} tiles, subgroups {subgroups}, textures {textures}"
                ),
                &logits,
                &fx.io["logits"],
                F32_REL_TOL,
            );
        }
    }
}
