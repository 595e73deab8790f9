//! A register-blocked single-precision GEMM in plain Rust, for wasm32: the CPU backend's
//! GEMM there (`conv::sgemm` picks it), where it runs faster than the `gemm` crate's SIMD128
//! kernels (BENCHMARKS.md, "The CPU backend in the page").
//!
//! Method. `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` in blocks of [`KC`] reductions: each block of
//! [`NR`] columns of `rhs` is copied into a contiguous panel (`[kc][NR]`, zero-padded past
//! `n`), then every block of up to [`MR`] rows of `lhs` runs the micro-kernel over it: `MR x
//! NR` sums in registers, one broadcast `lhs` value times one panel row per row and step. The
//! accumulators are 4-lane vectors ([`lanes`]: SIMD128 on wasm, arrays elsewhere), 9 of them:
//! with the 3 panel vectors and the 3 broadcasts that LLVM keeps live they fill the 15 vector
//! registers V8 allocates on x86-64. Measured in Chromium (BENCHMARKS.md), 3 x 12 ran the 1x1
//! convolutions 10-15% faster than 4 x 8 and 2 x 16; 6 x 8 spilled and ran 40% slower; the
//! reduction block (128, 256, 512) made no difference.
//!
//! It is portable code, so its unit tests run on every target.

use std::cell::Cell;

use super::lanes;
use super::shared::with_reused;

/// Rows of `lhs` (and `dst`) per micro-kernel call.
const MR: usize = 3;
/// Columns of `rhs` (and `dst`) per micro-kernel call: three 4-lane vectors.
const NR: usize = 12;
/// 4-lane vectors per panel row.
const NV: usize = NR / 4;
/// Reduction steps per block (a `KC x NR` panel is 12 KiB: it stays in L1 while every row
/// block of `lhs` passes over it).
const KC: usize = 256;

/// `dst[m×n] = lhs[m×k] · rhs[k×n] (+ dst when accumulate)`, all row-major with the given
/// row strides, on the calling thread.
///
/// # Safety
/// `dst` must be valid for reads and writes of the `m` rows of `n` floats at `dst + i * dst_rs`,
/// and nothing else may access those floats during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    lhs_rs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
) {
    // Reads of lhs and rhs are bounds-checked slices (the caller, `conv::sgemm_raw`, has
    // already checked their sizes); only the writes to dst go through the pointer.
    with_reused(&PANEL, KC.min(k) * NR, |panel| {
        let mut k0 = 0;
        loop {
            let kc = KC.min(k - k0);
            // The first block writes (or, with `accumulate`, adds); the others add.
            let add = accumulate || k0 > 0;
            let panel = &mut panel[..kc * NR];
            for j0 in (0..n).step_by(NR) {
                let cols = NR.min(n - j0);
                pack_panel(panel, rhs, rhs_rs, k0, j0, cols);
                for i0 in (0..m).step_by(MR) {
                    let a = Rows {
                        lhs,
                        stride: lhs_rs,
                        first: i0,
                        k0,
                        kc,
                    };
                    let out = Block {
                        // Row i0, column j0 of the destination: inside it (sgemm's contract).
                        dst: dst.wrapping_add(i0 * dst_rs + j0),
                        stride: dst_rs,
                        cols,
                        add,
                    };
                    const { assert!(MR == 3) };
                    match MR.min(m - i0) {
                        3 => micro::<3>(&a, panel, out),
                        2 => micro::<2>(&a, panel, out),
                        _ => micro::<1>(&a, panel, out),
                    }
                }
            }
            k0 += kc;
            if k0 >= k {
                break;
            }
        }
    })
}

thread_local! {
    /// The panel of `rhs` columns, kept between calls (every float is packed before use).
    static PANEL: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `panel[kk][..cols] = rhs[k0 + kk][j0..j0 + cols]`, zeros after `cols`.
#[inline(always)]
fn pack_panel(panel: &mut [f32], rhs: &[f32], rhs_rs: usize, k0: usize, j0: usize, cols: usize) {
    for (kk, row) in panel.chunks_exact_mut(NR).enumerate() {
        let src = &rhs[(k0 + kk) * rhs_rs + j0..][..cols];
        row[..cols].copy_from_slice(src);
        row[cols..].fill(0.0);
    }
}

/// The micro-kernel's rows of `lhs`: rows `first..` (as many as the kernel's `R`), columns
/// `k0..k0 + kc`.
struct Rows<'a> {
    lhs: &'a [f32],
    stride: usize,
    first: usize,
    k0: usize,
    kc: usize,
}

/// Where the micro-kernel's sums go: `cols` (at most [`NR`]) floats of each of its rows from
/// `dst`, written or (`add`) added.
struct Block {
    dst: *mut f32,
    stride: usize,
    cols: usize,
    add: bool,
}

/// `R x NR` sums of `R` rows of `lhs` times the panel, into `out`.
#[inline(always)]
fn micro<const R: usize>(a: &Rows, panel: &[f32], out: Block) {
    let rows: [&[f32]; R] = std::array::from_fn(|r| {
        let start = (a.first + r) * a.stride + a.k0;
        &a.lhs[start..start + a.kc]
    });
    let mut acc = [[lanes::zero(); NV]; R];
    assert_eq!(panel.len(), a.kc * NR);
    for (kk, b) in panel.chunks_exact(NR).enumerate() {
        let b: [lanes::V; NV] = std::array::from_fn(|v| lanes::load(&b[4 * v..]));
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let w = lanes::splat(row[kk]);
            for (acc, b) in acc.iter_mut().zip(b) {
                *acc = lanes::mul_add(w, b, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let mut sums = [0.0f32; NR];
        for (v, acc) in acc.iter().enumerate() {
            lanes::store(&mut sums[4 * v..], *acc);
        }
        // SAFETY: `cols` floats of row r of the block, inside the caller's destination.
        let d = unsafe { std::slice::from_raw_parts_mut(out.dst.add(r * out.stride), out.cols) };
        if out.add {
            d.iter_mut().zip(sums).for_each(|(d, s)| *d += s);
        } else {
            d.copy_from_slice(&sums[..out.cols]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix;

    /// The reference: a plain triple loop in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        (m, n, k): (usize, usize, usize),
        lhs: &[f32],
        lhs_rs: usize,
        rhs: &[f32],
        rhs_rs: usize,
        dst: &mut [f32],
        dst_rs: usize,
        accumulate: bool,
    ) {
        for i in 0..m {
            for j in 0..n {
                let mut s = if accumulate {
                    dst[i * dst_rs + j] as f64
                } else {
                    0.0
                };
                for kk in 0..k {
                    s += lhs[i * lhs_rs + kk] as f64 * rhs[kk * rhs_rs + j] as f64;
                }
                dst[i * dst_rs + j] = s as f32;
            }
        }
    }

    #[test]
    fn panel_gemm_matches_naive_on_random_shapes() {
        let mut rng = SplitMix::new(7);
        let mut uniform = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
                .collect()
        };
        let dims = [1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 49, 300];
        for case in 0..300 {
            let d = |i: usize| dims[(case * 7 + i * 5 + case / dims.len()) % dims.len()];
            let (m, n) = (d(1), d(2));
            let k = (d(3) * (case % 3 + 1)).saturating_sub(case % 2);
            let (lhs_rs, rhs_rs, dst_rs) = (k + case % 3, n + case % 5, n + case % 4);
            let accumulate = case % 2 == 0;
            let lhs = uniform(m * lhs_rs);
            let rhs = uniform(k.max(1) * rhs_rs);
            let init = uniform(m * dst_rs);
            let mut want = init.clone();
            naive(
                (m, n, k),
                &lhs,
                lhs_rs,
                &rhs,
                rhs_rs,
                &mut want,
                dst_rs,
                accumulate,
            );
            let mut got = init.clone();
            // SAFETY: got holds the m rows of n floats at stride dst_rs.
            unsafe {
                sgemm(
                    m,
                    n,
                    k,
                    &lhs,
                    lhs_rs,
                    &rhs,
                    rhs_rs,
                    got.as_mut_ptr(),
                    dst_rs,
                    accumulate,
                )
            };
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if i % dst_rs >= n {
                    assert_eq!(*g, init[i], "({m}, {n}, {k}): wrote past column n");
                } else {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + k as f32),
                        "({m}, {n}, {k}) [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }
}
