//! A plain dense f32 tensor (row-major, NCHW for images) and its safetensors I/O.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::error::{Error, Result};

/// A dense, row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first (`[N, C, H, W]` for images).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor from its shape and data; errors when the sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Input(format!(
                "shape {shape:?} holds {n} values but {} were given",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// A zero-filled tensor.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: vec![0.0; n],
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Relative L2 error ‖self − reference‖ / ‖reference‖, computed in f64.
    pub fn rel_err(&self, reference: &Tensor) -> f64 {
        assert_eq!(self.shape, reference.shape, "rel_err: shapes differ");
        let (mut num, mut den) = (0f64, 0f64);
        for (a, b) in self.data.iter().zip(&reference.data) {
            let d = *a as f64 - *b as f64;
            num += d * d;
            den += (*b as f64) * (*b as f64);
        }
        if den == 0.0 {
            num.sqrt()
        } else {
            (num / den).sqrt()
        }
    }

    /// Indices of the `k` largest values of row `row` of a `[N, K]` tensor, largest first.
    pub fn top_k(&self, row: usize, k: usize) -> Vec<(usize, f32)> {
        let cols = *self.shape.last().unwrap_or(&0);
        let r = &self.data[row * cols..(row + 1) * cols];
        let mut idx: Vec<usize> = (0..cols).collect();
        idx.sort_by(|&a, &b| r[b].total_cmp(&r[a]).then(a.cmp(&b)));
        idx.into_iter().take(k).map(|i| (i, r[i])).collect()
    }

    /// Row-wise softmax of a `[N, K]` tensor (computed in f64).
    pub fn softmax_rows(&self) -> Tensor {
        let cols = *self.shape.last().unwrap_or(&1).max(&1);
        let mut out = self.clone();
        for row in out.data.chunks_mut(cols) {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
            for v in row.iter_mut() {
                *v = ((*v as f64 - m).exp() / s) as f32;
            }
        }
        out
    }
}

/// Converts one safetensors view to f32, accepting F32, F16 and BF16.
pub(crate) fn view_to_f32(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let dtype = crate::weights::Dtype::from_safetensors(view.dtype());
    crate::weights::state_dict::decode_f32(name, &dtype, view.data())
}

/// Parses safetensors bytes, mapping the parser's errors to [`Error::Safetensors`].
pub(crate) fn parse_safetensors<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads every tensor of a safetensors file as f32 (F32, F16 or BF16 accepted; the integer
/// `num_batches_tracked` buffers of torchvision state_dicts are skipped).
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    safetensors_from_bytes(&read_file(path)?, path)
}

/// [`read_safetensors`] on bytes in memory (a `fetch`ed file in the browser); `label` names
/// them in errors.
pub fn safetensors_from_bytes(bytes: &[u8], label: &Path) -> Result<HashMap<String, Tensor>> {
    let path = label;
    let st = parse_safetensors(bytes, path)?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if name.ends_with("num_batches_tracked")
            && !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16)
        {
            continue; // BatchNorm's integer step counter in torchvision state_dicts
        }
        let data = view_to_f32(&name, &view)?;
        out.insert(
            name,
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// Reads the image batch named `input` (`[N, 3, H, W]`, f32) from a safetensors file.
pub fn read_input_tensor(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let st = parse_safetensors(&bytes, path)?;
    let view = st.tensor("input").map_err(|_| {
        let names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        Error::MissingTensor {
            name: "input".into(),
            context: format!(
                " in {} (it holds: {})",
                path.display(),
                if names.is_empty() {
                    "nothing".to_string()
                } else {
                    names.join(", ")
                }
            ),
        }
    })?;
    let data = view_to_f32("input", &view)?;
    let t = Tensor {
        shape: view.shape().to_vec(),
        data,
    };
    check_image_batch(&t)?;
    Ok(t)
}

/// Checks that a tensor is an image batch `[N, 3, H, W]` with N, H, W >= 1 and finite values.
pub fn check_image_batch(t: &Tensor) -> Result<()> {
    if t.shape.len() != 4 {
        return Err(Error::Input(format!(
            "input must have rank 4 [N, 3, H, W]; got shape {:?}",
            t.shape
        )));
    }
    if t.shape[1] != 3 {
        return Err(Error::Input(format!(
            "input must have 3 channels [N, 3, H, W]; got shape {:?}",
            t.shape
        )));
    }
    if t.shape.contains(&0) {
        return Err(Error::Input(format!(
            "input has an empty dimension: shape {:?}",
            t.shape
        )));
    }
    if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::Input(format!(
            "input holds a non-finite value ({}) at flat index {i}",
            t.data[i]
        )));
    }
    Ok(())
}

/// Writes f32 tensors to a safetensors file.
pub fn write_safetensors(path: impl AsRef<Path>, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| bytemuck::cast_slice::<f32, u8>(&t.data).to_vec())
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| Error::Input(format!("cannot write tensor `{name}`: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        reason: format!("cannot serialize: {e}"),
    })?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
