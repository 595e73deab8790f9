//! What gpu_infer classifies: image files and folders of them, decoded and transformed on CPU
//! threads one batch ahead of the model.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use regnet_wgpu::preprocess::{load_rgb8, stack, EvalTransform};
use regnet_wgpu::{Error, Result, Tensor};

/// The bundled sample photo (CC0, scikit-image's `chelsea`), built into the program.
pub const SAMPLE_PHOTO: &[u8] = include_bytes!("../../assets/chelsea.png");
pub const SAMPLE_NAME: &str = "assets/chelsea.png (bundled)";

/// Where an image comes from.
#[derive(Clone, Debug)]
pub enum Source {
    File(PathBuf),
    Bundled,
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Bundled => SAMPLE_NAME.to_string(),
        }
    }
}

/// Whether a file found in a folder is one to classify (by extension; files named on the
/// command line are tried whatever their name).
fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// The images named by `args`: files as given, folders walked (recursively, sorted by path) for
/// their `.jpg`, `.jpeg` and `.png` files. A path that does not exist is an error.
pub fn collect(args: &[PathBuf]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let mut found = Vec::new();
            walk(a, &mut found)?;
            found.sort();
            out.extend(found.into_iter().map(Source::File));
        } else if a.exists() {
            out.push(Source::File(a.clone()));
        } else {
            return Err(io_error(a, std::io::ErrorKind::NotFound.into()));
        }
    }
    Ok(out)
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let path = entry.map_err(|e| io_error(dir, e))?.path();
        if path.is_dir() {
            walk(&path, found)?;
        } else if is_image_name(&path) {
            found.push(path);
        }
    }
    Ok(())
}

/// One image of a batch: its source and its `[3, H, W]` tensor, or why it could not be read.
pub struct Item {
    pub source: String,
    pub image: Result<Tensor>,
}

/// A batch of images and the CPU time its threads spent decoding and transforming them.
pub struct Batch {
    pub items: Vec<Item>,
    pub decode: Duration,
    pub transform: Duration,
}

impl Batch {
    /// The images that could be read, stacked `[N, 3, H, W]` and padded with zero images to
    /// `pad_to` (a runner built for a fixed batch), with their indices in `items`.
    pub fn input(&self, pad_to: usize) -> Result<Option<(Tensor, Vec<usize>)>> {
        let ok: Vec<usize> = (0..self.items.len())
            .filter(|&i| self.items[i].image.is_ok())
            .collect();
        let mut images: Vec<Tensor> = ok
            .iter()
            .filter_map(|&i| self.items[i].image.as_ref().ok().cloned())
            .collect();
        let Some(first) = images.first() else {
            return Ok(None);
        };
        let zero = Tensor::zeros(first.shape.clone());
        images.resize(pad_to.max(images.len()), zero);
        Ok(Some((stack(&images)?, ok)))
    }
}

/// Decodes and transforms one image, timing the two steps.
fn load(source: &Source, tf: &EvalTransform) -> (Item, Duration, Duration) {
    let t0 = Instant::now();
    let rgb = match source {
        Source::File(p) => load_rgb8(p),
        Source::Bundled => image::load_from_memory(SAMPLE_PHOTO)
            .map(|i| i.to_rgb8())
            .map_err(|e| Error::Input(format!("bundled sample photo: {e}"))),
    };
    let decode = t0.elapsed();
    let t1 = Instant::now();
    let image = rgb.and_then(|img| tf.apply(&img));
    let item = Item {
        source: source.name(),
        image,
    };
    (item, decode, t1.elapsed())
}

/// Batches of `batch` images, decoded and transformed on rayon's threads by a producer
/// thread that stays one batch ahead of the consumer.
pub fn batches(sources: Vec<Source>, batch: usize, tf: EvalTransform) -> Receiver<Batch> {
    let (tx, rx) = sync_channel(1);
    std::thread::spawn(move || {
        for chunk in sources.chunks(batch.max(1)) {
            let loaded: Vec<_> = chunk.par_iter().map(|s| load(s, &tf)).collect();
            let mut b = Batch {
                items: Vec::with_capacity(loaded.len()),
                decode: Duration::ZERO,
                transform: Duration::ZERO,
            };
            for (item, d, t) in loaded {
                b.items.push(item);
                b.decode += d;
                b.transform += t;
            }
            if tx.send(b).is_err() {
                return; // the consumer stopped
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_by_extension() {
        assert!(is_image_name(Path::new("a/b.JPG")));
        assert!(is_image_name(Path::new("b.png")));
        assert!(is_image_name(Path::new("b.jpeg")));
        assert!(!is_image_name(Path::new("b.txt")));
        assert!(!is_image_name(Path::new("jpg")));
    }
}
