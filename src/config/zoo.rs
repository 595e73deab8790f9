//! The named models of torchvision's (and pycls's) RegNet zoo.

use super::RegNetParams;
use crate::error::{Error, Result};

/// (name, depth, w0, wa, wm, group_width, se_ratio) of a zoo model.
type Entry = (&'static str, usize, usize, f64, f64, usize, Option<f64>);

/// Every zoo model, with torchvision's parameters.
const ZOO: &[Entry] = &[
    ("regnet_x_200mf", 13, 24, 36.44, 2.49, 8, None),
    ("regnet_x_400mf", 22, 24, 24.48, 2.54, 16, None),
    ("regnet_x_600mf", 16, 48, 36.97, 2.24, 24, None),
    ("regnet_x_800mf", 16, 56, 35.73, 2.28, 16, None),
    ("regnet_x_1_6gf", 18, 80, 34.01, 2.25, 24, None),
    ("regnet_x_3_2gf", 25, 88, 26.31, 2.25, 48, None),
    ("regnet_x_4_0gf", 23, 96, 38.65, 2.43, 40, None),
    ("regnet_x_6_4gf", 17, 184, 60.83, 2.07, 56, None),
    ("regnet_x_8gf", 23, 80, 49.56, 2.88, 120, None),
    ("regnet_x_12gf", 19, 168, 73.36, 2.37, 112, None),
    ("regnet_x_16gf", 22, 216, 55.59, 2.1, 128, None),
    ("regnet_x_32gf", 23, 320, 69.86, 2.0, 168, None),
    ("regnet_y_200mf", 13, 24, 36.44, 2.49, 8, Some(0.25)),
    ("regnet_y_400mf", 16, 48, 27.89, 2.09, 8, Some(0.25)),
    ("regnet_y_600mf", 15, 48, 32.54, 2.32, 16, Some(0.25)),
    ("regnet_y_800mf", 14, 56, 38.84, 2.4, 16, Some(0.25)),
    ("regnet_y_1_6gf", 27, 48, 20.71, 2.65, 24, Some(0.25)),
    ("regnet_y_3_2gf", 21, 80, 42.63, 2.66, 24, Some(0.25)),
    ("regnet_y_4_0gf", 22, 96, 31.41, 2.24, 64, Some(0.25)),
    ("regnet_y_6_4gf", 25, 112, 33.22, 2.27, 72, Some(0.25)),
    ("regnet_y_8gf", 17, 192, 76.82, 2.19, 56, Some(0.25)),
    ("regnet_y_12gf", 19, 168, 73.36, 2.37, 112, Some(0.25)),
    ("regnet_y_16gf", 18, 200, 106.23, 2.48, 112, Some(0.25)),
    ("regnet_y_32gf", 20, 232, 115.89, 2.53, 232, Some(0.25)),
    ("regnet_y_128gf", 27, 456, 160.83, 2.52, 264, Some(0.25)),
];

/// The names of all zoo models, in torchvision's order (RegNetX, then RegNetY).
pub fn names() -> impl Iterator<Item = &'static str> {
    ZOO.iter().map(|z| z.0)
}

/// The parameters of a zoo model by torchvision's name (`regnet_y_400mf`, ...).
///
/// ```
/// let p = regnet_wgpu::zoo::get("regnet_y_400mf").unwrap();
/// assert_eq!((p.depth, p.w0, p.se_ratio), (16, 48, Some(0.25)));
/// assert!(regnet_wgpu::zoo::get("resnet50").is_err());
/// ```
pub fn get(name: &str) -> Result<RegNetParams> {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    ZOO.iter()
        .find(|z| z.0 == lower)
        .map(|&(_, d, w0, wa, wm, g, se)| {
            let p = RegNetParams::new(d, w0, wa, wm, g);
            match se {
                Some(r) => p.with_se(r),
                None => p,
            }
        })
        .ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            known: names().collect::<Vec<_>>().join(", "),
        })
}
