//! Criterion benches: each kernel family on RegNetY-400MF's shapes, and the whole model, on the
//! GPU backend (whatever adapter wgpu finds; lavapipe without a GPU) and the CPU backend side by
//! side.
//!
//! A kernel is benched inside a minimal graph: a 1x1 conv from the 3-channel input to the op's
//! input width (cheap), the op under test, then global pooling and a 1-output linear layer (so
//! that only a handful of floats are read back). The op dominates every case.
//!
//! ```text
//! cargo bench --bench kernels                 # everything
//! cargo bench --bench kernels -- pointwise    # one family
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use regnet_wgpu::cpu::CpuBackend;
use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions};
use regnet_wgpu::plan::{Activation, Conv2d, Linear, Op, OpKind, Shape, SqueezeExcite};
use regnet_wgpu::{zoo, Plan, Tensor, Weights};

fn conv(name: &str, cin: usize, cout: usize, k: usize, stride: usize, groups: usize) -> Conv2d {
    Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [stride; 2],
        padding: [(k - 1) / 2; 2],
        dilation: [1, 1],
        groups,
        activation: Activation::Relu,
        residual: None,
        weight: format!("{name}.weight"),
        bias: None,
        norm: None,
    }
}

/// input [3,H,W] -> 1x1 conv to `c_in` -> the ops under test -> pool -> linear(1).
fn graph(label: &str, c_in: usize, hw: usize, body: &[(String, OpKind)]) -> Plan {
    let mut plan = Plan::new(zoo::get("regnet_y_200mf").unwrap(), hw, hw).unwrap();
    let mut values = vec![Shape {
        channels: 3,
        height: hw,
        width: hw,
    }];
    let mut ops = Vec::new();
    let mut push = |name: String, kind: OpKind, values: &mut Vec<Shape>, shape: Shape| {
        let input = values.len() - 1;
        values.push(shape);
        ops.push(Op {
            name,
            kind,
            input,
            output: values.len() - 1,
        });
    };
    let entry = conv(&format!("{label}.entry"), 3, c_in, 1, 1, 1);
    push(
        format!("{label}.entry"),
        OpKind::Conv2d(entry),
        &mut values,
        Shape {
            channels: c_in,
            height: hw,
            width: hw,
        },
    );
    for (name, kind) in body {
        let s = *values.last().unwrap();
        let out = match kind {
            OpKind::Conv2d(c) => {
                let (h, w) = c.output_size(s.height, s.width);
                Shape {
                    channels: c.out_channels,
                    height: h,
                    width: w,
                }
            }
            _ => s,
        };
        push(name.clone(), kind.clone(), &mut values, out);
    }
    let c = values.last().unwrap().channels;
    push(
        format!("{label}.pool"),
        OpKind::GlobalAvgPool,
        &mut values,
        Shape {
            channels: c,
            height: 1,
            width: 1,
        },
    );
    let fc = Linear {
        in_features: c,
        out_features: 1,
        weight: format!("{label}.fc.weight"),
        bias: None,
    };
    push(
        format!("{label}.fc"),
        OpKind::Linear(fc),
        &mut values,
        Shape {
            channels: 1,
            height: 1,
            width: 1,
        },
    );
    plan.output = values.len() - 1;
    plan.values = values;
    plan.ops = ops;
    plan.taps = Vec::new();
    plan
}

/// (family, case, plan, multiply-adds of the ops under test)
fn cases() -> Vec<(&'static str, String, Plan, u64)> {
    let mut out = Vec::new();
    let mut add = |family: &'static str, case: String, plan: Plan| {
        let macs = plan.ops[1..plan.ops.len() - 2]
            .iter()
            .map(|o| plan.op_macs(o))
            .sum();
        out.push((family, case, plan, macs));
    };
    add(
        "stem",
        "3x3s2 3->32 @224".into(),
        graph(
            "stem",
            3,
            224,
            &[("stem".into(), OpKind::Conv2d(conv("stem", 3, 32, 3, 2, 1)))],
        ),
    );
    for (c, hw) in [(48, 56), (104, 28), (208, 14), (440, 7)] {
        let name = format!("pw{c}");
        add(
            "pointwise",
            format!("1x1 {c}->{c} @{hw}"),
            graph(
                &name,
                c,
                hw,
                &[(name.clone(), OpKind::Conv2d(conv(&name, c, c, 1, 1, 1)))],
            ),
        );
    }
    for (c, hw, s) in [(48, 112, 2), (104, 28, 1), (208, 14, 1), (440, 7, 1)] {
        let name = format!("g{c}s{s}");
        add(
            "grouped3x3",
            format!("3x3 g8 {c} s{s} @{hw}"),
            graph(
                &name,
                c,
                hw,
                &[(name.clone(), OpKind::Conv2d(conv(&name, c, c, 3, s, c / 8)))],
            ),
        );
    }
    for (c, hw) in [(104, 28), (208, 14)] {
        let se = SqueezeExcite {
            channels: c,
            squeeze: c / 4,
            fc1: format!("se{c}.fc1"),
            fc2: format!("se{c}.fc2"),
            norm: None,
            activation: Activation::Identity,
            pool_max: false,
        };
        let pw = format!("se{c}.c");
        add(
            "se+gated1x1",
            format!("SE {c}/{} + 1x1 @{hw}", c / 4),
            graph(
                &format!("se{c}"),
                c,
                hw,
                &[
                    (format!("se{c}"), OpKind::SqueezeExcite(se)),
                    (pw.clone(), OpKind::Conv2d(conv(&pw, c, c, 1, 1, 1))),
                ],
            ),
        );
    }
    out
}

fn input(plan: &Plan, batch: usize) -> Tensor {
    let (h, w) = plan.input_size();
    let n = batch * 3 * h * w;
    Tensor::new(
        vec![batch, 3, h, w],
        (0..n).map(|i| (i % 255) as f32 / 127.0 - 1.0).collect(),
    )
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let ctx = GpuContext::new(Precision::F32).ok();
    if let Some(ctx) = &ctx {
        eprintln!("gpu adapter: {}", ctx.describe());
    } else {
        eprintln!("no gpu adapter: cpu only");
    }
    let mut all = cases();
    let model = Plan::new(zoo::get("regnet_y_400mf").unwrap(), 224, 224).unwrap();
    let macs = model.macs();
    all.push(("model", "regnet_y_400mf @224".into(), model, macs));
    for (family, case, plan, macs) in all {
        let mut g = c.benchmark_group(family);
        g.sample_size(10);
        g.throughput(Throughput::Elements(2 * macs)); // FLOPs per iteration: criterion shows elem/s
        let weights = Weights::random(&plan, 0);
        let x = input(&plan, 1);
        if let Some(ctx) = &ctx {
            let runner = GpuRunner::new(ctx, &plan, &weights, RunnerOptions::default()).unwrap();
            runner.run(&x).unwrap();
            g.bench_with_input(BenchmarkId::new("gpu", &case), &x, |b, x| {
                b.iter(|| runner.run(x).unwrap())
            });
        }
        let cpu = CpuBackend::new(plan, weights).unwrap();
        g.bench_with_input(BenchmarkId::new("cpu", &case), &x, |b, x| {
            b.iter(|| cpu.run(x).unwrap())
        });
        g.finish();
    }
}

criterion_group!(kernels, benches);
criterion_main!(kernels);
