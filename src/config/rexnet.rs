//! timm's ReXNet (Han et al., "Rethinking Channel Dimensions for Efficient Model Design"):
//! MobileNetV2-style inverted bottlenecks whose output channels grow linearly, block by block,
//! exactly as timm's `rexnet.py` (`_block_cfg`, `_build_blocks`, `LinearBottleneck`) builds them.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The parameters of a timm ReXNet (`RexNet(width_mult, depth_mult, ...)`).
///
/// ```
/// use regnet_wgpu::config::ReXNetParams;
/// let p = ReXNetParams::named("rexnet_100").unwrap();
/// let blocks = p.blocks().unwrap();
/// assert_eq!(blocks.len(), 16);
/// assert_eq!((blocks[1].in_chs, blocks[1].dw_chs, blocks[1].out_chs), (16, 96, 27));
/// assert_eq!(p.final_chs(), 1280);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReXNetParams {
    /// Width multiplier (`rexnet_100`: 1.0 ... `rexnet_200`: 2.0).
    pub width_mult: f64,
    /// Depth multiplier (1.0 for every named model).
    pub depth_mult: f64,
    /// Squeeze-and-excitation ratio of the blocks from the third stage on (1/12).
    pub se_ratio: f64,
    /// Classes of the linear head.
    pub num_classes: usize,
}

/// One inverted bottleneck (`features.{index}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReXBlock {
    /// Input channels.
    pub in_chs: usize,
    /// Channels of the depthwise convolution (`in_chs` when there is no expansion).
    pub dw_chs: usize,
    /// Output channels.
    pub out_chs: usize,
    /// Whether a 1x1 expansion (`conv_exp`) comes first.
    pub expand: bool,
    /// Stride of the depthwise convolution.
    pub stride: usize,
    /// Squeeze width of the block's SE (`se.fc1`), if it has one.
    pub se_chs: Option<usize>,
    /// Whether the input is added to the first `in_chs` output channels.
    pub shortcut: bool,
}

/// timm's `make_divisible(v, divisor, min_value=None, round_limit=0.9)`.
pub(crate) fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (divisor as i64).max(((v + d / 2.0) as i64) / divisor as i64 * divisor as i64);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor as i64;
    }
    new_v.max(0) as usize
}

/// (name, width multiplier): timm's named models.
const NAMED: &[(&str, f64)] = &[
    ("rexnet_100", 1.0),
    ("rexnet_130", 1.3),
    ("rexnet_150", 1.5),
    ("rexnet_200", 2.0),
];

/// Blocks per stage and each stage's first stride (before `depth_mult`).
const LAYERS: [usize; 6] = [1, 2, 2, 3, 3, 5];
const STRIDES: [usize; 6] = [1, 2, 2, 2, 1, 2];
const INITIAL_CHS: f64 = 16.0;
const FINAL_CHS: f64 = 180.0;
/// timm's `ch_div` for the `rexnet_*` models (the `rexnetr_*` ones round to 8).
const CH_DIV: usize = 1;

impl ReXNetParams {
    /// timm's names, in its order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        NAMED.iter().map(|n| n.0)
    }

    /// The parameters of a timm model by name (`rexnet_100`, ...).
    pub fn named(name: &str) -> Option<ReXNetParams> {
        NAMED
            .iter()
            .find(|n| n.0 == name)
            .map(|&(_, width_mult)| ReXNetParams {
                width_mult,
                depth_mult: 1.0,
                se_ratio: 1.0 / 12.0,
                num_classes: 1000,
            })
    }

    /// The same parameters with another number of classes.
    pub fn with_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |param: &'static str, v: f64| {
            Err(Error::InvalidParam {
                param,
                reason: format!("must be a finite number in (0, 16], got {v}"),
            })
        };
        for (param, v) in [
            ("width_mult", self.width_mult),
            ("depth_mult", self.depth_mult),
        ] {
            if !v.is_finite() || v <= 0.0 || v > 16.0 {
                return bad(param, v);
            }
        }
        if !self.se_ratio.is_finite() || !(0.0..=1.0).contains(&self.se_ratio) {
            return bad("se", self.se_ratio);
        }
        if self.num_classes == 0 || self.num_classes > super::MAX_CLASSES {
            return Err(Error::InvalidParam {
                param: "classes",
                reason: format!("must be in 1..={}", super::MAX_CLASSES),
            });
        }
        Ok(())
    }

    /// Channels of the stem (`stem.conv`, 3x3 stride 2).
    pub fn stem_chs(&self) -> usize {
        let base = if self.width_mult < 1.0 {
            32.0 / self.width_mult
        } else {
            32.0
        };
        make_divisible((base * self.width_mult).round_ties_even(), CH_DIV)
    }

    /// Channels of the final 1x1 convolution (`features.{blocks}`).
    pub fn final_chs(&self) -> usize {
        make_divisible(1280.0 * self.width_mult, CH_DIV)
    }

    /// The linear rule the blocks' output channels are rounded from: block `j` has
    /// `round(c0 + slope * j)` (timm's `_block_cfg`); returns `(c0, slope)`.
    ///
    /// ```
    /// let p = regnet_wgpu::config::ReXNetParams::named("rexnet_100").unwrap();
    /// assert_eq!(p.linear_rule(), (16.0, 11.25));
    /// ```
    pub fn linear_rule(&self) -> (f64, f64) {
        let count: usize = self.layers().iter().sum();
        (
            self.initial_base() * self.width_mult,
            FINAL_CHS / count.max(1) as f64 * self.width_mult,
        )
    }

    /// timm's `base_chs` before the first block.
    fn initial_base(&self) -> f64 {
        if self.width_mult < 1.0 {
            INITIAL_CHS / self.width_mult
        } else {
            INITIAL_CHS
        }
    }

    /// Blocks per stage (`ceil(layers * depth_mult)`).
    pub fn layers(&self) -> [usize; 6] {
        LAYERS.map(|l| (l as f64 * self.depth_mult).ceil() as usize)
    }

    /// The inverted bottlenecks, `features.0` onwards.
    pub fn blocks(&self) -> Result<Vec<ReXBlock>> {
        self.validate()?;
        let layers = self.layers();
        let count: usize = layers.iter().sum();
        let mut base = self.initial_base();
        let mut blocks = Vec::with_capacity(count);
        let mut in_chs = self.stem_chs();
        for (stage, &depth) in layers.iter().enumerate() {
            for k in 0..depth {
                let out_chs = make_divisible((base * self.width_mult).round_ties_even(), CH_DIV);
                base += FINAL_CHS / count as f64;
                let stride = if k == 0 { STRIDES[stage] } else { 1 };
                let expand = stage > 0; // exp_ratio 1 in the first stage, 6 after
                let dw_chs = if expand {
                    make_divisible((in_chs as f64 * 6.0).round_ties_even(), CH_DIV)
                } else {
                    in_chs
                };
                let se_chs = (stage >= 2 && self.se_ratio > 0.0)
                    .then(|| make_divisible((dw_chs as f64 * self.se_ratio).trunc(), CH_DIV));
                blocks.push(ReXBlock {
                    in_chs,
                    dw_chs,
                    out_chs,
                    expand,
                    stride,
                    se_chs,
                    shortcut: stride == 1 && in_chs <= out_chs,
                });
                in_chs = out_chs;
            }
        }
        if blocks.iter().any(|b| b.dw_chs > super::MAX_WIDTH) {
            return Err(Error::InvalidParam {
                param: "width_mult",
                reason: format!("{} makes absurdly wide blocks", self.width_mult),
            });
        }
        Ok(blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_timm() {
        assert_eq!(make_divisible(27.0, 1), 27);
        assert_eq!(make_divisible(0.0, 1), 1);
        assert_eq!(make_divisible(1664.0, 1), 1664);
        assert_eq!(make_divisible(27.0, 8), 32);
        assert_eq!(make_divisible(20.0, 8), 24);
    }

    #[test]
    fn rexnet_100_widths_grow_linearly() {
        let b = ReXNetParams::named("rexnet_100").unwrap().blocks().unwrap();
        let outs: Vec<usize> = b.iter().map(|b| b.out_chs).collect();
        assert_eq!(
            outs,
            [16, 27, 38, 50, 61, 72, 84, 95, 106, 117, 128, 140, 151, 162, 174, 185]
        );
        assert_eq!(b[0].dw_chs, 32);
        assert!(!b[0].shortcut && !b[1].shortcut && b[2].shortcut);
        assert_eq!(b[3].se_chs, Some(228 / 12));
    }
}
