//! torchvision's ResNet, ResNeXt and Wide ResNet: a 7x7 stride-2 stem (`conv1`, `bn1`), a 3x3
//! stride-2 max pool, four stages `layer1` .. `layer4` of BasicBlocks or Bottlenecks (stride on
//! the 3x3, "v1.5"; `downsample.{0,1}` when the shape changes), the head (`avgpool`, `fc`).

use super::builder::{Builder, ConvDef};
use super::{Activation, Pool2d};
use crate::config::{ResNetBlock, ResNetParams};
use crate::error::Result;

/// A torchvision ResNet conv `{m}.conv{i}` with its BN `{m}.bn{i}`.
fn conv_bn(b: &mut Builder, m: &str, i: usize, x: usize, d: ConvDef) -> Result<usize> {
    let (w, n) = (format!("{m}.conv{i}.weight"), format!("{m}.bn{i}"));
    b.conv(format!("{m}.conv{i}"), x, d, w, Some(n))
}

/// Builds `p`.
pub(super) fn build(b: &mut Builder, p: &ResNetParams) -> Result<()> {
    p.validate()?;
    let relu = Activation::Relu;
    let stem = ConvDef::new(64, 7).stride(2).act(relu);
    let x = b.conv(
        "conv1".into(),
        0,
        stem,
        "conv1.weight".into(),
        Some("bn1".into()),
    )?;
    let mut x = b.pool("maxpool".into(), x, Pool2d::max(3, 2, 1))?;
    b.tap("stem", x);
    for (si, (&depth, (width, out))) in p.layers.iter().zip(p.stage_widths()).enumerate() {
        let layer = format!("layer{}", si + 1);
        for bi in 0..depth {
            let m = format!("{layer}.{bi}");
            let stride = if bi == 0 && si > 0 { 2 } else { 1 };
            let shortcut = if b.shape(x).channels != out || stride != 1 {
                let d = ConvDef::new(out, 1).stride(stride);
                let (w, n) = (
                    format!("{m}.downsample.0.weight"),
                    format!("{m}.downsample.1"),
                );
                b.conv(format!("{m}.downsample"), x, d, w, Some(n))?
            } else {
                x
            };
            let last = ConvDef::new(out, 1).act(relu).residual(shortcut);
            x = match p.block {
                ResNetBlock::Basic => {
                    let d = ConvDef::new(width, 3).stride(stride).act(relu);
                    let y = conv_bn(b, &m, 1, x, d)?;
                    conv_bn(b, &m, 2, y, ConvDef { kernel: 3, ..last })?
                }
                ResNetBlock::Bottleneck => {
                    let y = conv_bn(b, &m, 1, x, ConvDef::new(width, 1).act(relu))?;
                    let d = ConvDef::new(width, 3)
                        .stride(stride)
                        .groups(p.groups)
                        .act(relu);
                    let y = conv_bn(b, &m, 2, y, d)?;
                    conv_bn(b, &m, 3, y, last)?
                }
            };
        }
        b.tap(layer.clone(), x);
        b.stage(layer, depth, x);
    }
    b.head("avgpool", "fc", x, p.num_classes);
    Ok(())
}
