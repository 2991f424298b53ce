//! Running one layer·direction on batch chunks in parallel.
//!
//! Sequences of a batch never interact, so the recurrence of rows
//! b0..b1 can run on its own thread from start to end. This replaces a
//! fork and join inside every step's small matrix product (which costs more
//! than it saves at these sizes) with one per layer·direction. The loops in
//! `forward.rs` and `backward.rs` stay the plain single-batch reference; this
//! file only gathers each chunk's rows, runs them, and scatters the results.

use std::any::TypeId;

use rayon::prelude::*;

use super::forward::{Direction, DirectionCache, DirectionResult};
use crate::real::Real;
use crate::weights::LayerWeights;

/// Below this many FLOPs per step's recurrent product, splitting the batch
/// pays: the product is too small to share well between threads inside one
/// step. Above it, one shared product per step is faster (every chunk would
/// also repack all of `W_hh` at every step).
const SPLIT_BELOW_FLOPS: usize = 20_000_000;

/// Row chunks [b0, b1) for the threads available, or one chunk. f32 runs
/// in one chunk: its fused step kernels (`fused.rs`) share each step between
/// threads themselves, at no cost in copies.
fn chunks<T: Real>(batch: usize, hidden: usize) -> Vec<(usize, usize)> {
    let step_flops = 2 * batch * 4 * hidden * hidden;
    let threads = if step_flops < SPLIT_BELOW_FLOPS && TypeId::of::<T>() != TypeId::of::<f32>() {
        rayon::current_num_threads().min(batch).max(1)
    } else {
        1
    };
    (0..threads)
        .map(|k| (k * batch / threads, (k + 1) * batch / threads))
        .collect()
}

/// Rows [b0, b1) of a time-major [T, B, width] array, at columns
/// [offset, offset + cols) of each row.
fn gather<T: Real>(
    src: &[T],
    t: usize,
    b: usize,
    width: usize,
    (b0, b1): (usize, usize),
    offset: usize,
    cols: usize,
) -> Vec<T> {
    let mut out = Vec::with_capacity(t * (b1 - b0) * cols);
    for step in 0..t {
        for row in b0..b1 {
            let at = (step * b + row) * width + offset;
            out.extend_from_slice(&src[at..at + cols]);
        }
    }
    out
}

/// The inverse of [`gather`]: writes (or adds, with `add`) the chunk back.
#[allow(clippy::too_many_arguments)]
fn scatter<T: Real>(
    dst: &mut [T],
    chunk: &[T],
    t: usize,
    b: usize,
    width: usize,
    (b0, b1): (usize, usize),
    offset: usize,
    cols: usize,
    add: bool,
) {
    let nb = b1 - b0;
    for step in 0..t {
        for (k, row) in (b0..b1).enumerate() {
            let at = (step * b + row) * width + offset;
            let from = (step * nb + k) * cols;
            for (d, &v) in dst[at..at + cols].iter_mut().zip(&chunk[from..from + cols]) {
                *d = if add { *d + v } else { v };
            }
        }
    }
}

impl<'a, T: Real> Direction<'a, T> {
    /// This direction restricted to rows [b0, b1), writing its own [T, nb, H] output.
    fn chunk(&self, (b0, b1): (usize, usize)) -> Direction<'a, T> {
        Direction {
            batch: b1 - b0,
            lengths: &self.lengths[b0..b1],
            out_offset: 0,
            out_stride: self.hidden_out,
            ..*self
        }
    }

    /// [`forward`](Direction::forward) over batch chunks in parallel.
    pub(super) fn forward_split(
        &self,
        x: &[T],
        h_0: Vec<T>,
        c_0: Vec<T>,
        out: &mut [T],
    ) -> DirectionResult<T> {
        let parts = chunks::<T>(self.batch, self.hidden);
        // (A projection LSTM runs unsplit: the chunks below assume H_out = H.)
        if parts.len() == 1 || self.hidden_out != self.hidden {
            return self.forward(x, h_0, c_0, out);
        }
        let (t, b, h, inp) = (self.seq_len, self.batch, self.hidden, self.input_size);
        let results: Vec<(Vec<T>, DirectionResult<T>)> = parts
            .par_iter()
            .map(|&p| {
                let dir = self.chunk(p);
                let rows = |s: &[T]| s[p.0 * h..p.1 * h].to_vec();
                let mut out_c = vec![T::zero(); t * dir.batch * h];
                let r = dir.forward(
                    &gather(x, t, b, inp, p, 0, inp),
                    rows(&h_0),
                    rows(&c_0),
                    &mut out_c,
                );
                (out_c, r)
            })
            .collect();
        let saved = if self.save { t * b * h } else { 0 };
        let mut cache = DirectionCache {
            gates: vec![T::zero(); 4 * saved],
            c: vec![T::zero(); saved],
            h: vec![T::zero(); saved],
            h_0,
            c_0,
        };
        let (mut h_last, mut c_last) = (vec![T::zero(); b * h], vec![T::zero(); b * h]);
        for (&p, (out_c, r)) in parts.iter().zip(results) {
            scatter(
                out,
                &out_c,
                t,
                b,
                self.out_stride,
                p,
                self.out_offset,
                h,
                false,
            );
            if self.save {
                scatter(
                    &mut cache.gates,
                    &r.cache.gates,
                    t,
                    b,
                    4 * h,
                    p,
                    0,
                    4 * h,
                    false,
                );
                scatter(&mut cache.c, &r.cache.c, t, b, h, p, 0, h, false);
                scatter(&mut cache.h, &r.cache.h, t, b, h, p, 0, h, false);
            }
            h_last[p.0 * h..p.1 * h].copy_from_slice(&r.h_last);
            c_last[p.0 * h..p.1 * h].copy_from_slice(&r.c_last);
        }
        DirectionResult {
            h_last,
            c_last,
            cache,
        }
    }

    /// [`backward`](Direction::backward) over batch chunks in parallel; the
    /// chunks' weight gradients are summed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_split(
        &self,
        x: &[T],
        saved: &DirectionCache<T>,
        dy: &[T],
        d_h_n: Vec<T>,
        d_c_n: Vec<T>,
        grads: &mut LayerWeights<T>,
        d_input: &mut [T],
    ) -> (Vec<T>, Vec<T>) {
        let parts = chunks::<T>(self.batch, self.hidden);
        if parts.len() == 1 || self.hidden_out != self.hidden {
            return self.backward(x, saved, dy, d_h_n, d_c_n, grads, d_input);
        }
        let (t, b, h, inp) = (self.seq_len, self.batch, self.hidden, self.input_size);
        let results: Vec<_> = parts
            .par_iter()
            .map(|&p| {
                let dir = self.chunk(p);
                let rows = |s: &[T]| s[p.0 * h..p.1 * h].to_vec();
                let saved_c = DirectionCache {
                    gates: gather(&saved.gates, t, b, 4 * h, p, 0, 4 * h),
                    c: gather(&saved.c, t, b, h, p, 0, h),
                    h: gather(&saved.h, t, b, h, p, 0, h),
                    h_0: rows(&saved.h_0),
                    c_0: rows(&saved.c_0),
                };
                let dy_c = gather(dy, t, b, self.out_stride, p, self.out_offset, h);
                let mut g = grads.clone();
                // An empty d_input asks for no input gradient.
                let d_in_len = if d_input.is_empty() {
                    0
                } else {
                    t * dir.batch * inp
                };
                let mut d_in = vec![T::zero(); d_in_len];
                let (dh0, dc0) = dir.backward(
                    &gather(x, t, b, inp, p, 0, inp),
                    &saved_c,
                    &dy_c,
                    rows(&d_h_n),
                    rows(&d_c_n),
                    &mut g,
                    &mut d_in,
                );
                (g, d_in, dh0, dc0)
            })
            .collect();
        let (mut dh0, mut dc0) = (vec![T::zero(); b * h], vec![T::zero(); b * h]);
        for (k, (&p, (g, d_in, dh, dc))) in parts.iter().zip(results).enumerate() {
            if !d_input.is_empty() {
                scatter(d_input, &d_in, t, b, inp, p, 0, inp, true);
            }
            dh0[p.0 * h..p.1 * h].copy_from_slice(&dh);
            dc0[p.0 * h..p.1 * h].copy_from_slice(&dc);
            if k == 0 {
                *grads = g;
            } else {
                add(&mut grads.weight_ih, &g.weight_ih);
                add(&mut grads.weight_hh, &g.weight_hh);
                if let (Some(a), Some(b)) = (&mut grads.bias_ih, &g.bias_ih) {
                    add(a, b);
                }
                if let (Some(a), Some(b)) = (&mut grads.bias_hh, &g.bias_hh) {
                    add(a, b);
                }
            }
        }
        (dh0, dc0)
    }
}

fn add<T: Real>(acc: &mut [T], x: &[T]) {
    acc.iter_mut().zip(x).for_each(|(a, &v)| *a = *a + v);
}
