//! torchvision's MobileNetV2 (Sandler et al.), exactly as `torchvision.models.mobilenetv2`
//! builds it: inverted residual blocks (1x1 expansion + ReLU6, depthwise 3x3 + ReLU6, linear
//! 1x1; the residual when the shape is kept), widths rounded by `_make_divisible`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// torchvision's `inverted_residual_setting`: (expansion t, channels c, blocks n, stride s).
pub const SETTING: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// The parameters of a torchvision MobileNetV2.
///
/// ```
/// use regnet_wgpu::config::MobileNetV2Params;
/// let p = MobileNetV2Params::named("mobilenet_v2").unwrap();
/// assert_eq!(p.blocks().len(), 17);
/// assert_eq!(p.last_channel(), 1280);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MobileNetV2Params {
    /// `width_mult`: every width scaled by it, then rounded to a multiple of 8.
    pub width_mult: f64,
    /// Classes of the linear head.
    pub num_classes: usize,
}

/// One inverted residual block: `features.{index}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvertedResidual {
    /// Input channels.
    pub inp: usize,
    /// Output channels.
    pub out: usize,
    /// The depthwise conv's stride.
    pub stride: usize,
    /// The expansion (1: no expanding 1x1).
    pub expand: usize,
    /// Channels of the depthwise conv: `round(inp * expand)`.
    pub hidden: usize,
}

/// torchvision's `_make_divisible(v, 8)`: the nearest multiple of 8, at least 8, never below
/// 90% of `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new = d.max(((v + d / 2.0) as usize / divisor * divisor) as f64);
    if new < 0.9 * v {
        new += d;
    }
    new as usize
}

impl MobileNetV2Params {
    /// torchvision's names.
    pub fn names() -> impl Iterator<Item = &'static str> {
        ["mobilenet_v2"].into_iter()
    }

    /// The parameters of a named model (`mobilenet_v2`).
    pub fn named(name: &str) -> Option<MobileNetV2Params> {
        (name == "mobilenet_v2").then_some(MobileNetV2Params {
            width_mult: 1.0,
            num_classes: 1000,
        })
    }

    /// The stem's output channels (`features.0`).
    pub fn stem_channels(&self) -> usize {
        make_divisible(32.0 * self.width_mult, 8)
    }

    /// The last 1x1 conv's output channels (`features.18`).
    pub fn last_channel(&self) -> usize {
        make_divisible(1280.0 * self.width_mult.max(1.0), 8)
    }

    /// The inverted residual blocks `features.1` .. in order.
    pub fn blocks(&self) -> Vec<InvertedResidual> {
        let mut inp = self.stem_channels();
        let mut out = Vec::new();
        for (t, c, n, s) in SETTING {
            let oc = make_divisible(c as f64 * self.width_mult, 8);
            for i in 0..n {
                out.push(InvertedResidual {
                    inp,
                    out: oc,
                    stride: if i == 0 { s } else { 1 },
                    expand: t,
                    hidden: (inp as f64 * t as f64).round() as usize,
                });
                inp = oc;
            }
        }
        out
    }

    /// Checks the parameters; the error names the first that is invalid.
    pub fn validate(&self) -> Result<()> {
        if !(self.width_mult > 0.0 && self.width_mult <= 16.0) {
            return Err(Error::InvalidParam {
                param: "width_mult",
                reason: format!("{} is not in (0, 16]", self.width_mult),
            });
        }
        if self.num_classes == 0 || self.num_classes > super::MAX_CLASSES {
            return Err(Error::InvalidParam {
                param: "classes",
                reason: format!(
                    "must be in 1..={}, got {}",
                    super::MAX_CLASSES,
                    self.num_classes
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_round_as_torchvision_does() {
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(3.0, 8), 8);
        assert_eq!(make_divisible(16.0 * 0.35, 8), 8);
        assert_eq!(make_divisible(96.0 * 0.75, 8), 72);
        assert_eq!(make_divisible(27.0, 8), 32); // 24 would be under 90%
        let p = MobileNetV2Params::named("mobilenet_v2").unwrap();
        let b = p.blocks();
        assert_eq!(
            (b[0].inp, b[0].out, b[0].expand, b[0].hidden),
            (32, 16, 1, 32)
        );
        assert_eq!((b[1].inp, b[1].hidden, b[1].stride), (16, 96, 2));
        assert_eq!(b[16].out, 320);
    }
}
