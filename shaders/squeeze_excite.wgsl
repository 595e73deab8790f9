// Squeeze-and-excitation's gate in one dispatch, one workgroup per image:
//
//     gate[n, c] = sigmoid(b2 + W2 relu(b1 + W1 mean(x[n, c, :, :])))
//
// in three phases separated by storage barriers: the mean of every plane (the squeeze), the
// hidden layer, the gate. With POOL_MAX (CBAM's channel attention) the max of every plane goes
// through the same MLP and the two are summed before the sigmoid:
//
//     gate[n, c] = sigmoid(2 b2 + W2 (relu(b1 + W1 mean) + relu(b1 + W1 max)))
//
// The gate is not applied here: the next convolution scales its input reads by it (HAS_GATE in conv.wgsl and conv_pointwise.wgsl).
//
// Three dispatches (pool, fc1, fc2) did the same work before; on a CPU-backed adapter each
// dispatch costs about 0.1 ms whatever its size, and these are tiny. Vectors and weight rows are
// padded with zeros to multiples of 4 values (`c4` and `r4`), so the weights load as aligned
// vec4s. Each invocation computes four channels (or hidden units) at a time and writes them as
// one vec4 of the scratch, which it owns whole (WGSL's memory model lets a write to one
// component of a vector in storage touch the whole vector). Four rows at a time also share each
// load of the vector they multiply: on a CPU-backed adapter, where every storage load is a loop
// over the SIMD lanes, the MLP took five loads per 4 multiply-adds one row at a time and takes
// five per 16 now.

struct Params {
    batch: u32,
    channels: u32,  // C
    squeeze: u32,   // R, the hidden width
    hw: u32,        // values per plane
    c4: u32,        // C rounded up to a multiple of 4
    r4: u32,        // R rounded up to a multiple of 4
    w2_at: u32,     // first vec4 of W2 in `w`
    x_vec4s: u32,   // vec4s holding the input value (reads past it are clamped)
}

override WG: u32 = 64u;
override POOL_MAX: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
// Binding 1, the input `x` [batch, C, hw], and 2, the weights `w` (W1 [R, c4], then W2
// [C, r4]), are read through load_x / load_w from storage buffers or, on CPU-backed adapters,
// textures (operands_storage.wgsl / operands_texture.wgsl, put after the prelude).
@group(0) @binding(3) var<storage, read> b: array<f32>;                   // b1 [R], then b2 [C]
@group(0) @binding(4) var<storage, read_write> scratch: array<vec4<f32>>; // [batch]: pooled [c4], hidden [r4] (POOL_MAX: mean [c4], max [c4], hidden [r4])
@group(0) @binding(5) var<storage, read_write> gate: array<f32>;          // [batch, C]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // Every invocation reaches both barriers: no early return (the dispatch has `batch`
    // workgroups exactly). Offsets below count vec4s.
    let n = wid.x;
    let pools = select(1u, 2u, POOL_MAX);
    let cq = p.c4 / 4u;
    let rq = p.r4 / 4u;
    let pooled = n * (pools * cq + rq);   // this image's scratch
    let maxed = pooled + cq;              // POOL_MAX
    let hidden = pooled + pools * cq;

    // The squeeze, four channels an invocation (the padding gets zeros).
    for (var g = lid; g < cq; g += WG) {
        var sum = vec4<f32>(0.0);
        var most = vec4<f32>(0.0);
        for (var k = 0u; k < 4u; k++) {
            let c = 4u * g + k;
            if (c < p.channels) {
                let s = (n * p.channels + c) * p.hw;
                sum[k] = plane_sum(s) / f32(p.hw);
                if (POOL_MAX) {
                    most[k] = plane_max(s);
                }
            }
        }
        scratch[pooled + g] = sum;
        if (POOL_MAX) {
            scratch[maxed + g] = most;
        }
    }
    storageBarrier();

    // The hidden layer, four units an invocation (the padding gets zeros).
    for (var g = lid; g < rq; g += WG) {
        let j = 4u * g + vec4<u32>(0u, 1u, 2u, 3u);
        let b1 = vec4<f32>(b[min(j.x, p.squeeze - 1u)], b[min(j.y, p.squeeze - 1u)],
                           b[min(j.z, p.squeeze - 1u)], b[min(j.w, p.squeeze - 1u)]);
        var h = max(b1 + dot_rows(0u, 4u * g, p.squeeze, cq, pooled), vec4<f32>(0.0));
        if (POOL_MAX) {
            h += max(b1 + dot_rows(0u, 4u * g, p.squeeze, cq, maxed), vec4<f32>(0.0));
        }
        scratch[hidden + g] = select(vec4<f32>(0.0), h, j < vec4<u32>(p.squeeze));
    }
    storageBarrier();

    // The gate, four channels an invocation.
    for (var g = lid; g < cq; g += WG) {
        let v = dot_rows(p.w2_at, 4u * g, p.channels, rq, hidden);
        for (var k = 0u; k < 4u; k++) {
            let c = 4u * g + k;
            if (c < p.channels) {
                let pre = f32(pools) * b[p.squeeze + c] + v[k];
                gate[n * p.channels + c] = 1.0 / (1.0 + exp(-pre));
            }
        }
    }
}

// The sum of the plane of `hw` values from value `s`, read as the vec4s that hold it, values
// outside masked.
fn plane_sum(s: u32) -> f32 {
    let q0 = s / 4u;
    let q1 = (s + p.hw + 3u) / 4u;
    var acc = vec4<f32>(0.0);
    for (var q = q0; q < q1; q++) {
        let at = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u);
        let inside = (at >= vec4<u32>(s)) & (at < vec4<u32>(s + p.hw));
        acc += select(vec4<f32>(0.0), load_x(min(q, p.x_vec4s - 1u)), inside);
    }
    return acc.x + acc.y + acc.z + acc.w;
}

// The largest value of the plane of `hw` values from value `s`.
fn plane_max(s: u32) -> f32 {
    var most = load_x(min(s / 4u, p.x_vec4s - 1u))[s % 4u];
    for (var i = s; i < s + p.hw; i++) {
        most = max(most, load_x(min(i / 4u, p.x_vec4s - 1u))[i % 4u]);
    }
    return most;
}

// The dot products of rows `row0 .. row0 + 3` (clamped to the last of `rows`) of the matrix of
// `len` vec4s a row from vec4 `at` of `w`, with the `len` vec4s of the scratch from `sq`: each
// scratch vec4 loaded once for the four rows.
fn dot_rows(at: u32, row0: u32, rows: u32, len: u32, sq: u32) -> vec4<f32> {
    let r = at + min(row0 + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(rows - 1u)) * len;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var m = 0u; m < len; m++) {
        let v = scratch[sq + m];
        a0 = fma(load_w(r.x + m), v, a0);
        a1 = fma(load_w(r.y + m), v, a1);
        a2 = fma(load_w(r.z + m), v, a2);
        a3 = fma(load_w(r.w + m), v, a3);
    }
    return vec4<f32>(a0.x + a0.y + a0.z + a0.w, a1.x + a1.y + a1.z + a1.w,
                     a2.x + a2.y + a2.z + a2.w, a3.x + a3.y + a3.z + a3.w);
}
