// A second entry point of conv_pointwise.wgsl, appended to it when the device has subgroups of
// exactly 8 invocations (lavapipe on 256-bit SIMD): the same GEMM, parameters, bindings, weight
// layout and epilogue, with the input loads shared across a subgroup.
//
// On a CPU-backed adapter each invocation is a SIMD lane and a storage load is a loop over the
// lanes, so loads, not FMAs, bound the GEMM. Here the 8 lanes of a subgroup work on the same
// tile of pixels for 8 different blocks of TM output channels: each lane loads 1/8 of the tile's
// inputs for two input channels and `subgroupBroadcast` hands them to all (a register shuffle),
// instead of every lane loading all of them. Stride 1 only (strided GEMMs use `main`).
//
// Subgroup s = (image, tile, chunk of 8 channel blocks), chunks innermost; lane l takes channel
// block chunk * 8 + l. Lanes and subgroups past the end compute clamped copies and store nothing.
// `invocations` is 8 x the number of subgroups.

const SG: u32 = 8u;           // the subgroup size this entry point is written for
const MAX_XK: u32 = 10u;      // vec4s of input per round of 2 channels: 2 * (TN / 4 + 1)

@compute @workgroup_size(WG)
fn main_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(subgroup_invocation_id) lane: u32) {
    let id_raw = linear_index(wid, nwg, lid, WG);
    let chunks = (p.oc_blocks + SG - 1u) / SG;
    let sub = min(id_raw / SG, p.invocations / SG - 1u);
    let chunk = sub % chunks;
    let tile = (sub / chunks) % p.tiles;
    let n = sub / (chunks * p.tiles);
    let ocb_raw = chunk * SG + lane;
    let ocb = min(ocb_raw, p.oc_blocks - 1u);

    let hw = p.out_h * p.out_w;
    let p0 = tile * TN;
    let oc0 = ocb * TM;
    let last = p.x_vec4s - 1u;
    let nv = TN / 4u;
    // vec4s of one channel's tile: one more when planes are not a multiple of 4 (realigned).
    let nvl = select(nv + 1u, nv, ALIGNED);

    var acc: array<array<vec4<f32>, MAX_NV>, MAX_TM>;
    var plane = n * p.in_c * hw;
    for (var c = 0u; c < p.in_c; c += 2u) {
        // This lane's share: vec4 k = lane (and k = lane + 8) of the round's 2 * nvl, i.e. vec4
        // k % nvl of channel c + k / nvl; zero past the last channel, scaled by the SE gate.
        var ld: array<vec4<f32>, 2>;
        for (var r = 0u; r < 2u; r++) {
          if (SG * r < 2u * nvl) {
            let k = lane + SG * r;
            let h = min(k / nvl, 1u);
            let v = min(k - h * nvl, nvl - 1u);
            let q = (plane + h * hw) / 4u + p0 / 4u + v;
            var val = vec4<f32>(x[min(q, last)]);
            if (HAS_GATE) {
                val *= gate[n * p.in_c + min(c + h, p.in_c - 1u)];
            }
            ld[r] = select(vec4<f32>(0.0), val, c + h < p.in_c);
          }
        }
        var xk: array<vec4<f32>, MAX_XK>;
        xk[0] = subgroupBroadcast(ld[0], 0u);
        xk[1] = subgroupBroadcast(ld[0], 1u);
        xk[2] = subgroupBroadcast(ld[0], 2u);
        xk[3] = subgroupBroadcast(ld[0], 3u);
        xk[4] = subgroupBroadcast(ld[0], 4u);
        xk[5] = subgroupBroadcast(ld[0], 5u);
        xk[6] = subgroupBroadcast(ld[0], 6u);
        xk[7] = subgroupBroadcast(ld[0], 7u);
        xk[8] = subgroupBroadcast(ld[1], 0u);
        xk[9] = subgroupBroadcast(ld[1], 1u);

        // The two channels in turn. The loop reads `wrows`, whose length is its trip count, on
        // every path, so it is always unrolled and xk's indices below become constants (else xk
        // would move to memory: 2x slower on lavapipe).
        var wrows: array<u32, 2>;
        wrows[0] = min(c, p.in_c - 1u) * p.oc_pad4;
        wrows[1] = min(c + 1u, p.in_c - 1u) * p.oc_pad4;
        for (var h = 0u; h < 2u; h++) {
            var xv: array<vec4<f32>, MAX_NV>;
            for (var j = 0u; j < MAX_NV; j++) {
                if (j < nv) {
                    let k = h * nvl + j;
                    if (ALIGNED) {
                        xv[j] = xk[k];
                    } else {
                        xv[j] = realign(xk[k], xk[k + 1u], (plane + h * hw) % 4u);
                    }
                }
            }
            let wrow = wrows[h];
            for (var t = 0u; t < MAX_TM / 4u; t++) {
                if (t < TM / 4u) {
                    let w4 = vec4<f32>(w[wrow + min(oc0 / 4u + t, p.oc_pad4 - 1u)]);
                    for (var i = 0u; i < 4u; i++) {
                        let wv = vec4<f32>(w4[i]);
                        for (var j = 0u; j < MAX_NV; j++) {
                            if (j < nv) {
                                acc[4u * t + i][j] = fma(wv, xv[j], acc[4u * t + i][j]);
                            }
                        }
                    }
                }
            }
        }
        plane += 2u * hw;
    }

    if (id_raw >= p.invocations || ocb_raw >= p.oc_blocks) {
        return;
    }
    epilogue(&acc, n, oc0, p0);
}
