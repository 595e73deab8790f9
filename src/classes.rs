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
