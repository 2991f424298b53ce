//! The f32 fast path of the CPU backward recurrence, the counterpart of
//! `fused.rs`: the loop over steps in `backward.rs`, one fused kernel per
//! step.
//!
//! Walking the steps in reverse visiting order, phase s does, for a panel of
//! `4·U` hidden units and every batch row:
//! 1. `dh_carry = dG_{prev} · W_hh` for the panel's units, where `dG_{prev}`
//!    is the gate gradient of the step handled in phase s-1 (rows that were
//!    padding at that step keep their carry);
//! 2. the cell's backward at step t for those units, writing dG_t and the new
//!    `dc_carry`.
//!
//! The product reads whole rows of dG_{prev}, so phases are separated as in
//! the forward pass when threads split the panels; with groups of rows
//! (when there are fewer panels than threads), a thread reads only its own
//! rows. Both parts of a phase touch only the panel's units. A last phase
//! does part 1 alone, giving dh_0.
//!
//! `W_hh` is packed once into panels `[4H][4·U]` (row r of `W_hh`, the
//! panel's columns), which is exactly the layout of the forward kernel's
//! product with K = 4H, so the same register-tiled product serves both.

use super::fused::Recurrence;
use super::simd::{Isa, load, madd, product_any, row_tiles, store};
use super::threads::in_steps;
use super::{scratch, vmath};
use std::ops::Range;

/// `W_hh` ([4H, H]) packed for the backward product.
struct PackedHhT {
    isa: Isa,
    data: Vec<f32>,
}

impl Drop for PackedHhT {
    fn drop(&mut self) {
        scratch::recycle(std::mem::take(&mut self.data));
    }
}

impl PackedHhT {
    fn new(weight_hh: &[f32], hidden: usize, isa: Isa) -> PackedHhT {
        let width = 4 * isa.units();
        let panels = hidden.div_ceil(width);
        let mut data = scratch::zeroed(panels * 4 * hidden * width);
        for r in 0..4 * hidden {
            let row = &weight_hh[r * hidden..(r + 1) * hidden];
            for (p, cols) in row.chunks(width).enumerate() {
                let at = (p * 4 * hidden + r) * width;
                data[at..at + cols.len()].copy_from_slice(cols);
            }
        }
        PackedHhT { isa, data }
    }
}

/// Pointers shared by the threads of [`Recurrence::run_backward`].
#[derive(Clone, Copy)]
struct Io {
    hidden: usize,
    batch: usize,
    lengths: *const usize,
    /// [T, B, 4H] activated gates, [T, B, H] cell states, [B, H] c_0.
    gates: *const f32,
    c_all: *const f32,
    c_0: *const f32,
    /// [T, B, stride] upstream gradient.
    dy: *const f32,
    out_offset: usize,
    out_stride: usize,
    /// [T, B, 4H] output.
    d_gates: *mut f32,
    /// [B, H] carries, in place.
    dh: *mut f32,
    dc: *mut f32,
    /// [B, H] recurrent dropout mask m_h, or null: h_{t-1} entered the
    /// product as h_{t-1} ⊙ m_h, so its carry is (dG·W_hh) ⊙ m_h.
    h_mask: *const f32,
    /// The cell activation is relu (else tanh).
    relu: bool,
}

// SAFETY: threads write disjoint units of one phase (see `in_phases`), or
// disjoint rows.
unsafe impl Send for Io {}
unsafe impl Sync for Io {}

/// What phase s does: the product over the gate gradients of step `from`,
/// then the cell's backward at step `at`.
#[derive(Clone, Copy)]
struct Phase {
    from: Option<usize>,
    at: Option<usize>,
    /// The step before `at` in the forward visiting order (for c_{t-1}).
    before: Option<usize>,
}

impl Recurrence<'_> {
    /// Runs every step in reverse. `gates`, `c_all`: what the forward pass
    /// saved; `c_0`: its initial cell state; `dy`: d(loss)/d(output).
    /// `dh`, `dc` ([B, H]) hold d/d(h_n), d/d(c_n) on entry and d/d(h_0),
    /// d/d(c_0) on return. Writes `d_gates` [T, B, 4H] at valid rows.
    /// `h_mask`: the recurrent dropout mask [B, H] of the forward pass.
    #[allow(clippy::too_many_arguments)]
    pub fn run_backward(
        &self,
        gates: &[f32],
        c_all: &[f32],
        c_0: &[f32],
        h_mask: Option<&[f32]>,
        dy: &[f32],
        d_gates: &mut [f32],
        dh: &mut [f32],
        dc: &mut [f32],
    ) {
        let (hid, bsz, steps) = (self.hidden, self.batch, self.seq_len);
        let tb = steps * bsz;
        assert_eq!(self.weight_hh.len(), 4 * hid * hid, "W_hh is [4H, H]");
        assert_eq!(self.lengths.len(), bsz, "one length per row");
        assert!(gates.len() == tb * 4 * hid && d_gates.len() == tb * 4 * hid);
        assert!(c_all.len() == tb * hid && c_0.len() == bsz * hid);
        assert!(dh.len() == bsz * hid && dc.len() == bsz * hid);
        assert!(self.out_offset + hid <= self.out_stride && dy.len() >= tb * self.out_stride);
        assert!(
            h_mask.is_none_or(|m| m.len() == bsz * hid),
            "the mask is [B, H]"
        );
        if steps == 0 || bsz == 0 || hid == 0 {
            return;
        }
        let packed = PackedHhT::new(self.weight_hh, hid, self.isa);
        let width = 4 * self.isa.units();
        let panels = hid.div_ceil(width);
        let io = Io {
            hidden: hid,
            batch: bsz,
            lengths: self.lengths.as_ptr(),
            gates: gates.as_ptr(),
            c_all: c_all.as_ptr(),
            c_0: c_0.as_ptr(),
            dy: dy.as_ptr(),
            out_offset: self.out_offset,
            out_stride: self.out_stride,
            d_gates: d_gates.as_mut_ptr(),
            dh: dh.as_mut_ptr(),
            dc: dc.as_mut_ptr(),
            h_mask: h_mask.map_or(std::ptr::null(), <[f32]>::as_ptr),
            relu: self.relu,
        };
        // Visiting order of the forward pass; backward walks it in reverse.
        let visit = |s: usize| if self.reverse { steps - 1 - s } else { s };
        let phase = |s: usize| Phase {
            from: (s > 0).then(|| visit(steps - s)),
            at: (s < steps).then(|| visit(steps - 1 - s)),
            before: (s + 1 < steps).then(|| visit(steps - 2 - s)),
        };
        let step_fmas = bsz * 4 * hid * hid;
        in_steps(steps + 1, panels, bsz, step_fmas, |s, rows, panels| {
            for p in panels {
                // SAFETY: the slices outlive the call and their sizes were
                // checked above; a call writes only its rows of its panels'
                // units.
                unsafe { run(&packed, &io, phase(s), p, rows.clone()) };
            }
        });
    }
}

/// Panel p of one phase, for batch rows `rows`, with the packed weights'
/// kernel.
///
/// # Safety
/// As [`Recurrence::run_backward`] sets up.
unsafe fn run(w: &PackedHhT, io: &Io, ph: Phase, p: usize, rows: Range<usize>) {
    let len = 4 * io.hidden * 4 * w.isa.units();
    let wp = &w.data[p * len..(p + 1) * len];
    match w.isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the packing for AVX-512 / AVX2 is only built where detected.
        Isa::Avx512 => unsafe { run_avx512(wp, io, ph, p, rows) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { run_avx2(wp, io, ph, p, rows) },
        _ => unsafe { panel::<8, 2, { super::simd::PORTABLE }>(wp, io, ph, p, rows) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512(wp: &[f32], io: &Io, ph: Phase, p: usize, rows: Range<usize>) {
    unsafe { panel::<16, 6, { super::simd::AVX512 }>(wp, io, ph, p, rows) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(wp: &[f32], io: &Io, ph: Phase, p: usize, rows: Range<usize>) {
    unsafe { panel::<8, 3, { super::simd::AVX2 }>(wp, io, ph, p, rows) }
}

#[inline(always)]
unsafe fn panel<const U: usize, const MR: usize, const ISA: u8>(
    wp: &[f32],
    io: &Io,
    ph: Phase,
    p: usize,
    rows: Range<usize>,
) {
    // SAFETY: every tile lies within `rows`, inside 0..B.
    unsafe { row_tiles!(rows.len(), MR, tile::<U, _, ISA>(wp, io, ph, p, rows.start)) };
}

/// Rows first+b0 .. first+b0+R, units p·4U .. p·4U+4U (group q of U units
/// at acc[q][r]).
#[inline(always)]
unsafe fn tile<const U: usize, const R: usize, const ISA: u8>(
    wp: &[f32],
    io: &Io,
    ph: Phase,
    p: usize,
    first: usize,
    b0: usize,
) {
    let (h, bsz, b0) = (io.hidden, io.batch, first + b0);
    let valid = |t: usize, b: usize| unsafe { *io.lengths.add(b) } > t;
    // SAFETY (the whole body): rows < B, units < H, steps < T index inside
    // the extents `Recurrence::run_backward` checked.
    unsafe {
        if let Some(from) = ph.from {
            let rows: [&[f32]; R] = std::array::from_fn(|r| {
                std::slice::from_raw_parts(io.d_gates.add((from * bsz + b0 + r) * 4 * h), 4 * h)
            });
            let mut acc = [[[0f32; U]; R]; 4];
            product_any::<U, R, ISA>(&mut acc, wp, rows);
            for r in 0..R {
                let b = b0 + r;
                if !valid(from, b) {
                    continue; // padding at that step: the carry passes through
                }
                for (q, acc) in acc.iter().enumerate() {
                    let base = p * 4 * U + q * U;
                    if base < h {
                        let lanes = U.min(h - base);
                        let mut d = acc[r];
                        if !io.h_mask.is_null() {
                            let m = load::<U>(io.h_mask.add(b * h + base), lanes);
                            for l in 0..U {
                                d[l] *= m[l];
                            }
                        }
                        store(io.dh.add(b * h + base), &d, lanes);
                    }
                }
            }
        }
        let Some(t) = ph.at else { return };
        for q in 0..4 {
            let base = p * 4 * U + q * U;
            if base >= h {
                break;
            }
            let lanes = U.min(h - base);
            let at = |src: *const f32| load::<U>(src.add(base), lanes);
            // tanh(c_t) of all R rows at once (R independent chains; a padded
            // row's value is not used).
            let mut tanh_c = [[0f32; U]; R];
            for (r, v) in tanh_c.iter_mut().enumerate() {
                *v = at(io.c_all.add((t * bsz + b0 + r) * h));
            }
            if io.relu {
                tanh_c.iter_mut().flatten().for_each(|x| *x = x.max(0.0));
            } else {
                vmath::tanh::<U, R, ISA>(&mut tanh_c);
            }
            for (r, tanh_c) in tanh_c.iter().enumerate() {
                let b = b0 + r;
                if !valid(t, b) {
                    continue; // padding: gradients pass through to earlier steps
                }
                let g_row = io.gates.add((t * bsz + b) * 4 * h);
                let dg_row = io.d_gates.add((t * bsz + b) * 4 * h);
                let c_prev = match ph.before {
                    Some(before) => io.c_all.add((before * bsz + b) * h),
                    None => io.c_0.add(b * h),
                };
                let dy_row = io.dy.add((t * bsz + b) * io.out_stride + io.out_offset);
                let (i, f) = (at(g_row), at(g_row.add(h)));
                let (g, o) = (at(g_row.add(2 * h)), at(g_row.add(3 * h)));
                let (c_p, dy) = (at(c_prev), at(dy_row));
                let (dh_c, dc_c) = (at(io.dh.add(b * h)), at(io.dc.add(b * h)));
                let (mut di, mut df, mut dg, mut d_o) =
                    ([0f32; U], [0f32; U], [0f32; U], [0f32; U]);
                let mut dc_new = [0f32; U];
                // act'(c) and act'(g) from act's outputs: 1 - y² for tanh,
                // [y > 0] for relu.
                let (mut dact_c, mut dact_g) = ([0f32; U], [0f32; U]);
                for l in 0..U {
                    (dact_c[l], dact_g[l]) = if io.relu {
                        ((tanh_c[l] > 0.0) as u32 as f32, (g[l] > 0.0) as u32 as f32)
                    } else {
                        (1.0 - tanh_c[l] * tanh_c[l], 1.0 - g[l] * g[l])
                    };
                }
                for l in 0..U {
                    let dh = dy[l] + dh_c[l];
                    let dc = madd::<ISA>(dh * o[l], dact_c[l], dc_c[l]);
                    di[l] = dc * g[l] * i[l] * (1.0 - i[l]);
                    df[l] = dc * c_p[l] * f[l] * (1.0 - f[l]);
                    dg[l] = dc * i[l] * dact_g[l];
                    d_o[l] = dh * tanh_c[l] * o[l] * (1.0 - o[l]);
                    dc_new[l] = dc * f[l];
                }
                for (k, d) in [di, df, dg, d_o].iter().enumerate() {
                    store(dg_row.add(k * h + base), d, lanes);
                }
                store(io.dc.add(b * h + base), &dc_new, lanes);
            }
        }
    }
}
