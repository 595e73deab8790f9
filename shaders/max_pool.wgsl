// Max pooling (torch's MaxPool2d, ceil_mode=False): each output value is the largest input value
// under its K x K window; padding never wins (windows always overlap the image: pad <= K / 2).
//
// One invocation per output value. Memory-bound: the windows of neighbouring invocations overlap
// and are served by the cache.

struct Params {
    total: u32,   // batch * channels * out_h * out_w
    in_h: u32, in_w: u32,
    out_h: u32, out_w: u32,
    kernel: u32, stride: u32, pad: u32,
}

override WG: u32 = 64u;

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
    // The window clipped to the image, in input coordinates.
    let y0 = max(i32(oy * p.stride) - i32(p.pad), 0);
    let x0 = max(i32(ox * p.stride) - i32(p.pad), 0);
    let y1 = min(i32(oy * p.stride + p.kernel) - i32(p.pad), i32(p.in_h));
    let x1 = min(i32(ox * p.stride + p.kernel) - i32(p.pad), i32(p.in_w));
    var m = f32(x[plane + u32(y0) * p.in_w + u32(x0)]);
    for (var iy = y0; iy < y1; iy++) {
        for (var ix = x0; ix < x1; ix++) {
            m = max(m, f32(x[plane + u32(iy) * p.in_w + u32(ix)]));
        }
    }
    y[i] = store_t(m);
}
