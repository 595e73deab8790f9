//! Direct convolution (no im2col, no GEMM) for the convolutions whose GEMMs would be tiny:
//! grouped convolutions with narrow groups, depthwise convolutions, stems with 3 input channels.
//!
//! Method. The zero-padded input `xpad` of a stride-`s` convolution is split into its `s x s`
//! phases, `phase[a][b][i][j] = xpad[s*i + a][s*j + b]`, each stored as a plane whose rows are
//! `wq = wo + (kw - 1) / s` long. Tap `(ky, kx)` of output pixel `(oy, ox)` then reads phase
//! `(ky % s, kx % s)` at `(oy + ky / s) * wq + ox + kx / s`. Indexing the output as
//! `p = oy * wq + ox` (an "extended" output whose rows end in `wq - wo` junk pixels), every
//! tap is a contiguous read at `p + offset`, whatever the kernel size, stride and padding.
//!
//! The micro-kernel computes a block of output channels for a run of consecutive `p`: the bias
//! plus a sum, over input channels and taps, of broadcast weights times shifted input vectors,
//! all in registers, activated there unless a residual comes first. The epilogue drops the
//! junk columns while copying into the NCHW output (adding the residual and activating when
//! there is one). Work is split into bands of output rows (so the packed input stays in
//! cache); the bands of every (image, group) are the parallel tasks.
//!
//! The micro-kernel has two builds: portable Rust that LLVM vectorises for the target's
//! baseline, and AVX2 + FMA intrinsics chosen at run time on x86-64.

use std::cell::RefCell;

use rayon::prelude::*;

use super::lanes;
use super::ops::{activate, Epilogue};
use super::shared::SharedOut;
use super::simd::Isa;
use crate::plan::{Activation, Conv2d, Shape};

/// Output pixels (consecutive `p`) per micro-kernel call: two 8-lane vectors.
const PIX: usize = 16;
/// Output channels per micro-kernel call (the register block: `CO x PIX` accumulators).
const CO: usize = 4;
/// Upper bound on one band's packed input, in floats (keeps it in the core's L2).
const BAND_PACKED_FLOATS: usize = 32 * 1024;
/// Upper bound on one band's extended output pixels (keeps one channel's sums in L1).
const BAND_PIXELS: usize = 2048;

/// Sizes of one direct convolution, per group.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    /// Row length of the phase planes and of the extended output.
    wq: usize,
    cin_g: usize,
    cout_g: usize,
}

impl Geometry {
    fn new(conv: &Conv2d, in_shape: Shape, out_shape: Shape) -> Geometry {
        let [kh, kw] = conv.kernel;
        let stride = conv.stride[0];
        Geometry {
            kh,
            kw,
            stride,
            pad: conv.padding[0],
            h: in_shape.height,
            w: in_shape.width,
            ho: out_shape.height,
            wo: out_shape.width,
            wq: out_shape.width + (kw - 1) / stride,
            cin_g: conv.in_channels / conv.groups,
            cout_g: conv.out_channels / conv.groups,
        }
    }

    /// Phases (row, column) that some tap reads: all `s x s` unless the kernel is smaller
    /// than the stride (a strided 1x1 convolution reads one phase only).
    fn phases(&self) -> (usize, usize) {
        (self.stride.min(self.kh), self.stride.min(self.kw))
    }

    /// Floats of one input channel's packed phases.
    fn channel_len(&self, plane_len: usize) -> usize {
        let (ph, pw) = self.phases();
        ph * pw * plane_len
    }

    /// Extra phase rows a band of output rows needs below it.
    fn halo(&self) -> usize {
        (self.kh - 1) / self.stride
    }

    fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// Output rows per band: as many as fit the packed-input and pixel budgets, and few
    /// enough that `units` (image, group) pairs make about four bands per thread (at least
    /// one row).
    fn band_rows(&self, units: usize) -> usize {
        let per_row = self.cin_g * self.channel_len(self.wq);
        let by_packed = (BAND_PACKED_FLOATS / per_row.max(1)).saturating_sub(self.halo());
        let by_pixels = BAND_PIXELS / self.wq.max(1);
        let bands = (4 * rayon::current_num_threads()).div_ceil(units.max(1));
        let by_threads = self.ho.div_ceil(bands);
        by_packed.min(by_pixels).min(by_threads).clamp(1, self.ho)
    }

    /// Extended output pixels computed for a band of `rows` rows, a multiple of [`PIX`].
    fn band_pixels(&self, rows: usize) -> usize {
        ((rows - 1) * self.wq + self.wo).div_ceil(PIX) * PIX
    }

    /// Length of one packed phase plane for bands of up to `rows` rows: the band's rows plus
    /// its halo, and enough zeros that the last micro-kernel run of every tap stays inside.
    fn plane_len(&self, rows: usize) -> usize {
        let max_shift = self.halo() * self.wq + (self.kw - 1) / self.stride;
        ((rows + self.halo()) * self.wq).max(self.band_pixels(rows) + max_shift)
    }

    /// For each tap `(ky, kx)`, row-major, its read offset inside one input channel's packed
    /// phases (planes of `plane_len`).
    fn tap_offsets(&self, plane_len: usize) -> Vec<usize> {
        let s = self.stride;
        let pw = self.phases().1;
        let mut offs = Vec::with_capacity(self.taps());
        for ky in 0..self.kh {
            for kx in 0..self.kw {
                let phase = (ky % s) * pw + kx % s;
                offs.push(phase * plane_len + (ky / s) * self.wq + kx / s);
            }
        }
        offs
    }

    /// The indices `i` in `start..start + count` (returned relative to `start`) whose phase
    /// `phase` position `stride * i + phase - pad` falls inside `0..extent`.
    fn inside(&self, phase: usize, start: usize, count: usize, extent: usize) -> (usize, usize) {
        let s = self.stride;
        let lo = self
            .pad
            .saturating_sub(phase)
            .div_ceil(s)
            .saturating_sub(start)
            .min(count);
        let hi = (extent + self.pad)
            .saturating_sub(phase)
            .div_ceil(s)
            .saturating_sub(start);
        (lo, hi.min(count).max(lo))
    }
}

/// Whether the direct kernel is the better choice for this convolution: narrow groups or
/// short reductions make GEMM tiles mostly empty. Measured with AVX2 GEMMs: for 3x3 convs
/// the direct kernel is 3x faster at group width 16, 1.5x at 56, 1.1x at 112, even at 232;
/// 1x1 convs (strided or not) are faster as GEMMs from 16 channels per group up.
pub(crate) fn prefers_direct(conv: &Conv2d) -> bool {
    if !conv.is_uniform() {
        return false; // the phase split is written for one stride and padding, no dilation
    }
    let cin_g = conv.in_channels / conv.groups;
    let cout_g = conv.out_channels / conv.groups;
    if conv.kernel == [1, 1] {
        return cout_g < 8;
    }
    cout_g <= 64 || cin_g * conv.kernel[0] * conv.kernel[1] <= 32
}

/// Per-thread buffers, reused across bands and calls.
#[derive(Default)]
struct Scratch {
    /// One band's input phases: `[cin_g][phase rows][phase columns][plane_len]`.
    packed: Vec<f32>,
    /// One channel block's extended output: `[CO][band_pixels]`.
    ext: Vec<f32>,
}

thread_local! {
    /// This thread's scratch buffers (a few hundred KiB at most for RegNet's shapes).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// What one band (some output rows of every channel of one group of one image) needs.
struct Band<'a> {
    geo: Geometry,
    /// The group's input channels of one image: `[cin_g][h][w]`.
    x: &'a [f32],
    /// The group's weights, packed by [`pack_weights`].
    w: &'a [f32],
    /// The group's biases.
    bias: &'a [f32],
    epilogue: Epilogue,
    /// The first output row.
    r0: usize,
    /// Output rows.
    rows: usize,
    plane_len: usize,
    offsets: &'a [usize],
    /// Where output channel `c` of the group has its rows: at `out_start + c * Ho * Wo`.
    out: SharedOut<'a>,
    out_start: usize,
}

/// Runs one convolution over a batch, directly: `x` is `[N, Cin, H, W]`, `out` is
/// `[N, Cout, Ho, Wo]`, `w` the weights as [`pack_weights`] orders them. With `residual` set,
/// `out` holds the residual on entry and it is added before the activation. The tasks are
/// the bands of rows of each (image, group).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_direct(
    conv: &Conv2d,
    w: &[f32],
    bias: &[f32],
    x: &[f32],
    in_shape: Shape,
    out_shape: Shape,
    out: &mut [f32],
    residual: bool,
    isa: Isa,
) {
    let geo = Geometry::new(conv, in_shape, out_shape);
    let batch = x.len() / in_shape.numel();
    assert_eq!(x.len(), batch * in_shape.numel());
    assert_eq!(out.len(), batch * out_shape.numel());
    let k = geo.cin_g * geo.taps();
    assert_eq!(w.len(), conv.out_channels * k);
    let groups = conv.groups;
    let band_rows = geo.band_rows(batch * groups);
    let bands = geo.ho.div_ceil(band_rows);
    let plane_len = geo.plane_len(band_rows);
    let offsets = geo.tap_offsets(plane_len);
    let (in_plane, out_plane) = (geo.h * geo.w, geo.ho * geo.wo);
    let epilogue = Epilogue {
        activation: conv.activation,
        residual,
    };
    let out = SharedOut::new(out);
    (0..batch * groups * bands).into_par_iter().for_each(|t| {
        let (n, gi, b) = (t / (groups * bands), t / bands % groups, t % bands);
        let (ic0, oc0) = (gi * geo.cin_g, gi * geo.cout_g);
        let img = &x[n * in_shape.numel()..(n + 1) * in_shape.numel()];
        let band = Band {
            geo,
            x: &img[ic0 * in_plane..(ic0 + geo.cin_g) * in_plane],
            w: &w[oc0 * k..(oc0 + geo.cout_g) * k],
            bias: &bias[oc0..oc0 + geo.cout_g],
            epilogue,
            r0: b * band_rows,
            rows: band_rows.min(geo.ho - b * band_rows),
            plane_len,
            offsets: &offsets,
            out,
            out_start: (n * conv.out_channels + oc0) * out_plane,
        };
        SCRATCH.with(|s| run_band(isa, &band, &mut s.borrow_mut()));
    });
}

/// Reorders a convolution's `[Cout, Cin/g, kh, kw]` weights group by group, each group block
/// by block ([`CO`] output channels, the group's last block narrower), each block as
/// `[cin][tap][block width]`: the order the micro-kernel reads them. Channel `c`'s block
/// starts at `c * Cin/g * kh * kw` when `c` starts a block.
pub(crate) fn pack_weights(conv: &Conv2d, weight: &[f32]) -> Vec<f32> {
    let k = conv.in_channels / conv.groups * conv.kernel[0] * conv.kernel[1];
    let cout_g = conv.out_channels / conv.groups;
    let mut packed = Vec::with_capacity(weight.len());
    for group in weight.chunks(cout_g * k) {
        for block in group.chunks(CO * k) {
            let width = block.len() / k;
            for kk in 0..k {
                packed.extend((0..width).map(|c| block[c * k + kk]));
            }
        }
    }
    packed
}

/// Runs one band with the best kernel build for `isa`.
fn run_band(isa: Isa, band: &Band, scratch: &mut Scratch) {
    match isa {
        Isa::Portable => band_kernel::<Portable>(band, scratch),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only chosen when the CPU has AVX2 and FMA.
        Isa::Avx2Fma => unsafe { band_kernel_avx2(band, scratch) },
    }
}

/// [`band_kernel`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn band_kernel_avx2(band: &Band, scratch: &mut Scratch) {
    band_kernel::<Avx2Fma>(band, scratch)
}

/// Computes one band: packs its input, then block by block of [`CO`] output channels, runs
/// the micro-kernel over the band's extended pixels and copies the valid ones out.
#[inline(always)]
fn band_kernel<K: Micro>(band: &Band, scratch: &mut Scratch) {
    let g = &band.geo;
    let k = g.cin_g * g.taps();
    let pixels = g.band_pixels(band.rows);
    scratch.ext.resize(CO * pixels, 0.0);
    let chan_len = g.channel_len(band.plane_len);
    scratch.packed.resize(g.cin_g * chan_len, 0.0);
    pack_band(
        g,
        band.x,
        band.r0,
        band.rows,
        band.plane_len,
        &mut scratch.packed,
    );
    // Without a residual to add first, the activation is applied in registers.
    let act = match band.epilogue.residual {
        false => band.epilogue.activation,
        true => Activation::Identity,
    };
    let mut c0 = 0;
    while c0 < g.cout_g {
        let width = CO.min(g.cout_g - c0);
        let w = &band.w[c0 * k..(c0 + width) * k];
        let bias = &band.bias[c0..c0 + width];
        for p0 in (0..pixels).step_by(PIX) {
            let input = Input {
                x: &scratch.packed,
                chan_len,
                offsets: band.offsets,
                w,
                p0,
            };
            let output = Output {
                ext: &mut scratch.ext,
                stride: pixels,
                bias,
                act,
            };
            match width {
                4 => K::micro::<4>(input, output),
                3 => K::micro::<3>(input, output),
                2 => K::micro::<2>(input, output),
                _ => K::micro::<1>(input, output),
            }
        }
        for c in 0..width {
            let start = band.out_start + (c0 + c) * g.ho * g.wo + band.r0 * g.wo;
            // SAFETY: this task alone writes rows r0..r0 + rows of the group's channels in
            // this image, and nothing else touches the output during the loop.
            let dst = unsafe { band.out.slice(start, band.rows * g.wo) };
            let sums = &scratch.ext[c * pixels..(c + 1) * pixels];
            for (d, s) in dst.chunks_exact_mut(g.wo).zip(sums.chunks(g.wq)) {
                let s = &s[..g.wo];
                if band.epilogue.residual {
                    d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
                    activate(d, band.epilogue.activation);
                } else {
                    copy_short(d, s);
                }
            }
        }
        c0 += width;
    }
}

/// `dst.copy_from_slice(src)` without a library call for short rows (output rows of small
/// planes are a handful of floats).
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    if dst.len() > 32 {
        dst.copy_from_slice(src);
        return;
    }
    let full = dst.len() / 8 * 8;
    let (head, tail) = dst.split_at_mut(full);
    for (d, s) in head.chunks_exact_mut(8).zip(src.chunks_exact(8)) {
        let s: &[f32; 8] = s.try_into().unwrap();
        d.copy_from_slice(s);
    }
    for (d, s) in tail.iter_mut().zip(&src[full..]) {
        *d = *s;
    }
}

/// Fills `packed` (`[cin_g][phase rows][phase columns][plane_len]`) with the zero-padded
/// input phases that output rows `r0..r0 + rows` read.
#[inline(always)]
fn pack_band(
    g: &Geometry,
    x: &[f32],
    r0: usize,
    rows: usize,
    plane_len: usize,
    packed: &mut [f32],
) {
    let s = g.stride;
    let hb = rows + g.halo();
    let (ph, pw) = g.phases();
    let channels = x.chunks_exact(g.h * g.w);
    for (src, phases) in channels.zip(packed.chunks_exact_mut(ph * pw * plane_len)) {
        for a in 0..ph {
            let (i_lo, i_hi) = g.inside(a, r0, hb, g.h);
            for b in 0..pw {
                let start = (a * pw + b) * plane_len;
                let plane = &mut phases[start..start + plane_len];
                let (j_lo, j_hi) = g.inside(b, 0, g.wq, g.w);
                if j_lo == j_hi || i_lo == i_hi {
                    plane.fill(0.0);
                    continue;
                }
                // Zeros only where the padding falls (writing the whole plane twice cost
                // ReXNet's depthwise convs a memset of every input they read): the rows above
                // and below the image, the columns left and right of it, the plane's tail.
                plane[..i_lo * g.wq + j_lo].fill(0.0);
                plane[(i_hi - 1) * g.wq + j_hi..].fill(0.0);
                let x0 = s * j_lo + b - g.pad;
                let span = s * (j_hi - j_lo - 1) + 1;
                for il in i_lo..i_hi {
                    let y = s * (r0 + il) + a - g.pad;
                    let row = &mut plane[il * g.wq..(il + 1) * g.wq];
                    if il > i_lo {
                        row[..j_lo].fill(0.0);
                    }
                    if il + 1 < i_hi {
                        row[j_hi..].fill(0.0);
                    }
                    gather_strided(
                        &mut row[j_lo..j_hi],
                        &src[y * g.w + x0..y * g.w + x0 + span],
                        s,
                    );
                }
            }
        }
    }
}

/// `dst[j] = src[s * j]`, with `src.len() == s * (dst.len() - 1) + 1`; the common strides
/// 1 and 2 in forms that vectorise.
#[inline(always)]
fn gather_strided(dst: &mut [f32], src: &[f32], s: usize) {
    let last = dst.len() - 1;
    match s {
        1 => dst.copy_from_slice(src),
        2 => {
            for (d, pair) in dst[..last].iter_mut().zip(src.chunks_exact(2)) {
                *d = pair[0];
            }
            dst[last] = src[2 * last];
        }
        _ => {
            for (d, v) in dst.iter_mut().zip(src.iter().step_by(s)) {
                *d = *v;
            }
        }
    }
}

/// What the micro-kernel reads: the packed input (`[cin][chan_len]`), the tap offsets in a
/// channel's packing, the block's weights (`[cin][tap][C]`) and the first extended pixel.
struct Input<'a> {
    x: &'a [f32],
    chan_len: usize,
    offsets: &'a [usize],
    w: &'a [f32],
    p0: usize,
}

/// Where the micro-kernel writes: `ext[c * stride + p0..][..PIX] = act(bias[c] + sums)`.
struct Output<'a> {
    ext: &'a mut [f32],
    stride: usize,
    bias: &'a [f32],
    act: Activation,
}

/// A build of the register-blocked micro-kernel: for `C` output channels (at most [`CO`])
/// and the [`PIX`] extended pixels from `p0`, the bias plus the sum over input channels
/// and taps of broadcast weights times shifted input vectors, activated and stored.
trait Micro {
    fn micro<const C: usize>(input: Input, output: Output);
}

/// The micro-kernel in plain Rust, for any target.
struct Portable;

impl Micro for Portable {
    #[inline(always)]
    fn micro<const C: usize>(i: Input, o: Output) {
        // Two halves of 8 pixels: `C x 2` accumulators of 4 lanes fit 16 SSE registers (and
        // V8's 15 for wasm SIMD128).
        for half in [0, HALF] {
            let p0 = i.p0 + half;
            let mut acc = [[lanes::zero(); 2]; C];
            let mut weights = i.w.chunks_exact(C);
            for xc in i.x.chunks_exact(i.chan_len) {
                for &off in i.offsets {
                    let xv: &[f32; HALF] = xc[p0 + off..p0 + off + HALF].try_into().unwrap();
                    let (x0, x1) = (lanes::load(&xv[..4]), lanes::load(&xv[4..]));
                    let wv: &[f32; C] = weights.next().unwrap().try_into().unwrap();
                    for (a, &w) in acc.iter_mut().zip(wv) {
                        let w = lanes::splat(w);
                        a[0] = lanes::mul_add(w, x0, a[0]);
                        a[1] = lanes::mul_add(w, x1, a[1]);
                    }
                }
            }
            for (c, a) in acc.iter().enumerate() {
                let out = &mut o.ext[c * o.stride + p0..c * o.stride + p0 + HALF];
                lanes::store(&mut out[..4], a[0]);
                lanes::store(&mut out[4..], a[1]);
                out.iter_mut().for_each(|d| *d += o.bias[c]);
                activate(out, o.act);
            }
        }
    }
}

/// Half of [`PIX`].
const HALF: usize = PIX / 2;

/// The micro-kernel with AVX2 + FMA intrinsics. Only [`band_kernel_avx2`] may use it: it
/// runs only where the CPU has those features.
#[cfg(target_arch = "x86_64")]
struct Avx2Fma;

#[cfg(target_arch = "x86_64")]
impl Micro for Avx2Fma {
    #[inline(always)]
    fn micro<const C: usize>(input: Input, output: Output) {
        // SAFETY: this build is only instantiated by `band_kernel_avx2`, which runs only on
        // CPUs with AVX2 and FMA.
        unsafe { avx2::micro::<C>(input, output) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{activate, Activation, Input, Output, PIX};

    /// Checks that every access of a `C`-channel micro-kernel call stays inside its slices
    /// (the kernels then read and write through raw pointers); returns the input channels.
    #[inline(always)]
    fn check_bounds<const C: usize>(i: &Input, o: &Output) -> usize {
        let cin = i.x.len() / i.chan_len;
        let last = i.offsets.iter().max().copied().unwrap_or(0);
        assert!(cin == 0 || (cin - 1) * i.chan_len + i.p0 + last + PIX <= i.x.len());
        assert!(i.w.len() >= cin * i.offsets.len() * C && o.bias.len() >= C);
        assert!((C - 1) * o.stride + i.p0 + PIX <= o.ext.len());
        cin
    }

    /// Activates and stores one channel's two vectors at `ext[c * stride + p0..]`. Only for
    /// the micro-kernels below (inlined into them, it is compiled with their features).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[inline(always)]
    unsafe fn store(i: &Input, o: &mut Output, c: usize, mut a0: __m256, mut a1: __m256) {
        if o.act == Activation::Relu {
            let zero = _mm256_setzero_ps();
            (a0, a1) = (_mm256_max_ps(a0, zero), _mm256_max_ps(a1, zero));
        }
        let start = c * o.stride + i.p0;
        // SAFETY: inside `ext` (checked by `check_bounds`).
        unsafe {
            _mm256_storeu_ps(o.ext.as_mut_ptr().add(start), a0);
            _mm256_storeu_ps(o.ext.as_mut_ptr().add(start + 8), a1);
        }
        if !matches!(o.act, Activation::Identity | Activation::Relu) {
            activate(&mut o.ext[start..start + PIX], o.act);
        }
    }

    /// Defines the micro-kernel for one channel count, its accumulators as named variables
    /// (arrays of vectors were kept in memory by LLVM).
    macro_rules! micro {
        ($name:ident, $c:literal, $([$ch:literal, $a0:ident, $a1:ident]),+) => {
            /// [`super::Micro::micro`] for this many channels, with 8-lane vectors.
            ///
            /// # Safety
            /// The CPU must have AVX2 and FMA.
            #[target_feature(enable = "avx2,fma")]
            #[inline]
            pub(super) unsafe fn $name(i: Input, mut o: Output) {
                let cin = check_bounds::<$c>(&i, &o);
                $(
                    let mut $a0 = _mm256_set1_ps(o.bias[$ch]);
                    let mut $a1 = $a0;
                )+
                // SAFETY: every read is inside `x` and `w` (checked by `check_bounds`).
                unsafe {
                    let mut w = i.w.as_ptr();
                    for ci in 0..cin {
                        let base = i.x.as_ptr().add(ci * i.chan_len + i.p0);
                        for &off in i.offsets {
                            let x0 = _mm256_loadu_ps(base.add(off));
                            let x1 = _mm256_loadu_ps(base.add(off + 8));
                            $(
                                let wv = _mm256_broadcast_ss(&*w.add($ch));
                                $a0 = _mm256_fmadd_ps(wv, x0, $a0);
                                $a1 = _mm256_fmadd_ps(wv, x1, $a1);
                            )+
                            w = w.add($c);
                        }
                    }
                }
                $( store(&i, &mut o, $ch, $a0, $a1); )+
            }
        };
    }

    micro!(micro1, 1, [0, a0, b0]);
    micro!(micro2, 2, [0, a0, b0], [1, a1, b1]);
    micro!(micro3, 3, [0, a0, b0], [1, a1, b1], [2, a2, b2]);
    micro!(
        micro4,
        4,
        [0, a0, b0],
        [1, a1, b1],
        [2, a2, b2],
        [3, a3, b3]
    );

    /// The micro-kernel for `C` channels (1 to 4).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[inline(always)]
    pub(super) unsafe fn micro<const C: usize>(i: Input, o: Output) {
        const { assert!(PIX == 16 && C >= 1 && C <= 4) };
        // SAFETY: forwarded from the caller.
        unsafe {
            match C {
                1 => micro1(i, o),
                2 => micro2(i, o),
                3 => micro3(i, o),
                _ => micro4(i, o),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::reference::{naive_conv, random_case};

    /// The direct kernel, with every instruction set, against the naive convolution.
    #[test]
    fn direct_matches_naive_on_random_shapes() {
        let cases = [
            // (cin, cout, groups, k, stride, pad, h, w)
            (8, 8, 1, [3, 3], 1, 1, 7, 9),
            (48, 48, 6, [3, 3], 2, 1, 17, 13),
            (16, 16, 16, [3, 3], 1, 1, 5, 6),
            (12, 12, 12, [5, 5], 2, 2, 11, 9),
            (3, 32, 1, [3, 3], 2, 1, 23, 19),
            (3, 10, 1, [7, 7], 2, 3, 15, 17),
            (24, 24, 1, [3, 3], 1, 1, 1, 1),
            (10, 6, 2, [1, 3], 1, 0, 4, 9),
            (6, 9, 3, [2, 2], 3, 1, 10, 7),
            (8, 20, 4, [3, 3], 2, 0, 9, 9),
            (5, 7, 1, [1, 1], 1, 0, 3, 4),
            (4, 4, 2, [1, 1], 2, 0, 7, 7),
            // bands limited by the cache budget (stem-like, wide rows)
            (3, 16, 1, [3, 3], 2, 1, 96, 150),
        ];
        // Thread counts change how rows are split into bands.
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| check_cases(&cases));
        }
    }

    type DirectCase = (usize, usize, usize, [usize; 2], usize, usize, usize, usize);

    fn check_cases(cases: &[DirectCase]) {
        for (i, &(cin, cout, groups, kernel, stride, pad, h, w)) in cases.iter().enumerate() {
            for act in [Activation::Identity, Activation::Relu, Activation::Sigmoid] {
                for residual in [false, true] {
                    for batch in [1, 3] {
                        let case = random_case(
                            i as u64, cin, cout, groups, kernel, stride, pad, h, w, act, residual,
                        );
                        let want = naive_conv(&case, batch);
                        for isa in Isa::available() {
                            let mut out = case.initial_output(batch);
                            conv2d_direct(
                                &case.conv,
                                &pack_weights(&case.conv, &case.params.weight),
                                &case.params.bias,
                                &case.input(batch),
                                case.in_shape,
                                case.out_shape,
                                &mut out,
                                residual,
                                isa,
                            );
                            case.assert_close(&out, &want, &format!("case {i} {act:?} {isa:?}"));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn inside_ranges_cover_the_image() {
        let conv = random_case(0, 4, 4, 1, [3, 3], 2, 1, 5, 5, Activation::Identity, false).conv;
        let g = Geometry::new(
            &conv,
            Shape {
                channels: 4,
                height: 5,
                width: 5,
            },
            Shape {
                channels: 4,
                height: 3,
                width: 3,
            },
        );
        assert_eq!(g.wq, 4);
        assert_eq!(g.inside(0, 0, g.wq, g.w), (1, 3));
        assert_eq!(g.inside(1, 0, g.wq, g.w), (0, 3));
        // Rows of a band starting at output row 1: phase row 0 is image row 2 * (1 + i) - 1.
        assert_eq!(g.inside(0, 1, 3, g.h), (0, 2));
        assert_eq!(g.inside(1, 1, 3, g.h), (0, 2));
    }
}
