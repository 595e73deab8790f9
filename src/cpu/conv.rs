//! Convolution on the CPU: im2col (skipped for 1x1/s1 convs) feeding a GEMM from the `gemm`
//! crate, with bias and residual pre-loaded into the destination and the activation applied after.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::plan::{Conv2d, Shape};
use crate::weights::ConvParams;

/// `dst[m×n] += lhs[m×k] · rhs[k×n]`, all row-major with the given row strides.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_acc(
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    lhs_rs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    dst: &mut [f32],
    dst_rs: usize,
    par: Parallelism,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(lhs.len() >= (m - 1) * lhs_rs + k);
    assert!(rhs.len() >= (k - 1) * rhs_rs + n);
    assert!(dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: the asserts above keep every access inside the three slices; dst does not alias.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            true,
            lhs.as_ptr(),
            1,
            lhs_rs as isize,
            rhs.as_ptr(),
            1,
            rhs_rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    }
}

/// Unfolds the channels `c0..c0 + cin` of one image `x` (`[C, H, W]`) into `col`
/// (`[cin·kh·kw, Ho·Wo]`, row-major), zero where the kernel falls into the padding.
fn im2col(
    conv: &Conv2d,
    x: &[f32],
    s: Shape,
    c0: usize,
    cin: usize,
    out_hw: (usize, usize),
    col: &mut Vec<f32>,
) {
    let [kh, kw] = conv.kernel;
    let (ho, wo) = out_hw;
    let (st, pad) = (conv.stride as isize, conv.padding as isize);
    col.clear();
    col.resize(cin * kh * kw * ho * wo, 0.0);
    for c in 0..cin {
        let plane = &x[(c0 + c) * s.height * s.width..(c0 + c + 1) * s.height * s.width];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = ((c * kh + ky) * kw + kx) * ho * wo;
                let dst = &mut col[row..row + ho * wo];
                for oy in 0..ho {
                    let iy = oy as isize * st - pad + ky as isize;
                    if iy < 0 || iy >= s.height as isize {
                        continue;
                    }
                    let src = &plane[iy as usize * s.width..(iy as usize + 1) * s.width];
                    let d = &mut dst[oy * wo..(oy + 1) * wo];
                    for (ox, v) in d.iter_mut().enumerate() {
                        let ix = ox as isize * st - pad + kx as isize;
                        if ix >= 0 && ix < s.width as isize {
                            *v = src[ix as usize];
                        }
                    }
                }
            }
        }
    }
}

/// Runs one convolution over a batch: `x` is `[N, Cin, H, W]`, the result `[N, Cout, Ho, Wo]`.
/// `residual`, when given, has the output's shape and is added before the activation.
pub(crate) fn conv2d(
    conv: &Conv2d,
    p: &ConvParams,
    x: &[f32],
    in_shape: Shape,
    out_shape: Shape,
    batch: usize,
    residual: Option<Vec<f32>>,
) -> Vec<f32> {
    let g = conv.groups;
    let (cin_g, cout_g) = (conv.in_channels / g, conv.out_channels / g);
    let k = cin_g * conv.kernel[0] * conv.kernel[1];
    let (ho, wo) = (out_shape.height, out_shape.width);
    let hw = ho * wo;
    let in_len = in_shape.numel();
    let direct = conv.kernel == [1, 1] && conv.stride == 1 && conv.padding == 0;

    // Destination starts as bias (+ residual); the GEMM accumulates into it.
    let mut out = match residual {
        Some(r) => r,
        None => vec![0.0; batch * out_shape.numel()],
    };
    out.par_chunks_mut(hw).enumerate().for_each(|(i, plane)| {
        let b = p.bias[i % conv.out_channels];
        plane.iter_mut().for_each(|v| *v += b);
    });

    let tasks = batch * g;
    let threads = rayon::current_num_threads();
    let run = |idx: usize, dst: &mut [f32], col: &mut Vec<f32>, par: Parallelism| {
        let (n, gi) = (idx / g, idx % g);
        let xn = &x[n * in_len..(n + 1) * in_len];
        let w = &p.weight[gi * cout_g * k..(gi + 1) * cout_g * k];
        if direct {
            let rhs = &xn[gi * cin_g * hw..(gi + 1) * cin_g * hw];
            sgemm_acc(cout_g, hw, k, w, k, rhs, hw, dst, hw, par);
        } else {
            im2col(conv, xn, in_shape, gi * cin_g, cin_g, (ho, wo), col);
            sgemm_acc(cout_g, hw, k, w, k, col, hw, dst, hw, par);
        }
        let act = conv.activation;
        dst.iter_mut().for_each(|v| *v = act.apply(*v));
    };
    if tasks >= 2 * threads || threads == 1 {
        out.par_chunks_mut(cout_g * hw)
            .enumerate()
            .for_each_init(Vec::new, |col, (idx, dst)| {
                run(idx, dst, col, Parallelism::None)
            });
    } else {
        let mut col = Vec::new();
        for (idx, dst) in out.chunks_mut(cout_g * hw).enumerate() {
            run(idx, dst, &mut col, Parallelism::Rayon(threads));
        }
    }
    out
}
