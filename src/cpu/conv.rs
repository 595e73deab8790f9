//! Convolution on the CPU. Four paths, chosen by shape ([`path`]):
//!
//! - dense 3x3 stride-1 convolutions of 64 channels or more on planes of 7x7 or more
//!   (ResNet's): Winograd F(2x2, 3x3), [`super::winograd`];
//! - kernels larger than 1x1 with narrow groups or short reductions (grouped 3x3 convs up to
//!   64 channels per group, depthwise convs, the 3-channel stem): the direct kernel of
//!   [`super::direct`];
//! - 1x1 stride-1 convolutions: a GEMM straight on the NCHW input (`[Cout, Cin] x [Cin, H*W]`),
//!   over all images at once for small planes;
//! - everything else (strided 1x1, wide groups): im2col, then a GEMM per (image, group).
//!
//! GEMMs run single-threaded on tiles of output channels x pixels spread over the rayon pool,
//! which scales better at these sizes than the `gemm` crate's own threading. A residual, when
//! present, is already in the destination and the GEMM accumulates onto it; bias and activation
//! are applied to each tile right after its GEMM, while it is in cache.

use std::borrow::Cow;
use std::cell::Cell;
use std::ops::Range;

use rayon::prelude::*;

use super::ops::{activate, finish_row, Epilogue};
use super::shared::{with_reused, SharedOut};
use super::simd::Isa;
use super::{direct, winograd};
use crate::plan::{Conv2d, Shape};
use crate::weights::ConvParams;

thread_local! {
    /// A batched pointwise conv's gathered inputs, and one of its tasks' sums (kept between
    /// calls: allocating and zeroing them each time was 5% of ReXNet-100 at batch 8).
    static GATHERED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static TILE: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Most output floats one GEMM block should hold (so its epilogue finds it in L2).
const BLOCK_FLOATS: usize = 64 * 1024;
/// Planes (pixels) below this size have their 1x1 convolutions batched over the images.
const SMALL_PLANE: usize = 256;

/// `dst[m×n] = lhs[m×k] · rhs[k×n] (+ dst when accumulate)`, all row-major with the given
/// row strides, on the calling thread.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    lhs_rs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: dst is a live, exclusive slice holding the whole m×n destination (asserted).
    unsafe {
        sgemm_raw(
            m,
            n,
            k,
            lhs,
            lhs_rs,
            rhs,
            rhs_rs,
            dst.as_mut_ptr(),
            dst_rs,
            accumulate,
        )
    }
}

/// [`sgemm`] with the destination as a pointer, for tasks writing disjoint, interleaved
/// parts of one buffer.
///
/// # Safety
/// `dst` must be valid for reads and writes of the `m` rows of `n` floats at `dst + i * dst_rs`,
/// and nothing else may access those floats during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_raw(
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
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of the destination, valid and exclusive by the caller's contract.
                unsafe { std::slice::from_raw_parts_mut(dst.add(i * dst_rs), n) }.fill(0.0);
            }
        }
        return;
    }
    assert!(lhs.len() >= (m - 1) * lhs_rs + k);
    assert!(rhs.len() >= (k - 1) * rhs_rs + n);
    // wasm32: the panel GEMM, faster there than gemm's SIMD128 kernels.
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the caller's contract, passed on.
    unsafe {
        super::panel_gemm::sgemm(m, n, k, lhs, lhs_rs, rhs, rhs_rs, dst, dst_rs, accumulate)
    };
    // SAFETY: the asserts keep the reads inside lhs and rhs; the caller vouches for dst, which
    // cannot alias the shared lhs and rhs it has exclusive access to.
    #[cfg(not(target_arch = "wasm32"))]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
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
            gemm::Parallelism::None,
        )
    }
}

/// One convolution layer as the kernels see it.
pub(crate) struct ConvLayer<'a> {
    /// The op.
    pub conv: &'a Conv2d,
    /// Its weights and bias.
    pub params: &'a ConvParams,
    /// Its weights as [`direct::pack_weights`] orders them, when prepared beforehand (only
    /// read by the kernel they were prepared for; prepared on the fly when absent).
    pub packed: Option<&'a Prepared>,
    /// One image's input shape.
    pub in_shape: Shape,
    /// One image's output shape.
    pub out_shape: Shape,
}

/// A convolution's weights reordered beforehand for the kernel that runs it.
pub(crate) enum Prepared {
    /// For the direct kernel ([`direct::pack_weights`]).
    Direct(Vec<f32>),
    /// For Winograd F(2x2, 3x3) ([`winograd::transform_weights`]), used at the sizes where
    /// that path runs.
    Winograd(Vec<f32>),
}

impl Prepared {
    /// `weight` reordered for the kernel of `path`, when that kernel reorders them.
    fn new(path: Path, conv: &Conv2d, weight: &[f32]) -> Option<Prepared> {
        match path {
            Path::Direct => Some(Prepared::Direct(direct::pack_weights(conv, weight))),
            Path::Winograd => Some(Prepared::Winograd(winograd::transform_weights(
                conv, weight,
            ))),
            Path::Pointwise | Path::Im2col => None,
        }
    }

    /// The weights, when they were prepared for the kernel of `path`.
    fn for_path(&self, path: Path) -> Option<&[f32]> {
        match (self, path) {
            (Prepared::Direct(w), Path::Direct) | (Prepared::Winograd(w), Path::Winograd) => {
                Some(w)
            }
            _ => None,
        }
    }
}

/// The weights `conv` should have prepared beforehand for its kernel at the plan's size
/// (`out_shape`), when that kernel reorders them: the direct kernel's packing, or Winograd's
/// transformed weights. (A run at another size whose kernel differs prepares them then.)
pub(crate) fn prepare(conv: &Conv2d, p: &ConvParams, out_shape: Shape) -> Option<Prepared> {
    Prepared::new(path(conv, out_shape), conv, &p.weight)
}

/// The weights the kernel of `path` reads for `layer`: prepared beforehand, or now (as they
/// are, for the kernels that read them so).
fn prepared_weights<'a>(layer: &'a ConvLayer, path: Path) -> Cow<'a, [f32]> {
    match layer.packed.and_then(|p| p.for_path(path)) {
        Some(w) => Cow::Borrowed(w),
        None => match Prepared::new(path, layer.conv, &layer.params.weight) {
            Some(Prepared::Direct(w) | Prepared::Winograd(w)) => Cow::Owned(w),
            None => Cow::Borrowed(&layer.params.weight),
        },
    }
}

/// Runs one convolution over a batch: `x` is `[N, Cin, H, W]`, `out` is `[N, Cout, Ho, Wo]`.
/// With `accumulate`, `out` holds a residual on entry, added before the activation; else its
/// content is ignored and overwritten.
pub(crate) fn conv2d(layer: &ConvLayer, x: &[f32], out: &mut [f32], accumulate: bool) {
    let (conv, p) = (layer.conv, layer.params);
    let (in_shape, out_shape) = (layer.in_shape, layer.out_shape);
    match path(conv, out_shape) {
        Path::Winograd => {
            let u = prepared_weights(layer, Path::Winograd);
            winograd::conv2d_winograd(conv, &u, &p.bias, x, in_shape, out_shape, out, accumulate);
        }
        Path::Direct => {
            let w = prepared_weights(layer, Path::Direct);
            let isa = Isa::detect();
            direct::conv2d_direct(
                conv, &w, &p.bias, x, in_shape, out_shape, out, accumulate, isa,
            );
        }
        Path::Pointwise => pointwise(conv, p, x, in_shape, out_shape, out, accumulate),
        Path::Im2col => im2col_gemm(conv, p, x, in_shape, out_shape, out, accumulate),
    }
}

/// The kernels a convolution can run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// [`winograd::conv2d_winograd`].
    Winograd,
    /// [`direct::conv2d_direct`].
    Direct,
    /// [`pointwise`]: a GEMM on the input itself.
    Pointwise,
    /// [`im2col_gemm`].
    Im2col,
}

/// The kernel that runs `conv` with `out`-shaped outputs.
fn path(conv: &Conv2d, out: Shape) -> Path {
    if winograd::applies(conv, out) {
        Path::Winograd
    } else if direct::prefers_direct(conv) {
        Path::Direct
    } else if conv.kernel == [1, 1] && conv.stride == [1, 1] && conv.padding == [0, 0] {
        Path::Pointwise
    } else {
        Path::Im2col
    }
}

/// Rows per block when `rows` rows (of each of `units` independent units) are cut into
/// blocks: as few blocks as give `units x blocks` two per thread with at most `max_rows` rows
/// each, of equal size but for a shorter last one. (Blocks used to divide `rows` exactly: an
/// odd count such as ReXNet's 61 or 151 channels then went one row per task, each repacking the
/// whole input: 4x slower than one thread on those 1x1 convs.)
fn block_rows(rows: usize, units: usize, max_rows: usize) -> usize {
    let want = 2 * rayon::current_num_threads();
    let blocks = want
        .div_ceil(units.max(1))
        .max(rows.div_ceil(max_rows.max(1)))
        .clamp(1, rows.max(1));
    rows.div_ceil(blocks).max(1)
}

/// Adds the bias to each `hw`-long row of `dst` (rows are channels `c0..`) and activates it.
pub(crate) fn bias_activate(conv: &Conv2d, bias: &[f32], dst: &mut [f32], hw: usize) {
    for (row, &b) in dst.chunks_exact_mut(hw).zip(bias) {
        row.iter_mut().for_each(|v| *v += b);
        activate(row, conv.activation);
    }
}

/// Pixels per tile of a pointwise convolution with `rows` output channels: all of them when
/// the tile fits [`BLOCK_FLOATS`], else tiles of about that size (at least 256 pixels) evened
/// out: of equal length (a multiple of 8), as many as divide evenly among the threads (a 28x28
/// plane of 512 channels: 4 tiles of 200 pixels, not 3 of 256 and one of 16, which left one
/// thread a tile more; 8-15% on ResNeXt-50's and ResNet-50's 28x28 1x1 convs at batch 1).
fn tile_columns(hw: usize, rows: usize) -> usize {
    if rows * hw <= BLOCK_FLOATS {
        return hw.max(1);
    }
    let threads = rayon::current_num_threads();
    let tiles = hw
        .div_ceil((BLOCK_FLOATS / rows.max(1)).max(256))
        .next_multiple_of(threads);
    hw.div_ceil(tiles).next_multiple_of(8)
}

/// A 1x1 stride-1 convolution: per (image, group), `out[cout_g, HW] = W[cout_g, cin_g] · x[cin_g, HW]`,
/// in tiles of output channels x pixels, each tile a single-threaded GEMM then its epilogue.
fn pointwise(
    conv: &Conv2d,
    p: &ConvParams,
    x: &[f32],
    in_shape: Shape,
    out_shape: Shape,
    out: &mut [f32],
    accumulate: bool,
) {
    let g = conv.groups;
    let (cin_g, cout_g) = (conv.in_channels / g, conv.out_channels / g);
    let hw = out_shape.height * out_shape.width;
    let batch = out.len() / out_shape.numel();
    assert_eq!(x.len(), batch * in_shape.numel());
    if g == 1 && batch > 1 && hw < SMALL_PLANE {
        pointwise_batched(conv, p, x, out_shape, out, accumulate);
        return;
    }
    let cols = tile_columns(hw, cout_g);
    let col_tiles = hw.div_ceil(cols);
    let block = block_rows(cout_g, batch * g * col_tiles, cout_g);
    // Row blocks of each group, the last one shorter.
    let group_blocks = cout_g.div_ceil(block);
    let row_tiles = g * group_blocks;
    let shared = SharedOut::new(out);
    (0..batch * row_tiles * col_tiles)
        .into_par_iter()
        .for_each(|t| {
            let (n, rt, ct) = (
                t / (row_tiles * col_tiles),
                t / col_tiles % row_tiles,
                t % col_tiles,
            );
            let (gi, rb) = (rt / group_blocks, rt % group_blocks);
            let rows = block.min(cout_g - rb * block);
            let (oc0, c0) = (gi * cout_g + rb * block, ct * cols);
            let width = cols.min(hw - c0);
            let xn = &x[n * in_shape.numel()..(n + 1) * in_shape.numel()];
            let rhs = &xn[gi * cin_g * hw + c0..(gi + 1) * cin_g * hw];
            let tile = Tile {
                oc0,
                rows,
                start: n * out_shape.numel() + oc0 * hw + c0,
                width,
                stride: hw,
            };
            // SAFETY: task t alone touches rows oc0..oc0 + rows, columns c0..c0 + width of
            // image n, and nothing else touches `out` during the loop.
            unsafe { gemm_tile(conv, p, cin_g, rhs, hw, shared, tile, accumulate) };
        });
}

/// Where one task's GEMM tile lies in a shared NCHW output: output channels `oc0..oc0 + rows`,
/// `width` pixels each, the first channel's from float `start`, channels `stride` floats apart.
#[derive(Clone, Copy)]
struct Tile {
    oc0: usize,
    rows: usize,
    start: usize,
    width: usize,
    stride: usize,
}

/// `tile = W[oc0..oc0 + rows, ..k] · rhs` (`rhs`: `k` rows of the tile's width, `rhs_rs` apart),
/// added to what the tile holds when `accumulate` (a residual), then bias and activation.
///
/// # Safety
/// No other task may access the tile's floats during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_tile(
    conv: &Conv2d,
    p: &ConvParams,
    k: usize,
    rhs: &[f32],
    rhs_rs: usize,
    out: SharedOut,
    t: Tile,
    accumulate: bool,
) {
    let w = &p.weight[t.oc0 * k..(t.oc0 + t.rows) * k];
    // In bounds: `at` checks; exclusive: the caller's contract.
    let dst = out.at(t.start, (t.rows - 1) * t.stride + t.width);
    // SAFETY: see above.
    unsafe {
        sgemm_raw(
            t.rows, t.width, k, w, k, rhs, rhs_rs, dst, t.stride, accumulate,
        )
    };
    for (r, &b) in p.bias[t.oc0..t.oc0 + t.rows].iter().enumerate() {
        // SAFETY: row r of the tile; see above.
        let row = unsafe { out.slice(t.start + r * t.stride, t.width) };
        row.iter_mut().for_each(|v| *v += b);
        activate(row, conv.activation);
    }
}

/// A 1x1 stride-1 convolution without groups on a batch of small planes, as one GEMM over
/// all images (`[Cout, Cin] x [Cin, N*HW]`): the `gemm` crate repacks the weights on every
/// call, which costs as much as the arithmetic when a call covers only a few dozen pixels.
/// The images' planes are gathered side by side first; each tile's epilogue scatters its
/// sums back to NCHW.
fn pointwise_batched(
    conv: &Conv2d,
    p: &ConvParams,
    x: &[f32],
    out_shape: Shape,
    out: &mut [f32],
    accumulate: bool,
) {
    let k = conv.in_channels;
    let hw = out_shape.height * out_shape.width;
    let batch = out.len() / out_shape.numel();
    let total = batch * hw;
    assert_eq!(x.len(), batch * k * hw);
    with_reused(&GATHERED, k * total, |xs| {
        batched_gemm(conv, p, x, out_shape, out, accumulate, xs)
    })
}

/// [`pointwise_batched`] with a buffer for the gathered inputs (`k x N·HW` floats).
fn batched_gemm(
    conv: &Conv2d,
    p: &ConvParams,
    x: &[f32],
    out_shape: Shape,
    out: &mut [f32],
    accumulate: bool,
    xs: &mut [f32],
) {
    let (k, m) = (conv.in_channels, conv.out_channels);
    let hw = out_shape.height * out_shape.width;
    let total = out.len() / out_shape.numel() * hw;
    xs.par_chunks_mut(total)
        .enumerate()
        .with_min_len((BLOCK_FLOATS / total).max(1))
        .for_each(|(c, row)| {
            for (n, dst) in row.chunks_exact_mut(hw).enumerate() {
                dst.copy_from_slice(&x[(n * k + c) * hw..(n * k + c + 1) * hw]);
            }
        });
    let cols = tile_columns(total, m);
    let col_tiles = total.div_ceil(cols);
    let block = block_rows(m, col_tiles, m);
    let shared = SharedOut::new(out);
    let epilogue = Epilogue {
        activation: conv.activation,
        residual: accumulate,
    };
    let xs = &*xs;
    (0..m.div_ceil(block) * col_tiles)
        .into_par_iter()
        .for_each(|t| {
            let (oc0, c0) = (t / col_tiles * block, t % col_tiles * cols);
            let rows = block.min(m - oc0);
            let width = cols.min(total - c0);
            with_reused(&TILE, rows * width, |tile| {
                let w = &p.weight[oc0 * k..(oc0 + rows) * k];
                sgemm(rows, width, k, w, k, &xs[c0..], total, tile, width, false);
                for (r, sums) in tile.chunks_exact(width).enumerate() {
                    let oc = oc0 + r;
                    let mut j = c0;
                    while j < c0 + width {
                        let (n, px) = (j / hw, j % hw);
                        let len = (hw - px).min(c0 + width - j);
                        let start = n * out_shape.numel() + oc * hw + px;
                        // SAFETY: this task alone writes output channels
                        // oc0..oc0 + rows at columns c0..c0 + width (image n, pixels px..px + len
                        // here), and nothing else touches `out` during the loop.
                        let dst = unsafe { shared.slice(start, len) };
                        finish_row(dst, &sums[j - c0..j - c0 + len], p.bias[oc], epilogue);
                        j += len;
                    }
                }
            })
        });
}

/// Any convolution: im2col then a GEMM per (image, group). With enough (image, group) pairs
/// each is one task; otherwise each pair's GEMM is split into blocks of output channels.
fn im2col_gemm(
    conv: &Conv2d,
    p: &ConvParams,
    x: &[f32],
    in_shape: Shape,
    out_shape: Shape,
    out: &mut [f32],
    accumulate: bool,
) {
    let g = conv.groups;
    let (cin_g, cout_g) = (conv.in_channels / g, conv.out_channels / g);
    let k = cin_g * conv.kernel[0] * conv.kernel[1];
    let hw = out_shape.height * out_shape.width;
    let batch = out.len() / out_shape.numel();
    let in_len = in_shape.numel();
    let group = |idx: usize, col: &mut Vec<f32>, parallel: bool| {
        let (n, gi) = (idx / g, idx % g);
        let image = &x[n * in_len..(n + 1) * in_len];
        im2col(
            conv,
            image,
            in_shape,
            gi * cin_g,
            cin_g,
            out_shape,
            col,
            parallel,
        );
    };
    if batch * g >= 2 * rayon::current_num_threads() {
        out.par_chunks_mut(cout_g * hw)
            .enumerate()
            .for_each_init(Vec::new, |col, (idx, dst)| {
                group(idx, col, false);
                let gi = idx % g;
                let w = &p.weight[gi * cout_g * k..(gi + 1) * cout_g * k];
                sgemm(cout_g, hw, k, w, k, col, hw, dst, hw, accumulate);
                bias_activate(conv, &p.bias[gi * cout_g..(gi + 1) * cout_g], dst, hw);
            });
        return;
    }
    if hw >= cout_g {
        im2col_bands(conv, p, x, in_shape, out_shape, out, accumulate);
        return;
    }
    let rows = block_rows(cout_g, 1, (BLOCK_FLOATS / hw.max(1)).max(8));
    let mut col = Vec::new();
    for (idx, dst) in out.chunks_mut(cout_g * hw).enumerate() {
        group(idx, &mut col, true);
        let gi = idx % g;
        dst.par_chunks_mut(rows * hw)
            .enumerate()
            .for_each(|(b, dst)| {
                let oc0 = gi * cout_g + b * rows;
                let rows = dst.len() / hw.max(1);
                let w = &p.weight[oc0 * k..(oc0 + rows) * k];
                sgemm(rows, hw, k, w, k, &col, hw, dst, hw, accumulate);
                bias_activate(conv, &p.bias[oc0..oc0 + rows], dst, hw);
            });
    }
}

/// [`im2col_gemm`] for few (image, group) pairs whose planes hold more pixels than their
/// groups have output channels (strided and dilated convs at batch 1): tasks are bands of
/// output rows, each unfolding only its band (a few dozen KiB, in cache) and multiplying it by
/// all of its group's weights. Split into blocks of output channels instead, every block's GEMM
/// packed the whole plane's im2col matrix again (ResNet-50's layer2.0.conv2 at batch 1:
/// 3.5 MiB, 4 times).
fn im2col_bands(
    conv: &Conv2d,
    p: &ConvParams,
    x: &[f32],
    s: Shape,
    o: Shape,
    out: &mut [f32],
    accumulate: bool,
) {
    let g = conv.groups;
    let (cin_g, cout_g) = (conv.in_channels / g, conv.out_channels / g);
    let taps = conv.kernel[0] * conv.kernel[1];
    let k = cin_g * taps;
    let (ho, wo, hw) = (o.height, o.width, o.height * o.width);
    let pairs = out.len() / hw.max(1) / cout_g.max(1);
    // Rows per band: the band's im2col matrix within the block budget, and bands enough for
    // two tasks per thread.
    let per_pair = (2 * rayon::current_num_threads()).div_ceil(pairs.max(1));
    let band = (BLOCK_FLOATS / (k * wo).max(1))
        .min(ho.div_ceil(per_pair))
        .max(1);
    let bands = ho.div_ceil(band);
    let shared = SharedOut::new(out);
    (0..pairs * bands)
        .into_par_iter()
        .for_each_init(Vec::new, |col, t| {
            let (idx, b) = (t / bands, t % bands);
            let (n, gi) = (idx / g, idx % g);
            let oys = b * band..((b + 1) * band).min(ho);
            let len = oys.len() * wo;
            col.clear();
            col.resize(k * len, 0.0);
            for (c, rows) in col.chunks_exact_mut(taps * len).enumerate() {
                let plane = (n * conv.in_channels + gi * cin_g + c) * s.height * s.width;
                let plane = &x[plane..plane + s.height * s.width];
                unfold_channel(conv, plane, s, o, oys.clone(), rows);
            }
            let oc0 = gi * cout_g;
            let tile = Tile {
                oc0,
                rows: cout_g,
                start: (n * conv.out_channels + oc0) * hw + oys.start * wo,
                width: len,
                stride: hw,
            };
            // SAFETY: task t alone writes output rows oys of channels oc0..oc0 + cout_g of
            // image n, and nothing else touches `out` during the loop.
            unsafe { gemm_tile(conv, p, k, col, len, shared, tile, accumulate) };
        });
}

/// Unfolds the channels `c0..c0 + cin` of one image `x` (`[C, H, W]`) into `col`
/// (`[cin·kh·kw, Ho·Wo]`, row-major), zero where the kernel falls into the padding; one
/// parallel task per channel when `parallel` (a lone (image, group) whose GEMM is split over
/// the threads anyway).
#[allow(clippy::too_many_arguments)]
fn im2col(
    conv: &Conv2d,
    x: &[f32],
    s: Shape,
    c0: usize,
    cin: usize,
    o: Shape,
    col: &mut Vec<f32>,
    parallel: bool,
) {
    let [kh, kw] = conv.kernel;
    let per_channel = kh * kw * o.height * o.width;
    col.clear();
    col.resize(cin * per_channel, 0.0);
    let plane = |c: usize| &x[(c0 + c) * s.height * s.width..(c0 + c + 1) * s.height * s.width];
    if parallel {
        col.par_chunks_mut(per_channel.max(1))
            .enumerate()
            .for_each(|(c, rows)| unfold_channel(conv, plane(c), s, o, 0..o.height, rows));
    } else {
        for (c, rows) in col.chunks_mut(per_channel.max(1)).enumerate() {
            unfold_channel(conv, plane(c), s, o, 0..o.height, rows);
        }
    }
}

/// One input channel's rows of the im2col matrix for the output rows `oys`: `rows`
/// (`[kh·kw, |oys|·Wo]`, zeroed) gets the plane's value under each kernel tap at each of
/// those output pixels.
fn unfold_channel(
    conv: &Conv2d,
    plane: &[f32],
    s: Shape,
    o: Shape,
    oys: Range<usize>,
    rows: &mut [f32],
) {
    let [kh, kw] = conv.kernel;
    let wo = o.width;
    let len = oys.len() * wo;
    let [sy, sx] = conv.stride.map(|v| v as isize);
    let [py, px] = conv.padding.map(|v| v as isize);
    let [dy, dx] = conv.dilation.map(|v| v as isize);
    for ky in 0..kh {
        for kx in 0..kw {
            let row = (ky * kw + kx) * len;
            let dst = &mut rows[row..row + len];
            for (r, oy) in oys.clone().enumerate() {
                let iy = oy as isize * sy - py + ky as isize * dy;
                if iy < 0 || iy >= s.height as isize {
                    continue;
                }
                let src = &plane[iy as usize * s.width..(iy as usize + 1) * s.width];
                let d = &mut dst[r * wo..(r + 1) * wo];
                for (ox, v) in d.iter_mut().enumerate() {
                    let ix = ox as isize * sx - px + kx as isize * dx;
                    if ix >= 0 && ix < s.width as isize {
                        *v = src[ix as usize];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::reference::{naive_conv, random_case};
    use crate::plan::Activation;

    /// Every path of `conv2d` (direct, pointwise GEMM, im2col GEMM: one task per group, blocks
    /// of one group's output channels or bands of its output rows) against the naive
    /// convolution.
    #[test]
    fn conv2d_matches_naive_on_random_shapes() {
        use Path::*;
        let cases = [
            // (path, cin, cout, groups, k, stride, pad, h, w)
            (Pointwise, 40, 48, 1, [1, 1], 1, 0, 9, 11),
            (Pointwise, 64, 96, 2, [1, 1], 1, 0, 5, 3),
            // small planes, batched over the images
            (Pointwise, 24, 40, 1, [1, 1], 1, 0, 7, 7),
            (Pointwise, 300, 70, 1, [1, 1], 1, 0, 14, 13),
            (Pointwise, 16, 200, 1, [1, 1], 1, 0, 15, 15),
            // several pixel tiles per image
            (Pointwise, 16, 48, 1, [1, 1], 1, 0, 41, 39),
            (Pointwise, 12, 72, 2, [1, 1], 1, 0, 40, 50),
            (Im2col, 40, 48, 1, [1, 1], 2, 0, 9, 11),
            (Im2col, 16, 80, 1, [3, 3], 1, 1, 13, 7),
            // bands of output rows (planes larger than the groups' output channels)
            (Im2col, 40, 72, 1, [1, 1], 2, 0, 31, 29),
            (Im2col, 160, 160, 2, [3, 3], 2, 1, 21, 20),
            // Winograd: odd and even sizes, no padding and wide padding, several tile blocks,
            // output channels split over the threads
            (Winograd, 96, 112, 1, [3, 3], 1, 1, 15, 14),
            (Winograd, 128, 96, 1, [3, 3], 1, 0, 16, 19),
            (Winograd, 96, 128, 1, [3, 3], 1, 2, 13, 12),
            (Winograd, 96, 96, 1, [3, 3], 1, 1, 29, 22),
            (Winograd, 64, 64, 1, [3, 3], 1, 1, 7, 8),
            // too small a plane for it
            (Im2col, 128, 256, 1, [3, 3], 1, 1, 5, 6),
            (Im2col, 64, 144, 2, [3, 3], 2, 1, 8, 9),
            (Im2col, 40, 72, 1, [5, 3], 2, 2, 6, 10),
            (Direct, 48, 48, 6, [3, 3], 2, 1, 15, 15),
            (Direct, 12, 12, 3, [1, 1], 1, 0, 5, 7),
            (Direct, 3, 32, 1, [3, 3], 2, 1, 17, 16),
            (Direct, 20, 20, 20, [3, 3], 1, 1, 6, 5),
        ];
        for (i, &(want_path, cin, cout, groups, kernel, stride, pad, h, w)) in
            cases.iter().enumerate()
        {
            for (act, residual) in [
                (Activation::Relu, false),
                (Activation::Relu, true),
                (Activation::Identity, false),
                (Activation::Sigmoid, true),
                (Activation::Relu6, true),
                (Activation::Silu, false),
            ] {
                for batch in [1, 2, 5] {
                    let case = random_case(
                        i as u64 + 50,
                        cin,
                        cout,
                        groups,
                        kernel,
                        stride,
                        pad,
                        h,
                        w,
                        act,
                        residual,
                    );
                    assert_eq!(path(&case.conv, case.out_shape), want_path, "case {i}");
                    let out = case.initial_output(batch);
                    let packed = prepare(&case.conv, &case.params, case.out_shape);
                    for packed in [None, packed.as_ref()] {
                        let layer = ConvLayer {
                            conv: &case.conv,
                            params: &case.params,
                            packed,
                            in_shape: case.in_shape,
                            out_shape: case.out_shape,
                        };
                        let mut out = out.clone();
                        conv2d(&layer, &case.input(batch), &mut out, residual);
                        let want = naive_conv(&case, batch);
                        case.assert_close(&out, &want, &format!("case {i} {act:?} batch {batch}"));
                    }
                }
            }
        }
    }

    #[test]
    fn tile_columns_cover_the_plane() {
        for (hw, rows) in [
            (49, 440),
            (12544, 48),
            (1599, 48),
            (3136, 104),
            (1, 1),
            (100_000, 1),
        ] {
            let cols = tile_columns(hw, rows);
            assert!(
                cols >= 1 && (cols == hw || cols.is_multiple_of(8)),
                "{hw} {rows}: {cols}"
            );
            assert!(rows * cols <= BLOCK_FLOATS.max(rows * 256) || cols == hw);
        }
        assert!(hw_tiles(1599, 48) >= 2);
        // A 28x28 plane of 512 channels: tiles of even length, as many per thread.
        let threads = rayon::current_num_threads();
        assert!(hw_tiles(784, 512).is_multiple_of(threads));
        assert!(784 - (hw_tiles(784, 512) - 1) * tile_columns(784, 512) >= 784 / 8);
    }

    fn hw_tiles(hw: usize, rows: usize) -> usize {
        hw.div_ceil(tile_columns(hw, rows))
    }

    #[test]
    fn block_rows_are_even_and_fit() {
        let want = 2 * rayon::current_num_threads();
        for (rows, units, max) in [
            (48, 1, 100),
            (440, 1, 1000),
            (13, 1, 4),
            (8, 64, 8),
            (7, 1, 1),
            (61, 1, 61),
            (106, 1, 106),
        ] {
            let d = block_rows(rows, units, max);
            let blocks = rows.div_ceil(d);
            assert!(d >= 1 && d <= max, "{rows} {units} {max}: {d}");
            // Enough blocks for the threads where the rows allow, and no more than needed.
            assert!(
                units * blocks >= want.min(units * rows),
                "{rows} {units} {max}: {d}"
            );
            assert!(
                d == max || blocks <= want.div_ceil(units),
                "{rows} {units} {max}: {d}"
            );
        }
        assert_eq!(block_rows(8, 64, 8), 8);
        assert_eq!(block_rows(7, 1, 1), 1);
    }
}
