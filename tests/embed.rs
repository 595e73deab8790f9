//! Embedding in a wgpu application: a device the host created (WebGPU default limits, no
//! features), textures in, everything recorded into the host's encoder, logits read back
//! without blocking. A missing adapter is a failure, not a skip.

mod common;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use common::*;
use image::RgbImage;
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::gpu::preprocess::{Region, SUPPORTED_FORMATS};
use regnet_wgpu::gpu::readback::{read_buffer_blocking, read_logits};
use regnet_wgpu::gpu::{
    GpuContext, GpuPreprocess, GpuRunner, LogitsReadback, Precision, PreprocessBinding,
    PreprocessOptions, Rounding, RunnerOptions,
};
use regnet_wgpu::preprocess::{load_rgb8, stack, EvalTransform};
use regnet_wgpu::{zoo, Plan, Tensor, Weights};

/// A device as a host application makes it: its own instance and adapter, WebGPU's default
/// limits (not the adapter's) and only the features it asks for.
fn host_device(features: wgpu::Features, limits: wgpu::Limits) -> GpuContext {
    regnet_wgpu::gpu::quiet_headless_wayland();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .unwrap_or_else(|e| panic!("embedding tests need a GPU adapter (lavapipe will do): {e}"));
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host"),
        required_features: features,
        required_limits: limits,
        ..Default::default()
    }))
    .unwrap_or_else(|e| panic!("the adapter refused the host's device: {e}"));
    GpuContext::from_device(device, queue, adapter.get_info())
}

/// The shared host device: default limits, no features.
fn host() -> &'static GpuContext {
    static HOST: OnceLock<GpuContext> = OnceLock::new();
    HOST.get_or_init(|| {
        let ctx = host_device(wgpu::Features::empty(), wgpu::Limits::default());
        eprintln!("host adapter: {}", ctx.describe());
        ctx
    })
}

/// Pixels with smooth ramps, hard edges and noise (every resampling case has work to do).
fn test_image(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(73856093) ^ y.wrapping_mul(19349663) ^ seed.wrapping_mul(83492791))
            .wrapping_mul(2654435761)
            >> 24;
        let edge = if (x / 5 + y / 7) % 2 == 0 { 200 } else { 30 };
        [
            ((x * 255) / w.max(2)) as u8,
            ((edge + n) / 2) as u8,
            (((x + 2 * y) * 3) % 256) as u8,
        ]
        .into()
    })
}

/// The texel bytes of `img` in `format`, as a host would upload them.
fn texels(img: &RgbImage, format: wgpu::TextureFormat) -> Vec<u8> {
    use wgpu::TextureFormat as F;
    let mut out = Vec::new();
    for p in img.pixels() {
        let [r, g, b] = p.0;
        match format {
            F::Rgba8Unorm | F::Rgba8UnormSrgb => out.extend_from_slice(&[r, g, b, 255]),
            F::Bgra8Unorm | F::Bgra8UnormSrgb => out.extend_from_slice(&[b, g, r, 255]),
            F::Rgba16Float => {
                for v in [r, g, b, 255] {
                    out.extend_from_slice(&half::f16::from_f32(v as f32 / 255.0).to_le_bytes());
                }
            }
            F::Rgba32Float => {
                for v in [r, g, b, 255] {
                    out.extend_from_slice(&(v as f32 / 255.0).to_le_bytes());
                }
            }
            F::Rgb10a2Unorm => {
                let q = |v: u8| ((v as u32 * 1023 + 127) / 255) & 0x3ff;
                let word = q(r) | (q(g) << 10) | (q(b) << 20) | (3 << 30);
                out.extend_from_slice(&word.to_le_bytes());
            }
            f => panic!("no test upload for {f:?}"),
        }
    }
    out
}

fn upload(ctx: &GpuContext, img: &RgbImage, format: wgpu::TextureFormat) -> wgpu::Texture {
    let size = wgpu::Extent3d {
        width: img.width(),
        height: img.height(),
        depth_or_array_layers: 1,
    };
    let texture = ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("test image"),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let data = texels(img, format);
    ctx.queue.write_texture(
        texture.as_image_copy(),
        &data,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(data.len() as u32 / img.height()),
            rows_per_image: Some(img.height()),
        },
        size,
    );
    texture
}

/// A host-owned `[N, 3, H, W]` buffer the library can write and the test can read.
fn target_buffer(ctx: &GpuContext, bytes: u64) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host input"),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

fn submit(ctx: &GpuContext, record: impl FnOnce(&mut wgpu::CommandEncoder)) {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    record(&mut enc);
    ctx.queue.submit([enc.finish()]);
}

/// Runs the pass on `texture` (or its region) and reads the `[3, crop_h, crop_w]` result.
fn gpu_transform(
    ctx: &GpuContext,
    pre: &GpuPreprocess,
    texture: &wgpu::Texture,
    region: Option<Region>,
) -> Tensor {
    let target = target_buffer(ctx, pre.image_bytes());
    let binding: PreprocessBinding = match region {
        Some(r) => pre.bind_region(texture, r, &target, 0).unwrap(),
        None => pre.bind(texture, &target, 0).unwrap(),
    };
    submit(ctx, |enc| binding.encode(enc));
    let bytes = read_buffer_blocking(ctx, &target, 0, pre.image_bytes()).unwrap();
    let (h, w) = pre.options().transform.crop;
    let data = match pre.options().precision {
        Precision::F32 => bytemuck::pod_collect_to_vec(&bytes),
        Precision::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    };
    Tensor::new(vec![3, h, w], data).unwrap()
}

/// How far, in 8-bit levels, a texel of `format` holding level k can be from k itself (the
/// `Rounding::Float` pass uses float and 10-bit texels as they are): f16 keeps 11 significant
/// bits, so k/255 < 1 is off by at most 2^-12 (0.062 levels); 10-bit stores round(1023 k/255),
/// off by at most 0.5/1023 (0.125 levels); 8-bit formats are rounded to levels on load.
fn input_error_levels(format: wgpu::TextureFormat) -> f64 {
    match format {
        wgpu::TextureFormat::Rgba16Float => 255.0 / 4096.0,
        wgpu::TextureFormat::Rgb10a2Unorm => 255.0 * 0.5 / 1023.0,
        wgpu::TextureFormat::Rgba32Float => 255.0 / (1 << 24) as f64,
        _ => 0.0,
    }
}

/// The largest difference in 8-bit levels (`|Δ| * std * 255`, per channel).
fn level_diff(gpu: &Tensor, cpu: &Tensor, tf: &EvalTransform) -> f64 {
    assert_eq!(gpu.shape, cpu.shape);
    let r = gpu.shape.len();
    let plane = gpu.shape[r - 1] * gpu.shape[r - 2];
    gpu.data
        .iter()
        .zip(&cpu.data)
        .enumerate()
        .map(|(i, (a, b))| (*a as f64 - *b as f64).abs() * tf.std[(i / plane) % 3] as f64 * 255.0)
        .fold(0.0, f64::max)
}

fn small_transform() -> EvalTransform {
    EvalTransform {
        resize: 73,
        crop: (64, 64),
        ..Default::default()
    }
}

/// The GPU pass against `EvalTransform::apply` (the PIL-exact CPU path) on the same pixels:
/// every format, both roundings, down- and upscaling, odd sizes, no-op resize, padding,
/// and a region.
///
/// Bounds (in 8-bit levels, i.e. normalised difference × std × 255):
/// - `Rounding::Pil`: **exact**. The host computes the taps with the CPU path's f64 arithmetic
///   (Pillow's), the shader repeats Pillow's integer sums and 8-bit roundings (exact in i32),
///   and the normalised value of each level comes from a table the host filled with the CPU
///   path's f32 expression. So every format holding the same 8-bit pixels (sRGB re-encoded,
///   BGRA swizzled, floats at k/255, 10-bit at round(k·1023/255)) gives the same bits.
/// - `Rounding::Float`: no rounding between or after the passes; PIL rounds the horizontal pass
///   (≤ 0.5 level, carried through the vertical pass by non-negative weights summing to 1) and
///   the result (≤ 0.5): max ≤ 1 level, plus the float/10-bit texel's own distance from its
///   level ([`input_error_levels`], carried through by weights summing to 1), plus f32 slack
///   of 1e-3 level.
///
/// One level is 1/255/std in normalised units: ≤ 0.0175 for ImageNet's std.
#[test]
fn texture_preprocessing_matches_the_cpu_transform() {
    let ctx = host();
    let photo = load_rgb8(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/chelsea.png")).unwrap();
    let cases: Vec<(&str, RgbImage, EvalTransform)> = vec![
        ("photo 451x300", photo, EvalTransform::default()),
        (
            "synthetic 301x200",
            test_image(301, 200, 1),
            small_transform(),
        ),
        ("upscale 37x29", test_image(37, 29, 2), small_transform()),
        ("tall 50x333", test_image(50, 333, 3), small_transform()),
        ("no resize 73x90", test_image(73, 90, 4), small_transform()),
        (
            "padded 17x40",
            test_image(17, 40, 5),
            EvalTransform {
                resize: 20,
                crop: (48, 24),
                ..Default::default()
            },
        ),
    ];
    eprintln!(
        "{:<18} {:<15} {:>22} {:>22}",
        "image", "format", "Pil: values != CPU", "Float: max levels off"
    );
    for (name, img, tf) in &cases {
        let cpu = tf.apply(img).unwrap();
        let passes = [Rounding::Pil, Rounding::Float].map(|rounding| {
            let opts = PreprocessOptions {
                transform: tf.clone(),
                precision: Precision::F32,
                rounding,
            };
            GpuPreprocess::new(ctx, opts).unwrap()
        });
        for &format in SUPPORTED_FORMATS {
            let texture = upload(ctx, img, format);
            let what = format!("{name}, {format:?}");
            // Pil: bit-identical (same taps, same integer arithmetic, same f32 values).
            let gpu = gpu_transform(ctx, &passes[0], &texture, None);
            let off = gpu
                .data
                .iter()
                .zip(&cpu.data)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            let max = level_diff(&gpu, &cpu, tf);
            assert_eq!(
                off, 0,
                "{what}, Pil: {off} values differ from the CPU path (up to {max:.3} levels)"
            );
            // Float: within one level plus the texel's own error.
            let gpu = gpu_transform(ctx, &passes[1], &texture, None);
            let max = level_diff(&gpu, &cpu, tf);
            let bound = 1.0 + input_error_levels(format) + 1e-3;
            assert!(
                max <= bound,
                "{what}, Float: {max:.4} levels off the CPU path (bound {bound:.4})"
            );
            eprintln!(
                "{name:<18} {:<15} {off:>22} {max:>22.3}",
                format!("{format:?}")
            );
        }
    }

    // A region of a texture is the image transformed.
    let img = test_image(120, 90, 6);
    let texture = upload(ctx, &img, wgpu::TextureFormat::Rgba8Unorm);
    let pre = GpuPreprocess::new(
        ctx,
        PreprocessOptions {
            transform: small_transform(),
            ..Default::default()
        },
    )
    .unwrap();
    let region = Region {
        origin: [13, 7],
        size: [81, 70],
    };
    let gpu = gpu_transform(ctx, &pre, &texture, Some(region));
    let sub = image::imageops::crop_imm(&img, 13, 7, 81, 70).to_image();
    assert_eq!(
        gpu,
        small_transform().apply(&sub).unwrap(),
        "region of a texture"
    );
}

/// f16 output (for f16 runners), on a host device with `shader-f16`: the CPU path's exact f32
/// values converted to f16 (WGSL picks one of the two nearest f16 values); then an f16 runner
/// fed from a texture.
#[test]
fn f16_output_matches_the_cpu_transform() {
    let probe = host();
    let ctx = if probe.device.features().contains(wgpu::Features::SHADER_F16) {
        probe.clone()
    } else {
        regnet_wgpu::gpu::quiet_headless_wayland();
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        let adapter =
            pollster::block_on(wgpu::Instance::new(desc).request_adapter(&Default::default()))
                .unwrap();
        if !adapter.features().contains(wgpu::Features::SHADER_F16) {
            skip("f16 GPU preprocessing: the adapter lacks shader-f16");
            return;
        }
        host_device(wgpu::Features::SHADER_F16, wgpu::Limits::default())
    };
    let tf = small_transform();
    let img = test_image(301, 200, 7);
    let pre = GpuPreprocess::new(
        &ctx,
        PreprocessOptions {
            transform: tf.clone(),
            precision: Precision::F16,
            rounding: Rounding::Pil,
        },
    )
    .unwrap();
    let gpu = gpu_transform(
        &ctx,
        &pre,
        &upload(&ctx, &img, wgpu::TextureFormat::Rgba8Unorm),
        None,
    );
    let cpu = tf.apply(&img).unwrap();
    let mut nearest = 0;
    for (g, c) in gpu.data.iter().zip(&cpu.data) {
        // WGSL converts f32 to f16 to one of the two nearest values.
        assert!(
            (g - c).abs() <= c.abs() * (1.0 / 1024.0) + 1e-7,
            "f16 output {g} is not a neighbour of the CPU path's {c}"
        );
        nearest += (*g == half::f16::from_f32(*c).to_f32()) as usize;
    }
    eprintln!(
        "f16 preprocessing: {nearest} of {} values are the CPU path's rounded to nearest f16",
        gpu.len()
    );

    // Into an f16 runner, in one submission: within the WGSL path's f16 bound (5e-3).
    let plan = Plan::new(zoo::get("regnet_x_200mf").unwrap(), 64, 64).unwrap();
    let weights = Weights::random(&plan, 11);
    let opts = RunnerOptions {
        precision: Precision::F16,
        ..Default::default()
    };
    let runner = GpuRunner::new(&ctx, &plan, &weights, opts).unwrap();
    let texture = upload(&ctx, &img, wgpu::TextureFormat::Bgra8UnormSrgb);
    let binding = GpuPreprocess::for_runner(&runner, tf.clone())
        .unwrap()
        .bind_runner(&texture, &runner, 0)
        .unwrap();
    let readback = LogitsReadback::new(&runner);
    submit(&ctx, |enc| {
        binding.encode(enc);
        runner.encode(enc);
        readback.encode_copy(enc);
    });
    let gpu = readback.read_blocking().unwrap();
    let cpu = CpuBackend::new(plan, weights)
        .unwrap()
        .run(&stack(&[cpu]).unwrap())
        .unwrap();
    let e = assert_close("f16 runner fed from a texture", &gpu, &cpu, 5e-3);
    eprintln!("f16 runner fed from a texture: rel err {e:.2e}");
}

/// Texture in, logits out, in one host submission: two textures of different formats fill a
/// batch of two in a host-owned input buffer; that input is bit-identical to the CPU path's
/// preprocessing, and the logits equal the CPU backend's within the f32 bound. Then the same
/// logits again through the non-blocking future, polled like a frame loop would.
#[test]
fn texture_to_logits_in_one_submission_matches_the_cpu_backend() {
    let ctx = host();
    let tf = small_transform();
    let plan = Plan::new(zoo::get("regnet_x_200mf").unwrap(), 64, 64).unwrap();
    let weights = Weights::random(&plan, 3);
    let mut runner = GpuRunner::new(
        ctx,
        &plan,
        &weights,
        RunnerOptions {
            batch: 2,
            ..Default::default()
        },
    )
    .unwrap();
    // The host provides the input buffer (here: one it can also read back).
    let input = target_buffer(ctx, runner.input_buffer_size());
    runner.set_input_buffer(input.clone()).unwrap();
    let pre = GpuPreprocess::for_runner(&runner, tf.clone()).unwrap();
    let imgs = [test_image(160, 120, 8), test_image(90, 131, 9)];
    let textures = [
        upload(ctx, &imgs[0], wgpu::TextureFormat::Rgba8UnormSrgb),
        upload(ctx, &imgs[1], wgpu::TextureFormat::Bgra8Unorm),
    ];
    let bindings: Vec<PreprocessBinding> = textures
        .iter()
        .enumerate()
        .map(|(n, t)| pre.bind_runner(t, &runner, n).unwrap())
        .collect();
    let readback = LogitsReadback::new(&runner);
    submit(ctx, |enc| {
        for b in &bindings {
            b.encode(enc);
        }
        runner.encode(enc);
        readback.encode_copy(enc);
    });
    let logits = readback.read_blocking().unwrap();
    assert_eq!(logits.shape, vec![2, 1000]);

    let gpu_input = Tensor::new(
        vec![2, 3, 64, 64],
        bytemuck::pod_collect_to_vec(
            &read_buffer_blocking(ctx, &input, 0, runner.input_bytes()).unwrap(),
        ),
    )
    .unwrap();
    let cpu = CpuBackend::new(plan.clone(), weights.clone()).unwrap();
    let e = assert_close(
        "logits vs the CPU backend",
        &logits,
        &cpu.run(&gpu_input).unwrap(),
        F32_REL_TOL,
    );
    let cpu_input = stack(&[tf.apply(&imgs[0]).unwrap(), tf.apply(&imgs[1]).unwrap()]).unwrap();
    // The GPU preprocessing gave the CPU path's exact input, so the whole path is within the
    // f32 bound of the whole CPU path too.
    assert_eq!(
        gpu_input, cpu_input,
        "GPU preprocessing of the two textures"
    );
    let cpu_logits = cpu.run(&cpu_input).unwrap();
    assert_same_top1("texture path", &logits, &cpu_logits);
    eprintln!("texture -> logits: rel err {e:.2e} vs the CPU path (preprocessing + CPU backend)");

    // Async readback without any blocking: a frame loop polls the future (which polls the
    // device itself) until it is ready.
    submit(ctx, |enc| runner.encode(enc));
    let mut fut = std::pin::pin!(read_logits(&runner));
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = 0;
    let again = loop {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            break r.unwrap();
        }
        frames += 1;
        assert!(frames < 10_000_000, "readback never completed");
        std::thread::yield_now();
    };
    assert_eq!(again, logits, "async readback of the same inference");
}

/// Two models on one host device, recorded into one encoder and submitted once.
#[test]
fn two_runners_share_one_device() {
    let ctx = host();
    let tf = EvalTransform {
        resize: 36,
        crop: (32, 32),
        ..Default::default()
    };
    let img = test_image(200, 150, 10);
    let texture = upload(ctx, &img, wgpu::TextureFormat::Rgba8Unorm);
    let mut models = Vec::new();
    for (name, seed) in [("regnet_x_200mf", 1), ("regnet_y_400mf", 2)] {
        let plan = Plan::new(zoo::get(name).unwrap(), 32, 32).unwrap();
        let weights = Weights::random(&plan, seed);
        let runner = GpuRunner::new(ctx, &plan, &weights, RunnerOptions::default()).unwrap();
        models.push((name, plan, weights, runner));
    }
    // One pass compiled once, bound to both runners' inputs.
    let pre = GpuPreprocess::for_runner(&models[0].3, tf.clone()).unwrap();
    let reads: Vec<LogitsReadback> = models.iter().map(|m| LogitsReadback::new(&m.3)).collect();
    let bindings: Vec<PreprocessBinding> = models
        .iter()
        .map(|m| pre.bind_runner(&texture, &m.3, 0).unwrap())
        .collect();
    submit(ctx, |enc| {
        for ((b, m), r) in bindings.iter().zip(&models).zip(&reads) {
            b.encode(enc);
            m.3.encode(enc);
            r.encode_copy(enc);
        }
    });
    let input = stack(&[tf.apply(&img).unwrap()]).unwrap();
    for ((name, plan, weights, _), r) in models.iter().zip(&reads) {
        let gpu = r.read_blocking().unwrap();
        let cpu = CpuBackend::new(plan.clone(), weights.clone())
            .unwrap()
            .run(&input)
            .unwrap();
        let e = assert_close(name, &gpu, &cpu, F32_REL_TOL);
        eprintln!("{name} on the shared device: rel err {e:.2e}");
    }
}

/// One runner, two threads calling `run` at once: each gets its own input's logits.
#[test]
fn one_runner_from_two_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<GpuRunner>();
    send_sync::<GpuPreprocess>();
    send_sync::<PreprocessBinding>();
    send_sync::<LogitsReadback>();
    send_sync::<GpuContext>();

    let ctx = host();
    let plan = Plan::new(zoo::get("regnet_x_200mf").unwrap(), 32, 32).unwrap();
    let weights = Weights::random(&plan, 5);
    let runner = Arc::new(GpuRunner::new(ctx, &plan, &weights, RunnerOptions::default()).unwrap());
    let inputs: Vec<Tensor> = (0..2)
        .map(|t| {
            Tensor::new(
                vec![1, 3, 32, 32],
                (0..3 * 32 * 32)
                    .map(|i| ((i * (7 + t) + 13 * t) % 97) as f32 / 48.0 - 1.0)
                    .collect(),
            )
            .unwrap()
        })
        .collect();
    let expected: Vec<Tensor> = inputs.iter().map(|x| runner.run(x).unwrap()).collect();
    assert_ne!(expected[0], expected[1]);
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let runner = runner.clone();
            let x = inputs[t].clone();
            std::thread::spawn(move || (0..4).map(|_| runner.run(&x).unwrap()).collect::<Vec<_>>())
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        for got in h.join().unwrap() {
            assert_eq!(got, expected[t], "thread {t} got another input's logits");
        }
    }
    let cpu = CpuBackend::new(plan, weights)
        .unwrap()
        .run(&inputs[0])
        .unwrap();
    assert_close("threaded runner vs CPU", &expected[0], &cpu, F32_REL_TOL);
}

/// The library asks nothing of the host's device: what is missing is an error naming it.
#[test]
fn missing_features_and_limits_are_named() {
    let ctx = host(); // no features
    let plan = Plan::new(zoo::get("regnet_x_200mf").unwrap(), 32, 32).unwrap();
    let weights = Weights::random(&plan, 0);
    if !ctx.has_f16() {
        let opts = RunnerOptions {
            precision: Precision::F16,
            ..Default::default()
        };
        let e = GpuRunner::new(ctx, &plan, &weights, opts)
            .err()
            .expect("f16 without shader-f16");
        assert!(e.to_string().contains("shader-f16"), "{e}");
        let e = GpuPreprocess::new(
            ctx,
            PreprocessOptions {
                precision: Precision::F16,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("shader-f16"), "{e}");
    }

    // A device with downlevel limits: the conv kernels bind 7 storage buffers, it has 4.
    let small = host_device(wgpu::Features::empty(), wgpu::Limits::downlevel_defaults());
    let e = GpuRunner::new(&small, &plan, &weights, RunnerOptions::default())
        .err()
        .expect("a runner on 4 storage buffers per stage");
    eprintln!("downlevel device: {e}");
    assert!(
        e.to_string()
            .contains("max_storage_buffers_per_shader_stage"),
        "{e}"
    );

    // A buffer over the host's max_storage_buffer_binding_size.
    let tight = host_device(
        wgpu::Features::empty(),
        wgpu::Limits {
            max_storage_buffer_binding_size: 1 << 16,
            ..Default::default()
        },
    );
    // Weights are split to fit (convolutions and the head), so the model runs at 32x32...
    let split = GpuRunner::new(&tight, &plan, &weights, RunnerOptions::default()).unwrap();
    assert!(split.dispatches() > plan.ops.len());
    // ...but a 224x224 input's activations (the stem's output is 1.6 MB) cannot be split.
    let big = Plan::new(zoo::get("regnet_x_200mf").unwrap(), 224, 224).unwrap();
    let e = GpuRunner::new(
        &tight,
        &big,
        &Weights::random(&big, 0),
        RunnerOptions::default(),
    )
    .err()
    .expect("activations over a 64 KiB binding limit");
    assert!(
        e.to_string().contains("max_storage_buffer_binding_size"),
        "{e}"
    );

    // Textures and targets the pass cannot use.
    let runner = GpuRunner::new(ctx, &plan, &weights, RunnerOptions::default()).unwrap();
    let tf = EvalTransform {
        resize: 36,
        crop: (32, 32),
        ..Default::default()
    };
    let pre = GpuPreprocess::for_runner(&runner, tf).unwrap();
    let tex = |format, usage| {
        ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: None,
            size: wgpu::Extent3d {
                width: 8,
                height: 8,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage,
            view_formats: &[],
        })
    };
    let e = pre
        .bind_runner(
            &tex(
                wgpu::TextureFormat::R8Unorm,
                wgpu::TextureUsages::TEXTURE_BINDING,
            ),
            &runner,
            0,
        )
        .unwrap_err();
    assert!(e.to_string().contains("Rgba8Unorm"), "{e}");
    let e = pre
        .bind_runner(
            &tex(
                wgpu::TextureFormat::Rgba8Unorm,
                wgpu::TextureUsages::COPY_DST,
            ),
            &runner,
            0,
        )
        .unwrap_err();
    assert!(e.to_string().contains("TEXTURE_BINDING"), "{e}");
    let ok = tex(
        wgpu::TextureFormat::Rgba8Unorm,
        wgpu::TextureUsages::TEXTURE_BINDING,
    );
    let e = pre.bind_runner(&ok, &runner, 1).unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");
    let e = pre.bind(&ok, &target_buffer(ctx, 64), 0).unwrap_err();
    assert!(e.to_string().contains("target buffer"), "{e}");
    let e = GpuPreprocess::for_runner(&runner, EvalTransform::default()).unwrap_err();
    assert!(e.to_string().contains("runner's input"), "{e}");
}
