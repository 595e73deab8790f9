// How the convolutions (conv.wgsl, conv_pointwise.wgsl and their subgroup entry points) and
// squeeze-and-excitation (squeeze_excite.wgsl) read their input `x` and weights `w`, both laid
// out as vec4s: from storage buffers. The portable way, and the one every adapter but the
// CPU-backed ones takes; operands_texture.wgsl is the other (src/gpu/kernels.rs puts one of
// the two after the prelude).
@group(0) @binding(1) var<storage, read> x: array<vec4<store_t>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<store_t>>;

// vec4 `i` of the input.
fn load_x(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i]);
}

// vec4 `i` of the weights.
fn load_w(i: u32) -> vec4<f32> {
    return vec4<f32>(w[i]);
}
