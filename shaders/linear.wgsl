// Fully connected layer on f32 vectors: y[n, o] = act(sum_i w[o, i] * x[n, i] + b[o]).
// Serves the linear head (ACT = identity) and squeeze-and-excitation's two 1x1 convolutions
// on pooled vectors (ACT = ReLU, then sigmoid). One invocation per output.

struct Params {
    batch: u32,
    in_f: u32,
    out_f: u32,
    _unused: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [batch, in_f]
@group(0) @binding(2) var<storage, read> w: array<store_t>;    // [out_f, in_f]
@group(0) @binding(3) var<storage, read> b: array<f32>;        // [out_f]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [batch, out_f]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wid, nwg, lid, WG);
    if (idx >= p.batch * p.out_f) {
        return;
    }
    let n = idx / p.out_f;
    let o = idx % p.out_f;
    var acc = 0.0;
    for (var i = 0u; i < p.in_f; i++) {
        acc += f32(w[o * p.in_f + i]) * x[n * p.in_f + i];
    }
    y[idx] = activate(acc + b[o]);
}
