//! PyTorch checkpoints: `torch.save(state_dict)` files, read without Python.
//!
//! Two containers hold the same pickle ([`super::pickle`] reads it):
//!
//! * **zip** (torch's default since 1.6): `<archive>/data.pkl` (the pickle), `<archive>/data/<key>`
//!   (each storage's raw bytes, stored uncompressed), `<archive>/byteorder` (`little`; absent
//!   before torch 1.10), and a few entries not needed here. Storages are borrowed from the
//!   file's bytes, their CRC-32 checked.
//! * **legacy** (`_use_new_zipfile_serialization=False`): five pickles in a row (torch's magic
//!   number `0x1950a86a20f9469cfc6c`, the protocol version, `sys_info`, the state_dict, the list
//!   of storage keys), then for each key in that order an 8-byte little-endian element count and
//!   the storage's raw bytes.
//!
//! A tensor is `_rebuild_tensor_v2(storage, offset, size, stride, ...)`: a strided view of a
//! storage. Offsets, sizes and strides are checked against the storage (overflow included);
//! contiguous views are borrowed, others (a transposed weight, a slice) gathered into a
//! contiguous copy, which a view larger than its storage (overlapping strides) may not ask for.
//!
//! # Why a reader of our own
//!
//! Evaluated (2026-12): `serde-pickle` 1.2 (well kept, serde-based) does not implement
//! BINPERSID/PERSID, which torch uses for every storage, and maps unknown globals to opaque
//! values rather than refusing them. `repugnant-pickle` 0.0.1 ("low effort scraping", one
//! release, `zip` 0.6, anyhow errors) reads only the zip format. candle's pickle reader lives
//! in `candle-core`, a whole tensor library to pull in for 400 lines. So the pickle reader
//! here is small and restricted (a whitelist of opcodes and globals, nothing executed), and
//! the zip container is read with the `zip` crate (no compression features: torch stores its
//! entries uncompressed).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Cursor;

use crate::error::PthError;

use super::pickle::{self, StorageDtype, StorageRef, TensorRef, Value};
use super::state_dict::{Dtype, RawTensor};

/// torch's magic number, the legacy format's first pickle.
const MAGIC: i128 = 0x1950a86a20f9469cfc6c;

/// Storage protocol version the legacy format writes (and the only one torch reads).
const LEGACY_PROTOCOL: i128 = 1001;

/// True when `bytes` start with a pickle of torch's magic number (the legacy format).
pub(crate) fn is_legacy(bytes: &[u8]) -> bool {
    // The magic-number pickle is 15 bytes at protocol 2; a little more leaves room for FRAME.
    let head = &bytes[..bytes.len().min(64)];
    head.first() == Some(&0x80) && matches!(pickle::load(head), Ok((Value::Int(MAGIC), _)))
}

impl From<StorageDtype> for Dtype {
    fn from(d: StorageDtype) -> Dtype {
        match d {
            StorageDtype::F32 => Dtype::F32,
            StorageDtype::F16 => Dtype::F16,
            StorageDtype::BF16 => Dtype::BF16,
            other => Dtype::Other(other.name().to_string()),
        }
    }
}

/// Reads a zip-format checkpoint.
pub(crate) fn read_zip(bytes: &[u8]) -> Result<Vec<(String, RawTensor<'_>)>, PthError> {
    let mut ar = zip::ZipArchive::new(Cursor::new(bytes)).map_err(zip_err)?;
    let pickles: Vec<String> = ar
        .file_names_raw()
        .filter_map(|n| std::str::from_utf8(n).ok())
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .collect();
    let pkl_name = match pickles.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(PthError::Zip {
                reason: "no `<archive>/data.pkl` entry: not a torch.save checkpoint".into(),
            })
        }
        _ => {
            return Err(PthError::Zip {
                reason: format!("{} `<archive>/data.pkl` entries", pickles.len()),
            })
        }
    };
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    if let Some(order) = entry(&mut ar, bytes, &format!("{prefix}byteorder"))? {
        if order != b"little" {
            return Err(PthError::Unsupported {
                what: format!(
                    "byte order `{}` (only little-endian checkpoints are read)",
                    String::from_utf8_lossy(&order[..order.len().min(16)])
                ),
            });
        }
    }
    let pkl = entry(&mut ar, bytes, &pkl_name)?.ok_or(PthError::Truncated { what: "pickle" })?;
    let (value, _) = pickle::load(pkl)?;
    let refs = state_dict_refs(value)?;
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut out = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        let key = &t.storage.key;
        let data = match storages.get(key) {
            Some(d) => *d,
            None => {
                let d =
                    entry(&mut ar, bytes, &format!("{prefix}data/{key}"))?.ok_or_else(|| {
                        PthError::MissingStorage {
                            tensor: name.clone(),
                            key: key.clone(),
                        }
                    })?;
                check_storage_size(&t.storage, d.len() as u64)?;
                storages.insert(key.clone(), d);
                d
            }
        };
        let raw = view(&name, &t, data)?;
        out.push((name, raw));
    }
    Ok(out)
}

fn zip_err(e: zip::result::ZipError) -> PthError {
    PthError::Zip {
        reason: e.to_string(),
    }
}

/// The entry `name` of the archive, if it has one (see [`stored_entry`]).
fn entry<'a>(
    ar: &mut zip::ZipArchive<Cursor<&'a [u8]>>,
    bytes: &'a [u8],
    name: &str,
) -> Result<Option<&'a [u8]>, PthError> {
    if ar.index_for_name(name).is_none() {
        return Ok(None);
    }
    let f = ar.by_name(name).map_err(zip_err)?;
    stored_entry(bytes, name, &f).map(Some)
}

/// The bytes of an uncompressed zip entry, borrowed from the archive, CRC-32 checked.
fn stored_entry<'a>(
    bytes: &'a [u8],
    name: &str,
    f: &zip::read::ZipFile<'_, Cursor<&[u8]>>,
) -> Result<&'a [u8], PthError> {
    if f.compression() != zip::CompressionMethod::Stored {
        return Err(PthError::Zip {
            reason: format!(
                "entry `{name}` is compressed ({}); torch.save stores entries uncompressed",
                f.compression()
            ),
        });
    }
    let bad = |what: &str| PthError::Zip {
        reason: format!("entry `{name}`: {what}"),
    };
    if f.size() != f.compressed_size() {
        return Err(bad("stored, but its sizes disagree"));
    }
    let start = f.data_start().ok_or_else(|| bad("no data offset"))?;
    let data = usize::try_from(start)
        .ok()
        .and_then(|s| Some((s, s.checked_add(usize::try_from(f.size()).ok()?)?)))
        .and_then(|(s, e)| bytes.get(s..e))
        .ok_or(PthError::Truncated {
            what: "zip archive",
        })?;
    if crc32fast::hash(data) != f.crc32() {
        return Err(bad("CRC-32 mismatch (the file is corrupt)"));
    }
    Ok(data)
}

/// Reads a legacy-format checkpoint: five pickles (magic number, protocol, sys_info, the
/// state_dict, the storage keys), then each storage's element count and bytes.
pub(crate) fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, RawTensor<'_>)>, PthError> {
    let mut pos = 0;
    let mut next = || -> Result<Value, PthError> {
        let (v, n) = pickle::load(&bytes[pos..]).map_err(|e| match e {
            PthError::Truncated { .. } => PthError::Truncated {
                what: "legacy checkpoint's pickles",
            },
            e => e,
        })?;
        pos += n;
        Ok(v)
    };
    check_legacy_header(next()?, next()?, next()?)?;
    let refs = state_dict_refs(next()?)?;
    let keys = storage_keys(next()?)?;
    let kinds = storage_kinds(&refs)?;
    let storages = legacy_storages(&bytes[pos..], &keys, &kinds)?;
    let mut out = Vec::with_capacity(refs.len());
    for (name, t) in &refs {
        let data =
            storages
                .get(t.storage.key.as_str())
                .ok_or_else(|| PthError::MissingStorage {
                    tensor: name.clone(),
                    key: t.storage.key.clone(),
                })?;
        out.push((name.clone(), view(name, t, data)?));
    }
    Ok(out)
}

/// The legacy header: torch's magic number, protocol 1001, and a little-endian writer.
fn check_legacy_header(magic: Value, protocol: Value, sys_info: Value) -> Result<(), PthError> {
    if magic != Value::Int(MAGIC) {
        return Err(PthError::NotAStateDict {
            reason: "no torch magic number".into(),
        });
    }
    if protocol != Value::Int(LEGACY_PROTOCOL) {
        return Err(PthError::Unsupported {
            what: format!("legacy protocol version {protocol:?} (torch writes 1001)"),
        });
    }
    let Value::Dict { items, .. } = sys_info else {
        return Err(PthError::NotAStateDict {
            reason: "the legacy header's sys_info is not a dict".into(),
        });
    };
    let little = items
        .iter()
        .any(|(k, v)| *k == Value::Str("little_endian".into()) && *v == Value::Bool(true));
    if !little {
        return Err(PthError::Unsupported {
            what: "a legacy checkpoint not written on a little-endian machine".into(),
        });
    }
    Ok(())
}

/// The list of storage keys, in the order their data follows.
fn storage_keys(v: Value) -> Result<Vec<String>, PthError> {
    match v {
        Value::List(items, _) => items
            .into_iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s),
                other => Err(PthError::Malformed {
                    offset: 0,
                    reason: format!("a storage key is {}, not a str", other.kind()),
                }),
            })
            .collect(),
        other => Err(PthError::NotAStateDict {
            reason: format!("the storage key list is {}", other.kind()),
        }),
    }
}

/// Each storage's type and size, from the tensors that use it (which must agree).
fn storage_kinds(refs: &[(String, TensorRef)]) -> Result<HashMap<&str, &StorageRef>, PthError> {
    let mut kinds: HashMap<&str, &StorageRef> = HashMap::new();
    for (_, t) in refs {
        let s = &t.storage;
        if let Some(prev) = kinds.insert(&s.key, s) {
            if prev.dtype != s.dtype || prev.numel != s.numel {
                return Err(PthError::Malformed {
                    offset: 0,
                    reason: format!("storage `{}` is referenced with two types or sizes", s.key),
                });
            }
        }
    }
    Ok(kinds)
}

/// The storages' bytes after the pickles: for each key, its element count (checked against
/// the tensors') and its data.
fn legacy_storages<'k, 'b>(
    mut rest: &'b [u8],
    keys: &'k [String],
    kinds: &HashMap<&str, &StorageRef>,
) -> Result<HashMap<&'k str, &'b [u8]>, PthError> {
    let truncated = || PthError::Truncated {
        what: "legacy storage data",
    };
    let mut storages = HashMap::new();
    for key in keys {
        let s = kinds.get(key.as_str()).ok_or_else(|| PthError::Malformed {
            offset: 0,
            reason: format!("storage `{key}` is listed but no tensor uses it"),
        })?;
        if rest.len() < 8 {
            return Err(truncated());
        }
        let (count, tail) = rest.split_at(8);
        let count = u64::from_le_bytes(count.try_into().expect("8 bytes"));
        if count != s.numel {
            return Err(PthError::StorageSize {
                key: key.clone(),
                expected: s.numel.saturating_mul(s.dtype.size() as u64),
                found: count.saturating_mul(s.dtype.size() as u64),
            });
        }
        let n = storage_bytes(s)?;
        if tail.len() < n {
            return Err(truncated());
        }
        let (data, tail) = tail.split_at(n);
        if storages.insert(key.as_str(), data).is_some() {
            return Err(PthError::Malformed {
                offset: 0,
                reason: format!("storage `{key}` is listed twice"),
            });
        }
        rest = tail;
    }
    Ok(storages)
}

/// The storage's size in bytes, checked.
fn storage_bytes(s: &StorageRef) -> Result<usize, PthError> {
    s.numel
        .checked_mul(s.dtype.size() as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| PthError::StorageSize {
            key: s.key.clone(),
            expected: u64::MAX,
            found: 0,
        })
}

fn check_storage_size(s: &StorageRef, found: u64) -> Result<(), PthError> {
    let expected = s.numel.checked_mul(s.dtype.size() as u64);
    if expected != Some(found) {
        return Err(PthError::StorageSize {
            key: s.key.clone(),
            expected: expected.unwrap_or(u64::MAX),
            found,
        });
    }
    Ok(())
}

/// The pickle's object as (name, tensor) pairs: it must be a dict of str to tensors.
fn state_dict_refs(v: Value) -> Result<Vec<(String, TensorRef)>, PthError> {
    let Value::Dict { items, .. } = v else {
        return Err(PthError::NotAStateDict {
            reason: format!("the pickle holds {}, not a dict", v.kind()),
        });
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        let Value::Str(name) = k else {
            return Err(PthError::NotAStateDict {
                reason: format!("a key is {}, not a str", k.kind()),
            });
        };
        let Value::Tensor(t) = v else {
            return Err(PthError::NotAStateDict {
                reason: format!(
                    "`{name}` is {}, not a tensor (a training checkpoint? save its state_dict)",
                    v.kind()
                ),
            });
        };
        if !seen.insert(name.clone()) {
            return Err(PthError::NotAStateDict {
                reason: format!("`{name}` appears twice"),
            });
        }
        out.push((name, *t));
    }
    Ok(out)
}

/// The tensor `t` of storage bytes `data` as a contiguous raw tensor: borrowed when the view is
/// contiguous, gathered otherwise. Every index is checked to fall inside the storage.
fn view<'a>(name: &str, t: &TensorRef, data: &'a [u8]) -> Result<RawTensor<'a>, PthError> {
    let out_of_range = |reason: String| PthError::OutOfRange {
        tensor: name.to_string(),
        reason,
    };
    let es = t.storage.dtype.size();
    let storage_numel = (data.len() / es) as u64;
    let overflow = || out_of_range("its sizes or strides overflow".into());
    let mut shape = Vec::with_capacity(t.shape.len());
    let mut numel: u64 = 1;
    for &s in &t.shape {
        numel = numel.checked_mul(s).ok_or_else(overflow)?;
        shape.push(usize::try_from(s).map_err(|_| overflow())?);
    }
    if numel == 0 {
        if t.offset > storage_numel {
            return Err(out_of_range(format!(
                "offset {} is past its storage's {storage_numel} elements",
                t.offset
            )));
        }
        return Ok(RawTensor {
            dtype: t.storage.dtype.into(),
            shape,
            data: Cow::Borrowed(&[]),
        });
    }
    // The last element a view reaches: offset + sum((size - 1) * stride).
    let mut last = t.offset;
    for (&s, &st) in t.shape.iter().zip(&t.stride) {
        last = (s - 1)
            .checked_mul(st)
            .and_then(|d| last.checked_add(d))
            .ok_or_else(overflow)?;
    }
    if last >= storage_numel {
        return Err(out_of_range(format!(
            "offset {}, sizes {:?} and strides {:?} reach element {last} of a storage of {storage_numel}",
            t.offset, t.shape, t.stride
        )));
    }
    if numel > storage_numel {
        return Err(out_of_range(format!(
            "{numel} elements overlap in a storage of {storage_numel} (a broadcast view)"
        )));
    }
    // Bounded by the storage from here on: every product fits in usize.
    let (offset, numel) = (t.offset as usize, numel as usize);
    let contiguous = {
        let mut expect = 1u64;
        let mut ok = true;
        for (&s, &st) in t.shape.iter().zip(&t.stride).rev() {
            if s != 1 && st != expect {
                ok = false;
                break;
            }
            expect *= s;
        }
        ok
    };
    let data = if contiguous {
        Cow::Borrowed(&data[offset * es..(offset + numel) * es])
    } else {
        let mut out = Vec::with_capacity(numel * es);
        let strides: Vec<usize> = t.stride.iter().map(|&s| s as usize).collect();
        let mut idx = vec![0usize; shape.len()];
        for _ in 0..numel {
            let at: usize = offset + idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>();
            out.extend_from_slice(&data[at * es..(at + 1) * es]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Cow::Owned(out)
    };
    Ok(RawTensor {
        dtype: t.storage.dtype.into(),
        shape,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tref(offset: u64, shape: &[u64], stride: &[u64], numel: u64) -> TensorRef {
        TensorRef {
            storage: StorageRef {
                dtype: StorageDtype::F32,
                key: "0".into(),
                numel,
            },
            offset,
            shape: shape.to_vec(),
            stride: stride.to_vec(),
        }
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn values(r: &RawTensor<'_>) -> Vec<f32> {
        r.to_f32("t").unwrap()
    }

    #[test]
    fn views_contiguous_offset_and_transposed() {
        let data = f32s(&[0., 1., 2., 3., 4., 5.]);
        let r = view("t", &tref(0, &[2, 3], &[3, 1], 6), &data).unwrap();
        assert!(matches!(r.data, Cow::Borrowed(_)));
        assert_eq!(values(&r), [0., 1., 2., 3., 4., 5.]);
        let r = view("t", &tref(2, &[2], &[1], 6), &data).unwrap();
        assert_eq!(values(&r), [2., 3.]);
        // The transpose of a [2, 3] row-major matrix: shape [3, 2], strides [1, 3].
        let r = view("t", &tref(0, &[3, 2], &[1, 3], 6), &data).unwrap();
        assert!(matches!(r.data, Cow::Owned(_)));
        assert_eq!(values(&r), [0., 3., 1., 4., 2., 5.]);
        // Size-1 dimensions may have any stride.
        let r = view("t", &tref(1, &[1, 2], &[99, 1], 6), &data).unwrap();
        assert_eq!(values(&r), [1., 2.]);
        let r = view("t", &tref(6, &[0, 2], &[2, 1], 6), &data).unwrap();
        assert!(r.data.is_empty());
    }

    #[test]
    fn views_out_of_range_are_refused() {
        let data = f32s(&[0., 1., 2., 3.]);
        for (off, shape, stride) in [
            (3u64, vec![2u64], vec![1u64]),
            (0, vec![5], vec![1]),
            (0, vec![2, 2], vec![3, 1]),
            (u64::MAX, vec![1], vec![1]),
            (0, vec![2, u64::MAX], vec![1, 1]),
            (0, vec![3], vec![u64::MAX / 2]),
            (5, vec![0], vec![1]),
            (0, vec![8], vec![0]),
        ] {
            let e = view("t", &tref(off, &shape, &stride, 4), &data).unwrap_err();
            assert!(
                matches!(&e, PthError::OutOfRange { tensor, .. } if tensor == "t"),
                "{off} {shape:?} {stride:?}: {e:?}"
            );
        }
    }

    #[test]
    fn legacy_is_told_by_its_magic_number() {
        let mut p = vec![0x80, 2, 0x8a, 10];
        p.extend(&MAGIC.to_le_bytes()[..10]);
        p.push(b'.');
        assert!(is_legacy(&p));
        p[5] ^= 1;
        assert!(!is_legacy(&p));
        assert!(!is_legacy(b""));
        assert!(!is_legacy(b"\x80\x02K\x01."));
    }
}
