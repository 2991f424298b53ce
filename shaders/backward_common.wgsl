// Shared by the two halves of a backward step, `lstm_step_backward.wgsl`
// and `lstm_proj_backward.wgsl` (placed before each), which each declare
// the uniform `p` the functions here read.

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
