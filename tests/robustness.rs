//! The runner on device limits, bad values and shared models (issue "Robustness round 2"),
//! against the CPU backend (itself checked against torchvision in tests/cpu.rs) and
//! torchvision's fixtures. Needs an adapter (lavapipe in CI).

mod common;

use std::sync::OnceLock;

use common::*;
use regnet_wgpu::gpu::{GpuContext, GpuModel, GpuRunner, Precision, RunnerOptions, ShaderChecks};
use regnet_wgpu::{zoo, Error, Plan, Tensor, Weights};

/// f16 storage must land this close to the reference.
const F16_REL_TOL: f64 = 5e-3;

fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new(Precision::F16)
            .or_else(|_| GpuContext::new(Precision::F32))
            .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
    })
}

/// A device as a host makes it, with `limits` and `shader-f16` when the adapter has it.
fn device_with(limits: impl FnOnce(wgpu::Limits) -> wgpu::Limits) -> GpuContext {
    regnet_wgpu::gpu::quiet_headless_wayland();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let adapter =
        pollster::block_on(wgpu::Instance::new(desc).request_adapter(&Default::default()))
            .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
    let features = adapter.features() & wgpu::Features::SHADER_F16;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("limited host"),
        required_features: features,
        required_limits: limits(wgpu::Limits::default()),
        ..Default::default()
    }))
    .unwrap();
    GpuContext::from_device(device, queue, adapter.get_info())
}

fn gpu_logits(
    ctx: &GpuContext,
    plan: &Plan,
    weights: &Weights,
    x: &Tensor,
    opts: RunnerOptions,
) -> Tensor {
    GpuRunner::new(
        ctx,
        plan,
        weights,
        RunnerOptions {
            batch: x.shape[0],
            ..opts
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .run(x)
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Every zoo model, RegNetY-128GF included, builds on a device with WebGPU's default limits
/// (128 MiB per storage binding, like lavapipe) in f32 and f16 and equals the CPU backend.
/// Before the splitter counted packed bytes, 128GF's 7392x7392 1x1 conv failed to build in f32.
#[test]
fn every_zoo_model_runs_on_default_limits() {
    let host = device_with(|l| l);
    let f16 = host.has_f16();
    if !f16 {
        skip("zoo models in f16: the adapter lacks shader-f16");
    }
    for name in zoo::names() {
        let plan = Plan::new(zoo::get(name).unwrap(), 32, 32).unwrap();
        let weights = Weights::random(&plan, 11);
        let x = test_input(1, 32, 32);
        let cpu = cpu_logits(&plan, &weights, &x);
        let g32 = gpu_logits(&host, &plan, &weights, &x, RunnerOptions::default());
        assert_close(&format!("{name} f32"), &g32, &cpu, F32_REL_TOL);
        if f16 {
            let opts = RunnerOptions {
                precision: Precision::F16,
                ..Default::default()
            };
            let g16 = gpu_logits(&host, &plan, &weights, &x, opts);
            assert_close(&format!("{name} f16"), &g16, &cpu, F16_REL_TOL);
            assert_same_top1(name, &g16, &cpu);
        }
    }
}

/// The device's own binding limit (not only RunnerOptions::max_binding_bytes) drives the
/// split: on a 1 MiB device, RegNetX-1.6GF's convolutions (3.3 MB for the widest) and its
/// 1000 x 912 head (3.6 MB in f32, 1.8 MB in f16) are split and still exact. (Squeeze-and-excitation weights are not
/// split: over the limit they are refused with a named error.)
#[test]
fn convolutions_split_at_a_1_mib_device_limit() {
    let tiny = device_with(|l| wgpu::Limits {
        max_storage_buffer_binding_size: 1 << 20,
        ..l
    });
    let plan = Plan::new(zoo::get("regnet_x_1_6gf").unwrap(), 32, 32).unwrap();
    let weights = Weights::random(&plan, 5);
    let x = test_input(2, 32, 32);
    let cpu = cpu_logits(&plan, &weights, &x);
    for precision in [Precision::F32, Precision::F16] {
        if precision == Precision::F16 && !tiny.has_f16() {
            skip("1 MiB split in f16: the adapter lacks shader-f16");
            continue;
        }
        let opts = RunnerOptions {
            batch: 2,
            precision,
            ..Default::default()
        };
        let runner = GpuRunner::new(&tiny, &plan, &weights, opts).unwrap();
        assert!(
            runner.dispatches() > plan.ops.len(),
            "{}",
            runner.dispatches()
        );
        let head_parts = runner
            .dispatch_labels()
            .iter()
            .filter(|l| l.starts_with("fc (outputs"))
            .count();
        assert!(head_parts >= 2, "the head ran in {head_parts} parts");
        let tol = if precision == Precision::F32 {
            F32_REL_TOL
        } else {
            F16_REL_TOL
        };
        assert_close(
            &format!("1 MiB split {precision:?}"),
            &runner.run(&x).unwrap(),
            &cpu,
            tol,
        );
    }
}

/// Checked shaders (the default) and unchecked ones give identical results on every fixture.
#[test]
fn checked_and_unchecked_shaders_agree_on_every_fixture() {
    let mut fixtures: Vec<Fixture> = TINY
        .iter()
        .map(|n| Fixture::load(&fixtures_dir(), n))
        .collect();
    if let Some(dir) = external_fixtures_for("checked vs unchecked shaders on the zoo fixtures") {
        fixtures.extend(ZOO.iter().map(|n| Fixture::load(&dir, n)));
    }
    for fx in &fixtures {
        let plan = fx.plan();
        let weights = fx.load_weights(&plan);
        let batch = fx.input().shape[0];
        let checked = RunnerOptions {
            batch,
            ..Default::default()
        };
        // SAFETY: the runner sizes every buffer it binds; this test is what shows it.
        let unchecked = RunnerOptions {
            batch,
            shader_checks: unsafe { ShaderChecks::unchecked() },
            ..Default::default()
        };
        let a = GpuRunner::new(ctx(), &plan, &weights, checked)
            .unwrap()
            .run(fx.input())
            .unwrap();
        let b = GpuRunner::new(ctx(), &plan, &weights, unchecked)
            .unwrap()
            .run(fx.input())
            .unwrap();
        assert_eq!(a, b, "{}: checked and unchecked differ", fx.name);
        assert_close(&fx.name, &a, &fx.io["logits"], F32_REL_TOL);
    }
}

/// An input f16 cannot hold is an error naming the input; one that f16 holds but whose
/// activations overflow is an error naming the first op that overflowed (it used to return
/// finite, wrong logits: ReLU flushed the NaN). f32 computes both.
#[test]
fn f16_overflow_is_an_error_not_a_wrong_answer() {
    if !ctx().has_f16() {
        skip("f16 overflow detection: the adapter lacks shader-f16");
        return;
    }
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let weights = fx.load_weights(&plan);
    let shape = fx.input().shape.clone();
    let opts = |precision| RunnerOptions {
        batch: shape[0],
        precision,
        ..Default::default()
    };
    let r16 = GpuRunner::new(ctx(), &plan, &weights, opts(Precision::F16)).unwrap();
    let r32 = GpuRunner::new(ctx(), &plan, &weights, opts(Precision::F32)).unwrap();
    for (value, culprit) in [(7e4f32, "the input"), (6e4, "`")] {
        let x = Tensor::new(shape.clone(), vec![value; shape.iter().product()]).unwrap();
        let e = r16.run(&x).expect_err("f16 cannot hold these activations");
        assert!(
            matches!(&e, Error::PrecisionOverflow { precision: "f16", what } if what.contains(culprit)),
            "{value}: {e}"
        );
        let cpu = cpu_logits(&plan, &weights, &x);
        assert_close(
            &format!("f32 at {value}"),
            &r32.run(&x).unwrap(),
            &cpu,
            F32_REL_TOL,
        );
    }
    // The runner still works after an overflow (the status word is cleared per inference).
    let ok = r16.run(fx.input()).unwrap();
    assert_close("f16 after an overflow", &ok, &fx.io["logits"], F16_REL_TOL);
}

/// Weights f16 cannot hold are refused when the model is built, naming the tensor.
#[test]
fn f16_weights_out_of_range_are_named() {
    if !ctx().has_f16() {
        skip("f16 weight range: the adapter lacks shader-f16");
        return;
    }
    let fx = Fixture::load(&fixtures_dir(), "tiny_x");
    let plan = fx.plan();
    let mut weights = fx.load_weights(&plan);
    let name = plan.ops[0].name.clone();
    weights.conv_mut(&name).unwrap().weight[3] = 1e5;
    let opts = RunnerOptions {
        precision: Precision::F16,
        batch: 2,
        ..Default::default()
    };
    let e = GpuRunner::new(ctx(), &plan, &weights, opts)
        .err()
        .expect("1e5 in f16");
    assert!(e.to_string().contains(&name), "{e}");
}

/// Plans whose element counts overflow the kernels' index arithmetic are refused by name
/// before anything is allocated for them.
#[test]
fn index_overflow_is_refused() {
    let plan = Plan::new(zoo::get("regnet_x_200mf").unwrap(), 1024, 1024).unwrap();
    let weights = Weights::random(&plan, 1);
    let opts = RunnerOptions {
        batch: 256,
        ..Default::default()
    };
    let e = GpuRunner::new(ctx(), &plan, &weights, opts)
        .err()
        .expect("2^31 elements");
    assert!(matches!(e, Error::IndexOverflow { .. }), "{e}");
}

/// Errors a host can match: a device limit names the limit and the values.
#[test]
fn device_limits_are_matchable_errors() {
    let tight = device_with(|l| wgpu::Limits {
        max_storage_buffer_binding_size: 1 << 16,
        ..l
    });
    let plan = Plan::new(zoo::get("regnet_x_200mf").unwrap(), 64, 64).unwrap();
    let e = GpuRunner::new(
        &tight,
        &plan,
        &Weights::random(&plan, 2),
        RunnerOptions::default(),
    )
    .err()
    .expect("64 KiB bindings");
    match e {
        Error::DeviceLimit {
            limit,
            have,
            needed,
            ..
        } => {
            assert_eq!(limit, "max_storage_buffer_binding_size");
            assert_eq!(have, 1 << 16);
            assert!(needed > have);
        }
        e => panic!("not a DeviceLimit: {e}"),
    }
}

/// Runners of several batch and input sizes share one model's weights and pipelines, and
/// each equals a runner of its own.
#[test]
fn runners_share_a_model() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let weights = fx.load_weights(&plan);
    let model = GpuModel::new(ctx(), &plan, &weights, &RunnerOptions::default()).unwrap();
    let batch2 = GpuRunner::with_model(
        &model,
        &plan,
        RunnerOptions {
            batch: fx.input().shape[0],
            ..Default::default()
        },
    )
    .unwrap();
    assert_close(
        "shared model",
        &batch2.run(fx.input()).unwrap(),
        &fx.io["logits"],
        F32_REL_TOL,
    );
    let pipelines = model.pipelines();
    let other = Plan::new(&fx.params, 40, 24).unwrap();
    let x = test_input(3, 40, 24);
    let small = GpuRunner::with_model(
        &model,
        &other,
        RunnerOptions {
            batch: 3,
            ..Default::default()
        },
    )
    .unwrap();
    // (Counted before another model on the same context adds its own: contexts share kernels.)
    assert!(model.pipelines() <= pipelines + small.pipelines());
    assert_eq!(small.weight_bytes(), batch2.weight_bytes());
    let own = gpu_logits(ctx(), &other, &weights, &x, RunnerOptions::default());
    assert_eq!(small.run(&x).unwrap(), own);
    // Another model's plan, or other model-level options, are refused by name.
    let x_plan = Fixture::load(&fixtures_dir(), "tiny_x").plan();
    let e = GpuRunner::with_model(&model, &x_plan, RunnerOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("not the model's"), "{e}");
    let e = GpuRunner::with_model(
        &model,
        &plan,
        RunnerOptions {
            precision: Precision::F16,
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("precision"), "{e}");
}

/// A host's input buffer without COPY_DST: run() says so (it writes the input); encode() runs.
/// Without COPY_SRC where the runner copies its input into a texture: set_input_buffer says so.
#[test]
fn host_input_buffers_and_run_agree() {
    let fx = Fixture::load(&fixtures_dir(), "tiny_x");
    let plan = fx.plan();
    let weights = fx.load_weights(&plan);
    let opts = RunnerOptions {
        batch: fx.input().shape[0],
        ..Default::default()
    };
    let mut runner = GpuRunner::new(ctx(), &plan, &weights, opts).unwrap();
    let size = runner.input_buffer_size();
    let host_buffer = |usage| {
        ctx().device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("host input"),
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let storage = wgpu::BufferUsages::STORAGE;
    if runner.texture_dispatches() > 0 {
        // Texture operands copy the input into the stem's texture: COPY_SRC is named.
        let e = runner.set_input_buffer(host_buffer(storage)).unwrap_err();
        assert!(e.to_string().contains("COPY_SRC"), "{e}");
    }
    let buf = host_buffer(storage | wgpu::BufferUsages::COPY_SRC);
    runner.set_input_buffer(buf).unwrap();
    let e = runner.run(fx.input()).unwrap_err();
    assert!(e.to_string().contains("COPY_DST"), "{e}");
}
