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
use regnet_wgpu::classes::class_name;
use regnet_wgpu::config::Architecture;
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::gpu::readback::read_buffer_blocking;
use regnet_wgpu::gpu::{
    GpuContext, GpuPreprocess, GpuRunner, LogitsReadback, PreprocessBinding, RunnerOptions,
};
use regnet_wgpu::preprocess::{load_rgb8, stack, EvalTransform};
use regnet_wgpu::{Error, Plan, Result, Tensor, Weights};

const SAMPLE_PHOTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/chelsea.png");

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

/// The host application's part: its device, the photo as a texture, the frame it renders
/// (an sRGB render target the classifier also reads) and its draw.
struct Host {
    ctx: GpuContext,
    frame: wgpu::Texture,
    size: (u32, u32),
    draw: wgpu::RenderPipeline,
    draw_bind: wgpu::BindGroup,
}

impl Host {
    fn new(photo_path: &std::path::Path) -> Result<Host> {
        let ctx = host_device()?;
        println!(
            "host device: {} (default limits, no features)",
            ctx.describe()
        );
        let pixels = load_rgb8(photo_path)?;
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
        Ok(Host {
            ctx,
            frame,
            size,
            draw,
            draw_bind,
        })
    }

    /// The host's own rendering of its frame.
    fn encode_draw(&self, encoder: &mut wgpu::CommandEncoder) {
        let view = self.frame.create_view(&Default::default());
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
        pass.set_pipeline(&self.draw);
        pass.set_bind_group(0, &self.draw_bind, &[]);
        pass.draw(0..3, 0..1);
    }

    /// Bytes per row of the frame's readback (padded to 256, as copies require).
    fn row_bytes(&self) -> u32 {
        (4 * self.size.0).div_ceil(256) * 256
    }

    /// A buffer for the rendered pixels (only for the check).
    fn frame_readback(&self) -> wgpu::Buffer {
        self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("host: frame readback"),
            size: (self.row_bytes() * self.size.1) as u64,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    fn encode_frame_copy(&self, encoder: &mut wgpu::CommandEncoder, to: &wgpu::Buffer) {
        encoder.copy_texture_to_buffer(
            self.frame.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: to,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(self.row_bytes()),
                    rows_per_image: Some(self.size.1),
                },
            },
            self.frame.size(),
        );
    }

    /// The rendered frame, read back from `buffer`.
    fn rendered(&self, buffer: &wgpu::Buffer) -> Result<RgbImage> {
        let raw = read_buffer_blocking(&self.ctx, buffer, 0, buffer.size())?;
        let row_bytes = self.row_bytes();
        Ok(RgbImage::from_fn(self.size.0, self.size.1, |x, y| {
            let i = (y * row_bytes + 4 * x) as usize;
            image::Rgb([raw[i], raw[i + 1], raw[i + 2]])
        }))
    }
}

/// The classifier on the host's device, reading the host's frame into an input buffer the
/// host owns (here also readable, for the check).
struct Classifier {
    plan: Plan,
    weights: Weights,
    runner: GpuRunner,
    input: wgpu::Buffer,
    classify: PreprocessBinding,
    readback: LogitsReadback,
    transform: EvalTransform,
}

impl Classifier {
    fn new(host: &Host, args: &Args) -> Result<Classifier> {
        let ctx = &host.ctx;
        let plan = Plan::new(Architecture::named(&args.model)?, 224, 224)?;
        let weights = match &args.weights {
            Some(p) => Weights::load(p, &plan)?,
            None => Weights::random(&plan, 0),
        };
        let mut runner = GpuRunner::new(ctx, &plan, &weights, RunnerOptions::default())?;
        let input = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("host: model input"),
            size: runner.input_buffer_size(),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        runner.set_input_buffer(input.clone())?;
        let transform = EvalTransform::default();
        let preprocess = GpuPreprocess::for_runner(&runner, transform.clone())?;
        let classify = preprocess.bind_runner(&host.frame, &runner, 0)?;
        let readback = LogitsReadback::new(&runner);
        Ok(Classifier {
            plan,
            weights,
            runner,
            input,
            classify,
            readback,
            transform,
        })
    }

    fn describe(&self, args: &Args, setup_ms: f64) {
        println!(
            "model:       {} at 224x224 ({:.2}M params), set up in {setup_ms:.0} ms",
            args.model,
            self.plan.num_params() as f64 / 1e6,
        );
        if args.weights.is_none() {
            println!(
                "weights:     RANDOM (deterministic, seed 0): no pretrained weights are bundled or \
                 reachable here, so the class names below are meaningless; pass --weights FILE for real ones"
            );
        } else {
            println!("weights:     {}", self.weights.source);
        }
    }

    /// The logits, through a future the host polls once per frame (polling it polls the
    /// device without blocking); also how many host-loop iterations went by.
    fn poll_logits(&self) -> Result<(Tensor, u64)> {
        let mut logits_future = std::pin::pin!(self.readback.read());
        let mut cx = Context::from_waker(Waker::noop());
        let mut frames = 0u64;
        loop {
            if let Poll::Ready(r) = logits_future.as_mut().poll(&mut cx) {
                return Ok((r?, frames));
            }
            frames += 1; // ... the host would render its next frame here ...
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// What the check found: the GPU's input against the CPU path's, the logits' error, top-5.
fn print_check(
    gpu_input: &Tensor,
    cpu_input: &Tensor,
    logits: &Tensor,
    cpu: &Tensor,
    cpu_ms: f64,
) -> bool {
    let same_input = gpu_input
        .data
        .iter()
        .zip(&cpu_input.data)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    let rel = logits.rel_err(cpu);
    let classes = logits.shape[1];
    let (gp, cp) = (logits.softmax_rows(), cpu.softmax_rows());
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
    same_input == 0 && rel <= 1e-4 && same_top5
}

fn run(args: &Args) -> Result<bool> {
    let t0 = Instant::now();
    let photo = args.image.clone().unwrap_or_else(|| SAMPLE_PHOTO.into());
    let host = Host::new(&photo)?;
    let c = Classifier::new(&host, args)?;
    c.describe(args, t0.elapsed().as_secs_f64() * 1e3);
    let frame_copy = host.frame_readback();

    // One frame: draw, preprocess, infer, copy out; one submission.
    let t1 = Instant::now();
    let mut encoder = host
        .ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("host frame"),
        });
    host.encode_draw(&mut encoder);
    c.classify.encode(&mut encoder); // frame -> runner input (torchvision's transform)
    c.runner.encode(&mut encoder); // input -> logits
    c.readback.encode_copy(&mut encoder); // logits -> staging
    host.encode_frame_copy(&mut encoder, &frame_copy);
    host.ctx.queue.submit([encoder.finish()]);
    let (logits, frames) = c.poll_logits()?;
    let gpu_ms = t1.elapsed().as_secs_f64() * 1e3;
    println!(
        "gpu:         drawn, preprocessed and classified in one submission; logits after \
         {gpu_ms:.0} ms ({frames} host-loop iterations without blocking)"
    );

    // The check: the CPU path on the very pixels the host rendered.
    let rendered = host.rendered(&frame_copy)?;
    let t2 = Instant::now();
    let cpu_input = stack(&[c.transform.apply(&rendered)?])?;
    let cpu_logits = CpuBackend::new(c.plan.clone(), c.weights.clone())?.run(&cpu_input)?;
    let cpu_ms = t2.elapsed().as_secs_f64() * 1e3;
    let gpu_input = Tensor::new(
        cpu_input.shape.clone(),
        bytemuck::pod_collect_to_vec(&read_buffer_blocking(
            &host.ctx,
            &c.input,
            0,
            c.input.size(),
        )?),
    )?;
    Ok(print_check(
        &gpu_input,
        &cpu_input,
        &logits,
        &cpu_logits,
        cpu_ms,
    ))
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
