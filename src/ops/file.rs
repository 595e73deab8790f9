//! An op's tensors in a safetensors file, as the `op` example and the tests read them: the
//! inputs and parameters under torch's argument names, optionally a reference `output` (kept
//! in float64), and the op's name and parameters in the file's metadata (`op`, then torch's
//! keyword names in the `--param` syntax).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::tensor::{parse_safetensors, read_file, view_to_f32, Tensor};

/// What an op file holds.
#[derive(Clone, Debug, Default)]
pub struct OpFile {
    /// Every tensor but `output`, as f32 (F32, F16, BF16; F64 when it fits f32).
    pub tensors: HashMap<String, Tensor>,
    /// The reference `output`, if the file has one: its shape and values in f64.
    pub output: Option<(Vec<usize>, Vec<f64>)>,
    /// The file's metadata (`op` and the op's parameters, in the fixtures).
    pub metadata: BTreeMap<String, String>,
}

impl OpFile {
    /// Reads an op file.
    pub fn read(path: impl AsRef<Path>) -> Result<OpFile> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        let st = parse_safetensors(&bytes, path)?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| Error::Safetensors {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut file = OpFile {
            metadata: meta
                .metadata()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            ..Default::default()
        };
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            if view.dtype() == Dtype::F64 {
                let v: Vec<f64> = view
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                if name == "output" {
                    file.output = Some((shape, v));
                    continue;
                }
                if let Some(i) = v
                    .iter()
                    .position(|x| !x.is_finite() || x.abs() > f32::MAX as f64)
                {
                    return Err(Error::InvalidTensor {
                        name,
                        path: path.to_path_buf(),
                        reason: format!("value {} at flat index {i} does not fit f32", v[i]),
                    });
                }
                let data = v.iter().map(|&x| x as f32).collect();
                file.tensors.insert(name, Tensor::new(shape, data)?);
                continue;
            }
            let data = view_to_f32(&name, &view)?;
            if name == "output" {
                file.output = Some((shape, data.iter().map(|&x| x as f64).collect()));
            } else {
                file.tensors.insert(name, Tensor::new(shape, data)?);
            }
        }
        Ok(file)
    }

    /// The op's parameters from the metadata (every entry but `op`), in the `--param` syntax.
    pub fn params(&self) -> Vec<(String, String)> {
        self.metadata
            .iter()
            .filter(|(k, _)| *k != "op")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
