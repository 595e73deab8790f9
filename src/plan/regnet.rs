//! RegNet and AnyNet (torchvision's `RegNet`): a 3x3 stride-2 stem, stages of residual
//! bottleneck blocks (1x1, grouped 3x3 with optional SE, 1x1), the head. Module names are
//! torchvision's: `stem`, `trunk_output.block{s}.block{s}-{b}.f.{a,b,se,c}`, `...proj`, `fc`.

use super::builder::{Builder, ConvDef};
use super::Activation;
use crate::config::Stage;
use crate::error::Result;

/// A torchvision `Conv2dNormActivation` at `module` (conv `{module}.0`, BN `{module}.1`).
fn conv_bn(b: &mut Builder, module: String, x: usize, d: ConvDef) -> Result<usize> {
    let (weight, norm) = (format!("{module}.0.weight"), format!("{module}.1"));
    b.conv(module, x, d, weight, Some(norm))
}

/// Builds the network of `stages` after a `stem`-channel stem, with a `classes`-way head.
pub(super) fn build(b: &mut Builder, stages: &[Stage], stem: usize, classes: usize) -> Result<()> {
    let relu = Activation::Relu;
    let mut x = conv_bn(
        b,
        "stem".into(),
        0,
        ConvDef::new(stem, 3).stride(2).act(relu),
    )?;
    b.tap("stem", x);
    for (si, stage) in stages.iter().enumerate() {
        let sname = format!("block{}", si + 1);
        for (bi, blk) in stage.blocks.iter().enumerate() {
            let m = format!("trunk_output.{sname}.{sname}-{bi}");
            let wb = stage.width_bottleneck;
            // The projection first, as in ResNet: it reads the block's input, as f.a does, so
            // on texture operands the two share one copy of it.
            let shortcut = if blk.projection {
                let proj = ConvDef::new(stage.width_out, 1).stride(blk.stride);
                conv_bn(b, format!("{m}.proj"), x, proj)?
            } else {
                x
            };
            let a = conv_bn(b, format!("{m}.f.a"), x, ConvDef::new(wb, 1).act(relu))?;
            let conv_b = ConvDef::new(wb, 3)
                .stride(blk.stride)
                .groups(stage.groups)
                .act(relu);
            let mut y = conv_bn(b, format!("{m}.f.b"), a, conv_b)?;
            if let Some(se) = blk.se_width {
                y = b.squeeze_excite(format!("{m}.f.se"), y, se, false, Activation::Identity);
            }
            let c = ConvDef::new(stage.width_out, 1)
                .act(relu)
                .residual(shortcut);
            x = conv_bn(b, format!("{m}.f.c"), y, c)?;
        }
        b.tap(sname.clone(), x);
        b.stage(sname, stage.depth, x);
    }
    b.head("avgpool", "fc", x, classes);
    Ok(())
}
