//! The `--regnet` spec string: `RegNetParams::from_str`, and for every spec that parses,
//! `stages()`, `Plan::new` and the plan's counts, since the spec's numbers flow into them.
//!
//! Input layout: bytes 0..2 and 2..4 are the plan's height and width (little-endian u16,
//! `% 32768 + 1`, so 1..=32768, `plan::MAX_INPUT_SIDE`); the rest, decoded as UTF-8
//! (lossily), is the spec. An input shorter than 4 bytes is all spec, at 224x224.
//!
//! Any panic (an arithmetic overflow included: the targets build with overflow checks),
//! abort, hang or runaway allocation is a finding; an `Err` is the expected answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regnet_wgpu::plan::OpKind;
use regnet_wgpu::{Plan, RegNetParams};

fn side(b: &[u8]) -> usize {
    u16::from_le_bytes([b[0], b[1]]) as usize % 32768 + 1
}

fuzz_target!(|data: &[u8]| {
    let (h, w, text) = if data.len() >= 4 {
        (side(&data[0..2]), side(&data[2..4]), &data[4..])
    } else {
        (224, 224, data)
    };
    let spec = String::from_utf8_lossy(text);
    let Ok(p) = spec.parse::<RegNetParams>() else {
        return;
    };

    // What parses is valid, and its Display form parses back to the same parameters.
    p.validate().expect("a parsed spec validates");
    let again: RegNetParams = p.to_string().parse().expect("Display output parses");
    assert_eq!(again, p, "spec round trip of {spec:?}");

    let Ok(stages) = p.stages() else {
        return;
    };
    assert_eq!(stages.iter().map(|s| s.depth).sum::<usize>(), p.depth);
    for s in &stages {
        assert_eq!(s.blocks.len(), s.depth);
        assert_eq!(s.groups * s.group_width, s.width_bottleneck);
    }

    let Ok(plan) = Plan::new(&p, h, w) else {
        return;
    };
    let blocks: Vec<usize> = plan.stages.iter().map(|s| s.blocks).collect();
    let depths: Vec<usize> = stages.iter().map(|s| s.depth).collect();
    assert_eq!(blocks, depths);
    assert_eq!(plan.input_size(), (h, w));
    for op in &plan.ops {
        let input = plan.values[op.input];
        let output = plan.values[op.output];
        if let OpKind::Conv2d(c) = &op.kind {
            assert_eq!(input.channels, c.in_channels, "{}", op.name);
            assert_eq!(output.channels, c.out_channels, "{}", op.name);
            assert_eq!(c.in_channels % c.groups, 0, "{}", op.name);
            assert_eq!(c.out_channels % c.groups, 0, "{}", op.name);
            assert!(output.height >= 1 && output.width >= 1, "{}", op.name);
            if let Some(r) = c.residual {
                assert_eq!(plan.values[r], output, "{}", op.name);
            }
        }
    }
    assert_eq!(plan.values[plan.output].channels, p.num_classes);
    let _ = plan.last_use();
    // The counts: u64 sums of usize products of the spec's numbers.
    let _ = (plan.num_params(), plan.macs(), plan.activations());
});
