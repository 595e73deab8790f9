// Direct 2-D convolution for any kernel size, stride, padding and group count (depthwise and
// clipped groups included), NCHW, BatchNorm folded into `w` and `bias`, with a fused epilogue:
//
//     y = act(conv(x * gate) + bias + residual)
//
// `gate` (a per-image, per-input-channel scale: squeeze-and-excitation) and `residual` are
// switched on by HAS_GATE and HAS_RESIDUAL. The kernel shape (KH, KW, STRIDE) and the number of
// output channels per workgroup (OCN, of one group) are overridable constants, so the loops
// over them have constant bounds and unroll into registers.
//
// A workgroup owns OCN channels of one group of one image and WG tiles of 4 adjacent pixels of
// an output row, one tile per invocation: the weights depend on the workgroup alone (every
// invocation reads the same ones), and for each input channel and kernel row an invocation
// loads the input span its 4 pixels need once, reusing it for every kernel column and channel.

struct Params {
    batch: u32, in_c: u32, in_h: u32, in_w: u32,
    out_c: u32, out_h: u32, out_w: u32, groups: u32,
    pad: u32,
    oc_blocks: u32,   // ceil(part_cout / OCN)
    tiles_x: u32,     // 4-pixel tiles per output row: ceil(out_w / 4)
    chunks: u32,      // workgroups per (image, group, channel block): ceil(out_h * tiles_x / WG)
    workgroups: u32,  // batch * part_groups * oc_blocks * chunks
    // A conv too large for one weight buffer is split into dispatches ("parts"), each with its
    // own weight rows: ranges of whole groups, or channel ranges of a single group.
    g_begin: u32,     // first group of this part
    part_groups: u32, // groups in this part
    part_cout: u32,   // output channels of each group in this part (cout_g unless split inside)
    oc_skip: u32,     // channels of the group before this part (0 unless split inside a group)
    oc_pad4: u32,     // vec4s of weights per (group, c, ky, kx): ceil(part_cout / 4)
    _unused0: u32, _unused1: u32,
}

override HAS_RESIDUAL: bool = false;
override HAS_GATE: bool = false;
override WG: u32 = 64u;
override KH: u32 = 3u;
override KW: u32 = 3u;
override STRIDE: u32 = 1u;
override OCN: u32 = 8u;      // 4 or 8

const MAX_OC: u32 = 8u;
const PX: u32 = 4u;          // pixels per invocation: one vec4
const MAX_SPAN: u32 = 32u;   // (PX - 1) * STRIDE + KW must not exceed it

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<store_t>;
// This part's weights, [part_groups, in_c / groups, KH, KW, oc_pad4] vec4s: for one input tap
// the part's channels of a group are contiguous (padded with zeros to a multiple of 4), so an
// invocation loads its OCN weights as ceil(OCN / 4) vec4.
@group(0) @binding(2) var<storage, read> w: array<vec4<store_t>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [out_c]
@group(0) @binding(4) var<storage, read> residual: array<store_t>;
@group(0) @binding(5) var<storage, read> gate: array<f32>;     // [batch, in_c]
@group(0) @binding(6) var<storage, read_write> y: array<store_t>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let wg = wid.y * nwg.x + wid.x;
    if (wg >= p.workgroups) {
        return;
    }
    // wg = ((n * part_groups + g_local) * oc_blocks + ocb) * chunks + chunk
    var r = wg;
    let chunk = r % p.chunks; r = r / p.chunks;
    let ocb = r % p.oc_blocks; r = r / p.oc_blocks;
    let g = p.g_begin + r % p.part_groups;
    let n = r / p.part_groups;
    // Invocations past the last tile compute a clamped copy of it and store nothing: no early
    // return, so all stay active and the weight loads (the same for all) are made once.
    let tiles = p.out_h * p.tiles_x;
    let tile_raw = chunk * WG + lid;
    let tile = min(tile_raw, tiles - 1u);
    let oy = tile / p.tiles_x;
    let pxb = tile % p.tiles_x;

    let cin_g = p.in_c / p.groups;
    let cout_g = p.out_c / p.groups;
    let oc0 = g * cout_g + p.oc_skip + ocb * OCN;
    let oc_last = g * cout_g + p.oc_skip + p.part_cout - 1u;  // later channels: clamped, never stored
    let ox0 = pxb * PX;
    let span = (PX - 1u) * STRIDE + KW;
    let ix0 = i32(ox0 * STRIDE) - i32(p.pad);
    let w_group = (g - p.g_begin) * cin_g;   // this group's first input channel among the part's weights
    let vb = (ocb * OCN) / 4u;               // first vec4 of this invocation's channels (OCN is 4 or 8)

    var acc: array<vec4<f32>, MAX_OC>;
    for (var c = 0u; c < cin_g; c++) {
        let ic = g * cin_g + c;
        var scale = 1.0;
        if (HAS_GATE) {
            scale = gate[n * p.in_c + ic];
        }
        let plane = (n * p.in_c + ic) * p.in_h * p.in_w;
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * STRIDE + ky) - i32(p.pad);
            let row_ok = iy >= 0 && iy < i32(p.in_h);
            let row = plane + u32(clamp(iy, 0, i32(p.in_h) - 1)) * p.in_w;
            // The input span of this row that the 4 pixels read (zero outside the image).
            var xs: array<f32, MAX_SPAN>;
            for (var i = 0u; i < span; i++) {
                let ix = ix0 + i32(i);
                let ok = row_ok && ix >= 0 && ix < i32(p.in_w);
                let v = f32(x[row + u32(clamp(ix, 0, i32(p.in_w) - 1))]);
                xs[i] = select(0.0, v, ok) * scale;
            }
            for (var kx = 0u; kx < KW; kx++) {
                let xv = vec4<f32>(xs[kx], xs[kx + STRIDE], xs[kx + 2u * STRIDE], xs[kx + 3u * STRIDE]);
                let tap = ((w_group + c) * KH + ky) * KW + kx;
                for (var t = 0u; t < (OCN + 3u) / 4u; t++) {
                    let w4 = vec4<f32>(w[tap * p.oc_pad4 + min(vb + t, p.oc_pad4 - 1u)]);
                    for (var i = 0u; i < 4u; i++) {
                        acc[4u * t + i] = fma(vec4<f32>(w4[i]), xv, acc[4u * t + i]);
                    }
                }
            }
        }
    }

    if (tile_raw >= tiles) {
        return;
    }
    for (var o = 0u; o < OCN; o++) {
        let oc = oc0 + o;
        if (oc <= oc_last) {
            let base = ((n * p.out_c + oc) * p.out_h + oy) * p.out_w;
            let b = bias[oc];
            for (var j = 0u; j < PX; j++) {
                if (ox0 + j < p.out_w) {
                    let oi = base + ox0 + j;
                    var v = acc[o][j] + b;
                    if (HAS_RESIDUAL) {
                        v += f32(residual[oi]);
                    }
                    y[oi] = store_t(activate(v));
                }
            }
        }
    }
}
