//! Winograd's minimal filtering F(2x2, 3x3) for dense 3x3 stride-1 convolutions (ResNet's,
//! Wide ResNet's): 16 multiplies per 2x2 output tile and input channel instead of 36, so 2.25x
//! fewer multiply-adds, at the cost of transforming inputs, weights and outputs
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! With `d` a 4x4 input tile (zero outside the image) and `g` a 3x3 kernel, the 2x2 outputs are
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. The weights are transformed once, at load, into
//! `U[ξ][o][c]` (ξ the 16 positions of the 4x4 transform). Per block of tiles: the inputs into
//! `V[ξ][c][t]`, then 16 GEMMs `M[ξ] = U[ξ] · V[ξ]` (the `gemm` crate, like every other
//! convolution here), then each output tile from its 16 sums, with bias, residual and activation.
//! Every coefficient is 0, ±1 or ±1/2, so the transforms are exact but for the usual rounding of
//! sums; the results stay within the float32 tolerance of the other paths (tested against the
//! naive convolution and torchvision's ResNets).
//!
//! Tasks are (block of tiles, block of output channels), the tiles of every image of the batch
//! numbered in turn, so that small planes (7x7: 16 tiles) still make GEMMs of a few hundred
//! columns; enough tasks for every thread, each transforming its tiles' inputs once for all
//! its output channels.

use std::cell::RefCell;

use rayon::prelude::*;

use super::conv::sgemm;
use super::shared::SharedOut;
use crate::plan::{Conv2d, Shape};

/// Positions of the 4x4 transform.
const XI: usize = 16;
/// Most floats of one task's transformed inputs plus sums (`16 x (cin + cout_block) x tiles`,
/// 4 MiB): enough tiles for GEMMs of a few hundred columns, still in the last-level cache.
const BLOCK_FLOATS: usize = 1024 * 1024;
/// Fewest tiles per block (the GEMMs' columns) when the budget allows fewer.
const MIN_TILES: usize = 64;

/// Whether `conv` runs through Winograd F(2x2, 3x3) on `out`-shaped outputs: [`suits`] it, on
/// planes of 14x14 or more (a 7x7 plane computes 8x8 outputs in 16 tiles).
pub(crate) fn applies(conv: &Conv2d, out: Shape) -> bool {
    suits(conv) && out.height >= 14 && out.width >= 14
}

/// Whether `conv` is a dense 3x3 stride-1 undilated kernel wide enough (in and out) for the 16
/// GEMMs to be worth their transforms, whose cost grows with the channels in and out, the
/// GEMMs' with their product. Measured on ResNet-18 (BENCHMARKS.md): ahead at 128 and 256
/// channels on 28x28 and 14x14 planes, behind at 64 channels on 56x56 and at 512 on 7x7.
pub(crate) fn suits(conv: &Conv2d) -> bool {
    conv.kernel == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.in_channels >= 96
        && conv.out_channels >= 96
}

/// The weights (`[cout][cin][3][3]`) transformed: `U[ξ][o][c] = (G g[o][c] Gᵀ)[ξ]`, with
/// `G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]`.
pub(crate) fn transform_weights(conv: &Conv2d, weight: &[f32]) -> Vec<f32> {
    let (cin, cout) = (conv.in_channels, conv.out_channels);
    assert_eq!(weight.len(), cout * cin * 9);
    let mut u = vec![0.0; XI * cout * cin];
    for (oc_ic, g) in weight.chunks_exact(9).enumerate() {
        // G g: 4x3, then (G g) Gᵀ: 4x4.
        let mut gg = [[0.0f32; 3]; 4];
        for j in 0..3 {
            let (a, b, c) = (g[j], g[3 + j], g[6 + j]);
            gg[0][j] = a;
            gg[1][j] = 0.5 * (a + b + c);
            gg[2][j] = 0.5 * (a - b + c);
            gg[3][j] = c;
        }
        for (i, row) in gg.iter().enumerate() {
            let [a, b, c] = *row;
            let t = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
            for (j, v) in t.into_iter().enumerate() {
                u[(i * 4 + j) * cout * cin + oc_ic] = v;
            }
        }
    }
    u
}

/// Per-thread buffers, reused across tasks and calls.
#[derive(Default)]
struct Scratch {
    /// One block's transformed inputs: `[16][cin][tiles]`.
    v: Vec<f32>,
    /// One block's sums: `[16][cout_block][tiles]`.
    m: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// How one convolution is cut into tasks.
#[derive(Clone, Copy, Debug)]
struct Blocks {
    /// 2x2 output tiles per row of the output, and per image.
    tiles_x: usize,
    tiles: usize,
    /// Tiles of the whole batch.
    total: usize,
    /// Tiles per block, and blocks.
    tile_block: usize,
    tile_blocks: usize,
    /// Output channels per block, and blocks.
    oc_block: usize,
    oc_blocks: usize,
}

impl Blocks {
    fn new(cin: usize, cout: usize, out: Shape, batch: usize) -> Blocks {
        let tiles_x = out.width.div_ceil(2);
        let tiles = tiles_x * out.height.div_ceil(2);
        let total = batch * tiles;
        let want = 2 * rayon::current_num_threads();
        // As many tiles as fit the scratch budget with every output channel (at least
        // MIN_TILES), evened out over the blocks; then output channels split while there are
        // too few tasks.
        let tile_block = (BLOCK_FLOATS / (XI * (cin + cout)))
            .max(MIN_TILES)
            .min(total.max(1));
        let tile_blocks = total.div_ceil(tile_block).max(1);
        let tile_block = total.div_ceil(tile_blocks);
        let mut oc_blocks = 1;
        while tile_blocks * oc_blocks < want && cout / (2 * oc_blocks) >= 32 {
            oc_blocks *= 2;
        }
        Blocks {
            tiles_x,
            tiles,
            total,
            tile_block,
            tile_blocks,
            oc_block: cout.div_ceil(oc_blocks),
            oc_blocks,
        }
    }
}

/// Runs a convolution that [`applies`] over a batch: `x` is `[N, Cin, H, W]`, `out` is
/// `[N, Cout, Ho, Wo]`, `u` the weights [`transform_weights`] made. With `residual`, `out`
/// holds the residual on entry, added before the activation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_winograd(
    conv: &Conv2d,
    u: &[f32],
    bias: &[f32],
    x: &[f32],
    in_shape: Shape,
    out_shape: Shape,
    out: &mut [f32],
    residual: bool,
) {
    let (cin, cout) = (conv.in_channels, conv.out_channels);
    let batch = x.len() / in_shape.numel();
    assert_eq!(x.len(), batch * in_shape.numel());
    assert_eq!(out.len(), batch * out_shape.numel());
    assert_eq!(u.len(), XI * cout * cin);
    let blocks = Blocks::new(cin, cout, out_shape, batch);
    let out = SharedOut::new(out);
    let tasks = blocks.tile_blocks * blocks.oc_blocks;
    (0..tasks).into_par_iter().for_each(|task| {
        let (ob, tb) = (task % blocks.oc_blocks, task / blocks.oc_blocks);
        let t0 = tb * blocks.tile_block;
        let tiles = t0..(t0 + blocks.tile_block).min(blocks.total);
        let oc0 = ob * blocks.oc_block;
        let ocs = oc0..(oc0 + blocks.oc_block).min(cout);
        SCRATCH.with_borrow_mut(|s| {
            let nt = tiles.len();
            s.v.resize(XI * cin * nt, 0.0);
            s.m.resize(XI * ocs.len() * nt, 0.0);
            transform_inputs(conv, x, in_shape, &blocks, tiles.clone(), &mut s.v);
            for xi in 0..XI {
                let lhs = &u[(xi * cout + ocs.start) * cin..(xi * cout + ocs.end) * cin];
                let rhs = &s.v[xi * cin * nt..(xi + 1) * cin * nt];
                let dst = &mut s.m[xi * ocs.len() * nt..(xi + 1) * ocs.len() * nt];
                sgemm(ocs.len(), nt, cin, lhs, cin, rhs, nt, dst, nt, false);
            }
            let store = Store {
                conv,
                bias,
                out,
                shape: out_shape,
                residual,
            };
            transform_outputs(&s.m, &blocks, tiles, ocs, &store);
        });
    });
}

/// `V[ξ][c][t] = (Bᵀ d B)[ξ]` for each input channel `c` and tile `t` of `tiles` (numbered over
/// the batch `x`; `d` the tile's 4x4 input, zero outside the image), with
/// `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
fn transform_inputs(
    conv: &Conv2d,
    x: &[f32],
    s: Shape,
    blocks: &Blocks,
    tiles: std::ops::Range<usize>,
    v: &mut [f32],
) {
    let (cin, nt) = (conv.in_channels, tiles.len());
    let [py, px] = conv.padding;
    let plane_len = s.height * s.width;
    for c in 0..cin {
        for (k, t) in tiles.clone().enumerate() {
            let (n, t) = (t / blocks.tiles, t % blocks.tiles);
            let plane = &x[(n * cin + c) * plane_len..(n * cin + c + 1) * plane_len];
            let (ty, tx) = (t / blocks.tiles_x, t % blocks.tiles_x);
            // The tile's 4x4 input, zero in the padding.
            let mut d = [[0.0f32; 4]; 4];
            for (i, row) in d.iter_mut().enumerate() {
                let iy = (2 * ty + i).wrapping_sub(py);
                if iy >= s.height {
                    continue;
                }
                let src = &plane[iy * s.width..(iy + 1) * s.width];
                for (j, e) in row.iter_mut().enumerate() {
                    let ix = (2 * tx + j).wrapping_sub(px);
                    if ix < s.width {
                        *e = src[ix];
                    }
                }
            }
            // Bᵀ d (rows), then (Bᵀ d) B (columns).
            let mut w = [[0.0f32; 4]; 4];
            for j in 0..4 {
                w[0][j] = d[0][j] - d[2][j];
                w[1][j] = d[1][j] + d[2][j];
                w[2][j] = d[2][j] - d[1][j];
                w[3][j] = d[1][j] - d[3][j];
            }
            for (i, r) in w.iter().enumerate() {
                let t4 = [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]];
                for (j, val) in t4.into_iter().enumerate() {
                    v[((i * 4 + j) * cin + c) * nt + k] = val;
                }
            }
        }
    }
}

/// Where a task's output tiles go.
struct Store<'a, 'o> {
    conv: &'a Conv2d,
    bias: &'a [f32],
    out: SharedOut<'o>,
    /// One image's output shape.
    shape: Shape,
    residual: bool,
}

/// Each output channel of `ocs` and tile of `tiles` (numbered over the batch): `Y = Aᵀ M A`
/// from its 16 sums, with `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`, then bias (+ residual) and
/// activation, stored (the parts of edge tiles past the output are dropped).
fn transform_outputs(
    m: &[f32],
    blocks: &Blocks,
    tiles: std::ops::Range<usize>,
    ocs: std::ops::Range<usize>,
    st: &Store,
) {
    let (nt, no) = (tiles.len(), ocs.len());
    let (ho, wo) = (st.shape.height, st.shape.width);
    let plane = ho * wo;
    let act = st.conv.activation;
    for (r, oc) in ocs.clone().enumerate() {
        let b = st.bias[oc];
        for (k, t) in tiles.clone().enumerate() {
            let (n, t) = (t / blocks.tiles, t % blocks.tiles);
            // This task alone writes channel oc's pixels of these tiles (tasks have disjoint
            // tiles or channels; other tasks' tiles may share a row, so no slice spans the
            // plane), and nothing else touches `out` during the loop. `at` checks the bounds.
            let dst = st.out.at((n * st.conv.out_channels + oc) * plane, plane);
            let mm = |xi: usize| m[(xi * no + r) * nt + k];
            // Aᵀ M (rows), then (Aᵀ M) A (columns).
            let z: [[f32; 4]; 2] = [
                std::array::from_fn(|j| mm(j) + mm(4 + j) + mm(8 + j)),
                std::array::from_fn(|j| mm(4 + j) - mm(8 + j) - mm(12 + j)),
            ];
            let (ty, tx) = (t / blocks.tiles_x, t % blocks.tiles_x);
            for (i, zr) in z.iter().enumerate() {
                let oy = 2 * ty + i;
                if oy >= ho {
                    continue;
                }
                let y = [zr[0] + zr[1] + zr[2], zr[1] - zr[2] - zr[3]];
                for (j, val) in y.into_iter().enumerate() {
                    let ox = 2 * tx + j;
                    if ox < wo {
                        // SAFETY: inside the plane (oy < ho, ox < wo); this task's pixel.
                        let o = unsafe { &mut *dst.add(oy * wo + ox) };
                        let sum = if st.residual { *o + val + b } else { val + b };
                        *o = act.apply(sum);
                    }
                }
            }
        }
    }
}
