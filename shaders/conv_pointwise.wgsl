// 1x1 convolution with stride 1 and one group: a GEMM per image,
//
//     y[n, o, p] = act(sum_c w[c, o] * x[n, c, p] * gate[n, c] + bias[o] + residual[n, o, p])
//
// over the flattened pixels p of an NCHW image. BatchNorm is folded into `w` and `bias`;
// HAS_GATE fuses squeeze-and-excitation's channel scale into the reads of `x`, HAS_RESIDUAL the
// block's shortcut.
//
// A workgroup owns TM output channels of one image and WG tiles of 8 pixels, one tile per
// invocation, kept as TM x 2 vec4 accumulators. Everything it reads per input channel loads as
// vec4 (on a CPU-backed adapter a load costs about the same whatever its width): the weights,
// stored transposed `[in_c, oc_pad]` with the output channels padded to a multiple of 4, take
// TM / 4 loads, the same for every invocation of the workgroup; the 8 pixels take 2 loads when
// planes are a multiple of 4 pixels long (ALIGNED), else 3, realigned by the plane's offset
// (the same for the whole workgroup). Results and the residual are written and read per value.
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
    x_vec4s: u32,     // vec4s holding the input value (reads past it are clamped)
    _unused0: u32, _unused1: u32, _unused2: u32,
}

override HAS_RESIDUAL: bool = false;
override HAS_GATE: bool = false;
override WG: u32 = 64u;
override TM: u32 = 16u;       // output channels per workgroup, a multiple of 4, <= MAX_TM
override ALIGNED: bool = true; // planes hold a multiple of 4 pixels

const MAX_TM: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<store_t>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<store_t>>;  // this part's [in_c, oc_pad4] (transposed)
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
    let chunk = wg % p.chunks;
    let ocb = (wg / p.chunks) % p.oc_blocks;
    let n = wg / (p.chunks * p.oc_blocks);
    // No early return for invocations past the last tile: they compute a clamped copy of it and
    // store nothing, so every invocation stays active through the loop and the loads whose
    // address is the same for all (the weights) can be made once per workgroup.
    let tile_raw = chunk * WG + lid;
    let tile = min(tile_raw, p.tiles - 1u);

    let hw = p.out_h * p.out_w;
    let p0 = tile * 8u;              // first pixel of this tile (a multiple of 4)
    let oc0 = ocb * TM;              // within this part
    let oc_end = p.oc_begin + p.oc_count;
    let last = p.x_vec4s - 1u;

    var acc0: array<vec4<f32>, MAX_TM>;
    var acc1: array<vec4<f32>, MAX_TM>;
    var plane = n * p.in_c * hw;     // first value of input channel c: the same for the workgroup
    for (var c = 0u; c < p.in_c; c++) {
        let q = plane / 4u + p0 / 4u;
        let v0 = vec4<f32>(x[min(q, last)]);
        let v1 = vec4<f32>(x[min(q + 1u, last)]);
        var a = v0;
        var b = v1;
        if (!ALIGNED) {
            // The plane starts `plane % 4` values into a vec4: realign.
            let v2 = vec4<f32>(x[min(q + 2u, last)]);
            let r = plane % 4u;
            a = realign(v0, v1, r);
            b = realign(v1, v2, r);
        }
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
        plane += hw;
    }

    if (tile_raw >= p.tiles) {
        return;
    }
    for (var o = 0u; o < TM; o++) {
        let oc = p.oc_begin + oc0 + o;
        if (oc < oc_end) {
            let base = (n * p.out_c + oc) * hw + p0;
            let bv = vec4<f32>(bias[oc]);
            store4(base, p0, hw, acc0[o] + bv);
            store4(base + 4u, p0 + 4u, hw, acc1[o] + bv);
        }
    }
}

// The 4 values starting `r` values into `u` (continuing into `v`).
fn realign(u: vec4<f32>, v: vec4<f32>, r: u32) -> vec4<f32> {
    switch r {
        case 0u: { return u; }
        case 1u: { return vec4<f32>(u.yzw, v.x); }
        case 2u: { return vec4<f32>(u.zw, v.xy); }
        default: { return vec4<f32>(u.w, v.xyz); }
    }
}

// Adds the residual, applies the activation and stores the pixels `px..px + 4` that lie in the plane.
fn store4(at: u32, px: u32, hw: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if (px + j < hw) {
            var r = v[j];
            if (HAS_RESIDUAL) {
                r += f32(residual[at + j]);
            }
            y[at + j] = store_t(activate(r));
        }
    }
}
