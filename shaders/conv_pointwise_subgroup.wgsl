// A second entry point of conv_pointwise.wgsl, appended to it when the device has subgroups of
// exactly 8 invocations (lavapipe on 256-bit SIMD): the same GEMM, parameters, bindings, weight
// layout and epilogue, with the input loads shared across a subgroup.
//
// On a CPU-backed adapter each invocation is a SIMD lane and a storage load is a loop over the
// lanes, so loads, not FMAs, bound the GEMM. Here invocations are (image, tile, channel block)
// triples with the channel block innermost, so the 8 lanes of a subgroup work on at most two
// pixel tiles (the runner uses this entry point when there are at least 7 channel blocks). Per
// round of two input channels the subgroup needs the inputs of both tiles; each lane loads a
// share of them and `subgroupBroadcast` (a register shuffle) hands every vec4 to all lanes,
// which keep those of their own tile: about one input load per lane per round instead of 8-10.
// At a stride above 1 (a projection shortcut) the lanes gather their share of the strided
// pixels value by value. `invocations` is batch * tiles * oc_blocks rounded up to a multiple of
// 8; lanes past the end compute clamped copies and store nothing.

const MAX_XK: u32 = 24u;      // vec4s per round: 2 tiles x 2 channels x (TN / 4 + 1), 8 per load

@compute @workgroup_size(WG)
fn main_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(subgroup_invocation_id) lane: u32) {
    if (workgroup_index(wid, nwg) * WG >= p.invocations) {
        return;
    }
    let id_raw = linear_index(wid, nwg, lid, WG);
    let pairs = p.batch * p.tiles * p.oc_blocks;
    let id = min(id_raw, pairs - 1u);
    let ocb = id % p.oc_blocks;
    let nt = id / p.oc_blocks;              // n * tiles + tile: this lane's tile, globally
    // The subgroup's first tile; this lane's tile is it or the next one.
    let nt0 = min(id_raw - lane, pairs - 1u) / p.oc_blocks;
    let second = nt != nt0;

    let hw = p.out_h * p.out_w;
    let nv = TN / 4u;
    // Input vec4s of one channel's tile: one more when planes are not a multiple of 4 (stride 1
    // reads are realigned); strided tiles are gathered value by value into exact vec4s.
    let exact = ALIGNED || STRIDE > 1u;
    let nvl = select(nv + 1u, nv, exact);
    let in_hw = p.in_h * p.in_w;
    let per_tile = 2u * nvl;                // vec4s of one tile per round
    let last = p.x_vec4s - 1u;
    let oc0 = ocb * TM;

    // First value of channel c's tile, for each of the two tiles (clamped to the last tile).
    var base: array<u32, 2>;
    // unroll
    for (var s = 0u; s < 2u; s++) {
        let t = min(nt0 + s, p.batch * p.tiles - 1u);
        base[s] = (t / p.tiles) * p.in_c * hw + (t % p.tiles) * TN;
    }

    var acc: Acc;
    for (var c = 0u; c < p.in_c; c += 2u) {
        // This lane's share: vec4 k = lane + 8 r of the round's 2 * per_tile, i.e. vec4
        // k % nvl of channel c + (k / nvl) % 2 of tile k / per_tile; zero past the last
        // channel, scaled by the SE gate.
        var ld: array<vec4<f32>, 3>;
        // unroll
        for (var r = 0u; r < 3u; r++) {
            if (SG * r < 2u * per_tile) {
                let k = min(lane + SG * r, 2u * per_tile - 1u);
                let s = k / per_tile;
                let h = (k / nvl) % 2u;
                let v = k % nvl;
                let img = min(nt0 + s, p.batch * p.tiles - 1u) / p.tiles;
                var val: vec4<f32>;
                if (STRIDE == 1u) {
                    val = load_x(min((base[s] + (c + h) * hw) / 4u + v, last));
                } else {
                    // Output pixels 4 v.. of the tile, each read under its input pixel.
                    let t = min(nt0 + s, p.batch * p.tiles - 1u) % p.tiles;
                    let plane = (img * p.in_c + c + h) * in_hw;
                    // unroll
                    for (var e = 0u; e < 4u; e++) {
                        let px = min(t * TN + 4u * v + e, hw - 1u);
                        val[e] = x_at(plane + (px / p.out_w) * STRIDE * p.in_w + (px % p.out_w) * STRIDE);
                    }
                }
                if (HAS_GATE) {
                    val = gate_activate4(val * gate[img * p.in_c + min(c + h, p.in_c - 1u)]);
                }
                ld[r] = select(vec4<f32>(0.0), val, c + h < p.in_c);
            }
        }
        var xk: array<vec4<f32>, MAX_XK>;
        // unroll
        for (var r = 0u; r < 3u; r++) {
            let b = broadcast8(ld[r]);
            // unroll
            for (var l = 0u; l < SG; l++) {
                xk[SG * r + l] = b[l];
            }
        }

        // The two channels in turn. The loop reads `wrows`, whose length is its trip count, on
        // every path, so it is always unrolled and xk's indices below become constants (else xk
        // would move to memory: 2x slower on lavapipe).
        var wrows: array<u32, 2>;
        wrows[0] = min(c, p.in_c - 1u) * p.oc_pad4;
        wrows[1] = min(c + 1u, p.in_c - 1u) * p.oc_pad4;
        // unroll
        for (var h = 0u; h < 2u; h++) {
            var xv: Pixels;
            // unroll
            for (var j = 0u; j < MAX_NV; j++) {
                if (j < nv) {
                    // This lane's tile's vec4s: the first tile's at k, the second's at
                    // per_tile + k.
                    let k = h * nvl + j;
                    var u = xk[k];
                    var u1 = xk[k + 1u];
                    if (second) {
                        u = xk[per_tile + k];
                        u1 = xk[per_tile + k + 1u];
                    }
                    if (exact) {
                        xv[j] = u;
                    } else {
                        // Each tile starts `(its base) % 4` values into a vec4.
                        let b = select(base[0], base[1], second) + (c + h) * hw;
                        xv[j] = realign(u, u1, b % 4u);
                    }
                }
            }
            channel_fma(&acc, wrows[h], oc0, &xv);
        }
    }

    if (id_raw >= pairs) {
        return;
    }
    epilogue(&acc, nt / p.tiles, oc0, (nt % p.tiles) * TN, p.out_h * p.out_w);
}
