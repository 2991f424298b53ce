//! The f32 fast path of the CPU recurrence: one fused kernel per time step.
//!
//! `reference::forward` is the specification; here each step's recurrent
//! product and cell update run in one kernel:
//!
//! - `W_hh` is packed once per layer·direction into panels of `U` hidden
//!   units (`U` = the SIMD width: 16 with AVX-512, 8 otherwise). Panel `p`
//!   holds, for every input `k`, the four gates' weights of units
//!   `p·U .. p·U+U` side by side: `[k][gate][lane]`. A step reads it
//!   front to back, with no per-step repacking.
//! - A tile of `MR` batch rows × one panel keeps its `4·MR` gate vectors in
//!   registers for the whole product over `k` (with at least a full tile
//!   of rows, the input's product too), then applies the activations and
//!   the cell update to all its rows at once: the pre-activations never go
//!   back to memory.
//! - Threads split each step's panels, each keeping the same share from step
//!   to step, so that its slice of the weights stays in its own core's
//!   cache; they wait for each other between steps. With too few panels for
//!   the threads, groups of batch rows (which are independent) run on their
//!   own threads instead, with no waiting between steps. The backward pass
//!   (`fused_backward.rs`) does the same. Small steps run on one thread.
//!   Either way every row's and unit's arithmetic is the same, so the
//!   results do not depend on the threads.
//!
//! The instruction set is chosen at run time: AVX-512, AVX2 with FMA, or
//! portable code that the compiler vectorises for the target's baseline.

#[cfg_attr(not(target_arch = "x86_64"), allow(unused_imports))]
use super::simd::{AVX2, AVX512, Isa, PORTABLE, load, madd, product_any, row_tiles, store};
use super::threads::{ITEM_FMAS, helpers, in_steps};
use super::{scratch, vmath};

/// `W_hh` ([4H, H], PyTorch's layout) packed for one [`Isa`].
pub(crate) struct PackedHh {
    isa: Isa,
    hidden: usize,
    data: Vec<f32>,
}

impl Drop for PackedHh {
    fn drop(&mut self) {
        scratch::recycle(std::mem::take(&mut self.data));
    }
}

impl PackedHh {
    pub fn new(weight_hh: &[f32], hidden: usize, isa: Isa) -> PackedHh {
        PackedHh::with_cols(weight_hh, hidden, hidden, isa)
    }

    /// Packs any [4H, cols] gate matrix (e.g. `W_ih`) the same way: panel `p`
    /// is `[cols][gate][lane]`.
    pub fn with_cols(weight: &[f32], hidden: usize, cols: usize, isa: Isa) -> PackedHh {
        assert_eq!(weight.len(), 4 * hidden * cols, "the weight is [4H, cols]");
        let u = isa.units();
        let panels = hidden.div_ceil(u);
        // Every element is written (the last panel's lanes past H with 0).
        let mut data = scratch::reused(panels * cols * 4 * u);
        // Blocks of U units × 16 columns of one gate: 16 floats in a row from
        // each of the U rows of the weight, then U floats in a row to each
        // of the 16 columns' places in the panel.
        let pack = |p: usize, panel: &mut [f32]| {
            let lanes = u.min(hidden - p * u);
            // [lane][column]; lanes past H stay 0.
            let mut block = [[0f32; 16]; 16];
            for g in 0..4 {
                for k0 in (0..cols).step_by(16) {
                    let kn = 16.min(cols - k0);
                    for (l, block) in block.iter_mut().enumerate().take(lanes) {
                        let row = (g * hidden + p * u + l) * cols + k0;
                        if kn == 16 {
                            // (a fixed-size copy: one vector load, no call)
                            *block = weight[row..row + 16].try_into().unwrap();
                        } else {
                            block[..kn].copy_from_slice(&weight[row..row + kn]);
                        }
                    }
                    for k in 0..kn {
                        let dst = &mut panel[((k0 + k) * 4 + g) * u..][..u];
                        for (l, v) in dst.iter_mut().enumerate() {
                            *v = block[l][k];
                        }
                    }
                }
            }
        };
        let panel_len = cols * 4 * u;
        if helpers(data.len(), panels) > 0 {
            use rayon::prelude::*;
            data.par_chunks_mut(panel_len)
                .enumerate()
                .for_each(|(p, panel)| pack(p, panel));
        } else {
            data.chunks_mut(panel_len)
                .enumerate()
                .for_each(|(p, panel)| pack(p, panel));
        }
        PackedHh { isa, hidden, data }
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn panels(&self) -> usize {
        self.hidden.div_ceil(self.isa.units())
    }
}

/// Everything one step reads and writes. Threads write disjoint units.
#[derive(Clone, Copy)]
pub(crate) struct StepIo {
    pub hidden: usize,
    pub batch: usize,
    /// Step t; rows with `lengths[b] <= t` are padding.
    pub t: usize,
    pub lengths: *const usize,
    /// [B, 4H]: x·W_ihᵀ + b, or with `x` given the [4H] bias (row stride 0).
    pub gates: *const f32,
    /// Floats between gate rows: 4H, or 0 for the bias.
    pub gates_stride: usize,
    /// [B, 4H]: where the activated gates go for the backward pass, or null.
    pub gates_out: *mut f32,
    /// [B, input]: this step's input rows when the kernel also does the
    /// input projection, or null.
    pub x: *const f32,
    pub input: usize,
    /// [B, H]
    pub h_prev: *const f32,
    pub h_next: *mut f32,
    /// [B, H]: what the recurrent product reads, h_prev ⊙ m_h with recurrent
    /// dropout (else `h_prev` itself).
    pub hm_prev: *const f32,
    /// [B, H]: where h_next ⊙ m_h goes for the next step, or null without
    /// recurrent dropout.
    pub hm_next: *mut f32,
    /// [B, H]: the recurrent dropout mask m_h, or null.
    pub h_mask: *const f32,
    /// The cell activation is relu (else tanh).
    pub relu: bool,
    /// [B, H], updated in place.
    pub c: *mut f32,
    /// This step's output rows: h of row b goes to `out[b·out_stride + j]`.
    pub out: *mut f32,
    pub out_stride: usize,
    /// [B, H] copies of the new h and c for the backward pass, or null.
    pub h_save: *mut f32,
    pub c_save: *mut f32,
}

// SAFETY: every thread given a `StepIo` writes only its own panels' units;
// `h_prev` is only read during the step.
unsafe impl Send for StepIo {}
unsafe impl Sync for StepIo {}

/// Panels [p0, p1) of one step with the packed weights' kernel.
///
/// # Safety
/// `io`'s pointers cover the extents documented on [`StepIo`], and no other
/// thread writes these panels' units during the call.
/// `wi`: `W_ih` packed the same way when `io.x` is given, else empty.
unsafe fn run(w: &PackedHh, wi: &[f32], io: &StepIo, p0: usize, p1: usize) {
    match w.isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `PackedHh` for AVX-512 / AVX2 is only built where detected.
        Isa::Avx512 => unsafe { run_avx512(&w.data, wi, io, p0, p1) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { run_avx2(&w.data, wi, io, p0, p1) },
        _ => unsafe { panels::<8, 2, PORTABLE>(&w.data, wi, io, p0, p1) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512(w: &[f32], wi: &[f32], io: &StepIo, p0: usize, p1: usize) {
    unsafe { panels::<16, 6, AVX512>(w, wi, io, p0, p1) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(w: &[f32], wi: &[f32], io: &StepIo, p0: usize, p1: usize) {
    unsafe { panels::<8, 3, AVX2>(w, wi, io, p0, p1) }
}

/// The kernel: `U` units per panel, tiles of `MR` rows, and the rows left
/// over in tiles of their own size (so that no row is computed twice).
#[inline(always)]
unsafe fn panels<const U: usize, const MR: usize, const ISA: u8>(
    w: &[f32],
    wi: &[f32],
    io: &StepIo,
    p0: usize,
    p1: usize,
) {
    let panel_len = io.hidden * 4 * U;
    let in_len = if io.x.is_null() { 0 } else { io.input * 4 * U };
    for p in p0..p1 {
        let wp = &w[p * panel_len..(p + 1) * panel_len];
        let wip = &wi[p * in_len..(p + 1) * in_len];
        // SAFETY: every tile lies within rows 0..B (the caller's contract).
        unsafe { row_tiles!(io.batch, MR, tile::<U, _, ISA>(wp, wip, io, p)) };
    }
}

/// Rows b0..b0+R of panel p: product (with the input's, when `io.x` is
/// given), activations, cell update, stores.
#[inline(always)]
unsafe fn tile<const U: usize, const R: usize, const ISA: u8>(
    wp: &[f32],
    wip: &[f32],
    io: &StepIo,
    p: usize,
    b0: usize,
) {
    // A full panel gets code in which every load and store is one vector.
    // SAFETY: the caller's contract.
    unsafe {
        if (p + 1) * U <= io.hidden {
            tile_lanes::<U, R, ISA, true>(wp, wip, io, p, b0)
        } else {
            tile_lanes::<U, R, ISA, false>(wp, wip, io, p, b0)
        }
    }
}

/// [`tile`], for a full panel (`FULL`) or the last, partial one.
#[inline(always)]
unsafe fn tile_lanes<const U: usize, const R: usize, const ISA: u8, const FULL: bool>(
    wp: &[f32],
    wip: &[f32],
    io: &StepIo,
    p: usize,
    b0: usize,
) {
    let h = io.hidden;
    let base = p * U;
    let lanes = if FULL { U } else { h - base };
    // SAFETY (the whole body): rows b0..b0+R < B and units base..base+lanes
    // < H stay inside the [B, 4H] gates, the [B, H] states and the
    // [B, out_stride] output (the caller's contract).
    unsafe {
        // [gate][row]: the pre-activations, then the activated gates. Built
        // in place (a zeroed array would cost a call to memset per tile).
        let mut acc = std::mem::MaybeUninit::<[[[f32; U]; R]; 4]>::uninit();
        let vectors = acc.as_mut_ptr().cast::<[f32; U]>();
        for g in 0..4 {
            for r in 0..R {
                let src = io.gates.add((b0 + r) * io.gates_stride + g * h + base);
                vectors.add(g * R + r).write(load(src, lanes));
            }
        }
        // SAFETY: all 4·R vectors were written. (A reference: moving the
        // array out would copy it.)
        let acc = acc.assume_init_mut();
        if !io.x.is_null() {
            let x_rows: [&[f32]; R] = std::array::from_fn(|r| {
                std::slice::from_raw_parts(io.x.add((b0 + r) * io.input), io.input)
            });
            product_any::<U, R, ISA>(acc, wip, x_rows);
        }
        let h_rows: [&[f32]; R] =
            std::array::from_fn(|r| std::slice::from_raw_parts(io.h_prev.add((b0 + r) * h), h));
        let hm_rows: [&[f32]; R] =
            std::array::from_fn(|r| std::slice::from_raw_parts(io.hm_prev.add((b0 + r) * h), h));
        product_any::<U, R, ISA>(acc, wp, hm_rows);
        // The activations and the cell update for all R rows at once (R
        // independent chains).
        let [i, f, g, o] = acc;
        vmath::sigmoid::<U, R, ISA>(i);
        vmath::sigmoid::<U, R, ISA>(f);
        let act = |v: &mut [[f32; U]; R]| {
            if io.relu {
                v.iter_mut().flatten().for_each(|x| *x = x.max(0.0));
            } else {
                vmath::tanh::<U, R, ISA>(v);
            }
        };
        act(g);
        vmath::sigmoid::<U, R, ISA>(o);
        let c_at = |r: usize| io.c.add((b0 + r) * h + base);
        let mut c = [[0f32; U]; R];
        for (r, c) in c.iter_mut().enumerate() {
            *c = load(c_at(r), lanes);
        }
        for r in 0..R {
            for l in 0..U {
                c[r][l] = madd::<ISA>(f[r][l], c[r][l], i[r][l] * g[r][l]);
            }
        }
        let mut hn = c;
        act(&mut hn);
        for r in 0..R {
            for l in 0..U {
                hn[r][l] *= o[r][l];
            }
        }
        for r in 0..R {
            let b = b0 + r;
            let (at, h_next) = (b * h + base, io.h_next.add(b * h + base));
            if *io.lengths.add(b) <= io.t {
                // Padding: the state carries over; the output stays 0.
                let h_old = load::<U>(h_rows[r][base..].as_ptr(), lanes);
                store(h_next, &h_old, lanes);
                if !io.hm_next.is_null() {
                    let hm_old = load::<U>(hm_rows[r][base..].as_ptr(), lanes);
                    store(io.hm_next.add(at), &hm_old, lanes);
                }
                if !io.h_save.is_null() {
                    store(io.h_save.add(at), &h_old, lanes);
                    store(io.c_save.add(at), &load::<U>(c_at(r), lanes), lanes);
                }
                continue;
            }
            store(c_at(r), &c[r], lanes);
            store(h_next, &hn[r], lanes);
            if !io.hm_next.is_null() {
                // Recurrent dropout: the next step's product reads h ⊙ m_h.
                let m = load::<U>(io.h_mask.add(at), lanes);
                let mut hm = hn[r];
                for l in 0..U {
                    hm[l] *= m[l];
                }
                store(io.hm_next.add(at), &hm, lanes);
            }
            store(io.out.add(b * io.out_stride + base), &hn[r], lanes);
            if !io.h_save.is_null() {
                store(io.h_save.add(at), &hn[r], lanes);
                store(io.c_save.add(at), &c[r], lanes);
            }
            if !io.gates_out.is_null() {
                // The activated gates, for the backward pass.
                let g_row = io.gates_out.add(b * 4 * h + base);
                for (gate, v) in [&i[r], &f[r], &g[r], &o[r]].into_iter().enumerate() {
                    store(g_row.add(gate * h), v, lanes);
                }
            }
        }
    }
}

/// One layer·direction's recurrence, for the forward kernel ([`run`](Self::run),
/// over pre-computed input projections) and the backward one
/// ([`run_backward`](Self::run_backward), in `fused_backward.rs`).
pub(crate) struct Recurrence<'a> {
    /// [4H, H]
    pub weight_hh: &'a [f32],
    pub hidden: usize,
    pub batch: usize,
    pub seq_len: usize,
    pub reverse: bool,
    /// \[B\]
    pub lengths: &'a [usize],
    /// This direction's columns in the output rows.
    pub out_offset: usize,
    pub out_stride: usize,
    /// The cell activation is relu (else tanh).
    pub relu: bool,
    pub isa: Isa,
}

/// The input side of a step, for [`Recurrence::run`] to project itself:
/// `x` [T, B, size], `weight_ih` [4H, size].
pub(crate) struct StepInput<'a> {
    pub x: &'a [f32],
    pub size: usize,
    pub weight_ih: &'a [f32],
    /// b_ih + b_hh [4H].
    pub bias: &'a [f32],
}

impl Recurrence<'_> {
    /// Runs every step. `gates` [T, B, 4H] holds x·W_ihᵀ + b on entry and, when
    /// `h_all` and `c_all` ([T, B, H]) are non-empty, the activated gates on
    /// return, as the backward pass needs them. `h` and `c` ([B, H]) hold the
    /// initial state on entry and the last valid state on return.
    ///
    /// With `input`, the step kernel does the input projection itself, in
    /// the same register tiles as the recurrent product: the pre-activations
    /// never go to memory, and `gates` only receives the activated gates
    /// (empty when not saving).
    ///
    /// With `h_mask` ([B, H], recurrent dropout), the recurrent product
    /// reads h ⊙ m_h, kept in a second pair of buffers that each step writes
    /// beside h.
    ///
    /// Threads split each step's panels or take groups of rows (see
    /// [`in_steps`]).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        input: Option<StepInput<'_>>,
        gates: &mut [f32],
        h: &mut [f32],
        c: &mut [f32],
        h_mask: Option<&[f32]>,
        out: &mut [f32],
        h_all: &mut [f32],
        c_all: &mut [f32],
    ) {
        let (hid, bsz) = (self.hidden, self.batch);
        let save = !h_all.is_empty();
        let tb = self.seq_len * bsz;
        assert_eq!(self.weight_hh.len(), 4 * hid * hid, "W_hh is [4H, H]");
        assert_eq!(self.lengths.len(), bsz, "one length per row");
        if let Some(i) = &input {
            assert_eq!(i.bias.len(), 4 * hid, "the bias is [4H]");
            assert_eq!(i.x.len(), tb * i.size, "x is [T, B, I]");
            assert_eq!(i.weight_ih.len(), 4 * hid * i.size, "W_ih is [4H, I]");
        }
        if input.is_none() || save {
            assert_eq!(gates.len(), tb * 4 * hid, "gates are [T, B, 4H]");
        }
        assert!(
            h.len() == bsz * hid && c.len() == bsz * hid,
            "states are [B, H]"
        );
        assert!(!save || (h_all.len() == tb * hid && c_all.len() == tb * hid));
        assert!(self.out_offset + hid <= self.out_stride);
        assert!(
            out.len() >= tb * self.out_stride,
            "output is [T, B, stride]"
        );
        if self.seq_len == 0 || bsz == 0 || hid == 0 {
            return;
        }
        let packed = PackedHh::new(self.weight_hh, hid, self.isa);
        let packed_ih = input
            .as_ref()
            .map(|i| PackedHh::with_cols(i.weight_ih, hid, i.size, self.isa));
        let in_size = input.as_ref().map_or(0, |i| i.size);
        // With the input, every row starts from the bias (stride 0), and
        // `gates` only receives the activations.
        let (gates_in, gates_stride) = match &input {
            Some(i) => (i.bias.as_ptr(), 0),
            None => (gates.as_ptr(), 4 * hid),
        };
        let panels = packed.panels();
        let step_fmas = bsz * 4 * hid * (hid + in_size);

        // h alternates between two buffers: step s reads h_bufs[s % 2]; so
        // does h ⊙ m_h with recurrent dropout.
        let mut h_bufs = [h.to_vec(), vec![0f32; bsz * hid]];
        if let Some(m) = h_mask {
            assert_eq!(m.len(), bsz * hid, "the recurrent mask is [B, H]");
        }
        let mut hm_bufs = match h_mask {
            Some(m) => [
                h.iter().zip(m).map(|(&v, &m)| v * m).collect(),
                vec![0f32; bsz * hid],
            ],
            None => [Vec::new(), Vec::new()],
        };
        let ptr = Ptrs {
            gates_in,
            gates_out: if save {
                gates.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            },
            x: input.as_ref().map_or(std::ptr::null(), |i| i.x.as_ptr()),
            h_bufs: [h_bufs[0].as_mut_ptr(), h_bufs[1].as_mut_ptr()],
            hm_bufs: if h_mask.is_some() {
                [hm_bufs[0].as_mut_ptr(), hm_bufs[1].as_mut_ptr()]
            } else {
                [std::ptr::null_mut(); 2]
            },
            h_mask: h_mask.map_or(std::ptr::null(), <[f32]>::as_ptr),
            c: c.as_mut_ptr(),
            out: out.as_mut_ptr(),
            h_all: if save {
                h_all.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            },
            c_all: if save {
                c_all.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            },
        };
        let wi = packed_ih.as_ref().map_or(&[][..], |w| w.data());
        // Step s of rows rows.start..rows.end, panels [p0, p1).
        //
        // SAFETY (for callers): the buffers outlive the call; a call writes
        // only its rows' and panels' units of step t, and reads the h of
        // step s-1 of its rows, which must be complete.
        let step = |s: usize, rows: std::ops::Range<usize>, p0: usize, p1: usize| {
            let ptr = &ptr; // the whole struct (Sync), not its raw fields
            let t = if self.reverse {
                self.seq_len - 1 - s
            } else {
                s
            };
            let (r0, at) = (rows.start, t * bsz + rows.start);
            // SAFETY: as above; every offset stays inside the extents
            // checked at the top.
            unsafe {
                let io = StepIo {
                    hidden: hid,
                    batch: rows.len(),
                    t,
                    lengths: self.lengths.as_ptr().add(r0),
                    gates: ptr.gates_in.add(at * gates_stride),
                    gates_stride,
                    gates_out: if save {
                        ptr.gates_out.add(at * 4 * hid)
                    } else {
                        ptr.gates_out
                    },
                    // (null + 0 without the input)
                    x: ptr.x.add(at * in_size),
                    input: in_size,
                    h_prev: ptr.h_bufs[s % 2].add(r0 * hid),
                    h_next: ptr.h_bufs[(s + 1) % 2].add(r0 * hid),
                    hm_prev: if ptr.h_mask.is_null() {
                        ptr.h_bufs[s % 2].add(r0 * hid)
                    } else {
                        ptr.hm_bufs[s % 2].add(r0 * hid)
                    },
                    hm_next: if ptr.h_mask.is_null() {
                        std::ptr::null_mut()
                    } else {
                        ptr.hm_bufs[(s + 1) % 2].add(r0 * hid)
                    },
                    h_mask: if ptr.h_mask.is_null() {
                        ptr.h_mask
                    } else {
                        ptr.h_mask.add(r0 * hid)
                    },
                    relu: self.relu,
                    c: ptr.c.add(r0 * hid),
                    out: ptr.out.add(at * self.out_stride + self.out_offset),
                    out_stride: self.out_stride,
                    h_save: if save {
                        ptr.h_all.add(at * hid)
                    } else {
                        ptr.h_all
                    },
                    c_save: if save {
                        ptr.c_all.add(at * hid)
                    } else {
                        ptr.c_all
                    },
                };
                run(&packed, wi, &io, p0, p1);
            }
        };
        let panel_fmas = step_fmas / panels;
        let per_item = ITEM_FMAS.div_ceil(panel_fmas).clamp(1, panels);
        let items = panels.div_ceil(per_item);
        in_steps(self.seq_len, items, bsz, step_fmas, |s, rows, items| {
            let p0 = items.start * per_item;
            step(s, rows, p0, (items.end * per_item).min(panels));
        });
        h.copy_from_slice(&h_bufs[self.seq_len % 2]);
    }
}

/// The buffers of [`Recurrence::run`], shared by its threads.
#[derive(Clone, Copy)]
struct Ptrs {
    /// x·W_ihᵀ + b [T, B, 4H], or the bias [4H] with the input.
    gates_in: *const f32,
    /// [T, B, 4H] when saving the activated gates, else null.
    gates_out: *mut f32,
    /// [T, B, I] when the kernel projects the input itself, else null.
    x: *const f32,
    h_bufs: [*mut f32; 2],
    /// h ⊙ m_h with recurrent dropout, else null.
    hm_bufs: [*mut f32; 2],
    /// [B, H] recurrent mask, or null.
    h_mask: *const f32,
    c: *mut f32,
    out: *mut f32,
    h_all: *mut f32,
    c_all: *mut f32,
}

// SAFETY: see `Recurrence::run`: threads write disjoint units of a step, and
// a step starts only after the previous one is complete.
unsafe impl Send for Ptrs {}
unsafe impl Sync for Ptrs {}
