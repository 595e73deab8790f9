//! Class names: ImageNet-1k's 1000, in torchvision's order (`assets/imagenet_classes.txt`).

/// ImageNet-1k's class names, one per line, in torchvision's order.
pub const IMAGENET_CLASSES: &str = include_str!("../assets/imagenet_classes.txt");

/// The name of class `i` of a head with `classes` outputs: ImageNet's name for a 1000-class
/// head, `class N` otherwise (and `?` past the list).
///
/// ```
/// use regnet_wgpu::classes::class_name;
/// assert_eq!(class_name(1000, 281), "tabby");
/// assert_eq!(class_name(10, 3), "class 3");
/// ```
pub fn class_name(classes: usize, i: usize) -> String {
    if classes == 1000 {
        IMAGENET_CLASSES.lines().nth(i).unwrap_or("?").to_string()
    } else {
        format!("class {i}")
    }
}

/// One class of a classification: its index, its name and its softmax probability (what
/// [`top_classes`] gives; the web APIs hand it to JavaScript as `{ index, name, probability }`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Class {
    /// Index in the model's classes.
    pub index: usize,
    /// ImageNet's name for it (or `class N` for other heads: [`class_name`]).
    pub name: String,
    /// Softmax probability.
    pub probability: f32,
}

/// The `k` most probable classes of row `row` of `logits` (`[N, classes]`), most probable
/// first.
///
/// ```
/// use regnet_wgpu::{classes::{class_name, top_classes}, Tensor};
/// let logits = Tensor::new(vec![1, 1000], (0..1000).map(|i| i as f32 / 100.0).collect())?;
/// let top = top_classes(&logits, 0, 2);
/// assert_eq!((top[0].index, top[1].index), (999, 998));
/// assert_eq!(top[0].name, class_name(1000, 999));
/// assert!(top[0].probability > top[1].probability);
/// # Ok::<(), regnet_wgpu::Error>(())
/// ```
pub fn top_classes(logits: &crate::Tensor, row: usize, k: usize) -> Vec<Class> {
    let classes = logits.shape[1];
    logits
        .softmax_rows()
        .top_k(row, k)
        .into_iter()
        .map(|(index, probability)| Class {
            index,
            name: class_name(classes, index),
            probability,
        })
        .collect()
}
