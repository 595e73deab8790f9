//! Where the named models' published ImageNet weights come from, and how their publishers
//! evaluate them.
//!
//! The table was read from torchvision 0.29.2 (`get_model_weights(name).DEFAULT`: its `url` and
//! `transforms().resize_size`) and timm 1.0.31 (`get_pretrained_cfg(name)`: `hf_hub_id`,
//! `crop_pct`, `interpolation`). The zoo's other RegNets (`regnet_x_200mf`, ...) come from
//! pycls and have no torchvision checkpoint; `regnet_y_128gf`'s are SWAG weights evaluated at
//! other sizes, so it is left out.

/// A named model's published ImageNet-1k checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pretrained {
    /// Where to download it: a `.pth` state_dict (torchvision) or a `.safetensors` (timm, on
    /// the Hugging Face hub). Both load with `--weights` / [`Weights::load`](crate::Weights::load).
    pub url: &'static str,
    /// Whose checkpoint it is and which (torchvision's weights enum entry, timm's tag).
    pub source: &'static str,
    /// The shorter side its publisher resizes to before the 224 centre crop
    /// ([`EvalTransform::resize`](crate::preprocess::EvalTransform::resize)).
    pub resize: usize,
    /// Its publisher's resize filter; [`EvalTransform`](crate::preprocess::EvalTransform)
    /// reproduces `bilinear` exactly.
    pub interpolation: &'static str,
}

macro_rules! tv {
    ($name:literal, $file:literal, $weights:literal, $resize:literal) => {
        (
            $name,
            Pretrained {
                url: concat!("https://download.pytorch.org/models/", $file),
                source: concat!("torchvision ", $weights),
                resize: $resize,
                interpolation: "bilinear",
            },
        )
    };
}

macro_rules! timm {
    ($name:literal) => {
        (
            $name,
            Pretrained {
                url: concat!(
                    "https://huggingface.co/timm/",
                    $name,
                    ".nav_in1k/resolve/main/model.safetensors"
                ),
                source: concat!("timm ", $name, ".nav_in1k"),
                resize: 256,
                interpolation: "bicubic",
            },
        )
    };
}

const TABLE: &[(&str, Pretrained)] = &[
    tv!(
        "regnet_x_400mf",
        "regnet_x_400mf-62229a5f.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_x_800mf",
        "regnet_x_800mf-94a99ebd.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_x_1_6gf",
        "regnet_x_1_6gf-a12f2b72.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_x_3_2gf",
        "regnet_x_3_2gf-7071aa85.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_x_8gf",
        "regnet_x_8gf-2b70d774.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_x_16gf",
        "regnet_x_16gf-ba3796d7.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_x_32gf",
        "regnet_x_32gf-6eb8fdc6.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_y_400mf",
        "regnet_y_400mf-e6988f5f.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_y_800mf",
        "regnet_y_800mf-58fc7688.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_y_1_6gf",
        "regnet_y_1_6gf-0d7bc02a.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_y_3_2gf",
        "regnet_y_3_2gf-9180c971.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_y_8gf",
        "regnet_y_8gf-dc2b1b54.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_y_16gf",
        "regnet_y_16gf-3e4a00f9.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "regnet_y_32gf",
        "regnet_y_32gf-8db6d4b5.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!("resnet18", "resnet18-f37072fd.pth", "IMAGENET1K_V1", 256),
    tv!("resnet34", "resnet34-b627a593.pth", "IMAGENET1K_V1", 256),
    tv!("resnet50", "resnet50-11ad3fa6.pth", "IMAGENET1K_V2", 232),
    tv!("resnet101", "resnet101-cd907fc2.pth", "IMAGENET1K_V2", 232),
    tv!("resnet152", "resnet152-f82ba261.pth", "IMAGENET1K_V2", 232),
    tv!(
        "resnext50_32x4d",
        "resnext50_32x4d-1a0047aa.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "resnext101_32x8d",
        "resnext101_32x8d-110c445d.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "resnext101_64x4d",
        "resnext101_64x4d-173b62eb.pth",
        "IMAGENET1K_V1",
        232
    ),
    tv!(
        "wide_resnet50_2",
        "wide_resnet50_2-9ba9bcbe.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "wide_resnet101_2",
        "wide_resnet101_2-d733dc28.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "mobilenet_v2",
        "mobilenet_v2-7ebf99e0.pth",
        "IMAGENET1K_V2",
        232
    ),
    tv!(
        "shufflenet_v2_x0_5",
        "shufflenetv2_x0.5-f707e7126e.pth",
        "IMAGENET1K_V1",
        256
    ),
    tv!(
        "shufflenet_v2_x1_0",
        "shufflenetv2_x1-5666bf0f80.pth",
        "IMAGENET1K_V1",
        256
    ),
    tv!(
        "shufflenet_v2_x1_5",
        "shufflenetv2_x1_5-3c479a10.pth",
        "IMAGENET1K_V1",
        232
    ),
    tv!(
        "shufflenet_v2_x2_0",
        "shufflenetv2_x2_0-8be3c8ee.pth",
        "IMAGENET1K_V1",
        232
    ),
    timm!("rexnet_100"),
    timm!("rexnet_130"),
    timm!("rexnet_150"),
    timm!("rexnet_200"),
];

/// The published checkpoint of the model named `name` (as [`Architecture::named`] takes it),
/// if it has one.
///
/// ```
/// let p = regnet_wgpu::config::pretrained("regnet_y_400mf").unwrap();
/// assert!(p.url.ends_with(".pth") && p.resize == 232);
/// assert!(regnet_wgpu::config::pretrained("regnet_x_200mf").is_none());
/// ```
///
/// [`Architecture::named`]: super::Architecture::named
pub fn pretrained(name: &str) -> Option<Pretrained> {
    TABLE.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Architecture;

    const TV: &str = "https://download.pytorch.org/models/";

    #[test]
    fn every_entry_names_a_model_once() {
        for (i, (name, p)) in TABLE.iter().enumerate() {
            assert!(Architecture::named(name).is_ok(), "{name}");
            assert!(TABLE[..i].iter().all(|(n, _)| n != name), "{name} twice");
            assert!(p.url.starts_with("https://"), "{name}");
            if p.source.starts_with("torchvision") {
                // torchvision spells ShuffleNetV2's files shufflenetv2_x1, shufflenetv2_x0.5, ...
                let file = name.replace("shufflenet_v2_", "shufflenetv2_");
                let stem = file.trim_end_matches("_0").replace("0_5", "0.5");
                assert!(p.url.starts_with(TV) && p.url.contains(&stem), "{name}");
            }
        }
        assert_eq!(TABLE.len(), 33);
    }
}
