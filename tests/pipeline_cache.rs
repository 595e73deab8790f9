//! The on-disk pipeline cache (`GpuContext::with_pipeline_cache`): a runner whose pipelines
//! come from a cache a previous context saved, or from a damaged cache file, computes
//! torchvision's logits like any other.

mod common;

use common::{Fixture, F32_REL_TOL};
use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions};

/// A fresh context (not the shared one of `common::gpu_ctx`) with a pipeline cache in `dir`.
fn context_with_cache(dir: &std::path::Path) -> GpuContext {
    GpuContext::new(Precision::F32)
        .expect("GPU tests need an adapter")
        .with_pipeline_cache(dir)
}

/// tiny_y on a context with a cache in `dir`; checks its logits against torchvision's and
/// saves the cache. Returns whether the cache was loaded from a valid file, and was saved.
fn run_tiny_y(dir: &std::path::Path) -> (bool, bool) {
    let fx = Fixture::load(&common::fixtures_dir(), "tiny_y");
    let plan = fx.plan();
    let weights = fx.load_weights(&plan);
    let ctx = context_with_cache(dir);
    let opts = RunnerOptions {
        batch: fx.input().shape[0],
        ..Default::default()
    };
    let runner = GpuRunner::new(&ctx, &plan, &weights, opts).unwrap();
    let logits = runner.run(fx.input()).unwrap();
    common::assert_close(
        "tiny_y (pipeline cache)",
        &logits,
        &fx.io["logits"],
        F32_REL_TOL,
    );
    let saved = ctx.save_pipeline_cache().unwrap();
    (ctx.pipeline_cache_loaded(), saved)
}

#[test]
fn cached_pipelines_compute_the_same_logits() {
    let dir = std::env::temp_dir().join(format!("regnet-pipeline-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if context_with_cache(&dir).pipeline_cache().is_none() {
        common::skip_optional("pipeline cache: this adapter has no `pipeline-cache` feature");
        return;
    }
    let (loaded, saved) = run_tiny_y(&dir);
    assert!(!loaded, "an empty folder holds no cache");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(files.len(), usize::from(saved), "{files:?}");
    if !saved {
        common::skip_optional("pipeline cache: the driver returned no data to save");
        return;
    }
    // A second context starts from the saved file.
    let (loaded, _) = run_tiny_y(&dir);
    assert!(loaded, "the saved cache was not loaded");
    // A damaged file (one byte flipped, then truncated) is ignored, then replaced.
    for damage in [
        |b: &mut Vec<u8>| {
            let last = b.len() - 1;
            b[last] ^= 0x5a
        },
        |b: &mut Vec<u8>| b.truncate(b.len() / 2),
    ] {
        let mut bytes = std::fs::read(&files[0]).unwrap();
        damage(&mut bytes);
        std::fs::write(&files[0], &bytes).unwrap();
        let (loaded, _) = run_tiny_y(&dir);
        assert!(!loaded, "a damaged cache file was used");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
