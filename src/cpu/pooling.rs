//! Pooling over windows on the CPU, with torch's semantics: `max_pool2d`, `avg_pool2d` and
//! `adaptive_avg_pool2d` (the twins of `shaders/pool2d.wgsl`). One parallel task per group of
//! planes.

use rayon::prelude::*;

use super::ops::min_planes;
use crate::plan::{Pool2d, PoolMode};

/// Rows (or columns) `start..end` of one window, clipped to the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    /// First tap, in input coordinates (may be negative: padding).
    start: isize,
    /// Taps.
    taps: usize,
}

/// Pools every `[in_h, in_w]` plane of `x` to `[out_h, out_w]` with `f(plane, oy, ox)`, into
/// `out` (a buffer of the output's length, whatever it holds).
fn per_output(
    x: &[f32],
    (in_h, in_w): (usize, usize),
    (out_h, out_w): (usize, usize),
    mut out: Vec<f32>,
    f: impl Fn(&[f32], usize, usize) -> f32 + Sync,
) -> Vec<f32> {
    let planes = x.len() / (in_h * in_w).max(1);
    assert_eq!(out.len(), planes * out_h * out_w);
    out.par_chunks_mut((out_h * out_w).max(1))
        .zip(x.par_chunks((in_h * in_w).max(1)))
        .with_min_len(min_planes(in_h * in_w))
        .for_each(|(o, plane)| {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    o[oy * out_w + ox] = f(plane, oy, ox);
                }
            }
        });
    out
}

/// `max_pool2d` or `avg_pool2d` of `x` (`[N, C, in_h, in_w]`) to `out_h` x `out_w` (the sizes
/// [`Pool2d::output_size`] gives), written into `out` (of the output's length; what it holds
/// is overwritten) and returned.
pub(crate) fn pool2d(
    x: &[f32],
    pool: &Pool2d,
    (in_h, in_w): (usize, usize),
    (out_h, out_w): (usize, usize),
    out: Vec<f32>,
) -> Vec<f32> {
    if pool.mode == PoolMode::Max {
        return max_pool2d(x, pool, (in_h, in_w), (out_h, out_w), out);
    }
    let axis = |o: usize, a: usize| Span {
        start: (o * pool.stride[a]) as isize - pool.padding[a] as isize,
        taps: pool.kernel[a],
    };
    per_output(x, (in_h, in_w), (out_h, out_w), out, |plane, oy, ox| {
        let (ys, xs) = (axis(oy, 0), axis(ox, 1));
        match pool.mode {
            PoolMode::Max => unreachable!("max pooling is max_pool2d's"),
            PoolMode::Avg { count_include_pad } => {
                // The window within the padded input (a ceil_mode window may hang past it),
                // then within the input.
                let end = |s: Span, len: usize, pad: usize| {
                    (s.start + s.taps as isize).min((len + pad) as isize)
                };
                let (y1, x1) = (
                    end(ys, in_h, pool.padding[0]),
                    end(xs, in_w, pool.padding[1]),
                );
                let padded = (y1 - ys.start) * (x1 - xs.start);
                let (y0, x0) = (ys.start.max(0), xs.start.max(0));
                let (y1, x1) = (y1.min(in_h as isize), x1.min(in_w as isize));
                let covered = (y1 - y0).max(0) * (x1 - x0).max(0);
                let divisor = if count_include_pad { padded } else { covered };
                sum_rect(plane, in_w, (y0, y1), (x0, x1)) / divisor.max(1) as f32
            }
        }
    })
}

/// `max_pool2d` of `x` (`[N, C, in_h, in_w]`), separably: for each output row, the largest
/// value of each input column over the window's rows (whole rows at a time, which vectorises),
/// then the largest of those over each window's columns, read from a row padded with -inf on
/// both sides so that no tap needs a bounds check. Taps in the padding are left out; a window
/// wholly in it gives -inf, as torch's does.
fn max_pool2d(
    x: &[f32],
    pool: &Pool2d,
    (in_h, in_w): (usize, usize),
    (out_h, out_w): (usize, usize),
    mut out: Vec<f32>,
) -> Vec<f32> {
    let planes = x.len() / (in_h * in_w).max(1);
    assert_eq!(out.len(), planes * out_h * out_w);
    // Input row of tap `k` of output row `o`, if inside the input.
    let row_tap = |o: usize, k: usize| {
        (o * pool.stride[0] + k * pool.dilation[0])
            .checked_sub(pool.padding[0])
            .filter(|&i| i < in_h)
    };
    // The padded row: `left` -inf, the column maxima, then -inf up to the last tap's column.
    let left = pool.padding[1];
    let last_tap =
        out_w.saturating_sub(1) * pool.stride[1] + (pool.kernel[1] - 1) * pool.dilation[1];
    let padded = (last_tap + 1).max(left + in_w);
    out.par_chunks_mut((out_h * out_w).max(1))
        .zip(x.par_chunks((in_h * in_w).max(1)))
        .with_min_len(min_planes(in_h * in_w))
        .for_each_init(Vec::new, |column_max, (o, plane)| {
            for (oy, o_row) in o.chunks_exact_mut(out_w.max(1)).enumerate() {
                column_max.clear();
                column_max.resize(padded, f32::NEG_INFINITY);
                let inner = &mut column_max[left..left + in_w];
                for iy in (0..pool.kernel[0]).filter_map(|ky| row_tap(oy, ky)) {
                    let row = &plane[iy * in_w..(iy + 1) * in_w];
                    for (m, &v) in inner.iter_mut().zip(row) {
                        *m = m.max(v);
                    }
                }
                for (ox, dst) in o_row.iter_mut().enumerate() {
                    let first = ox * pool.stride[1];
                    *dst = (0..pool.kernel[1]).fold(f32::NEG_INFINITY, |m, kx| {
                        m.max(column_max[first + kx * pool.dilation[1]])
                    });
                }
            }
        });
    out
}

/// `adaptive_avg_pool2d` of `x` (`[N, C, in_h, in_w]`) to `out_h` x `out_w`, into `out` (as
/// [`pool2d`]): output `i` averages inputs `floor(i * H / O) .. ceil((i + 1) * H / O)` on each
/// axis.
pub(crate) fn adaptive_avg_pool(
    x: &[f32],
    (in_h, in_w): (usize, usize),
    (out_h, out_w): (usize, usize),
    out: Vec<f32>,
) -> Vec<f32> {
    let window = |o: usize, len: usize, out: usize| {
        let start = o * len / out;
        let end = ((o + 1) * len).div_ceil(out);
        (start as isize, end as isize)
    };
    per_output(x, (in_h, in_w), (out_h, out_w), out, |plane, oy, ox| {
        let (y0, y1) = window(oy, in_h, out_h);
        let (x0, x1) = window(ox, in_w, out_w);
        sum_rect(plane, in_w, (y0, y1), (x0, x1)) / ((y1 - y0) * (x1 - x0)) as f32
    })
}

/// The sum of rows `y0..y1` x columns `x0..x1` of a plane `w` wide (in range, possibly empty),
/// accumulated in f64 as torch's float64 reference does not, but as closely as f32 gets.
fn sum_rect(plane: &[f32], w: usize, (y0, y1): (isize, isize), (x0, x1): (isize, isize)) -> f32 {
    let mut s = 0f64;
    for iy in y0..y1 {
        let row = &plane[iy as usize * w..(iy as usize + 1) * w];
        s += row[x0 as usize..x1.max(x0) as usize]
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>();
    }
    s as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_windows_past_the_padded_edge_divide_by_what_they_cover() {
        // 1x5 input, kernel 1x2, stride 2, ceil_mode: the last window [4, 6) hangs past the
        // input (no padding): torch divides by 1 with or without count_include_pad.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        for count_include_pad in [false, true] {
            let pool = Pool2d {
                mode: PoolMode::Avg { count_include_pad },
                kernel: [1, 2],
                stride: [1, 2],
                padding: [0, 0],
                dilation: [1, 1],
                ceil_mode: true,
            };
            assert_eq!(pool.output_size(1, 5), (1, 3));
            assert_eq!(
                pool2d(&x, &pool, (1, 5), (1, 3), vec![0.0; 3]),
                [1.5, 3.5, 5.0]
            );
        }
    }

    #[test]
    fn a_max_window_wholly_in_the_padding_is_minus_infinity() {
        // torch: F.max_pool2d(ones(1,1,1,1), (1,2), 1, (0,1), (1,2)) == -inf (taps at -1 and 1).
        let pool = Pool2d {
            mode: PoolMode::Max,
            kernel: [1, 2],
            stride: [1, 1],
            padding: [0, 1],
            dilation: [1, 2],
            ceil_mode: false,
        };
        assert_eq!(pool.output_size(1, 1), (1, 1));
        let out = pool2d(&[1.0], &pool, (1, 1), (1, 1), vec![0.0]);
        assert_eq!(out, [f32::NEG_INFINITY]);
    }

    #[test]
    fn adaptive_windows_overlap_when_sizes_do_not_divide() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        // 5 -> 3: [0, 2), [1, 4), [3, 5).
        let out = adaptive_avg_pool(&x, (1, 5), (1, 3), vec![0.0; 3]);
        assert_eq!(out, [1.5, 3.0, 4.5]);
    }
}
