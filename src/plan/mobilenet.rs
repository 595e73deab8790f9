//! torchvision's MobileNetV2: `features.0` (3x3 stride-2 conv, BN, ReLU6), seventeen inverted
//! residual blocks `features.1` .. `features.17` (`conv.0` the 1x1 expansion with BN and ReLU6
//! unless the expansion is 1, then the depthwise 3x3 with BN and ReLU6, the linear 1x1 and its
//! BN; the input added when the shape is kept), `features.18` (1x1 to 1280, BN, ReLU6), the head
//! (average pool, `classifier.1`; the dropout is the identity at inference).

use super::builder::{Builder, ConvDef};
use super::Activation;
use crate::config::{mobilenet::SETTING, MobileNetV2Params};
use crate::error::Result;

/// torchvision's `Conv2dNormActivation` `{m}`: conv `{m}.0`, BN `{m}.1`.
fn conv_bn(b: &mut Builder, m: &str, x: usize, d: ConvDef) -> Result<usize> {
    let (w, n) = (format!("{m}.0.weight"), format!("{m}.1"));
    b.conv(m.to_string(), x, d, w, Some(n))
}

/// Builds `p`.
pub(super) fn build(b: &mut Builder, p: &MobileNetV2Params) -> Result<()> {
    p.validate()?;
    let relu6 = Activation::Relu6;
    let stem = ConvDef::new(p.stem_channels(), 3).stride(2).act(relu6);
    let mut x = conv_bn(b, "features.0", 0, stem)?;
    b.tap("stem", x);
    let blocks = p.blocks();
    let mut first = 1;
    for &(_, _, n, _) in &SETTING {
        for (i, blk) in blocks[first - 1..first - 1 + n].iter().enumerate() {
            let m = format!("features.{}", first + i);
            let mut y = x;
            let mut k = 0;
            if blk.expand != 1 {
                let d = ConvDef::new(blk.hidden, 1).act(relu6);
                y = conv_bn(b, &format!("{m}.conv.0"), y, d)?;
                k = 1;
            }
            let dw = ConvDef::new(blk.hidden, 3)
                .stride(blk.stride)
                .groups(blk.hidden)
                .act(relu6);
            y = conv_bn(b, &format!("{m}.conv.{k}"), y, dw)?;
            let mut d = ConvDef::new(blk.out, 1);
            if blk.stride == 1 && blk.inp == blk.out {
                d = d.residual(x);
            }
            let (w, n) = (
                format!("{m}.conv.{}.weight", k + 1),
                format!("{m}.conv.{}", k + 2),
            );
            y = b.conv(format!("{m}.conv.{}", k + 1), y, d, w, Some(n))?;
            b.tap(m, y);
            x = y;
        }
        let name = match n {
            1 => format!("features.{first}"),
            _ => format!("features.{first}-{}", first + n - 1),
        };
        b.stage(name, n, x);
        first += n;
    }
    let last = ConvDef::new(p.last_channel(), 1).act(relu6);
    let x = conv_bn(b, &format!("features.{first}"), x, last)?;
    b.tap(format!("features.{first}"), x);
    b.head("avgpool", "classifier.1", x, p.num_classes);
    Ok(())
}
