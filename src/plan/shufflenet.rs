//! torchvision's ShuffleNetV2: `conv1` (3x3 stride-2 conv, BN, ReLU) and a 3x3 stride-2 max
//! pool, then `stage2` .. `stage4`, whose units are torchvision's `InvertedResidual`:
//!
//! - the first of a stage (stride 2) runs `branch1` (depthwise 3x3 stride 2 + BN, 1x1 + BN +
//!   ReLU) and `branch2` on the whole input;
//! - the others split the channels in two (`x.chunk(2, dim=1)`), keep the first half and run
//!   `branch2` (1x1 + BN + ReLU, depthwise 3x3 + BN, 1x1 + BN + ReLU) on the second;
//!
//! each concatenates its two halves and shuffles them in 2 groups. Then `conv5` (1x1, BN,
//! ReLU), the mean over the plane and `fc`.

use super::builder::{Builder, ConvDef};
use super::{Activation, Pool2d};
use crate::config::ShuffleNetV2Params;
use crate::error::Result;

/// A conv `{m}.{i}` with its BN `{m}.{i + 1}`.
fn conv_bn(b: &mut Builder, m: &str, i: usize, x: usize, d: ConvDef) -> Result<usize> {
    let (w, n) = (format!("{m}.{i}.weight"), format!("{m}.{}", i + 1));
    b.conv(format!("{m}.{i}"), x, d, w, Some(n))
}

/// One unit `m` on `x` to `out` channels.
fn unit(b: &mut Builder, m: &str, x: usize, out: usize, stride: usize) -> Result<usize> {
    let relu = Activation::Relu;
    let half = out / 2;
    let (kept, x2) = if stride > 1 {
        let inp = b.shape(x).channels;
        let br = format!("{m}.branch1");
        let dw = ConvDef::new(inp, 3).stride(stride).groups(inp);
        let a = conv_bn(b, &br, 0, x, dw)?;
        (conv_bn(b, &br, 2, a, ConvDef::new(half, 1).act(relu))?, x)
    } else {
        let x1 = b.slice(format!("{m}.chunk.0"), x, 0, half);
        (x1, b.slice(format!("{m}.chunk.1"), x, half, half))
    };
    let br = format!("{m}.branch2");
    let y = conv_bn(b, &br, 0, x2, ConvDef::new(half, 1).act(relu))?;
    let dw = ConvDef::new(half, 3).stride(stride).groups(half);
    let y = conv_bn(b, &br, 3, y, dw)?;
    let y = conv_bn(b, &br, 5, y, ConvDef::new(half, 1).act(relu))?;
    let cat = b.concat(format!("{m}.cat"), kept, vec![y]);
    Ok(b.shuffle(format!("{m}.shuffle"), cat, 2))
}

/// Builds `p`.
pub(super) fn build(b: &mut Builder, p: &ShuffleNetV2Params) -> Result<()> {
    p.validate()?;
    let c = p.stages_out_channels;
    let stem = ConvDef::new(c[0], 3).stride(2).act(Activation::Relu);
    let x = conv_bn(b, "conv1", 0, 0, stem)?;
    let mut x = b.pool("maxpool".into(), x, Pool2d::max(3, 2, 1))?;
    b.tap("stem", x);
    for (si, &repeats) in p.stages_repeats.iter().enumerate() {
        let name = format!("stage{}", si + 2);
        for bi in 0..repeats {
            let stride = if bi == 0 { 2 } else { 1 };
            x = unit(b, &format!("{name}.{bi}"), x, c[si + 1], stride)?;
        }
        b.tap(name.clone(), x);
        b.stage(name, repeats, x);
    }
    let x = conv_bn(
        b,
        "conv5",
        0,
        x,
        ConvDef::new(c[4], 1).act(Activation::Relu),
    )?;
    b.tap("conv5", x);
    b.head("mean", "fc", x, p.num_classes);
    Ok(())
}
