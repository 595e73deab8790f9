//! Property tests of the op library: for random shapes, strides, paddings, dilations, groups
//! and window options (bounded in count and size), each op on the GPU (f32, lavapipe in CI)
//! equals its CPU twin within 1e-4, by the norm and elementwise. The CPU twins are held to
//! torch's and torchvision's numbers by tests/ops.rs; here the drawn cases reach the corners
//! those fixtures may not (kernels up to 11 wide, every tile and span choice of conv.wgsl).

mod common;

use std::collections::HashMap;

use proptest::prelude::*;
use regnet_wgpu::gpu::{GpuOp, Precision};
use regnet_wgpu::ops::{ConvArgs, Operation, PoolArgs};
use regnet_wgpu::plan::Activation;
use regnet_wgpu::Tensor;

/// Deterministic values in [-1, 1) from a seed (SplitMix64).
fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn tensor(seed: u64, shape: &[usize], scale: f32) -> Tensor {
    Tensor::new(shape.to_vec(), values(seed, shape.iter().product(), scale)).unwrap()
}

/// Builds the op (cases torch would refuse are skipped) and compares GPU and CPU.
fn gpu_equals_cpu(op: Operation, tensors: HashMap<String, Tensor>) -> Result<(), TestCaseError> {
    let Ok(graph) = op.build(&tensors) else {
        return Err(TestCaseError::reject("not a valid op"));
    };
    let cpu = graph.run_cpu(&tensors).unwrap();
    let ctx = common::gpu_ctx(Precision::F32);
    let gpu = GpuOp::new(ctx, &graph, Precision::F32)
        .and_then(|g| g.run(&tensors))
        .unwrap_or_else(|e| panic!("{op:?}: {e}"));
    prop_assert_eq!(&gpu.shape, &cpu.shape);
    let (mut d2, mut r2, mut dmax, mut rmax) = (0f64, 0f64, 0f64, 0f64);
    for (&g, &c) in gpu.data.iter().zip(&cpu.data) {
        // Equal infinities (a max pool window wholly in the padding gives -inf, as torch's).
        let d = if g == c {
            0.0
        } else {
            (g as f64 - c as f64).abs()
        };
        d2 += d * d;
        dmax = dmax.max(d);
        if c.is_finite() {
            rmax = rmax.max((c as f64).abs());
            r2 += (c as f64).powi(2);
        }
    }
    let (norm, max) = (d2.sqrt() / r2.sqrt().max(1e-30), dmax / rmax.max(1e-30));
    prop_assert!(
        norm <= 1e-4 && max <= 1e-4,
        "{:?} on {:?}: GPU vs CPU {:.2e} by the norm, {:.2e} elementwise",
        op,
        tensors["input"].shape,
        norm,
        max
    );
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_global_rejects: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Identity),
        Just(Activation::Relu),
        Just(Activation::Relu6),
        Just(Activation::Silu),
        Just(Activation::Sigmoid),
    ]
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn conv2d(
        (batch, groups, cin_g, cout_g) in (1usize..=2, 1usize..=3, 1usize..=4, 1usize..=5),
        (kh, kw) in (1usize..=5, 1usize..=11),
        (stride, dilation, padding) in ([1usize..=3, 1usize..=3], [1usize..=3, 1usize..=3], [0usize..=3, 0usize..=3]),
        (h, w) in (1usize..=14, 1usize..=16),
        act in activation(),
        (residual, bias, seed) in (any::<bool>(), any::<bool>(), any::<u64>()),
    ) {
        let (cin, cout) = (groups * cin_g, groups * cout_g);
        let args = ConvArgs { stride, padding, dilation, groups, activation: act, ..Default::default() };
        let mut t = HashMap::new();
        t.insert("input".into(), tensor(seed, &[batch, cin, h, w], 1.0));
        let scale = 1.0 / ((cin_g * kh * kw) as f32).sqrt();
        t.insert("weight".into(), tensor(seed ^ 1, &[cout, cin_g, kh, kw], scale));
        if bias {
            t.insert("bias".into(), tensor(seed ^ 2, &[cout], 0.5));
        }
        if residual {
            let o = |x: usize, a: usize, k: usize| (x + 2 * padding[a]).checked_sub(dilation[a] * (k - 1) + 1).map(|s| s / stride[a] + 1);
            if let (Some(ho), Some(wo)) = (o(h, 0, kh), o(w, 1, kw)) {
                t.insert("residual".into(), tensor(seed ^ 3, &[batch, cout, ho, wo], 1.0));
            }
        }
        gpu_equals_cpu(Operation::Conv2d(args), t)?;
    }

    #[test]
    fn deform_conv2d(
        (batch, groups, cin_g, cout_g, og) in (1usize..=2, 1usize..=2, 1usize..=3, 1usize..=5, 1usize..=2),
        (kh, kw) in (1usize..=3, 1usize..=3),
        (stride, dilation, padding) in ([1usize..=2, 1usize..=2], [1usize..=2, 1usize..=2], [0usize..=2, 0usize..=2]),
        (h, w) in (1usize..=9, 1usize..=9),
        (mask, seed) in (any::<bool>(), any::<u64>()),
    ) {
        let cin = groups * cin_g * og;
        let (cin_g, cout) = (cin / groups, groups * cout_g);
        let o = |x: usize, a: usize, k: usize| (x + 2 * padding[a]).checked_sub(dilation[a] * (k - 1) + 1).map(|s| s / stride[a] + 1);
        let (Some(ho), Some(wo)) = (o(h, 0, kh), o(w, 1, kw)) else {
            return Err(TestCaseError::reject("the kernel does not fit"));
        };
        let mut t = HashMap::new();
        t.insert("input".into(), tensor(seed, &[batch, cin, h, w], 1.0));
        t.insert("weight".into(), tensor(seed ^ 1, &[cout, cin_g, kh, kw], 0.5));
        t.insert("bias".into(), tensor(seed ^ 2, &[cout], 0.5));
        t.insert("offset".into(), tensor(seed ^ 3, &[batch, 2 * og * kh * kw, ho, wo], 2.5));
        if mask {
            let m = tensor(seed ^ 4, &[batch, og * kh * kw, ho, wo], 1.0);
            t.insert("mask".into(), Tensor::new(m.shape.clone(), m.data.iter().map(|v| v.abs()).collect()).unwrap());
        }
        let args = ConvArgs { stride, padding, dilation, ..Default::default() };
        gpu_equals_cpu(Operation::DeformConv2d(args), t)?;
    }

    #[test]
    fn pools(
        (batch, c, h, w) in (1usize..=2, 1usize..=5, 1usize..=13, 1usize..=13),
        (k, stride, dilation) in ([1usize..=4, 1usize..=4], [1usize..=3, 1usize..=3], [1usize..=2, 1usize..=2]),
        (pad_frac, ceil_mode, count_include_pad, max) in (0usize..=2, any::<bool>(), any::<bool>(), any::<bool>()),
        seed in any::<u64>(),
    ) {
        let padding = [(k[0] / 2).min(pad_frac), (k[1] / 2).min(pad_frac)];
        let args = PoolArgs {
            kernel_size: k,
            stride,
            padding,
            dilation: if max { dilation } else { [1, 1] },
            ceil_mode,
            count_include_pad,
        };
        let mut t = HashMap::new();
        t.insert("input".into(), tensor(seed, &[batch, c, h, w], 1.0));
        let op = if max { Operation::MaxPool2d(args) } else { Operation::AvgPool2d(args) };
        gpu_equals_cpu(op, t)?;
    }

    #[test]
    fn adaptive_pool_and_shuffle(
        (batch, g, cg, h, w) in (1usize..=2, 1usize..=4, 1usize..=4, 1usize..=11, 1usize..=11),
        out in [1usize..=7, 1usize..=7],
        seed in any::<u64>(),
    ) {
        let mut t = HashMap::new();
        t.insert("input".into(), tensor(seed, &[batch, g * cg, h, w], 1.0));
        gpu_equals_cpu(Operation::AdaptiveAvgPool2d { output_size: out }, t.clone())?;
        gpu_equals_cpu(Operation::ChannelShuffle { groups: g }, t)?;
    }
}
