//! Deformable convolution on the CPU, exactly torchvision's `deform_conv2d` (the twin of
//! `shaders/deform_conv.wgsl`): as torchvision's own CPU kernel does, the bilinear samples of
//! each (image, group) are gathered into columns (`[cin_g * kh * kw, out_h * out_w]`, times the
//! mask in v2), then one GEMM with the weights per group; bias and activation follow. With
//! fewer (image, group) pairs than threads, the columns and the GEMM are split over them.

use rayon::prelude::*;

use super::conv::{bias_activate, sgemm};
use crate::plan::{DeformConv2d, Shape};
use crate::weights::ConvParams;

/// The offsets and mask of one image, and where its output pixels sample.
struct Taps<'a> {
    d: &'a DeformConv2d,
    /// `[2 * og * kh * kw, out_h * out_w]`.
    offset: &'a [f32],
    /// `[og * kh * kw, out_h * out_w]` (v2).
    mask: Option<&'a [f32]>,
    out: Shape,
}

/// Deformable convolution of `x` (`[N, C, H, W]`) with per-image `offset` and `mask`, into
/// `out` (`[N, out_c, out_h, out_w]`): one task per (image, group) when there are enough of
/// them, else each one's columns and GEMM split over the threads.
pub(crate) fn deform_conv2d(
    d: &DeformConv2d,
    p: &ConvParams,
    x: &[f32],
    (offset, mask): (&[f32], Option<&[f32]>),
    (in_shape, out_shape): (Shape, Shape),
    out: &mut [f32],
) {
    let c = &d.conv;
    let taps = c.kernel[0] * c.kernel[1];
    let hw = out_shape.height * out_shape.width;
    let (cin_g, cout_g) = (c.in_channels / c.groups, c.out_channels / c.groups);
    let k = cin_g * taps;
    let (off_len, mask_len) = (2 * d.offset_groups * taps * hw, d.offset_groups * taps * hw);
    let image = |n: usize| Taps {
        d,
        offset: &offset[n * off_len..(n + 1) * off_len],
        mask: mask.map(|m| &m[n * mask_len..(n + 1) * mask_len]),
        out: out_shape,
    };
    let input = |n: usize| &x[n * in_shape.numel()..(n + 1) * in_shape.numel()];
    let gemm = |g: usize, col: &[f32], rows: std::ops::Range<usize>, dst: &mut [f32]| {
        let oc = g * cout_g + rows.start..g * cout_g + rows.end;
        let w = &p.weight[oc.start * k..oc.end * k];
        sgemm(rows.len(), hw, k, w, k, col, hw, dst, hw, false);
        bias_activate(c, &p.bias[oc], dst, hw);
    };
    let tasks = out.len() / (cout_g * hw).max(1);
    if tasks >= 2 * rayon::current_num_threads() {
        out.par_chunks_mut(cout_g * hw)
            .enumerate()
            .for_each_init(Vec::new, |col, (idx, dst)| {
                let (n, g) = (idx / c.groups, idx % c.groups);
                col.clear();
                col.resize(k * hw, 0.0);
                for (ci, rows) in col.chunks_mut(taps * hw).enumerate() {
                    image(n).channel(input(n), in_shape, g * cin_g + ci, rows);
                }
                gemm(g, col, 0..cout_g, dst);
            });
        return;
    }
    let mut col = vec![0.0; k * hw];
    let block = cout_g.div_ceil(2 * rayon::current_num_threads()).max(1);
    for (idx, dst) in out.chunks_mut(cout_g * hw).enumerate() {
        let (n, g) = (idx / c.groups, idx % c.groups);
        col.par_chunks_mut(taps * hw)
            .enumerate()
            .for_each(|(ci, rows)| image(n).channel(input(n), in_shape, g * cin_g + ci, rows));
        dst.par_chunks_mut(block * hw)
            .enumerate()
            .for_each(|(b, dst)| {
                let rows = b * block..(b * block + dst.len() / hw.max(1));
                gemm(g, &col, rows, dst)
            });
    }
}

impl Taps<'_> {
    /// The samples of input channel `ic` of one image `x` for every tap and output pixel, as
    /// `rows` (`[kh * kw, out_h * out_w]`).
    fn channel(&self, x: &[f32], s: Shape, ic: usize, rows: &mut [f32]) {
        let conv = &self.d.conv;
        let [kh, kw] = conv.kernel;
        let wo = self.out.width;
        let hw = self.out.height * wo;
        let og = ic / (conv.in_channels / self.d.offset_groups);
        let plane = &x[ic * s.height * s.width..(ic + 1) * s.height * s.width];
        for (t, row) in rows.chunks_mut(hw).enumerate().take(kh * kw) {
            let (ky, kx) = (t / kw, t % kw);
            let tap = og * kh * kw + t;
            let dy = &self.offset[2 * tap * hw..(2 * tap + 1) * hw];
            let dx = &self.offset[(2 * tap + 1) * hw..(2 * tap + 2) * hw];
            for (pix, v) in row.iter_mut().enumerate() {
                let (oy, ox) = (pix / wo, pix % wo);
                let y0 =
                    (oy * conv.stride[0] + ky * conv.dilation[0]) as f32 - conv.padding[0] as f32;
                let x0 =
                    (ox * conv.stride[1] + kx * conv.dilation[1]) as f32 - conv.padding[1] as f32;
                let mut sample = bilinear(plane, s, y0 + dy[pix], x0 + dx[pix]);
                if let Some(m) = self.mask {
                    sample *= m[tap * hw + pix];
                }
                *v = sample;
            }
        }
    }
}

/// torchvision's `bilinear_interpolate`: the plane's value at `(y, x)`; zero when
/// `y <= -1`, `y >= H`, `x <= -1` or `x >= W`; else the four neighbours weighted by their
/// distances, those outside the image counting as zero.
pub(crate) fn bilinear(plane: &[f32], s: Shape, y: f32, x: f32) -> f32 {
    let (h, w) = (s.height as f32, s.width as f32);
    if y <= -1.0 || y >= h || x <= -1.0 || x >= w {
        return 0.0;
    }
    let (y0, x0) = (y.floor(), x.floor());
    let (ly, lx) = (y - y0, x - x0);
    let at = |iy: f32, ix: f32| {
        if iy < 0.0 || ix < 0.0 || iy >= h || ix >= w {
            0.0
        } else {
            plane[iy as usize * s.width + ix as usize]
        }
    };
    (1.0 - ly) * (1.0 - lx) * at(y0, x0)
        + (1.0 - ly) * lx * at(y0, x0 + 1.0)
        + ly * (1.0 - lx) * at(y0 + 1.0, x0)
        + ly * lx * at(y0 + 1.0, x0 + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_fade_to_zero_over_the_last_unit_outside() {
        let s = Shape {
            channels: 1,
            height: 1,
            width: 2,
        };
        let plane = [2.0, 4.0];
        assert_eq!(bilinear(&plane, s, 0.0, 0.5), 3.0);
        // x in (-1, 0): (x + 1) times column 0.
        assert_eq!(bilinear(&plane, s, 0.0, -0.25), 1.5);
        assert_eq!(bilinear(&plane, s, 0.0, -1.0), 0.0);
        // x in (W - 1, W): (W - x) times column W - 1.
        assert_eq!(bilinear(&plane, s, 0.0, 1.5), 2.0);
        assert_eq!(bilinear(&plane, s, 0.0, 2.0), 0.0);
        assert_eq!(bilinear(&plane, s, -0.5, 1.0), 2.0);
    }
}
