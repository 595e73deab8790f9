// 1x1 convolution with stride 1 and one group: a GEMM per image,
//
//     y[n, o, p] = act(sum_c w[o, c] * x[n, c, p] * gate[n, c] + bias[o] + residual[n, o, p])
//
// over the flattened pixels p of an NCHW image. BatchNorm is folded into `w` and `bias`;
// HAS_GATE fuses squeeze-and-excitation's channel scale into the reads of `x`, HAS_RESIDUAL
// the block's shortcut. Each invocation computes an OC_T x PX_T register tile.
// The bindings are the same as conv.wgsl's, so one bind group layout serves both.

struct Params {
    batch: u32, in_c: u32, in_h: u32, in_w: u32,
    out_c: u32, out_h: u32, out_w: u32, groups: u32,
    k_h: u32, k_w: u32, stride: u32, pad: u32,
    oc_blocks: u32,   // ceil(out_c / OC_T)
    px_blocks: u32,   // ceil(out_h * out_w / PX_T)
    total: u32,       // batch * oc_blocks * px_blocks
    _unused: u32,
}

override HAS_RESIDUAL: bool = false;
override HAS_GATE: bool = false;
override WG: u32 = 64u;

const OC_T: u32 = 8u;
const PX_T: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(2) var<storage, read> w: array<store_t>;    // [out_c, in_c]
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [out_c]
@group(0) @binding(4) var<storage, read> residual: array<store_t>;
@group(0) @binding(5) var<storage, read> gate: array<f32>;     // [batch, in_c]
@group(0) @binding(6) var<storage, read_write> y: array<store_t>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wid, nwg, lid, WG);
    if (idx >= p.total) {
        return;
    }
    // idx = (n * oc_blocks + ocb) * px_blocks + pxb: neighbours share weights, read adjacent pixels.
    let pxb = idx % p.px_blocks;
    let ocb = (idx / p.px_blocks) % p.oc_blocks;
    let n = idx / (p.px_blocks * p.oc_blocks);

    let hw = p.out_h * p.out_w;
    let oc0 = ocb * OC_T;
    let oc_n = min(OC_T, p.out_c - oc0);
    let p0 = pxb * PX_T;
    let px_n = min(PX_T, hw - p0);

    var acc: array<array<f32, PX_T>, OC_T>;
    let x_img = n * p.in_c * hw;
    for (var c = 0u; c < p.in_c; c++) {
        var scale = 1.0;
        if (HAS_GATE) {
            scale = gate[n * p.in_c + c];
        }
        let row = x_img + c * hw + p0;
        var xv: array<f32, PX_T>;
        for (var j = 0u; j < PX_T; j++) {
            if (j < px_n) {
                xv[j] = f32(x[row + j]) * scale;
            } else {
                xv[j] = 0.0;
            }
        }
        for (var o = 0u; o < OC_T; o++) {
            if (o < oc_n) {
                let wv = f32(w[(oc0 + o) * p.in_c + c]);
                for (var j = 0u; j < PX_T; j++) {
                    acc[o][j] += wv * xv[j];
                }
            }
        }
    }

    for (var o = 0u; o < oc_n; o++) {
        let oc = oc0 + o;
        let base = (n * p.out_c + oc) * hw + p0;
        for (var j = 0u; j < px_n; j++) {
            var v = acc[o][j] + bias[oc];
            if (HAS_RESIDUAL) {
                v += f32(residual[base + j]);
            }
            y[base + j] = store_t(activate(v));
        }
    }
}
