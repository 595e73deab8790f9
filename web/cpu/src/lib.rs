//! regnet-wgpu's CPU backend in the browser: a thin wasm-bindgen API for JavaScript.
//!
//! ```js
//! import init, * as cpu from "./pkg-cpu/regnet_web_cpu.js";
//! await init();
//! // Built with threads (`scripts/web build` on nightly) and on a cross-origin isolated page:
//! if (cpu.initThreadPool && crossOriginIsolated) await cpu.initThreadPool(navigator.hardwareConcurrency);
//! const r = cpu.CpuRunner.create("regnet_y_400mf", weightsBytesOrNull, 1);
//! const logits = r.run(new Float32Array(3 * 224 * 224)); // Float32Array [1, 1000]
//! console.log(cpu.threads(), r.randomWeights);
//! ```
//!
//! The same backend, kernels and numerics as native `CpuBackend`: gemm's SIMD128 kernels for
//! the GEMMs, the rest vectorised by LLVM for wasm SIMD128 (`.cargo/config.toml`). Built with
//! the `threads` feature, rayon runs on a pool of Web Workers sharing the module's memory
//! (`wasm-bindgen-rayon`); without it, on the calling thread. A run blocks the thread that
//! calls it: call it from a worker, or accept the pause (the race page does).
//!
//! The crate is for wasm32: on other targets it is empty.
#![cfg(target_arch = "wasm32")]

use regnet_wgpu::classes::{top_classes, Class};
use regnet_wgpu::config::Architecture;
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::preprocess::{decode_rgb8, stack, EvalTransform};
use regnet_wgpu::{Plan, Tensor, Weights};
use serde::Serialize;
use wasm_bindgen::prelude::*;

#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The threads a run uses: the pool's (after `initThreadPool(n)`: `n`), or 1.
#[wasm_bindgen]
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Whether this build can start a thread pool (`initThreadPool` exists).
#[wasm_bindgen(js_name = hasThreads)]
pub fn has_threads() -> bool {
    cfg!(feature = "threads")
}

/// Bytes of activations a run may hold at most: wasm32's memory is 4 GiB at most and this
/// build's 2 GiB (`scripts/web`'s `--max-memory`), and what runs out of it aborts the module.
const MAX_ACTIVATION_BYTES: u64 = 1 << 30;

/// A clear error for a batch whose activations (every op's output, summed: an upper bound on
/// what a run holds at once) would not fit, instead of an abort inside the run.
fn check_memory(plan: &Plan, batch: usize) -> Result<(), JsError> {
    let bytes = plan.activations().saturating_mul(batch as u64 * 4);
    if batch == 0 || bytes > MAX_ACTIVATION_BYTES {
        return Err(js_err(format!(
            "batch {batch}: from 1 to {} images of this model at 224x224 fit in this wasm build's \
             memory ({} activations of 4 bytes each an image, at most {} MiB)",
            MAX_ACTIVATION_BYTES / (plan.activations().max(1) * 4),
            plan.activations(),
            MAX_ACTIVATION_BYTES >> 20
        )));
    }
    Ok(())
}

/// What [`CpuRunner::classify`] returns.
#[derive(Serialize)]
pub struct Classified {
    /// The top classes, most probable first.
    pub top: Vec<Class>,
    /// Milliseconds from the file's bytes to the logits (decoding, preprocessing, inference).
    pub ms: f64,
}

/// One op's wall time, from [`CpuRunner::profile`].
#[derive(Serialize)]
pub struct OpTime {
    /// The op (its name in the plan).
    pub label: String,
    /// Milliseconds it took.
    pub ms: f64,
}

/// A model on the CPU backend at any batch size, for logits and timing: the `regnet-cpu`
/// engine of the race against ONNX Runtime Web (`scripts/web bench`).
#[wasm_bindgen]
pub struct CpuRunner {
    cpu: CpuBackend,
    batch: usize,
    macs: u64,
    random: bool,
}

#[wasm_bindgen]
impl CpuRunner {
    /// The named model at 224x224 for `batch` images, with `weights` (the bytes of a
    /// torchvision / timm state_dict as safetensors or a `.pth` checkpoint) or, without,
    /// deterministic random ones.
    pub fn create(
        model: String,
        weights: Option<Vec<u8>>,
        batch: usize,
    ) -> Result<CpuRunner, JsError> {
        let arch = Architecture::named(&model).map_err(js_err)?;
        let plan = Plan::new(arch, 224, 224).map_err(js_err)?;
        check_memory(&plan, batch)?;
        let (weights, random) = match weights {
            Some(b) => (
                Weights::from_bytes(&b, std::path::Path::new("weights"), &plan).map_err(js_err)?,
                false,
            ),
            None => (Weights::random(&plan, 0), true),
        };
        let macs = plan.macs();
        let cpu = CpuBackend::new(plan, weights).map_err(js_err)?;
        Ok(CpuRunner {
            cpu,
            batch,
            macs,
            random,
        })
    }

    /// Multiply-adds per image.
    #[wasm_bindgen(getter)]
    pub fn macs(&self) -> f64 {
        self.macs as f64
    }

    /// Whether the weights are random (no weights were given): the classes mean nothing.
    #[wasm_bindgen(getter, js_name = randomWeights)]
    pub fn random_weights(&self) -> bool {
        self.random
    }

    fn input(&self, input: Vec<f32>) -> regnet_wgpu::Result<Tensor> {
        Tensor::new(vec![self.batch, 3, 224, 224], input)
    }

    /// Logits `[batch, classes]` (flat) of a preprocessed input `[batch, 3, 224, 224]` (flat,
    /// f32).
    pub fn run(&self, input: Vec<f32>) -> Result<js_sys::Float32Array, JsError> {
        let x = self.input(input).map_err(js_err)?;
        let logits = self.cpu.run(&x).map_err(js_err)?;
        Ok(js_sys::Float32Array::from(&logits.data[..]))
    }

    /// Classifies a PNG or JPEG file's bytes (a runner made for batch 1): decoded and
    /// preprocessed as `gpu_infer` does (PIL's RGB conversion, torchvision's evaluation
    /// transform, PIL-exact), then `{ top: [{ index, name, probability }], ms }` with the `k`
    /// most probable classes.
    pub fn classify(&self, image: Vec<u8>, k: usize) -> Result<JsValue, JsError> {
        if self.batch != 1 {
            return Err(js_err(format!(
                "classify takes one image: this runner is for batch {}",
                self.batch
            )));
        }
        let t0 = js_sys::Date::now();
        let rgb = decode_rgb8(&image, std::path::Path::new("image")).map_err(js_err)?;
        let x = EvalTransform::default().apply(&rgb).map_err(js_err)?;
        let logits = self
            .cpu
            .run(&stack(&[x]).map_err(js_err)?)
            .map_err(js_err)?;
        let result = Classified {
            top: top_classes(&logits, 0, k),
            ms: js_sys::Date::now() - t0,
        };
        serde_wasm_bindgen::to_value(&result).map_err(js_err)
    }

    /// Wall time of every op of one run (as [`CpuRunner::run`]): an array of `{label, ms}`
    /// (`CpuBackend::profile`).
    pub fn profile(&self, input: Vec<f32>) -> Result<JsValue, JsError> {
        let x = self.input(input).map_err(js_err)?;
        let rows: Vec<OpTime> = (self.cpu.profile(&x).map_err(js_err)?)
            .into_iter()
            .map(|(label, ms)| OpTime { label, ms })
            .collect();
        serde_wasm_bindgen::to_value(&rows).map_err(js_err)
    }
}
