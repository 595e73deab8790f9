//! regnet-wgpu in the browser: a thin wasm-bindgen API over WebGPU for JavaScript.
//!
//! ```js
//! import init, { Classifier, models } from "./pkg/regnet_web.js";
//! await init();
//! const c = await Classifier.create("regnet_y_400mf", weightsBytesOrNull);
//! const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
//! const r = await c.classify(bitmap, 5); // { top: [{ index, name, probability }], ms }
//! console.log(c.adapter, c.randomWeights, r.top[0].name, r.ms);
//! ```
//!
//! Images go through the library's GPU preprocessing (torchvision's evaluation transform,
//! PIL-exact): the bitmap is copied into a texture, resized, cropped and normalised on the GPU,
//! classified and read back in one submission. Without weights the model has deterministic
//! random ones, and [`Classifier::random_weights`] says so (the page shows it), as `gpu_infer`
//! does. Everything is async: nothing blocks the browser's thread.
//!
//! The crate is for wasm32 (WebGPU): on other targets it is empty.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use regnet_wgpu::classes::{top_classes, Class};
use regnet_wgpu::config::Architecture;
use regnet_wgpu::gpu::tiling::Tiling;
use regnet_wgpu::gpu::{
    GpuContext, GpuPreprocess, GpuRunner, LogitsReadback, Precision, RunnerOptions,
};
use regnet_wgpu::preprocess::EvalTransform;
use regnet_wgpu::{Plan, Tensor, Weights};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// Every model name `Classifier.create` takes (torchvision's RegNets and ResNets, timm's
/// ReXNets).
#[wasm_bindgen]
pub fn models() -> Vec<String> {
    Architecture::names().map(str::to_string).collect()
}

/// Milliseconds since the page (or worker) started.
fn now_ms() -> f64 {
    let global = js_sys::global();
    if let Ok(w) = global.clone().dyn_into::<web_sys::Window>() {
        if let Some(p) = w.performance() {
            return p.now();
        }
    }
    if let Ok(w) = global.dyn_into::<web_sys::WorkerGlobalScope>() {
        if let Some(p) = w.performance() {
            return p.now();
        }
    }
    js_sys::Date::now()
}

thread_local! {
    /// The page's one device: every classifier and runner shares it, and so the pipelines the
    /// browser has already compiled (its first compilation takes long on a software adapter).
    static CONTEXT: RefCell<Option<GpuContext>> = const { RefCell::new(None) };
}

/// The shared context, made on first use.
async fn context() -> regnet_wgpu::Result<GpuContext> {
    if let Some(ctx) = CONTEXT.with(|c| c.borrow().clone()) {
        return Ok(ctx);
    }
    let ctx = GpuContext::new_async(Precision::F32).await?;
    CONTEXT.with(|c| *c.borrow_mut() = Some(ctx.clone()));
    Ok(ctx)
}

/// Weights from bytes, or deterministic random ones (`true`) when there are none.
fn weights_for(plan: &Plan, bytes: Option<Vec<u8>>) -> regnet_wgpu::Result<(Weights, bool)> {
    match bytes {
        Some(b) => Ok((
            Weights::from_bytes(&b, std::path::Path::new("weights"), plan)?,
            false,
        )),
        None => Ok((Weights::random(plan, 0), true)),
    }
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// One dispatch's device time, from [`Runner::profile`].
#[derive(Serialize)]
pub struct DispatchTime {
    /// The op it runs (with its part, for a split convolution).
    pub label: String,
    /// Milliseconds between the timestamps before and after its pass.
    pub ms: f64,
}

/// What `classify` resolves to.
#[derive(Serialize)]
pub struct Classified {
    /// The top classes, most probable first.
    pub top: Vec<Class>,
    /// Milliseconds from the copy of the image to the logits on the CPU side.
    pub ms: f64,
}

struct Inner {
    ctx: GpuContext,
    runner: GpuRunner,
    preprocess: GpuPreprocess,
    readback: LogitsReadback,
    model: String,
    random: bool,
}

/// A model on the browser's WebGPU device, ready to classify images.
#[wasm_bindgen]
pub struct Classifier {
    inner: Rc<Inner>,
}

impl Inner {
    async fn new(model: &str, weights: Option<Vec<u8>>) -> regnet_wgpu::Result<Inner> {
        let ctx = context().await?;
        let plan = Plan::new(Architecture::named(model)?, 224, 224)?;
        let (weights, random) = weights_for(&plan, weights)?;
        let runner = GpuRunner::new(&ctx, &plan, &weights, RunnerOptions::default())?;
        let preprocess = GpuPreprocess::for_runner(&runner, EvalTransform::default())?;
        let readback = LogitsReadback::new(&runner);
        Ok(Inner {
            ctx,
            runner,
            preprocess,
            readback,
            model: model.to_string(),
            random,
        })
    }

    /// The image in a texture the preprocessing pass reads (8-bit RGBA, as decoded).
    fn upload(&self, bitmap: web_sys::ImageBitmap) -> wgpu::Texture {
        let size = wgpu::Extent3d {
            width: bitmap.width(),
            height: bitmap.height(),
            depth_or_array_layers: 1,
        };
        let texture = self.ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("image"),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            // copyExternalImageToTexture needs RENDER_ATTACHMENT on its destination.
            usage: wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::COPY_DST
                | wgpu::TextureUsages::RENDER_ATTACHMENT,
            view_formats: &[],
        });
        self.ctx.queue.copy_external_image_to_texture(
            &wgpu::CopyExternalImageSourceInfo {
                source: wgpu::ExternalImageSource::ImageBitmap(bitmap),
                origin: wgpu::Origin2d::ZERO,
                flip_y: false,
            },
            wgpu::CopyExternalImageDestInfo {
                texture: &texture,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
                color_space: wgpu::PredefinedColorSpace::Srgb,
                premultiplied_alpha: false,
            },
            size,
        );
        texture
    }

    async fn classify(&self, bitmap: web_sys::ImageBitmap) -> regnet_wgpu::Result<Tensor> {
        let texture = self.upload(bitmap);
        let binding = self.preprocess.bind_runner(&texture, &self.runner, 0)?;
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("classify"),
            });
        binding.encode(&mut encoder);
        self.runner.encode(&mut encoder);
        self.readback.encode_copy(&mut encoder);
        self.ctx.queue.submit([encoder.finish()]);
        self.readback.read().await
    }
}

#[wasm_bindgen]
impl Classifier {
    /// A classifier for the named model at 224x224, on the browser's WebGPU adapter; with
    /// `weights` (the bytes of a torchvision / timm state_dict as safetensors or a `.pth`
    /// checkpoint) or, without, deterministic random weights.
    pub async fn create(model: String, weights: Option<Vec<u8>>) -> Result<Classifier, JsError> {
        let inner = Inner::new(&model, weights).await.map_err(js_err)?;
        Ok(Classifier {
            inner: Rc::new(inner),
        })
    }

    /// The adapter: `name (backend, device type)`.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.inner.ctx.describe()
    }

    /// The model's name.
    #[wasm_bindgen(getter)]
    pub fn model(&self) -> String {
        self.inner.model.clone()
    }

    /// Whether the weights are random (no weights were given): the classes mean nothing.
    #[wasm_bindgen(getter, js_name = randomWeights)]
    pub fn random_weights(&self) -> bool {
        self.inner.random
    }

    /// Classifies an `ImageBitmap` (made with `colorSpaceConversion: "none"` and
    /// `premultiplyAlpha: "none"` to keep the decoded pixels): resolves to
    /// `{ top: [{ index, name, probability }], ms }` with the `k` most probable classes.
    pub fn classify(&self, bitmap: web_sys::ImageBitmap, k: usize) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let t0 = now_ms();
            let logits = inner.classify(bitmap).await.map_err(js_err)?;
            let result = Classified {
                top: top_classes(&logits, 0, k),
                ms: now_ms() - t0,
            };
            serde_wasm_bindgen::to_value(&result).map_err(|e| js_err(e).into())
        })
    }
}

/// A model at any batch size for raw logits and timing: what the race against ONNX Runtime
/// Web (`scripts/web bench`) runs, and what compares with other engines' outputs.
#[wasm_bindgen]
pub struct Runner {
    runner: Rc<GpuRunner>,
    macs: u64,
    random: bool,
}

#[wasm_bindgen]
impl Runner {
    /// The named model at 224x224 for `batch` images, with `weights` (bytes, as
    /// [`Classifier::create`]) or deterministic random ones; `tiling` (`"cpu"` or `"gpu"`)
    /// overrides the tile rules the adapter's type picks, `textures` whether the convolutions
    /// read texture operands (`RunnerOptions::textures`; default: by the adapter's type).
    pub async fn create(
        model: String,
        weights: Option<Vec<u8>>,
        batch: usize,
        tiling: Option<String>,
        textures: Option<bool>,
    ) -> Result<Runner, JsError> {
        let tiling = match tiling.as_deref() {
            None => None,
            Some("cpu") => Some(Tiling::Cpu),
            Some("gpu") => Some(Tiling::Gpu),
            Some(other) => return Err(js_err(format!("tiling `{other}`: cpu or gpu"))),
        };
        let ctx = context().await.map_err(js_err)?;
        let plan =
            Plan::new(Architecture::named(&model).map_err(js_err)?, 224, 224).map_err(js_err)?;
        let (weights, random) = weights_for(&plan, weights).map_err(js_err)?;
        let opts = RunnerOptions {
            batch,
            tiling,
            textures,
            ..Default::default()
        };
        let runner = GpuRunner::new(&ctx, &plan, &weights, opts).map_err(js_err)?;
        Ok(Runner {
            runner: Rc::new(runner),
            macs: plan.macs(),
            random,
        })
    }

    /// The adapter: `name (backend, device type)`.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.runner.context().describe()
    }

    /// Multiply-adds per image.
    #[wasm_bindgen(getter)]
    pub fn macs(&self) -> f64 {
        self.macs as f64
    }

    /// Whether the weights are random.
    #[wasm_bindgen(getter, js_name = randomWeights)]
    pub fn random_weights(&self) -> bool {
        self.random
    }

    /// Logits `[batch, classes]` (flat) of a preprocessed input `[batch, 3, 224, 224]` (flat,
    /// f32): one upload, one submission, one readback.
    pub fn run(&self, input: Vec<f32>) -> js_sys::Promise {
        let runner = self.runner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let x = Tensor::new(runner.input_shape().to_vec(), input).map_err(js_err)?;
            let logits = runner.run_async(&x).await.map_err(js_err)?;
            Ok(js_sys::Float32Array::from(&logits.data[..]).into())
        })
    }

    /// Device time of every dispatch for a preprocessed input (as [`Runner::run`]), each in a
    /// timed pass of its own: an array of `{label, ms}`, or `null` when the adapter has no
    /// `timestamp-query` (`GpuRunner::profile_async`).
    pub fn profile(&self, input: Vec<f32>) -> js_sys::Promise {
        let runner = self.runner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let x = Tensor::new(runner.input_shape().to_vec(), input).map_err(js_err)?;
            let Some(rows) = runner.profile_async(&x).await.map_err(js_err)? else {
                return Ok(JsValue::NULL);
            };
            let rows: Vec<DispatchTime> = rows
                .into_iter()
                .map(|(label, ms)| DispatchTime { label, ms })
                .collect();
            serde_wasm_bindgen::to_value(&rows).map_err(|e| js_err(e).into())
        })
    }
}
