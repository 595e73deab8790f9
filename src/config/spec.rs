//! The `--regnet` spec string: `depth=16,w0=48,wa=27.89,wm=2.09,group_width=8[,bottleneck=1.0][,se=0.25][,stem=32][,classes=1000]`.

use std::fmt;
use std::str::FromStr;

use super::RegNetParams;
use crate::error::{Error, Result};

const KEYS: &str = "depth, w0, wa, wm, group_width, bottleneck, se, stem, classes";

fn parse_int(key: &'static str, v: &str) -> Result<usize> {
    v.parse::<usize>().map_err(|_| Error::InvalidParam {
        param: key,
        reason: format!("`{v}` is not a non-negative integer"),
    })
}

fn parse_float(key: &'static str, v: &str) -> Result<f64> {
    let x = v.parse::<f64>().map_err(|_| Error::InvalidParam {
        param: key,
        reason: format!("`{v}` is not a number"),
    })?;
    if !x.is_finite() {
        return Err(Error::InvalidParam {
            param: key,
            reason: format!("`{v}` is not a finite number"),
        });
    }
    Ok(x)
}

impl FromStr for RegNetParams {
    type Err = Error;

    /// Parses a spec and validates the parameters.
    ///
    /// ```
    /// use regnet_wgpu::RegNetParams;
    /// let p: RegNetParams = "depth=16,w0=48,wa=27.89,wm=2.09,group_width=8,se=0.25".parse().unwrap();
    /// assert_eq!(p, regnet_wgpu::zoo::get("regnet_y_400mf").unwrap());
    /// assert!("depth=16,w0=50,wa=27.89,wm=2.09,group_width=8".parse::<RegNetParams>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        let (mut depth, mut w0, mut wa, mut wm, mut g) = (None, None, None, None, None);
        let mut p = RegNetParams::new(1, 8, 0.0, 2.0, 1);
        let mut seen: Vec<&str> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                Error::Spec(format!(
                    "`{item}` is not of the form key=value (keys: {KEYS})"
                ))
            })?;
            let (k, v) = (k.trim(), v.trim());
            let canonical = match k {
                "d" => "depth",
                "w_0" => "w0",
                "w_a" => "wa",
                "w_m" => "wm",
                "g" => "group_width",
                "b" | "bottleneck_multiplier" => "bottleneck",
                "se_ratio" => "se",
                "stem_width" => "stem",
                "num_classes" => "classes",
                other => other,
            };
            if seen.contains(&canonical) {
                return Err(Error::Spec(format!("`{canonical}` is given twice")));
            }
            match k {
                "depth" | "d" => depth = Some(parse_int("depth", v)?),
                "w0" | "w_0" => w0 = Some(parse_int("w0", v)?),
                "wa" | "w_a" => wa = Some(parse_float("wa", v)?),
                "wm" | "w_m" => wm = Some(parse_float("wm", v)?),
                "group_width" | "g" => g = Some(parse_int("group_width", v)?),
                "bottleneck" | "b" | "bottleneck_multiplier" => {
                    p.bottleneck = parse_float("bottleneck", v)?
                }
                "se" | "se_ratio" => {
                    p.se_ratio = match v {
                        "none" | "None" | "null" => None,
                        _ => Some(parse_float("se", v)?),
                    }
                }
                "stem" | "stem_width" => p.stem_width = parse_int("stem", v)?,
                "classes" | "num_classes" => p.num_classes = parse_int("classes", v)?,
                _ => return Err(Error::Spec(format!("unknown key `{k}` (keys: {KEYS})"))),
            }
            seen.push(canonical);
        }
        fn need<T>(x: Option<T>, k: &str) -> Result<T> {
            x.ok_or_else(|| {
                Error::Spec(format!(
                    "`{k}` is required (required keys: depth, w0, wa, wm, group_width)"
                ))
            })
        }
        p.depth = need(depth, "depth")?;
        p.w0 = need(w0, "w0")?;
        p.wa = need(wa, "wa")?;
        p.wm = need(wm, "wm")?;
        p.group_width = need(g, "group_width")?;
        p.validate()?;
        Ok(p)
    }
}

impl fmt::Display for RegNetParams {
    /// Writes the spec form, which parses back to the same parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "depth={},w0={},wa={},wm={},group_width={},bottleneck={}",
            self.depth, self.w0, self.wa, self.wm, self.group_width, self.bottleneck
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

    #[test]
    fn round_trips() {
        for name in crate::zoo::names() {
            let p = crate::zoo::get(name).unwrap();
            let q: RegNetParams = p.to_string().parse().unwrap();
            assert_eq!(p, q, "{name}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let e = "depth=16,w0=48,wa=27.89,wm=2.09"
            .parse::<RegNetParams>()
            .unwrap_err();
        assert!(e.to_string().contains("group_width"), "{e}");
        let e = "depth=16,w0=48,wa=abc,wm=2.09,group_width=8"
            .parse::<RegNetParams>()
            .unwrap_err();
        assert!(e.to_string().contains("`wa`"), "{e}");
        let e = "depth=16,w0=48,wa=2,wm=2.09,group_width=8,foo=1"
            .parse::<RegNetParams>()
            .unwrap_err();
        assert!(e.to_string().contains("foo"), "{e}");
        let e = "depth=-3,w0=48,wa=2,wm=2.09,group_width=8"
            .parse::<RegNetParams>()
            .unwrap_err();
        assert!(e.to_string().contains("`depth`"), "{e}");
        let e = "depth=16,w0=48,wa=2,wm=0.5,group_width=8"
            .parse::<RegNetParams>()
            .unwrap_err();
        assert!(e.to_string().contains("`wm`"), "{e}");
        assert!("".parse::<RegNetParams>().is_err());
        assert!("depth".parse::<RegNetParams>().is_err());
    }
}
