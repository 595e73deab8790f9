// Deformable convolution, exactly torchvision.ops.deform_conv2d (v1 with offsets; v2 with a mask
// too), NCHW, with bias and an activation:
//
//     y[n, oc, oy, ox] = act(bias[oc] + sum over c, ky, kx of
//                            w[oc, c, ky, kx] * mask * sample(x[n, ic], py, px))
//     py = oy * s_h - p_h + ky * d_h + dy,   px = ox * s_w - p_w + kx * d_w + dx
//
// (dy, dx) and the mask come per offset group (input channels [og * C / OG, (og + 1) * C / OG)),
// per kernel tap and per output pixel. `sample` is torchvision's bilinear interpolation: zero
// when py <= -1, py >= H, px <= -1 or px >= W; else the four neighbours blended by their
// distances, those outside the image counting as zero.
//
// One invocation per (image, group, block of 4 * OCV output channels, output pixel): each sample
// is computed once per block and multiplied by OCV vec4s of weights (the packed layout of
// conv.wgsl, [groups, in_c / groups, KH, KW, oc_pad4] vec4s). Samples cost far more than FMAs
// (two offset loads, four input loads, the blend), so blocks are as wide as the group allows.

struct Params {
    batch: u32, in_c: u32, in_h: u32, in_w: u32,
    out_c: u32, out_h: u32, out_w: u32, groups: u32,
    offset_groups: u32, k_h: u32, k_w: u32, s_h: u32,
    s_w: u32, p_h: u32, p_w: u32, d_h: u32,
    d_w: u32,
    oc_blocks: u32,    // ceil(out_c / groups / (4 * OCV))
    oc_pad4: u32,      // vec4s of weights per (group, c, ky, kx)
    invocations: u32,  // batch * groups * oc_blocks * out_h * out_w
    status_tag: u32,   // written to `status` when a value cannot be stored (prelude.wgsl)
    _pad0: u32, _pad1: u32, _pad2: u32,
}

override WG: u32 = 64u;
override HAS_MASK: bool = false;
override OCV: u32 = 4u;       // vec4s of output channels per invocation: 1..=MAX_OCV
const MAX_OCV: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<store_t>;            // [batch, in_c, in_h, in_w]
@group(0) @binding(2) var<storage, read> w: array<vec4<store_t>>;      // packed, see above
@group(0) @binding(3) var<storage, read> bias: array<f32>;             // [out_c]
@group(0) @binding(4) var<storage, read> offset: array<store_t>;       // [batch, OG, KH * KW, 2, out_h, out_w]
@group(0) @binding(5) var<storage, read> mask: array<store_t>;         // [batch, OG, KH * KW, out_h, out_w]
@group(0) @binding(6) var<storage, read_write> y: array<store_t>;
@group(0) @binding(7) var<storage, read_write> status: atomic<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let id = linear_index(wid, nwg, lid, WG);
    if (id >= p.invocations) {
        return;
    }
    let hw = p.out_h * p.out_w;
    let pix = id % hw;
    let ox = pix % p.out_w;
    let oy = pix / p.out_w;
    var r = id / hw;
    let ocb = r % p.oc_blocks; r = r / p.oc_blocks;
    let g = r % p.groups;
    let n = r / p.groups;

    let cin_g = p.in_c / p.groups;
    let per_og = p.in_c / p.offset_groups;
    let taps = p.k_h * p.k_w;
    var acc: array<vec4<f32>, MAX_OCV>;
    // Tap by tap: where a tap samples depends on its offset group only, so its corners and
    // blend weights are computed once per offset group, then read for each channel.
    for (var t = 0u; t < taps; t++) {
        let ky = t / p.k_w;
        let kx = t % p.k_w;
        var og = 0xffffffffu;
        var at: Corners;
        for (var c = 0u; c < cin_g; c++) {
            let ic = g * cin_g + c;
            if (ic / per_og != og) {
                og = ic / per_og;
                let tap = (n * p.offset_groups + og) * taps + t;
                let py = f32(i32(oy * p.s_h + ky * p.d_h) - i32(p.p_h)) + f32(offset[2u * tap * hw + pix]);
                let px = f32(i32(ox * p.s_w + kx * p.d_w) - i32(p.p_w)) + f32(offset[(2u * tap + 1u) * hw + pix]);
                at = corners(py, px);
                if (HAS_MASK) {
                    at.weight *= f32(mask[tap * hw + pix]);
                }
            }
            let plane = (n * p.in_c + ic) * p.in_h * p.in_w;
            let v = dot(at.weight, vec4<f32>(f32(x[plane + at.index.x]), f32(x[plane + at.index.y]),
                                             f32(x[plane + at.index.z]), f32(x[plane + at.index.w])));
            let row = ((g * cin_g + c) * taps + t) * p.oc_pad4;
            // unroll
            for (var q = 0u; q < MAX_OCV; q++) {
                if (q < OCV) {
                    let w4 = vec4<f32>(w[row + min(ocb * OCV + q, p.oc_pad4 - 1u)]);
                    acc[q] = fma(w4, vec4<f32>(v), acc[q]);
                }
            }
        }
    }

    let cout_g = p.out_c / p.groups;
    for (var e = 0u; e < 4u * OCV; e++) {
        let j = ocb * 4u * OCV + e;
        if (j < cout_g) {
            let oc = g * cout_g + j;
            let val = acc[e / 4u][e % 4u] + bias[oc];
            let v = activate(val);
            if (!storable(val, v)) {
                atomicMax(&status, p.status_tag);
            }
            y[(n * p.out_c + oc) * hw + pix] = store_t(v);
        }
    }
}

// Where a sample at (py, px) reads: the offsets in a plane of its four neighbours (clamped into
// the image) and their blend weights (zero for a neighbour outside the image, all zero for a
// sample outside), as torchvision's bilinear_interpolate: zero when py <= -1, py >= H,
// px <= -1 or px >= W.
struct Corners {
    index: vec4<u32>,   // (y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)
    weight: vec4<f32>,
}

fn corners(py: f32, px: f32) -> Corners {
    let h = i32(p.in_h);
    let wd = i32(p.in_w);
    var c: Corners;
    if (py <= -1.0 || py >= f32(h) || px <= -1.0 || px >= f32(wd)) {
        c.index = vec4<u32>(0u);
        c.weight = vec4<f32>(0.0);
        return c;
    }
    let fy = floor(py);
    let fx = floor(px);
    let ly = py - fy;
    let lx = px - fx;
    let ys = vec4<i32>(i32(fy)) + vec4<i32>(0, 0, 1, 1);
    let xs = vec4<i32>(i32(fx)) + vec4<i32>(0, 1, 0, 1);
    let inside = (ys >= vec4<i32>(0)) & (ys < vec4<i32>(h)) & (xs >= vec4<i32>(0)) & (xs < vec4<i32>(wd));
    let blend = vec4<f32>((1.0 - ly) * (1.0 - lx), (1.0 - ly) * lx, ly * (1.0 - lx), ly * lx);
    c.weight = select(vec4<f32>(0.0), blend, inside);
    let cy = clamp(ys, vec4<i32>(0), vec4<i32>(h - 1));
    let cx = clamp(xs, vec4<i32>(0), vec4<i32>(wd - 1));
    c.index = vec4<u32>(cy * vec4<i32>(wd) + cx);
    return c;
}
