//! The CPU's small ops (squeeze-and-excitation, global average pooling, channel shuffle, CBAM's
//! channel pool and spatial gate, the linear head) and the epilogue helpers the convolution
//! kernels share.

use rayon::prelude::*;

use crate::plan::Activation;
use crate::weights::{LinearParams, SeParams};

/// What a convolution does to its sums before storing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Epilogue {
    /// Applied last.
    pub activation: Activation,
    /// The destination holds a residual to add (before the activation).
    pub residual: bool,
}

/// Stores one row of a convolution's output: `dst = act(sums + bias [+ dst])`.
#[inline(always)]
pub(crate) fn finish_row(dst: &mut [f32], sums: &[f32], bias: f32, e: Epilogue) {
    debug_assert_eq!(dst.len(), sums.len());
    if e.residual {
        for (d, &s) in dst.iter_mut().zip(sums) {
            *d += s + bias;
        }
    } else {
        for (d, &s) in dst.iter_mut().zip(sums) {
            *d = s + bias;
        }
    }
    activate(dst, e.activation);
}

/// Applies `act` in place; the activations that need `exp` run 8 lanes wide on AVX2 machines.
#[inline(always)]
pub(crate) fn activate(x: &mut [f32], act: Activation) {
    #[cfg(target_arch = "x86_64")]
    if matches!(act, Activation::Sigmoid | Activation::Silu)
        && super::simd::Isa::detect() != super::simd::Isa::Portable
    {
        // SAFETY: the CPU has AVX2 and FMA (detected).
        unsafe { activate_avx2(x, act) };
        return;
    }
    activate_portable(x, act);
}

/// [`activate_portable`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn activate_avx2(x: &mut [f32], act: Activation) {
    activate_with::<true>(x, act);
}

#[inline(always)]
fn activate_portable(x: &mut [f32], act: Activation) {
    activate_with::<false>(x, act);
}

/// [`activate`], with `exp`'s multiply-adds fused when `FMA` (only where the caller is
/// compiled with FMA: elsewhere a fused multiply-add is a library call).
#[inline(always)]
fn activate_with<const FMA: bool>(x: &mut [f32], act: Activation) {
    match act {
        Activation::Identity => {}
        Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Relu6 => x.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
        Activation::Sigmoid => x
            .iter_mut()
            .for_each(|v| *v = 1.0 / (1.0 + exp_with::<FMA>(-*v))),
        Activation::Silu => x.iter_mut().for_each(|v| *v /= 1.0 + exp_with::<FMA>(-*v)),
    }
}

/// `a * b + c`, fused when `FMA`.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// e^x within 2 ulp (x clamped to [-87, 88]: results from 1.6e-38 to 1.7e38), branch-free so
/// that loops over slices vectorise (libm's `expf` is a call per value; SiLU made ReXNet's
/// expansion convolutions twice as slow as ONNX Runtime's). Cephes' `expf`: x = n ln2 + r with
/// n rounded to nearest (the 1.5 x 2^23 trick, which SSE2 vectorises), |r| <= ln2 / 2, and its
/// degree-6 polynomial for e^r; 2^n built in the exponent bits.
///
/// Its multiply-adds are fused when `FMA` (ReXNet's SiLU: 12% of its CPU time at batch 1).
#[inline(always)]
fn exp_with<const FMA: bool>(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 x 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = madd::<FMA>(x, std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    // n as an integer, from t's mantissa bits (a float-to-int `as` would not vectorise).
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = madd::<FMA>(n, 2.121_944_4e-4, madd::<FMA>(n, -0.693_359_4, x));
    let mut p = 1.987_569_2e-4;
    p = madd::<FMA>(p, r, 1.398_199_9e-3);
    p = madd::<FMA>(p, r, 8.333_452e-3);
    p = madd::<FMA>(p, r, 4.166_579_6e-2);
    p = madd::<FMA>(p, r, 1.666_666_5e-1);
    p = madd::<FMA>(p, r, 0.5); // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let e = madd::<FMA>(p * r, r, r + 1.0);
    e * f32::from_bits(((ni + 127) as u32) << 23)
}

/// Floats per parallel task in the memory-bound passes (below it rayon's overhead dominates).
const MIN_TASK_FLOATS: usize = 16 * 1024;

/// Mean of one plane, accumulated in f64 over 8 independent lanes (which vectorise).
fn plane_mean(p: &[f32]) -> f32 {
    let mut lanes = [0f64; 8];
    let chunks = p.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v as f64;
        }
    }
    ((lanes.iter().sum::<f64>() + tail) / p.len().max(1) as f64) as f32
}

/// Dot product over 16 independent f32 lanes (which vectorise).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((l, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *l += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Planes per parallel task for planes of `hw` floats.
pub(crate) fn min_planes(hw: usize) -> usize {
    (MIN_TASK_FLOATS / hw.max(1)).max(1)
}

/// Mean of each `hw`-long plane (accumulated in f64).
pub(crate) fn global_avg_pool(x: &[f32], hw: usize) -> Vec<f32> {
    let hw = hw.max(1);
    let mut out = vec![0.0; x.len() / hw];
    out.par_iter_mut()
        .zip(x.par_chunks(hw))
        .with_min_len(min_planes(hw))
        .for_each(|(o, plane)| *o = plane_mean(plane));
    out
}

/// `y = act(W·x + b)` for one vector, `W` being `[out, in]` row-major.
fn matvec(w: &[f32], b: &[f32], x: &[f32], act: Activation) -> Vec<f32> {
    w.chunks(x.len().max(1))
        .zip(b)
        .map(|(row, &bias)| act.apply(dot(row, x) + bias))
        .collect()
}

/// Squeeze-and-excitation in place on `x` (`[N, C, H, W]`), `act` applied to the gated values;
/// with `pool_max`, CBAM's channel attention (the plane's max through the same MLP, added).
pub(crate) fn squeeze_excite(
    p: &SeParams,
    x: &mut [f32],
    channels: usize,
    hw: usize,
    act: Activation,
    pool_max: bool,
) {
    let pooled = global_avg_pool(x, hw);
    let maxed: Vec<f32> = if pool_max {
        x.par_chunks(hw.max(1))
            .map(|q| q.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)))
            .collect()
    } else {
        Vec::new()
    };
    let mlp = |s: &[f32]| {
        let z = matvec(&p.w1, &p.b1, s, Activation::Relu);
        matvec(&p.w2, &p.b2, &z, Activation::Identity)
    };
    let gates: Vec<f32> = pooled
        .par_chunks(channels.max(1))
        .enumerate()
        .flat_map_iter(|(n, s)| {
            let mut v = mlp(s);
            if pool_max {
                let m = mlp(&maxed[n * channels..(n + 1) * channels]);
                v.iter_mut().zip(m).for_each(|(a, b)| *a += b);
            }
            v.iter_mut()
                .for_each(|a| *a = Activation::Sigmoid.apply(*a));
            v
        })
        .collect();
    x.par_chunks_mut(hw.max(1))
        .zip(gates.par_iter())
        .with_min_len(min_planes(hw))
        .for_each(|(plane, &g)| {
            plane.iter_mut().for_each(|v| *v *= g);
            activate(plane, act);
        });
}

/// ShuffleNet's channel shuffle of `x` (`[N, C, hw]`) in `groups` groups: output channel
/// `j * groups + i` is input channel `i * C / groups + j`.
pub(crate) fn channel_shuffle(x: &[f32], channels: usize, groups: usize, hw: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    let per_group = channels / groups.max(1);
    out.par_chunks_mut(hw.max(1))
        .enumerate()
        .with_min_len(min_planes(hw))
        .for_each(|(k, dst)| {
            let (n, oc) = (k / channels, k % channels);
            let ic = (oc % groups) * per_group + oc / groups;
            let src = (n * channels + ic) * hw;
            dst.copy_from_slice(&x[src..src + hw]);
        });
    out
}

/// Copies `count` channels of every image: from channel `begin` of `src` (`[N, src_c, hw]`)
/// to channel `at` of `dst` (`[N, dst_c, hw]`) (ShuffleNetV2's split and concatenation).
pub(crate) fn copy_channels(
    (src, src_c, begin): (&[f32], usize, usize),
    (dst, dst_c, at): (&mut [f32], usize, usize),
    count: usize,
    hw: usize,
) {
    dst.par_chunks_mut((dst_c * hw).max(1))
        .zip(src.par_chunks((src_c * hw).max(1)))
        .for_each(|(d, s)| {
            d[at * hw..(at + count) * hw].copy_from_slice(&s[begin * hw..(begin + count) * hw])
        });
}

/// The mean and the max over the channels of `x` (`[N, C, hw]`): `[N, 2, hw]`, mean first.
pub(crate) fn channel_pool(x: &[f32], channels: usize, hw: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len() / channels.max(1) * 2];
    out.par_chunks_mut(2 * hw.max(1))
        .zip(x.par_chunks((channels * hw).max(1)))
        .for_each(|(dst, img)| {
            let (mean, max) = dst.split_at_mut(hw);
            mean.fill(0.0);
            max.copy_from_slice(&img[..hw]);
            for plane in img.chunks_exact(hw) {
                for ((s, m), &v) in mean.iter_mut().zip(max.iter_mut()).zip(plane) {
                    *s += v;
                    *m = m.max(v);
                }
            }
            mean.iter_mut().for_each(|s| *s /= channels as f32);
        });
    out
}

/// Every channel of `x` (`[N, C, hw]`) times the image's map (`[N, 1, hw]`).
pub(crate) fn spatial_gate(x: &[f32], map: &[f32], channels: usize, hw: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    out.par_chunks_mut(hw.max(1))
        .enumerate()
        .with_min_len(min_planes(hw))
        .for_each(|(k, plane)| {
            let m = &map[k / channels * hw..(k / channels + 1) * hw];
            plane.iter_mut().zip(m).for_each(|(v, &g)| *v *= g);
        });
    out
}

/// Batches below this size run the linear head as dot products, larger ones as a GEMM.
const GEMV_BATCH: usize = 4;

/// The linear head on a `[N, in]` batch: `[N, out]`.
pub(crate) fn linear(
    p: &LinearParams,
    x: &[f32],
    batch: usize,
    inf: usize,
    outf: usize,
) -> Vec<f32> {
    let mut y: Vec<f32> = (0..batch).flat_map(|_| p.bias.iter().copied()).collect();
    // (wasm32 builds have no gemm crate: the dot products at every batch there.)
    if (batch < GEMV_BATCH || cfg!(target_arch = "wasm32")) && inf > 0 {
        // A few images: a dot product per output and image, each weight row streamed once
        // (the GEMM packed the weights first, and its threads ran slower than one).
        let rows = (64 * 1024 / inf).clamp(1, outf.max(1));
        let xs: Vec<&[f32]> = x.chunks_exact(inf).collect();
        let mut by_row = vec![0.0f32; outf * batch];
        by_row
            .par_chunks_mut(rows * batch)
            .zip(p.weight.par_chunks(rows * inf))
            .for_each(|(dst, w)| {
                for (d, row) in dst.chunks_exact_mut(batch).zip(w.chunks_exact(inf)) {
                    for (d, xn) in d.iter_mut().zip(&xs) {
                        *d = dot(row, xn);
                    }
                }
            });
        for (o, sums) in by_row.chunks_exact(batch).enumerate() {
            for (n, &s) in sums.iter().enumerate() {
                y[n * outf + o] += s;
            }
        }
        return y;
    }
    // y[N×out] += x[N×in] · Wᵀ[in×out]; Wᵀ is W read with swapped strides.
    #[cfg(not(target_arch = "wasm32"))]
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
                gemm::Parallelism::Rayon(rayon::current_num_threads()),
            )
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::reference::Rng;

    #[test]
    fn lane_sums_match_plain_sums() {
        let mut rng = Rng::new(7);
        for n in [1, 7, 8, 15, 16, 17, 49, 110, 440, 3136] {
            let (a, b) = (rng.vec(n), rng.vec(n));
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!(
                (dot(&a, &b) as f64 - want).abs() < 1e-5 * n as f64,
                "dot {n}"
            );
            let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            assert!((plane_mean(&a) as f64 - mean).abs() < 1e-7, "mean {n}");
        }
    }

    /// Both ways of running the head (dot products below `GEMV_BATCH` images, the GEMM from
    /// it on) against float64 sums.
    #[test]
    fn linear_matches_its_definition_at_every_batch() {
        let mut rng = Rng::new(11);
        let (inf, outf) = (300, 1000);
        let p = LinearParams {
            weight: rng.vec(outf * inf),
            bias: rng.vec(outf),
        };
        for batch in [1, 2, GEMV_BATCH - 1, GEMV_BATCH, 7] {
            let x = rng.vec(batch * inf);
            let got = linear(&p, &x, batch, inf, outf);
            assert_eq!(got.len(), batch * outf);
            for (i, &g) in got.iter().enumerate() {
                let (n, o) = (i / outf, i % outf);
                let want = p.bias[o] as f64
                    + (0..inf)
                        .map(|k| p.weight[o * inf + k] as f64 * x[n * inf + k] as f64)
                        .sum::<f64>();
                assert!(
                    (g as f64 - want).abs() < 1e-5 * inf as f64,
                    "batch {batch} {i}"
                );
            }
        }
    }

    #[test]
    fn squeeze_excite_matches_its_definition() {
        let mut rng = Rng::new(3);
        let (batch, c, s, hw) = (3, 20, 5, 13);
        let p = SeParams {
            w1: rng.vec(s * c),
            b1: rng.vec(s),
            w2: rng.vec(c * s),
            b2: rng.vec(c),
        };
        let x = rng.vec(batch * c * hw);
        let mut got = x.clone();
        squeeze_excite(&p, &mut got, c, hw, Activation::Identity, false);
        for n in 0..batch {
            let img = &x[n * c * hw..(n + 1) * c * hw];
            let mean: Vec<f64> = img
                .chunks(hw)
                .map(|q| q.iter().map(|&v| v as f64).sum::<f64>() / hw as f64)
                .collect();
            let z: Vec<f64> = (0..s)
                .map(|j| {
                    let v: f64 = (0..c).map(|i| p.w1[j * c + i] as f64 * mean[i]).sum();
                    (v + p.b1[j] as f64).max(0.0)
                })
                .collect();
            for i in 0..c {
                let v: f64 = (0..s).map(|j| p.w2[i * s + j] as f64 * z[j]).sum();
                let gate = 1.0 / (1.0 + (-(v + p.b2[i] as f64)).exp());
                for k in 0..hw {
                    let idx = (n * c + i) * hw + k;
                    let want = x[idx] as f64 * gate;
                    assert!((got[idx] as f64 - want).abs() < 1e-6, "{n} {i} {k}");
                }
            }
        }
    }
}

#[cfg(test)]
mod exp_tests {
    use super::*;

    /// `exp_with::<true>` compiled with FMA, as `activate_avx2` runs it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp_fused(x: f32) -> f32 {
        exp_with::<true>(x)
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut variants: Vec<fn(f32) -> f32> = vec![exp_with::<false>, exp_with::<true>];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (detected).
            variants.push(|x| unsafe { exp_fused(x) });
        }
        for f in variants {
            let mut worst = 0.0f64;
            let mut x = -87.0f32;
            while x <= 88.0 {
                let want = (x as f64).exp();
                let got = f(x) as f64;
                worst = worst.max((got - want).abs() / want);
                x += 0.001_953_125; // 2^-9: every reduction interval many times
            }
            assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        }
        let exp = exp_with::<false>;
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37); // clamped, never 0 or subnormal
        assert!(exp(1000.0).is_finite() && exp(f32::NAN).is_nan());
    }

    #[test]
    fn silu_and_sigmoid_match_their_definitions() {
        for act in [Activation::Silu, Activation::Sigmoid] {
            let xs: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.05).collect();
            let mut got = xs.clone();
            activate(&mut got, act);
            for (&x, &g) in xs.iter().zip(&got) {
                let s = 1.0 / (1.0 + (-(x as f64)).exp());
                let want = if act == Activation::Silu {
                    x as f64 * s
                } else {
                    s
                };
                assert!(
                    (g as f64 - want).abs() <= 1e-6 * want.abs().max(1e-30),
                    "{act:?}({x}): {g} vs {want}"
                );
            }
        }
    }
}
