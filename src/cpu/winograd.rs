//! Winograd's minimal filtering F(2x2, 3x3) for dense 3x3 stride-1 convolutions (ResNet's,
//! Wide ResNet's): 16 multiplies per 2x2 output tile and input channel instead of 36, so 2.25x
//! fewer multiply-adds, at the cost of transforming inputs, weights and outputs
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! With `d` a 4x4 input tile (zero outside the image) and `g` a 3x3 kernel, the 2x2 outputs are
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. The weights are transformed once, at load, into
//! `U[ξ][o][c]` (ξ the 16 positions of the 4x4 transform). Per block of tiles: the inputs into
//! `V[c][ξ][t]`, then 16 GEMMs `M[ξ] = U[ξ] · V[ξ]` (the `gemm` crate, like every other
//! convolution here), then each output tile from its 16 sums, with bias, residual and activation.
//! Every coefficient is 0, ±1 or ±1/2, so the transforms are exact but for the usual rounding of
//! sums; the results stay within the float32 tolerance of the other paths (tested against the
//! naive convolution and torchvision's ResNets).
//!
//! Tasks are (block of tiles, block of output channels), the tiles of every image of the batch
//! numbered in turn, so that small planes (7x7: 16 tiles) still make GEMMs of a few hundred
//! columns; enough tasks for every thread. A task with all output channels transforms its
//! tiles' inputs itself; where blocks of tiles alone are too few (small planes at batch 1) and
//! output channels are split too, the inputs are transformed once beforehand and shared.

use std::cell::{Cell, RefCell};

use rayon::prelude::*;

use super::conv::sgemm;
use super::ops::activate;
use super::shared::{with_reused, SharedOut};
use crate::plan::{Conv2d, Shape};

/// Positions of the 4x4 transform.
const XI: usize = 16;
/// Most floats of one task's transformed inputs plus sums (`16 x (cin + cout_block) x tiles`,
/// 4 MiB): enough tiles for GEMMs of a few hundred columns, still in the last-level cache.
const BLOCK_FLOATS: usize = 1024 * 1024;
/// Fewest tiles per block (the GEMMs' columns) when the budget allows fewer.
const MIN_TILES: usize = 64;

/// Whether `conv` runs through Winograd F(2x2, 3x3) on `out`-shaped outputs: [`suits`] it, on
/// planes of 7x7 or more (smaller ones waste much of their edge tiles: a 7x7 plane already
/// computes 8x8 outputs).
pub(crate) fn applies(conv: &Conv2d, out: Shape) -> bool {
    suits(conv) && out.height >= 7 && out.width >= 7
}

/// Whether `conv` is a dense 3x3 stride-1 undilated kernel wide enough (in and out) for the 16
/// GEMMs to be worth their transforms, whose cost grows with the channels in and out, the
/// GEMMs' with their product: 64 channels or more, ResNet's every stage. Measured on ResNet-18
/// and ResNet-50 against the direct kernel and im2col (BENCHMARKS.md): faster at batch 8, even
/// at batch 1.
pub(crate) fn suits(conv: &Conv2d) -> bool {
    conv.kernel == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.in_channels >= 64
        && conv.out_channels >= 64
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
    /// One block's transformed inputs: `[cin][16][tiles]`.
    v: Vec<f32>,
    /// One block's sums: `[16][cout_block][tiles]`.
    m: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    /// The inputs transformed before a convolution's tasks, kept for the next one (taken
    /// while in use: a call that finds it taken, nested in another's wait, makes its own).
    static STAGED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
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
        // As many tiles as fit the scratch budget with every output channel, in blocks enough
        // for two per thread while they keep MIN_TILES each (else output channels are split
        // below), evened out.
        let budget = (BLOCK_FLOATS / (XI * (cin + cout))).max(MIN_TILES);
        let tile_blocks = total
            .div_ceil(budget)
            .max(want.min(total / MIN_TILES))
            .max(1);
        let tile_block = total.div_ceil(tile_blocks).max(1);
        // Rounding up the block can leave the last blocks empty: count only those with tiles.
        let tile_blocks = total.div_ceil(tile_block).max(1);
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
///
/// When every block of tiles takes all output channels, each task transforms its own tiles'
/// inputs (they stay in its cache for the GEMMs). When there are too few tiles for that to
/// give every thread work (small planes, batch 1), output channels are split too, and the
/// inputs are transformed once beforehand, in parallel over channels, for all the tasks that
/// share them (each task transforming them again cost a fifth of ResNet-50's time at batch 1).
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
    let store = Store {
        conv,
        bias,
        out: SharedOut::new(out),
        shape: out_shape,
        residual,
    };
    let tile_range = |tb: usize| {
        let t0 = tb * blocks.tile_block;
        t0..(t0 + blocks.tile_block).min(blocks.total)
    };
    if blocks.oc_blocks == 1 {
        (0..blocks.tile_blocks).into_par_iter().for_each(|tb| {
            SCRATCH.with_borrow_mut(|s| {
                let tiles = tile_range(tb);
                s.v.resize(XI * cin * tiles.len(), 0.0);
                transform_inputs(conv, x, in_shape, &blocks, tiles.clone(), 0, &mut s.v);
                multiply_and_store(u, &s.v, &mut s.m, &blocks, tiles, 0..cout, &store);
            })
        });
        return;
    }
    // The transformed inputs of every block of tiles, in turn, each `[cin][16][its tiles]`.
    let per_block = XI * cin * blocks.tile_block;
    let chunk = cin.div_ceil(2 * rayon::current_num_threads()).max(1);
    with_reused(&STAGED, blocks.tile_blocks * per_block, |v| {
        v.par_chunks_mut(per_block)
            .enumerate()
            .flat_map(|(tb, vb)| {
                let nt = tile_range(tb).len();
                vb[..XI * cin * nt]
                    .par_chunks_mut(XI * nt * chunk)
                    .enumerate()
                    .map(move |(k, vc)| (tb, k * chunk, vc))
            })
            .for_each(|(tb, c0, vc)| {
                transform_inputs(conv, x, in_shape, &blocks, tile_range(tb), c0, vc)
            });
        let oc_range = |ob: usize| {
            let oc0 = ob * blocks.oc_block;
            oc0..(oc0 + blocks.oc_block).min(cout)
        };
        (0..blocks.tile_blocks * blocks.oc_blocks)
            .into_par_iter()
            .for_each(|task| {
                let (ob, tb) = (task % blocks.oc_blocks, task / blocks.oc_blocks);
                let tiles = tile_range(tb);
                let vb = &v[tb * per_block..][..XI * cin * tiles.len()];
                SCRATCH.with_borrow_mut(|s| {
                    multiply_and_store(u, vb, &mut s.m, &blocks, tiles, oc_range(ob), &store)
                });
            });
    })
}

/// The 16 GEMMs `M[ξ] = U[ξ] · V[ξ]` of one block of tiles `tiles` (inputs `v`, transformed by
/// [`transform_inputs`]) and output channels `ocs`, into `m`, then the outputs.
fn multiply_and_store(
    u: &[f32],
    v: &[f32],
    m: &mut Vec<f32>,
    blocks: &Blocks,
    tiles: std::ops::Range<usize>,
    ocs: std::ops::Range<usize>,
    store: &Store,
) {
    let (cin, cout) = (store.conv.in_channels, store.conv.out_channels);
    let (nt, no) = (tiles.len(), ocs.len());
    m.resize(XI * no * nt, 0.0);
    for xi in 0..XI {
        let lhs = &u[(xi * cout + ocs.start) * cin..(xi * cout + ocs.end) * cin];
        let dst = &mut m[xi * no * nt..(xi + 1) * no * nt];
        sgemm(
            no,
            nt,
            cin,
            lhs,
            cin,
            &v[xi * nt..],
            XI * nt,
            dst,
            nt,
            false,
        );
    }
    transform_outputs(m, blocks, tiles, ocs, store);
}

/// The tiles of `tiles` (numbered over the batch) as runs along one row of tiles of one
/// image: `(first tile's index in the block, image, tile row, tile columns)`.
fn runs(
    blocks: &Blocks,
    tiles: std::ops::Range<usize>,
) -> impl Iterator<Item = (usize, usize, usize, std::ops::Range<usize>)> + '_ {
    let mut t = tiles.start;
    std::iter::from_fn(move || {
        if t >= tiles.end {
            return None;
        }
        let (n, local) = (t / blocks.tiles, t % blocks.tiles);
        let (ty, tx) = (local / blocks.tiles_x, local % blocks.tiles_x);
        let len = (blocks.tiles_x - tx).min(tiles.end - t);
        let run = (t - tiles.start, n, ty, tx..tx + len);
        t += len;
        Some(run)
    })
}

/// `V[c][ξ][t] = (Bᵀ d B)[ξ]` for the input channels `c0..` that `v` holds and each tile `t` of
/// `tiles` (numbered over the batch `x`; `d` the tile's 4x4 input, zero outside the image), with
/// `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
///
/// A run of tiles along a row at a time, so that every step is a loop over the run's tiles
/// (which vectorises): each of the 4 input rows is split into its even and odd padded columns
/// (`e[k]`, `o[k]`: tile `k` reads `e[k], o[k], e[k+1], o[k+1]`), `d B` is taken along the rows,
/// then `Bᵀ (d B)` down them.
fn transform_inputs(
    conv: &Conv2d,
    x: &[f32],
    s: Shape,
    blocks: &Blocks,
    tiles: std::ops::Range<usize>,
    c0: usize,
    v: &mut [f32],
) {
    let (cin, nt) = (conv.in_channels, tiles.len());
    let chans = c0..c0 + v.len() / (XI * nt);
    let [py, px] = conv.padding;
    let plane_len = s.height * s.width;
    let cols = blocks.tiles_x + 1;
    // The 4 rows' even and odd columns, and their `d B`: [row][j][tile].
    let (mut even, mut odd) = (vec![0.0f32; 4 * cols], vec![0.0f32; 4 * cols]);
    let mut db = vec![0.0f32; 16 * blocks.tiles_x];
    for (at, n, ty, txs) in runs(blocks, tiles) {
        let len = txs.len();
        for c in chans.clone() {
            let plane = &x[(n * cin + c) * plane_len..(n * cin + c + 1) * plane_len];
            for i in 0..4 {
                let (e, o) = (
                    &mut even[i * cols..][..len + 1],
                    &mut odd[i * cols..][..len + 1],
                );
                let iy = (2 * ty + i).wrapping_sub(py);
                if iy >= s.height {
                    e.fill(0.0);
                    o.fill(0.0);
                } else {
                    let row = &plane[iy * s.width..(iy + 1) * s.width];
                    let at = |q: usize| q.wrapping_sub(px);
                    for (k, (e, o)) in e.iter_mut().zip(o.iter_mut()).enumerate() {
                        let q = 2 * (txs.start + k);
                        *e = row.get(at(q)).copied().unwrap_or(0.0);
                        *o = row.get(at(q + 1)).copied().unwrap_or(0.0);
                    }
                }
                let (e, o) = (&even[i * cols..][..len + 1], &odd[i * cols..][..len + 1]);
                let (row_db, rest) = db[i * 4 * len..].split_at_mut(len);
                let (h1, rest) = rest.split_at_mut(len);
                let (h2, h3) = rest.split_at_mut(len);
                let (e0, e1, o0, o1) = (&e[..len], &e[1..], &o[..len], &o[1..]);
                combine(row_db, e0, e1, |a, b| a - b);
                combine(h1, o0, e1, |a, b| a + b);
                combine(h2, e1, o0, |a, b| a - b);
                combine(h3, o0, o1, |a, b| a - b);
            }
            // Bᵀ (d B): down the 4 rows, for each column j of the transform.
            for j in 0..4 {
                let row = |i: usize| &db[(i * 4 + j) * len..(i * 4 + j + 1) * len];
                let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
                let out = |i: usize| ((c - c0) * XI + i * 4 + j) * nt + at;
                combine(&mut v[out(0)..][..len], r0, r2, |a, b| a - b);
                combine(&mut v[out(1)..][..len], r1, r2, |a, b| a + b);
                combine(&mut v[out(2)..][..len], r2, r1, |a, b| a - b);
                combine(&mut v[out(3)..][..len], r1, r3, |a, b| a - b);
            }
        }
    }
}

/// `dst[k] = f(a[k], b[k])`, as one loop LLVM vectorises.
#[inline(always)]
fn combine(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for (d, (&a, &b)) in dst.iter_mut().zip(a.iter().zip(b)) {
        *d = f(a, b);
    }
}

/// `dst[k] = f(a[k], b[k], c[k])`, likewise.
#[inline(always)]
fn combine3(dst: &mut [f32], a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) {
    for (d, ((&a, &b), &c)) in dst.iter_mut().zip(a.iter().zip(b).zip(c)) {
        *d = f(a, b, c);
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
/// activation, stored (the parts of edge tiles past the output are dropped). A run of tiles
/// along a row at a time, every step a loop over the run (as in [`transform_inputs`]).
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
    // Aᵀ M for the run: [i][j][tile]; then one output row's values, interleaved.
    let mut z = vec![0.0f32; 8 * blocks.tiles_x];
    let mut y = vec![0.0f32; 2 * blocks.tiles_x];
    let mut row = vec![0.0f32; 2 * blocks.tiles_x];
    for (at, n, ty, txs) in runs(blocks, tiles) {
        let len = txs.len();
        let (x0, x1) = (2 * txs.start, (2 * txs.end).min(wo));
        for (r, oc) in ocs.clone().enumerate() {
            let mm = |xi: usize| &m[(xi * no + r) * nt + at..][..len];
            for j in 0..4 {
                let (z0, z1) = z[j * len..].split_at_mut(4 * len);
                let (z0, z1) = (&mut z0[..len], &mut z1[..len]);
                combine3(z0, mm(j), mm(4 + j), mm(8 + j), |a, b, c| a + b + c);
                combine3(z1, mm(4 + j), mm(8 + j), mm(12 + j), |a, b, c| a - b - c);
            }
            let b = st.bias[oc];
            for i in 0..2.min(ho - 2 * ty) {
                let zr = |j: usize| &z[(i * 4 + j) * len..(i * 4 + j + 1) * len];
                let (ya, yb) = y.split_at_mut(len);
                // (Aᵀ M) A: the tile's left and right outputs of row i.
                combine3(ya, zr(0), zr(1), zr(2), |a, b, c| a + b + c);
                combine3(&mut yb[..len], zr(1), zr(2), zr(3), |a, b, c| a - b - c);
                for (k, pair) in row[..2 * len].chunks_exact_mut(2).enumerate() {
                    pair[0] = y[k] + b;
                    pair[1] = y[len + k] + b;
                }
                let oy = 2 * ty + i;
                let start = (n * st.conv.out_channels + oc) * plane + oy * wo + x0;
                // SAFETY: this task alone writes channel oc's pixels of its tiles (tasks have
                // disjoint tiles or channels): here row oy, the run's columns x0..x1; nothing
                // else touches `out` during the loop. Bounds checked by `slice`.
                let dst = unsafe { st.out.slice(start, x1 - x0) };
                if st.residual {
                    for (d, &v) in dst.iter_mut().zip(&row[..x1 - x0]) {
                        *d += v;
                    }
                } else {
                    dst.copy_from_slice(&row[..x1 - x0]);
                }
                activate(dst, st.conv.activation);
            }
        }
    }
}
