//! The CPU's small ops: squeeze-and-excitation, global average pooling, the linear head.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::plan::Activation;
use crate::weights::{LinearParams, SeParams};

/// Mean of each `hw`-long plane (accumulated in f64).
pub(crate) fn global_avg_pool(x: &[f32], hw: usize) -> Vec<f32> {
    x.par_chunks(hw.max(1))
        .map(|p| (p.iter().map(|&v| v as f64).sum::<f64>() / hw as f64) as f32)
        .collect()
}

/// `y = act(W·x + b)` for one vector, `W` being `[out, in]` row-major.
fn matvec(w: &[f32], b: &[f32], x: &[f32], act: Activation) -> Vec<f32> {
    w.chunks(x.len())
        .zip(b)
        .map(|(row, &bias)| act.apply(row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>() + bias))
        .collect()
}

/// Squeeze-and-excitation in place on `x` (`[N, C, H, W]`).
pub(crate) fn squeeze_excite(p: &SeParams, x: &mut [f32], channels: usize, hw: usize) {
    let pooled = global_avg_pool(x, hw);
    x.par_chunks_mut(channels * hw)
        .zip(pooled.par_chunks(channels))
        .for_each(|(img, s)| {
            let z = matvec(&p.w1, &p.b1, s, Activation::Relu);
            let gate = matvec(&p.w2, &p.b2, &z, Activation::Sigmoid);
            for (plane, g) in img.chunks_mut(hw).zip(gate) {
                plane.iter_mut().for_each(|v| *v *= g);
            }
        });
}

/// The linear head on a `[N, in]` batch: `[N, out]`.
pub(crate) fn linear(
    p: &LinearParams,
    x: &[f32],
    batch: usize,
    inf: usize,
    outf: usize,
) -> Vec<f32> {
    let mut y: Vec<f32> = (0..batch).flat_map(|_| p.bias.iter().copied()).collect();
    // y[N×out] += x[N×in] · Wᵀ[in×out]; Wᵀ is W read with swapped strides.
    if batch > 0 && inf > 0 && outf > 0 {
        // SAFETY: x is N×in, W is out×in (read as its transpose), y is N×out; no aliasing.
        unsafe {
            gemm::gemm(
                batch,
                outf,
                inf,
                y.as_mut_ptr(),
                1,
                outf as isize,
                true,
                x.as_ptr(),
                1,
                inf as isize,
                p.weight.as_ptr(),
                inf as isize,
                1,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                Parallelism::Rayon(rayon::current_num_threads()),
            )
        }
    }
    y
}
