//! The CPU path's pixels (feature `image`): [`EvalTransform::apply`] and
//! [`EvalTransform::load`], Pillow's fixed-point antialiased resampler
//! ([`resize_bilinear_pil`]), [`center_crop`] and PNG/JPEG decoding ([`load_rgb8`]).

use std::io::Cursor;
use std::ops::Range;
use std::path::Path;

use image::{DynamicImage, RgbImage};
use rayon::prelude::*;

use super::{center_crop_offset, EvalTransform};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[cfg_attr(docsrs, doc(cfg(feature = "image")))]
impl EvalTransform {
    fn check(&self) -> Result<()> {
        if self.crop.0 == 0 || self.crop.1 == 0 {
            return Err(Error::Input(format!(
                "crop size must be at least 1x1; got {}x{} (height x width)",
                self.crop.0, self.crop.1
            )));
        }
        if let Some(c) = (0..3).find(|&c| !(self.std[c].is_finite() && self.std[c] != 0.0)) {
            return Err(Error::Input(format!(
                "std[{c}] = {} must be finite and non-zero",
                self.std[c]
            )));
        }
        if let Some(c) = (0..3).find(|&c| !self.mean[c].is_finite()) {
            return Err(Error::Input(format!(
                "mean[{c}] = {} must be finite",
                self.mean[c]
            )));
        }
        Ok(())
    }

    /// Applies the transform to RGB8 pixels; returns a `[3, crop_h, crop_w]` tensor.
    ///
    /// Only the pixels of the resized image that survive the crop are computed; each is
    /// bit-identical to `center_crop(&resize_bilinear_pil(img, w, h), crop_h, crop_w)`.
    ///
    /// Errors ([`Error::Input`]) when the image or a requested size is empty, or `std` holds a
    /// zero or non-finite value.
    pub fn apply(&self, img: &RgbImage) -> Result<Tensor> {
        self.check()?;
        let (in_w, in_h) = (img.width() as usize, img.height() as usize);
        let (out_w, out_h) = self.resized_size(in_w, in_h)?;
        let (crop_h, crop_w) = self.crop;
        let (x0, pad_x) = crop_window(out_w, crop_w);
        let (y0, pad_y) = crop_window(out_h, crop_h);
        let win_w = crop_w.min(out_w);
        let win_h = crop_h.min(out_h);
        let window = resample_window(img, out_w, out_h, x0..x0 + win_w, y0..y0 + win_h);

        let plane = crop_h * crop_w;
        let mut data = vec![0f32; 3 * plane];
        for c in 0..3 {
            let (mean, std) = (self.mean[c], self.std[c]);
            // torchvision pads the PIL image with 0 before converting, so padding is -mean/std.
            let fill = normalize_u8(0, mean, std);
            let out = &mut data[c * plane..(c + 1) * plane];
            out.fill(fill);
            for y in 0..win_h {
                let row = &window[y * win_w * 3..(y + 1) * win_w * 3];
                let dst = &mut out[(y + pad_y) * crop_w + pad_x..][..win_w];
                for (d, px) in dst.iter_mut().zip(row.chunks_exact(3)) {
                    *d = normalize_u8(px[c], mean, std);
                }
            }
        }
        Tensor::new(vec![3, crop_h, crop_w], data)
    }

    /// Decodes a JPEG/PNG file (see [`load_rgb8`]) and applies the transform.
    /// Errors name the file.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Tensor> {
        self.check()?;
        let img = load_rgb8(path)?;
        self.apply(&img)
    }
}

/// `convert_image_dtype(float)` then `normalize`, in f32 exactly as torch computes them.
#[inline]
fn normalize_u8(v: u8, mean: f32, std: f32) -> f32 {
    (v as f32 / 255.0 - mean) / std
}

/// For one axis: (first kept source index, zero padding before it in the output).
/// torchvision pads `(crop - size) // 2` before (and the rest after) when the crop is larger.
fn crop_window(size: usize, crop: usize) -> (usize, usize) {
    if crop > size {
        (0, (crop - size) / 2)
    } else {
        (center_crop_offset(size, crop), 0)
    }
}

/// torchvision's `F.center_crop` on a PIL image: crops `(height, width)` around the center,
/// padding with black first where the image is smaller than the crop. A zero-sized request
/// gives an empty image.
pub fn center_crop(img: &RgbImage, height: usize, width: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (x0, pad_x) = crop_window(w, width);
    let (y0, pad_y) = crop_window(h, height);
    let (win_w, win_h) = (width.min(w), height.min(h));
    let mut out = RgbImage::new(width as u32, height as u32);
    for y in 0..win_h {
        for x in 0..win_w {
            let p = *img.get_pixel((x0 + x) as u32, (y0 + y) as u32);
            out.put_pixel((pad_x + x) as u32, (pad_y + y) as u32, p);
        }
    }
    out
}

/// Decodes an image file (PNG or JPEG, recognised by content) to RGB8 the way
/// `PIL.Image.open(path).convert("RGB")` does: alpha is dropped (not composited), grayscale
/// is replicated, 16-bit RGB keeps the high byte, 16-bit grayscale is clipped to 255
/// (checked against Pillow 9.4 for every PNG color type). EXIF orientation and ICC profiles are
/// ignored, as PIL ignores them. CMYK JPEGs are converted by the `image` crate's decoder, whose
/// formula may differ from PIL's.
///
/// Errors name the file: [`Error::Io`] when it cannot be read, [`Error::Image`] when it is not
/// an image, in an unsupported format, or corrupt.
pub fn load_rgb8(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb8(&bytes, path)
}

/// [`load_rgb8`] on a file's bytes (a web page's chosen file, say): errors name `path`.
///
/// ```
/// use regnet_wgpu::preprocess::decode_rgb8;
/// let err = decode_rgb8(b"not an image", "upload.png".as_ref()).unwrap_err();
/// assert!(err.to_string().contains("upload.png"));
/// ```
pub fn decode_rgb8(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let image_err = |reason: String| Error::Image {
        path: path.to_path_buf(),
        reason,
    };
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_err(e.to_string()))?;
    match reader.format() {
        None => {
            return Err(image_err(
                "not a recognised image file (PNG or JPEG expected)".into(),
            ))
        }
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        Some(f) => {
            return Err(image_err(format!(
                "unsupported image format {f:?} (PNG or JPEG expected)"
            )))
        }
    }
    let img = reader
        .decode()
        .map_err(|e| image_err(format!("cannot decode: {e}")))?;
    let rgb = to_rgb8_like_pil(img);
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(image_err(format!(
            "empty image ({}x{})",
            rgb.width(),
            rgb.height()
        )));
    }
    Ok(rgb)
}

/// `Image.convert("RGB")` of what PIL would have opened.
fn to_rgb8_like_pil(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let from_fn = |raw: &[u8], step: usize, f: &dyn Fn(&[u8]) -> [u8; 3]| {
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for px in raw.chunks_exact(step) {
            out.extend_from_slice(&f(px));
        }
        RgbImage::from_raw(w, h, out).expect("buffer size matches")
    };
    let from_fn16 = |raw: &[u16], step: usize, f: &dyn Fn(&[u16]) -> [u8; 3]| {
        let mut out = Vec::with_capacity(w as usize * h as usize * 3);
        for px in raw.chunks_exact(step) {
            out.extend_from_slice(&f(px));
        }
        RgbImage::from_raw(w, h, out).expect("buffer size matches")
    };
    match img {
        DynamicImage::ImageRgb8(i) => i,
        DynamicImage::ImageRgba8(i) => from_fn(i.as_raw(), 4, &|p| [p[0], p[1], p[2]]),
        DynamicImage::ImageLuma8(i) => from_fn(i.as_raw(), 1, &|p| [p[0]; 3]),
        DynamicImage::ImageLumaA8(i) => from_fn(i.as_raw(), 2, &|p| [p[0]; 3]),
        // PIL reads 16-bit RGB(A) and gray+alpha PNGs as 8-bit modes keeping the high byte.
        DynamicImage::ImageRgb16(i) => from_fn16(i.as_raw(), 3, &|p| {
            [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]
        }),
        DynamicImage::ImageRgba16(i) => from_fn16(i.as_raw(), 4, &|p| {
            [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]
        }),
        DynamicImage::ImageLumaA16(i) => from_fn16(i.as_raw(), 2, &|p| [(p[0] >> 8) as u8; 3]),
        // PIL opens 16-bit grayscale as an integer mode; its conversion to RGB clips at 255.
        DynamicImage::ImageLuma16(i) => from_fn16(i.as_raw(), 1, &|p| [p[0].min(255) as u8; 3]),
        other => other.to_rgb8(),
    }
}

/// Pillow's fixed-point precision for 8-bit resampling (`PRECISION_BITS = 32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Resampling coefficients for a range of output positions along one axis
/// (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`, bilinear filter).
struct Coeffs {
    /// First input index used by each output position.
    start: Vec<usize>,
    /// Number of input indices used by each output position.
    len: Vec<usize>,
    /// Fixed-point weights, `ksize` per output position.
    weights: Vec<i32>,
    ksize: usize,
}

impl Coeffs {
    fn new(in_size: usize, out_size: usize, outputs: Range<usize>) -> Coeffs {
        // Pillow: scale = (double)(in1 - in0) / outSize with a float box (0, 0, w, h).
        let scale = (in_size as f32) as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = 1.0 * filterscale; // bilinear support is 1.0
        let ksize = support.ceil() as usize * 2 + 1;
        let n = outputs.len();
        let mut start = Vec::with_capacity(n);
        let mut len = Vec::with_capacity(n);
        let mut weights = vec![0i32; n * ksize];
        let mut k = vec![0f64; ksize];
        let ss = 1.0 / filterscale;
        for (i, xx) in outputs.enumerate() {
            let center = 0.0 + (xx as f64 + 0.5) * scale;
            // C `(int)` truncates toward zero; then clamp to the image.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(0) as usize;
            let count = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(count) {
                let w = bilinear((x as f64 + xmin as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            let dst = &mut weights[i * ksize..(i + 1) * ksize];
            for (d, &w) in dst.iter_mut().zip(&k).take(count) {
                let w = if ww != 0.0 { w / ww } else { w };
                // normalize_coeffs_8bpc: round half away from zero into 22-bit fixed point.
                let scaled = w * (1u32 << PRECISION_BITS) as f64;
                *d = if w < 0.0 {
                    (-0.5 + scaled) as i32
                } else {
                    (0.5 + scaled) as i32
                };
            }
            start.push(xmin);
            len.push(count);
        }
        Coeffs {
            start,
            len,
            weights,
            ksize,
        }
    }

    #[inline]
    fn get(&self, i: usize) -> (usize, &[i32]) {
        let w = &self.weights[i * self.ksize..];
        (self.start[i], &w[..self.len[i]])
    }
}

#[inline]
fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's `clip8`: drop the fraction bits and saturate to 0..=255.
#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's two-pass resampling of an RGB8 image to `out_w`×`out_h`, evaluated only on the
/// output window `xs`×`ys`. Returns the window's pixels, row-major RGB.
fn resample_window(
    img: &RgbImage,
    out_w: usize,
    out_h: usize,
    xs: Range<usize>,
    ys: Range<usize>,
) -> Vec<u8> {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let (win_w, win_h) = (xs.len(), ys.len());
    if win_w == 0 || win_h == 0 || in_w == 0 || in_h == 0 {
        return vec![0; win_w * win_h * 3];
    }
    let need_horizontal = out_w != in_w;
    let need_vertical = out_h != in_h;
    let const_half: i32 = 1 << (PRECISION_BITS - 1);

    // Source rows needed by the window (all of them are needed when there is no vertical pass).
    let vert = need_vertical.then(|| Coeffs::new(in_h, out_h, ys.clone()));
    let rows: Range<usize> = match &vert {
        Some(v) => {
            let first = (0..win_h).map(|i| v.start[i]).min().unwrap_or(0);
            let last = (0..win_h).map(|i| v.start[i] + v.len[i]).max().unwrap_or(0);
            first..last.max(first)
        }
        None => ys.clone(),
    };

    // Horizontal pass over the needed rows (or a plain copy of the window's columns).
    let tmp_stride = win_w * 3;
    let mut tmp = vec![0u8; rows.len() * tmp_stride];
    if need_horizontal {
        let horiz = Coeffs::new(in_w, out_w, xs.clone());
        tmp.par_chunks_mut(tmp_stride)
            .zip(rows.clone())
            .for_each(|(dst, y)| {
                let row = &src[y * in_w * 3..(y + 1) * in_w * 3];
                for (i, px) in dst.chunks_exact_mut(3).enumerate() {
                    let (xmin, k) = horiz.get(i);
                    let (mut s0, mut s1, mut s2) = (const_half, const_half, const_half);
                    for (p, &kx) in row[xmin * 3..].chunks_exact(3).zip(k) {
                        s0 += p[0] as i32 * kx;
                        s1 += p[1] as i32 * kx;
                        s2 += p[2] as i32 * kx;
                    }
                    px.copy_from_slice(&[clip8(s0), clip8(s1), clip8(s2)]);
                }
            });
    } else {
        for (dst, y) in tmp.chunks_exact_mut(tmp_stride).zip(rows.clone()) {
            dst.copy_from_slice(&src[(y * in_w + xs.start) * 3..(y * in_w + xs.end) * 3]);
        }
    }

    // Vertical pass over the window's rows.
    let Some(vert) = vert else {
        return tmp;
    };
    let mut out = vec![0u8; win_w * win_h * 3];
    out.par_chunks_mut(tmp_stride)
        .enumerate()
        .for_each(|(i, dst)| {
            let (ymin, k) = vert.get(i);
            let base = ymin - rows.start;
            for (j, px) in dst.iter_mut().enumerate() {
                let mut s = const_half;
                for (t, &ky) in k.iter().enumerate() {
                    s += tmp[(base + t) * tmp_stride + j] as i32 * ky;
                }
                *px = clip8(s);
            }
        });
    out
}

/// PIL-exact antialiased bilinear resize of RGB8 pixels to `width`×`height`: the result is
/// identical to `Image.resize((width, height), Image.BILINEAR)` on an RGB image.
///
/// A zero-sized request or an empty input gives an image of the requested size filled with
/// black (PIL itself refuses those).
pub fn resize_bilinear_pil(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = (width as usize, height as usize);
    let raw = resample_window(img, w, h, 0..w, 0..h);
    RgbImage::from_raw(width, height, raw).expect("buffer size matches")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(451, 384), (300, 256), (5, 7), (1, 256), (1000, 3)] {
            let c = Coeffs::new(i, o, 0..o);
            for xx in 0..o {
                let (_, k) = c.get(xx);
                let s: i64 = k.iter().map(|&v| v as i64).sum();
                assert!(
                    (s - (1 << 22)).abs() <= k.len() as i64,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }

    #[test]
    fn crop_window_pads_like_torchvision() {
        assert_eq!(crop_window(221, 224), (0, 1));
        assert_eq!(crop_window(224, 224), (0, 0));
        assert_eq!(crop_window(225, 224), (0, 0)); // round(0.5) = 0
        assert_eq!(crop_window(227, 224), (2, 0)); // round(1.5) = 2
    }
}
