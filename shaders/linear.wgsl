// Fully connected layer on f32 vectors: y[n, o] = act(sum_i w[o, i] * x[n, i] + b[o]), the
// linear head. One invocation per OUTS outputs of an image, which share each load of x (on a
// CPU-backed adapter every storage load is a loop over the SIMD lanes: 5 loads per 16
// multiply-adds instead of 2 per 4); the weight rows are padded with zeros to a multiple of 4
// values so that both operands load as vec4 (x realigned by its row's offset). A head
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

const OUTS: u32 = 4u;         // outputs per invocation

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wid, nwg, lid, WG);
    let groups = (p.o_count + OUTS - 1u) / OUTS;
    if (idx >= p.batch * groups) {
        return;
    }
    let n = idx / groups;
    let ol0 = (idx % groups) * OUTS;   // first output of this invocation, within this part
    // The weight rows of outputs ol0 .. ol0 + 3, clamped to the part's last (computed, not
    // stored).
    let rows = min(vec4<u32>(ol0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.o_count - 1u)) * p.in4;
    let xs = n * p.in_f;          // first value of this image's x
    let r = xs % 4u;
    let q = xs / 4u;
    let last = p.x_vec4s - 1u;
    var acc: array<vec4<f32>, OUTS>;
    var v0 = x[min(q, last)];
    for (var m = 0u; m < p.in4; m++) {
        let v1 = x[min(q + m + 1u, last)];
        // Values past the row (another image's, or clamped reads) meet zero weights; they are
        // zeroed as well, so that no non-finite value can leak in.
        let at = vec4<u32>(4u * m) + vec4<u32>(0u, 1u, 2u, 3u);
        let xv = select(vec4<f32>(0.0), realign(v0, v1, r), at < vec4<u32>(p.in_f));
        acc[0] = fma(vec4<f32>(w[rows.x + m]), xv, acc[0]);
        acc[1] = fma(vec4<f32>(w[rows.y + m]), xv, acc[1]);
        acc[2] = fma(vec4<f32>(w[rows.z + m]), xv, acc[2]);
        acc[3] = fma(vec4<f32>(w[rows.w + m]), xv, acc[3]);
        v0 = v1;
    }
    for (var k = 0u; k < OUTS; k++) {
        let ol = ol0 + k;
        if (ol < p.o_count) {
            let o = p.o_begin + ol;
            let a = acc[k];
            let pre = a.x + a.y + a.z + a.w + b[o];
            let v = activate(pre);
            if ((bitcast<u32>(pre) & 0x7fffffffu) >= 0x7f800000u || (bitcast<u32>(v) & 0x7fffffffu) >= 0x7f800000u) {
                atomicMax(&status, p.status_tag);
            }
            y[n * p.out_f + o] = v;
        }
    }
}
