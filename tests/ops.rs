//! The op library against torch and torchvision: every case of tests/fixtures/ops (random
//! shapes, strides, paddings, dilations and groups per op, drawn and computed in float64 by
//! scripts/gen_op_fixtures.py) on the CPU backend and on the GPU in f32 and f16, each within
//! 1e-4 (f32) or 5e-3 (f16) of the reference by the whole-tensor norm and by the largest
//! elementwise error.

mod common;

use std::path::PathBuf;

use regnet_wgpu::gpu::{GpuContext, GpuOp, Precision, RunnerOptions};
use regnet_wgpu::ops::{OpFile, OpGraph, Operation};
use regnet_wgpu::Tensor;

const F16_TOL: f64 = 5e-3;

fn cases() -> Vec<PathBuf> {
    common::fixture_files("ops", 100)
}

/// A case: its file, op and reference.
struct Case {
    name: String,
    file: OpFile,
    op: OpGraph,
}

fn load(path: &PathBuf) -> Case {
    let file = OpFile::read(path).unwrap();
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let op = Operation::parse(&file.metadata["op"], &file.params())
        .and_then(|o| o.build(&file.tensors))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Case { name, file, op }
}

/// Relative errors of `got` against the reference: by the norm, and the largest elementwise
/// error over the largest reference magnitude.
fn errors(case: &Case, got: &Tensor) -> (f64, f64) {
    let (shape, want) = case.file.output.as_ref().expect("reference output");
    assert_eq!(&got.shape, shape, "{}: shape", case.name);
    let (mut d2, mut r2, mut dmax, mut rmax) = (0f64, 0f64, 0f64, 0f64);
    for (&g, &w) in got.data.iter().zip(want) {
        let d = (g as f64 - w).abs();
        d2 += d * d;
        r2 += w * w;
        dmax = dmax.max(d);
        rmax = rmax.max(w.abs());
    }
    (d2.sqrt() / r2.sqrt().max(1e-30), dmax / rmax.max(1e-30))
}

fn check(case: &Case, got: &Tensor, tol: f64, what: &str) -> (f64, f64) {
    let (norm, max) = errors(case, got);
    assert!(
        norm <= tol && max <= tol,
        "{} on {what}: relative error {norm:.2e} by the norm, {max:.2e} elementwise (tolerance {tol:e})",
        case.name
    );
    (norm, max)
}

#[test]
fn every_op_on_the_cpu_matches_torch() {
    let mut worst = (0f64, 0f64, String::new());
    for path in cases() {
        let case = load(&path);
        let got = case.op.run_cpu(&case.file.tensors).unwrap();
        let (n, m) = check(&case, &got, common::F32_REL_TOL, "the CPU");
        if n.max(m) > worst.0.max(worst.1) {
            worst = (n, m, case.name.clone());
        }
    }
    eprintln!(
        "CPU: worst case {} ({:.2e} norm, {:.2e} elementwise)",
        worst.2, worst.0, worst.1
    );
}

/// Every case on the GPU at `precision` (f16 only where the adapter has it: a skip is recorded
/// otherwise), the convolutions reading storage operands, or textures (`textures`: as runners
/// do on CPU-backed adapters, where dense "same" convolutions also run as the GEMM);
/// `unrolled_channels` as `RunnerOptions::unrolled_channels` (`Some(true)`: the GEMM's channel
/// loop 4 channels a trip, as on SwiftShader, whatever the adapter).
fn gpu_cases(precision: Precision, tol: f64, textures: bool, unrolled_channels: Option<bool>) {
    // An adapter without shader-f16 (SwiftShader) refuses an f16 context: ask before
    // common::gpu_ctx, which takes a refusal for a missing adapter.
    if precision == Precision::F16 {
        if let Err(e) = GpuContext::new(Precision::F16) {
            common::skip_optional(&format!("f16 ops: {e}"));
            return;
        }
    }
    let ctx = common::gpu_ctx(precision);
    let mut worst = (0f64, 0f64, String::new());
    for path in cases() {
        let case = load(&path);
        let opts = RunnerOptions {
            precision,
            textures: Some(textures),
            unrolled_channels,
            ..Default::default()
        };
        let gpu = GpuOp::with_options(ctx, &case.op, &opts)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got = gpu
            .run(&case.file.tensors)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let operands = if textures { "textures" } else { "storage" };
        let what = format!("the GPU ({precision:?}, {operands})");
        let (n, m) = check(&case, &got, tol, &what);
        if n.max(m) > worst.0.max(worst.1) {
            worst = (n, m, case.name.clone());
        }
    }
    eprintln!(
        "GPU {precision:?} textures={textures} unrolled_channels={unrolled_channels:?}: worst case {} ({:.2e} norm, {:.2e} elementwise)",
        worst.2, worst.0, worst.1
    );
}

#[test]
fn every_op_on_the_gpu_matches_torch_in_f32() {
    gpu_cases(Precision::F32, common::F32_REL_TOL, false, None);
}

/// With the GEMM's channel loop 4 channels a trip on every adapter (SwiftShader's rule).
#[test]
fn every_op_on_the_gpu_matches_torch_in_f32_with_texture_operands() {
    gpu_cases(Precision::F32, common::F32_REL_TOL, true, Some(true));
}

#[test]
fn every_op_on_the_gpu_matches_torch_in_f16_with_texture_operands() {
    gpu_cases(Precision::F16, F16_TOL, true, None);
}

#[test]
fn every_op_on_the_gpu_matches_torch_in_f16() {
    gpu_cases(Precision::F16, F16_TOL, false, None);
}

/// Runs the `op` example; returns (status, stdout, stderr).
fn op_cli(args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(common::example_exe("op"))
        .args(args)
        .output()
        .expect("cannot run the op example");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        o.status.code().unwrap_or(-1),
        text(&o.stdout),
        text(&o.stderr),
    )
}

#[test]
fn the_op_example_follows_its_contract() {
    let dir = std::env::temp_dir().join(format!("regnet-op-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = common::fixtures_dir().join("ops/deform_conv2d-05.safetensors");
    let case = load(&fixture);
    let out = dir.join("y.safetensors");
    let (fx, o) = (fixture.to_str().unwrap(), out.to_str().unwrap());
    for backend in ["cpu", "gpu"] {
        // Parameters from the file's metadata; the result as `output`, within 1e-4 of torch.
        let (code, stdout, stderr) = op_cli(&[
            "deform_conv2d",
            "--in",
            fx,
            "--out",
            o,
            "--backend",
            backend,
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("relative error against the file's `output`"),
            "{stdout}"
        );
        let got = regnet_wgpu::tensor::read_safetensors(&out)
            .unwrap()
            .remove("output")
            .unwrap();
        check(
            &case,
            &got,
            common::F32_REL_TOL,
            &format!("the op example ({backend})"),
        );
    }
    // Parameters on the command line override the file's (torch's names, tuples as a,b).
    let conv = common::fixtures_dir().join("ops/conv2d-06.safetensors");
    let c = conv.to_str().unwrap();
    let (code, stdout, _) = op_cli(&[
        "conv2d",
        "--in",
        c,
        "--out",
        o,
        "--backend",
        "cpu",
        "--param",
        "stride=3,2",
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("not compared") || stdout.contains("relative error"),
        "{stdout}"
    );
    // Named errors, exit 1.
    for (params, needle) in [
        (vec!["--param", "stride=x"], "stride=x"),
        (vec!["--param", "groups=5"], "groups"),
        (vec!["--param", "kernel=3"], "no parameter `kernel`"),
    ] {
        let mut a = vec!["conv2d", "--in", c, "--out", o, "--backend", "cpu"];
        a.extend(params);
        let (code, _, stderr) = op_cli(&a);
        assert_eq!(code, 1, "{a:?}: {stderr}");
        assert!(stderr.contains(needle), "{a:?}: {stderr}");
    }
    let (code, _, stderr) = op_cli(&[
        "max_pool2d",
        "--in",
        c,
        "--out",
        o,
        "--backend",
        "cpu",
        "--param",
        "kernel_size=99",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("do not fit"), "{stderr}");
    let (code, _, stderr) = op_cli(&["deform_conv2d", "--in", c, "--out", o, "--backend", "cpu"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("`offset`"), "{stderr}");
    let (code, _, stderr) = op_cli(&["warp", "--in", c, "--out", o]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no op named `warp`"), "{stderr}");
    // Usage errors, exit 2.
    let (code, _, _) = op_cli(&["conv2d", "--in", c]);
    assert_eq!(code, 2);
    let (code, _, _) = op_cli(&["conv2d", "--in", c, "--out", o, "--param", "stride"]);
    assert_eq!(code, 2);
    std::fs::remove_dir_all(&dir).ok();
}

/// What the README's "Using the ops" shows: a host's own device (WebGPU's default limits, no
/// features), the host's buffers, the op recorded into the host's encoder next to the host's
/// own copy to its staging buffer, one submission; the result is torchvision's.
#[test]
fn an_op_runs_on_a_hosts_device_in_its_encoder() {
    regnet_wgpu::gpu::quiet_headless_wayland();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter (lavapipe will do): {e}"));
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let ctx = regnet_wgpu::gpu::GpuContext::from_device(
        device.clone(),
        queue.clone(),
        adapter.get_info(),
    );

    let case = load(&common::fixtures_dir().join("ops/deform_conv2d-13.safetensors"));
    let gpu = GpuOp::new(&ctx, &case.op, Precision::F32).unwrap();
    let host_buffer = |name: &str, t: &Tensor, usage: wgpu::BufferUsages| {
        let size = gpu.input_bytes(name).unwrap_or(gpu.output_bytes());
        let b = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size,
            usage: wgpu::BufferUsages::STORAGE | usage,
            mapped_at_creation: false,
        });
        queue.write_buffer(&b, 0, bytemuck::cast_slice(&t.data));
        b
    };
    let copy_dst = wgpu::BufferUsages::COPY_DST;
    let names: Vec<String> = case.op.inputs.iter().map(|(n, _)| n.clone()).collect();
    let bufs: Vec<wgpu::Buffer> = names
        .iter()
        .map(|n| host_buffer(n, &case.file.tensors[n], copy_dst))
        .collect();
    let out_shape = case.op.output_shape();
    let y = host_buffer(
        "output",
        &Tensor::zeros(out_shape.to_vec()),
        wgpu::BufferUsages::COPY_SRC | copy_dst,
    );
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host staging"),
        size: y.size(),
        usage: wgpu::BufferUsages::MAP_READ | copy_dst,
        mapped_at_creation: false,
    });
    let inputs: Vec<(&str, &wgpu::Buffer)> = names.iter().map(String::as_str).zip(&bufs).collect();
    let mut encoder = device.create_command_encoder(&Default::default());
    gpu.encode(&mut encoder, &inputs, &y).unwrap();
    encoder.copy_buffer_to_buffer(&y, 0, &staging, 0, y.size());
    queue.submit([encoder.finish()]);
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let n: usize = out_shape.iter().product();
    let view = staging.slice(..).get_mapped_range().unwrap();
    let data = bytemuck::cast_slice::<u8, f32>(&view)[..n].to_vec();
    let got = Tensor::new(out_shape.to_vec(), data).unwrap();
    check(&case, &got, common::F32_REL_TOL, "a host's device");

    // The host's mistakes are named: a missing input, a small buffer, the output as an input.
    let mut enc = device.create_command_encoder(&Default::default());
    let e = gpu
        .encode(&mut enc, &inputs[..1], &y)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no buffer given for its input `offset`"), "{e}");
    let small = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let e = gpu
        .encode(&mut enc, &inputs, &small)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the buffer given for `output` holds 16 bytes"),
        "{e}"
    );
    let e = gpu
        .encode(&mut enc, &[("input", &y), inputs[1]], &y)
        .unwrap_err()
        .to_string();
    assert!(e.contains("same buffer"), "{e}");
}
