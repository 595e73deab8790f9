// A second entry point of conv.wgsl, appended to it when the device has subgroups of exactly 8
// invocations (lavapipe on 256-bit SIMD): the same direct convolution, parameters, bindings,
// weight layout and epilogue, with the weight loads shared across a subgroup.
//
// The grouped 3x3 convolutions are bound by their weight loads on a CPU-backed adapter (a
// storage load is a loop over the SIMD lanes): per input channel every invocation loads all its
// KH x KW x OCN weights, the same for all invocations of a (group, channel block). Here each
// (image, group, channel block) gets its tiles rounded up to a multiple of 8, so that a subgroup
// never mixes two of them; per input channel each lane loads 1/8 of the weights and
// `subgroupBroadcast` (a register shuffle) hands them to all. For kernels of at most 3x3 whose
// weights per input channel fit MAX_WK vec4s and whose row span holds every column (KC == KW;
// the runner checks).

const MAX_WK: u32 = 24u;     // vec4s of weights per input channel: KH * KW * ceil(OCN / 4)
const MAX_K: u32 = 3u;       // KH, KW <= MAX_K

@compute @workgroup_size(WG)
fn main_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(subgroup_invocation_id) lane: u32) {
    // id = (((n * part_groups + g_local) * oc_blocks + ocb) * tiles_pad + tile, tiles
    // (oy * tiles_x + pxb) innermost and padded to a multiple of 8 per combination.
    if (workgroup_index(wid, nwg) * WG >= p.invocations) {
        return;
    }
    let id_raw = linear_index(wid, nwg, lid, WG);
    let id = min(id_raw, p.invocations - 1u);
    let tiles = p.out_h * p.tiles_x;
    let tile_raw = id % p.tiles_pad;
    let tile = min(tile_raw, tiles - 1u);
    let pxb = tile % p.tiles_x;
    let oy = tile / p.tiles_x;
    var r = id / p.tiles_pad;
    let ocb = r % p.oc_blocks; r = r / p.oc_blocks;
    let g = p.g_begin + r % p.part_groups;
    let n = r / p.part_groups;

    let tl = tile_at(g, ocb, pxb);
    let cin_g = tl.cin_g;
    let oc0 = tl.oc0;
    let ox0 = tl.ox0;
    let ix0 = tl.ix0;
    let w_group = tl.w_group;
    let vb = tl.vb;
    let ocn4 = (OCN + 3u) / 4u;
    let nw = KH * KW * ocn4;

    // Loops that index these arrays (of length their trip count) are always unrolled, so the
    // indices into wk below become constants.
    var kys: array<u32, MAX_K>;
    var kxs: array<u32, MAX_K>;
    // unroll
    for (var k = 0u; k < MAX_K; k++) {
        kys[k] = k;
        kxs[k] = k;
    }

    var acc: Acc;
    for (var c = 0u; c < cin_g; c++) {
        // This lane's share of the channel's weights: vec4 k = lane + 8 s (tap k / ocn4, vec4
        // k % ocn4 of the block's channels).
        let taps = (w_group + c) * KH * KW;
        var ld: array<vec4<f32>, 3>;
        // unroll
        for (var s = 0u; s < 3u; s++) {
            if (SG * s < nw) {
                let k = min(lane + SG * s, nw - 1u);
                let at = (taps + k / ocn4) * p.oc_pad4 + min(vb + k % ocn4, p.oc_pad4 - 1u);
                ld[s] = load_w(at);
            }
        }
        var wk: array<vec4<f32>, MAX_WK>;
        // unroll
        for (var s = 0u; s < 3u; s++) {
            let b = broadcast8(ld[s]);
            // unroll
            for (var l = 0u; l < SG; l++) {
                wk[SG * s + l] = b[l];
            }
        }

        let ic = g * cin_g + c;
        var scale = 1.0;
        if (HAS_GATE) {
            scale = gate[n * p.in_c + ic];
        }
        let plane = (n * p.in_c + ic) * p.in_h * p.in_w;
        // unroll
        for (var j = 0u; j < MAX_K; j++) {
            let ky = kys[j];
            if (ky < KH) {
                var xs = row_span(plane, i32(oy * p.stride_y + ky * p.dil_y) - i32(p.pad_y), ix0, scale);
                // unroll
                for (var i = 0u; i < MAX_K; i++) {
                    let kx = kxs[i];
                    if (kx < KW) {
                        var xv = tap_inputs(&xs, kx);
                        // unroll
                        for (var t = 0u; t < MAX_OC / 4u; t++) {
                            if (t < ocn4) {
                                tap_fma(&acc, wk[(ky * KW + kx) * ocn4 + t], t, &xv);
                            }
                        }
                    }
                }
            }
        }
    }

    if (id_raw >= p.invocations || tile_raw >= tiles) {
        return;
    }
    epilogue(&acc, n, oc0, tl.oc_last, oy, ox0);
}
