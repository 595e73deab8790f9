// Fully connected layer on f32 vectors: y[n, o] = act(sum_i w[o, i] * x[n, i] + b[o]), the
// linear head. One invocation per output; the weight rows are padded with zeros to a multiple
// of 4 values so that both operands load as vec4 (x realigned by its row's offset). A head
// whose weights exceed the binding limit is dispatched in parts, each with the weight rows of
// outputs o_begin .. o_begin + o_count.

struct Params {
    batch: u32,
    in_f: u32,
    out_f: u32,
    in4: u32,      // vec4s per padded weight row: ceil(in_f / 4)
    x_vec4s: u32,  // vec4s holding x (reads past it are clamped)
    status_tag: u32, // written to `status` when a logit is not finite (prelude.wgsl)
    o_begin: u32,  // first output of this part
    o_count: u32,  // outputs of this part
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;        // [batch, in_f]
@group(0) @binding(2) var<storage, read> w: array<vec4<store_t>>;    // this part's [o_count, in4 * 4]
@group(0) @binding(3) var<storage, read> b: array<f32>;              // [out_f]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;        // [batch, out_f]
@group(0) @binding(5) var<storage, read_write> status: atomic<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wid, nwg, lid, WG);
    if (idx >= p.batch * p.o_count) {
        return;
    }
    let n = idx / p.o_count;
    let ol = idx % p.o_count;      // within this part
    let o = p.o_begin + ol;
    let xs = n * p.in_f;          // first value of this image's x
    let r = xs % 4u;
    let q = xs / 4u;
    let last = p.x_vec4s - 1u;
    var acc = vec4<f32>(0.0);
    var v0 = x[min(q, last)];
    for (var m = 0u; m < p.in4; m++) {
        let v1 = x[min(q + m + 1u, last)];
        // Values past the row (another image's, or clamped reads) meet zero weights; they are
        // zeroed as well, so that no non-finite value can leak in.
        let at = vec4<u32>(4u * m) + vec4<u32>(0u, 1u, 2u, 3u);
        let xv = select(vec4<f32>(0.0), realign(v0, v1, r), at < vec4<u32>(p.in_f));
        acc = fma(vec4<f32>(w[ol * p.in4 + m]), xv, acc);
        v0 = v1;
    }
    let pre = acc.x + acc.y + acc.z + acc.w + b[o];
    let v = activate(pre);
    if ((bitcast<u32>(pre) & 0x7fffffffu) >= 0x7f800000u || (bitcast<u32>(v) & 0x7fffffffu) >= 0x7f800000u) {
        atomicMax(&status, p.status_tag);
    }
    y[n * p.out_f + o] = v;
}
