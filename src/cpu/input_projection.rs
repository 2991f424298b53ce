//! The f32 input projection of the forward pass, `G = X · W_ihᵀ + b`, with
//! the register tiles of the fused step kernel (`fused.rs`).
//!
//! `W_ih` is packed into the step kernel's gate panels, and each tile of up
//! to `MR` rows × one panel keeps its `4·MR` gate vectors in registers for
//! the whole product over the input, starting from the bias. Work items are
//! (block of rows, panel) pairs, taken block by block so that a thread's
//! rows stay in its cache while the panels pass.

use super::fused::PackedHh;
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_imports))]
use super::simd::{AVX2, AVX512, Isa, PORTABLE, load, product_any, row_tiles, store};
use super::threads::{helpers, in_phases};

/// Rows per block: a block's inputs (≤ 96·I floats) stay in L2 while every
/// panel passes over them.
const BLOCK_ROWS: usize = 96;

/// What one tile reads and writes.
#[derive(Clone, Copy)]
struct ProjIo {
    hidden: usize,
    input: usize,
    /// [4H]: b_ih + b_hh, or zeros.
    bias: *const f32,
    /// The block's first row of X [rows, I] and of G [rows, 4H].
    x: *const f32,
    gates: *mut f32,
}

// SAFETY: items write disjoint (rows, units) of G and only read the rest.
unsafe impl Send for ProjIo {}
unsafe impl Sync for ProjIo {}

/// `gates` [rows, 4H] = `x` [rows, I] · `weight_ih`ᵀ ([4H, I]) + `bias` ([4H]).
pub(crate) fn project(
    x: &[f32],
    weight_ih: &[f32],
    bias: &[f32],
    hidden: usize,
    input: usize,
    gates: &mut [f32],
    isa: Isa,
) {
    let rows = x.len() / input.max(1);
    assert_eq!(x.len(), rows * input, "X is [rows, I]");
    assert_eq!(bias.len(), 4 * hidden, "the bias is [4H]");
    assert_eq!(gates.len(), rows * 4 * hidden, "G is [rows, 4H]");
    if rows == 0 || hidden == 0 {
        return;
    }
    let packed = PackedHh::with_cols(weight_ih, hidden, input, isa);
    let panels = packed.panels();
    let blocks = rows.div_ceil(BLOCK_ROWS);
    let fmas = rows * 4 * hidden * input;
    let helpers = helpers(fmas, blocks * panels);
    let (xp, gp) = (x.as_ptr() as usize, gates.as_mut_ptr() as usize);
    in_phases(1, blocks * panels, helpers, |_, item| {
        let (block, p) = (item / panels, item % panels);
        let r0 = block * BLOCK_ROWS;
        let n = BLOCK_ROWS.min(rows - r0);
        let io = ProjIo {
            hidden,
            input,
            bias: bias.as_ptr(),
            // SAFETY: r0 < rows, inside both buffers.
            x: unsafe { (xp as *const f32).add(r0 * input) },
            gates: unsafe { (gp as *mut f32).add(r0 * 4 * hidden) },
        };
        // SAFETY: rows r0..r0+n and panel p's units are this item's alone;
        // the buffers outlive the call.
        unsafe { run(&packed, &io, p, n) };
    });
}

unsafe fn run(w: &PackedHh, io: &ProjIo, p: usize, rows: usize) {
    match w.isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `PackedHh` for AVX-512 / AVX2 is only built where detected.
        Isa::Avx512 => unsafe { run_avx512(w.data(), io, p, rows) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { run_avx2(w.data(), io, p, rows) },
        _ => unsafe { panel::<8, 2, PORTABLE>(w.data(), io, p, rows) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512(w: &[f32], io: &ProjIo, p: usize, rows: usize) {
    unsafe { panel::<16, 6, AVX512>(w, io, p, rows) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(w: &[f32], io: &ProjIo, p: usize, rows: usize) {
    unsafe { panel::<8, 3, AVX2>(w, io, p, rows) }
}

#[inline(always)]
unsafe fn panel<const U: usize, const MR: usize, const ISA: u8>(
    w: &[f32],
    io: &ProjIo,
    p: usize,
    rows: usize,
) {
    let panel_len = io.input * 4 * U;
    let wp = &w[p * panel_len..(p + 1) * panel_len];
    // SAFETY: every tile lies within the block's rows (the caller's contract).
    unsafe { row_tiles!(rows, MR, tile::<U, _, ISA>(wp, io, p)) };
}

/// Rows b0..b0+R of the block, panel p: bias plus product, stored.
#[inline(always)]
unsafe fn tile<const U: usize, const R: usize, const ISA: u8>(
    wp: &[f32],
    io: &ProjIo,
    p: usize,
    b0: usize,
) {
    // A full panel gets code in which every load and store is one vector.
    // SAFETY: the caller's contract.
    unsafe {
        if (p + 1) * U <= io.hidden {
            tile_lanes::<U, R, ISA, true>(wp, io, p, b0)
        } else {
            tile_lanes::<U, R, ISA, false>(wp, io, p, b0)
        }
    }
}

/// [`tile`], for a full panel (`FULL`) or the last, partial one.
#[inline(always)]
unsafe fn tile_lanes<const U: usize, const R: usize, const ISA: u8, const FULL: bool>(
    wp: &[f32],
    io: &ProjIo,
    p: usize,
    b0: usize,
) {
    let (h, base) = (io.hidden, p * U);
    let lanes = if FULL { U } else { h - base };
    // SAFETY (the whole body): rows b0..b0+R are inside the block, units
    // base..base+lanes < H (the caller's contract).
    unsafe {
        // [gate][row], every row starting from the bias; built in place (a
        // zeroed array would cost a call to memset per tile).
        let mut acc = std::mem::MaybeUninit::<[[[f32; U]; R]; 4]>::uninit();
        let vectors = acc.as_mut_ptr().cast::<[f32; U]>();
        for g in 0..4 {
            let bias = load(io.bias.add(g * h + base), lanes);
            for r in 0..R {
                vectors.add(g * R + r).write(bias);
            }
        }
        // SAFETY: all 4·R vectors were written.
        let acc = acc.assume_init_mut();
        let x_rows: [&[f32]; R] = std::array::from_fn(|r| {
            std::slice::from_raw_parts(io.x.add((b0 + r) * io.input), io.input)
        });
        product_any::<U, R, ISA>(acc, wp, x_rows);
        for r in 0..R {
            let g_row = io.gates.add((b0 + r) * 4 * h + base);
            for (g, acc) in acc.iter().enumerate() {
                store(g_row.add(g * h), &acc[r], lanes);
            }
        }
    }
}
