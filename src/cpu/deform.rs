//! Deformable convolution on the CPU, exactly torchvision's `deform_conv2d` (the twin of
//! `shaders/deform_conv.wgsl`): as torchvision's own CPU kernel does, the bilinear samples of
//! each (image, group) are gathered into columns (`[cin_g * kh * kw, out_h * out_w]`, times the
//! mask in v2), then one GEMM with the weights per group; bias and activation follow.

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
/// `out` (`[N, out_c, out_h, out_w]`).
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
    out.par_chunks_mut(cout_g * hw)
        .enumerate()
        .for_each_init(Vec::new, |col, (idx, dst)| {
            let (n, g) = (idx / c.groups, idx % c.groups);
            let t = Taps {
                d,
                offset: &offset[n * off_len..(n + 1) * off_len],
                mask: mask.map(|m| &m[n * mask_len..(n + 1) * mask_len]),
                out: out_shape,
            };
            let img = &x[n * in_shape.numel()..(n + 1) * in_shape.numel()];
            t.columns(img, in_shape, g * cin_g, cin_g, col);
            let w = &p.weight[g * cout_g * k..(g + 1) * cout_g * k];
            sgemm(cout_g, hw, k, w, k, col, hw, dst, hw, false);
            bias_activate(c, &p.bias[g * cout_g..(g + 1) * cout_g], dst, hw);
        });
}

impl Taps<'_> {
    /// The samples of input channels `c0..c0 + cin` of one image `x`, as `col`
    /// (`[cin * kh * kw, out_h * out_w]`).
    fn columns(&self, x: &[f32], s: Shape, c0: usize, cin: usize, col: &mut Vec<f32>) {
        let conv = &self.d.conv;
        let [kh, kw] = conv.kernel;
        let (ho, wo) = (self.out.height, self.out.width);
        let hw = ho * wo;
        let per_og = conv.in_channels / self.d.offset_groups;
        col.clear();
        col.resize(cin * kh * kw * hw, 0.0);
        for ci in 0..cin {
            let ic = c0 + ci;
            let og = ic / per_og;
            let plane = &x[ic * s.height * s.width..(ic + 1) * s.height * s.width];
            for t in 0..kh * kw {
                let (ky, kx) = (t / kw, t % kw);
                let tap = og * kh * kw + t;
                let dy = &self.offset[2 * tap * hw..(2 * tap + 1) * hw];
                let dx = &self.offset[(2 * tap + 1) * hw..(2 * tap + 2) * hw];
                let row = &mut col[(ci * kh * kw + t) * hw..(ci * kh * kw + t + 1) * hw];
                for (pix, v) in row.iter_mut().enumerate() {
                    let (oy, ox) = (pix / wo, pix % wo);
                    let y0 = (oy * conv.stride[0] + ky * conv.dilation[0]) as f32
                        - conv.padding[0] as f32;
                    let x0 = (ox * conv.stride[1] + kx * conv.dilation[1]) as f32
                        - conv.padding[1] as f32;
                    let mut sample = bilinear(plane, s, y0 + dy[pix], x0 + dx[pix]);
                    if let Some(m) = self.mask {
                        sample *= m[tap * hw + pix];
                    }
                    *v = sample;
                }
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
