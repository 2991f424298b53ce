// Shared by the two halves of a backward step, `lstm_step_backward.wgsl`
// and `lstm_proj_backward.wgsl` (placed before each). Each declares `p`,
// `d_gates`, `w_hh`, `carries` and the workgroup array `dg_tile` that the
// functions here use. WG and RB are declared before this file by the kernel builder, from
// `STEP_UNITS` and `STEP_ROWS` in src/gpu/kernels/mod.rs.

// `carries`, the one buffer of what the backward steps carry and finish
// (`Carries` in src/gpu/lstm/bptt/mod.rs), f32, in regions:
//   dh carry [2, L·D, B, H_out] (by step parity) | dh_0 [L·D, B, H_out] |
//   dc carry [L·D, B, H] | dc_0 [L·D, B, H] | c_0 [L·D, B, H] (the forward's)
fn h_slab() -> u32 {
    return p.slots * p.batch * p.h_out;
}
fn c_slab() -> u32 {
    return p.slots * p.batch * p.hidden;
}
fn at_dh_carry(parity: u32, i: u32) -> u32 {
    return parity * h_slab() + i;
}
fn at_d_h0(i: u32) -> u32 {
    return 2u * h_slab() + i;
}
fn at_dc_carry(i: u32) -> u32 {
    return 3u * h_slab() + i;
}
fn at_d_c0(i: u32) -> u32 {
    return 3u * h_slab() + c_slab() + i;
}
fn at_c0(i: u32) -> u32 {
    return 3u * h_slab() + 2u * c_slab() + i;
}

// The time index handled at backward step s in direction d.
fn time_of(s: u32, d: u32) -> u32 {
    if (d == 0u) {
        return p.seq_len - 1u - s;
    }
    return s;
}

// (dG_{t_prev} · W_hh)[b0 + r, col] for r < RB: the sum over all 4H gate
// rows of dG[b, u, q] · W_hh[q·H + u, col], reading W_hh in its rows-by-unit
// layout [D·4H, H_out] (row 4u + q), where the lanes (one per column col)
// read consecutive elements of each row. Columns at or past H_out get 0. Called by every
// invocation of the workgroup in uniform control flow (it holds barriers).
fn recurrent_dh(lane: u32, d: u32, col: u32, b0: u32, t_prev: u32) -> array<f32, RB> {
    let hid = p.hidden;
    let width = p.h_out;
    let bsz = p.batch;
    var rec: array<f32, RB>;
    for (var r = 0u; r < RB; r++) {
        rec[r] = 0.0;
    }
    for (var u0 = 0u; u0 < hid; u0 += WG) {
        for (var r = 0u; r < RB; r++) {
            let b = b0 + r;
            let u = u0 + lane;
            var v = vec4<f32>(0.0);
            if (b < bsz && u < hid) {
                v = vec4<f32>(d_gates[((t_prev * bsz + b) * p.dirs + d) * hid + u]);
            }
            dg_tile[r * WG + lane] = v;
        }
        workgroupBarrier();
        if (col < width) {
            let un = min(WG, hid - u0);
            for (var uu = 0u; uu < un; uu++) {
                let row = (d * hid + u0 + uu) * 4u * width + col;
                let w = vec4<f32>(
                    f32(w_hh[row]),
                    f32(w_hh[row + width]),
                    f32(w_hh[row + 2u * width]),
                    f32(w_hh[row + 3u * width]),
                );
                for (var r = 0u; r < RB; r++) {
                    rec[r] += dot(w, dg_tile[r * WG + uu]);
                }
            }
        }
        workgroupBarrier();
    }
    return rec;
}
