// Direct 2-D convolution for any kernel size, stride, padding, dilation and group count (per
// axis: 1xN and Nx1 kernels, dilated kernels, depthwise and clipped groups included), NCHW, BatchNorm folded into `w` and `bias`, with a fused epilogue:
//
//     y = act(conv(x * gate) + bias + residual)
//
// `gate` (a per-image, per-input-channel scale: squeeze-and-excitation) and `residual` are
// switched on by HAS_GATE and HAS_RESIDUAL. The kernel shape (KH, KW), the horizontal stride and
// dilation (STRIDE, DIL) and the number of output channels per invocation (OCN, of one group)
// are overridable constants, so the loops over them have constant bounds and unroll into
// registers; the vertical stride, dilation and the padding are parameters.
//
// One invocation per (image, group, block of OCN channels, tile of PX adjacent pixels of an
// output row), tiles innermost, so every SIMD lane of a workgroup has work however small the
// plane. For each input channel and kernel row an invocation loads the input span its pixels
// need once, as vec4s realigned by the span's offset, and reuses it for every kernel column and
// channel (a kernel whose span would not fit the registers loads one span per KC columns); weights load as vec4 of 4 output channels. OCN and PX (the register tile) are chosen
// per adapter type by the runner (see src/gpu/tiling.rs).

struct Params {
    batch: u32, in_c: u32, in_h: u32, in_w: u32,
    out_c: u32, out_h: u32, out_w: u32, groups: u32,
    pad_y: u32,       // zero padding above and below
    oc_blocks: u32,   // ceil(part_cout / OCN)
    tiles_x: u32,     // PX-pixel tiles per output row: ceil(out_w / PX)
    invocations: u32, // batch * part_groups * oc_blocks * out_h * tiles_x (main_subgroup: * tiles_pad)
    tiles_pad: u32,   // main_subgroup: out_h * tiles_x rounded up to a multiple of 8
    // A conv too large for one weight buffer is split into dispatches ("parts"), each with its
    // own weight rows: ranges of whole groups, or channel ranges of a single group.
    g_begin: u32,     // first group of this part
    part_groups: u32, // groups in this part
    part_cout: u32,   // output channels of each group in this part (cout_g unless split inside)
    oc_skip: u32,     // channels of the group before this part (0 unless split inside a group)
    oc_pad4: u32,     // vec4s of weights per (group, c, ky, kx): ceil(part_cout / 4)
    x_vec4s: u32,     // vec4s holding the input value (reads past it are clamped)
    status_tag: u32,  // written to `status` when a value cannot be stored (prelude.wgsl)
    res_c: u32,       // channels of the residual: added to the first res_c output channels
    pad_x: u32,       // zero padding left and right
    stride_y: u32,    // vertical stride (STRIDE is the horizontal one)
    dil_y: u32,       // vertical dilation (DIL is the horizontal one)
}

override HAS_RESIDUAL: bool = false;
override HAS_GATE: bool = false;
override WG: u32 = 64u;
override KH: u32 = 3u;
override KW: u32 = 3u;
override STRIDE: u32 = 1u;   // horizontal stride
override DIL: u32 = 1u;      // horizontal dilation
override KC: u32 = 3u;       // kernel columns per row span: KW, or fewer when its span is too wide
override OCN: u32 = 8u;      // output channels per invocation: 4 or 8
override PX: u32 = 4u;       // pixels per invocation: 4, 8, 12 or 16

// Loops over the register tile and the span run to these constant bounds, equal to the lengths
// of the arrays they index, with guards inside: such loops are always unrolled (see
// conv_pointwise.wgsl), so the arrays stay in registers.
const MAX_OC: u32 = 8u;
const MAX_PV: u32 = 4u;      // vec4s of pixels: PX / 4 <= MAX_PV
const MAX_SV: u32 = 12u;     // vec4s of the span: (3 + span) / 4 + 1 <= MAX_SV (row_span)
const MAX_KW: u32 = 7u;      // kernel columns per span: KC <= MAX_KW (the loop is written out)
const UNROLLED_KH: u32 = 3u; // kernels of up to this many rows have their row loop written out

@group(0) @binding(0) var<uniform> p: Params;
// Binding 1, the input `x`, and 2, the weights `w`: operands_storage.wgsl or
// operands_texture.wgsl, read through load_x and load_w. The weights are this part's,
// [part_groups, in_c / groups, KH, KW, oc_pad4] vec4s: for one input tap the part's channels
// of a group are contiguous (padded with zeros to a multiple of 4), so an invocation loads its
// OCN weights as ceil(OCN / 4) vec4.
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [out_c]
@group(0) @binding(4) var<storage, read> residual: array<store_t>; // [batch, res_c, out_h, out_w]
@group(0) @binding(5) var<storage, read> gate: array<f32>;     // [batch, in_c]
@group(0) @binding(6) var<storage, read_write> y: array<store_t>;
@group(0) @binding(7) var<storage, read_write> status: atomic<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // id = (((n * part_groups + g_local) * oc_blocks + ocb) * out_h + oy) * tiles_x + pxb.
    // Invocations past the end compute a clamped copy of the last tile and store nothing;
    // workgroups wholly past the end return at once.
    if (workgroup_index(wid, nwg) * WG >= p.invocations) {
        return;
    }
    let id_raw = linear_index(wid, nwg, lid, WG);
    var r = min(id_raw, p.invocations - 1u);
    let pxb = r % p.tiles_x; r = r / p.tiles_x;
    let oy = r % p.out_h; r = r / p.out_h;
    let ocb = r % p.oc_blocks; r = r / p.oc_blocks;
    let g = p.g_begin + r % p.part_groups;
    let n = r / p.part_groups;

    let tl = tile_at(g, ocb, pxb);
    let cin_g = tl.cin_g;
    let oc0 = tl.oc0;
    let ox0 = tl.ox0;
    let ix0 = tl.ix0;
    let w_group = tl.w_group;
    let vb = tl.vb;

    var acc: Acc;
    for (var c = 0u; c < cin_g; c++) {
        let ic = g * cin_g + c;
        var scale = 1.0;
        if (HAS_GATE) {
            scale = gate[n * p.in_c + ic];
        }
        let plane = (n * p.in_c + ic) * p.in_h * p.in_w;
        if (KH <= UNROLLED_KH && KC == KW) {
            // Kernels of up to 3 rows whose row span holds every column (the 3x3s): the rows
            // written out. As a runtime loop around the unrolled columns the grouped 3x3s ran
            // 2.5-3x slower on SwiftShader (Chromium's WebGPU adapter; BENCHMARKS.md).
            // unroll
            for (var ky = 0u; ky < UNROLLED_KH; ky++) {
                if (ky < KH) {
                    kernel_row(&acc, plane, oy, ky, 0u, ix0, scale, w_group + c, vb);
                }
            }
        } else {
            for (var ky = 0u; ky < KH; ky++) {
                // Kernel columns k0..k0 + KC share one span (one round unless KW > KC).
                for (var k0 = 0u; k0 < KW; k0 += KC) {
                    kernel_row(&acc, plane, oy, ky, k0, ix0, scale, w_group + c, vb);
                }
            }
        }
    }

    if (id_raw >= p.invocations) {
        return;
    }
    epilogue(&acc, n, oc0, tl.oc_last, oy, ox0);
}

// acc += kernel row ky, columns k0..k0 + KC, of the weights of the part's input channel `wc`
// (vec4 `vb` of a weight row on) times the tile's inputs in input channel `plane`.
fn kernel_row(acc: ptr<function, Acc>, plane: u32, oy: u32, ky: u32, k0: u32, ix0: i32,
              scale: f32, wc: u32, vb: u32) {
    let iy = i32(oy * p.stride_y + ky * p.dil_y) - i32(p.pad_y);
    var xs = row_span(plane, iy, ix0 + i32(k0 * DIL), scale);
    // unroll
    for (var kc = 0u; kc < MAX_KW; kc++) {
        let kx = k0 + kc;
        if (kc < KC && kx < KW) {
            var xv = tap_inputs(&xs, kc);
            let tap = (wc * KH + ky) * KW + kx;
            // unroll
            for (var t = 0u; t < MAX_OC / 4u; t++) {
                if (t < (OCN + 3u) / 4u) {
                    let w4 = load_w(tap * p.oc_pad4 + min(vb + t, p.oc_pad4 - 1u));
                    tap_fma(acc, w4, t, &xv);
                }
            }
        }
    }
}

// Where an invocation's tile lies, from its group, channel block and row tile (both entry points).
struct Tile {
    cin_g: u32,    // input channels per group
    oc0: u32,      // first output channel
    oc_last: u32,  // last output channel of the part's group (later ones: clamped, never stored)
    ox0: u32,      // first output pixel of the row
    ix0: i32,      // first input pixel of the tile's first tap (may be negative: padding)
    w_group: u32,  // this group's first input channel among the part's weights
    vb: u32,       // first vec4 of the tile's channels in a weight row (OCN is 4 or 8)
}

fn tile_at(g: u32, ocb: u32, pxb: u32) -> Tile {
    let cin_g = p.in_c / p.groups;
    let cout_g = p.out_c / p.groups;
    let ox0 = pxb * PX;
    return Tile(
        cin_g,
        g * cout_g + p.oc_skip + ocb * OCN,
        g * cout_g + p.oc_skip + p.part_cout - 1u,
        ox0,
        i32(ox0 * STRIDE) - i32(p.pad_x),
        (g - p.g_begin) * cin_g,
        (ocb * OCN) / 4u,
    );
}

// The register tile: OCN channels x PX pixels (as vec4s).
alias Acc = array<array<vec4<f32>, MAX_PV>, MAX_OC>;
alias Span = array<vec4<f32>, MAX_SV>;

// The span [ix0, ix0 + span) of input row iy of the plane starting at value `plane`, as vec4s:
// value i of the span at [i / 4][i % 4], zero outside the image, times `scale` (the SE gate).
// A span covers the tile's PX pixels for KC kernel columns.
fn row_span(plane: u32, iy: i32, ix0: i32, scale: f32) -> Span {
    let span = (PX - 1u) * STRIDE + (KC - 1u) * DIL + 1u;
    let last = i32(p.x_vec4s) - 1;
    let row_ok = (iy >= 0) & (iy < i32(p.in_h));
    // Loaded from the vec4 holding the span's first value (`a` may be negative at the very
    // start of the buffer: those reads are clamped, and every value outside the row is zeroed).
    let a = i32(plane) + clamp(iy, 0, i32(p.in_h) - 1) * i32(p.in_w) + ix0;
    let sh = u32(a & 3);
    let q = (a - i32(sh)) / 4;
    var v: Span;
    // unroll
    for (var m = 0u; m < MAX_SV; m++) {
        if (m <= (sh + span - 1u) / 4u) {
            v[m] = load_x(u32(clamp(q + i32(m), 0, last)));
        }
    }
    var xs: Span;
    // unroll
    for (var m = 0u; m < MAX_SV; m++) {
        if (4u * m < span) {
            let u = realign(v[m], v[min(m + 1u, MAX_SV - 1u)], sh);
            let ix = vec4<i32>(ix0 + i32(4u * m)) + vec4<i32>(0, 1, 2, 3);
            let ok = vec4<bool>(row_ok) & (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(p.in_w)));
            xs[m] = select(vec4<f32>(0.0), u, ok) * scale;
            if (HAS_GATE) {
                xs[m] = gate_activate4(xs[m]);
            }
        }
    }
    return xs;
}

// The inputs of the span's kernel column kc for the tile's pixels: pixel 4 * j + e reads span
// value kc * DIL + (4 * j + e) * STRIDE.
fn tap_inputs(xs: ptr<function, Span>, kc: u32) -> array<vec4<f32>, MAX_PV> {
    var xv: array<vec4<f32>, MAX_PV>;
    // unroll
    for (var j = 0u; j < MAX_PV; j++) {
        if (j < PX / 4u) {
            let i0 = kc * DIL + 4u * j * STRIDE;
            xv[j] = vec4<f32>(span_at(xs, i0), span_at(xs, i0 + STRIDE),
                              span_at(xs, i0 + 2u * STRIDE), span_at(xs, i0 + 3u * STRIDE));
        }
    }
    return xv;
}

// acc[4 t + i] += w4[i] * xv for one input tap and vec4 t of the output channels.
fn tap_fma(acc: ptr<function, Acc>, w4: vec4<f32>, t: u32, xv: ptr<function, array<vec4<f32>, MAX_PV>>) {
    // unroll
    for (var i = 0u; i < 4u; i++) {
        let wv = vec4<f32>(w4[i]);
        // unroll
        for (var j = 0u; j < MAX_PV; j++) {
            if (j < PX / 4u) {
                (*acc)[4u * t + i][j] = fma(wv, (*xv)[j], (*acc)[4u * t + i][j]);
            }
        }
    }
}

// Adds bias and residual to the tile of channels oc0..=oc_last (at most OCN) and pixels ox0.. of
// row oy of image n, applies the activation and stores what lies in the output.
fn epilogue(acc: ptr<function, Acc>, n: u32, oc0: u32, oc_last: u32, oy: u32, ox0: u32) {
    // unroll
    for (var o = 0u; o < MAX_OC; o++) {
        let oc = oc0 + o;
        if (o < OCN && oc <= oc_last) {
            let base = ((n * p.out_c + oc) * p.out_h + oy) * p.out_w;
            let b = bias[oc];
            // unroll
            for (var j = 0u; j < MAX_PV; j++) {
                // unroll
                for (var e = 0u; e < 4u; e++) {
                    let ox = ox0 + 4u * j + e;
                    if (j < PX / 4u && ox < p.out_w) {
                        let oi = base + ox;
                        var val = (*acc)[o][j][e] + b;
                        if (HAS_RESIDUAL && oc < p.res_c) {
                            val += f32(residual[((n * p.res_c + oc) * p.out_h + oy) * p.out_w + ox]);
                        }
                        let v = activate(val);
                        if (!storable(val, v)) {
                            atomicMax(&status, p.status_tag);
                        }
                        y[oi] = store_t(v);
                    }
                }
            }
        }
    }
}

// Value i of the span held as vec4s.
fn span_at(xs: ptr<function, Span>, i: u32) -> f32 {
    return (*xs)[i / 4u][i % 4u];
}
