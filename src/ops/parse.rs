//! Operations from their names and keyword arguments as text (`stride=2,1`): the `op`
//! example's `--param` syntax and the fixtures' metadata.

use super::{ConvArgs, Operation, PoolArgs};
use crate::error::{Error, Result};
use crate::plan::Activation;

/// The keyword arguments given, each taken once.
struct Params<'a> {
    op: &'a str,
    given: Vec<(&'a str, &'a str, bool)>,
}

impl<'a> Params<'a> {
    fn new(op: &'a str, params: &'a [(String, String)]) -> Result<Self> {
        let mut given: Vec<(&str, &str, bool)> = Vec::new();
        for (k, v) in params {
            if given.iter().any(|(g, _, _)| g == k) {
                return Err(Error::Input(format!("`{op}`: parameter `{k}` given twice")));
            }
            given.push((k, v, false));
        }
        Ok(Params { op, given })
    }

    fn take(&mut self, key: &str) -> Option<&'a str> {
        let e = self.given.iter_mut().find(|(k, _, _)| *k == key)?;
        e.2 = true;
        Some(e.1)
    }

    fn bad(&self, key: &str, value: &str, want: &str) -> Error {
        Error::Input(format!(
            "`{}`: parameter `{key}={value}` is not {want}",
            self.op
        ))
    }

    fn int(&mut self, key: &str, default: usize) -> Result<usize> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| self.bad(key, v, "a non-negative integer")),
        }
    }

    /// `a,b` or `a` (both axes).
    fn pair(&mut self, key: &str, default: [usize; 2]) -> Result<[usize; 2]> {
        let Some(v) = self.take(key) else {
            return Ok(default);
        };
        let parts: Vec<&str> = v.split(',').map(str::trim).collect();
        let nums: Option<Vec<usize>> = parts.iter().map(|p| p.parse().ok()).collect();
        match nums.as_deref() {
            Some([a]) => Ok([*a, *a]),
            Some([a, b]) => Ok([*a, *b]),
            _ => Err(self.bad(key, v, "one or two non-negative integers (`2` or `2,1`)")),
        }
    }

    fn flag(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.take(key) {
            None => Ok(default),
            Some("true" | "True" | "1") => Ok(true),
            Some("false" | "False" | "0") => Ok(false),
            Some(v) => Err(self.bad(key, v, "`true` or `false`")),
        }
    }

    fn float(&mut self, key: &str, default: f64) -> Result<f64> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
                _ => Err(self.bad(key, v, "a non-negative number")),
            },
        }
    }

    fn activation(&mut self) -> Result<Activation> {
        match self.take("activation") {
            None | Some("none" | "identity") => Ok(Activation::Identity),
            Some("relu") => Ok(Activation::Relu),
            Some("relu6") => Ok(Activation::Relu6),
            Some("silu") => Ok(Activation::Silu),
            Some("sigmoid") => Ok(Activation::Sigmoid),
            Some(v) => Err(self.bad("activation", v, "none, relu, relu6, silu or sigmoid")),
        }
    }

    fn conv(&mut self) -> Result<ConvArgs> {
        Ok(ConvArgs {
            stride: self.pair("stride", [1, 1])?,
            padding: self.pair("padding", [0, 0])?,
            dilation: self.pair("dilation", [1, 1])?,
            groups: self.int("groups", 1)?,
            activation: self.activation()?,
            ..Default::default()
        })
    }

    /// An error unless `key` is given.
    fn require(&self, key: &str, syntax: &str) -> Result<()> {
        match self.given.iter().any(|(k, _, _)| *k == key) {
            true => Ok(()),
            false => Err(Error::Input(format!(
                "`{}` needs `--param {key}={syntax}`",
                self.op
            ))),
        }
    }

    fn pool(&mut self, dilation: bool, count_include_pad: bool) -> Result<PoolArgs> {
        self.require("kernel_size", "K (or KH,KW)")?;
        let kernel_size = self.pair("kernel_size", [1, 1])?;
        Ok(PoolArgs {
            kernel_size,
            stride: self.pair("stride", kernel_size)?,
            padding: self.pair("padding", [0, 0])?,
            dilation: if dilation {
                self.pair("dilation", [1, 1])?
            } else {
                [1, 1]
            },
            ceil_mode: self.flag("ceil_mode", false)?,
            count_include_pad: count_include_pad && self.flag("count_include_pad", true)?,
        })
    }

    /// An error naming a parameter the op does not take.
    fn finish(self) -> Result<()> {
        match self.given.iter().find(|(_, _, used)| !used) {
            Some((k, _, _)) => Err(Error::Input(format!(
                "`{}` takes no parameter `{k}`",
                self.op
            ))),
            None => Ok(()),
        }
    }
}

pub(super) fn parse(name: &str, params: &[(String, String)]) -> Result<Operation> {
    let mut p = Params::new(name, params)?;
    let op = match name {
        "conv2d" => Operation::Conv2d(ConvArgs {
            bn_eps: p.float("bn_eps", 1e-5)?,
            ..p.conv()?
        }),
        "deform_conv2d" => {
            let c = p.conv()?;
            if c.groups != 1 {
                return Err(Error::Input(
                    "`deform_conv2d` takes its groups from the weight's shape, as torchvision \
                     does: drop `groups`"
                        .into(),
                ));
            }
            Operation::DeformConv2d(c)
        }
        "max_pool2d" => Operation::MaxPool2d(p.pool(true, false)?),
        "avg_pool2d" => Operation::AvgPool2d(p.pool(false, true)?),
        "adaptive_avg_pool2d" => {
            p.require("output_size", "H,W")?;
            Operation::AdaptiveAvgPool2d {
                output_size: p.pair("output_size", [1, 1])?,
            }
        }
        "channel_shuffle" => Operation::ChannelShuffle {
            groups: p.int("groups", 0)?,
        },
        "batch_norm" => Operation::BatchNorm {
            eps: p.float("eps", 1e-5)?,
        },
        "squeeze_excitation" => Operation::SqueezeExcitation,
        "cbam" => Operation::Cbam {
            kernel_size: p.int("kernel_size", 7)?,
        },
        "relu" => Operation::Activation(Activation::Relu),
        "relu6" => Operation::Activation(Activation::Relu6),
        "silu" => Operation::Activation(Activation::Silu),
        "sigmoid" => Operation::Activation(Activation::Sigmoid),
        _ => {
            return Err(Error::Input(format!(
                "no op named `{name}`; the ops are {}",
                Operation::NAMES.join(", ")
            )))
        }
    };
    p.finish()?;
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tuples_scalars_and_defaults_follow_torch() {
        let op = parse("conv2d", &kv(&[("stride", "2,1"), ("padding", "3")])).unwrap();
        assert_eq!(
            op,
            Operation::Conv2d(ConvArgs {
                stride: [2, 1],
                padding: [3, 3],
                ..Default::default()
            })
        );
        let Operation::MaxPool2d(p) = parse("max_pool2d", &kv(&[("kernel_size", "3")])).unwrap()
        else {
            panic!()
        };
        assert_eq!((p.stride, p.ceil_mode), ([3, 3], false));
        let Operation::AvgPool2d(p) = parse("avg_pool2d", &kv(&[("kernel_size", "2")])).unwrap()
        else {
            panic!()
        };
        assert!(p.count_include_pad);
    }

    #[test]
    fn bad_params_are_named() {
        for (name, params, needle) in [
            ("conv2d", kv(&[("stride", "x")]), "stride=x"),
            ("conv2d", kv(&[("strides", "2")]), "strides"),
            ("conv2d", kv(&[("stride", "1"), ("stride", "2")]), "twice"),
            ("max_pool2d", kv(&[]), "kernel_size"),
            (
                "avg_pool2d",
                kv(&[("kernel_size", "2"), ("dilation", "2")]),
                "dilation",
            ),
            ("nope", kv(&[]), "conv2d"),
            ("conv2d", kv(&[("activation", "tanh")]), "activation"),
        ] {
            let e = parse(name, &params).unwrap_err().to_string();
            assert!(e.contains(needle), "{name}: {e}");
        }
    }
}
