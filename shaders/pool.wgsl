// Global average pooling: the mean of each H x W plane, one workgroup per plane (tree
// reduction in workgroup memory). Output is always f32: it feeds squeeze-and-excitation's
// first 1x1 convolution or the linear head.

struct Params {
    planes: u32,   // batch * channels
    hw: u32,       // height * width
    _unused0: u32,
    _unused1: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let plane = wid.y * nwg.x + wid.x;
    if (plane >= p.planes) {
        return;
    }
    var s = 0.0;
    for (var i = lid; i < p.hw; i += WG) {
        s += f32(x[plane * p.hw + i]);
    }
    sums[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (lid < k) {
            sums[lid] += sums[lid + k];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        y[plane] = sums[0] / f32(p.hw);
    }
}
