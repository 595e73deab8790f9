//! `plan`: what a RegNet is made of and what it costs, without weights or a GPU.
//!
//! ```text
//! plan (--model NAME | --regnet SPEC) [--size H | --size HxW] [--json] [--svg FILE]
//! ```
//!
//! `SPEC` is `depth=16,w0=48,wa=27.89,wm=2.09,group_width=8[,bottleneck=1.0][,se=0.25][,stem=32][,classes=1000]`.
//!
//! It prints a table like the RegNet paper's: one row per stage (depth `d_i`, width `w_i`,
//! bottleneck width, group width `g`, groups, stride, SE width, output resolution, parameters
//! and multiply-adds), the stem and the head, then the totals: parameters, MACs (also as the
//! GFLOPS torchvision publishes) and activations, for one image of the given size (224 by default).
//!
//! * `--json` prints one JSON object instead: `stages` (each with `depth`, `width_out`,
//!   `width_bottleneck`, `group_width`, `groups`, `stride` and `blocks`, each block with
//!   `width_in`, `stride`, `se_width` and `projection`), `num_params`, `macs`, `activations`,
//!   and for convenience `model`, `spec`, `params`, `size` and `gflops`.
//! * `--svg FILE` also draws the paper's figure: the continuous widths `u_j = w0 + wa*j`
//!   against the quantized per-block widths `w_j` on a log scale, stages shaded and labelled.
//! * Errors (unknown model, bad spec, invalid parameter, bad size) print `error: ...` to
//!   stderr and exit with status 2.
//!
//! Examples:
//!
//! ```text
//! cargo run --release --example plan -- --model regnet_y_400mf
//! cargo run --release --example plan -- --model regnet_x_3_2gf --size 320x480 --json
//! cargo run --release --example plan -- --regnet depth=16,w0=48,wa=27.89,wm=2.09,group_width=8,se=0.25
//! cargo run --release --example plan -- --model regnet_y_1_6gf --svg regnet_y_1_6gf.svg
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Parser};
use regnet_wgpu::{zoo, Plan, RegNetParams, Stage};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error>;

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

/// Expands a RegNet into its stages and blocks and counts its parameters, MACs and activations.
#[derive(Parser, Debug)]
#[command(name = "plan", group(ArgGroup::new("network").required(true).args(["model", "regnet"])))]
struct Args {
    /// A torchvision model name (regnet_y_400mf, regnet_x_3_2gf, ...).
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// RegNet parameters: depth=16,w0=48,wa=27.89,wm=2.09,group_width=8[,bottleneck=1.0][,se=0.25][,stem=32][,classes=1000]
    #[arg(long, value_name = "SPEC")]
    regnet: Option<String>,
    /// Input size: H (square) or HxW (height x width).
    #[arg(long, value_name = "H|HxW", default_value = "224", value_parser = parse_size)]
    size: Size,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also draw the widths per block (continuous and quantized) into this SVG file.
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
// The model and its per-stage accounting
// ---------------------------------------------------------------------------------------------

/// The network asked for: its parameters and, when it is one, its zoo name.
struct Network {
    name: Option<String>,
    params: RegNetParams,
}

impl Network {
    fn from_args(args: &Args) -> Result<Network, BoxError> {
        let params = match (&args.model, &args.regnet) {
            (Some(name), _) => zoo::get(name)?,
            (None, Some(spec)) => spec.parse::<RegNetParams>()?,
            (None, None) => return Err("give --model NAME or --regnet SPEC".into()),
        };
        // A spec that is a zoo model gets its name too.
        let name = zoo::names()
            .find(|n| zoo::get(n).is_ok_and(|p| p == params))
            .map(str::to_string);
        Ok(Network { name, params })
    }

    /// The zoo name, or `custom RegNet` for parameters outside the zoo.
    fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => "custom RegNet".to_string(),
        }
    }
}

/// Costs of one part of the network (the stem, a stage, or the head).
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    params: u64,
    macs: u64,
    activations: u64,
}

/// The plan's ops split into the stem, the stages and the head, with each part's output shape.
struct Parts {
    stem: Cost,
    stages: Vec<Cost>,
    head: Cost,
    /// Output (height, width) of the stem and of each stage.
    stem_out: (usize, usize),
    stage_out: Vec<(usize, usize)>,
}

/// Attributes every op to the part whose output tap (`stem`, `block1`, ...) it precedes.
fn split_costs(plan: &Plan) -> Result<Parts, BoxError> {
    let mut taps = vec![plan.tap("stem").ok_or("the plan has no `stem` tap")?];
    for i in 1..=plan.stages.len() {
        let name = format!("block{i}");
        taps.push(
            plan.tap(&name)
                .ok_or(format!("the plan has no `{name}` tap"))?,
        );
    }
    let mut costs = vec![Cost::default(); taps.len() + 1]; // stem, stages..., head
    for op in &plan.ops {
        let part = taps
            .iter()
            .position(|&v| op.output <= v)
            .unwrap_or(taps.len());
        let c = &mut costs[part];
        c.params += plan.op_params(op);
        c.macs += plan.op_macs(op);
        c.activations += plan.op_activations(op);
    }
    let hw = |v: usize| (plan.values[v].height, plan.values[v].width);
    let head = costs.pop().unwrap_or_default();
    Ok(Parts {
        stem: costs[0],
        stages: costs[1..].to_vec(),
        head,
        stem_out: hw(taps[0]),
        stage_out: taps[1..].iter().map(|&v| hw(v)).collect(),
    })
}

/// The distinct SE widths of a stage's blocks (the first block's input width differs).
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

/// MACs as torchvision publishes them (it calls multiply-adds FLOPS): `0.40 GFLOPS (401.8 MFLOPS)`.
fn flops(macs: u64) -> String {
    let g = macs as f64 / 1e9;
    if g >= 1.0 {
        format!("{g:.2} GFLOPS")
    } else if macs < 10_000_000 {
        format!("{:.3} MFLOPS", macs as f64 / 1e6)
    } else {
        format!("{g:.2} GFLOPS = {:.1} MFLOPS", macs as f64 / 1e6)
    }
}

/// Formats `(h, w)` as `56x56`.
fn resolution((h, w): (usize, usize)) -> String {
    format!("{h}x{w}")
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

/// The paper-style table with the header line and the totals.
fn render_table(net: &Network, plan: &Plan, parts: &Parts) -> String {
    let p = &net.params;
    let (h, w) = plan.input_size();
    let dash = || "-".to_string();
    let mut rows = vec![[
        "stage",
        "depth",
        "width",
        "bottleneck",
        "group_width",
        "groups",
        "stride",
        "SE",
        "output",
        "params",
        "MACs",
    ]
    .map(String::from)
    .to_vec()];
    rows.push(vec![
        "stem".into(),
        dash(),
        p.stem_width.to_string(),
        dash(),
        dash(),
        dash(),
        "2".into(),
        dash(),
        resolution(parts.stem_out),
        thousands(parts.stem.params),
        thousands(parts.stem.macs),
    ]);
    for (i, s) in plan.stages.iter().enumerate() {
        let se = se_widths(s);
        rows.push(vec![
            format!("block{}", i + 1),
            s.depth.to_string(),
            s.width_out.to_string(),
            s.width_bottleneck.to_string(),
            s.group_width.to_string(),
            s.groups.to_string(),
            s.stride.to_string(),
            if se.is_empty() {
                dash()
            } else {
                se.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join("/")
            },
            resolution(parts.stage_out[i]),
            thousands(parts.stages[i].params),
            thousands(parts.stages[i].macs),
        ]);
    }
    rows.push(vec![
        "head".into(),
        dash(),
        p.num_classes.to_string(),
        dash(),
        dash(),
        dash(),
        dash(),
        dash(),
        "1x1".into(),
        thousands(parts.head.params),
        thousands(parts.head.macs),
    ]);
    let depth: usize = plan.stages.iter().map(|s| s.depth).sum();
    rows.push(vec![
        "total".into(),
        depth.to_string(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        thousands(plan.num_params()),
        thousands(plan.macs()),
    ]);

    let mut out = String::new();
    let _ = writeln!(out, "{}: {p}", net.label());
    let _ = writeln!(out, "input {h}x{w} (one image)\n");
    out.push_str(&columns(&rows, true));
    out.push('\n');
    let totals = vec![
        vec![
            "params".to_string(),
            thousands(plan.num_params()),
            si(plan.num_params()),
        ],
        vec![
            "MACs".to_string(),
            thousands(plan.macs()),
            flops(plan.macs()),
        ],
        vec![
            "activations".to_string(),
            thousands(plan.activations()),
            si(plan.activations()),
        ],
    ];
    let num_w = totals.iter().map(|r| r[1].len()).max().unwrap_or(0);
    for row in totals {
        let _ = writeln!(out, "{:<12} {:>num_w$}  ({})", row[0], row[1], row[2]);
    }
    out.push_str("\nMACs: multiply-adds, what torchvision publishes as FLOPS.");
    if p.effective_se().is_some() {
        out.push_str(" SE: squeeze width of the first block / of the others.");
    }
    out.push('\n');
    out
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// The `--json` object.
fn render_json(net: &Network, plan: &Plan, parts: &Parts) -> Value {
    let (h, w) = plan.input_size();
    let stages: Vec<Value> = plan
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
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
            let (oh, ow) = parts.stage_out[i];
            json!({
                "name": format!("block{}", i + 1),
                "depth": s.depth,
                "width_out": s.width_out,
                "width_bottleneck": s.width_bottleneck,
                "group_width": s.group_width,
                "groups": s.groups,
                "stride": s.stride,
                "blocks": blocks,
                "output_size": [oh, ow],
                "num_params": parts.stages[i].params,
                "macs": parts.stages[i].macs,
                "activations": parts.stages[i].activations,
            })
        })
        .collect();
    json!({
        "model": net.name,
        "spec": net.params.to_string(),
        "params": net.params,
        "size": [h, w],
        "stages": stages,
        "num_params": plan.num_params(),
        "macs": plan.macs(),
        "gflops": plan.macs() as f64 / 1e9,
        "activations": plan.activations(),
    })
}

// ---------------------------------------------------------------------------------------------
// SVG: widths per block, continuous and quantized (the RegNet paper's figure)
// ---------------------------------------------------------------------------------------------

const SVG_W: f64 = 880.0;
const SVG_H: f64 = 540.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = SVG_W - 28.0;
const TOP: f64 = 100.0;
const BOTTOM: f64 = SVG_H - 62.0;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
const C_CONT: &str = "#d9480f";
const C_QUANT: &str = "#1c5fa8";
const C_ADJ: &str = "#2b8a3e";

/// Escapes text for SVG content and attributes.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Block index (x) and log width (y) to pixels.
struct Axes {
    x_min: f64,
    x_max: f64,
    log_lo: f64,
    log_hi: f64,
}

impl Axes {
    fn x(&self, j: f64) -> f64 {
        LEFT + (j - self.x_min) / (self.x_max - self.x_min) * (RIGHT - LEFT)
    }
    fn y(&self, width: f64) -> f64 {
        BOTTOM - (width.ln() - self.log_lo) / (self.log_hi - self.log_lo) * (BOTTOM - TOP)
    }
    /// Where `width` sits between the bottom (0) and the top (1) of the plot.
    fn frac(&self, width: f64) -> f64 {
        (width.ln() - self.log_lo) / (self.log_hi - self.log_lo)
    }
    fn lo(&self) -> f64 {
        self.log_lo.exp()
    }
    fn hi(&self) -> f64 {
        self.log_hi.exp()
    }
}

/// Log-scale ticks at nice values (1-2-5 and denser when the range is narrow): (major, minor).
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let within = |mantissas: &[f64]| -> Vec<f64> {
        let mut v = Vec::new();
        for k in k0..=k1 {
            for &m in mantissas {
                let t = m * 10f64.powi(k);
                if t >= lo * 0.9999 && t <= hi * 1.0001 {
                    v.push(t);
                }
            }
        }
        v
    };
    let sets: [&[f64]; 4] = [
        &[1.0],
        &[1.0, 2.0, 5.0],
        &[1.0, 2.0, 3.0, 5.0, 7.0],
        &[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ];
    let mut major = within(sets[3]);
    for set in sets {
        let t = within(set);
        if t.len() >= 4 {
            major = t;
            break;
        }
    }
    let minor = within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
        .into_iter()
        .filter(|t| !major.iter().any(|m| (m / t - 1.0).abs() < 1e-9))
        .collect();
    (major, minor)
}

/// A tick label: `1000`, `50`, `1.5`.
fn tick_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as u64)
    } else {
        format!("{v}")
    }
}

/// Step between labelled block indices, so that at most ~20 are labelled.
fn x_step(depth: usize) -> usize {
    let mut base = 1;
    loop {
        for m in [1, 2, 5] {
            if depth.div_ceil(m * base) <= 20 {
                return m * base;
            }
        }
        base *= 10;
    }
}

/// Roughly how wide `text` is at `size` px.
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.6
}

/// One stage's blocks `start..end`, its quantized width and its final (group-adjusted) width.
struct StageSpan {
    start: usize,
    end: usize,
    quantized: usize,
    adjusted: usize,
}

fn stage_spans(stages: &[Stage], block_widths: &[usize]) -> Vec<StageSpan> {
    let mut start = 0;
    stages
        .iter()
        .map(|s| {
            let span = StageSpan {
                start,
                end: start + s.depth,
                quantized: block_widths.get(start).copied().unwrap_or(s.width_out),
                adjusted: s.width_out,
            };
            start += s.depth;
            span
        })
        .collect()
}

/// The figure: `u_j` (line) against `w_j` (staircase) per block `j`, log-scale widths, stages shaded.
fn render_svg(net: &Network, plan: &Plan) -> Result<String, BoxError> {
    let p = &net.params;
    let u = p.continuous_widths();
    let wq = p.block_widths()?;
    let spans = stage_spans(&plan.stages, &wq);
    let d = wq.len();
    let any_adjusted = spans.iter().any(|s| s.adjusted != s.quantized);

    let all = u
        .iter()
        .copied()
        .chain(wq.iter().map(|&w| w as f64))
        .chain(spans.iter().map(|s| s.adjusted as f64))
        .filter(|w| *w > 0.0);
    let (mut lo, mut hi) = all.fold((f64::MAX, 0f64), |(lo, hi), w| (lo.min(w), hi.max(w)));
    if hi <= 0.0 {
        (lo, hi) = (1.0, 10.0);
    }
    let ax = Axes {
        x_min: -0.5,
        x_max: d as f64 - 0.5,
        log_lo: (lo / 1.3).ln(),
        log_hi: (hi * 1.3).ln(),
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_W}" height="{SVG_H}" viewBox="0 0 {SVG_W} {SVG_H}" font-family="{FONT}">"#
    );
    let _ = writeln!(s, "<title>{}: widths per block</title>", xml(&net.label()));
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    svg_titles(&mut s, net);
    svg_stage_bands(&mut s, &ax, &spans);
    svg_grid_and_axes(&mut s, &ax, d);
    svg_curves(&mut s, &ax, &u, &wq, &spans);
    svg_stage_labels(&mut s, &ax, &spans, &u);
    svg_legend(&mut s, any_adjusted);
    s.push_str("</svg>\n");
    Ok(s)
}

fn svg_titles(s: &mut String, net: &Network) {
    let p = &net.params;
    let title = match &net.name {
        Some(n) => format!("{n}: widths per block"),
        None => "RegNet: widths per block".to_string(),
    };
    let mut sub = format!(
        "d = {}, w0 = {}, wa = {}, wm = {}, g = {}, b = {}",
        p.depth, p.w0, p.wa, p.wm, p.group_width, p.bottleneck
    );
    if let Some(se) = p.effective_se() {
        let _ = write!(sub, ", se = {se}");
    }
    let _ = writeln!(
        s,
        r##"<text x="{x}" y="32" text-anchor="middle" font-size="19" font-weight="bold" fill="#222">{t}</text>"##,
        x = SVG_W / 2.0,
        t = xml(&title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{x}" y="54" text-anchor="middle" font-size="13" fill="#555">{t}</text>"##,
        x = SVG_W / 2.0,
        t = xml(&sub)
    );
}

fn svg_stage_bands(s: &mut String, ax: &Axes, spans: &[StageSpan]) {
    for (i, sp) in spans.iter().enumerate() {
        let (x0, x1) = (ax.x(sp.start as f64 - 0.5), ax.x(sp.end as f64 - 0.5));
        let fill = if i % 2 == 0 { "#eef3f9" } else { "#f8f9fb" };
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.2}" y="{TOP}" width="{w:.2}" height="{h}" fill="{fill}"/>"#,
            w = x1 - x0,
            h = BOTTOM - TOP
        );
        if i > 0 {
            let _ = writeln!(
                s,
                r##"<line x1="{x0:.2}" y1="{TOP}" x2="{x0:.2}" y2="{BOTTOM}" stroke="#9aa5b1" stroke-width="1" stroke-dasharray="4 3"/>"##
            );
        }
    }
}

fn svg_grid_and_axes(s: &mut String, ax: &Axes, depth: usize) {
    let (major, minor) = log_ticks(ax.lo(), ax.hi());
    for t in minor {
        let y = ax.y(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.2}" x2="{RIGHT}" y2="{y:.2}" stroke="#dde2e8" stroke-width="0.6"/>"##
        );
    }
    for &t in &major {
        let y = ax.y(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.2}" x2="{RIGHT}" y2="{y:.2}" stroke="#c3cad3" stroke-width="0.9"/>"##
        );
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{y:.2}" x2="{LEFT}" y2="{y:.2}" stroke="#333" stroke-width="1"/>"##,
            x0 = LEFT - 5.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{x}" y="{ty:.2}" text-anchor="end" font-size="12" fill="#333">{l}</text>"##,
            x = LEFT - 8.0,
            ty = y + 4.0,
            l = tick_label(t)
        );
    }
    let step = x_step(depth);
    for j in 0..depth {
        let x = ax.x(j as f64);
        let labelled = j % step == 0;
        let len = if labelled { 5.0 } else { 3.0 };
        if labelled || depth <= 100 {
            let _ = writeln!(
                s,
                r##"<line x1="{x:.2}" y1="{BOTTOM}" x2="{x:.2}" y2="{y2}" stroke="#333" stroke-width="1"/>"##,
                y2 = BOTTOM + len
            );
        }
        if labelled {
            let _ = writeln!(
                s,
                r##"<text x="{x:.2}" y="{y}" text-anchor="middle" font-size="12" fill="#333">{j}</text>"##,
                y = BOTTOM + 19.0
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="#333" stroke-width="1"/>"##,
        w = RIGHT - LEFT,
        h = BOTTOM - TOP
    );
    let _ = writeln!(
        s,
        r##"<text x="{x}" y="{y}" text-anchor="middle" font-size="13" fill="#222">block index j</text>"##,
        x = (LEFT + RIGHT) / 2.0,
        y = BOTTOM + 42.0
    );
    let (cx, cy) = (22.0, (TOP + BOTTOM) / 2.0);
    let _ = writeln!(
        s,
        r##"<text x="{cx}" y="{cy}" text-anchor="middle" font-size="13" fill="#222" transform="rotate(-90 {cx} {cy})">width (channels, log scale)</text>"##
    );
}

fn svg_curves(s: &mut String, ax: &Axes, u: &[f64], wq: &[usize], spans: &[StageSpan]) {
    let d = wq.len();
    // The continuous widths u_j = w0 + wa*j: a straight line, a curve on the log axis.
    if d >= 2 {
        let n = (d * 16).clamp(64, 2000);
        let (u0, slope) = (u[0], u[d - 1] - u[d - 2]);
        let mut path = String::new();
        for k in 0..=n {
            let j = (d - 1) as f64 * k as f64 / n as f64;
            let cmd = if k == 0 { 'M' } else { 'L' };
            let _ = write!(path, "{cmd}{:.2} {:.2} ", ax.x(j), ax.y(u0 + slope * j));
        }
        let _ = writeln!(
            s,
            r#"<path d="{}" fill="none" stroke="{C_CONT}" stroke-width="2"/>"#,
            path.trim_end()
        );
    }
    if d <= 120 {
        for (j, &uj) in u.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.2}" cy="{:.2}" r="2.6" fill="{C_CONT}"/>"#,
                ax.x(j as f64),
                ax.y(uj)
            );
        }
    }
    // Group-adjusted stage widths, where they differ from the quantized ones.
    for sp in spans.iter().filter(|sp| sp.adjusted != sp.quantized) {
        let y = ax.y(sp.adjusted as f64);
        let _ = writeln!(
            s,
            r#"<line x1="{:.2}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="{C_ADJ}" stroke-width="2.2" stroke-dasharray="6 3"/>"#,
            ax.x(sp.start as f64 - 0.5),
            ax.x(sp.end as f64 - 0.5)
        );
    }
    // The quantized widths w_j: a staircase, one step per block.
    let mut path = String::new();
    for (j, &w) in wq.iter().enumerate() {
        let (x0, x1, y) = (ax.x(j as f64 - 0.5), ax.x(j as f64 + 0.5), ax.y(w as f64));
        if j == 0 {
            let _ = write!(path, "M{x0:.2} {y:.2} ");
        } else {
            let _ = write!(path, "V{y:.2} ");
        }
        let _ = write!(path, "H{x1:.2} ");
    }
    let _ = writeln!(
        s,
        r#"<path d="{}" fill="none" stroke="{C_QUANT}" stroke-width="2.6" stroke-linejoin="miter"/>"#,
        path.trim_end()
    );
}

/// "stage i", its width and depth, in its band: at the top or the bottom, whichever is free.
fn svg_stage_labels(s: &mut String, ax: &Axes, spans: &[StageSpan], u: &[f64]) {
    const SIZE: f64 = 11.0;
    for (i, sp) in spans.iter().enumerate() {
        let (x0, x1) = (ax.x(sp.start as f64 - 0.5), ax.x(sp.end as f64 - 0.5));
        let cx = (x0 + x1) / 2.0;
        // The band's data range, to put the label where the curves are not.
        let mut vals: Vec<f64> = u[sp.start..sp.end].to_vec();
        vals.push(sp.quantized as f64);
        vals.push(sp.adjusted as f64);
        let top_room = 1.0 - ax.frac(vals.iter().copied().fold(f64::MIN, f64::max));
        let bottom_room = ax.frac(vals.iter().copied().fold(f64::MAX, f64::min));
        let at_top = top_room >= bottom_room;
        let width = if sp.adjusted != sp.quantized {
            format!("w={} ({})", sp.quantized, sp.adjusted)
        } else {
            format!("w={}", sp.adjusted)
        };
        let lines = [
            format!("stage {}", i + 1),
            width,
            format!("d={}", sp.end - sp.start),
        ];
        let widest = lines
            .iter()
            .map(|l| text_width(l, SIZE))
            .fold(0.0, f64::max);
        if widest + 4.0 <= x1 - x0 {
            let first_y = if at_top {
                TOP + 15.0
            } else {
                BOTTOM - 8.0 - 2.0 * (SIZE + 2.0)
            };
            for (k, line) in lines.iter().enumerate() {
                let weight = if k == 0 { "bold" } else { "normal" };
                let _ = writeln!(
                    s,
                    r##"<text x="{cx:.2}" y="{y:.2}" text-anchor="middle" font-size="{SIZE}" font-weight="{weight}" fill="#3b4652">{t}</text>"##,
                    y = first_y + k as f64 * (SIZE + 2.0),
                    t = xml(line)
                );
            }
        } else {
            // Too narrow: one rotated line, as much of it as fits where the curves are not.
            let room = top_room.max(bottom_room) * (BOTTOM - TOP) - 12.0;
            let text = [
                format!("{} · {} · {}", lines[0], lines[1], lines[2]),
                format!("{} · {}", lines[0], lines[1]),
                lines[0].clone(),
                format!("{}", i + 1),
            ]
            .into_iter()
            .find(|t| text_width(t, SIZE) <= room)
            .unwrap_or_else(|| format!("{}", i + 1));
            let (y, anchor) = if at_top {
                (TOP + 6.0, "end")
            } else {
                (BOTTOM - 6.0, "start")
            };
            let x = cx + SIZE * 0.35;
            let _ = writeln!(
                s,
                r##"<text x="{x:.2}" y="{y:.2}" text-anchor="{anchor}" font-size="{SIZE}" fill="#3b4652" transform="rotate(-90 {x:.2} {y:.2})">{t}</text>"##,
                t = xml(&text)
            );
        }
    }
}

/// What a legend entry shows next to its label.
enum Swatch {
    Line,
    Steps,
    Dashed,
    Band,
}

impl Swatch {
    /// The swatch, 24 px wide, starting at `x` and centred on `y`.
    fn svg(&self, x: f64, y: f64) -> String {
        let x2 = x + 24.0;
        match self {
            Swatch::Line => format!(
                r#"<line x1="{x}" y1="{y}" x2="{x2}" y2="{y}" stroke="{C_CONT}" stroke-width="2"/><circle cx="{cx}" cy="{y}" r="2.6" fill="{C_CONT}"/>"#,
                cx = x + 12.0
            ),
            Swatch::Steps => format!(
                r#"<path d="M{x} {y1} H{xm} V{y0} H{x2}" fill="none" stroke="{C_QUANT}" stroke-width="2.6"/>"#,
                y1 = y + 4.0,
                xm = x + 12.0,
                y0 = y - 4.0
            ),
            Swatch::Dashed => format!(
                r#"<line x1="{x}" y1="{y}" x2="{x2}" y2="{y}" stroke="{C_ADJ}" stroke-width="2.2" stroke-dasharray="6 3"/>"#
            ),
            Swatch::Band => format!(
                r##"<rect x="{x}" y="{y0}" width="24" height="12" fill="#eef3f9" stroke="#9aa5b1" stroke-width="0.8"/>"##,
                y0 = y - 6.0
            ),
        }
    }
}

/// One row of legend entries between the subtitle and the plot.
fn svg_legend(s: &mut String, any_adjusted: bool) {
    let mut entries = vec![
        (Swatch::Line, "u_j = w0 + wa·j (continuous)"),
        (Swatch::Steps, "w_j (quantized)"),
    ];
    if any_adjusted {
        entries.push((Swatch::Dashed, "stage width after group adjustment"));
    }
    entries.push((Swatch::Band, "stage"));
    let y = 80.0;
    let mut x = LEFT;
    for (swatch, label) in entries {
        let _ = writeln!(s, "{}", swatch.svg(x, y));
        let _ = writeln!(
            s,
            r##"<text x="{tx}" y="{ty}" font-size="12" fill="#222">{l}</text>"##,
            tx = x + 30.0,
            ty = y + 4.0,
            l = xml(label)
        );
        x += 30.0 + text_width(label, 12.0) * 0.92 + 22.0;
    }
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
    let plan = Plan::new(&net.params, args.size.height, args.size.width)?;
    let parts = split_costs(&plan)?;
    if let Some(path) = &args.svg {
        write_svg(path, &render_svg(&net, &plan)?)?;
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
            ExitCode::from(2)
        }
    }
}
