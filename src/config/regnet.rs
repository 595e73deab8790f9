//! RegNet's quantized linear rule, exactly as torchvision computes it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The parameters of a RegNet design (Radosavovic et al., "Designing Network Design Spaces").
///
/// ```
/// use regnet_wgpu::RegNetParams;
/// let p = RegNetParams::new(16, 48, 27.89, 2.09, 8).with_se(0.25); // RegNetY-400MF
/// let stages = p.stages().unwrap();
/// assert_eq!(stages.iter().map(|s| s.width_out).collect::<Vec<_>>(), [48, 104, 208, 440]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegNetParams {
    /// Number of blocks `d`.
    pub depth: usize,
    /// Initial width `w0` (a positive multiple of 8).
    pub w0: usize,
    /// Width slope `wa` (>= 0).
    pub wa: f64,
    /// Width multiplier `wm` (> 1).
    pub wm: f64,
    /// Group width `g` of the 3x3 convolutions (>= 1; 1 is depthwise).
    pub group_width: usize,
    /// Bottleneck ratio `b` (> 0, default 1.0).
    pub bottleneck: f64,
    /// Squeeze-and-excitation ratio (RegNetY: 0.25; `None` for RegNetX).
    pub se_ratio: Option<f64>,
    /// Width of the stem convolution (default 32).
    pub stem_width: usize,
    /// Number of classes of the linear head (default 1000).
    pub num_classes: usize,
}

/// One stage: `depth` blocks of the same width; the first block may downsample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Number of blocks.
    pub depth: usize,
    /// Output width of every block of the stage.
    pub width_out: usize,
    /// Width of the bottleneck (the grouped 3x3 convolution's channels).
    pub width_bottleneck: usize,
    /// Channels per group of the 3x3 convolution.
    pub group_width: usize,
    /// Number of groups of the 3x3 convolution.
    pub groups: usize,
    /// Stride of the stage's first block.
    pub stride: usize,
    /// The blocks.
    pub blocks: Vec<BlockSpec>,
}

/// One residual bottleneck block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockSpec {
    /// Input channels.
    pub width_in: usize,
    /// Stride of the 3x3 convolution (and of the projection).
    pub stride: usize,
    /// Squeeze-and-excitation width, `round(se_ratio * width_in)`; `None` without SE.
    pub se_width: Option<usize>,
    /// Whether the shortcut is a 1x1 convolution + BN (shape changes) rather than identity.
    pub projection: bool,
}

/// Widest layer accepted (channels): far beyond any real RegNet (RegNetY-128GF: 7392).
pub const MAX_WIDTH: usize = 1 << 20;
/// Most classes accepted.
pub const MAX_CLASSES: usize = 1 << 24;
/// Largest bottleneck or SE ratio accepted.
pub const MAX_RATIO: f64 = 64.0;

fn invalid(param: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidParam {
        param,
        reason: reason.into(),
    }
}

/// Python's `round()` on floats: halves go to the even neighbour.
pub(crate) fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// The SE width of a block of input width `width_in`: torchvision's
/// `int(round(se_ratio * width_in))`; an error when it rounds to 0.
pub(crate) fn se_width(se_ratio: Option<f64>, width_in: usize) -> Result<Option<usize>> {
    let Some(r) = se_ratio else {
        return Ok(None);
    };
    let s = round_half_even(r * width_in as f64);
    if s < 1.0 {
        return Err(invalid(
            "se",
            format!("{r} gives an SE width of 0 for a block of width {width_in}"),
        ));
    }
    Ok(Some(s as usize))
}

/// torchvision's `_make_divisible(v, divisor)` (never more than 10% below `v`).
fn make_divisible(v: usize, divisor: usize) -> usize {
    let min_value = divisor;
    let t = (v as f64 + divisor as f64 / 2.0) as usize; // int(v + divisor / 2)
    let mut new_v = min_value.max(t / divisor * divisor);
    if (new_v as f64) < 0.9 * v as f64 {
        new_v += divisor;
    }
    new_v
}

impl RegNetParams {
    /// Parameters with the defaults: bottleneck 1.0, no SE, stem 32, 1000 classes.
    pub fn new(depth: usize, w0: usize, wa: f64, wm: f64, group_width: usize) -> Self {
        RegNetParams {
            depth,
            w0,
            wa,
            wm,
            group_width,
            bottleneck: 1.0,
            se_ratio: None,
            stem_width: 32,
            num_classes: 1000,
        }
    }

    /// The same parameters with squeeze-and-excitation of ratio `se_ratio` (RegNetY).
    pub fn with_se(mut self, se_ratio: f64) -> Self {
        self.se_ratio = Some(se_ratio);
        self
    }

    /// The same parameters with another bottleneck ratio.
    pub fn with_bottleneck(mut self, b: f64) -> Self {
        self.bottleneck = b;
        self
    }

    /// The same parameters with another number of classes.
    pub fn with_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// The same parameters with another stem width.
    pub fn with_stem(mut self, stem_width: usize) -> Self {
        self.stem_width = stem_width;
        self
    }

    /// The SE ratio that takes effect: torchvision treats 0 like no SE (`if se_ratio:`).
    pub fn effective_se(&self) -> Option<f64> {
        self.se_ratio.filter(|&r| r != 0.0)
    }

    /// Checks every parameter; the error names the first one that is invalid.
    pub fn validate(&self) -> Result<()> {
        if self.depth == 0 {
            return Err(invalid("depth", "must be at least 1"));
        }
        if self.depth > 10_000 {
            return Err(invalid(
                "depth",
                format!("{} is absurdly large (at most 10000)", self.depth),
            ));
        }
        if self.w0 == 0 || !self.w0.is_multiple_of(8) {
            return Err(invalid(
                "w0",
                format!("must be a positive multiple of 8, got {}", self.w0),
            ));
        }
        if !self.wa.is_finite() || self.wa < 0.0 {
            return Err(invalid(
                "wa",
                format!("must be a finite number >= 0, got {}", self.wa),
            ));
        }
        if !self.wm.is_finite() || self.wm <= 1.0 {
            return Err(invalid(
                "wm",
                format!("must be a finite number > 1, got {}", self.wm),
            ));
        }
        if self.group_width == 0 {
            return Err(invalid("group_width", "must be at least 1"));
        }
        if !self.bottleneck.is_finite() || self.bottleneck <= 0.0 {
            return Err(invalid(
                "bottleneck",
                format!("must be a finite number > 0, got {}", self.bottleneck),
            ));
        }
        if let Some(se) = self.se_ratio {
            if !se.is_finite() || se < 0.0 {
                return Err(invalid(
                    "se",
                    format!("must be a finite number >= 0, got {se}"),
                ));
            }
        }
        if self.stem_width == 0 || self.stem_width > MAX_WIDTH {
            return Err(invalid(
                "stem",
                format!("must be in 1..={MAX_WIDTH}, got {}", self.stem_width),
            ));
        }
        if self.num_classes == 0 || self.num_classes > MAX_CLASSES {
            return Err(invalid(
                "classes",
                format!("must be in 1..={MAX_CLASSES}, got {}", self.num_classes),
            ));
        }
        if self.bottleneck > MAX_RATIO {
            return Err(invalid(
                "bottleneck",
                format!("must be at most {MAX_RATIO}, got {}", self.bottleneck),
            ));
        }
        if let Some(se) = self.se_ratio.filter(|&r| r > MAX_RATIO) {
            return Err(invalid(
                "se",
                format!("must be at most {MAX_RATIO}, got {se}"),
            ));
        }
        Ok(())
    }

    /// Per-block widths before grouping into stages: `w_j = round(w0 * wm^round(log(u_j/w0)/log(wm)) / 8) * 8`
    /// with `u_j = w0 + wa * j`, in float32 exactly as torch computes it.
    pub fn block_widths(&self) -> Result<Vec<usize>> {
        self.validate()?;
        let w0 = self.w0 as f32;
        let wa = self.wa as f32;
        let log_wm = self.wm.ln() as f32; // math.log(w_m), then used as a float32 scalar
        let wm = self.wm as f32;
        let mut widths = Vec::with_capacity(self.depth);
        for j in 0..self.depth {
            let u = (j as f32) * wa + w0; // torch.arange(depth) * w_a + w_0 (float32)
            let ratio = u / w0;
            let log_ratio = (ratio as f64).ln() as f32; // torch.log (float32)
            let capacity = (log_ratio / log_wm).round_ties_even();
            let pow = (wm as f64).powf(capacity as f64) as f32; // torch.pow(w_m, capacity)
            let w = ((w0 * pow) / 8.0).round_ties_even() * 8.0;
            if !w.is_finite() || w > MAX_WIDTH as f32 {
                return Err(invalid(
                    "wa",
                    format!("block {j} would be {w} channels wide; the parameters are absurd"),
                ));
            }
            widths.push(w as usize);
        }
        Ok(widths)
    }

    /// The stages, with per-block details, exactly as torchvision builds them.
    pub fn stages(&self) -> Result<Vec<Stage>> {
        let widths = self.block_widths()?;
        // Runs of equal widths form stages.
        let mut runs: Vec<(usize, usize)> = Vec::new(); // (width, depth)
        for w in widths {
            match runs.last_mut() {
                Some((lw, d)) if *lw == w => *d += 1,
                _ => runs.push((w, 1)),
            }
        }
        let b = self.bottleneck;
        let mut stages = Vec::with_capacity(runs.len());
        let mut width_in = self.stem_width;
        for (i, &(w, depth)) in runs.iter().enumerate() {
            // _adjust_widths_groups_compatibilty
            let w_bot = (w as f64 * b) as usize; // int(w * b)
            let g_min = self.group_width.min(w_bot);
            if g_min == 0 {
                return Err(invalid(
                    "bottleneck",
                    format!(
                        "{b} makes stage {}'s bottleneck width 0 (stage width {w})",
                        i + 1
                    ),
                ));
            }
            let ws_bot = make_divisible(w_bot, g_min);
            let width_out = (ws_bot as f64 / b) as usize; // int(w_bot / b)
                                                          // BottleneckTransform: w_b = int(round(width_out * b)); g = w_b // group_width
            let width_bottleneck = round_half_even(width_out as f64 * b) as usize;
            if width_bottleneck > MAX_WIDTH {
                return Err(invalid(
                    "bottleneck",
                    format!("{b} makes stage {}'s bottleneck {width_bottleneck} channels wide (at most {MAX_WIDTH})", i + 1),
                ));
            }
            let groups = width_bottleneck / g_min;
            if width_out == 0 || groups == 0 || !width_bottleneck.is_multiple_of(groups) {
                return Err(invalid(
                    "group_width",
                    format!(
                        "stage {}: bottleneck width {width_bottleneck} cannot be split into groups of {g_min}",
                        i + 1
                    ),
                ));
            }
            let mut blocks = Vec::with_capacity(depth);
            for k in 0..depth {
                let (bw_in, stride) = if k == 0 {
                    (width_in, 2)
                } else {
                    (width_out, 1)
                };
                let se_width = se_width(self.effective_se(), bw_in)?;
                blocks.push(BlockSpec {
                    width_in: bw_in,
                    stride,
                    se_width,
                    projection: bw_in != width_out || stride != 1,
                });
            }
            stages.push(Stage {
                depth,
                width_out,
                width_bottleneck,
                group_width: width_bottleneck / groups,
                groups,
                stride: 2,
                blocks,
            });
            width_in = width_out;
        }
        Ok(stages)
    }

    /// The continuous widths `u_j = w0 + wa * j` (for plotting the design rule).
    pub fn continuous_widths(&self) -> Vec<f64> {
        (0..self.depth)
            .map(|j| self.w0 as f64 + self.wa * j as f64)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_torchvision() {
        assert_eq!(make_divisible(48, 8), 48);
        assert_eq!(make_divisible(12, 8), 16);
        assert_eq!(make_divisible(20, 24), 24);
        assert_eq!(make_divisible(100, 64), 128);
        assert_eq!(make_divisible(95, 64), 128);
        assert_eq!(make_divisible(70, 64), 64);
    }

    #[test]
    fn invalid_params_are_named() {
        let ok = RegNetParams::new(16, 48, 27.89, 2.09, 8);
        let cases: Vec<(RegNetParams, &str)> = vec![
            (
                RegNetParams {
                    depth: 0,
                    ..ok.clone()
                },
                "depth",
            ),
            (
                RegNetParams {
                    w0: 12,
                    ..ok.clone()
                },
                "w0",
            ),
            (
                RegNetParams {
                    w0: 0,
                    ..ok.clone()
                },
                "w0",
            ),
            (
                RegNetParams {
                    wa: -1.0,
                    ..ok.clone()
                },
                "wa",
            ),
            (
                RegNetParams {
                    wm: 1.0,
                    ..ok.clone()
                },
                "wm",
            ),
            (
                RegNetParams {
                    group_width: 0,
                    ..ok.clone()
                },
                "group_width",
            ),
            (
                RegNetParams {
                    bottleneck: 0.0,
                    ..ok.clone()
                },
                "bottleneck",
            ),
        ];
        for (p, name) in cases {
            match p.stages() {
                Err(Error::InvalidParam { param, .. }) => assert_eq!(param, name),
                other => panic!("{name}: expected InvalidParam, got {other:?}"),
            }
        }
    }
}
