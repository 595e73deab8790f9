// torchvision's evaluation transform on a texture: PIL's antialiased bilinear resize
// (separable triangle filter, support = max(scale, 1), horizontal pass then vertical pass),
// centre crop (zero padding where the crop is larger), `/ 255`, `(x - mean) / std`.
//
// src/gpu/preprocess.rs builds the module as
//
//     <precision line>  +  preprocess.wgsl
//
// with the same precision line as the kernels (`alias store_t = f32;` or
// `enable f16; alias store_t = f16;`), so the output is the runner's input in its precision.
// One invocation computes the three channels of one pixel of the crop.
//
// The host computes the filter taps exactly as Pillow does (first tap, tap count and 22-bit
// fixed-point weights per output column and row, in f64 like Pillow) and the normalised value
// of every 8-bit level exactly as the CPU path does; both live in `table`. With PIL = 1 the
// shader then repeats Pillow's integer arithmetic (i32 sums, rounding to 8 bits after each
// pass) and looks the result up: the output is bit-identical to the CPU path on the same
// 8-bit pixels. With PIL = 0 the same weights are applied in f32 without any rounding.

// How a texel becomes a value in 8-bit levels (0..255):
// 0: `255 * v` as loaded (float formats with PIL = 0);
// 1: rounded to the nearest level (unorm formats; every format with PIL = 1);
// 2: sRGB-encoded first, then rounded (*-srgb formats, which a load decodes to linear: this
//    recovers the stored byte).
override INPUT: u32 = 1u;
// 1: Pillow's integer arithmetic; 0: f32 without rounding.
override PIL: u32 = 1u;

struct Params {
    // Top-left texel of the source region.
    origin: vec2<u32>,
    // Crop size (width, height): the output plane.
    crop: vec2<u32>,
    // Padding before the part of the crop covered by the resized image, and that part's size.
    pad: vec2<u32>,
    window: vec2<u32>,
    // Taps per output column / row (the stride of the weight tables).
    taps: vec2<u32>,
    // Index of the first output element of this image (batch index * 3 * crop_h * crop_w).
    base: u32,
    _unused: u32,
    mean: vec4<f32>,
    stddev: vec4<f32>,
}

// `table` layout (32-bit words):
//   [0, 768)      normalised value of level v in channel c at c * 256 + v (f32 bits)
//   then          per window column: first tap, tap count
//   then          per window row: first tap, tap count
//   then          per window column: `taps.x` fixed-point weights (i32 bits)
//   then          per window row: `taps.y` fixed-point weights
const LUT: u32 = 768u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var src: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<store_t>;

const ONE: f32 = 4194304.0; // 1 << 22, Pillow's PRECISION_BITS

fn srgb_encode(c: vec3<f32>) -> vec3<f32> {
    let x = clamp(c, vec3<f32>(0.0), vec3<f32>(1.0));
    let hi = 1.055 * pow(max(x, vec3<f32>(0.0031308)), vec3<f32>(1.0 / 2.4)) - 0.055;
    return select(hi, x * 12.92, x <= vec3<f32>(0.0031308));
}

// A source texel in 8-bit levels, RGB (BGRA formats are swizzled by the load).
fn texel(x: u32, y: u32) -> vec3<f32> {
    var c = textureLoad(src, vec2<i32>(p.origin + vec2<u32>(x, y)), 0).rgb;
    if (INPUT == 2u) {
        c = srgb_encode(c);
    }
    c = c * 255.0;
    if (INPUT != 0u) {
        c = clamp(floor(c + 0.5), vec3<f32>(0.0), vec3<f32>(255.0));
    }
    return c;
}

fn weight(i: u32) -> i32 {
    return bitcast<i32>(table[i]);
}

// Pillow's clip8: drop the 22 fraction bits (the sums started at one half) and saturate.
fn clip8(v: vec3<i32>) -> vec3<i32> {
    return clamp(v >> vec3<u32>(22u), vec3<i32>(0), vec3<i32>(255));
}

fn store(x: u32, y: u32, v: vec3<f32>) {
    let plane = p.crop.x * p.crop.y;
    let i = p.base + y * p.crop.x + x;
    dst[i] = store_t(v.x);
    dst[i + plane] = store_t(v.y);
    dst[i + 2u * plane] = store_t(v.z);
}

fn lookup(v: vec3<i32>) -> vec3<f32> {
    return vec3<f32>(
        bitcast<f32>(table[u32(v.x)]),
        bitcast<f32>(table[256u + u32(v.y)]),
        bitcast<f32>(table[512u + u32(v.z)]),
    );
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if (x >= p.crop.x || y >= p.crop.y) {
        return;
    }
    // Padding of a crop larger than the resized image: torchvision pads with black.
    if (x < p.pad.x || y < p.pad.y || x >= p.pad.x + p.window.x || y >= p.pad.y + p.window.y) {
        store(x, y, lookup(vec3<i32>(0)));
        return;
    }
    let ix = x - p.pad.x;
    let iy = y - p.pad.y;
    let col = LUT + 2u * ix;
    let row = LUT + 2u * p.window.x + 2u * iy;
    let x0 = table[col];
    let nx = table[col + 1u];
    let y0 = table[row];
    let ny = table[row + 1u];
    let wx = LUT + 2u * (p.window.x + p.window.y) + ix * p.taps.x;
    let wy = LUT + 2u * (p.window.x + p.window.y) + p.window.x * p.taps.x + iy * p.taps.y;

    // Horizontal pass on each source row of the vertical window, then the vertical pass.
    if (PIL == 1u) {
        let half = vec3<i32>(1 << 21u);
        var acc = half;
        for (var r = 0u; r < ny; r++) {
            var h = half;
            for (var t = 0u; t < nx; t++) {
                h += vec3<i32>(texel(x0 + t, y0 + r)) * weight(wx + t);
            }
            acc += clip8(h) * weight(wy + r);
        }
        store(x, y, lookup(clip8(acc)));
    } else {
        var acc = vec3<f32>(0.0);
        for (var r = 0u; r < ny; r++) {
            var h = vec3<f32>(0.0);
            for (var t = 0u; t < nx; t++) {
                h += texel(x0 + t, y0 + r) * (f32(weight(wx + t)) / ONE);
            }
            acc += h * (f32(weight(wy + r)) / ONE);
        }
        store(x, y, (acc / 255.0 - p.mean.xyz) / p.stddev.xyz);
    }
}
