//! The GRU's elementwise step, one batch row at a time, in vectors of N
//! lanes: the part of a step that follows its recurrent GEMM (`gru.rs`).
//!
//! Each function is written once, generic over the lane count and the
//! instruction set, and compiled three times: for AVX-512 and AVX2+FMA
//! inside `#[target_feature]` wrappers (chosen at run time by [`Isa`]), and
//! portably. The activations are `vmath.rs`'s, so nothing here calls out of
//! the vector code.

#[cfg_attr(not(target_arch = "x86_64"), allow(unused_imports))]
use super::simd::{AVX2, AVX512, Isa, PORTABLE};
use super::vmath;

/// One row of a GRU step's inputs and outputs, each a slice of one batch
/// row (H = `h.len()`).
pub(super) struct ForwardRow<'a> {
    /// [3H]: W_ih x_t + b_ih, blocks r, z, n.
    pub gi: &'a [f32],
    /// [3H]: W_hh h_{t-1} + b_hh, blocks r, z, n.
    pub gh: &'a [f32],
    /// [H]: h_{t-1} in, h_t out.
    pub h: &'a mut [f32],
    /// [H]: this direction's columns of the layer output at (t, b).
    pub out: &'a mut [f32],
    /// [4H]: r, z, n and gh_n for the backward pass, or `None` in inference.
    pub saved: Option<&'a mut [f32]>,
}

/// r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r ⊙ gh_n),
/// h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}.
pub(super) fn forward_row(isa: Isa, row: ForwardRow<'_>) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` returns AVX-512 / AVX2 only where detected.
        Isa::Avx512 => unsafe { forward_avx512(row) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { forward_avx2(row) },
        _ => forward_lanes::<8, PORTABLE>(row),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn forward_avx512(row: ForwardRow<'_>) {
    forward_lanes::<16, AVX512>(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(row: ForwardRow<'_>) {
    forward_lanes::<8, AVX2>(row)
}

/// N lanes of `s` from `at` (fewer at the end of the row; the rest 0).
#[inline(always)]
fn get<const N: usize>(s: &[f32], at: usize, lanes: usize) -> [f32; N] {
    let mut v = [0.0; N];
    if lanes == N {
        // One fixed-size copy: a variable-length one would be a call.
        v.copy_from_slice(&s[at..at + N]);
    } else {
        v[..lanes].copy_from_slice(&s[at..at + lanes]);
    }
    v
}

/// The first `lanes` of `v` to `s` from `at`.
#[inline(always)]
fn put<const N: usize>(s: &mut [f32], at: usize, v: &[f32; N], lanes: usize) {
    if lanes == N {
        s[at..at + N].copy_from_slice(v);
    } else {
        s[at..at + lanes].copy_from_slice(&v[..lanes]);
    }
}

#[inline(always)]
fn forward_lanes<const N: usize, const ISA: u8>(row: ForwardRow<'_>) {
    let ForwardRow {
        gi,
        gh,
        h,
        out,
        mut saved,
    } = row;
    let hid = h.len();
    for j in (0..hid).step_by(N) {
        let lanes = N.min(hid - j);
        let (gi_r, gh_r) = (get::<N>(gi, j, lanes), get::<N>(gh, j, lanes));
        let (gi_z, gh_z) = (get::<N>(gi, hid + j, lanes), get::<N>(gh, hid + j, lanes));
        let (gi_n, gh_n) = (
            get::<N>(gi, 2 * hid + j, lanes),
            get::<N>(gh, 2 * hid + j, lanes),
        );
        let h_prev = get::<N>(h, j, lanes);
        // [r, z], through one sigmoid of two vectors.
        let mut rz = [[0.0; N]; 2];
        for l in 0..N {
            rz[0][l] = gi_r[l] + gh_r[l];
            rz[1][l] = gi_z[l] + gh_z[l];
        }
        vmath::sigmoid::<N, 2, ISA>(&mut rz);
        let [r, z] = rz;
        let mut n = [[0.0; N]; 1];
        for l in 0..N {
            n[0][l] = gi_n[l] + r[l] * gh_n[l];
        }
        vmath::tanh::<N, 1, ISA>(&mut n);
        let [n] = n;
        let mut h_new = [0.0; N];
        for l in 0..N {
            h_new[l] = (1.0 - z[l]) * n[l] + z[l] * h_prev[l];
        }
        put(h, j, &h_new, lanes);
        put(out, j, &h_new, lanes);
        if let Some(s) = saved.as_deref_mut() {
            put(s, j, &r, lanes);
            put(s, hid + j, &z, lanes);
            put(s, 2 * hid + j, &n, lanes);
            put(s, 3 * hid + j, &gh_n, lanes);
        }
    }
}

/// One row of a GRU step's backward pass (H = `h_prev.len()`).
pub(super) struct BackwardRow<'a> {
    /// [4H]: r, z, n and gh_n saved by the forward pass.
    pub saved: &'a [f32],
    /// [H]: d(loss)/d(output) at (t, b), this direction's columns.
    pub dy: &'a [f32],
    /// [H]: the gradient carried from step t+1 into h_t.
    pub dh_carry: &'a [f32],
    /// [H]: h_{t-1}.
    pub h_prev: &'a [f32],
    /// [3H]: d(loss)/d(gi), blocks r, z, n.
    pub d_gi: &'a mut [f32],
    /// [3H]: d(loss)/d(gh), blocks r, z, n.
    pub d_gh: &'a mut [f32],
    /// [H]: dh ⊙ z, the part of dh_{t-1} that skips the gates.
    pub dh_direct: &'a mut [f32],
}

/// dh = dy + dh_carry; dn = dh ⊙ (1 − z), dz = dh ⊙ (h_{t-1} − n);
/// dn_pre = dn ⊙ (1 − n²), dr_pre = dn_pre ⊙ gh_n ⊙ r(1 − r),
/// dz_pre = dz ⊙ z(1 − z); dgi = [dr_pre, dz_pre, dn_pre],
/// dgh = [dr_pre, dz_pre, dn_pre ⊙ r], dh_direct = dh ⊙ z.
pub(super) fn backward_row(isa: Isa, row: BackwardRow<'_>) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` returns AVX-512 / AVX2 only where detected.
        Isa::Avx512 => unsafe { backward_avx512(row) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { backward_avx2(row) },
        _ => backward_lanes(row),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn backward_avx512(row: BackwardRow<'_>) {
    backward_lanes(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2(row: BackwardRow<'_>) {
    backward_lanes(row)
}

/// No transcendental functions: a loop over equal-length slices, which the
/// compiler vectorises for the enclosing target features.
#[inline(always)]
fn backward_lanes(row: BackwardRow<'_>) {
    let hid = row.h_prev.len();
    let (s, d_gi, d_gh) = (row.saved, row.d_gi, row.d_gh);
    let (r, z, n, gh_n) = (
        &s[..hid],
        &s[hid..2 * hid],
        &s[2 * hid..3 * hid],
        &s[3 * hid..4 * hid],
    );
    let (dy, dh_carry, h_prev) = (&row.dy[..hid], &row.dh_carry[..hid], row.h_prev);
    let (gi_r, rest) = d_gi.split_at_mut(hid);
    let (gi_z, gi_n) = rest.split_at_mut(hid);
    let (gh_r, rest) = d_gh.split_at_mut(hid);
    let (gh_z, gh_n_out) = rest.split_at_mut(hid);
    let (gi_n, gh_n_out, dh_direct) = (&mut gi_n[..hid], &mut gh_n_out[..hid], row.dh_direct);
    let dh_direct = &mut dh_direct[..hid];
    for j in 0..hid {
        let dh = dy[j] + dh_carry[j];
        let dn = dh * (1.0 - z[j]);
        let dz = dh * (h_prev[j] - n[j]);
        let dn_pre = dn * (1.0 - n[j] * n[j]);
        let dr_pre = dn_pre * gh_n[j] * r[j] * (1.0 - r[j]);
        let dz_pre = dz * z[j] * (1.0 - z[j]);
        (gi_r[j], gi_z[j], gi_n[j]) = (dr_pre, dz_pre, dn_pre);
        (gh_r[j], gh_z[j], gh_n_out[j]) = (dr_pre, dz_pre, dn_pre * r[j]);
        dh_direct[j] = dh * z[j];
    }
}
