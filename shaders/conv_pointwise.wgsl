// 1x1 convolution with stride 1 and one group: a GEMM per image,
//
//     y[n, o, p] = act(sum_c w[c, o] * x[n, c, p] * gate[n, c] + bias[o] + residual[n, o, p])
//
// over the flattened pixels p of an NCHW image whose pixel count is a multiple of 4, so that
// pixels load and store as vec4. The weights are stored transposed, `[in_c, oc_pad]` with the
// output channels padded to a multiple of 4 (zeros), so that they load as vec4 too: on a
// CPU-backed adapter every load costs about the same whatever its width, and the tile then
// needs TM / 4 + 2 loads per input channel for 8 * TM fused multiply-adds. BatchNorm is folded into `w` and `bias`; HAS_GATE fuses
// squeeze-and-excitation's channel scale into the reads of `x`, HAS_RESIDUAL the block's
// shortcut.
//
// A workgroup owns TM output channels of one image and WG tiles of 8 pixels (two vec4), one
// tile per invocation: the weights it reads depend on the workgroup alone, so every invocation
// reads the same ones (a broadcast), and each x value it loads feeds TM fused multiply-adds.
// The bindings are conv.wgsl's, so one bind group layout serves both.

struct Params {
    batch: u32, in_c: u32, in_h: u32, in_w: u32,
    out_c: u32, out_h: u32, out_w: u32, groups: u32,
    pad: u32,
    oc_blocks: u32,   // ceil(oc_count / TM)
    tiles: u32,       // 8-pixel tiles per plane: ceil(out_h * out_w / 8)
    chunks: u32,      // workgroups per (image, channel block): ceil(tiles / WG)
    workgroups: u32,  // batch * oc_blocks * chunks
    oc_begin: u32,    // first output channel of this dispatch (a conv too large for one weight
    oc_count: u32,    // buffer is split into dispatches over ranges of output channels)
    oc_pad4: u32,     // vec4s per row of the transposed weights: ceil(oc_count / 4)
    _unused0: u32, _unused1: u32, _unused2: u32, _unused3: u32,
}

override HAS_RESIDUAL: bool = false;
override HAS_GATE: bool = false;
override WG: u32 = 64u;
override TM: u32 = 16u;       // output channels per workgroup, a multiple of 4, <= MAX_TM

const MAX_TM: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<store_t>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<store_t>>;  // this part's [in_c, oc_pad4] (transposed)
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [out_c]
@group(0) @binding(4) var<storage, read> residual: array<vec4<store_t>>;
@group(0) @binding(5) var<storage, read> gate: array<f32>;     // [batch, in_c]
@group(0) @binding(6) var<storage, read_write> y: array<vec4<store_t>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let wg = wid.y * nwg.x + wid.x;
    if (wg >= p.workgroups) {
        return;
    }
    let chunk = wg % p.chunks;
    let ocb = (wg / p.chunks) % p.oc_blocks;
    let n = wg / (p.chunks * p.oc_blocks);
    // No early return for invocations past the last tile: they compute a clamped copy of it and
    // store nothing, so every invocation stays active through the loop and the loads whose
    // address is the same for all (the weights) can be made once per workgroup.
    let tile_raw = chunk * WG + lid;
    let tile = min(tile_raw, p.tiles - 1u);

    let hw4 = p.out_h * p.out_w / 4u;            // vec4s per plane
    let q0 = tile * 2u;                          // first vec4 of this tile
    let q1 = min(q0 + 1u, hw4 - 1u);             // second (clamped on the last tile)
    let oc0 = ocb * TM;              // within this part
    let oc_end = p.oc_begin + p.oc_count;

    var acc0: array<vec4<f32>, MAX_TM>;
    var acc1: array<vec4<f32>, MAX_TM>;
    var xi = n * p.in_c * hw4;
    for (var c = 0u; c < p.in_c; c++) {
        var a = vec4<f32>(x[xi + q0]);
        var b = vec4<f32>(x[xi + q1]);
        if (HAS_GATE) {
            let s = gate[n * p.in_c + c];
            a *= s;
            b *= s;
        }
        let wrow = c * p.oc_pad4;
        for (var t = 0u; t < TM / 4u; t++) {
            let w4 = vec4<f32>(w[wrow + min(oc0 / 4u + t, p.oc_pad4 - 1u)]);
            for (var i = 0u; i < 4u; i++) {
                let wv = vec4<f32>(w4[i]);
                acc0[4u * t + i] = fma(wv, a, acc0[4u * t + i]);
                acc1[4u * t + i] = fma(wv, b, acc1[4u * t + i]);
            }
        }
        xi += hw4;
    }

    if (tile_raw >= p.tiles) {
        return;
    }
    for (var o = 0u; o < TM; o++) {
        let oc = p.oc_begin + oc0 + o;
        if (oc < oc_end) {
            let base = (n * p.out_c + oc) * hw4;
            let bv = vec4<f32>(bias[oc]);
            var v0 = acc0[o] + bv;
            var v1 = acc1[o] + bv;
            if (HAS_RESIDUAL) {
                v0 += vec4<f32>(residual[base + q0]);
                v1 += vec4<f32>(residual[base + q1]);
            }
            y[base + q0] = vec4<store_t>(activate4(v0));
            if (q0 + 1u < hw4) {
                y[base + q1] = vec4<store_t>(activate4(v1));
            }
        }
    }
}
