// CBAM's spatial attention input: at every pixel, the mean and the max over the channels,
// written as two planes [N, 2, H, W] (mean first, as the CBAM paper's [F_avg; F_max]).
// One invocation per (image, pixel); the channel loop reads one value per plane.

struct Params {
    total: u32,     // batch * hw
    channels: u32,  // C
    hw: u32,        // values per plane
    _pad0: u32,
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
    let px = i % p.hw;
    let n = i / p.hw;
    let base = n * p.channels * p.hw + px;
    var m = f32(x[base]);
    var s = 0.0;
    for (var c = 0u; c < p.channels; c++) {
        let v = f32(x[base + c * p.hw]);
        s += v;
        m = max(m, v);
    }
    y[2u * n * p.hw + px] = store_t(s / f32(p.channels));
    y[(2u * n + 1u) * p.hw + px] = store_t(m);
}
