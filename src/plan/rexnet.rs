//! timm's ReXNet: a 3x3 stride-2 stem with SiLU (`stem.conv`, `stem.bn`), inverted bottlenecks
//! `features.{i}` (optional 1x1 expansion with SiLU `conv_exp`, depthwise 3x3 `conv_dw`, SE
//! with a BatchNorm inside `se`, ReLU6, linear 1x1 `conv_pwl`, the input added to the first
//! output channels), a final 1x1 to 1280 x width with SiLU, the head (`head.fc`).

use super::builder::{Builder, ConvDef};
use super::Activation;
use crate::config::ReXNetParams;
use crate::error::Result;

/// A timm `ConvNormAct` at `module` (`{module}.conv`, `{module}.bn`).
fn conv_norm_act(b: &mut Builder, module: String, x: usize, d: ConvDef) -> Result<usize> {
    let (w, n) = (format!("{module}.conv.weight"), format!("{module}.bn"));
    b.conv(module, x, d, w, Some(n))
}

/// Builds `p`.
pub(super) fn build(b: &mut Builder, p: &ReXNetParams) -> Result<()> {
    let blocks = p.blocks()?;
    let (silu, relu6) = (Activation::Silu, Activation::Relu6);
    let stem = ConvDef::new(p.stem_chs(), 3).stride(2).act(silu);
    let mut x = conv_norm_act(b, "stem".into(), 0, stem)?;
    b.tap("stem", x);
    let mut first = 0;
    let mut stage_ends = p.layers().into_iter().scan(0, |end, l| {
        *end += l;
        Some(*end)
    });
    let mut next_end = stage_ends.next();
    for (i, blk) in blocks.iter().enumerate() {
        let m = format!("features.{i}");
        let input = x;
        let mut y = x;
        if blk.expand {
            let d = ConvDef::new(blk.dw_chs, 1).act(silu);
            y = conv_norm_act(b, format!("{m}.conv_exp"), y, d)?;
        }
        // ReLU6 follows the depthwise conv, or the SE gate when there is one.
        let dw_act = if blk.se_chs.is_some() {
            Activation::Identity
        } else {
            relu6
        };
        let dw = ConvDef::new(blk.dw_chs, 3)
            .stride(blk.stride)
            .groups(blk.dw_chs)
            .act(dw_act);
        y = conv_norm_act(b, format!("{m}.conv_dw"), y, dw)?;
        if let Some(se) = blk.se_chs {
            y = b.squeeze_excite(format!("{m}.se"), y, se, true, relu6);
        }
        let mut pwl = ConvDef::new(blk.out_chs, 1);
        if blk.shortcut {
            pwl = pwl.residual(input);
        }
        x = conv_norm_act(b, format!("{m}.conv_pwl"), y, pwl)?;
        b.tap(m, x);
        if next_end == Some(i + 1) {
            let name = if first == i {
                format!("features.{i}")
            } else {
                format!("features.{first}-{i}")
            };
            b.stage(name, i + 1 - first, x);
            first = i + 1;
            next_end = stage_ends.next();
        }
    }
    let m = format!("features.{}", blocks.len());
    x = conv_norm_act(b, m.clone(), x, ConvDef::new(p.final_chs(), 1).act(silu))?;
    b.tap(m, x);
    b.head("head.global_pool", "head.fc", x, p.num_classes);
    Ok(())
}
