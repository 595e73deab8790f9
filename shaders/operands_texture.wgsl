// How the convolutions and squeeze-and-excitation read their input `x` and weights `w` on
// CPU-backed adapters: the same vec4s as operands_storage.wgsl, held in 2-D textures
// (rgba32float, or rgba16float for f16 storage), vec4 `i` at texel (i % 2^TEXTURE_ROW_BITS,
// i / 2^TEXTURE_ROW_BITS). On lavapipe a storage-buffer load is a loop over the SIMD lanes,
// each lane bounds-checked and branched on, while a texel fetch is one gather: the GEMMs load
// 5x faster this way (BENCHMARKS.md). The runner copies each one's input into its texture
// before the dispatch; the weights are uploaded as textures once (src/gpu/model.rs).
@group(0) @binding(1) var x: texture_2d<f32>;
@group(0) @binding(2) var w: texture_2d<f32>;

const TEXTURE_ROW_BITS: u32 = 12u;

fn texel(i: u32) -> vec2<u32> {
    return vec2<u32>(i & ((1u << TEXTURE_ROW_BITS) - 1u), i >> TEXTURE_ROW_BITS);
}

// vec4 `i` of the input.
fn load_x(i: u32) -> vec4<f32> {
    return textureLoad(x, texel(i), 0);
}

// vec4 `i` of the weights.
fn load_w(i: u32) -> vec4<f32> {
    return textureLoad(w, texel(i), 0);
}
