// Copies a range of channels of every image from one value to a range of another: ShuffleNetV2's
// channel split (a slice of the input) and concatenation (one dispatch per part, each into its
// channels of the output). One invocation per value copied.

struct Params {
    total: u32,      // batch * count * hw
    count: u32,      // channels copied
    hw: u32,         // values per plane
    src_c: u32,      // channels of the source
    src_begin: u32,  // first channel read
    dst_c: u32,      // channels of the destination
    dst_begin: u32,  // first channel written
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
    let c = (i / p.hw) % p.count;
    let n = i / (p.hw * p.count);
    y[(n * p.dst_c + p.dst_begin + c) * p.hw + px] = x[(n * p.src_c + p.src_begin + c) * p.hw + px];
}
