// CBAM's spatial attention applied: every channel of x times the [N, 1, H, W] map (already
// through its sigmoid). One invocation per output value.

struct Params {
    total: u32,     // batch * channels * hw
    channels: u32,  // C
    hw: u32,        // values per plane
    _pad0: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(2) var<storage, read> m: array<store_t>;
@group(0) @binding(3) var<storage, read_write> y: array<store_t>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    let n = i / (p.channels * p.hw);
    y[i] = store_t(f32(x[i]) * f32(m[n * p.hw + i % p.hw]));
}
