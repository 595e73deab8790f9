//! torchvision's ImageNet evaluation transform, bit-exact to PIL + torchvision.
//!
//! `RegNet_Y_400MF_Weights.IMAGENET1K_V1.transforms()` (torchvision's `ImageClassification`
//! preset) applied to `PIL.Image.open(path).convert("RGB")` is:
//!
//! 1. resize the shorter side to 256 with PIL's antialiased bilinear filter
//!    (`Image.resize(..., Image.BILINEAR)`, i.e. Pillow's `ImagingResample`);
//! 2. center-crop 224×224 (offsets rounded half to even, as Python's `round`; zero padding
//!    when the image is smaller than the crop);
//! 3. `pil_to_tensor` + `convert_image_dtype(float)`: `u8 as f32 / 255.0`;
//! 4. `normalize`: `(x - mean) / std` per channel, in f32.
//!
//! [`resize_bilinear_pil`] reproduces Pillow's fixed-point resampler (22 fractional bits,
//! rounding to 8 bits after each of the two passes) in the same integer arithmetic, so the
//! pixels are identical to PIL's, and the whole transform matches torchvision to the last bit
//! for PNG input. JPEG input can differ by a few levels because PIL decodes with
//! libjpeg-turbo and the `image` crate with zune-jpeg.
//!
//! The pixel work (`EvalTransform::apply` and `load`, the resampler, PNG/JPEG decoding) needs
//! the `image` feature (on by default). The transform's description, its sizes and crop
//! offsets and [`stack`] are always there: the GPU pass
//! (`gpu::preprocess`, feature `gpu`) uses them.
//!
//! ```
//! use regnet_wgpu::preprocess::{stack, EvalTransform};
//!
//! let img = image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([x as u8, y as u8, 128]));
//! let t = EvalTransform::default().apply(&img)?;
//! assert_eq!(t.shape, vec![3, 224, 224]);
//! let batch = stack(&[t.clone(), t])?;
//! assert_eq!(batch.shape, vec![2, 3, 224, 224]);
//! # Ok::<(), regnet_wgpu::error::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[cfg(feature = "image")]
mod pil;
#[cfg(feature = "image")]
#[cfg_attr(docsrs, doc(cfg(feature = "image")))]
pub use pil::{center_crop, decode_rgb8, load_rgb8, resize_bilinear_pil};

/// ImageNet channel means (RGB), as torchvision's presets use them.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB), as torchvision's presets use them.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// torchvision's evaluation transform (`ImageClassification` preset with PIL input).
///
/// `Default` is the ImageNet transform of torchvision's RegNet weights: resize the shorter side
/// to 256, center-crop 224×224, normalize with [`IMAGENET_MEAN`] / [`IMAGENET_STD`].
#[derive(Clone, Debug, PartialEq)]
pub struct EvalTransform {
    /// Target length of the shorter side after resizing (torchvision's `resize_size`).
    pub resize: usize,
    /// Center crop `(height, width)` (torchvision's `crop_size`).
    pub crop: (usize, usize),
    /// Per-channel mean subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
}

impl Default for EvalTransform {
    fn default() -> Self {
        EvalTransform {
            resize: 256,
            crop: (224, 224),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

impl EvalTransform {
    /// The `(width, height)` the image is resized to before cropping, as torchvision's
    /// `F.resize(img, [resize])` computes it: the shorter side becomes `resize`, the longer
    /// side `int(resize * long / short)` (float division, then truncation).
    ///
    /// Errors when `resize` or a dimension of the image is zero.
    pub fn resized_size(&self, width: usize, height: usize) -> Result<(usize, usize)> {
        if width == 0 || height == 0 {
            return Err(Error::Input(format!(
                "cannot transform an empty image ({width}x{height})"
            )));
        }
        if self.resize == 0 {
            return Err(Error::Input("resize size must be at least 1".into()));
        }
        let (short, long) = if width <= height {
            (width, height)
        } else {
            (height, width)
        };
        // Python: int(size * long / short); `size * long` is an exact integer, `/` a correctly
        // rounded float division, which f64 reproduces for operands below 2^53.
        let new_long = ((self.resize as f64 * long as f64) / short as f64) as usize;
        Ok(if width <= height {
            (self.resize, new_long)
        } else {
            (new_long, self.resize)
        })
    }
}

/// torchvision's center-crop offset along one axis: `int(round((size - crop) / 2.0))` with
/// Python's `round` (half to even), for `size >= crop`. Returns 0 when `size <= crop`.
///
/// ```
/// use regnet_wgpu::preprocess::center_crop_offset;
/// assert_eq!(center_crop_offset(227, 224), 2); // round(1.5) = 2
/// assert_eq!(center_crop_offset(229, 224), 2); // round(2.5) = 2
/// assert_eq!(center_crop_offset(383, 224), 80); // round(79.5) = 80
/// ```
pub fn center_crop_offset(size: usize, crop: usize) -> usize {
    if size <= crop {
        return 0;
    }
    let d = size - crop;
    let q = d / 2;
    if d % 2 == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

/// Stacks `[C, H, W]` tensors of equal shape into `[N, C, H, W]`.
///
/// Errors when the list is empty, a tensor is not of rank 3, or the shapes differ.
pub fn stack(images: &[Tensor]) -> Result<Tensor> {
    let first = images
        .first()
        .ok_or_else(|| Error::Input("cannot stack an empty list of images".into()))?;
    if first.shape.len() != 3 {
        return Err(Error::Input(format!(
            "stack expects [C, H, W] tensors; image 0 has shape {:?}",
            first.shape
        )));
    }
    if let Some((i, t)) = images
        .iter()
        .enumerate()
        .find(|(_, t)| t.shape != first.shape)
    {
        return Err(Error::Input(format!(
            "cannot stack images of different shapes: image 0 is {:?}, image {i} is {:?}",
            first.shape, t.shape
        )));
    }
    let mut shape = vec![images.len()];
    shape.extend_from_slice(&first.shape);
    let mut data = Vec::with_capacity(first.len() * images.len());
    for t in images {
        data.extend_from_slice(&t.data);
    }
    Tensor::new(shape, data)
}
