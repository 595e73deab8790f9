//! torchvision's ResNet family: ResNet (He et al.), ResNeXt (grouped 3x3) and Wide ResNet,
//! exactly as `torchvision.models.resnet` builds them ("v1.5": the Bottleneck's stride is on
//! its 3x3 convolution).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The residual block of a ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResNetBlock {
    /// Two 3x3 convolutions (`resnet18`, `resnet34`); expansion 1.
    Basic,
    /// 1x1, 3x3 (grouped, strided), 1x1; expansion 4.
    Bottleneck,
}

impl ResNetBlock {
    /// Output channels per `planes` of a stage.
    pub fn expansion(self) -> usize {
        match self {
            ResNetBlock::Basic => 1,
            ResNetBlock::Bottleneck => 4,
        }
    }
}

/// The parameters of a torchvision ResNet.
///
/// ```
/// use regnet_wgpu::config::ResNetParams;
/// let p = ResNetParams::named("resnext50_32x4d").unwrap();
/// assert_eq!((p.layers, p.groups, p.width_per_group), ([3, 4, 6, 3], 32, 4));
/// assert_eq!(p.stage_widths(), [(128, 256), (256, 512), (512, 1024), (1024, 2048)]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetParams {
    /// The block.
    pub block: ResNetBlock,
    /// Blocks per stage (`layer1` .. `layer4`).
    pub layers: [usize; 4],
    /// Groups of the 3x3 convolution (ResNeXt's cardinality).
    pub groups: usize,
    /// Channels per group at the first stage's width (64: ResNet; 128: Wide ResNet).
    pub width_per_group: usize,
    /// Classes of the linear head.
    pub num_classes: usize,
}

/// (name, block, layers, groups, width_per_group): torchvision's builders.
const NAMED: &[(&str, ResNetBlock, [usize; 4], usize, usize)] = &[
    ("resnet18", ResNetBlock::Basic, [2, 2, 2, 2], 1, 64),
    ("resnet34", ResNetBlock::Basic, [3, 4, 6, 3], 1, 64),
    ("resnet50", ResNetBlock::Bottleneck, [3, 4, 6, 3], 1, 64),
    ("resnet101", ResNetBlock::Bottleneck, [3, 4, 23, 3], 1, 64),
    ("resnet152", ResNetBlock::Bottleneck, [3, 8, 36, 3], 1, 64),
    (
        "resnext50_32x4d",
        ResNetBlock::Bottleneck,
        [3, 4, 6, 3],
        32,
        4,
    ),
    (
        "resnext101_32x8d",
        ResNetBlock::Bottleneck,
        [3, 4, 23, 3],
        32,
        8,
    ),
    (
        "resnext101_64x4d",
        ResNetBlock::Bottleneck,
        [3, 4, 23, 3],
        64,
        4,
    ),
    (
        "wide_resnet50_2",
        ResNetBlock::Bottleneck,
        [3, 4, 6, 3],
        1,
        128,
    ),
    (
        "wide_resnet101_2",
        ResNetBlock::Bottleneck,
        [3, 4, 23, 3],
        1,
        128,
    ),
];

impl ResNetParams {
    /// torchvision's names, in its order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMED.iter().map(|n| n.0)
    }

    /// The parameters of a torchvision model by name (`resnet50`, `resnext50_32x4d`, ...).
    pub fn named(name: &str) -> Option<ResNetParams> {
        NAMED
            .iter()
            .find(|n| n.0 == name)
            .map(
                |&(_, block, layers, groups, width_per_group)| ResNetParams {
                    block,
                    layers,
                    groups,
                    width_per_group,
                    num_classes: 1000,
                },
            )
    }

    /// The same parameters with another number of classes.
    pub fn with_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// (bottleneck width, output width) of each stage: torchvision's
    /// `width = int(planes * (base_width / 64.0)) * groups` and `planes * expansion`, with
    /// `planes` 64, 128, 256, 512. For the basic block both are `planes`.
    pub fn stage_widths(&self) -> [(usize, usize); 4] {
        [64, 128, 256, 512].map(|planes| {
            let out = planes * self.block.expansion();
            match self.block {
                ResNetBlock::Basic => (planes, out),
                ResNetBlock::Bottleneck => {
                    let width = (planes as f64 * (self.width_per_group as f64 / 64.0)) as usize;
                    (width * self.groups, out)
                }
            }
        })
    }

    /// Checks the parameters; the error names the first that is invalid.
    pub fn validate(&self) -> Result<()> {
        let invalid = |param: &'static str, reason: String| Error::InvalidParam { param, reason };
        if self.layers.contains(&0) || self.layers.iter().any(|&d| d > 10_000) {
            return Err(invalid(
                "layers",
                format!("{:?}: each in 1..=10000", self.layers),
            ));
        }
        if self.groups == 0 || self.width_per_group == 0 {
            return Err(invalid(
                "groups",
                "groups and width_per_group must be at least 1".into(),
            ));
        }
        if self.block == ResNetBlock::Basic && (self.groups != 1 || self.width_per_group != 64) {
            return Err(invalid(
                "groups",
                "BasicBlock only supports groups=1 and base_width=64 (as torchvision)".into(),
            ));
        }
        if self
            .stage_widths()
            .iter()
            .any(|&(w, _)| w == 0 || w > super::MAX_WIDTH)
        {
            return Err(invalid(
                "width_per_group",
                format!(
                    "{} gives a stage width of 0 or an absurd one",
                    self.width_per_group
                ),
            ));
        }
        if self.num_classes == 0 || self.num_classes > super::MAX_CLASSES {
            return Err(invalid(
                "classes",
                format!(
                    "must be in 1..={}, got {}",
                    super::MAX_CLASSES,
                    self.num_classes
                ),
            ));
        }
        Ok(())
    }
}
