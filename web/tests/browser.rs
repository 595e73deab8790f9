//! The library in a real browser: torchvision's fixtures run on the browser's WebGPU adapter
//! (headless Chromium's SwiftShader in CI) and land within 1e-4 of torchvision's float64
//! logits. Run by `scripts/web test` (wasm-bindgen-test + chromedriver); the fixtures are
//! compiled in (the browser has no file system). RegNetY-400MF's fixture comes from
//! `REGNET_FIXTURES` at build time, with the feature `zoo-fixtures`.
#![cfg(target_arch = "wasm32")]

use std::path::Path;

use regnet_wgpu::config::Architecture;
use regnet_wgpu::config::RegNetParams;
use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions};
use regnet_wgpu::tensor::safetensors_from_bytes;
use regnet_wgpu::{zoo, Plan, Tensor, Weights};
use serde_json::Value;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const MANIFEST: &str = include_str!("../../tests/fixtures/manifest.json");

macro_rules! tiny {
    ($name:literal) => {
        (
            $name,
            &include_bytes!(concat!("../../tests/fixtures/", $name, ".safetensors"))[..],
            &include_bytes!(concat!("../../tests/fixtures/", $name, ".io.safetensors"))[..],
        )
    };
}

/// A fixture's weights and reference bytes from `REGNET_FIXTURES` (at build time), by path
/// without the extension.
#[cfg(feature = "zoo-fixtures")]
macro_rules! zoo_fixture {
    ($path:literal) => {
        (
            &include_bytes!(concat!(env!("REGNET_FIXTURES"), $path, ".safetensors"))[..],
            &include_bytes!(concat!(env!("REGNET_FIXTURES"), $path, ".io.safetensors"))[..],
        )
    };
}

/// The model a fixture was made from (tests/common's `Fixture::load`, from bytes).
fn params(name: &str) -> RegNetParams {
    let manifest: Value = serde_json::from_str(MANIFEST).unwrap();
    let cfg = &manifest[name]["config"];
    if cfg["kind"] == "builder" {
        return zoo::get(name).unwrap();
    }
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let mut p = RegNetParams::new(
        u("depth"),
        u("w_0"),
        cfg["w_a"].as_f64().unwrap(),
        cfg["w_m"].as_f64().unwrap(),
        u("group_width"),
    );
    p.bottleneck = cfg["bottleneck_multiplier"].as_f64().unwrap();
    p.se_ratio = cfg["se_ratio"].as_f64();
    p.stem_width = u("stem_width");
    p.num_classes = u("num_classes");
    p
}

/// Relative error by the whole tensor's norm, and the largest elementwise error relative to
/// the reference's largest magnitude.
fn errors(out: &Tensor, reference: &Tensor) -> (f64, f64) {
    assert_eq!(out.shape, reference.shape);
    let (mut num, mut den, mut worst, mut big) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (a, b) in out.data.iter().zip(&reference.data) {
        let (a, b) = (*a as f64, *b as f64);
        num += (a - b) * (a - b);
        den += b * b;
        worst = worst.max((a - b).abs());
        big = big.max(b.abs());
    }
    (num.sqrt() / den.sqrt(), worst / big)
}

async fn check(ctx: &GpuContext, name: &str, weights: &[u8], io: &[u8]) {
    check_arch(ctx, name, params(name).into(), weights, io).await;
}

async fn check_arch(ctx: &GpuContext, name: &str, arch: Architecture, weights: &[u8], io: &[u8]) {
    let io = safetensors_from_bytes(io, Path::new(name)).unwrap();
    let input = &io["input"];
    let plan = Plan::new(arch, input.shape[2], input.shape[3]).unwrap();
    let weights = Weights::from_bytes(weights, Path::new(name), &plan).unwrap();
    let opts = RunnerOptions {
        batch: input.shape[0],
        ..Default::default()
    };
    let runner = GpuRunner::new(ctx, &plan, &weights, opts).unwrap();
    let logits = runner.run_async(input).await.unwrap();
    let (rel, worst) = errors(&logits, &io["logits"]);
    web_sys_log(&format!(
        "{name} on {}: logits rel err {rel:.2e}, largest {worst:.2e}",
        ctx.describe()
    ));
    assert!(rel <= 1e-4 && worst <= 1e-4, "{name}: {rel:e} / {worst:e}");
}

fn web_sys_log(s: &str) {
    wasm_bindgen_test::console_log!("{s}");
}

#[wasm_bindgen_test]
async fn tiny_fixtures_match_torchvision_in_the_browser() {
    let ctx = GpuContext::new_async(Precision::F32).await.unwrap();
    for (name, w, io) in [
        tiny!("tiny_x"),
        tiny!("tiny_y"),
        tiny!("tiny_depthwise"),
        tiny!("tiny_bottleneck_half"),
        tiny!("tiny_clipped_groups"),
        tiny!("tiny_odd_input"),
        tiny!("tiny_six_stages"),
    ] {
        check(&ctx, name, w, io).await;
    }
}

#[cfg(feature = "zoo-fixtures")]
#[wasm_bindgen_test]
async fn regnet_y_400mf_matches_torchvision_in_the_browser() {
    let ctx = GpuContext::new_async(Precision::F32).await.unwrap();
    let (w, io) = zoo_fixture!("/regnet_y_400mf");
    check(&ctx, "regnet_y_400mf", w, io).await;
}

/// ResNet-18 (torchvision's, from `REGNET_FIXTURES/families`): its dense 3x3s run as GEMMs over
/// their taps, the kernel whose branchy padding mask once made SwiftShader's compiler run out of
/// memory and Chromium's GPU process die.
#[cfg(feature = "zoo-fixtures")]
#[wasm_bindgen_test]
async fn resnet18_matches_torchvision_in_the_browser() {
    let ctx = GpuContext::new_async(Precision::F32).await.unwrap();
    let (w, io) = zoo_fixture!("/families/resnet18");
    let arch = Architecture::named("resnet18").unwrap();
    check_arch(&ctx, "resnet18", arch, w, io).await;
}

/// The CPU backend compiled to wasm32 runs in the page too (one thread: rayon runs on the
/// caller's), within 1e-4 of torchvision's logits; the time of each run is printed (issue #12:
/// the path a CPU engine in the page would take, beside ONNX Runtime Web's wasm backend).
#[cfg(feature = "zoo-fixtures")]
#[wasm_bindgen_test]
async fn regnet_y_400mf_on_the_cpu_backend_in_the_browser() {
    let (w, io) = zoo_fixture!("/regnet_y_400mf");
    let io = safetensors_from_bytes(io, Path::new("regnet_y_400mf")).unwrap();
    let input = &io["input"];
    let plan = Plan::new(params("regnet_y_400mf"), input.shape[2], input.shape[3]).unwrap();
    let weights = Weights::from_bytes(w, Path::new("regnet_y_400mf"), &plan).unwrap();
    let cpu = regnet_wgpu::cpu::CpuBackend::new(plan, weights).unwrap();
    let clock = web_sys::window().unwrap().performance().unwrap();
    let mut ms = Vec::new();
    for _ in 0..3 {
        let start = clock.now();
        let logits = cpu.run(input).unwrap();
        ms.push(clock.now() - start);
        let (rel, worst) = errors(&logits, &io["logits"]);
        assert!(rel <= 1e-4 && worst <= 1e-4, "{rel:e} / {worst:e}");
    }
    web_sys_log(&format!(
        "regnet_y_400mf on the CPU backend in wasm (one thread), batch {}: {ms:.1?} ms",
        input.shape[0]
    ));
}
