//! embed: a wgpu host application that classifies what it renders, on its own device, in one
//! submission, and checks the result against the CPU path on the same pixels.
//!
//! ```text
//! embed [--model NAME] [--weights FILE] [--image FILE]
//! ```
//!
//! What the host does (everything a game, a camera tool or a visualisation would do):
//!
//! 1. creates its own device (WebGPU's default limits, no optional features);
//! 2. uploads a photo (default: the bundled `assets/chelsea.png`) and draws it with its own
//!    render pipeline into an `rgba8unorm-srgb` render target, with a vignette and a frame;
//! 3. records into one encoder: its render pass, the library's preprocessing pass (render
//!    target → the model's input, torchvision's transform on the GPU), the whole inference,
//!    the copy of the logits to a staging buffer; submits once;
//! 4. keeps running its frame loop while the logits come back through a future (no blocking);
//! 5. checks: reads the rendered pixels back, runs the CPU path (PIL-exact preprocessing +
//!    the CPU backend) on them, and compares inputs, logits and top-5.
//!
//! Without `--weights` the weights are deterministic random ones (no pretrained weights are
//! bundled): the check is as strict, the class names are meaningless, and it says so.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use clap::Parser;
use image::RgbImage;
use regnet_wgpu::config::Architecture;
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::gpu::readback::read_buffer_blocking;
use regnet_wgpu::gpu::{GpuContext, GpuPreprocess, GpuRunner, LogitsReadback, RunnerOptions};
use regnet_wgpu::preprocess::{load_rgb8, stack, EvalTransform};
use regnet_wgpu::{Error, Plan, Result, Tensor, Weights};

const SAMPLE_PHOTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/chelsea.png");
const IMAGENET_CLASSES: &str = include_str!("../assets/imagenet_classes.txt");

/// Classify what a wgpu host renders, inside the host's own submission.
#[derive(Parser, Debug)]
#[command(name = "embed")]
struct Args {
    /// A named model (regnet_y_400mf, resnet50, rexnet_100, ...).
    #[arg(long, default_value = "regnet_y_400mf")]
    model: String,
    /// torchvision / timm state_dict as safetensors. Without it: random weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// The photo the host draws (PNG or JPEG).
    #[arg(long)]
    image: Option<PathBuf>,
}

/// The host's own drawing: the photo, darkened towards the corners, in a coloured frame.
const HOST_SHADER: &str = r#"
@group(0) @binding(0) var photo: texture_2d<f32>;

@vertex
fn vs(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let uv = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    return vec4<f32>(uv * 2.0 - 1.0, 0.0, 1.0);
}

@fragment
fn fs(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    let size = vec2<f32>(textureDimensions(photo));
    let c = textureLoad(photo, vec2<i32>(pos.xy), 0).rgb;
    let d = length((pos.xy / size - 0.5) * vec2<f32>(1.0, size.y / size.x));
    let vignette = 1.0 - 0.6 * smoothstep(0.3, 0.75, d);
    let edge = min(min(pos.x, size.x - pos.x), min(pos.y, size.y - pos.y));
    if (edge < 6.0) {
        return vec4<f32>(0.9, 0.35, 0.05, 1.0);
    }
    return vec4<f32>(c * vignette, 1.0);
}
"#;

/// The host's device: its own instance and adapter, WebGPU's default limits, no features.
fn host_device() -> Result<GpuContext> {
    regnet_wgpu::gpu::quiet_headless_wayland();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    let instance = wgpu::Instance::new(desc);
    let adapter =
        pollster::block_on(instance.request_adapter(&Default::default())).map_err(|e| {
            Error::Gpu(format!(
                "{} ({e})",
                regnet_wgpu::gpu::context::NO_ADAPTER_HELP
            ))
        })?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host"),
        required_features: wgpu::Features::empty(),
        required_limits: wgpu::Limits::default(),
        ..Default::default()
    }))
    .map_err(|e| Error::Gpu(format!("the adapter refused a device: {e}")))?;
    Ok(GpuContext::from_device(device, queue, adapter.get_info()))
}

fn texture(
    ctx: &GpuContext,
    label: &str,
    (w, h): (u32, u32),
    format: wgpu::TextureFormat,
    usage: wgpu::TextureUsages,
) -> wgpu::Texture {
    ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage,
        view_formats: &[],
    })
}

/// The host's render pipeline drawing `photo` into an `rgba8unorm-srgb` target.
fn host_draw(
    ctx: &GpuContext,
    photo: &wgpu::Texture,
    target_format: wgpu::TextureFormat,
) -> (wgpu::RenderPipeline, wgpu::BindGroup) {
    let device = &ctx.device;
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("host draw"),
        source: wgpu::ShaderSource::Wgsl(HOST_SHADER.into()),
    });
    let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some("host draw"),
        layout: None,
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs"),
            compilation_options: Default::default(),
            buffers: &[],
        },
        primitive: Default::default(),
        depth_stencil: None,
        multisample: Default::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs"),
            compilation_options: Default::default(),
            targets: &[Some(target_format.into())],
        }),
        multiview_mask: None,
        cache: None,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("host draw"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::TextureView(&photo.create_view(&Default::default())),
        }],
    });
    (pipeline, bind_group)
}

fn class_name(classes: usize, i: usize) -> String {
    if classes == 1000 {
        IMAGENET_CLASSES.lines().nth(i).unwrap_or("?").to_string()
    } else {
        format!("class {i}")
    }
}

fn run(args: &Args) -> Result<bool> {
    let t0 = Instant::now();
    // --- The host application's setup -----------------------------------------------------
    let ctx = host_device()?;
    println!(
        "host device: {} (default limits, no features)",
        ctx.describe()
    );
    let photo_path = args.image.clone().unwrap_or_else(|| SAMPLE_PHOTO.into());
    let pixels = load_rgb8(&photo_path)?;
    let size = (pixels.width(), pixels.height());
    let rgba: Vec<u8> = pixels
        .pixels()
        .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
        .collect();
    let photo = texture(
        &ctx,
        "photo",
        size,
        wgpu::TextureFormat::Rgba8UnormSrgb,
        wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
    );
    ctx.queue.write_texture(
        photo.as_image_copy(),
        &rgba,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(4 * size.0),
            rows_per_image: Some(size.1),
        },
        photo.size(),
    );
    // The frame the host renders: an sRGB render target the classifier also reads.
    let frame_format = wgpu::TextureFormat::Rgba8UnormSrgb;
    let frame = texture(
        &ctx,
        "frame",
        size,
        frame_format,
        wgpu::TextureUsages::RENDER_ATTACHMENT
            | wgpu::TextureUsages::TEXTURE_BINDING
            | wgpu::TextureUsages::COPY_SRC,
    );
    let (draw, draw_bind) = host_draw(&ctx, &photo, frame_format);

    // --- The classifier, on the host's device ----------------------------------------------
    let plan = Plan::new(Architecture::named(&args.model)?, 224, 224)?;
    let (weights, random) = match &args.weights {
        Some(p) => (Weights::load(p, &plan)?, false),
        None => (Weights::random(&plan, 0), true),
    };
    let mut runner = GpuRunner::new(&ctx, &plan, &weights, RunnerOptions::default())?;
    // The model reads an input buffer the host owns (here also readable, for the check).
    let input = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host: model input"),
        size: runner.input_buffer_size(),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    runner.set_input_buffer(input.clone())?;
    let transform = EvalTransform::default();
    let preprocess = GpuPreprocess::for_runner(&runner, transform.clone())?;
    let classify = preprocess.bind_runner(&frame, &runner, 0)?;
    let readback = LogitsReadback::new(&runner);
    // Only for the check: the rendered pixels, rows padded to 256 bytes.
    let row_bytes = (4 * size.0).div_ceil(256) * 256;
    let frame_copy = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("host: frame readback"),
        size: (row_bytes * size.1) as u64,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    println!(
        "model:       {} at 224x224 ({:.2}M params), set up in {:.0} ms",
        args.model,
        plan.num_params() as f64 / 1e6,
        t0.elapsed().as_secs_f64() * 1e3
    );
    if random {
        println!(
            "weights:     RANDOM (deterministic, seed 0): no pretrained weights are bundled or \
             reachable here, so the class names below are meaningless; pass --weights FILE for real ones"
        );
    } else {
        println!("weights:     {}", weights.source);
    }

    // --- One frame: draw, preprocess, infer, copy out; one submission ------------------------
    let t1 = Instant::now();
    let mut encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("host frame"),
        });
    {
        let view = frame.create_view(&Default::default());
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("host draw"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                    store: wgpu::StoreOp::Store,
                },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        pass.set_pipeline(&draw);
        pass.set_bind_group(0, &draw_bind, &[]);
        pass.draw(0..3, 0..1);
    }
    classify.encode(&mut encoder); // frame -> runner input (torchvision's transform)
    runner.encode(&mut encoder); // input -> logits
    readback.encode_copy(&mut encoder); // logits -> staging
    encoder.copy_texture_to_buffer(
        frame.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &frame_copy,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row_bytes),
                rows_per_image: Some(size.1),
            },
        },
        frame.size(),
    );
    ctx.queue.submit([encoder.finish()]);

    // The host's loop goes on; the logits arrive through a future it polls once per frame
    // (polling it polls the device without blocking).
    let mut logits_future = std::pin::pin!(readback.read());
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = 0u64;
    let logits = loop {
        if let Poll::Ready(r) = logits_future.as_mut().poll(&mut cx) {
            break r?;
        }
        frames += 1; // ... the host would render its next frame here ...
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let gpu_ms = t1.elapsed().as_secs_f64() * 1e3;
    println!(
        "gpu:         drawn, preprocessed and classified in one submission; logits after \
         {gpu_ms:.0} ms ({frames} host-loop iterations without blocking)"
    );

    // --- The check: the CPU path on the very pixels the host rendered -----------------------
    let raw = read_buffer_blocking(&ctx, &frame_copy, 0, frame_copy.size())?;
    let rendered = RgbImage::from_fn(size.0, size.1, |x, y| {
        let i = (y * row_bytes + 4 * x) as usize;
        image::Rgb([raw[i], raw[i + 1], raw[i + 2]])
    });
    let t2 = Instant::now();
    let cpu_input = stack(&[transform.apply(&rendered)?])?;
    let cpu_logits = CpuBackend::new(plan, weights)?.run(&cpu_input)?;
    let cpu_ms = t2.elapsed().as_secs_f64() * 1e3;
    let gpu_input = Tensor::new(
        cpu_input.shape.clone(),
        bytemuck::pod_collect_to_vec(&read_buffer_blocking(&ctx, &input, 0, input.size())?),
    )?;
    let same_input = gpu_input
        .data
        .iter()
        .zip(&cpu_input.data)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    let rel = logits.rel_err(&cpu_logits);

    let classes = logits.shape[1];
    let (gp, cp) = (logits.softmax_rows(), cpu_logits.softmax_rows());
    let (gtop, ctop) = (gp.top_k(0, 5), cp.top_k(0, 5));
    println!(
        "\n  {:<40} CPU path ({cpu_ms:.0} ms)",
        "GPU (in the host's submission)"
    );
    for (rank, ((gi, gv), (ci, cv))) in gtop.iter().zip(&ctop).enumerate() {
        let gpu = format!("{:6.2}% {} ({gi})", gv * 100.0, class_name(classes, *gi));
        let cpu = format!("{:6.2}% {} ({ci})", cv * 100.0, class_name(classes, *ci));
        println!("  {}. {gpu:<37} {}. {cpu}", rank + 1, rank + 1);
    }
    let same_top5 = gtop.iter().map(|t| t.0).eq(ctop.iter().map(|t| t.0));
    println!(
        "\ncheck:       preprocessed input {} ({same_input} of {} values differ); \
         logits rel err {rel:.2e} (bound 1e-4); top-5 {}",
        if same_input == 0 {
            "bit-identical to the CPU path"
        } else {
            "DIFFERS from the CPU path"
        },
        gpu_input.len(),
        if same_top5 { "identical" } else { "DIFFERENT" }
    );
    Ok(same_input == 0 && rel <= 1e-4 && same_top5)
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: the GPU result does not match the CPU path");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
