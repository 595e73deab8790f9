// ShuffleNet's channel shuffle (torch's channel_shuffle): with C channels in G groups, output
// channel j * G + i is input channel i * (C / G) + j, i.e. x viewed as [N, G, C / G, H, W] with
// its two channel axes transposed. One invocation per output value; a pure copy.

struct Params {
    total: u32,     // batch * channels * hw
    channels: u32,  // C
    groups: u32,    // G
    hw: u32,        // values per plane
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
    let oc = (i / p.hw) % p.channels;
    let n = i / (p.hw * p.channels);
    let ic = (oc % p.groups) * (p.channels / p.groups) + oc / p.groups;
    y[i] = x[(n * p.channels + ic) * p.hw + px];
}
