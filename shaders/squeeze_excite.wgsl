// Squeeze-and-excitation's gate in one dispatch, one workgroup per image:
//
//     gate[n, c] = sigmoid(b2 + W2 relu(b1 + W1 mean(x[n, c, :, :])))
//
// in three phases separated by storage barriers: the mean of every plane (the squeeze), the
// hidden layer, the gate. With POOL_MAX (CBAM's channel attention) the max of every plane goes
// through the same MLP and the two are summed before the sigmoid:
//
//     gate[n, c] = sigmoid(2 b2 + W2 (relu(b1 + W1 mean) + relu(b1 + W1 max))) The gate is not applied here: the next convolution scales its input
// reads by it (HAS_GATE in conv.wgsl and conv_pointwise.wgsl).
//
// Three dispatches (pool, fc1, fc2) did the same work before; on a CPU-backed adapter each
// dispatch costs about 0.1 ms whatever its size, and these are tiny. Vectors and weight rows are
// padded with zeros to multiples of 4 values (`c4` and `r4`), so the weights load as aligned
// vec4s. The scratch is scalar storage: each invocation writes whole f32 values of its own
// (WGSL's memory model lets a write to one component of a vector in storage touch the whole
// vector, a race between invocations writing neighbouring components).

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
@group(0) @binding(1) var<storage, read> x: array<vec4<store_t>>;         // [batch, C, hw]
@group(0) @binding(2) var<storage, read> w: array<vec4<store_t>>;         // W1 [R, c4], then W2 [C, r4]
@group(0) @binding(3) var<storage, read> b: array<f32>;                   // b1 [R], then b2 [C]
@group(0) @binding(4) var<storage, read_write> scratch: array<f32>;       // [batch]: pooled [c4], hidden [r4] (POOL_MAX: mean [c4], max [c4], hidden [r4])
@group(0) @binding(5) var<storage, read_write> gate: array<f32>;          // [batch, C]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // Every invocation reaches both barriers: no early return (the dispatch has `batch`
    // workgroups exactly).
    let n = wid.x;
    let pooled = n * (select(1u, 2u, POOL_MAX) * p.c4 + p.r4);   // this image's scratch
    let maxed = pooled + p.c4;                                     // POOL_MAX
    let hidden = pooled + select(1u, 2u, POOL_MAX) * p.c4;

    // The squeeze: a plane [s, s + hw) summed as the vec4s that hold it, values outside masked.
    for (var c = lid; c < p.c4; c += WG) {
        var sum = 0.0;
        var most = 0.0;
        if (c < p.channels) {
            let s = (n * p.channels + c) * p.hw;
            let q0 = s / 4u;
            let q1 = (s + p.hw + 3u) / 4u;
            var acc = vec4<f32>(0.0);
            for (var q = q0; q < q1; q++) {
                let at = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u);
                let inside = (at >= vec4<u32>(s)) & (at < vec4<u32>(s + p.hw));
                acc += select(vec4<f32>(0.0), vec4<f32>(x[min(q, p.x_vec4s - 1u)]), inside);
            }
            sum = (acc.x + acc.y + acc.z + acc.w) / f32(p.hw);
            if (POOL_MAX) {
                most = f32(x[min(s / 4u, p.x_vec4s - 1u)][s % 4u]);
                for (var i = s; i < s + p.hw; i++) {
                    most = max(most, f32(x[min(i / 4u, p.x_vec4s - 1u)][i % 4u]));
                }
            }
        }
        scratch[pooled + c] = sum;  // the padding gets zeros
        if (POOL_MAX) {
            scratch[maxed + c] = most;
        }
    }
    storageBarrier();

    for (var j = lid; j < p.r4; j += WG) {
        var h = 0.0;
        if (j < p.squeeze) {
            h = max(b[j] + dot_row(j * p.c4 / 4u, pooled, p.c4 / 4u), 0.0);
            if (POOL_MAX) {
                h += max(b[j] + dot_row(j * p.c4 / 4u, maxed, p.c4 / 4u), 0.0);
            }
        }
        scratch[hidden + j] = h;
    }
    storageBarrier();

    for (var c = lid; c < p.channels; c += WG) {
        let v = select(1.0, 2.0, POOL_MAX) * b[p.squeeze + c]
            + dot_row(p.w2_at + c * p.r4 / 4u, hidden, p.r4 / 4u);
        gate[n * p.channels + c] = 1.0 / (1.0 + exp(-v));
    }
}

// The dot product of `len` vec4s of `w` from `wq` with `4 len` values of `scratch` from `sq`.
fn dot_row(wq: u32, sq: u32, len: u32) -> f32 {
    var acc = vec4<f32>(0.0);
    for (var m = 0u; m < len; m++) {
        let s = sq + 4u * m;
        let v = vec4<f32>(scratch[s], scratch[s + 1u], scratch[s + 2u], scratch[s + 3u]);
        acc = fma(vec4<f32>(w[wq + m]), v, acc);
    }
    return acc.x + acc.y + acc.z + acc.w;
}
