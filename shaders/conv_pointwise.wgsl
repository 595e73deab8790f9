// 1x1 convolution with one group and any stride, or a KH x KW convolution with one group,
// stride 1 and "same" padding (output plane = input plane: ResNet's 3x3s), as a GEMM per image:
//
//     y[n, o, p] = act(sum_{tap, c} w[c, tap, o] * x[n, c, at(p, tap)] * gate[n, c]
//                      + bias[o] + residual[n, o, p])
//
// over the flattened output pixels p of an NCHW image. For a 1x1, at(p) is p itself at stride 1
// and the input pixel under p otherwise (a projection shortcut's 1x1 stride-2 conv). For a
// KH x KW kernel (stride 1, out plane = in plane), tap (ky, kx) reads the input plane shifted by
// (ky - pad_y) * W + (kx - pad_x) values: a tile of pixels stays contiguous in the input, so it
// loads as vec4s like the 1x1's, and the pixels whose tap falls in the padding (top and bottom
// rows, or across a row's end) are zeroed by a mask computed once per tap. BatchNorm is folded
// into `w` and `bias`; HAS_GATE fuses squeeze-and-excitation's channel scale into the reads of
// `x`, HAS_RESIDUAL the block's shortcut.
//
// One invocation per (image, block of TM output channels, tile of TN pixels), tiles innermost,
// kept as TM x TN / 4 vec4 accumulators: the register tile, which the runner picks per adapter
// type (src/gpu/tiling.rs: 16 x 16 on CPU-backed adapters, where a storage load costs as much as
// dozens of FMAs, smaller on GPUs, where occupancy matters more). Everything read per input
// channel and tap loads as vec4: the weights, stored transposed `[in_c, KH, KW, oc_pad]` with the
// output channels padded to a multiple of 4, take TM / 4 loads; the TN pixels take TN / 4 loads
// when planes are a multiple of 4 pixels long (ALIGNED) and the tap is not shifted, else one
// more, realigned. The epilogue reads the residual the same way.
// The bindings are conv.wgsl's, so one bind group layout serves both.

struct Params {
    batch: u32, in_c: u32, in_h: u32, in_w: u32,
    out_c: u32, out_h: u32, out_w: u32,
    oc_blocks: u32,   // ceil(oc_count / TM)
    tiles: u32,       // TN-pixel tiles per plane: ceil(out_h * out_w / TN)
    invocations: u32, // batch * oc_blocks * tiles (main_subgroup: rounded up to 8)
    oc_begin: u32,    // first output channel of this dispatch (a conv too large for one weight
    oc_count: u32,    // buffer is split into dispatches over ranges of output channels)
    oc_pad4: u32,     // vec4s per row of the transposed weights: ceil(oc_count / 4)
    x_vec4s: u32,     // vec4s holding the input value (reads past it are clamped)
    r_vec4s: u32,     // vec4s holding the residual value (likewise)
    status_tag: u32,  // written to `status` when a value cannot be stored (prelude.wgsl)
    res_c: u32,       // channels of the residual: added to the first res_c output channels
    pad_y: u32,       // KH x KW kernels: zero padding above and below ((KH - 1) / 2)
    pad_x: u32,       // and left and right ((KW - 1) / 2)
    tiles_x: u32,     // ROW_TILES: TN-pixel tiles per output row
}

override HAS_RESIDUAL: bool = false;
override HAS_GATE: bool = false;
override WG: u32 = 64u;
override TM: u32 = 16u;       // output channels per invocation: 4, 8, 12 or 16
override TN: u32 = 8u;        // pixels per invocation: 4, 8, 12 or 16
override ALIGNED: bool = true; // output planes hold a multiple of 4 pixels
override STRIDE: u32 = 1u;
override KH: u32 = 1u;        // kernel rows and columns: more than one only at STRIDE 1 with
override KW: u32 = 1u;        // "same" padding (the output plane is the input plane)
// STRIDE 2 with input planes and rows that start on a vec4 (in_h * in_w and 2 * in_w multiples
// of 4): a tile is TN pixels of one output row (`tiles_x` a row), whose inputs, every second
// value of a run of 2 * TN, load as TN / 2 aligned vec4s instead of TN value by value.
override ROW_TILES: bool = false;
// Input channels per trip of the channel loop, written out: 1 or 4. SwiftShader's compiler pays
// for every trip of a runtime loop, and takes 4 (src/gpu/tiling.rs: unrolled_channels).
override CHANNEL_STEP: u32 = 1u;
const MAX_CHANNEL_STEP: u32 = 4u;

// The register tile is sized for the largest TM x TN. Every loop over it runs to these constant
// bounds with `if (o < TM)`-style guards inside: a loop whose trip count equals the length of the
// array it indexes is always unrolled (Mesa's NIR, for one, forces it), after which the guards
// fold away and the accumulators live in registers; a loop left rolled would index the array
// dynamically and move it to memory (4-5x slower on lavapipe).
const MAX_TM: u32 = 16u;
const MAX_NV: u32 = 4u;       // vec4s of pixels: TN / 4 <= MAX_NV
const MAX_PX: u32 = 16u;      // 4 * MAX_NV
const MAX_SV: u32 = 5u;       // vec4s loaded for a shifted tap's pixels: MAX_NV + 1

@group(0) @binding(0) var<uniform> p: Params;
// Binding 1, the input `x`, and 2, the weights `w` (this part's [in_c, KH, KW, oc_pad4]):
// operands_storage.wgsl or operands_texture.wgsl, read through load_x and load_w.
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // [out_c]
@group(0) @binding(4) var<storage, read> residual: array<vec4<store_t>>;
@group(0) @binding(5) var<storage, read> gate: array<f32>;     // [batch, in_c]
@group(0) @binding(6) var<storage, read_write> y: array<store_t>;
@group(0) @binding(7) var<storage, read_write> status: atomic<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // One invocation per (image, channel block, tile), tiles innermost: every lane of a
    // workgroup has work however small the plane (on a CPU-backed adapter a workgroup is one
    // SIMD loop, so idle lanes cost as much as busy ones). Invocations past the end compute a
    // clamped copy of the last tile and store nothing; workgroups wholly past the end return
    // at once.
    if (workgroup_index(wid, nwg) * WG >= p.invocations) {
        return;
    }
    let id_raw = linear_index(wid, nwg, lid, WG);
    let id = min(id_raw, p.invocations - 1u);
    let tile = id % p.tiles;
    let ocb = (id / p.tiles) % p.oc_blocks;
    let n = id / (p.tiles * p.oc_blocks);

    let hw = p.out_h * p.out_w;
    var p0 = tile * TN;              // first pixel of this tile (a multiple of 4 unless ROW_TILES)
    var end = hw;                    // the tile's pixels stop before this one
    var row_at = 0u;                 // ROW_TILES: the input offset (within a plane) of pixel p0
    if (ROW_TILES) {
        let oy = tile / p.tiles_x;
        let ox0 = (tile % p.tiles_x) * TN;
        p0 = oy * p.out_w + ox0;
        end = (oy + 1u) * p.out_w;
        row_at = (oy * p.in_w + ox0) * STRIDE;
    }
    let oc0 = ocb * TM;              // within this part

    // Strided: the input offset (within a plane) of each pixel of the tile, read value by value.
    var at: array<u32, MAX_PX>;
    if (STRIDE > 1u && !ROW_TILES) {
        // unroll
        for (var k = 0u; k < MAX_PX; k++) {
            let px = min(p0 + k, hw - 1u);
            at[k] = (px / p.out_w) * STRIDE * p.in_w + (px % p.out_w) * STRIDE;
        }
    }
    let in_hw = p.in_h * p.in_w;

    var acc: Acc;
    for (var tap = 0u; tap < KH * KW; tap++) {
        // Tap (ky, kx) reads the input plane `shift` values on; `inside` masks the pixels
        // whose tap falls in the padding (a 1x1 has one tap, unshifted, all inside).
        let dy = i32(tap / KW) - i32(p.pad_y);
        let dx = i32(tap % KW) - i32(p.pad_x);
        let shift = dy * i32(p.in_w) + dx;
        var inside: Inside;
        if (KH * KW > 1u) {
            inside = tap_inside(p0, dy, dx);
        }
        var plane = n * p.in_c * in_hw;  // first value of input channel c
        // CHANNEL_STEP channels per trip, then the rest one by one.
        var c = 0u;
        for (; c + CHANNEL_STEP <= p.in_c; c += CHANNEL_STEP) {
            // unroll
            for (var u = 0u; u < MAX_CHANNEL_STEP; u++) {
                if (u < CHANNEL_STEP) {
                    add_channel(&acc, n, c + u, plane + u * in_hw, p0, row_at, &at, &inside,
                                tap, shift, oc0);
                }
            }
            plane += CHANNEL_STEP * in_hw;
        }
        for (; c < p.in_c; c++) {
            add_channel(&acc, n, c, plane, p0, row_at, &at, &inside, tap, shift, oc0);
            plane += in_hw;
        }
    }

    if (id_raw >= p.invocations) {
        return;
    }
    epilogue(&acc, n, oc0, p0, end);
}

// Adds input channel `c` (its plane starting at value `plane`) at tap `tap` to the register tile:
// the tile's pixels (unshifted for a 1x1, shifted and masked for a wider kernel), gated, times the
// channel's weights for output channels oc0...
fn add_channel(acc: ptr<function, Acc>, n: u32, c: u32, plane: u32, p0: u32, row_at: u32,
                at: ptr<function, array<u32, MAX_PX>>, inside: ptr<function, Inside>, tap: u32,
                shift: i32, oc0: u32) {
    var xv: Pixels;
    if (KH * KW > 1u) {
        xv = shifted_pixels(i32(plane + p0) + shift, inside);
    } else {
        xv = tile_pixels(plane, p0, row_at, at);
    }
    if (HAS_GATE) {
        let s = gate[n * p.in_c + c];
        // unroll
        for (var j = 0u; j < MAX_NV; j++) {
            xv[j] = gate_activate4(xv[j] * s);
        }
    }
    channel_fma(acc, (c * KH * KW + tap) * p.oc_pad4, oc0, &xv);
}

// The register tile, one input channel's pixels and which of them a tap reads from the image.
alias Acc = array<array<vec4<f32>, MAX_NV>, MAX_TM>;
alias Pixels = array<vec4<f32>, MAX_NV>;
alias Inside = array<vec4<bool>, MAX_NV>;

// A 1x1's tile: the TN pixels from `p0` of the input channel starting at value `plane`, read as
// vec4s (realigned by the plane's offset unless ALIGNED); at a stride, every second value of the
// aligned vec4s from `row_at` within the plane (ROW_TILES), else value by value (`at`: each
// pixel's offset within the plane).
fn tile_pixels(plane: u32, p0: u32, row_at: u32, at: ptr<function, array<u32, MAX_PX>>) -> Pixels {
    let last = p.x_vec4s - 1u;
    let nv = TN / 4u;
    let q = plane / 4u + p0 / 4u;
    let qr = (plane + row_at) / 4u;
    var xv: Pixels;
    // unroll
    for (var j = 0u; j < MAX_NV; j++) {
        if (j < nv) {
            if (ROW_TILES) {
                let a = load_x(min(qr + 2u * j, last));
                let b = load_x(min(qr + 2u * j + 1u, last));
                xv[j] = vec4<f32>(a.x, a.z, b.x, b.z);
            } else if (STRIDE == 1u) {
                xv[j] = load_x(min(q + j, last));
            } else {
                xv[j] = vec4<f32>(x_at(plane + (*at)[4u * j]), x_at(plane + (*at)[4u * j + 1u]),
                                  x_at(plane + (*at)[4u * j + 2u]), x_at(plane + (*at)[4u * j + 3u]));
            }
        }
    }
    if (STRIDE == 1u && !ALIGNED) {
        // The plane starts `plane % 4` values into a vec4: realign.
        let r = plane % 4u;
        let extra = load_x(min(q + nv, last));
        // unroll
        for (var j = 0u; j < MAX_NV; j++) {
            if (j < nv) {
                xv[j] = realign(xv[j], select(extra, xv[min(j + 1u, MAX_NV - 1u)], j + 1u < nv), r);
            }
        }
    }
    return xv;
}

// A tap's tile: the TN input values from value `a` (any alignment; may lie before the start of
// the input, where `inside` is false), zero where `inside` is false.
fn shifted_pixels(a: i32, inside: ptr<function, Inside>) -> Pixels {
    let last = i32(p.x_vec4s) - 1;
    let sh = u32(a & 3);
    let q = (a - i32(sh)) / 4;
    // Reads before the start or past the end are clamped: they only feed masked pixels.
    var v: array<vec4<f32>, MAX_SV>;
    // unroll
    for (var j = 0u; j < MAX_SV; j++) {
        if (j <= TN / 4u) {
            v[j] = load_x(u32(clamp(q + i32(j), 0, last)));
        }
    }
    var xv: Pixels;
    // unroll
    for (var j = 0u; j < MAX_NV; j++) {
        if (j < TN / 4u) {
            xv[j] = select(vec4<f32>(0.0), realign(v[j], v[j + 1u], sh), (*inside)[j]);
        }
    }
    return xv;
}

// Which of the tile's pixels from `p0` read an input pixel (not padding) at tap offset (dy, dx).
fn tap_inside(p0: u32, dy: i32, dx: i32) -> Inside {
    let w = vec4<u32>(p.out_w);
    var inside: Inside;
    // unroll
    for (var j = 0u; j < MAX_NV; j++) {
        let px = vec4<u32>(p0 + 4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
        let iy = vec4<i32>(px / w) + dy;
        let ix = vec4<i32>(px % w) + dx;
        // `&`, not `&&`: a short-circuit per pixel is a branch, and SwiftShader's compiler
        // (Subzero) ran out of memory on the 48 of them in this loop (Chromium's GPU process
        // died, natively std::bad_alloc after 8 GB).
        inside[j] = (iy >= vec4<i32>(0)) & (iy < vec4<i32>(i32(p.in_h)))
                  & (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(p.in_w)));
    }
    return inside;
}

// acc += w[row, oc0..oc0 + TM] (outer product) xv: one input channel's contribution, its
// weights loaded as TM / 4 vec4s from the weight row starting at vec4 `wrow`.
fn channel_fma(acc: ptr<function, Acc>, wrow: u32, oc0: u32, xv: ptr<function, Pixels>) {
    // unroll
    for (var t = 0u; t < MAX_TM / 4u; t++) {
        if (t < TM / 4u) {
            let w4 = load_w(wrow + min(oc0 / 4u + t, p.oc_pad4 - 1u));
            // unroll
            for (var i = 0u; i < 4u; i++) {
                let wv = vec4<f32>(w4[i]);
                // unroll
                for (var j = 0u; j < MAX_NV; j++) {
                    if (j < TN / 4u) {
                        (*acc)[4u * t + i][j] = fma(wv, (*xv)[j], (*acc)[4u * t + i][j]);
                    }
                }
            }
        }
    }
}

// Adds bias and residual to the register tile of output channels oc0.. (within this part) and
// pixels p0.. of image n, applies the activation and stores those before pixel `end` (the
// plane's end, or the row's for ROW_TILES).
fn epilogue(acc: ptr<function, Acc>, n: u32, oc0: u32, p0: u32, end: u32) {
    let hw = p.out_h * p.out_w;
    let oc_end = p.oc_begin + p.oc_count;
    // unroll
    for (var o = 0u; o < MAX_TM; o++) {
        let oc = p.oc_begin + oc0 + o;
        if (o < TM && oc < oc_end) {
            let base = (n * p.out_c + oc) * hw;  // the output plane
            let rbase = (n * p.res_c + oc) * hw; // the residual's plane, when oc < res_c
            let bv = vec4<f32>(bias[oc]);
            // unroll
            for (var j = 0u; j < MAX_NV; j++) {
                let px = p0 + 4u * j;
                if (j < TN / 4u && px < end) {
                    var v = (*acc)[o][j] + bv;
                    if (HAS_RESIDUAL && oc < p.res_c) {
                        v += residual4(rbase + px);
                    }
                    let a = activate4(v);
                    // Lanes past the plane's end hold clamped copies: only stored ones count.
                    let stored = vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(end - px);
                    if (any(stored & !storable4(v, a))) {
                        atomicMax(&status, p.status_tag);
                    }
                    store4(base + px, end - px, a);
                }
            }
        }
    }
}

// Input value `i` (all of x is read as vec4s).
fn x_at(i: u32) -> f32 {
    return load_x(min(i / 4u, p.x_vec4s - 1u))[i % 4u];
}

// The 4 residual values starting at value `at`.
fn residual4(at: u32) -> vec4<f32> {
    let q = at / 4u;
    let lastr = p.r_vec4s - 1u;
    let u = vec4<f32>(residual[min(q, lastr)]);
    if (ALIGNED) {
        return u;
    }
    return realign(u, vec4<f32>(residual[min(q + 1u, lastr)]), at % 4u);
}

// Stores the first min(4, room) values of `v` at value `at`.
fn store4(at: u32, room: u32, v: vec4<f32>) {
    // unroll
    for (var j = 0u; j < 4u; j++) {
        if (j < room) {
            y[at + j] = store_t(v[j]);
        }
    }
}
