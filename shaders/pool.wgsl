// Global average pooling: the mean of each H x W plane. Output is always f32: it feeds the
// linear head (squeeze-and-excitation pools inside squeeze_excite.wgsl).
//
// One invocation per plane sums it serially: no workgroup barriers (which a CPU-backed adapter
// pays for by switching between invocations), and the planes of a batch give every adapter
// enough invocations (RegNet's pooled planes hold at most a few thousand values).

struct Params {
    planes: u32,   // batch * channels
    hw: u32,       // height * width
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let plane = linear_index(wid, nwg, lid, WG);
    if (plane >= p.planes) {
        return;
    }
    let base = plane * p.hw;
    var s = 0.0;
    for (var i = 0u; i < p.hw; i++) {
        s += f32(x[base + i]);
    }
    y[plane] = s / f32(p.hw);
}
