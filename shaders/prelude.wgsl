// Prelude shared by every kernel. src/gpu/kernels.rs builds each module as
//
//     <precision line>  +  prelude.wgsl  +  <kernel>.wgsl
//
// where the precision line is `alias store_t = f32;` (f32 runners) or
// `enable f16; alias store_t = f16;` (f16 runners). Activations and weights are stored
// as `store_t`; arithmetic and accumulation are always f32.

// Activation applied at the end of a kernel: 0 identity, 1 ReLU, 2 sigmoid.
override ACT: u32 = 0u;

fn activate(v: f32) -> f32 {
    switch ACT {
        case 1u: { return max(v, 0.0); }
        case 2u: { return 1.0 / (1.0 + exp(-v)); }
        default: { return v; }
    }
}

fn activate4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(activate(v.x), activate(v.y), activate(v.z), activate(v.w));
}

// Workgroups are dispatched as a 2-D grid (x up to the device's per-dimension limit);
// this is the linear index of an invocation in a 1-D workgroup of `wg` invocations.
fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * wg + lid;
}

// The 4 values starting `r` (0..3) values into `u`, continuing into `v`: a vec4 read at an
// offset that is not a multiple of 4, from the two aligned vec4s around it. Selects rather than
// a switch: `r` may differ between invocations, and branch-free code keeps SIMD lanes together
// on CPU-backed adapters.
fn realign(u: vec4<f32>, v: vec4<f32>, r: u32) -> vec4<f32> {
    let s1 = vec4<f32>(u.yzw, v.x);
    let s2 = vec4<f32>(u.zw, v.xy);
    let s3 = vec4<f32>(u.w, v.xyz);
    return select(select(select(u, s1, r == 1u), s2, r == 2u), s3, r == 3u);
}
