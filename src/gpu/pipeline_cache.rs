//! Compiled pipelines kept on disk between processes (`wgpu::PipelineCache`).
//!
//! Compiling the kernels is most of a first run's time (on lavapipe, seconds; see
//! BENCHMARKS.md, "Cold start"). Where wgpu supports application-managed pipeline caches
//! (Vulkan, with the `pipeline-cache` feature), [`GpuContext::with_pipeline_cache`] hands the
//! driver the data a previous process saved, and [`GpuContext::save_pipeline_cache`] writes
//! what it holds now. Elsewhere (Metal, DX12, WebGPU, a host's device without the feature) both
//! are no-ops, and drivers keep whatever caches of their own they have.
//!
//! A cache file is `MAGIC`, a 64-bit FNV-1a checksum of the payload, then the payload (what
//! `PipelineCache::get_data` returned: wgpu's own header, which names the adapter and driver,
//! then the driver's data). A file that is truncated, corrupt or from another adapter or
//! driver is ignored (the checksum, then wgpu's and the driver's headers) and replaced at the
//! next save; it is never an error, since the cache only saves time.
//!
//! [`GpuContext::with_pipeline_cache`]: super::GpuContext::with_pipeline_cache
//! [`GpuContext::save_pipeline_cache`]: super::GpuContext::save_pipeline_cache

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The first bytes of a cache file (format version 1).
const MAGIC: &[u8; 8] = b"RNWPC\x00\x00\x01";

/// A device's pipeline cache and the file it persists to.
#[derive(Debug)]
pub struct DiskPipelineCache {
    /// The cache every pipeline of the context is created with.
    pub cache: wgpu::PipelineCache,
    /// Where [`DiskPipelineCache::save`] writes it.
    pub path: PathBuf,
    /// Whether the file held a valid cache when this one was made.
    pub loaded: bool,
}

impl DiskPipelineCache {
    /// The cache for `device` (on `info`'s adapter) in directory `dir`, seeded from its file
    /// when that holds a valid one; `None` where wgpu cannot cache pipelines for this device.
    pub fn open(device: &wgpu::Device, info: &wgpu::AdapterInfo, dir: &Path) -> Option<Self> {
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let path = dir.join(wgpu::util::pipeline_cache_key(info)?);
        let data = std::fs::read(&path).ok().and_then(|b| unwrap_payload(&b));
        // SAFETY: `data` is what `PipelineCache::get_data` returned for an adapter with this
        // key, as written by `save` and checked against its checksum (wgpu checks its own
        // header, naming adapter, driver and size, before handing the rest to the driver).
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("regnet-wgpu pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(DiskPipelineCache {
            cache,
            path,
            loaded: data.is_some(),
        })
    }

    /// Writes the cache to its file (atomically: a temporary file renamed over it); false when
    /// the driver had nothing to give.
    pub fn save(&self) -> Result<bool> {
        let Some(payload) = self.cache.get_data() else {
            return Ok(false);
        };
        write_atomically(&self.path, &wrap_payload(&payload))?;
        Ok(true)
    }
}

/// Writes `bytes` to `path` through a temporary file renamed over it (its folder made first),
/// so that a reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Where the programs keep pipeline caches: `$XDG_CACHE_HOME/regnet-wgpu`, else
/// `$HOME/.cache/regnet-wgpu`, else `%LOCALAPPDATA%\regnet-wgpu`; `None` when none is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .or_else(|| var("LOCALAPPDATA"))
        .map(|d| d.join("regnet-wgpu"))
}

/// 64-bit FNV-1a: enough to tell a damaged file from an intact one.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A cache file's bytes: magic, checksum, payload.
fn wrap_payload(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&checksum(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a cache file, if its magic and checksum hold.
fn unwrap_payload(file: &[u8]) -> Option<Vec<u8>> {
    let rest = file.strip_prefix(MAGIC)?;
    let (sum, payload) = rest.split_first_chunk::<8>()?;
    (u64::from_le_bytes(*sum) == checksum(payload)).then(|| payload.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_damage_is_refused() {
        let payload = b"wgpu header and driver data".to_vec();
        let file = wrap_payload(&payload);
        assert_eq!(unwrap_payload(&file), Some(payload.clone()));
        // Truncated, one byte flipped, another format, empty.
        assert_eq!(unwrap_payload(&file[..file.len() - 1]), None);
        let mut flipped = file.clone();
        flipped[20] ^= 1;
        assert_eq!(unwrap_payload(&flipped), None);
        let mut other = file.clone();
        other[7] = 2;
        assert_eq!(unwrap_payload(&other), None);
        assert_eq!(unwrap_payload(&[]), None);
        assert_eq!(unwrap_payload(&file[..12]), None);
    }

    #[test]
    fn fnv1a_matches_its_published_vectors() {
        assert_eq!(checksum(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(checksum(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(checksum(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
