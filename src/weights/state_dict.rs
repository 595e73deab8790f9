//! A `state_dict` as read from a file: tensor names to raw little-endian data, the one form
//! every weights format is read into ([`StateDict::from_bytes`] detects which by content) and
//! that [`Weights`](super::Weights) checks and folds.
//!
//! Formats: safetensors, and PyTorch checkpoints (`torch.save(state_dict)`) in the zip format
//! torch writes by default or the legacy format (`_use_new_zipfile_serialization=False`), see
//! [`super::pth`]. A leading `module.` (a checkpoint saved from `DataParallel` /
//! `DistributedDataParallel`) is stripped from every name, whatever the format, as
//! `scripts/pth_to_safetensors.py` does; a name present both with and without it is an error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::tensor::parse_safetensors;

use super::pth;

/// The element type of a tensor in a weights file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// float32.
    F32,
    /// float16.
    F16,
    /// bfloat16.
    BF16,
    /// Any other (integer buffers such as `num_batches_tracked`, float64, ...), by its
    /// safetensors name (`I64`, `F64`, ...).
    Other(String),
}

impl Dtype {
    /// Bytes per element of the floating types the loader reads.
    pub fn float_size(&self) -> Option<usize> {
        match self {
            Dtype::F32 => Some(4),
            Dtype::F16 | Dtype::BF16 => Some(2),
            Dtype::Other(_) => None,
        }
    }

    pub(crate) fn from_safetensors(d: safetensors::Dtype) -> Dtype {
        match d {
            safetensors::Dtype::F32 => Dtype::F32,
            safetensors::Dtype::F16 => Dtype::F16,
            safetensors::Dtype::BF16 => Dtype::BF16,
            other => Dtype::Other(format!("{other:?}")),
        }
    }
}

/// Which format a weights file is in (told by content, not by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// safetensors.
    Safetensors,
    /// A PyTorch checkpoint in the zip format (`torch.save`'s default since 1.6).
    PthZip,
    /// A PyTorch checkpoint in the legacy format (`_use_new_zipfile_serialization=False`).
    PthLegacy,
}

impl Format {
    /// Tells the format of a file's bytes: a zip archive (`PK\x03\x04`) is a PyTorch
    /// checkpoint, a pickle of torch's magic number the legacy one; anything else is read as
    /// safetensors.
    pub fn detect(bytes: &[u8]) -> Format {
        if bytes.starts_with(b"PK\x03\x04") {
            Format::PthZip
        } else if pth::is_legacy(bytes) {
            Format::PthLegacy
        } else {
            Format::Safetensors
        }
    }
}

/// One tensor: dtype, shape and contiguous little-endian row-major data (borrowed from the
/// file's bytes when it can be).
#[derive(Clone, Debug)]
pub struct RawTensor<'a> {
    /// Element type.
    pub dtype: Dtype,
    /// Sizes, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` elements of `dtype`.
    pub data: Cow<'a, [u8]>,
}

impl RawTensor<'_> {
    /// The values as f32 (F32, F16 and BF16 accepted); `name` names the tensor in errors.
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        decode_f32(name, &self.dtype, &self.data)
    }
}

/// Decodes little-endian F32, F16 or BF16 bytes; another dtype is [`Error::UnsupportedDtype`].
pub(crate) fn decode_f32(name: &str, dtype: &Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::Other(other) => {
            return Err(Error::UnsupportedDtype {
                name: name.to_string(),
                dtype: other.clone(),
                expected: "F32, F16 or BF16",
            })
        }
    })
}

/// A `state_dict`: tensors by name (any `module.` prefix stripped).
#[derive(Clone, Debug)]
pub struct StateDict<'a> {
    tensors: HashMap<String, RawTensor<'a>>,
    format: Format,
}

impl<'a> StateDict<'a> {
    /// Reads a weights file's bytes, whatever its format ([`Format::detect`]); `label` names
    /// it in errors.
    pub fn from_bytes(bytes: &'a [u8], label: &Path) -> Result<StateDict<'a>> {
        let format = Format::detect(bytes);
        let pth_err = |source| Error::Pth {
            path: label.to_path_buf(),
            source,
        };
        let entries: Vec<(String, RawTensor<'a>)> = match format {
            Format::Safetensors => parse_safetensors(bytes, label)?
                .tensors()
                .into_iter()
                .map(|(name, view)| {
                    let t = RawTensor {
                        dtype: Dtype::from_safetensors(view.dtype()),
                        shape: view.shape().to_vec(),
                        data: Cow::Borrowed(view.data()),
                    };
                    (name, t)
                })
                .collect(),
            Format::PthZip => pth::read_zip(bytes).map_err(pth_err)?,
            Format::PthLegacy => pth::read_legacy(bytes).map_err(pth_err)?,
        };
        let mut tensors = HashMap::with_capacity(entries.len());
        for (name, t) in entries {
            let name = match name.strip_prefix("module.") {
                Some(n) => n.to_string(),
                None => name,
            };
            if tensors.contains_key(&name) {
                return Err(Error::DuplicateTensor {
                    name,
                    path: label.to_path_buf(),
                });
            }
            tensors.insert(name, t);
        }
        Ok(StateDict { tensors, format })
    }

    /// The tensor named `name` (without any `module.` prefix).
    pub fn get(&self, name: &str) -> Option<&RawTensor<'a>> {
        self.tensors.get(name)
    }

    /// Every name, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Every tensor, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawTensor<'a>)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when it holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The format it was read from.
    pub fn format(&self) -> Format {
        self.format
    }
}
