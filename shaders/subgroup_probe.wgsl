// Checks, once per device, how the device lays its subgroups over a workgroup. The subgroup
// entry points (conv_pointwise_subgroup.wgsl, conv_subgroup.wgsl) assume what WGSL does not
// promise: that subgroups are SG = 8 invocations, all active, and that an invocation's lane
// (`subgroup_invocation_id`) is its `local_invocation_index` modulo 8, i.e. that a subgroup is
// 8 consecutive invocations starting at a multiple of 8. src/gpu/context.rs runs this kernel
// for every workgroup size the runner uses and enables the subgroup kernels only when every
// invocation writes 1.

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> ok: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) size: u32) {
    let first = subgroupBroadcast(lid, 0u);   // the local index of lane 0
    let lanes = subgroupAdd(1u);              // active lanes
    ok[lid] = select(0u, 1u, size == 8u && lanes == 8u && lane == lid % 8u && first == lid - lane);
}
