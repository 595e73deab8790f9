//! Textures in: torchvision's evaluation transform as a WGSL compute pass
//! (`shaders/preprocess.wgsl`) that reads a host's `wgpu::Texture` and writes a runner's input.
//!
//! The pass does what [`EvalTransform`] does on the CPU: shorter side to `resize` with PIL's
//! antialiased bilinear filter (torchvision's size rule), centre crop (zero padding when the
//! crop is larger), `/ 255`, `(x - mean) / std`, into `[3, crop_h, crop_w]` at batch index `n`
//! of an `[N, 3, crop_h, crop_w]` buffer, in the runner's precision (f32, or f16 packed two per
//! `u32`, little-endian). Any texture size; one invocation per output pixel.
//!
//! # Formats and what the pass sees
//!
//! [`SUPPORTED_FORMATS`]: `rgba8unorm`, `rgba8unorm-srgb`, `bgra8unorm`, `bgra8unorm-srgb`,
//! `rgba16float`, `rgba32float`, `rgb10a2unorm` (mip level 0, array layer 0; the texture
//! needs `TEXTURE_BINDING`). Alpha is dropped (not composited), as `Image.convert("RGB")`
//! drops it.
//!
//! - **8-bit unorm**: the stored bytes are the pixels, exactly as the CPU path reads the same
//!   bytes from a PNG (each load is rounded back to its byte). BGRA is swizzled by the
//!   hardware on load.
//! - **`*-srgb`**: torchvision works on the stored (sRGB-encoded) bytes, but a shader load
//!   decodes an sRGB texture to linear. The pass re-encodes with the sRGB curve and rounds,
//!   which gives the stored byte back (decoded neighbours are at least 3e-4 apart, the round
//!   trip errs by a few 1e-7), so an `rgba8unorm-srgb` texture gives the same result as the
//!   same bytes in `rgba8unorm`, bit for bit. The texture needs no extra view format.
//! - **float / 10-bit**: a value `v` in `[0, 1]` stands for the 8-bit level `255 v`. With
//!   [`Rounding::Pil`] it is clamped to `[0, 1]` and rounded to the nearest level (what an
//!   8-bit PNG of the texture would hold); with [`Rounding::Float`] it is used as it is.
//!
//! # Rounding and how close it is to the CPU path
//!
//! Pillow resamples in 22-bit fixed point and rounds to 8 bits after the horizontal and after
//! the vertical pass. With [`Rounding::Pil`] (the default) the host computes each binding's
//! taps and fixed-point weights with the CPU path's (Pillow's) f64 arithmetic, the shader
//! repeats Pillow's integer sums and roundings (exact in i32), and the normalised value of
//! each level comes from a table filled with the CPU path's f32 expression: **the output is
//! bit-identical to [`EvalTransform::apply`] on the same 8-bit pixels** (and so to
//! torchvision's transform of a PNG holding them). [`Rounding::Float`] applies the same
//! weights in f32 with no rounding between or after the passes, for float textures whose
//! values are not 8-bit levels; against the CPU path it is within one level (≤ 0.5 from the
//! horizontal rounding PIL does, carried by non-negative vertical weights summing to 1, plus
//! ≤ 0.5 from the final rounding), plus the texel's own distance from a level for float and
//! 10-bit formats (≤ 0.062 levels for f16, 0.125 for 10-bit). One level is `1 / 255 / std` in
//! normalised units: 0.0175 for ImageNet's smallest std (0.224). `tests/embed.rs` checks both
//! on every format.
//!
//! # Cost
//!
//! One dispatch of `crop_w x crop_h` invocations, each reading `taps_x * taps_y` texels
//! (about `(2 * scale + 1)^2`: 9 to 16 for a 451x300 photo, ~400 for a 4K frame).
//! [`GpuPreprocess::bind`] builds a bind group, an 80-byte uniform buffer and a filter table
//! of a few KiB for one texture (size) and target slot: bind once and re-record the
//! [`PreprocessBinding`] every frame; bind again when the texture is recreated.
//!
//! # Use
//!
//! ```no_run
//! use regnet_wgpu::gpu::preprocess::GpuPreprocess;
//! use regnet_wgpu::gpu::readback::LogitsReadback;
//! use regnet_wgpu::gpu::{GpuContext, GpuRunner, RunnerOptions};
//! use regnet_wgpu::preprocess::EvalTransform;
//! use regnet_wgpu::{zoo, Plan, Weights};
//!
//! # fn frame(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo,
//! #          texture: &wgpu::Texture) -> regnet_wgpu::Result<()> {
//! // Once: the host's device (its features and limits as they are), a runner, the pass
//! // bound to the host's texture (TEXTURE_BINDING usage, any size, a SUPPORTED_FORMATS one).
//! let ctx = GpuContext::from_device(device, queue, info);
//! let plan = Plan::new(&zoo::get("regnet_y_400mf")?, 224, 224)?;
//! let weights = Weights::random(&plan, 0);
//! let runner = GpuRunner::new(&ctx, &plan, &weights, RunnerOptions::default())?;
//! let pre = GpuPreprocess::for_runner(&runner, EvalTransform::default())?;
//! let classify = pre.bind_runner(texture, &runner, 0)?; // texture -> image 0 of the input
//! let readback = LogitsReadback::new(&runner);
//!
//! // Per frame, in the host's own encoder, after its passes rendered into `texture`.
//! let mut encoder = ctx.device.create_command_encoder(&Default::default());
//! // ... the host's passes ...
//! classify.encode(&mut encoder);      // texture -> runner.input_buffer()
//! runner.encode(&mut encoder);        // input -> runner.logits_buffer() (bind or copy it)
//! readback.encode_copy(&mut encoder); // optional: logits -> staging buffer
//! ctx.queue.submit([encoder.finish()]);
//! let logits = readback.read_blocking()?; // or `readback.read().await`, which never blocks
//! println!("{:?}", logits.top_k(0, 5));
//! # Ok(()) }
//! ```

use std::ops::Range;

use super::{GpuContext, GpuRunner, Precision};
use crate::error::{Error, Result};
use crate::preprocess::{center_crop_offset, EvalTransform};

const SHADER: &str = include_str!("../../shaders/preprocess.wgsl");

/// The file under `shaders/`.
pub const SHADER_FILE: &str = "preprocess.wgsl";

/// Texture formats the pass reads (any other is an error naming these).
pub const SUPPORTED_FORMATS: &[wgpu::TextureFormat] = &[
    wgpu::TextureFormat::Rgba8Unorm,
    wgpu::TextureFormat::Rgba8UnormSrgb,
    wgpu::TextureFormat::Bgra8Unorm,
    wgpu::TextureFormat::Bgra8UnormSrgb,
    wgpu::TextureFormat::Rgba16Float,
    wgpu::TextureFormat::Rgba32Float,
    wgpu::TextureFormat::Rgb10a2Unorm,
];

/// Workgroup size of the pass (8 x 8 output pixels).
const WG: u32 = 8;

/// The complete WGSL source of the pass writing `precision` (precision line + kernel; the
/// same precision line as the inference kernels).
pub fn source(precision: Precision) -> String {
    let line = match precision {
        Precision::F32 => "alias store_t = f32;\n",
        Precision::F16 => "enable f16;\nalias store_t = f16;\n",
    };
    format!("{line}{SHADER}")
}

/// How the resampler rounds; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Rounding {
    /// As Pillow: source quantised to 8-bit levels, Pillow's fixed-point weights and integer
    /// sums, each pass rounded to 8 bits: bit-identical to the CPU path on the same pixels.
    #[default]
    Pil,
    /// The same weights in f32 without any rounding (within one level of PIL); float and
    /// 10-bit texels are used as they are.
    Float,
}

/// What the pass computes and writes.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PreprocessOptions {
    /// Resize size, crop size, mean and std (torchvision's `ImageClassification` parameters).
    pub transform: EvalTransform,
    /// Precision of the values written (the runner's: f16 needs `shader-f16`).
    pub precision: Precision,
    /// Resampler rounding.
    pub rounding: Rounding,
}

/// A region of a texture to transform instead of the whole of it (mip level 0, layer 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Top-left texel `[x, y]`.
    pub origin: [u32; 2],
    /// `[width, height]`, at least 1x1.
    pub size: [u32; 2],
}

/// The compiled preprocessing pass for one device, transform and output precision.
/// `Send + Sync`; bind it to any number of textures and targets.
#[derive(Debug)]
pub struct GpuPreprocess {
    device: wgpu::Device,
    opts: PreprocessOptions,
    layout: wgpu::BindGroupLayout,
    /// By the shader's `INPUT`: [as loaded, rounded to levels, sRGB-encoded and rounded].
    pipelines: [wgpu::ComputePipeline; 3],
}

/// The pass bound to one texture (region) and one target slot: record it into any encoder,
/// any number of times (re-recording reads the texture's current contents).
#[derive(Debug)]
pub struct PreprocessBinding {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    grid: [u32; 2],
    source_size: [u32; 2],
    resized: [u32; 2],
}

impl PreprocessBinding {
    /// Records the pass (one compute pass, one dispatch) into the host's encoder.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("regnet preprocess"),
            timestamp_writes: None,
        });
        self.dispatch(&mut pass);
    }

    /// Records the dispatch into a compute pass the host has open.
    pub fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.grid[0], self.grid[1], 1);
    }

    /// `[width, height]` of the source region.
    pub fn source_size(&self) -> [u32; 2] {
        self.source_size
    }

    /// `[width, height]` the source is resized to before the crop (torchvision's rule).
    pub fn resized_size(&self) -> [u32; 2] {
        self.resized
    }
}

/// One axis of the geometry: (first kept resized pixel, padding before it, covered length).
fn crop_axis(size: usize, crop: usize) -> (usize, usize, usize) {
    if crop > size {
        (0, (crop - size) / 2, size)
    } else {
        (center_crop_offset(size, crop), 0, crop)
    }
}

/// `convert_image_dtype(float)` then `normalize`, in f32, as the CPU path computes them.
fn normalize_u8(v: u8, mean: f32, std: f32) -> f32 {
    (v as f32 / 255.0 - mean) / std
}

/// Where a region lands in the model's input: see [`GpuPreprocess::bind_region`].
struct Geometry {
    /// The region's size after the resize (width, height).
    resized: [usize; 2],
    /// The crop (width, height): the model's input plane.
    crop: [usize; 2],
    /// Zero padding before the resized image when the crop is larger (x, y).
    pad: [usize; 2],
    /// The part of the crop the resized image covers (width, height).
    window: [usize; 2],
    cols: Taps,
    rows: Taps,
    /// The first value of the image's slot in the target.
    base: u32,
    grid: [u32; 2],
}

/// The region is inside the texture and not empty.
fn check_region(texture: &wgpu::Texture, region: Region) -> Result<()> {
    let [x, y] = region.origin;
    let [w, h] = region.size;
    if w == 0
        || h == 0
        || x as u64 + w as u64 > texture.width() as u64
        || y as u64 + h as u64 > texture.height() as u64
    {
        return Err(Error::Input(format!(
            "region {w}x{h} at ({x}, {y}) is empty or outside the {}x{} texture",
            texture.width(),
            texture.height()
        )));
    }
    Ok(())
}

/// Pillow's bilinear resampling taps for a range of output positions along one axis
/// (`precompute_coeffs` + `normalize_coeffs_8bpc`, in f64 as Pillow computes them: the same
/// arithmetic as the CPU path). An axis whose size does not change gets identity taps
/// (Pillow skips its pass; one tap of weight 1.0 computes the same).
struct Taps {
    first: Vec<usize>,
    count: Vec<usize>,
    /// 22-bit fixed-point weights, `ksize` per output position.
    weights: Vec<i32>,
    ksize: usize,
}

impl Taps {
    fn new(in_size: usize, out_size: usize, outputs: Range<usize>) -> Taps {
        if in_size == out_size {
            return Taps {
                first: outputs.clone().collect(),
                count: vec![1; outputs.len()],
                weights: vec![1 << 22; outputs.len()],
                ksize: 1,
            };
        }
        let scale = (in_size as f32) as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // bilinear support is 1.0
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let n = outputs.len();
        let mut taps = Taps {
            first: Vec::with_capacity(n),
            count: Vec::with_capacity(n),
            weights: vec![0; n * ksize],
            ksize,
        };
        let mut k = vec![0f64; ksize];
        for (i, xx) in outputs.enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // C `(int)` truncates toward zero; then clamp to the image.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(0) as usize;
            let count = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(count) {
                let arg = ((x + xmin) as f64 - center + 0.5) * ss;
                let w = arg.abs();
                *kx = if w < 1.0 { 1.0 - w } else { 0.0 };
                ww += *kx;
            }
            for (d, &w) in taps.weights[i * ksize..].iter_mut().zip(&k).take(count) {
                let w = if ww != 0.0 { w / ww } else { w };
                // normalize_coeffs_8bpc: round half away from zero (weights are >= 0).
                *d = (0.5 + w * (1u32 << 22) as f64) as i32;
            }
            taps.first.push(xmin);
            taps.count.push(count);
        }
        taps
    }

    /// Words the taps take in the table.
    fn len(&self) -> usize {
        2 * self.first.len() + self.weights.len()
    }
}

fn check_transform(t: &EvalTransform) -> Result<()> {
    if t.crop.0 == 0 || t.crop.1 == 0 {
        return Err(Error::Input(format!(
            "crop size must be at least 1x1; got {}x{} (height x width)",
            t.crop.0, t.crop.1
        )));
    }
    if t.resize == 0 {
        return Err(Error::Input("resize size must be at least 1".into()));
    }
    if let Some(c) = (0..3).find(|&c| !(t.std[c].is_finite() && t.std[c] != 0.0)) {
        return Err(Error::Input(format!(
            "std[{c}] = {} must be finite and non-zero",
            t.std[c]
        )));
    }
    if let Some(c) = (0..3).find(|&c| !t.mean[c].is_finite()) {
        return Err(Error::Input(format!(
            "mean[{c}] = {} must be finite",
            t.mean[c]
        )));
    }
    Ok(())
}

/// What the pass needs of a device, with the first shortfall named.
fn check_device(device: &wgpu::Device, precision: Precision) -> Result<()> {
    if precision == Precision::F16 && !device.features().contains(wgpu::Features::SHADER_F16) {
        return Err(Error::UnsupportedFeature {
            feature: "shader-f16",
            adapter: "the host's device".into(),
            needed_for: "f16 preprocessing output".into(),
        });
    }
    let l = device.limits();
    for (name, have, need) in [
        ("max_bind_groups", l.max_bind_groups, 1),
        (
            "max_sampled_textures_per_shader_stage",
            l.max_sampled_textures_per_shader_stage,
            1,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage,
            2,
        ),
        (
            "max_uniform_buffers_per_shader_stage",
            l.max_uniform_buffers_per_shader_stage,
            1,
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup,
            WG * WG,
        ),
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x,
            WG,
        ),
        (
            "max_compute_workgroup_size_y",
            l.max_compute_workgroup_size_y,
            WG,
        ),
    ] {
        if have < need {
            return Err(Error::DeviceLimit {
                what: "the preprocessing pass".into(),
                limit: name,
                have: have as u64,
                needed: need as u64,
                advice: String::new(),
            });
        }
    }
    Ok(())
}

impl GpuPreprocess {
    /// Compiles the pass on `ctx`'s device. Requests nothing of the device: errors name a
    /// missing feature (`shader-f16` for f16 output) or limit.
    pub fn new(ctx: &GpuContext, opts: PreprocessOptions) -> Result<Self> {
        check_transform(&opts.transform)?;
        let device = &ctx.device;
        check_device(device, opts.precision)?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(SHADER_FILE),
            source: wgpu::ShaderSource::Wgsl(source(opts.precision).into()),
        });
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(SHADER_FILE),
            entries: &[
                entry(
                    0,
                    wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                ),
                entry(
                    1,
                    wgpu::BindingType::Texture {
                        // Unfilterable accepts filterable formats too (and rgba32float).
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                ),
                entry(
                    2,
                    wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                ),
                entry(
                    3,
                    wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                ),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(SHADER_FILE),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pil = match opts.rounding {
            Rounding::Pil => 1.0,
            Rounding::Float => 0.0,
        };
        let pipeline = |input: f64| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(SHADER_FILE),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[("INPUT", input), ("PIL", pil)],
                    zero_initialize_workgroup_memory: false,
                },
                cache: ctx.pipeline_cache(),
            })
        };
        let pipelines = [pipeline(0.0), pipeline(1.0), pipeline(2.0)];
        // Native wgpu reports at once; elsewhere errors reach the device's error handler.
        if let Some(Some(e)) = super::readback::ready_now(scope.pop()) {
            return Err(Error::Gpu(format!(
                "building the preprocessing pass failed: {e}"
            )));
        }
        Ok(GpuPreprocess {
            device: device.clone(),
            opts,
            layout,
            pipelines,
        })
    }

    /// The pass for `runner`: its device and precision, checking that the crop is the
    /// runner's input size. [`Rounding::Pil`].
    pub fn for_runner(runner: &GpuRunner, transform: EvalTransform) -> Result<Self> {
        let s = runner.input_shape();
        if transform.crop != (s[2], s[3]) {
            return Err(Error::Input(format!(
                "the transform crops {}x{} (height x width) but the runner's input is {}x{}",
                transform.crop.0, transform.crop.1, s[2], s[3]
            )));
        }
        Self::new(
            runner.context(),
            PreprocessOptions {
                transform,
                precision: runner.precision(),
                rounding: Rounding::Pil,
            },
        )
    }

    /// The options the pass was built with.
    pub fn options(&self) -> &PreprocessOptions {
        &self.opts
    }

    /// Bytes one image takes in a target buffer: `3 * crop_h * crop_w` values.
    pub fn image_bytes(&self) -> u64 {
        let (h, w) = self.opts.transform.crop;
        (3 * h * w) as u64 * self.opts.precision.bytes()
    }

    /// Binds the whole of `texture` (mip 0, layer 0; created on this pass's device) and image
    /// slot `batch_index` of `target`: an `[N, 3, crop_h, crop_w]` buffer in the pass's
    /// precision with `STORAGE` usage, e.g. [`GpuRunner::input_buffer`] (see
    /// [`bind_runner`](Self::bind_runner)).
    pub fn bind(
        &self,
        texture: &wgpu::Texture,
        target: &wgpu::Buffer,
        batch_index: usize,
    ) -> Result<PreprocessBinding> {
        let region = Region {
            origin: [0, 0],
            size: [texture.width(), texture.height()],
        };
        self.bind_region(texture, region, target, batch_index)
    }

    /// [`bind`](Self::bind) for image slot `batch_index` of `runner`'s input buffer, checking
    /// the crop and precision against the runner. (A later
    /// [`GpuRunner::set_input_buffer`] is not seen: bind again.)
    pub fn bind_runner(
        &self,
        texture: &wgpu::Texture,
        runner: &GpuRunner,
        batch_index: usize,
    ) -> Result<PreprocessBinding> {
        let s = runner.input_shape();
        if self.opts.transform.crop != (s[2], s[3]) || self.opts.precision != runner.precision() {
            return Err(Error::Input(format!(
                "this pass writes {}x{} {:?} images; the runner reads {:?} in {:?}",
                self.opts.transform.crop.0,
                self.opts.transform.crop.1,
                self.opts.precision,
                s,
                runner.precision()
            )));
        }
        if batch_index >= s[0] {
            return Err(Error::Input(format!(
                "batch index {batch_index} is out of the runner's batch of {}",
                s[0]
            )));
        }
        self.bind(texture, runner.input_buffer(), batch_index)
    }

    /// [`bind`](Self::bind) on a region of the texture: the region is the image transformed.
    pub fn bind_region(
        &self,
        texture: &wgpu::Texture,
        region: Region,
        target: &wgpu::Buffer,
        batch_index: usize,
    ) -> Result<PreprocessBinding> {
        let input = self.input_mode(texture)?;
        check_region(texture, region)?;
        self.check_target(target, batch_index)?;
        let [w, h] = region.size;
        let g = self.geometry(w as usize, h as usize, batch_index)?;
        let table = self.filter_table(&g, [w, h])?;
        let params = self.params(region.origin, &g);
        let bind_group = self.bind_group(texture, target, &params, &table)?;
        Ok(PreprocessBinding {
            pipeline: self.pipelines[input].clone(),
            bind_group,
            grid: g.grid,
            source_size: [w, h],
            resized: [g.resized[0] as u32, g.resized[1] as u32],
        })
    }

    /// The shader's `INPUT` for the texture's format (0 as loaded, 1 rounded to 8-bit levels,
    /// 2 sRGB-encoded first), after checking the texture can be read.
    fn input_mode(&self, texture: &wgpu::Texture) -> Result<usize> {
        use wgpu::TextureFormat as F;
        let input = match texture.format() {
            F::Rgba8UnormSrgb | F::Bgra8UnormSrgb => 2,
            F::Rgba8Unorm | F::Bgra8Unorm => 1,
            f if SUPPORTED_FORMATS.contains(&f) => match self.opts.rounding {
                Rounding::Pil => 1,
                Rounding::Float => 0,
            },
            f => {
                let supported: Vec<String> =
                    SUPPORTED_FORMATS.iter().map(|f| format!("{f:?}")).collect();
                return Err(Error::Input(format!(
                    "texture format {f:?} is not supported by the preprocessing pass; supported: {}",
                    supported.join(", ")
                )));
            }
        };
        if !texture
            .usage()
            .contains(wgpu::TextureUsages::TEXTURE_BINDING)
        {
            return Err(Error::Input(
                "the texture lacks the TEXTURE_BINDING usage the preprocessing pass reads it with"
                    .into(),
            ));
        }
        if texture.dimension() != wgpu::TextureDimension::D2 || texture.sample_count() != 1 {
            return Err(Error::Input(format!(
                "the preprocessing pass reads 2D single-sampled textures; this one is {:?} with {} samples",
                texture.dimension(),
                texture.sample_count()
            )));
        }
        Ok(input)
    }

    /// The target can be written by the pass and holds image slot `batch_index`.
    fn check_target(&self, target: &wgpu::Buffer, batch_index: usize) -> Result<()> {
        if !target.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::Input(
                "the target buffer lacks the STORAGE usage".into(),
            ));
        }
        let image = self.image_bytes();
        let end = (batch_index as u64 + 1) * image;
        if end > target.size() {
            return Err(Error::Input(format!(
                "image slot {batch_index} ends at byte {end}, past the {}-byte target buffer \
                 ({image} bytes per image)",
                target.size()
            )));
        }
        let max_binding = self.device.limits().max_storage_buffer_binding_size;
        if target.size() > max_binding {
            return Err(Error::binding_limit(
                format!("the target buffer ({} bytes)", target.size()),
                max_binding,
                target.size(),
                "",
            ));
        }
        Ok(())
    }

    /// Where a `w` x `h` region lands: its resized size, the crop window, the filter taps, the
    /// first value of slot `batch_index`, the dispatch grid (checked against the device).
    fn geometry(&self, w: usize, h: usize, batch_index: usize) -> Result<Geometry> {
        let t = &self.opts.transform;
        let (rw, rh) = t.resized_size(w, h)?;
        let (crop_h, crop_w) = t.crop;
        let (ox, pad_x, win_w) = crop_axis(rw, crop_w);
        let (oy, pad_y, win_h) = crop_axis(rh, crop_h);
        let values_per_image = 3 * crop_h as u64 * crop_w as u64;
        let base = batch_index as u64 * values_per_image;
        if base + values_per_image > u32::MAX as u64 {
            return Err(Error::Input(format!(
                "image slot {batch_index} is beyond the 2^32 values the pass can address"
            )));
        }
        let grid = [
            (crop_w as u64).div_ceil(WG as u64),
            (crop_h as u64).div_ceil(WG as u64),
        ];
        let max_grid = self.device.limits().max_compute_workgroups_per_dimension as u64;
        if grid[0] > max_grid || grid[1] > max_grid {
            return Err(Error::DeviceLimit {
                what: format!("a {crop_w}x{crop_h} crop"),
                limit: "max_compute_workgroups_per_dimension",
                have: max_grid,
                needed: grid[0].max(grid[1]),
                advice: String::new(),
            });
        }
        Ok(Geometry {
            resized: [rw, rh],
            crop: [crop_w, crop_h],
            pad: [pad_x, pad_y],
            window: [win_w, win_h],
            cols: Taps::new(w, rw, ox..ox + win_w),
            rows: Taps::new(h, rh, oy..oy + win_h),
            base: base as u32,
            grid: [grid[0] as u32, grid[1] as u32],
        })
    }

    /// The table the shader reads: the normalised value of every level per channel, then
    /// the taps (see the shader), checked against the binding limit.
    fn filter_table(&self, g: &Geometry, [w, h]: [u32; 2]) -> Result<Vec<u32>> {
        let t = &self.opts.transform;
        let (cols, rows) = (&g.cols, &g.rows);
        let mut table: Vec<u32> = Vec::with_capacity(768 + cols.len() + rows.len());
        for c in 0..3 {
            table.extend((0..=255u8).map(|v| normalize_u8(v, t.mean[c], t.std[c]).to_bits()));
        }
        for taps in [cols, rows] {
            for (first, count) in taps.first.iter().zip(&taps.count) {
                table.extend([*first as u32, *count as u32]);
            }
        }
        table.extend(cols.weights.iter().map(|&v| v as u32));
        table.extend(rows.weights.iter().map(|&v| v as u32));
        let table_bytes = table.len() as u64 * 4;
        let max_binding = self.device.limits().max_storage_buffer_binding_size;
        if table_bytes > max_binding {
            let [rw, rh] = g.resized;
            return Err(Error::binding_limit(
                format!("the filter table for resampling {w}x{h} to {rw}x{rh}"),
                max_binding,
                table_bytes,
                "",
            ));
        }
        Ok(table)
    }

    /// The uniform parameters: the region's origin and the geometry, then mean and std.
    fn params(&self, [x, y]: [u32; 2], g: &Geometry) -> Vec<u8> {
        let u = |v: usize| v as u32;
        let ints: [u32; 12] = [
            x,
            y,
            u(g.crop[0]),
            u(g.crop[1]),
            u(g.pad[0]),
            u(g.pad[1]),
            u(g.window[0]),
            u(g.window[1]),
            u(g.cols.ksize),
            u(g.rows.ksize),
            g.base,
            0,
        ];
        let t = &self.opts.transform;
        let mut params: Vec<u8> = bytemuck::cast_slice(&ints).to_vec();
        for v in [t.mean, t.std] {
            params.extend_from_slice(bytemuck::cast_slice(&[v[0], v[1], v[2], 0.0f32]));
        }
        params
    }

    /// The bind group: parameters, the texture's first mip and layer, the table, the target.
    /// What the checks above cannot see is reported as an error rather than left to the
    /// device's error handler.
    fn bind_group(
        &self,
        texture: &wgpu::Texture,
        target: &wgpu::Buffer,
        params: &[u8],
        table: &[u32],
    ) -> Result<wgpu::BindGroup> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let init = |label, contents: &[u8], usage| {
            wgpu::util::DeviceExt::create_buffer_init(
                &self.device,
                &wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage,
                },
            )
        };
        let uniform = init("preprocess parameters", params, wgpu::BufferUsages::UNIFORM);
        let table = init(
            "preprocess filter table",
            bytemuck::cast_slice(table),
            wgpu::BufferUsages::STORAGE,
        );
        let view = texture.create_view(&wgpu::TextureViewDescriptor {
            label: Some("preprocess source"),
            dimension: Some(wgpu::TextureViewDimension::D2),
            base_mip_level: 0,
            mip_level_count: Some(1),
            base_array_layer: 0,
            array_layer_count: Some(1),
            ..Default::default()
        });
        let entry = |binding, resource| wgpu::BindGroupEntry { binding, resource };
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("preprocess"),
            layout: &self.layout,
            entries: &[
                entry(0, uniform.as_entire_binding()),
                entry(1, wgpu::BindingResource::TextureView(&view)),
                entry(2, table.as_entire_binding()),
                entry(3, target.as_entire_binding()),
            ],
        });
        if let Some(Some(e)) = super::readback::ready_now(scope.pop()) {
            return Err(Error::Gpu(format!(
                "binding the texture to the preprocessing pass failed: {e}"
            )));
        }
        Ok(bind_group)
    }

    /// One-shot [`bind_runner`](Self::bind_runner) + [`PreprocessBinding::encode`]: records
    /// the pass reading `texture` into image `batch_index` of `runner`'s input. Binding costs
    /// an 80-byte uniform buffer, a small filter table and a bind group: for every frame, keep
    /// the [`PreprocessBinding`] instead.
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        texture: &wgpu::Texture,
        runner: &GpuRunner,
        batch_index: usize,
    ) -> Result<()> {
        self.bind_runner(texture, runner, batch_index)?
            .encode(encoder);
        Ok(())
    }
}
