//! Lowering: each op kind of a plan to its dispatches (kernel variant, typed parameters,
//! bindings, workgroup count), and each op's weights to the layout its kernel reads. No device
//! here: every function is unit-tested on its own.
//!
//! | op kind | shader | lowering | CPU twin |
//! |---|---|---|---|
//! | 1x1 conv, one group | `conv_pointwise.wgsl` | [`lower_conv`] | `cpu::conv` (GEMM) |
//! | any other conv | `conv.wgsl` | [`lower_conv`] | `cpu::direct` |
//! | squeeze-and-excitation | `squeeze_excite.wgsl` | [`lower_squeeze_excite`] | `cpu::ops` |
//! | global average pool | `pool.wgsl` | [`lower_pool`] | `cpu::ops::global_avg_pool` |
//! | max / average / adaptive pool | `pool2d.wgsl` | [`lower_pool2d`] | `cpu::ops::pool2d` |
//! | channel shuffle | `channel_shuffle.wgsl` | [`lower_channel_shuffle`] | `cpu::ops::channel_shuffle` |
//! | deformable conv | `deform_conv.wgsl` | [`lower_deform_conv`] | `cpu::deform` |
//! | mean and max over channels | `channel_pool.wgsl` | [`lower_channel_pool`] | `cpu::ops::channel_pool` |
//! | spatial gate | `spatial_gate.wgsl` | [`lower_spatial_gate`] | `cpu::ops::spatial_gate` |
//! | channel slice, concatenation | `channel_copy.wgsl` | [`lower_channel_copy`] | `cpu::ops::copy_channels` |
//! | linear | `linear.wgsl` | [`lower_linear`] | `cpu::ops` |

use super::kernels::{act_code, Family, Operands, Variant, SUBGROUP_SIZE};
use super::params::{
    to_u32, ChannelCopyParams, ChannelPoolParams, ChannelShuffleParams, ConvParams,
    DeformConvParams, KernelParams, LinearParams, PointwiseParams, Pool2dParams, PoolParams,
    SpatialGateParams, SqueezeExciteParams,
};
use std::sync::Arc;

use super::autotune::{ShapeClass, TileChoice, TuneTable};
use super::tiling::{conv_subgroup_fits, Tiling, SUBGROUP_GEMM_MIN_BLOCKS};
use crate::error::{Error, Result};
use crate::plan::{
    Activation, Conv2d, DeformConv2d, Graph, Linear, Op, OpKind, PoolMode, SqueezeExcite, ValueId,
};

/// The largest element count (and so index) a kernel may address: `conv.wgsl` computes input
/// offsets in `i32` (padding makes them negative), everything else in `u32`.
pub const MAX_ELEMENTS: u64 = i32::MAX as u64;

/// A buffer a dispatch binds, resolved by the runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The buffer a value lives in.
    Value(ValueId),
    /// Weights of op `op`, part `part` (convolutions split over the binding limit have several).
    Weight {
        /// The op's index in the plan.
        op: usize,
        /// The part's index (0 unless the op is split).
        part: usize,
    },
    /// Biases of op `op`.
    Bias(usize),
    /// The per-image scratch of squeeze-and-excitation op `op`.
    Scratch(usize),
    /// The gate written by squeeze-and-excitation op `op`.
    Gate(usize),
    /// The status word (values that could not be stored).
    Status,
    /// A binding the variant does not read.
    Unused,
}

/// One dispatch of a lowered plan.
#[derive(Clone, Debug)]
pub struct Dispatch {
    /// The op's name, with the channel range of a split convolution's part.
    pub label: String,
    /// The pipeline.
    pub variant: Variant,
    /// Its parameters.
    pub params: KernelParams,
    /// Its storage bindings, in binding order from 1.
    pub bindings: Vec<Binding>,
    /// Workgroups to launch.
    pub workgroups: u64,
}

impl Dispatch {
    /// Sets the value the kernel reports in the status word (kernels that store values).
    pub fn set_status_tag(&mut self, tag: u32) {
        match &mut self.params {
            KernelParams::Conv(p) => p.status_tag = tag,
            KernelParams::Pointwise(p) => p.status_tag = tag,
            KernelParams::Linear(p) => p.status_tag = tag,
            _ => {}
        }
    }
}

/// The status tag of dispatch `k` of `count`: kernels keep the largest tag reported, so the
/// earliest dispatch that met a value it could not store is the one named.
pub fn status_tag(k: usize, count: usize) -> u32 {
    (count - k) as u32
}

/// The dispatch a status word names (`None` for 0: every value was stored).
pub fn status_dispatch(status: u32, count: usize) -> Option<usize> {
    (status != 0).then(|| count.saturating_sub(status as usize))
}

/// A range of a convolution's output channels (or a linear layer's outputs) dispatched with its
/// own weight buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvPart {
    /// First output channel.
    pub first_row: usize,
    /// Output channels.
    pub rows: usize,
}

/// Weight values per output channel of a convolution (one row of `[out, in / groups, kh, kw]`).
fn row_len(c: &Conv2d) -> usize {
    (c.in_channels / c.groups) * c.kernel[0] * c.kernel[1]
}

/// Output channels of one group in `part`, and the groups it spans.
fn part_layout(c: &Conv2d, part: &ConvPart) -> (usize, usize) {
    let cout_g = c.out_channels / c.groups;
    if part.rows >= cout_g {
        (cout_g, part.rows / cout_g)
    } else {
        (part.rows, 1)
    }
}

/// Elements of a part's packed weights ([`pack_conv_weights`]): its groups x rows x output
/// channels padded to a multiple of 4.
pub fn packed_len(c: &Conv2d, part: &ConvPart) -> usize {
    let (part_cout, groups) = part_layout(c, part);
    groups * row_len(c) * part_cout.div_ceil(4) * 4
}

/// Splits a convolution whose packed weights ([`packed_len`], `elem_bytes` each) exceed
/// `max_binding` bytes into parts that each fit: ranges of whole groups, or (when one group does
/// not fit) ranges of a multiple of 4 channels of one group. One part when it fits. An error
/// when not even 4 channels' weights fit.
pub fn split_conv(
    c: &Conv2d,
    elem_bytes: u64,
    max_binding: u64,
    name: &str,
) -> Result<Vec<ConvPart>> {
    let cout_g = c.out_channels / c.groups;
    let padded_row_bytes = row_len(c) as u64 * elem_bytes; // one output channel, one tap column
    let group_bytes = padded_row_bytes * cout_g.div_ceil(4) as u64 * 4;
    let groups_fit = (max_binding / group_bytes) as usize;
    let mut parts = Vec::new();
    if groups_fit >= 1 {
        let step = groups_fit.min(c.groups) * cout_g;
        for first in (0..c.out_channels).step_by(step) {
            parts.push(ConvPart {
                first_row: first,
                rows: step.min(c.out_channels - first),
            });
        }
        return Ok(parts);
    }
    let rows_fit = (max_binding / (padded_row_bytes * 4)) as usize * 4;
    if rows_fit == 0 {
        return Err(Error::binding_limit(
            format!("the weights of conv `{name}` (4 output channels at least)"),
            max_binding,
            padded_row_bytes * 4,
            "",
        ));
    }
    for g in 0..c.groups {
        for first in (0..cout_g).step_by(rows_fit) {
            parts.push(ConvPart {
                first_row: g * cout_g + first,
                rows: rows_fit.min(cout_g - first),
            });
        }
    }
    Ok(parts)
}

/// Splits a linear layer whose padded weight rows ([`pack_linear`], `elem_bytes` each) exceed
/// `max_binding` bytes into ranges of outputs that each fit; an error when one row does not.
pub fn split_linear(
    l: &Linear,
    elem_bytes: u64,
    max_binding: u64,
    name: &str,
) -> Result<Vec<ConvPart>> {
    let row_bytes = l.in_features.div_ceil(4) as u64 * 4 * elem_bytes;
    let rows_fit = (max_binding / row_bytes) as usize;
    if rows_fit == 0 {
        return Err(Error::binding_limit(
            format!("a weight row of linear `{name}`"),
            max_binding,
            row_bytes,
            "",
        ));
    }
    Ok((0..l.out_features)
        .step_by(rows_fit)
        .map(|first| ConvPart {
            first_row: first,
            rows: rows_fit.min(l.out_features - first),
        })
        .collect())
}

/// A part's weights in the layout its kernel loads as vec4, output channels innermost and
/// padded with zeros to a multiple of 4: pointwise `[in, oc_pad]`; direct
/// `[part groups, in / groups, kh, kw, oc_pad]`.
pub fn pack_conv_weights(c: &Conv2d, w: &[f32], part: &ConvPart) -> Vec<f32> {
    let cout_g = c.out_channels / c.groups;
    let per_oc = row_len(c);
    let (part_cout, groups) = part_layout(c, part);
    let oc_pad = part_cout.div_ceil(4) * 4;
    let mut out = vec![0.0; packed_len(c, part)];
    for gl in 0..groups {
        let first = part.first_row + gl * cout_g;
        for j in 0..part_cout {
            let row = &w[(first + j) * per_oc..(first + j + 1) * per_oc];
            for (k, &v) in row.iter().enumerate() {
                // k = (c * kh + ky) * kw + kx: one input tap
                out[(gl * per_oc + k) * oc_pad + j] = v;
            }
        }
    }
    out
}

/// Squeeze-and-excitation's weights as `squeeze_excite.wgsl` reads them: W1 `[R, c4]` then W2
/// `[C, r4]`, rows padded with zeros to multiples of 4 (`c4`, `r4`).
pub fn pack_squeeze_excite(se: &SqueezeExcite, w1: &[f32], w2: &[f32]) -> Vec<f32> {
    let (c, r) = (se.channels, se.squeeze);
    let (c4, r4) = (c.div_ceil(4) * 4, r.div_ceil(4) * 4);
    let mut w = vec![0.0f32; r * c4 + c * r4];
    for j in 0..r {
        w[j * c4..j * c4 + c].copy_from_slice(&w1[j * c..(j + 1) * c]);
    }
    for k in 0..c {
        let at = r * c4 + k * r4;
        w[at..at + r].copy_from_slice(&w2[k * r..(k + 1) * r]);
    }
    w
}

/// A linear layer's weights `[out, in]` with rows padded with zeros to a multiple of 4.
pub fn pack_linear(l: &Linear, w: &[f32]) -> Vec<f32> {
    let (inf, outf) = (l.in_features, l.out_features);
    let row = inf.div_ceil(4) * 4;
    let mut padded = vec![0.0f32; outf * row];
    for o in 0..outf {
        padded[o * row..o * row + inf].copy_from_slice(&w[o * inf..(o + 1) * inf]);
    }
    padded
}

/// A 2-D grid of `workgroups` with at most `max_dim` per dimension, balanced so that fewer than
/// `y` workgroups are launched past the end (and those return at once); `None` when it needs
/// more than `max_dim` rows.
pub fn grid(workgroups: u64, max_dim: u32) -> Option<(u32, u32)> {
    let max_dim = max_dim.max(1) as u64;
    let y = workgroups.div_ceil(max_dim).max(1);
    let x = workgroups.div_ceil(y).max(1);
    (y <= max_dim).then_some((x as u32, y as u32))
}

/// Refuses a plan whose values at `batch` images exceed [`MAX_ELEMENTS`].
pub fn check_indices(plan: &Graph, batch: u64) -> Result<()> {
    for (v, shape) in plan.values.iter().enumerate() {
        let count = batch * shape.numel() as u64;
        if count > MAX_ELEMENTS {
            let name = plan
                .ops
                .iter()
                .find(|o| o.output == v)
                .map_or("the input".to_string(), |o| {
                    format!("the output of `{}`", o.name)
                });
            return Err(Error::IndexOverflow {
                what: format!("the element count of {name} at batch {batch}"),
                count,
                max: MAX_ELEMENTS,
            });
        }
    }
    Ok(())
}

/// What a lowering needs besides the op.
pub struct LowerOptions {
    /// Images per inference.
    pub batch: u64,
    /// Register tiles.
    pub tiling: Tiling,
    /// The device runs the subgroup entry points ([`super::GpuContext::has_subgroups`]).
    pub subgroups: bool,
    /// The autotuner's choices: a convolution of a class the table holds takes its choice
    /// where the choice fits the layer, the rules otherwise.
    pub tuned: Option<Arc<TuneTable>>,
    /// Convolutions and squeeze-and-excitation read their operands from textures
    /// ([`Operands::Texture`]); the convolutions then without subgroup entry points.
    pub textures: bool,
    /// Dense "same" convolutions ([`is_dense_same`]) run as the GEMM over their taps rather
    /// than the direct kernel ([`Tiling::dense_as_gemm`] says on which adapters).
    pub dense_gemm: bool,
    /// The 1x1 GEMM takes 4 input channels per trip of its channel loop
    /// ([`super::tiling::unrolled_channels`]).
    pub unrolled_channels: bool,
}

impl LowerOptions {
    /// What a runner's options and its model's choices (subgroups, texture operands) ask of
    /// the lowering on `ctx`'s adapter, for `batch` images: the adapter's rules where the
    /// options leave a choice open.
    pub fn new(
        ctx: &super::GpuContext,
        model: &super::GpuModel,
        opts: &super::RunnerOptions,
        batch: u64,
    ) -> Self {
        let tiling = opts
            .tiling
            .unwrap_or_else(|| Tiling::for_adapter(&ctx.info));
        LowerOptions {
            batch,
            tiling,
            subgroups: model.subgroups(),
            tuned: opts.tuned.clone(),
            textures: model.textures(),
            dense_gemm: tiling.dense_as_gemm(model.textures()),
            unrolled_channels: opts
                .unrolled_channels
                .unwrap_or_else(|| super::tiling::unrolled_channels(&ctx.info)),
        }
    }

    /// Where the families with [`Operands`] read theirs (`textures`).
    fn operands(&self) -> Operands {
        if self.textures {
            Operands::Texture
        } else {
            Operands::Storage
        }
    }

    /// The table's choice for `class`, if any.
    fn tuned(&self, class: &ShapeClass) -> Option<TileChoice> {
        self.tuned.as_ref().and_then(|t| t.get(class))
    }
}

/// The spatial shape of a convolution for a batch.
struct ConvShape {
    batch: u64,
    in_h: u64,
    in_w: u64,
    out_h: u64,
    out_w: u64,
}

/// vec4s holding `n` values.
fn vec4s(n: u64) -> u64 {
    n.div_ceil(4)
}

/// What both convolution kernels' parameters start with: batch, channels and planes in and
/// out, then the vec4s holding the input (`[batch, in_c, in_h, in_w, out_c, out_h, out_w,
/// x_vec4s]`).
fn conv_dims(c: &Conv2d, s: &ConvShape, name: &str) -> Result<[u32; 8]> {
    let x = vec4s(s.batch * c.in_channels as u64 * s.in_h * s.in_w);
    let values = [
        ("batch", s.batch),
        ("in_c", c.in_channels as u64),
        ("in_h", s.in_h),
        ("in_w", s.in_w),
        ("out_c", c.out_channels as u64),
        ("out_h", s.out_h),
        ("out_w", s.out_w),
        ("x_vec4s", x),
    ];
    let mut out = [0u32; 8];
    for (o, (param, v)) in out.iter_mut().zip(values) {
        *o = to_u32(name, param, v)?;
    }
    Ok(out)
}

/// Lowers op `i` (a convolution) to one dispatch per part.
pub fn lower_conv(
    plan: &Graph,
    i: usize,
    c: &Conv2d,
    parts: &[ConvPart],
    o: &LowerOptions,
) -> Result<Vec<Dispatch>> {
    let op = &plan.ops[i];
    let (inp, out) = (plan.values[op.input], plan.values[op.output]);
    let s = ConvShape {
        batch: o.batch,
        in_h: inp.height as u64,
        in_w: inp.width as u64,
        out_h: out.height as u64,
        out_w: out.width as u64,
    };
    let gate = gate_of(plan, op.input);
    let gate_act = gate.map_or(0, |g| match &plan.ops[g].kind {
        OpKind::SqueezeExcite(se) => act_code(se.activation),
        _ => 0,
    });
    let residual = c.residual.map_or(Binding::Unused, Binding::Value);
    let res_c = c.residual.map_or(0, |r| plan.values[r].channels as u64);
    let operands = o.operands();
    parts
        .iter()
        .enumerate()
        .map(|(k, part)| {
            let label = if part.rows == c.out_channels {
                op.name.clone()
            } else {
                format!(
                    "{} (channels {}..{})",
                    op.name,
                    part.first_row,
                    part.first_row + part.rows
                )
            };
            let as_gemm = is_pointwise(c) || (is_dense_same(c) && o.dense_gemm);
            let (variant, mut params, workgroups) = if as_gemm {
                pointwise_dispatch(c, &s, part, o, operands, &op.name)?
            } else {
                direct_dispatch(c, &s, part, o, operands, &op.name)?
            };
            let res = to_u32(&op.name, "res_c", res_c)?;
            match &mut params {
                KernelParams::Conv(p) => p.res_c = res,
                KernelParams::Pointwise(p) => {
                    p.res_c = res;
                    let r = s.batch * res_c * s.out_h * s.out_w;
                    p.r_vec4s = to_u32(&op.name, "r_vec4s", vec4s(r).max(1))?;
                }
                _ => {}
            }
            Ok(Dispatch {
                label,
                variant: Variant {
                    act: act_code(c.activation),
                    residual: c.residual.is_some(),
                    gate: gate.is_some(),
                    gate_act,
                    ..variant
                },
                params,
                bindings: vec![
                    Binding::Value(op.input),
                    Binding::Weight { op: i, part: k },
                    Binding::Bias(i),
                    residual,
                    gate.map_or(Binding::Unused, Binding::Gate),
                    Binding::Value(op.output),
                    Binding::Status,
                ],
                workgroups,
            })
        })
        .collect()
}

/// Whether a convolution runs as the 1x1 GEMM.
pub fn is_pointwise(c: &Conv2d) -> bool {
    c.kernel == [1, 1] && c.padding == [0, 0] && c.groups == 1 && c.stride[0] == c.stride[1]
}

/// Whether a convolution is dense (one group), larger than 1x1, at stride 1 and dilation 1, with
/// "same" padding (`(k - 1) / 2` of an odd kernel), so its output plane is its input plane: the
/// shape the GEMM kernel also takes, tap by tap ([`Tiling::dense_as_gemm`] says where it does).
pub fn is_dense_same(c: &Conv2d) -> bool {
    let same = |k: usize, pad: usize| k % 2 == 1 && pad == (k - 1) / 2;
    c.groups == 1
        && c.kernel != [1, 1]
        && c.stride == [1, 1]
        && c.dilation == [1, 1]
        && same(c.kernel[0], c.padding[0])
        && same(c.kernel[1], c.padding[1])
}

/// The squeeze-and-excitation op whose output is `v`, if any (its gate scales `v`'s reads).
fn gate_of(plan: &Graph, v: ValueId) -> Option<usize> {
    plan.ops
        .iter()
        .position(|o| o.output == v && matches!(o.kind, OpKind::SqueezeExcite(_)))
}

fn pointwise_dispatch(
    c: &Conv2d,
    s: &ConvShape,
    part: &ConvPart,
    o: &LowerOptions,
    operands: Operands,
    name: &str,
) -> Result<(Variant, KernelParams, u64)> {
    // One invocation per (image, block of TM output channels, tile of TN pixels); the
    // subgroup entry point (1x1 only) has the blocks innermost and rounds up to whole subgroups.
    let hw = s.out_h * s.out_w;
    let class = ShapeClass::of(c, true, part.rows, s.batch, [s.out_h, s.out_w]);
    let tuned = o.tuned(&class).filter(TileChoice::fits_pointwise);
    let [tm, mut tn] = tuned.map_or(o.tiling.pointwise(), |t| t.tile);
    let ocb = (part.rows as u64).div_ceil(tm as u64);
    let subgroup = o.subgroups
        && operands == Operands::Storage
        && c.kernel == [1, 1]
        && match tuned {
            Some(t) => t.subgroup && ocb >= SUBGROUP_GEMM_MIN_BLOCKS,
            None => o.tiling.pointwise_subgroup(ocb),
        };
    // A stride-2 1x1 whose input planes and rows start on a vec4 loads its inputs as aligned
    // vec4s, a tile being pixels of one output row ("row tiles"; not the subgroup entry
    // point): fewer pixels a tile where that pads the rows by less.
    let row_tiles = !subgroup
        && c.stride == [2, 2]
        && (s.in_h * s.in_w).is_multiple_of(4)
        && (2 * s.in_w).is_multiple_of(4);
    if row_tiles && tuned.is_none() {
        tn = row_tile(tn, s.out_w);
    }
    let tiles_x = s.out_w.div_ceil(tn as u64);
    let tiles = if row_tiles {
        s.out_h * tiles_x
    } else {
        hw.div_ceil(tn as u64)
    };
    let mut invocations = s.batch * ocb * tiles;
    if subgroup {
        invocations = invocations.next_multiple_of(SUBGROUP_SIZE as u64);
    }
    let wg = tuned.map_or_else(|| o.tiling.workgroup(invocations), |t| t.wg);
    let u = |param: &str, v: u64| to_u32(name, param, v);
    u("invocations", invocations.next_multiple_of(wg as u64))?;
    let [batch, in_c, in_h, in_w, out_c, out_h, out_w, x_vec4s] = conv_dims(c, s, name)?;
    let params = PointwiseParams {
        batch,
        in_c,
        in_h,
        in_w,
        out_c,
        out_h,
        out_w,
        oc_blocks: u("oc_blocks", ocb)?,
        tiles: u("tiles", tiles)?,
        invocations: u("invocations", invocations)?,
        oc_begin: u("oc_begin", part.first_row as u64)?,
        oc_count: u("oc_count", part.rows as u64)?,
        oc_pad4: u("oc_pad4", vec4s(part.rows as u64))?,
        x_vec4s,
        r_vec4s: 0, // set by lower_conv from the residual's channels
        status_tag: 0,
        pad_y: u("pad_y", c.padding[0] as u64)?,
        pad_x: u("pad_x", c.padding[1] as u64)?,
        tiles_x: u("tiles_x", tiles_x)?,
        res_c: 0, // set by lower_conv, like r_vec4s
    };
    let variant = Variant {
        tile: [tm, tn],
        kernel: [c.kernel[0] as u32, c.kernel[1] as u32, c.stride[0] as u32],
        // Row tiles start mid-plane: on a vec4 when the rows do.
        aligned: hw.is_multiple_of(4) && (!row_tiles || s.out_w.is_multiple_of(4)),
        subgroup,
        mode: row_tiles as u32,
        channel_step: if o.unrolled_channels {
            super::tiling::POINTWISE_UNROLLED_CHANNELS
        } else {
            1
        },
        wg,
        operands,
        ..Variant::simple(Family::ConvPointwise, 0)
    };
    Ok((
        variant,
        KernelParams::Pointwise(params),
        invocations.div_ceil(wg as u64),
    ))
}

/// Pixels per row tile of a stride-2 1x1 on `out_w`-pixel rows: `tn`, or 8 or 4 where `tn`
/// would pad the row by more than 1/7 of its width (7-pixel rows: 8).
fn row_tile(tn: u32, out_w: u64) -> u32 {
    [tn, 8, 4]
        .into_iter()
        .filter(|&t| t <= tn)
        .find(|&t| out_w.div_ceil(t as u64) * t as u64 * 7 <= out_w * 8)
        .unwrap_or(4)
}

fn direct_dispatch(
    c: &Conv2d,
    s: &ConvShape,
    part: &ConvPart,
    o: &LowerOptions,
    operands: Operands,
    name: &str,
) -> Result<(Variant, KernelParams, u64)> {
    // One invocation per (image, group, block of OCN channels, row tile of PX pixels).
    let cout_g = c.out_channels / c.groups;
    let class = ShapeClass::of(c, false, part.rows, s.batch, [s.out_h, s.out_w]);
    let (kw, sx, dx) = (c.kernel[1], c.stride[1], c.dilation[1]);
    let tuned = o
        .tuned(&class)
        .and_then(|t| Some((t, t.conv_tile(kw, sx, dx)?)));
    let [ocn, px, kc] = tuned
        .map(|(_, tile)| tile)
        .or_else(|| o.tiling.conv(cout_g, kw, sx, dx, s.out_w))
        .ok_or_else(|| {
            Error::InvalidPlan(format!(
                "conv `{name}`: a horizontal stride of {} is more than the GPU's conv kernel \
                 supports (13: four output pixels' inputs must fit its registers)",
                c.stride[1]
            ))
        })?;
    let (part_cout, part_groups) = part_layout(c, part);
    let oc_skip = if part.rows >= cout_g {
        0
    } else {
        part.first_row % cout_g
    };
    let ocb = (part_cout as u64).div_ceil(ocn as u64);
    let tiles_x = s.out_w.div_ceil(px as u64);
    let tiles = s.out_h * tiles_x;
    // The subgroup entry point pads each (image, group, block)'s tiles to whole subgroups.
    let subgroup = o.subgroups
        && operands == Operands::Storage
        && kc as usize == kw
        && match tuned {
            Some((t, _)) => t.subgroup && conv_subgroup_fits(c.kernel, ocn, tiles),
            None => o.tiling.conv_subgroup(c.kernel, ocn, tiles),
        };
    let tiles_pad = tiles.next_multiple_of(SUBGROUP_SIZE as u64);
    let per_combo = if subgroup { tiles_pad } else { tiles };
    let invocations = s.batch * part_groups as u64 * ocb * per_combo;
    let wg = tuned.map_or_else(|| o.tiling.workgroup(invocations), |(t, _)| t.wg);
    let u = |param: &str, v: u64| to_u32(name, param, v);
    u("invocations", invocations.next_multiple_of(wg as u64))?;
    let [batch, in_c, in_h, in_w, out_c, out_h, out_w, x_vec4s] = conv_dims(c, s, name)?;
    let params = ConvParams {
        batch,
        in_c,
        in_h,
        in_w,
        out_c,
        out_h,
        out_w,
        groups: u("groups", c.groups as u64)?,
        pad_y: u("pad_y", c.padding[0] as u64)?,
        pad_x: u("pad_x", c.padding[1] as u64)?,
        stride_y: u("stride_y", c.stride[0] as u64)?,
        dil_y: u("dil_y", c.dilation[0] as u64)?,
        oc_blocks: u("oc_blocks", ocb)?,
        tiles_x: u("tiles_x", tiles_x)?,
        invocations: u("invocations", invocations)?,
        tiles_pad: u("tiles_pad", tiles_pad)?,
        g_begin: u("g_begin", (part.first_row / cout_g) as u64)?,
        part_groups: u("part_groups", part_groups as u64)?,
        part_cout: u("part_cout", part_cout as u64)?,
        oc_skip: u("oc_skip", oc_skip as u64)?,
        oc_pad4: u("oc_pad4", vec4s(part_cout as u64))?,
        x_vec4s,
        status_tag: 0,
        ..Default::default()
    };
    let variant = Variant {
        kernel: [c.kernel[0] as u32, c.kernel[1] as u32, c.stride[1] as u32],
        columns: [c.dilation[1] as u32, kc],
        tile: [ocn, px],
        subgroup,
        wg,
        operands,
        ..Variant::simple(Family::Conv, 0)
    };
    Ok((
        variant,
        KernelParams::Conv(params),
        invocations.div_ceil(wg as u64),
    ))
}

/// Lowers op `i` (squeeze-and-excitation) to its gate's dispatch: one workgroup per image.
pub fn lower_squeeze_excite(
    plan: &Graph,
    i: usize,
    se: &SqueezeExcite,
    o: &LowerOptions,
) -> Result<Dispatch> {
    let op = &plan.ops[i];
    let inp = plan.values[op.input];
    let (c, r) = (se.channels as u64, se.squeeze as u64);
    let (c4, r4) = (c.next_multiple_of(4), r.next_multiple_of(4));
    let hw = (inp.height * inp.width) as u64;
    let u = |param: &str, v: u64| to_u32(&op.name, param, v);
    let params = SqueezeExciteParams {
        batch: u("batch", o.batch)?,
        channels: u("channels", c)?,
        squeeze: u("squeeze", r)?,
        hw: u("hw", hw)?,
        c4: u("c4", c4)?,
        r4: u("r4", r4)?,
        w2_at: u("w2_at", r * c4 / 4)?,
        x_vec4s: u("x_vec4s", vec4s(o.batch * c * hw))?,
    };
    Ok(Dispatch {
        label: op.name.clone(),
        variant: Variant {
            mode: se.pool_max as u32,
            operands: o.operands(),
            ..Variant::simple(Family::SqueezeExcite, 0)
        },
        params: KernelParams::SqueezeExcite(params),
        bindings: vec![
            Binding::Value(op.input),
            Binding::Weight { op: i, part: 0 },
            Binding::Bias(i),
            Binding::Scratch(i),
            Binding::Gate(i),
        ],
        workgroups: o.batch,
    })
}

/// Floats of squeeze-and-excitation scratch per image: the pooled vector (two with
/// `pool_max`) and the hidden one, each padded to a multiple of 4.
pub fn squeeze_excite_scratch_len(se: &SqueezeExcite) -> u64 {
    let pooled = if se.pool_max { 2 } else { 1 };
    (pooled * se.channels.next_multiple_of(4) + se.squeeze.next_multiple_of(4)) as u64
}

/// Lowers op `i` (global average pooling): one invocation per plane.
pub fn lower_pool(plan: &Graph, i: usize, o: &LowerOptions) -> Result<Dispatch> {
    let op = &plan.ops[i];
    let inp = plan.values[op.input];
    let planes = o.batch * inp.channels as u64;
    let params = PoolParams {
        planes: to_u32(&op.name, "planes", planes)?,
        hw: to_u32(&op.name, "hw", (inp.height * inp.width) as u64)?,
        ..Default::default()
    };
    Ok(Dispatch {
        label: op.name.clone(),
        variant: Variant::simple(Family::Pool, 0),
        params: KernelParams::Pool(params),
        bindings: vec![Binding::Value(op.input), Binding::Value(op.output)],
        workgroups: planes.div_ceil(Family::Pool.workgroup_size() as u64),
    })
}

/// A dispatch of one invocation per value of `total` (the memory-bound families), or the
/// parameter that would overflow.
fn per_value(
    op: &Op,
    variant: Variant,
    params: KernelParams,
    bindings: Vec<Binding>,
    total: u64,
) -> Result<Dispatch> {
    let wg = variant.family.workgroup_size() as u64;
    to_u32(&op.name, "invocations", total.next_multiple_of(wg))?;
    Ok(Dispatch {
        label: op.name.clone(),
        variant,
        params,
        bindings,
        workgroups: total.div_ceil(wg),
    })
}

/// Lowers op `i` (pooling over windows, or adaptive average pooling): one invocation per
/// output value.
pub fn lower_pool2d(plan: &Graph, i: usize, o: &LowerOptions) -> Result<Dispatch> {
    let op = &plan.ops[i];
    let (inp, out) = (plan.values[op.input], plan.values[op.output]);
    let total = o.batch * out.numel() as u64;
    let u = |param: &str, v: usize| to_u32(&op.name, param, v as u64);
    let mut params = Pool2dParams {
        total: to_u32(&op.name, "total", total)?,
        in_h: u("in_h", inp.height)?,
        in_w: u("in_w", inp.width)?,
        out_h: u("out_h", out.height)?,
        out_w: u("out_w", out.width)?,
        neg_inf_bits: f32::NEG_INFINITY.to_bits(),
        ..Default::default()
    };
    let mode = match &op.kind {
        OpKind::Pool2d(m) => {
            [params.k_h, params.k_w] = [u("k_h", m.kernel[0])?, u("k_w", m.kernel[1])?];
            [params.s_h, params.s_w] = [u("s_h", m.stride[0])?, u("s_w", m.stride[1])?];
            [params.p_h, params.p_w] = [u("p_h", m.padding[0])?, u("p_w", m.padding[1])?];
            [params.d_h, params.d_w] = [u("d_h", m.dilation[0])?, u("d_w", m.dilation[1])?];
            match m.mode {
                PoolMode::Max => 0,
                PoolMode::Avg { count_include_pad } => {
                    params.count_include_pad = count_include_pad as u32;
                    1
                }
            }
        }
        _ => 2, // adaptive: the windows follow from the sizes
    };
    per_value(
        op,
        Variant {
            mode,
            ..Variant::simple(Family::Pool2d, 0)
        },
        KernelParams::Pool2d(params),
        vec![Binding::Value(op.input), Binding::Value(op.output)],
        total,
    )
}

/// Lowers op `i` (channel shuffle in `groups` groups): one invocation per value.
pub fn lower_channel_shuffle(
    plan: &Graph,
    i: usize,
    groups: usize,
    o: &LowerOptions,
) -> Result<Dispatch> {
    let op = &plan.ops[i];
    let s = plan.values[op.input];
    let total = o.batch * s.numel() as u64;
    let u = |param: &str, v: u64| to_u32(&op.name, param, v);
    let params = ChannelShuffleParams {
        total: u("total", total)?,
        channels: u("channels", s.channels as u64)?,
        groups: u("groups", groups as u64)?,
        hw: u("hw", (s.height * s.width) as u64)?,
    };
    per_value(
        op,
        Variant::simple(Family::ChannelShuffle, 0),
        KernelParams::ChannelShuffle(params),
        vec![Binding::Value(op.input), Binding::Value(op.output)],
        total,
    )
}

/// Lowers op `i` (mean and max over channels): one invocation per (image, pixel).
pub fn lower_channel_pool(plan: &Graph, i: usize, o: &LowerOptions) -> Result<Dispatch> {
    let op = &plan.ops[i];
    let s = plan.values[op.input];
    let hw = (s.height * s.width) as u64;
    let u = |param: &str, v: u64| to_u32(&op.name, param, v);
    let params = ChannelPoolParams {
        total: u("total", o.batch * hw)?,
        channels: u("channels", s.channels as u64)?,
        hw: u("hw", hw)?,
        _pad0: 0,
    };
    per_value(
        op,
        Variant::simple(Family::ChannelPool, 0),
        KernelParams::ChannelPool(params),
        vec![Binding::Value(op.input), Binding::Value(op.output)],
        o.batch * hw,
    )
}

/// Lowers op `i` (channels times the spatial map `map`): one invocation per value.
pub fn lower_spatial_gate(
    plan: &Graph,
    i: usize,
    map: ValueId,
    o: &LowerOptions,
) -> Result<Dispatch> {
    let op = &plan.ops[i];
    let s = plan.values[op.input];
    let total = o.batch * s.numel() as u64;
    let u = |param: &str, v: u64| to_u32(&op.name, param, v);
    let params = SpatialGateParams {
        total: u("total", total)?,
        channels: u("channels", s.channels as u64)?,
        hw: u("hw", (s.height * s.width) as u64)?,
        _pad0: 0,
    };
    per_value(
        op,
        Variant::simple(Family::SpatialGate, 0),
        KernelParams::SpatialGate(params),
        vec![
            Binding::Value(op.input),
            Binding::Value(map),
            Binding::Value(op.output),
        ],
        total,
    )
}

/// Lowers op `i` (a channel slice, or a concatenation): one dispatch per part copied, one
/// invocation per value.
pub fn lower_channel_copy(plan: &Graph, i: usize, o: &LowerOptions) -> Result<Vec<Dispatch>> {
    let op = &plan.ops[i];
    let out = plan.values[op.output];
    let hw = (out.height * out.width) as u64;
    let u = |param: &str, v: u64| to_u32(&op.name, param, v);
    // (source, its first channel read, channels copied, first channel written)
    let parts: Vec<(ValueId, usize, usize, usize)> = match &op.kind {
        OpKind::ChannelSlice(begin) => vec![(op.input, *begin, out.channels, 0)],
        OpKind::Concat(others) => {
            let mut at = 0;
            std::iter::once(op.input)
                .chain(others.iter().copied())
                .map(|v| {
                    let c = plan.values[v].channels;
                    at += c;
                    (v, 0, c, at - c)
                })
                .collect()
        }
        _ => Vec::new(),
    };
    parts
        .into_iter()
        .map(|(src, src_begin, count, dst_begin)| {
            let total = o.batch * count as u64 * hw;
            let params = ChannelCopyParams {
                total: u("total", total)?,
                count: u("count", count as u64)?,
                hw: u("hw", hw)?,
                src_c: u("src_c", plan.values[src].channels as u64)?,
                src_begin: u("src_begin", src_begin as u64)?,
                dst_c: u("dst_c", out.channels as u64)?,
                dst_begin: u("dst_begin", dst_begin as u64)?,
                _pad0: 0,
            };
            per_value(
                op,
                Variant::simple(Family::ChannelCopy, 0),
                KernelParams::ChannelCopy(params),
                vec![Binding::Value(src), Binding::Value(op.output)],
                total,
            )
        })
        .collect()
}

/// `deform_conv.wgsl`: vec4s of output channels per invocation at most (`MAX_OCV`).
pub const DEFORM_MAX_OCV: u32 = 4;

/// Lowers op `i` (deformable convolution, its weights in one part): one invocation per
/// (image, group, block of 4 output channels, output pixel).
pub fn lower_deform_conv(
    plan: &Graph,
    i: usize,
    d: &DeformConv2d,
    parts: &[ConvPart],
    o: &LowerOptions,
) -> Result<Dispatch> {
    let op = &plan.ops[i];
    let c = &d.conv;
    if parts.len() > 1 {
        return Err(Error::InvalidPlan(format!(
            "deformable conv `{}`: its weights exceed one storage binding",
            op.name
        )));
    }
    let (inp, out) = (plan.values[op.input], plan.values[op.output]);
    let cout_g = (c.out_channels / c.groups) as u64;
    // Output channels per invocation: up to 16 (4 vec4s), fewer for narrow groups.
    let ocv = cout_g.div_ceil(4).min(DEFORM_MAX_OCV as u64);
    let ocb = cout_g.div_ceil(4 * ocv);
    let invocations = o.batch * c.groups as u64 * ocb * (out.height * out.width) as u64;
    let u = |param: &str, v: u64| to_u32(&op.name, param, v);
    let us = |param: &str, v: usize| u(param, v as u64);
    let params = DeformConvParams {
        batch: u("batch", o.batch)?,
        in_c: us("in_c", inp.channels)?,
        in_h: us("in_h", inp.height)?,
        in_w: us("in_w", inp.width)?,
        out_c: us("out_c", out.channels)?,
        out_h: us("out_h", out.height)?,
        out_w: us("out_w", out.width)?,
        groups: us("groups", c.groups)?,
        offset_groups: us("offset_groups", d.offset_groups)?,
        k_h: us("k_h", c.kernel[0])?,
        k_w: us("k_w", c.kernel[1])?,
        s_h: us("s_h", c.stride[0])?,
        s_w: us("s_w", c.stride[1])?,
        p_h: us("p_h", c.padding[0])?,
        p_w: us("p_w", c.padding[1])?,
        d_h: us("d_h", c.dilation[0])?,
        d_w: us("d_w", c.dilation[1])?,
        oc_blocks: u("oc_blocks", ocb)?,
        oc_pad4: u("oc_pad4", cout_g.div_ceil(4))?,
        invocations: u("invocations", invocations)?,
        ..Default::default()
    };
    per_value(
        op,
        Variant {
            mode: d.mask.is_some() as u32,
            tile: [ocv as u32, 0],
            ..Variant::simple(Family::DeformConv, act_code(c.activation))
        },
        KernelParams::DeformConv(params),
        vec![
            Binding::Value(op.input),
            Binding::Weight { op: i, part: 0 },
            Binding::Bias(i),
            Binding::Value(d.offset),
            d.mask.map_or(Binding::Unused, Binding::Value),
            Binding::Value(op.output),
            Binding::Status,
        ],
        invocations,
    )
}

/// Outputs of one image per invocation of `linear.wgsl` (its `OUTS`).
pub const LINEAR_OUTS: u32 = 4;

/// Lowers op `i` (linear): one dispatch per part, one invocation per image and
/// [`LINEAR_OUTS`] output features.
pub fn lower_linear(
    plan: &Graph,
    i: usize,
    l: &Linear,
    parts: &[ConvPart],
    o: &LowerOptions,
) -> Result<Vec<Dispatch>> {
    let op = &plan.ops[i];
    let u = |param: &str, v: u64| to_u32(&op.name, param, v);
    parts
        .iter()
        .enumerate()
        .map(|(k, part)| {
            let params = LinearParams {
                batch: u("batch", o.batch)?,
                in_f: u("in_f", l.in_features as u64)?,
                out_f: u("out_f", l.out_features as u64)?,
                in4: u("in4", vec4s(l.in_features as u64))?,
                x_vec4s: u("x_vec4s", vec4s(o.batch * l.in_features as u64))?,
                status_tag: 0,
                o_begin: u("o_begin", part.first_row as u64)?,
                o_count: u("o_count", part.rows as u64)?,
            };
            let label = if part.rows == l.out_features {
                op.name.clone()
            } else {
                format!(
                    "{} (outputs {}..{})",
                    op.name,
                    part.first_row,
                    part.first_row + part.rows
                )
            };
            Ok(Dispatch {
                label,
                variant: Variant::simple(Family::Linear, 0),
                params: KernelParams::Linear(params),
                bindings: vec![
                    Binding::Value(op.input),
                    Binding::Weight { op: i, part: k },
                    Binding::Bias(i),
                    Binding::Value(op.output),
                    Binding::Status,
                ],
                workgroups: (o.batch * (part.rows as u64).div_ceil(LINEAR_OUTS as u64))
                    .div_ceil(Family::Linear.workgroup_size() as u64),
            })
        })
        .collect()
}

/// Checks what the runner's kernels cannot do with a plan: only convolutions read a
/// squeeze-and-excitation's output, and only as their input (not as a residual); no
/// convolution reads a pooled f32 vector.
pub fn check_supported(plan: &Graph) -> Result<()> {
    for op in plan.ops {
        let gated = gate_of(plan, op.input).is_some();
        match &op.kind {
            OpKind::Conv2d(c) => {
                if super::memory::stored_as_f32(plan.ops, op.input) {
                    return Err(Error::InvalidPlan(format!(
                        "conv `{}` reads an f32 vector",
                        op.name
                    )));
                }
                if c.residual.is_some_and(|r| gate_of(plan, r).is_some()) {
                    return Err(Error::InvalidPlan(format!(
                        "the residual of `{}` is a squeeze-and-excitation output",
                        op.name
                    )));
                }
            }
            OpKind::SqueezeExcite(se)
                if !matches!(
                    se.activation,
                    Activation::Identity | Activation::Relu | Activation::Relu6 | Activation::Silu
                ) =>
            {
                // The gate and its activation are fused into the next conv's reads, which
                // pad with zeros: the activation must keep them zero.
                return Err(Error::InvalidPlan(format!(
                    "squeeze-and-excitation `{}`: {:?} after the gate does not map 0 to 0",
                    op.name, se.activation
                )));
            }
            OpKind::Pool2d(m)
                if m.checked_output_size(
                    plan.values[op.input].height,
                    plan.values[op.input].width,
                ) != Some((plan.values[op.output].height, plan.values[op.output].width)) =>
            {
                return Err(Error::InvalidPlan(format!(
                    "pool `{}`: its output size does not follow from its window {:?}, \
                     stride {:?}, padding {:?} (at most half the window) and dilation {:?}",
                    op.name, m.kernel, m.stride, m.padding, m.dilation
                )));
            }
            _ if gated => {
                return Err(Error::InvalidPlan(format!(
                    "op `{}` reads a squeeze-and-excitation output; only convolutions can",
                    op.name
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Lowers every op of `plan`; `parts(i)` gives the parts of convolution `i`. Status tags are
/// set (see [`status_tag`]).
pub fn lower_plan(
    plan: &Graph,
    parts: &dyn Fn(usize) -> Vec<ConvPart>,
    o: &LowerOptions,
) -> Result<Vec<Dispatch>> {
    check_supported(plan)?;
    check_indices(plan, o.batch)?;
    let mut out = Vec::new();
    for (i, op) in plan.ops.iter().enumerate() {
        match &op.kind {
            OpKind::Conv2d(c) => out.extend(lower_conv(plan, i, c, &parts(i), o)?),
            OpKind::SqueezeExcite(se) => out.push(lower_squeeze_excite(plan, i, se, o)?),
            OpKind::GlobalAvgPool => out.push(lower_pool(plan, i, o)?),
            OpKind::Pool2d(_) | OpKind::AdaptiveAvgPool2d(_) => out.push(lower_pool2d(plan, i, o)?),
            OpKind::ChannelShuffle(g) => out.push(lower_channel_shuffle(plan, i, *g, o)?),
            OpKind::DeformConv2d(d) => out.push(lower_deform_conv(plan, i, d, &parts(i), o)?),
            OpKind::ChannelPool => out.push(lower_channel_pool(plan, i, o)?),
            OpKind::SpatialGate(m) => out.push(lower_spatial_gate(plan, i, *m, o)?),
            OpKind::ChannelSlice(_) | OpKind::Concat(_) => {
                out.extend(lower_channel_copy(plan, i, o)?)
            }
            OpKind::Linear(l) => out.extend(lower_linear(plan, i, l, &parts(i), o)?),
        }
    }
    let n = out.len();
    for (k, d) in out.iter_mut().enumerate() {
        d.set_status_tag(status_tag(k, n));
    }
    Ok(out)
}

/// The parts one op's weights are bound in: a convolution's and a linear layer's split to fit
/// `max_binding`; one for squeeze-and-excitation (never split) and ops without weights.
pub fn weight_parts(op: &Op, elem_bytes: u64, max_binding: u64) -> Result<Vec<ConvPart>> {
    match &op.kind {
        OpKind::Conv2d(c) => split_conv(c, elem_bytes, max_binding, &op.name),
        OpKind::Linear(l) => split_linear(l, elem_bytes, max_binding, &op.name),
        _ => Ok(vec![ConvPart {
            first_row: 0,
            rows: 0,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Activation, Plan};
    use crate::zoo;

    fn conv(cin: usize, cout: usize, k: usize, groups: usize) -> Conv2d {
        Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel: [k, k],
            stride: [1, 1],
            padding: [k / 2; 2],
            dilation: [1, 1],
            groups,
            activation: Activation::Relu,
            residual: None,
            weight: "w".into(),
            bias: None,
            norm: None,
        }
    }

    /// Every part fits, parts tile the channels in order without straddling a group when
    /// split inside groups, and packing each part gives exactly `packed_len` values.
    fn check_split(c: &Conv2d, elem: u64, max: u64) -> Vec<ConvPart> {
        let parts = split_conv(c, elem, max, "c").unwrap();
        let cout_g = c.out_channels / c.groups;
        let mut next = 0;
        for p in &parts {
            assert_eq!(p.first_row, next, "{c:?} at {max}: {parts:?}");
            assert!(p.rows > 0);
            let bytes = packed_len(c, p) as u64 * elem;
            assert!(bytes <= max, "{c:?}: part {p:?} packs to {bytes} > {max}");
            if p.rows < cout_g {
                assert_eq!(p.first_row / cout_g, (p.first_row + p.rows - 1) / cout_g);
            } else {
                assert_eq!(p.rows % cout_g, 0);
            }
            next += p.rows;
        }
        assert_eq!(next, c.out_channels);
        parts
    }

    #[test]
    fn regnet_y_128gf_splits_by_its_packed_size() {
        // Stage 4's 7392x7392 1x1 conv: 7392 rows of 7392 f32 are 218.6 MB; halves of 3696
        // rows fit 128 MiB by the unpadded estimate but not packed (3696 pads to 3696, the
        // input side is what is large): the split must count the packed bytes.
        let plan = Plan::new(zoo::get("regnet_y_128gf").unwrap(), 32, 32).unwrap();
        let limit = 128 << 20;
        for op in &plan.ops {
            if let OpKind::Conv2d(c) = &op.kind {
                for elem in [4, 2] {
                    check_split(c, elem, limit);
                }
            }
        }
    }

    #[test]
    fn splits_fit_limits_down_to_1_mib() {
        let cases = [
            conv(7392, 7392, 1, 1),    // 128GF's largest 1x1
            conv(7392, 7392, 3, 28),   // grouped 3x3, group width 264
            conv(27, 185, 3, 1),       // odd channel counts
            conv(6, 6, 3, 2),          // 3 channels per group: packs to 4
            conv(1024, 1024, 3, 1024), // depthwise
            conv(3, 32, 3, 1),         // stem
        ];
        for c in &cases {
            for max in [1 << 20, 3 << 20, 128 << 20] {
                for elem in [4, 2] {
                    check_split(c, elem, max);
                }
            }
        }
        // A group of 3 channels packs to 4: 1 MiB holds fewer groups than the unpadded count.
        let c = conv(3 * 4096, 3 * 4096, 3, 4096);
        let parts = check_split(&c, 4, 1 << 20);
        let per_group_packed = 3 * 9 * 4 * 4;
        assert_eq!(parts[0].rows, 3 * ((1 << 20) / per_group_packed));
    }

    #[test]
    fn linear_heads_split_by_outputs() {
        let l = Linear {
            in_features: 7392,
            out_features: 1000,
            weight: "fc.weight".into(),
            bias: None,
        };
        let parts = split_linear(&l, 4, 1 << 20, "fc").unwrap();
        // 7392 f32 per row: 35 rows per MiB.
        assert_eq!(parts[0].rows, (1 << 20) / (7392 * 4));
        assert_eq!(parts.iter().map(|p| p.rows).sum::<usize>(), 1000);
        assert!(parts
            .windows(2)
            .all(|w| w[0].first_row + w[0].rows == w[1].first_row));
        assert_eq!(split_linear(&l, 2, u64::MAX, "fc").unwrap().len(), 1);
        assert!(split_linear(&l, 4, 1000, "fc").is_err());
    }

    #[test]
    fn a_channel_row_over_the_limit_is_an_error() {
        let e = split_conv(&conv(7392, 7392, 3, 1), 4, 1 << 16, "big").unwrap_err();
        assert!(
            matches!(&e, Error::DeviceLimit { what, .. } if what.contains("big")),
            "{e}"
        );
    }

    #[test]
    fn packing_pads_channels_and_keeps_taps() {
        // 2 groups of 3 output channels, 1 input channel each, 1x1.
        let c = conv(2, 6, 1, 2);
        let w: Vec<f32> = (1..=6).map(|v| v as f32).collect();
        let all = ConvPart {
            first_row: 0,
            rows: 6,
        };
        assert_eq!(
            pack_conv_weights(&c, &w, &all),
            [1., 2., 3., 0., 4., 5., 6., 0.]
        );
        let second_group = ConvPart {
            first_row: 3,
            rows: 3,
        };
        assert_eq!(pack_conv_weights(&c, &w, &second_group), [4., 5., 6., 0.]);
        // Inside a group: channels 1..2 of group 0.
        let inside = ConvPart {
            first_row: 1,
            rows: 2,
        };
        assert_eq!(pack_conv_weights(&c, &w, &inside), [2., 3., 0., 0.]);
    }

    #[test]
    fn grids_launch_little_past_the_end() {
        assert_eq!(grid(1, 65535), Some((1, 1)));
        assert_eq!(grid(65535, 65535), Some((65535, 1)));
        // 65,536 workgroups: two rows of 32,768, not 65,535 x 2 = 131,070.
        assert_eq!(grid(65536, 65535), Some((32768, 2)));
        for n in [65536u64, 100_000, 1 << 24, 65535 * 65535] {
            let (x, y) = grid(n, 65535).unwrap();
            let launched = x as u64 * y as u64;
            assert!(launched >= n && launched - n < y as u64, "{n}: {x}x{y}");
        }
        assert_eq!(grid(65535 * 65535 + 1, 65535), None);
    }

    #[test]
    fn status_tags_name_the_earliest_dispatch() {
        let tags: Vec<u32> = (0..5).map(|k| status_tag(k, 5)).collect();
        let max = *tags.iter().max().unwrap();
        assert_eq!(status_dispatch(max, 5), Some(0));
        assert_eq!(status_dispatch(tags[3], 5), Some(3));
        assert_eq!(status_dispatch(0, 5), None);
    }

    #[test]
    fn element_counts_past_i32_are_refused() {
        let plan = Plan::new(zoo::get("regnet_y_128gf").unwrap(), 224, 224).unwrap();
        check_indices(&plan.graph(), 256).unwrap();
        let e = check_indices(&plan.graph(), 512).unwrap_err();
        assert!(matches!(e, Error::IndexOverflow { .. }), "{e}");
        let big = Plan::new(zoo::get("regnet_x_200mf").unwrap(), 1024, 1024).unwrap();
        check_indices(&big.graph(), 1).unwrap();
        check_indices(&big.graph(), 128).unwrap();
        let e = check_indices(&big.graph(), 256).unwrap_err().to_string();
        assert!(e.contains("`stem`") || e.contains("input"), "{e}");
    }

    #[test]
    fn a_zoo_model_lowers_with_consistent_bindings() {
        let plan = Plan::new(zoo::get("regnet_y_400mf").unwrap(), 224, 224).unwrap();
        let o = LowerOptions {
            batch: 2,
            tiling: Tiling::Cpu,
            subgroups: false,
            tuned: None,
            textures: false,
            dense_gemm: false,
            unrolled_channels: false,
        };
        let parts = |i: usize| weight_parts(&plan.ops[i], 4, u64::MAX).unwrap();
        let ds = lower_plan(&plan.graph(), &parts, &o).unwrap();
        assert_eq!(ds.len(), plan.ops.len());
        for d in &ds {
            let n = match d.variant.family {
                Family::Conv | Family::ConvPointwise => 7,
                Family::Pool
                | Family::Pool2d
                | Family::ChannelShuffle
                | Family::ChannelPool
                | Family::ChannelCopy => 2,
                Family::SpatialGate => 3,
                Family::DeformConv => 7,
                Family::Linear | Family::SqueezeExcite => 5,
            };
            assert_eq!(d.bindings.len(), n, "{}", d.label);
            assert!(!d.variant.subgroup);
        }
        assert_eq!(status_dispatch(status_tag(0, ds.len()), ds.len()), Some(0));
    }

    /// A stride-2 1x1 reads row tiles where its input planes and rows start on a vec4 (ResNet's
    /// projections), not where they do not, nor on the subgroup entry point; 7-pixel rows
    /// take 8-pixel tiles.
    #[test]
    fn aligned_stride_2_projections_take_row_tiles() {
        assert_eq!(
            [
                row_tile(16, 28),
                row_tile(16, 14),
                row_tile(16, 7),
                row_tile(16, 4)
            ],
            [16, 16, 8, 4]
        );
        let graph = |h: usize| {
            Plan::new(
                crate::config::Architecture::named("resnet50").unwrap(),
                h,
                h,
            )
            .unwrap()
        };
        for (size, subgroups, want) in [(224, false, true), (224, true, false), (200, false, false)]
        {
            let plan = graph(size);
            let parts = |i: usize| weight_parts(&plan.ops[i], 4, u64::MAX).unwrap();
            let o = LowerOptions {
                batch: 2,
                tiling: Tiling::Cpu,
                subgroups,
                tuned: None,
                textures: !subgroups,
                dense_gemm: false,
                unrolled_channels: false,
            };
            let ds = lower_plan(&plan.graph(), &parts, &o).unwrap();
            let d = ds
                .iter()
                .find(|d| d.label == "layer4.0.downsample")
                .unwrap();
            assert_eq!(d.variant.mode == 1, want, "{size} {subgroups}");
            if want {
                let KernelParams::Pointwise(p) = d.params else {
                    panic!("not the GEMM");
                };
                assert_eq!((d.variant.tile[1], p.tiles_x, p.tiles), (8, 1, 7));
                assert!(!d.variant.aligned, "7-pixel rows start mid-vec4");
            }
        }
    }

    /// ResNet-50's 3x3s at stride 1 run as the GEMM over their taps where the rules say so
    /// (CPU-backed adapters reading textures), with their padding and no subgroups; its
    /// stride-2 3x3s, its stem and everything on storage operands keep the direct kernel.
    #[test]
    fn dense_same_convs_run_as_the_gemm_on_texture_operands() {
        let plan = Plan::new(
            crate::config::Architecture::named("resnet50").unwrap(),
            64,
            64,
        )
        .unwrap();
        let parts = |i: usize| weight_parts(&plan.ops[i], 4, u64::MAX).unwrap();
        for (tiling, textures) in [
            (Tiling::Cpu, true),
            (Tiling::Cpu, false),
            (Tiling::Gpu, true),
        ] {
            let o = LowerOptions {
                batch: 1,
                tiling,
                subgroups: true,
                tuned: None,
                textures,
                dense_gemm: tiling == Tiling::Cpu && textures,
                unrolled_channels: false,
            };
            let ds = lower_plan(&plan.graph(), &parts, &o).unwrap();
            let mut gemm = 0;
            for (op, d) in plan.ops.iter().zip(&ds) {
                let OpKind::Conv2d(c) = &op.kind else {
                    continue;
                };
                let want = is_pointwise(c) || (is_dense_same(c) && o.dense_gemm);
                assert_eq!(
                    d.variant.family == Family::ConvPointwise,
                    want,
                    "{}",
                    d.label
                );
                if want && c.kernel != [1, 1] {
                    gemm += 1;
                    assert_eq!(d.variant.kernel, [3, 3, 1], "{}", d.label);
                    assert!(!d.variant.subgroup, "{}", d.label);
                    let KernelParams::Pointwise(p) = d.params else {
                        panic!("{}: not the GEMM's parameters", d.label);
                    };
                    assert_eq!([p.pad_y, p.pad_x], [1, 1], "{}", d.label);
                }
            }
            // 16 bottleneck 3x3s, 3 of them at stride 2.
            let expected = if tiling == Tiling::Cpu && textures {
                13
            } else {
                0
            };
            assert_eq!(gemm, expected, "{tiling:?}, textures {textures}");
        }
    }
    #[test]
    fn a_tuned_choice_replaces_the_rules_where_it_fits() {
        use crate::gpu::autotune::TunedChoice;
        let plan = Plan::new(zoo::get("regnet_y_400mf").unwrap(), 224, 224).unwrap();
        let parts = |i: usize| weight_parts(&plan.ops[i], 4, u64::MAX).unwrap();
        let lower = |tuned: Option<Arc<TuneTable>>| {
            let o = LowerOptions {
                batch: 1,
                tiling: Tiling::Cpu,
                subgroups: true,
                tuned,
                textures: false,
                dense_gemm: false,
                unrolled_channels: false,
            };
            lower_plan(&plan.graph(), &parts, &o).unwrap()
        };
        let rules = lower(None);
        let graph = plan.graph();
        // The first 1x1 GEMM and the first direct conv after the stem.
        let class_of = |label: &str| {
            let op = graph.ops.iter().find(|o| o.name == label).unwrap();
            let OpKind::Conv2d(c) = &op.kind else {
                panic!()
            };
            let out = graph.values[op.output];
            let size = [out.height as u64, out.width as u64];
            ShapeClass::of(c, is_pointwise(c), c.out_channels, 1, size)
        };
        let (pw, dc) = (
            "trunk_output.block1.block1-0.f.a",
            "trunk_output.block1.block1-0.f.b",
        );
        let entry = |tile, subgroup, wg| TunedChoice {
            choice: TileChoice { tile, subgroup, wg },
            ms: 0.0,
            rules_ms: 0.0,
        };
        let variant =
            |ds: &[Dispatch], label: &str| ds.iter().find(|d| d.label == label).unwrap().variant;
        let mut table = TuneTable::new();
        table.insert(class_of(pw), entry([8, 4], false, 16));
        table.insert(class_of(dc), entry([8, 16], false, 8));
        let tuned = lower(Some(Arc::new(table)));
        let (v, r) = (variant(&tuned, pw), variant(&rules, pw));
        assert_eq!((v.tile, v.subgroup, v.wg), ([8, 4], false, 16));
        assert_ne!((r.tile, r.wg), (v.tile, v.wg));
        let v = variant(&tuned, dc);
        assert_eq!(
            (v.tile, v.subgroup, v.wg, v.columns),
            ([8, 16], false, 8, [1, 3])
        );
        // Every other layer of another class keeps the rules.
        let others = tuned
            .iter()
            .zip(&rules)
            .filter(|(t, _)| t.label != pw && t.label != dc);
        for (t, r) in others {
            if class_of_label_differs(&graph, &t.label, pw, dc) {
                assert_eq!(t.variant, r.variant, "{}", t.label);
            }
        }
        // Choices the kernels cannot run fall back to the rules.
        let mut bad = TuneTable::new();
        bad.insert(class_of(pw), entry([20, 16], true, 64));
        bad.insert(class_of(dc), entry([8, 40], false, 64));
        let fallback = lower(Some(Arc::new(bad)));
        assert_eq!(variant(&fallback, pw), variant(&rules, pw));
        assert_eq!(variant(&fallback, dc), variant(&rules, dc));
    }

    /// Whether op `label` is of another shape class than both `a` and `b`.
    fn class_of_label_differs(graph: &Graph, label: &str, a: &str, b: &str) -> bool {
        let class = |name: &str| {
            let op = graph.ops.iter().find(|o| o.name == name)?;
            let OpKind::Conv2d(c) = &op.kind else {
                return None;
            };
            let out = graph.values[op.output];
            let size = [out.height as u64, out.width as u64];
            Some(ShapeClass::of(c, is_pointwise(c), c.out_channels, 1, size))
        };
        let this = class(label);
        this.is_none() || (this != class(a) && this != class(b))
    }
}
