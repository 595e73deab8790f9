//! Model configuration: the parameters of each family and what they expand to, and the named
//! models.
//!
//! This is pure Rust and needs no GPU. Each family follows its reference implementation
//! exactly: RegNet torchvision's `BlockParams.from_init_params` and
//! `_adjust_widths_groups_compatibilty` (float32 arithmetic where torch computes in float32
//! included), AnyNet torchvision's `BlockParams` given stage by stage, ResNet / ResNeXt / Wide
//! ResNet `torchvision.models.resnet`, ReXNet timm's `rexnet.py`, MobileNetV2 and ShuffleNetV2
//! `torchvision.models.mobilenetv2` and `shufflenetv2`.

mod anynet;
pub(crate) mod mobilenet;
mod pretrained;
mod regnet;
mod resnet;
mod rexnet;
mod shufflenet;
mod spec;
pub mod zoo;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use anynet::AnyNetParams;
pub use mobilenet::{make_divisible, InvertedResidual, MobileNetV2Params};
pub use pretrained::{pretrained, Pretrained};
pub use regnet::{BlockSpec, RegNetParams, Stage, MAX_CLASSES, MAX_RATIO, MAX_WIDTH};
pub use resnet::{ResNetBlock, ResNetParams};
pub use rexnet::{ReXBlock, ReXNetParams};
pub use shufflenet::ShuffleNetV2Params;

/// A model of any supported family: what a [`Plan`](crate::Plan) is made from.
///
/// ```
/// use regnet_wgpu::config::Architecture;
/// let a = Architecture::named("resnet50").unwrap();
/// assert_eq!(a.family(), "ResNet");
/// assert!(Architecture::named("regnet_y_400mf").is_ok());
/// assert!(Architecture::named("rexnet_150").is_ok());
/// assert!(Architecture::named("vgg16").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Architecture {
    /// RegNetX / RegNetY from the quantized linear rule (torchvision).
    RegNet(RegNetParams),
    /// Any stage-by-stage RegNet-style network (torchvision's `RegNet(BlockParams(...))`).
    AnyNet(AnyNetParams),
    /// ResNet, ResNeXt, Wide ResNet (torchvision).
    ResNet(ResNetParams),
    /// ReXNet (timm).
    ReXNet(ReXNetParams),
    /// MobileNetV2 (torchvision).
    MobileNetV2(MobileNetV2Params),
    /// ShuffleNetV2 (torchvision).
    ShuffleNetV2(ShuffleNetV2Params),
}

impl Architecture {
    /// A named model of any family: torchvision's RegNet and ResNet names, timm's ReXNet names.
    pub fn named(name: &str) -> crate::Result<Architecture> {
        let lower = name.to_ascii_lowercase().replace('-', "_");
        if let Some(p) = ResNetParams::named(&lower) {
            return Ok(Architecture::ResNet(p));
        }
        if let Some(p) = ReXNetParams::named(&lower) {
            return Ok(Architecture::ReXNet(p));
        }
        if let Some(p) = MobileNetV2Params::named(&lower) {
            return Ok(Architecture::MobileNetV2(p));
        }
        if let Some(p) = ShuffleNetV2Params::named(&lower) {
            return Ok(Architecture::ShuffleNetV2(p));
        }
        zoo::get(&lower)
            .map(Architecture::RegNet)
            .map_err(|_| crate::Error::UnknownModel {
                name: name.to_string(),
                known: Self::names().collect::<Vec<_>>().join(", "),
            })
    }

    /// The model a command line names with `--model NAME`, `--regnet SPEC` or `--anynet SPEC`
    /// (at most one of them; `None` when none is given).
    ///
    /// ```
    /// use regnet_wgpu::config::Architecture;
    /// let a = Architecture::from_args(None, None, Some("depths=1,widths=16,group_widths=8,bottlenecks=1,strides=2"));
    /// assert_eq!(a.unwrap().unwrap().family(), "AnyNet");
    /// assert!(Architecture::from_args(Some("resnet50"), Some("depth=1"), None).is_err());
    /// ```
    pub fn from_args(
        model: Option<&str>,
        regnet: Option<&str>,
        anynet: Option<&str>,
    ) -> crate::Result<Option<Architecture>> {
        match (model, regnet, anynet) {
            (None, None, None) => Ok(None),
            (Some(name), None, None) => Self::named(name).map(Some),
            (None, Some(spec), None) => Ok(Some(Architecture::RegNet(spec.parse()?))),
            (None, None, Some(spec)) => Ok(Some(Architecture::AnyNet(spec.parse()?))),
            _ => Err(crate::Error::Spec(
                "give one of --model NAME, --regnet SPEC and --anynet SPEC".into(),
            )),
        }
    }

    /// Every named model: RegNet's zoo, then the ResNets, the ReXNets, MobileNetV2 and the
    /// ShuffleNetV2s.
    pub fn names() -> impl Iterator<Item = &'static str> {
        zoo::names()
            .chain(ResNetParams::names())
            .chain(ReXNetParams::names())
            .chain(MobileNetV2Params::names())
            .chain(ShuffleNetV2Params::names())
    }

    /// The family's name (`RegNet`, `AnyNet`, `ResNet`, `ReXNet`, `MobileNetV2`, `ShuffleNetV2`).
    pub fn family(&self) -> &'static str {
        match self {
            Architecture::RegNet(_) => "RegNet",
            Architecture::AnyNet(_) => "AnyNet",
            Architecture::ResNet(_) => "ResNet",
            Architecture::ReXNet(_) => "ReXNet",
            Architecture::MobileNetV2(_) => "MobileNetV2",
            Architecture::ShuffleNetV2(_) => "ShuffleNetV2",
        }
    }

    /// The RegNet-style stages, for the families made of them (RegNet, AnyNet).
    pub fn regnet_stages(&self) -> Option<crate::Result<Vec<Stage>>> {
        match self {
            Architecture::RegNet(p) => Some(p.stages()),
            Architecture::AnyNet(p) => Some(p.stages()),
            _ => None,
        }
    }

    /// The named model these parameters are, if any.
    pub fn name(&self) -> Option<&'static str> {
        Self::names().find(|n| Self::named(n).is_ok_and(|a| &a == self))
    }
}

impl From<RegNetParams> for Architecture {
    fn from(p: RegNetParams) -> Self {
        Architecture::RegNet(p)
    }
}

impl From<&RegNetParams> for Architecture {
    fn from(p: &RegNetParams) -> Self {
        Architecture::RegNet(p.clone())
    }
}

impl From<&Architecture> for Architecture {
    fn from(a: &Architecture) -> Self {
        a.clone()
    }
}

impl From<AnyNetParams> for Architecture {
    fn from(p: AnyNetParams) -> Self {
        Architecture::AnyNet(p)
    }
}

impl From<ResNetParams> for Architecture {
    fn from(p: ResNetParams) -> Self {
        Architecture::ResNet(p)
    }
}

impl From<MobileNetV2Params> for Architecture {
    fn from(p: MobileNetV2Params) -> Self {
        Architecture::MobileNetV2(p)
    }
}

impl From<ShuffleNetV2Params> for Architecture {
    fn from(p: ShuffleNetV2Params) -> Self {
        Architecture::ShuffleNetV2(p)
    }
}

impl From<ReXNetParams> for Architecture {
    fn from(p: ReXNetParams) -> Self {
        Architecture::ReXNet(p)
    }
}

impl fmt::Display for Architecture {
    /// The model's name when it is a named one, else its spec (`--regnet` / `--anynet` form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.name() {
            return f.write_str(n);
        }
        match self {
            Architecture::RegNet(p) => write!(f, "{p}"),
            Architecture::AnyNet(p) => write!(f, "{p}"),
            Architecture::ResNet(p) => write!(f, "{p:?}"),
            Architecture::ReXNet(p) => write!(f, "{p:?}"),
            Architecture::MobileNetV2(p) => write!(f, "{p:?}"),
            Architecture::ShuffleNetV2(p) => write!(f, "{p:?}"),
        }
    }
}
