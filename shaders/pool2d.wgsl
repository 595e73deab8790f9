// Pooling over windows, with torch's semantics: max_pool2d (MODE 0: the largest value under the
// window's taps; padding never wins), avg_pool2d (MODE 1: the sum over the window's part inside
// the input, divided by the window's size within the padded input when count_include_pad, else
// by the values it covers) and adaptive_avg_pool2d (MODE 2: output i averages inputs
// floor(i * H / O) .. ceil((i + 1) * H / O) on each axis). Per axis kernel, stride, padding and
// dilation; the runner sizes the output (ceil_mode included: src/plan/mod.rs Pool2d).
//
// One invocation per output value. Memory-bound: the windows of neighbouring invocations overlap
// and are served by the cache.

struct Params {
    total: u32,   // batch * channels * out_h * out_w
    in_h: u32, in_w: u32,
    out_h: u32, out_w: u32,
    k_h: u32, k_w: u32,           // window (MODE 0, 1)
    s_h: u32, s_w: u32,           // stride
    p_h: u32, p_w: u32,           // padding on each side
    d_h: u32, d_w: u32,           // dilation (MODE 0)
    count_include_pad: u32,       // MODE 1: padding counts in the divisor
    neg_inf_bits: u32,            // f32 -infinity (a WGSL constant may not be infinite)
    _pad1: u32,
}

override WG: u32 = 64u;
override MODE: u32 = 0u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(2) var<storage, read_write> y: array<store_t>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    let ox = i % p.out_w;
    let oy = (i / p.out_w) % p.out_h;
    let plane = (i / (p.out_w * p.out_h)) * p.in_h * p.in_w;
    switch MODE {
        case 0u: { y[i] = store_t(window_max(plane, oy, ox)); }
        case 1u: { y[i] = store_t(window_mean(plane, oy, ox)); }
        default: { y[i] = store_t(adaptive_mean(plane, oy, ox)); }
    }
}

// The largest input under the taps of the window of output (oy, ox) that fall inside the image;
// -infinity, as torch gives, when a dilated window's taps all fall into the padding.
fn window_max(plane: u32, oy: u32, ox: u32) -> f32 {
    let y0 = i32(oy * p.s_h) - i32(p.p_h);
    let x0 = i32(ox * p.s_w) - i32(p.p_w);
    var m = bitcast<f32>(p.neg_inf_bits);
    var found = false;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = y0 + i32(ky * p.d_h);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = x0 + i32(kx * p.d_w);
            if (ix >= 0 && ix < i32(p.in_w)) {
                let v = f32(x[plane + u32(iy) * p.in_w + u32(ix)]);
                m = select(v, max(m, v), found);
                found = true;
            }
        }
    }
    return m;
}

// avg_pool2d's mean over the window of output (oy, ox) (torch's divisor rule).
fn window_mean(plane: u32, oy: u32, ox: u32) -> f32 {
    let y0 = i32(oy * p.s_h) - i32(p.p_h);
    let x0 = i32(ox * p.s_w) - i32(p.p_w);
    // The window within the padded input (a ceil_mode window may hang past it), then within
    // the input.
    let y1 = min(y0 + i32(p.k_h), i32(p.in_h + p.p_h));
    let x1 = min(x0 + i32(p.k_w), i32(p.in_w + p.p_w));
    let padded = (y1 - y0) * (x1 - x0);
    let ys = max(y0, 0);
    let xs = max(x0, 0);
    let ye = min(y1, i32(p.in_h));
    let xe = min(x1, i32(p.in_w));
    let covered = (ye - ys) * (xe - xs);
    let divisor = select(covered, padded, p.count_include_pad != 0u);
    return sum_rect(plane, ys, ye, xs, xe) / f32(max(divisor, 1));
}

// adaptive_avg_pool2d's mean for output (oy, ox).
fn adaptive_mean(plane: u32, oy: u32, ox: u32) -> f32 {
    let ys = i32(oy * p.in_h / p.out_h);
    let ye = i32(((oy + 1u) * p.in_h + p.out_h - 1u) / p.out_h);
    let xs = i32(ox * p.in_w / p.out_w);
    let xe = i32(((ox + 1u) * p.in_w + p.out_w - 1u) / p.out_w);
    return sum_rect(plane, ys, ye, xs, xe) / f32((ye - ys) * (xe - xs));
}

// The sum of rows [ys, ye) x columns [xs, xe) of a plane.
fn sum_rect(plane: u32, ys: i32, ye: i32, xs: i32, xe: i32) -> f32 {
    var s = 0.0;
    for (var iy = ys; iy < ye; iy++) {
        for (var ix = xs; ix < xe; ix++) {
            s += f32(x[plane + u32(iy) * p.in_w + u32(ix)]);
        }
    }
    return s;
}
