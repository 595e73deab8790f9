// What the subgroup entry points share (conv_pointwise_subgroup.wgsl, conv_subgroup.wgsl).
// src/gpu/kernels.rs appends this file, then the entry point, to a family's module on devices
// with subgroups of exactly SG invocations; modules without it never use subgroup operations.

const SG: u32 = 8u;           // the subgroup size the entry points are written for

// Every lane's `v`, by lane: one broadcast per lane (a register shuffle on a CPU-backed adapter).
// The lane index of subgroupBroadcast must be a constant expression, hence the literal list.
fn broadcast8(v: vec4<f32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u),
        subgroupBroadcast(v, 3u), subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u),
        subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
}
