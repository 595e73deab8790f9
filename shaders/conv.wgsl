// Direct 2-D convolution for any kernel size, stride, padding and group count (depthwise and
// clipped groups included), NCHW, BatchNorm folded into `w` and `bias`, with a fused epilogue:
//
//     y = act(conv(x * gate) + bias + residual)
//
// `gate` (a per-image, per-input-channel scale: squeeze-and-excitation) and `residual` are
// switched on by the overridable constants HAS_GATE and HAS_RESIDUAL.
// Each invocation computes OC_T output channels of one group for PX_T adjacent pixels of one
// output row, so every input value it loads serves OC_T channels.

struct Params {
    batch: u32, in_c: u32, in_h: u32, in_w: u32,
    out_c: u32, out_h: u32, out_w: u32, groups: u32,
    k_h: u32, k_w: u32, stride: u32, pad: u32,
    oc_blocks: u32,   // ceil((out_c / groups) / OC_T)
    px_blocks: u32,   // ceil(out_w / PX_T)
    total: u32,       // batch * groups * oc_blocks * out_h * px_blocks
    _unused: u32,
}

override HAS_RESIDUAL: bool = false;
override HAS_GATE: bool = false;
override WG: u32 = 64u;

const OC_T: u32 = 4u;
const PX_T: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(2) var<storage, read> w: array<store_t>;    // [out_c, in_c / groups, k_h, k_w]
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
    // idx = (((n * groups + g) * oc_blocks + ocb) * out_h + oy) * px_blocks + pxb
    var r = idx;
    let pxb = r % p.px_blocks; r = r / p.px_blocks;
    let oy = r % p.out_h; r = r / p.out_h;
    let ocb = r % p.oc_blocks; r = r / p.oc_blocks;
    let g = r % p.groups;
    let n = r / p.groups;

    let cin_g = p.in_c / p.groups;
    let cout_g = p.out_c / p.groups;
    let oc0 = g * cout_g + ocb * OC_T;
    let oc_n = min(OC_T, cout_g - ocb * OC_T);
    let ox0 = pxb * PX_T;
    let ksize = p.k_h * p.k_w;
    let w_per_oc = cin_g * ksize;

    var acc: array<array<f32, PX_T>, OC_T>;
    for (var c = 0u; c < cin_g; c++) {
        let ic = g * cin_g + c;
        var scale = 1.0;
        if (HAS_GATE) {
            scale = gate[n * p.in_c + ic];
        }
        let plane = (n * p.in_c + ic) * p.in_h * p.in_w;
        for (var ky = 0u; ky < p.k_h; ky++) {
            let iy = i32(oy * p.stride + ky) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.in_h)) {
                continue;
            }
            let row = plane + u32(iy) * p.in_w;
            for (var kx = 0u; kx < p.k_w; kx++) {
                var xv: array<f32, PX_T>;
                for (var j = 0u; j < PX_T; j++) {
                    let ix = i32((ox0 + j) * p.stride + kx) - i32(p.pad);
                    if (ox0 + j < p.out_w && ix >= 0 && ix < i32(p.in_w)) {
                        xv[j] = f32(x[row + u32(ix)]) * scale;
                    } else {
                        xv[j] = 0.0;
                    }
                }
                let wi = c * ksize + ky * p.k_w + kx;
                for (var o = 0u; o < OC_T; o++) {
                    if (o < oc_n) {
                        let wv = f32(w[(oc0 + o) * w_per_oc + wi]);
                        for (var j = 0u; j < PX_T; j++) {
                            acc[o][j] += wv * xv[j];
                        }
                    }
                }
            }
        }
    }

    for (var o = 0u; o < oc_n; o++) {
        let oc = oc0 + o;
        let base = ((n * p.out_c + oc) * p.out_h + oy) * p.out_w;
        for (var j = 0u; j < PX_T; j++) {
            if (ox0 + j < p.out_w) {
                let oi = base + ox0 + j;
                var v = acc[o][j] + bias[oc];
                if (HAS_RESIDUAL) {
                    v += f32(residual[oi]);
                }
                y[oi] = store_t(activate(v));
            }
        }
    }
}
