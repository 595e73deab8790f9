//! `plan`: what a network is made of and what it costs, without weights or a GPU.
//!
//! ```text
//! plan (--model NAME | --regnet SPEC | --anynet SPEC) [--size H | --size HxW] [--json] [--svg FILE]
//! ```
//!
//! `NAME` is any named model: torchvision's RegNets (`regnet_y_400mf`, ...) and ResNets
//! (`resnet18` .. `resnet152`, `resnext50_32x4d`, `resnext101_32x8d`, `resnext101_64x4d`,
//! `wide_resnet50_2`, `wide_resnet101_2`), timm's ReXNets (`rexnet_100`, `_130`, `_150`, `_200`).
//! The RegNet `SPEC` is
//! `depth=16,w0=48,wa=27.89,wm=2.09,group_width=8[,bottleneck=1.0][,se=0.25][,stem=32][,classes=1000]`,
//! the AnyNet one (stage by stage, torchvision's `BlockParams`)
//! `depths=1:2:4:2,widths=24:64:144:320,group_widths=8:16:24:40,bottlenecks=1:1:1:1,strides=2:2:2:2[,se=0.25][,stem=32][,classes=1000]`.
//!
//! It prints one row per stage in the family's own terms (RegNet and AnyNet: the RegNet
//! paper's depth, width, bottleneck width, group width, groups, stride and SE width; ResNet:
//! blocks, widths, groups and stride of `layer1` .. `layer4`; ReXNet: blocks, output and
//! depthwise channels, expansion and SE width of each stage of `features`), each with its output
//! resolution, parameters and multiply-adds, the stem and the head, then the totals:
//! parameters, MACs (multiply-adds of convolutions and linear layers, also in GMACs: the number
//! torchvision's model table calls GFLOPS) and activations, for one image of the given size (224 by default).
//!
//! * `--json` prints one JSON object instead. Every family has `model` (the name, or null),
//!   `family`, `spec` (the `--regnet` / `--anynet` string, or null), `params` (the family's
//!   parameters), `size`, `input`, `num_params`, `macs`, `gmacs`, `activations`, `stem`,
//!   `head` and `stages`: each with `name`, `depth` (its number of blocks), `width_out`,
//!   `stride`, `output` (its shape), `output_size`, `num_params`, `macs`, `activations` and
//!   `blocks` (one object per block), plus the family's own fields (RegNet, AnyNet and ResNet:
//!   `width_bottleneck`, `group_width`, `groups`).
//! * `--svg FILE` also draws the widths per block (the library's `plot` module), stages shaded
//!   and labelled: for RegNet the paper's figure (the continuous widths `u_j = w0 + wa*j`
//!   against the quantized `w_j`, log scale) with the block widths after the group
//!   adjustment; for ReXNet the output channels on a linear scale with the linear rule they
//!   are rounded from; for AnyNet and ResNet the block widths; for all, the bottleneck widths
//!   where they differ and the SE widths where there is SE.
//! * Errors (unknown model, bad spec, invalid parameter, bad size) print `error: ...` to
//!   stderr and exit with status 2.
//!
//! Examples:
//!
//! ```text
//! cargo run --release --example plan -- --model regnet_y_400mf
//! cargo run --release --example plan -- --model resnet50
//! cargo run --release --example plan -- --model regnet_x_3_2gf --size 320x480 --json
//! cargo run --release --example plan -- --regnet depth=16,w0=48,wa=27.89,wm=2.09,group_width=8,se=0.25
//! cargo run --release --example plan -- --anynet depths=1:2:4:2,widths=24:64:144:320,group_widths=8:16:24:40,bottlenecks=1:1:1:1,strides=2:2:2:2
//! cargo run --release --example plan -- --model rexnet_100 --svg rexnet_100.svg
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::iter::once;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Parser};
use regnet_wgpu::config::{Architecture, ReXBlock, ReXNetParams, ResNetBlock, ResNetParams};
use regnet_wgpu::plan::{OpKind, Shape};
use regnet_wgpu::plot::{Axis, Band, Chart, Series};
use regnet_wgpu::{Plan, RegNetParams, Stage};
use serde_json::{json, Map, Value};

type BoxError = Box<dyn std::error::Error>;

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

/// Expands a network into its stages and blocks and counts its parameters, MACs and activations.
#[derive(Parser, Debug)]
#[command(
    name = "plan",
    group(ArgGroup::new("network").required(true).args(["model", "regnet", "anynet"]))
)]
struct Args {
    /// A named model: regnet_y_400mf, resnet50, resnext50_32x4d, rexnet_100, ...
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// RegNet parameters: depth=16,w0=48,wa=27.89,wm=2.09,group_width=8[,bottleneck=1.0][,se=0.25][,stem=32][,classes=1000]
    #[arg(long, value_name = "SPEC")]
    regnet: Option<String>,
    /// AnyNet stages: depths=1:2:4:2,widths=24:64:144:320,group_widths=8:16:24:40,bottlenecks=1:1:1:1,strides=2:2:2:2[,se=0.25][,stem=32][,classes=1000]
    #[arg(long, value_name = "SPEC")]
    anynet: Option<String>,
    /// Input size: H (square) or HxW (height x width).
    #[arg(long, value_name = "H|HxW", default_value = "224", value_parser = parse_size)]
    size: Size,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also draw the widths per block, stages shaded, into this SVG file.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

/// Input height and width.
#[derive(Clone, Copy, Debug)]
struct Size {
    height: usize,
    width: usize,
}

/// Parses `H` or `HxW` (both sides at least 1).
fn parse_size(s: &str) -> Result<Size, String> {
    let side = |t: &str| -> Result<usize, String> {
        match t.trim().parse::<usize>() {
            Ok(0) => Err(format!("`{s}`: each side must be at least 1 pixel")),
            Ok(n) => Ok(n),
            Err(_) => Err(format!(
                "`{s}` is not a size; expected H or HxW, e.g. 224 or 320x480"
            )),
        }
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok(Size {
            height: side(h)?,
            width: side(w)?,
        }),
        None => {
            let n = side(s)?;
            Ok(Size {
                height: n,
                width: n,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The network
// ---------------------------------------------------------------------------------------------

/// The network asked for: its architecture, its name when it is a named model, and what its
/// family is made of.
struct Network {
    arch: Architecture,
    name: Option<&'static str>,
    detail: Detail,
}

/// What a family's stages are made of, expanded once.
enum Detail {
    /// RegNet and AnyNet: the RegNet-style stages.
    RegNetStages(Vec<Stage>),
    /// ResNet, ResNeXt, Wide ResNet.
    ResNet(ResNetParams),
    /// ReXNet: its parameters and its blocks (`features.0` ..).
    ReXNet(ReXNetParams, Vec<ReXBlock>),
    /// MobileNetV2 and ShuffleNetV2: the plan's stages (blocks, output channels, stride).
    Stages,
}

impl Network {
    fn from_args(args: &Args) -> Result<Network, BoxError> {
        let arch = match (&args.model, &args.regnet, &args.anynet) {
            (Some(name), _, _) => Architecture::named(name)?,
            (None, Some(spec), _) => Architecture::RegNet(spec.parse()?),
            (None, None, Some(spec)) => Architecture::AnyNet(spec.parse()?),
            (None, None, None) => {
                return Err("give --model NAME, --regnet SPEC or --anynet SPEC".into())
            }
        };
        let detail = match &arch {
            Architecture::ResNet(p) => Detail::ResNet(p.clone()),
            Architecture::ReXNet(p) => Detail::ReXNet(p.clone(), p.blocks()?),
            Architecture::MobileNetV2(_) | Architecture::ShuffleNetV2(_) => Detail::Stages,
            other => Detail::RegNetStages(
                other
                    .regnet_stages()
                    .ok_or_else(|| format!("no stages for the {} family", other.family()))??,
            ),
        };
        // A spec that is a named model gets its name too.
        Ok(Network {
            name: arch.name(),
            arch,
            detail,
        })
    }

    /// The model's name, or `custom RegNet` / `custom AnyNet` / ... for unnamed parameters.
    fn label(&self) -> String {
        match self.name {
            Some(n) => n.to_string(),
            None => format!("custom {}", self.arch.family()),
        }
    }

    /// The spec string, for the families that have one.
    fn spec(&self) -> Option<String> {
        match &self.arch {
            Architecture::RegNet(p) => Some(p.to_string()),
            Architecture::AnyNet(p) => Some(p.to_string()),
            _ => None,
        }
    }

    /// One line saying what the parameters are: the spec, or the family's own parameters.
    fn description(&self) -> String {
        if let Some(spec) = self.spec() {
            return spec;
        }
        match &self.arch {
            Architecture::ResNet(p) => {
                let layers: Vec<String> = p.layers.iter().map(usize::to_string).collect();
                format!(
                    "ResNet, {} blocks {}, groups {}, width_per_group {}, {} classes",
                    block_name(p.block),
                    layers.join("-"),
                    p.groups,
                    p.width_per_group,
                    p.num_classes
                )
            }
            Architecture::ReXNet(p) => format!(
                "ReXNet, width_mult {}, depth_mult {}, se_ratio {}, {} classes",
                p.width_mult,
                p.depth_mult,
                num(p.se_ratio),
                p.num_classes
            ),
            Architecture::MobileNetV2(p) => format!(
                "MobileNetV2, width_mult {}, {} classes",
                p.width_mult, p.num_classes
            ),
            Architecture::ShuffleNetV2(p) => format!(
                "ShuffleNetV2, stages_repeats {:?}, stages_out_channels {:?}, {} classes",
                p.stages_repeats, p.stages_out_channels, p.num_classes
            ),
            other => other.to_string(),
        }
    }

    /// The family's parameters, as the library serializes them.
    fn params_json(&self) -> Value {
        match &self.arch {
            Architecture::RegNet(p) => json!(p),
            Architecture::AnyNet(p) => json!(p),
            Architecture::ResNet(p) => json!(p),
            Architecture::ReXNet(p) => json!(p),
            Architecture::MobileNetV2(p) => json!(p),
            Architecture::ShuffleNetV2(p) => json!(p),
        }
    }
}

fn block_name(b: ResNetBlock) -> &'static str {
    match b {
        ResNetBlock::Basic => "Basic",
        ResNetBlock::Bottleneck => "Bottleneck",
    }
}

/// Splits `items` (one per block) into the plan's stages.
fn per_stage<'a, T>(items: &'a [T], plan: &Plan) -> Vec<&'a [T]> {
    let mut start = 0;
    plan.stages
        .iter()
        .map(|s| {
            let (a, b) = (start.min(items.len()), (start + s.blocks).min(items.len()));
            start += s.blocks;
            &items[a..b]
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Per-part accounting
// ---------------------------------------------------------------------------------------------

/// Costs of one part of the network (the stem, a stage, or the head).
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    params: u64,
    macs: u64,
    activations: u64,
}

/// One part: its costs, its output and its stride (how much it shrinks the plane).
#[derive(Clone, Copy, Debug)]
struct Part {
    cost: Cost,
    output: Shape,
    stride: usize,
}

/// The plan's ops split into the stem, the stages and the head.
struct Parts {
    stem: Part,
    stages: Vec<Part>,
    head: Part,
}

/// Each value's total stride from the input (products of conv and pool strides along the way).
fn value_strides(plan: &Plan) -> Vec<usize> {
    let mut strides = vec![1; plan.values.len()];
    for op in &plan.ops {
        let s = match &op.kind {
            OpKind::Conv2d(c) => c.stride[0],
            OpKind::Pool2d(p) => p.stride[0],
            _ => 1,
        };
        strides[op.output] = strides[op.input] * s;
    }
    strides
}

/// Attributes every op to the part whose output (the `stem` tap, each stage's output, the
/// logits) it precedes: what follows the last stage is the head.
fn split_costs(plan: &Plan) -> Result<Parts, BoxError> {
    let stem = plan.tap("stem").ok_or("the plan has no `stem` tap")?;
    let ends: Vec<usize> = once(stem)
        .chain(plan.stages.iter().map(|s| s.output))
        .chain(once(plan.output))
        .collect();
    let mut costs = vec![Cost::default(); ends.len()];
    for op in &plan.ops {
        let part = ends
            .iter()
            .position(|&v| op.output <= v)
            .unwrap_or(ends.len() - 1);
        let c = &mut costs[part];
        c.params += plan.op_params(op);
        c.macs += plan.op_macs(op);
        c.activations += plan.op_activations(op);
    }
    let strides = value_strides(plan);
    let mut prev = 0;
    let mut parts: Vec<Part> = ends
        .iter()
        .zip(costs)
        .map(|(&v, cost)| {
            let stride = strides[v] / strides[prev].max(1);
            prev = v;
            Part {
                cost,
                output: plan.values[v],
                stride,
            }
        })
        .collect();
    let head = parts.pop().ok_or("the plan has no ops")?;
    let stem = parts.remove(0);
    Ok(Parts {
        stem,
        stages: parts,
        head,
    })
}

/// The distinct SE widths of a RegNet stage's blocks (the first block's input width differs).
fn se_widths(stage: &Stage) -> Vec<usize> {
    let mut ws: Vec<usize> = Vec::new();
    for w in stage.blocks.iter().filter_map(|b| b.se_width) {
        if !ws.contains(&w) {
            ws.push(w);
        }
    }
    ws
}

// ---------------------------------------------------------------------------------------------
// Number formatting
// ---------------------------------------------------------------------------------------------

/// `4344144` → `4,344,144`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `4344144` → `4.34 M`.
fn si(n: u64) -> String {
    let x = n as f64;
    if x >= 1e12 {
        format!("{:.2} T", x / 1e12)
    } else if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.2} K", x / 1e3)
    } else {
        n.to_string()
    }
}

/// MACs in G or M: `0.40 GMACs = 401.8 MMACs` (torchvision's model table prints the GMACs
/// figure as "GFLOPS"; every program here counts a multiply-add as one MAC and two FLOPs).
fn gmacs(macs: u64) -> String {
    let g = macs as f64 / 1e9;
    if g >= 1.0 {
        format!("{g:.2} GMACs")
    } else if macs < 10_000_000 {
        format!("{:.3} MMACs", macs as f64 / 1e6)
    } else {
        format!("{g:.2} GMACs = {:.1} MMACs", macs as f64 / 1e6)
    }
}

/// A number with at most 4 decimals and no trailing zeros: `11.25`, `16`, `0.0833`.
fn num(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Formats a shape's plane as `56x56`.
fn resolution(s: Shape) -> String {
    format!("{}x{}", s.height, s.width)
}

/// `a` when both ends agree, else `a→b`.
fn range(first: usize, last: usize) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}→{last}")
    }
}

/// The range of `f` over `items` (first → last), or `-` when there are none.
fn range_of<T>(items: &[T], f: impl Fn(&T) -> Option<usize>) -> String {
    let vals: Vec<usize> = items.iter().filter_map(f).collect();
    match (vals.first(), vals.last()) {
        (Some(&a), Some(&b)) => range(a, b),
        _ => "-".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Table
// ---------------------------------------------------------------------------------------------

/// Lays out rows in columns: the first left-aligned, the others right-aligned; a rule after
/// the header and before the last row when `total_row` is set.
fn columns(rows: &[Vec<String>], total_row: bool) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let total_width = widths.iter().sum::<usize>() + 2 * ncols.saturating_sub(1);
    let rule = format!("{}\n", "-".repeat(total_width));
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        if i == 1 || (total_row && i + 1 == rows.len() && i > 1) {
            out.push_str(&rule);
        }
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                let _ = write!(line, "{cell:<w$}", w = widths[c]);
            } else {
                let _ = write!(line, "  {cell:>w$}", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A family's part of the table: its columns between `stage` and `output` (the first is the
/// number of blocks), the cells of the stem, each stage and the head under them, and notes.
struct Rows {
    columns: Vec<&'static str>,
    stem: Vec<String>,
    stages: Vec<Vec<String>>,
    head: Vec<String>,
    notes: Vec<String>,
}

fn dash() -> String {
    "-".to_string()
}

/// RegNet and AnyNet: the paper's columns.
fn regnet_rows(stages: &[Stage], parts: &Parts) -> Rows {
    let stage_row = |s: &Stage| {
        let se = se_widths(s);
        let se = if se.is_empty() {
            dash()
        } else {
            se.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("/")
        };
        let nums = [s.depth, s.width_out, s.width_bottleneck];
        let nums = nums.into_iter().chain([s.group_width, s.groups, s.stride]);
        nums.map(|x| x.to_string()).chain(once(se)).collect()
    };
    let has_se = stages.iter().any(|s| !se_widths(s).is_empty());
    Rows {
        columns: vec![
            "depth",
            "width",
            "bottleneck",
            "group_width",
            "groups",
            "stride",
            "SE",
        ],
        stem: stem_cells(parts, 7, 5),
        stages: stages.iter().map(stage_row).collect(),
        head: head_cells(parts, 7),
        notes: if has_se {
            vec!["SE: squeeze width of the first block / of the others.".into()]
        } else {
            vec![]
        },
    }
}

/// The stem's cells: its width in column 1 and its stride in column `stride_col`, `-` elsewhere.
fn stem_cells(parts: &Parts, n: usize, stride_col: usize) -> Vec<String> {
    let mut c = vec![dash(); n];
    c[1] = parts.stem.output.channels.to_string();
    c[stride_col] = parts.stem.stride.to_string();
    c
}

/// The head's cells: the number of classes in column 1, `-` elsewhere.
fn head_cells(parts: &Parts, n: usize) -> Vec<String> {
    let mut c = vec![dash(); n];
    c[1] = parts.head.output.channels.to_string();
    c
}

/// ResNet: `layer1` .. `layer4`, with the 3x3 conv's width and groups.
fn resnet_rows(p: &ResNetParams, parts: &Parts) -> Rows {
    let stages = p
        .layers
        .iter()
        .zip(p.stage_widths())
        .zip(&parts.stages)
        .map(|((&depth, (wb, out)), part)| {
            let (b, g, n) = match p.block {
                ResNetBlock::Basic => (dash(), dash(), "1".to_string()),
                ResNetBlock::Bottleneck => (
                    wb.to_string(),
                    (wb / p.groups).to_string(),
                    p.groups.to_string(),
                ),
            };
            let st = part.stride.to_string();
            vec![depth.to_string(), out.to_string(), b, g, n, st]
        })
        .collect();
    Rows {
        columns: vec![
            "blocks",
            "width",
            "bottleneck",
            "group_width",
            "groups",
            "stride",
        ],
        stem: stem_cells(parts, 6, 5),
        stages,
        head: head_cells(parts, 6),
        notes: vec![
            "stem: conv1 (7x7, stride 2) and maxpool (3x3, stride 2).".into(),
            match p.block {
                ResNetBlock::Basic => "BasicBlock: two 3x3 convs at the stage's width.",
                ResNetBlock::Bottleneck => "bottleneck: width of the (grouped) 3x3 conv.",
            }
            .into(),
        ],
    }
}

/// ReXNet: the stages of `features`, channels of their first → last block.
fn rexnet_rows(p: &ReXNetParams, blocks: &[ReXBlock], plan: &Plan, parts: &Parts) -> Rows {
    let stages = per_stage(blocks, plan)
        .into_iter()
        .zip(&parts.stages)
        .map(|(bs, part)| {
            let ratio = |b: &ReXBlock| num(b.dw_chs as f64 / b.in_chs as f64);
            let expand = bs.first().map_or_else(dash, ratio);
            vec![
                bs.len().to_string(),
                range_of(bs, |b| Some(b.out_chs)),
                expand,
                range_of(bs, |b| Some(b.dw_chs)),
                range_of(bs, |b| b.se_chs),
                part.stride.to_string(),
            ]
        })
        .collect();
    let mut head = head_cells(parts, 6);
    head[1] = format!("{}→{}", p.final_chs(), parts.head.output.channels);
    Rows {
        columns: vec!["blocks", "channels", "expand", "dw", "SE", "stride"],
        stem: stem_cells(parts, 6, 5),
        stages,
        head,
        notes: vec![
            "channels, dw, SE: output, depthwise and squeeze channels of the first→last block."
                .into(),
            format!(
                "expand: the depthwise width over the input's. head: the final 1x1 conv \
                 (features.{}), avg pool, fc.",
                blocks.len()
            ),
        ],
    }
}

/// MobileNetV2, ShuffleNetV2: each stage's blocks, output channels and stride.
fn stage_rows(plan: &Plan, parts: &Parts) -> Rows {
    let stages = plan
        .stages
        .iter()
        .zip(&parts.stages)
        .map(|(s, part)| {
            let c = part.output.channels.to_string();
            vec![s.blocks.to_string(), c, part.stride.to_string()]
        })
        .collect();
    Rows {
        columns: vec!["blocks", "channels", "stride"],
        stem: stem_cells(parts, 3, 2),
        stages,
        head: head_cells(parts, 3),
        notes: vec!["channels: the stage's output channels.".into()],
    }
}

fn family_rows(net: &Network, plan: &Plan, parts: &Parts) -> Rows {
    match &net.detail {
        Detail::RegNetStages(stages) => regnet_rows(stages, parts),
        Detail::ResNet(p) => resnet_rows(p, parts),
        Detail::ReXNet(p, blocks) => rexnet_rows(p, blocks, plan, parts),
        Detail::Stages => stage_rows(plan, parts),
    }
}

/// A row: the part's name, the family's cells, then its output resolution, params and MACs.
fn table_row(name: &str, middle: Vec<String>, part: &Part) -> Vec<String> {
    once(name.to_string())
        .chain(middle)
        .chain([
            resolution(part.output),
            thousands(part.cost.params),
            thousands(part.cost.macs),
        ])
        .collect()
}

/// The stage table with the header lines, the totals and the notes.
fn render_table(net: &Network, plan: &Plan, parts: &Parts) -> String {
    let fam = family_rows(net, plan, parts);
    let header = once("stage")
        .chain(fam.columns.iter().copied())
        .chain(["output", "params", "MACs"])
        .map(String::from)
        .collect();
    let mut rows = vec![header, table_row("stem", fam.stem, &parts.stem)];
    for ((s, cells), part) in plan.stages.iter().zip(fam.stages).zip(&parts.stages) {
        rows.push(table_row(&s.name, cells, part));
    }
    rows.push(table_row("head", fam.head, &parts.head));
    let blocks: usize = plan.stages.iter().map(|s| s.blocks).sum();
    let mut total = vec![String::new(); fam.columns.len() + 4];
    total[0] = "total".into();
    total[1] = blocks.to_string();
    total[fam.columns.len() + 2] = thousands(plan.num_params());
    total[fam.columns.len() + 3] = thousands(plan.macs());
    rows.push(total);

    let (h, w) = plan.input_size();
    let mut out = format!("{}: {}\n", net.label(), net.description());
    let _ = writeln!(out, "input {h}x{w} (one image)\n");
    out.push_str(&columns(&rows, true));
    out.push('\n');
    out.push_str(&totals(plan));
    out.push_str("\nMACs: multiply-adds of convolutions and linear layers, what torchvision publishes as FLOPS.\n");
    for note in &fam.notes {
        let _ = writeln!(out, "{note}");
    }
    out
}

/// The totals: parameters, MACs, activations.
fn totals(plan: &Plan) -> String {
    let (p, m, a) = (plan.num_params(), plan.macs(), plan.activations());
    let rows = [
        ("params", thousands(p), si(p)),
        ("MACs", thousands(m), gmacs(m)),
        ("activations", thousands(a), si(a)),
    ];
    let num_w = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, n, human) in rows {
        let _ = writeln!(out, "{name:<12} {n:>num_w$}  ({human})");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// A part's costs and output.
fn part_json(part: &Part) -> Map<String, Value> {
    let o = part.output;
    let v = json!({
        "width_out": o.channels,
        "stride": part.stride,
        "output": o,
        "output_size": [o.height, o.width],
        "num_params": part.cost.params,
        "macs": part.cost.macs,
        "activations": part.cost.activations,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// RegNet and AnyNet stages: the paper's parameters and each block.
fn regnet_stage_json(s: &Stage) -> Value {
    let blocks: Vec<Value> = s
        .blocks
        .iter()
        .map(|b| {
            json!({
                "width_in": b.width_in,
                "stride": b.stride,
                "se_width": b.se_width,
                "projection": b.projection,
            })
        })
        .collect();
    json!({
        "width_out": s.width_out,
        "width_bottleneck": s.width_bottleneck,
        "group_width": s.group_width,
        "groups": s.groups,
        "stride": s.stride,
        "blocks": blocks,
    })
}

/// A ResNet stage: its widths and groups, and each block (the first one may project).
fn resnet_stage_json(p: &ResNetParams, i: usize, width_in: usize, stride: usize) -> Value {
    let (wb, out) = p.stage_widths()[i];
    let blocks: Vec<Value> = (0..p.layers[i])
        .map(|k| {
            let (w_in, st) = if k == 0 { (width_in, stride) } else { (out, 1) };
            json!({"width_in": w_in, "stride": st, "projection": w_in != out || st != 1})
        })
        .collect();
    let groups = match p.block {
        ResNetBlock::Basic => 1,
        ResNetBlock::Bottleneck => p.groups,
    };
    json!({
        "width_bottleneck": wb,
        "group_width": wb / groups,
        "groups": groups,
        "blocks": blocks,
    })
}

/// Each stage's family-specific fields.
fn stage_details(net: &Network, plan: &Plan, parts: &Parts) -> Vec<Value> {
    match &net.detail {
        Detail::RegNetStages(stages) => stages.iter().map(regnet_stage_json).collect(),
        Detail::ResNet(p) => {
            let ins = once(&parts.stem).chain(&parts.stages);
            ins.zip(&parts.stages)
                .enumerate()
                .map(|(i, (prev, part))| resnet_stage_json(p, i, prev.output.channels, part.stride))
                .collect()
        }
        Detail::ReXNet(_, blocks) => per_stage(blocks, plan)
            .into_iter()
            .map(|bs| json!({ "blocks": bs }))
            .collect(),
        Detail::Stages => plan.stages.iter().map(|_| json!({})).collect(),
    }
}

/// The `--json` object.
fn render_json(net: &Network, plan: &Plan, parts: &Parts) -> Value {
    let (h, w) = plan.input_size();
    let mut head = part_json(&parts.head);
    head.remove("stride"); // the global pool: not a stride
    let details = stage_details(net, plan, parts);
    let stages: Vec<Value> = plan
        .stages
        .iter()
        .zip(&parts.stages)
        .zip(details)
        .map(|((s, part), detail)| {
            let mut o = Map::new();
            o.insert("name".into(), json!(s.name));
            o.insert("depth".into(), json!(s.blocks));
            o.extend(part_json(part));
            if let Value::Object(d) = detail {
                o.extend(d);
            }
            Value::Object(o)
        })
        .collect();
    json!({
        "model": net.name,
        "family": net.arch.family(),
        "spec": net.spec(),
        "params": net.params_json(),
        "size": [h, w],
        "input": plan.values[0],
        "stem": part_json(&parts.stem),
        "stages": stages,
        "head": head,
        "num_params": plan.num_params(),
        "macs": plan.macs(),
        "gmacs": plan.macs() as f64 / 1e9,
        "activations": plan.activations(),
    })
}

// ---------------------------------------------------------------------------------------------
// SVG: widths per block, stages shaded (for RegNet the paper's figure), drawn by `plot`
// ---------------------------------------------------------------------------------------------

/// Bands of `depth` blocks each, labelled with the stage's name, its width and "d=depth".
fn bands(stages: impl Iterator<Item = (String, usize, String)>) -> Vec<Band> {
    let mut start = 0;
    stages
        .map(|(name, depth, width)| {
            let band = Band {
                x0: start as f64 - 0.5,
                x1: (start + depth) as f64 - 0.5,
                lines: vec![name, width, format!("d={depth}")],
            };
            start += depth;
            band
        })
        .collect()
}

/// One value per block as a staircase: block `j`'s value from `j - 0.5` to `j + 0.5`.
fn per_block_steps(label: &str, values: &[usize]) -> Series {
    let pts = values
        .iter()
        .enumerate()
        .map(|(j, &w)| (j as f64 - 0.5, w as f64));
    let end = values
        .last()
        .map(|&w| (values.len() as f64 - 0.5, w as f64));
    Series::steps(label, pts.chain(end))
}

/// One dot per block that has a value.
fn per_block_points(label: &str, values: impl Iterator<Item = Option<usize>>) -> Series {
    let pts = values
        .enumerate()
        .filter_map(|(j, w)| w.map(|w| (j as f64, w as f64)));
    Series::points(label, pts)
}

/// The rule `c0 + slope*j` over blocks `0..d`: its ends, or (`curved`: a log axis) two points
/// a block.
fn rule(label: String, c0: f64, slope: f64, d: usize, curved: bool) -> Series {
    let last = d.saturating_sub(1) as f64;
    let n = if curved { (d * 2).clamp(1, 2000) } else { 1 };
    Series::line(
        label,
        (0..=n).map(|k| {
            let j = last * k as f64 / n as f64;
            (j, c0 + slope * j)
        }),
    )
}

/// A chart over blocks `0..d`, widths on `y`.
fn widths_chart(title: String, subtitle: String, y: Axis, d: usize) -> Chart {
    let x = Axis {
        range: Some((-0.5, d.max(1) as f64 - 0.5)),
        ..Axis::linear("block index j")
    };
    let mut chart = Chart::new(title, x, y);
    chart.subtitle = Some(subtitle);
    chart
}

const LOG_WIDTHS: &str = "width (channels, log scale)";

fn figure(net: &Network, plan: &Plan) -> Result<Chart, BoxError> {
    let label = net.label();
    Ok(match (&net.arch, &net.detail) {
        (Architecture::RegNet(p), Detail::RegNetStages(stages)) => regnet_figure(p, stages, label)?,
        (_, Detail::RegNetStages(stages)) => anynet_figure(net, stages, label),
        (_, Detail::ResNet(p)) => resnet_figure(net, p, plan, label),
        (_, Detail::ReXNet(p, blocks)) => rexnet_figure(p, blocks, plan, label),
        (_, Detail::Stages) => stages_figure(net, plan, split_costs(plan)?, label),
    })
}

/// The block widths of RegNet-like stages (output, bottleneck where it differs, SE where
/// present), each stage a band.
fn stage_series(chart: &mut Chart, stages: &[Stage], output_label: &str) {
    let per_block = |f: fn(&Stage) -> usize| -> Vec<usize> {
        stages.iter().flat_map(|s| vec![f(s); s.depth]).collect()
    };
    chart
        .series
        .push(per_block_steps(output_label, &per_block(|s| s.width_out)));
    if stages.iter().any(|s| s.width_bottleneck != s.width_out) {
        let wb = per_block(|s| s.width_bottleneck);
        chart
            .series
            .push(per_block_steps("bottleneck width (the 3x3 conv's)", &wb));
    }
    let se = stages
        .iter()
        .flat_map(|s| s.blocks.iter().map(|b| b.se_width));
    if stages
        .iter()
        .any(|s| s.blocks.iter().any(|b| b.se_width.is_some()))
    {
        chart.series.push(per_block_points("SE width", se));
    }
}

/// RegNet: the continuous `u_j` (line) against the quantized `w_j` (dots), the block widths
/// after the group adjustment (steps), bottleneck and SE widths.
fn regnet_figure(p: &RegNetParams, stages: &[Stage], label: String) -> Result<Chart, BoxError> {
    let u = p.continuous_widths();
    let wq = p.block_widths()?;
    let d = u.len();
    let slope = if d >= 2 { u[d - 1] - u[d - 2] } else { 0.0 };
    let mut subtitle = format!(
        "d = {}, w0 = {}, wa = {}, wm = {}, g = {}, b = {}",
        p.depth, p.w0, p.wa, p.wm, p.group_width, p.bottleneck
    );
    if let Some(se) = p.effective_se() {
        let _ = write!(subtitle, ", se = {se}");
    }
    let title = format!("{label}: widths per block");
    let mut chart = widths_chart(title, subtitle, Axis::log(LOG_WIDTHS), d);
    let c0 = u.first().copied().unwrap_or(1.0);
    let u_label = "u_j = w0 + wa·j (continuous)".to_string();
    chart.series.push(rule(u_label, c0, slope, d, true));
    let quantized = wq.iter().map(|&w| Some(w));
    chart
        .series
        .push(per_block_points("w_j (quantized)", quantized));
    stage_series(&mut chart, stages, "block width (after group adjustment)");
    let mut start = 0;
    chart.bands = bands(stages.iter().enumerate().map(|(i, s)| {
        let quantized = wq.get(start).copied().unwrap_or(s.width_out);
        start += s.depth;
        let width = if quantized == s.width_out {
            format!("w={quantized}")
        } else {
            format!("w={quantized} ({})", s.width_out)
        };
        (format!("stage {}", i + 1), s.depth, width)
    }));
    Ok(chart)
}

fn anynet_figure(net: &Network, stages: &[Stage], label: String) -> Chart {
    let d = stages.iter().map(|s| s.depth).sum();
    let title = format!("{label}: widths per block");
    let mut chart = widths_chart(title, net.description(), Axis::log(LOG_WIDTHS), d);
    stage_series(&mut chart, stages, "block output width");
    chart.bands = bands(stages.iter().enumerate().map(|(i, s)| {
        let width = format!("w={}", s.width_out);
        (format!("stage {}", i + 1), s.depth, width)
    }));
    chart
}

/// ResNet: the block widths and, for bottleneck blocks, the 3x3 conv's width.
fn resnet_figure(net: &Network, p: &ResNetParams, plan: &Plan, label: String) -> Chart {
    let stages: Vec<(&str, usize, usize, usize)> = plan
        .stages
        .iter()
        .zip(p.stage_widths())
        .map(|(s, (wb, out))| (s.name.as_str(), s.blocks, out, wb))
        .collect();
    let d = stages.iter().map(|s| s.1).sum();
    let title = format!("{label}: widths per block");
    let mut chart = widths_chart(title, net.description(), Axis::log(LOG_WIDTHS), d);
    let per_block = |f: fn(&(&str, usize, usize, usize)) -> usize| -> Vec<usize> {
        stages.iter().flat_map(|s| vec![f(s); s.1]).collect()
    };
    chart
        .series
        .push(per_block_steps("block output width", &per_block(|s| s.2)));
    if p.block != ResNetBlock::Basic {
        let wb = per_block(|s| s.3);
        chart
            .series
            .push(per_block_steps("bottleneck width (the 3x3 conv's)", &wb));
    }
    chart.bands = bands(
        stages
            .iter()
            .map(|&(name, depth, out, _)| (name.to_string(), depth, format!("w={out}"))),
    );
    chart
}

/// MobileNetV2, ShuffleNetV2: each stage's output channels per block.
fn stages_figure(net: &Network, plan: &Plan, parts: Parts, label: String) -> Chart {
    let stages: Vec<(String, usize, usize)> = plan
        .stages
        .iter()
        .zip(&parts.stages)
        .map(|(s, part)| (s.name.clone(), s.blocks, part.output.channels))
        .collect();
    let d = stages.iter().map(|s| s.1).sum();
    let title = format!("{label}: widths per block");
    let mut chart = widths_chart(title, net.description(), Axis::log(LOG_WIDTHS), d);
    let widths: Vec<usize> = stages.iter().flat_map(|s| vec![s.2; s.1]).collect();
    chart
        .series
        .push(per_block_steps("block output width", &widths));
    chart.bands = bands(
        stages
            .into_iter()
            .map(|(name, depth, out)| (name, depth, format!("w={out}"))),
    );
    chart
}

/// ReXNet: output channels per block on a linear scale, with timm's linear rule
/// ([`ReXNetParams::linear_rule`]) they are rounded from, and the SE channels.
fn rexnet_figure(p: &ReXNetParams, blocks: &[ReXBlock], plan: &Plan, label: String) -> Chart {
    let (c0, slope) = p.linear_rule();
    let widths: Vec<usize> = blocks.iter().map(|b| b.out_chs).collect();
    let subtitle = format!(
        "width_mult = {}, depth_mult = {}, {} blocks, final 1x1 conv to {} channels",
        p.width_mult,
        p.depth_mult,
        blocks.len(),
        p.final_chs()
    );
    let top = widths.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.3;
    let y = Axis {
        range: Some((0.0, top)),
        ..Axis::linear("output channels (linear scale)")
    };
    let title = format!("{label}: output channels per block");
    let mut chart = widths_chart(title, subtitle, y, blocks.len());
    // The rule is timm's; drawn only when it is what the blocks were rounded from.
    let rule_holds = widths
        .iter()
        .enumerate()
        .all(|(j, &w)| (c0 + slope * j as f64 - w as f64).abs() <= 1.0);
    if rule_holds {
        let rule_label = format!(
            "{} + {}·j (timm's linear rule, before rounding)",
            num(c0),
            num(slope)
        );
        chart
            .series
            .push(rule(rule_label, c0, slope, blocks.len(), false));
    }
    chart.series.push(per_block_steps(
        "c_j (output channels of features.j)",
        &widths,
    ));
    if blocks.iter().any(|b| b.se_chs.is_some()) {
        let se = blocks.iter().map(|b| b.se_chs);
        chart.series.push(per_block_points("SE channels", se));
    }
    let groups = per_stage(blocks, plan);
    chart.bands = bands(plan.stages.iter().zip(groups).map(|(s, bs)| {
        let c = range_of(bs, |b| Some(b.out_chs));
        (s.name.clone(), s.blocks, format!("c={c}"))
    }));
    chart
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

/// Writes `text` to stdout; a closed pipe (`plan ... | head`) is not an error.
fn print(text: &str) -> Result<(), BoxError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn write_svg(path: &Path, svg: &str) -> Result<(), BoxError> {
    std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn run(args: &Args) -> Result<(), BoxError> {
    let net = Network::from_args(args)?;
    let plan = Plan::new(&net.arch, args.size.height, args.size.width)?;
    let parts = split_costs(&plan)?;
    if let Some(path) = &args.svg {
        write_svg(path, &figure(&net, &plan)?.to_svg()?)?;
    }
    if args.json {
        print(&format!("{}\n", render_json(&net, &plan, &parts)))
    } else {
        print(&render_table(&net, &plan, &parts))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
