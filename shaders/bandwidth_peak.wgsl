// The adapter's storage bandwidth, for the roofline the benchmarks compare each dispatch with:
// a streaming copy of vec4s from `src` to `dst`, buffers far larger than any cache, each byte
// read once and written once. Two access patterns, the runner keeping the faster:
//
// - INTERLEAVED: each workgroup copies one contiguous block, its invocations interleaved in it
//   (neighbouring lanes touch neighbouring vec4s: what a GPU coalesces);
// - otherwise each invocation copies a contiguous chunk of its own (what a CPU-backed adapter
//   streams: on lavapipe 6-9 GB/s, against 1.4-2 GB/s interleaved, whose lanes it gathers).
//
// Standalone: no prelude.

override WG: u32 = 64u;
override INTERLEAVED: bool = true;

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n = arrayLength(&src);
    if (INTERLEAVED) {
        let block = (n + nwg.x - 1u) / nwg.x;
        let end = min(wid.x * block + block, n);
        for (var i = wid.x * block + lid; i < end; i += WG) {
            dst[i] = src[i];
        }
    } else {
        let lanes = nwg.x * WG;
        let chunk = (n + lanes - 1u) / lanes;
        let first = (wid.x * WG + lid) * chunk;
        let end = min(first + chunk, n);
        for (var i = first; i < end; i++) {
            dst[i] = src[i];
        }
    }
}
