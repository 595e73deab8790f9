//! AnyNet: the RegNet paper's unconstrained design space, each stage given by hand. A spec is
//! exactly torchvision's `RegNet(BlockParams(depths, widths, group_widths,
//! bottleneck_multipliers, strides, se_ratio), stem_width, num_classes)`: X blocks without
//! `se`, Y blocks with it.
//!
//! The `--anynet` spec string:
//! `depths=1:2:4:2,widths=24:64:144:320,group_widths=8:16:24:40,bottlenecks=1:1:1:1,strides=2:2:2:2[,se=0.25][,stem=32][,classes=1000]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::regnet::{round_half_even, se_width};
use super::{BlockSpec, Stage, MAX_CLASSES, MAX_RATIO, MAX_WIDTH};
use crate::error::{Error, Result};

/// An AnyNet: per-stage depths, widths, group widths, bottleneck ratios and strides.
///
/// ```
/// use regnet_wgpu::config::AnyNetParams;
/// let p: AnyNetParams = "depths=1:2,widths=24:64,group_widths=8:16,bottlenecks=1:0.5,strides=2:1"
///     .parse()
///     .unwrap();
/// let stages = p.stages().unwrap();
/// assert_eq!(stages[1].width_bottleneck, 32);
/// assert_eq!(stages[1].groups, 2);
/// assert!("depths=1,widths=24,group_widths=7,bottlenecks=1,strides=2".parse::<AnyNetParams>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnyNetParams {
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Output width of each stage.
    pub widths: Vec<usize>,
    /// Channels per group of each stage's 3x3 convolution.
    pub group_widths: Vec<usize>,
    /// Bottleneck ratio of each stage.
    pub bottlenecks: Vec<f64>,
    /// Stride of each stage's first block.
    pub strides: Vec<usize>,
    /// Squeeze-and-excitation ratio (Y blocks), or `None` (X blocks).
    pub se_ratio: Option<f64>,
    /// Width of the stem.
    pub stem_width: usize,
    /// Classes of the linear head.
    pub num_classes: usize,
}

const KEYS: &str = "depths, widths, group_widths, bottlenecks, strides, se, stem, classes";

fn invalid(param: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidParam {
        param,
        reason: reason.into(),
    }
}

impl AnyNetParams {
    /// The stages exactly as torchvision builds them from these `BlockParams` (no width
    /// adjustment: `w_b = int(round(w * b))`, `groups = w_b // group_width`), with a named error
    /// for what torch would refuse or build degenerate.
    pub fn stages(&self) -> Result<Vec<Stage>> {
        let n = self.depths.len();
        if n == 0 {
            return Err(invalid("depths", "at least one stage is needed"));
        }
        for (key, len) in [
            ("widths", self.widths.len()),
            ("group_widths", self.group_widths.len()),
            ("bottlenecks", self.bottlenecks.len()),
            ("strides", self.strides.len()),
        ] {
            if len != n {
                return Err(invalid(
                    key,
                    format!("has {len} entries but depths has {n}: one per stage"),
                ));
            }
        }
        if self.stem_width == 0 || self.stem_width > MAX_WIDTH {
            return Err(invalid("stem", format!("must be in 1..={MAX_WIDTH}")));
        }
        if self.num_classes == 0 || self.num_classes > MAX_CLASSES {
            return Err(invalid("classes", format!("must be in 1..={MAX_CLASSES}")));
        }
        if let Some(se) = self.se_ratio {
            if !se.is_finite() || !(0.0..=MAX_RATIO).contains(&se) {
                return Err(invalid(
                    "se",
                    format!("must be in 0..={MAX_RATIO}, got {se}"),
                ));
            }
        }
        let mut stages = Vec::with_capacity(n);
        let mut width_in = self.stem_width;
        for i in 0..n {
            let stage = self.stage(i, width_in)?;
            width_in = stage.width_out;
            stages.push(stage);
        }
        Ok(stages)
    }

    fn stage(&self, i: usize, width_in: usize) -> Result<Stage> {
        let (depth, w, g, b, stride) = (
            self.depths[i],
            self.widths[i],
            self.group_widths[i],
            self.bottlenecks[i],
            self.strides[i],
        );
        let s = i + 1;
        if depth == 0 || depth > 10_000 {
            return Err(invalid(
                "depths",
                format!("stage {s}: {depth} blocks (1..=10000)"),
            ));
        }
        if w == 0 || w > MAX_WIDTH {
            return Err(invalid(
                "widths",
                format!("stage {s}: {w} (1..={MAX_WIDTH})"),
            ));
        }
        if !(1..=8).contains(&stride) {
            return Err(invalid("strides", format!("stage {s}: {stride} (1..=8)")));
        }
        if !b.is_finite() || b <= 0.0 || b > MAX_RATIO {
            return Err(invalid(
                "bottlenecks",
                format!("stage {s}: {b} (a number in (0, {MAX_RATIO}])"),
            ));
        }
        let w_b = round_half_even(w as f64 * b) as usize;
        if w_b == 0 {
            return Err(invalid(
                "bottlenecks",
                format!("stage {s}: width {w} x {b} rounds to a bottleneck of 0 channels"),
            ));
        }
        if g == 0 || !w_b.is_multiple_of(g) {
            return Err(invalid(
                "group_widths",
                format!(
                    "stage {s}: the bottleneck width {w_b} (width {w} x bottleneck {b}) is not a \
                     multiple of the group width {g}"
                ),
            ));
        }
        let se = self.se_ratio.filter(|&r| r != 0.0);
        let blocks = (0..depth)
            .map(|k| {
                let (bw_in, st) = if k == 0 { (width_in, stride) } else { (w, 1) };
                Ok(BlockSpec {
                    width_in: bw_in,
                    stride: st,
                    se_width: se_width(se, bw_in)?,
                    projection: bw_in != w || st != 1,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Stage {
            depth,
            width_out: w,
            width_bottleneck: w_b,
            group_width: g,
            groups: w_b / g,
            stride,
            blocks,
        })
    }
}

fn parse_list<T: FromStr>(key: &'static str, v: &str) -> Result<Vec<T>> {
    v.split(':')
        .map(|x| {
            x.trim()
                .parse::<T>()
                .map_err(|_| invalid(key, format!("`{x}` in `{v}` is not a valid number")))
        })
        .collect()
}

impl FromStr for AnyNetParams {
    type Err = Error;

    /// Parses a spec (lists separated by `:`) and checks it ([`AnyNetParams::stages`]).
    fn from_str(s: &str) -> Result<Self> {
        let mut p = AnyNetParams {
            depths: Vec::new(),
            widths: Vec::new(),
            group_widths: Vec::new(),
            bottlenecks: Vec::new(),
            strides: Vec::new(),
            se_ratio: None,
            stem_width: 32,
            num_classes: 1000,
        };
        let mut seen: Vec<String> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                Error::Spec(format!(
                    "`{item}` is not of the form key=value (keys: {KEYS})"
                ))
            })?;
            let (k, v) = (k.trim(), v.trim());
            if seen.iter().any(|s| s == k) {
                return Err(Error::Spec(format!("`{k}` is given twice")));
            }
            match k {
                "depths" => p.depths = parse_list("depths", v)?,
                "widths" => p.widths = parse_list("widths", v)?,
                "group_widths" => p.group_widths = parse_list("group_widths", v)?,
                "bottlenecks" | "bottleneck_multipliers" => {
                    p.bottlenecks = parse_list("bottlenecks", v)?
                }
                "strides" => p.strides = parse_list("strides", v)?,
                "se" | "se_ratio" => {
                    p.se_ratio = match v {
                        "none" | "None" | "null" => None,
                        _ => Some(parse_list::<f64>("se", v)?.first().copied().unwrap_or(0.0)),
                    }
                }
                "stem" | "stem_width" => {
                    p.stem_width = v
                        .parse()
                        .map_err(|_| invalid("stem", format!("`{v}` is not an integer")))?
                }
                "classes" | "num_classes" => {
                    p.num_classes = v
                        .parse()
                        .map_err(|_| invalid("classes", format!("`{v}` is not an integer")))?
                }
                _ => return Err(Error::Spec(format!("unknown key `{k}` (keys: {KEYS})"))),
            }
            seen.push(k.to_string());
        }
        for key in ["depths", "widths", "group_widths", "bottlenecks", "strides"] {
            if !seen
                .iter()
                .any(|s| s == key || (key == "bottlenecks" && s == "bottleneck_multipliers"))
            {
                return Err(Error::Spec(format!(
                    "`{key}` is required (required keys: depths, widths, group_widths, bottlenecks, strides)"
                )));
            }
        }
        p.stages()?;
        Ok(p)
    }
}

impl fmt::Display for AnyNetParams {
    /// Writes the spec form, which parses back to the same parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn join<T: fmt::Display>(v: &[T]) -> String {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(":")
        }
        write!(
            f,
            "depths={},widths={},group_widths={},bottlenecks={},strides={}",
            join(&self.depths),
            join(&self.widths),
            join(&self.group_widths),
            join(&self.bottlenecks),
            join(&self.strides)
        )?;
        if let Some(se) = self.se_ratio {
            write!(f, ",se={se}")?;
        }
        write!(f, ",stem={},classes={}", self.stem_width, self.num_classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "depths=1:2:4:2,widths=24:64:144:320,group_widths=8:16:24:40,bottlenecks=1:1:1:1,strides=2:2:2:2,stem=24,classes=100";

    #[test]
    fn spec_round_trips() {
        let p: AnyNetParams = A.parse().unwrap();
        assert_eq!(p.to_string(), A);
        assert_eq!(p.to_string().parse::<AnyNetParams>().unwrap(), p);
    }

    #[test]
    fn bad_specs_are_named() {
        let cases = [
            (A.replace("depths=1:2:4:2", "depths=1:2:4"), "widths"),
            (
                A.replace("group_widths=8:16:24:40", "group_widths=8:16:24:48"),
                "group_widths",
            ),
            (
                A.replace("group_widths=8:16:24:40", "group_widths=8:0:24:40"),
                "group_widths",
            ),
            (A.replace("strides=2:2:2:2", "strides=2:2:2:0"), "strides"),
            (
                A.replace("bottlenecks=1:1:1:1", "bottlenecks=1:1:1:0"),
                "bottlenecks",
            ),
        ];
        for (spec, param) in cases {
            match spec.parse::<AnyNetParams>() {
                Err(Error::InvalidParam { param: p, .. }) => assert_eq!(p, param, "{spec}"),
                other => panic!("{spec}: {other:?}"),
            }
        }
        assert!(matches!(
            "depths=1,widths=8".parse::<AnyNetParams>(),
            Err(Error::Spec(_))
        ));
    }
}
