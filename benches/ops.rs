//! Criterion benches of the op library: each op on a representative shape, on the GPU
//! (whatever adapter wgpu finds; lavapipe without a GPU: the op recorded into an encoder over
//! device-resident buffers, submitted, waited for) and on the CPU twin, side by side.
//! `scripts/bench_ops_torch.py` times the same shapes with PyTorch CPU for BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench ops                  # everything
//! cargo bench --bench ops -- deform        # one op
//! ```

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use regnet_wgpu::gpu::{GpuContext, GpuOp, Precision};
use regnet_wgpu::ops::{ConvArgs, OpGraph, Operation, PoolArgs};
use regnet_wgpu::plan::{Activation, Op, OpKind};
use regnet_wgpu::Tensor;

/// A benched op: its name, the op, its tensors' names and shapes.
type Case = (&'static str, Operation, Vec<(&'static str, Vec<usize>)>);

/// The shapes benched, also in scripts/bench_ops_torch.py (keep them equal).
fn cases() -> Vec<Case> {
    let x = |c: usize, s: usize| ("input", vec![1, c, s, s]);
    let conv = |padding, dilation| ConvArgs {
        padding,
        dilation,
        ..Default::default()
    };
    vec![
        (
            "conv2d_3x3_64_56",
            Operation::Conv2d(conv([1, 1], [1, 1])),
            vec![x(64, 56), ("weight", vec![64, 64, 3, 3])],
        ),
        (
            "conv2d_3x3_dilation2_64_56",
            Operation::Conv2d(conv([2, 2], [2, 2])),
            vec![x(64, 56), ("weight", vec![64, 64, 3, 3])],
        ),
        (
            "conv2d_1x7_128_17",
            Operation::Conv2d(conv([0, 3], [1, 1])),
            vec![x(128, 17), ("weight", vec![128, 128, 1, 7])],
        ),
        (
            "deform_conv2d_3x3_64_56",
            Operation::DeformConv2d(conv([1, 1], [1, 1])),
            vec![
                x(64, 56),
                ("offset", vec![1, 18, 56, 56]),
                ("weight", vec![64, 64, 3, 3]),
            ],
        ),
        (
            "max_pool2d_3s2_64_112",
            Operation::MaxPool2d(PoolArgs {
                stride: [2, 2],
                padding: [1, 1],
                ..PoolArgs::new(3)
            }),
            vec![x(64, 112)],
        ),
        (
            "avg_pool2d_3s2_ceil_64_112",
            Operation::AvgPool2d(PoolArgs {
                stride: [2, 2],
                padding: [1, 1],
                ceil_mode: true,
                ..PoolArgs::new(3)
            }),
            vec![x(64, 112)],
        ),
        (
            "adaptive_avg_pool2d_7_512_14",
            Operation::AdaptiveAvgPool2d {
                output_size: [7, 7],
            },
            vec![x(512, 14)],
        ),
        (
            "batch_norm_256_28",
            Operation::BatchNorm { eps: 1e-5 },
            vec![
                x(256, 28),
                ("running_mean", vec![256]),
                ("running_var", vec![256]),
                ("weight", vec![256]),
                ("bias", vec![256]),
            ],
        ),
        (
            "squeeze_excitation_256_28",
            Operation::SqueezeExcitation,
            vec![
                x(256, 28),
                ("fc1.weight", vec![64, 256, 1, 1]),
                ("fc1.bias", vec![64]),
                ("fc2.weight", vec![256, 64, 1, 1]),
                ("fc2.bias", vec![256]),
            ],
        ),
        (
            "channel_shuffle_g2_116_28",
            Operation::ChannelShuffle { groups: 2 },
            vec![x(116, 28)],
        ),
        (
            "cbam_256_28",
            Operation::Cbam { kernel_size: 7 },
            vec![
                x(256, 28),
                ("mlp.0.weight", vec![16, 256]),
                ("mlp.0.bias", vec![16]),
                ("mlp.2.weight", vec![256, 16]),
                ("mlp.2.bias", vec![256]),
                ("spatial.weight", vec![1, 2, 7, 7]),
                ("spatial.bias", vec![1]),
            ],
        ),
        (
            "relu6_256_28",
            Operation::Activation(Activation::Relu6),
            vec![x(256, 28)],
        ),
    ]
}

/// Deterministic values in [-scale, scale).
fn tensor(shape: &[usize], seed: u32, scale: f32) -> Tensor {
    let n = shape.iter().product();
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    let data = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::new(shape.to_vec(), data).unwrap()
}

fn tensors(shapes: &[(&str, Vec<usize>)]) -> HashMap<String, Tensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let scale = match *name {
                "offset" => 2.0,
                "running_var" => 0.5, // shifted to [0.5, 1.5) below
                "weight" => 1.0 / (shape[1..].iter().product::<usize>() as f32).sqrt(),
                _ => 1.0,
            };
            let mut t = tensor(shape, i as u32 + 1, scale);
            if *name == "running_var" {
                t.data.iter_mut().for_each(|v| *v += 1.0);
            }
            (name.to_string(), t)
        })
        .collect()
}

/// Multiply-adds of one op of the graph per image (convolutions; 0 for the rest).
fn op_macs(graph: &OpGraph, op: &Op) -> u64 {
    let w = match &op.kind {
        OpKind::Conv2d(c) => c.weight_shape().iter().product::<usize>(),
        OpKind::DeformConv2d(d) => d.conv.weight_shape().iter().product::<usize>(),
        _ => 0,
    };
    let out = graph.values[op.output];
    (w * out.height * out.width) as u64
}

/// The GPU op over device-resident buffers, recorded, submitted and waited for per iteration.
struct Resident {
    ctx: GpuContext,
    op: GpuOp,
    inputs: Vec<(String, wgpu::Buffer)>,
    output: wgpu::Buffer,
}

impl Resident {
    fn new(ctx: &GpuContext, graph: &OpGraph, t: &HashMap<String, Tensor>) -> Self {
        let op = GpuOp::new(ctx, graph, Precision::F32).unwrap();
        let buffer = |size: u64| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let inputs = graph
            .inputs
            .iter()
            .map(|(name, _)| {
                let b = buffer(op.input_bytes(name).unwrap());
                ctx.queue
                    .write_buffer(&b, 0, bytemuck::cast_slice(&t[name].data));
                (name.clone(), b)
            })
            .collect();
        let output = buffer(op.output_bytes());
        Resident {
            ctx: ctx.clone(),
            op,
            inputs,
            output,
        }
    }

    fn run(&self) {
        let inputs: Vec<(&str, &wgpu::Buffer)> =
            self.inputs.iter().map(|(n, b)| (n.as_str(), b)).collect();
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        self.op.encode(&mut enc, &inputs, &self.output).unwrap();
        self.ctx.queue.submit([enc.finish()]);
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
    }
}

fn benches(c: &mut Criterion) {
    let ctx = GpuContext::new(Precision::F32).ok();
    let mut group = c.benchmark_group("ops");
    group.sample_size(20);
    for (name, op, shapes) in cases() {
        let t = tensors(&shapes);
        let graph = op.build(&t).unwrap();
        let macs: u64 = graph.ops.iter().map(|o| op_macs(&graph, o)).sum();
        // Convolutions: FLOPs (2 x multiply-adds); the rest: output values.
        let out: u64 = graph.output_shape().iter().product::<usize>() as u64;
        let per_run = if macs > 0 {
            2 * macs * graph.batch as u64
        } else {
            out
        };
        group.throughput(Throughput::Elements(per_run));
        group.bench_function(BenchmarkId::new("cpu", name), |b| {
            b.iter(|| graph.run_cpu(&t).unwrap())
        });
        if let Some(ctx) = &ctx {
            let gpu = Resident::new(ctx, &graph, &t);
            gpu.run();
            group.bench_function(BenchmarkId::new("gpu", name), |b| b.iter(|| gpu.run()));
        }
    }
    group.finish();
}

criterion_group!(ops, benches);
criterion_main!(ops);
