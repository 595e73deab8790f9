//! torchvision's ShuffleNetV2 (Ma et al.), exactly as `torchvision.models.shufflenetv2` builds
//! it: a 3x3 stride-2 stem and a 3x3 stride-2 max pool, three stages of units that split the
//! channels in two (or, at a stage's first, stride-2 unit, run two branches on the whole
//! input), concatenate and shuffle them in 2 groups, a last 1x1 conv (`conv5`) and the head.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The parameters of a torchvision ShuffleNetV2.
///
/// ```
/// use regnet_wgpu::config::ShuffleNetV2Params;
/// let p = ShuffleNetV2Params::named("shufflenet_v2_x1_0").unwrap();
/// assert_eq!(p.stages_repeats, [4, 8, 4]);
/// assert_eq!(p.stages_out_channels, [24, 116, 232, 464, 1024]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleNetV2Params {
    /// Units of `stage2`, `stage3`, `stage4`.
    pub stages_repeats: [usize; 3],
    /// Output channels of `conv1`, the three stages and `conv5`.
    pub stages_out_channels: [usize; 5],
    /// Classes of the linear head.
    pub num_classes: usize,
}

/// (name, stage output channels): torchvision's builders (repeats 4, 8, 4 for all).
const NAMED: &[(&str, [usize; 5])] = &[
    ("shufflenet_v2_x0_5", [24, 48, 96, 192, 1024]),
    ("shufflenet_v2_x1_0", [24, 116, 232, 464, 1024]),
    ("shufflenet_v2_x1_5", [24, 176, 352, 704, 1024]),
    ("shufflenet_v2_x2_0", [24, 244, 488, 976, 2048]),
];

impl ShuffleNetV2Params {
    /// torchvision's names, in its order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMED.iter().map(|n| n.0)
    }

    /// The parameters of a named model (`shufflenet_v2_x1_0`, ...).
    pub fn named(name: &str) -> Option<ShuffleNetV2Params> {
        NAMED
            .iter()
            .find(|n| n.0 == name)
            .map(|&(_, stages_out_channels)| ShuffleNetV2Params {
                stages_repeats: [4, 8, 4],
                stages_out_channels,
                num_classes: 1000,
            })
    }

    /// Checks the parameters; the error names the first that is invalid.
    pub fn validate(&self) -> Result<()> {
        let invalid = |param: &'static str, reason: String| Error::InvalidParam { param, reason };
        if self.stages_repeats.iter().any(|&r| r == 0 || r > 10_000) {
            return Err(invalid(
                "stages_repeats",
                format!("{:?}: each in 1..=10000", self.stages_repeats),
            ));
        }
        let c = self.stages_out_channels;
        if c.iter().any(|&w| w == 0 || w > super::MAX_WIDTH) || c[1..4].iter().any(|w| w % 2 != 0) {
            return Err(invalid(
                "stages_out_channels",
                format!(
                    "{c:?}: each in 1..={}, the stages' even (split in two)",
                    super::MAX_WIDTH
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
