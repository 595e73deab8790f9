// Prelude shared by every kernel. src/gpu/kernels.rs builds each module as
//
//     <precision line>  +  prelude.wgsl  +  <kernel>.wgsl
//
// where the precision line is `alias store_t = f32;` (f32 runners) or
// `enable f16; alias store_t = f16;` (f16 runners), each with its STORE_LIMIT (see storable()).
// Activations and weights are stored as `store_t`; arithmetic and accumulation are always f32.
//
// Kernels that store values bind a status word; one that meets a value it cannot store writes
// its dispatch's `status_tag` there (atomicMax: the earliest dispatch wins) and the runner
// returns an error naming the op instead of the results.

// Activations by code: 0 identity, 1 ReLU, 2 sigmoid, 3 ReLU6, 4 SiLU (src/gpu/kernels.rs
// act_code). ACT is applied at the end of a kernel; GATE_ACT to a convolution's input after the
// squeeze-and-excitation gate scales it (ReXNet's ReLU6; it must map 0 to 0, as padding does).
override ACT: u32 = 0u;
override GATE_ACT: u32 = 0u;

fn activate_by(code: u32, v: f32) -> f32 {
    switch code {
        case 1u: { return max(v, 0.0); }
        case 2u: { return 1.0 / (1.0 + exp(-v)); }
        case 3u: { return clamp(v, 0.0, 6.0); }
        case 4u: { return v / (1.0 + exp(-v)); }
        default: { return v; }
    }
}

fn activate(v: f32) -> f32 {
    return activate_by(ACT, v);
}

fn gate_activate4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(activate_by(GATE_ACT, v.x), activate_by(GATE_ACT, v.y),
                     activate_by(GATE_ACT, v.z), activate_by(GATE_ACT, v.w));
}

fn activate4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(activate(v.x), activate(v.y), activate(v.z), activate(v.w));
}

// Workgroups are dispatched as a 2-D grid (x up to the device's per-dimension limit, balanced
// so that fewer than `nwg.y` workgroups lie past the end); this is the linear index of a
// workgroup, and of an invocation in a 1-D workgroup of `wg` invocations.
fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg: u32) -> u32 {
    return workgroup_index(wid, nwg) * wg + lid;
}

// Whether a result can be stored: its value before the activation `pre` is finite (else a ReLU
// could flush a NaN into a plausible 0) and the value `v` stored fits store_t (|v| < 65520 for
// f16, which rounds to 65504 or less; finite for f32). Bit tests rather than comparisons with
// infinity, which WGSL lets compilers assume never happens. STORE_LIMIT comes with the precision
// line: the f32 bit pattern of the smallest magnitude store_t cannot hold.
// `&` rather than `&&`: a short-circuit is a branch, and branches in unrolled code cost
// CPU-backed compilers dearly (SwiftShader's ran out of memory on a few dozen in a loop).
fn storable(pre: f32, v: f32) -> bool {
    return ((bitcast<u32>(pre) & 0x7fffffffu) < 0x7f800000u)
         & ((bitcast<u32>(v) & 0x7fffffffu) < STORE_LIMIT);
}

// storable() of four values at once.
fn storable4(pre: vec4<f32>, v: vec4<f32>) -> vec4<bool> {
    return ((bitcast<vec4<u32>>(pre) & vec4<u32>(0x7fffffffu)) < vec4<u32>(0x7f800000u))
         & ((bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) < vec4<u32>(STORE_LIMIT));
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
