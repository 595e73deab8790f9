// What one load costs the adapter, by where it reads from: every invocation runs ITERS rounds
// of one vec4 load (at an address of its own) and 8 fused multiply-adds on it, and writes one
// value so that nothing is optimised away. MODE picks the source: 0 a storage buffer, 1 a
// 2-D texture (textureLoad, as operands_texture.wgsl reads), 2 a uniform buffer, 3 no load
// (the FMAs alone, the baseline). Standalone: no prelude. On lavapipe a storage load is a loop
// over the SIMD lanes and costs ~10x a texel fetch (BENCHMARKS.md), which is why the
// convolutions read textures on CPU-backed adapters.

override WG: u32 = 64u;
override ITERS: u32 = 1024u;
override MODE: u32 = 0u;

@group(0) @binding(0) var<storage, read> s: array<vec4<f32>>;   // 65536 vec4s
@group(0) @binding(1) var t: texture_2d<f32>;                    // 256 x 256 texels
@group(0) @binding(2) var<uniform> u: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    let m = vec4<f32>(0.9999999);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var k = 0u; k < ITERS; k++) {
        let q = (i * 7u + k) & 65535u;
        var v: vec4<f32>;
        switch MODE {
            case 0u: { v = s[q]; }
            case 1u: { v = textureLoad(t, vec2<u32>(q & 255u, q >> 8u), 0); }
            case 2u: { v = u[q & 4095u]; }
            default: { v = vec4<f32>(f32(q)); }
        }
        a0 = fma(a0, m, v);
        a1 = fma(a1, v, m);
        a2 = fma(a2, m, v.wzyx);
        a3 = fma(a3, v.yxwz, m);
        a0 = fma(a0, m, v.zwxy);
        a1 = fma(a1, v.xxyy, m);
        a2 = fma(a2, m, v.zzww);
        a3 = fma(a3, v.xyxy, m);
    }
    if (i < arrayLength(&out)) {
        out[i] = dot(a0 + a1 + a2 + a3, vec4<f32>(1.0));
    }
}
