//! The GPU weight layout and its conversion from and to PyTorch's.
//!
//! PyTorch stores the 4H gate rows as four blocks: i_0..i_{H-1}, f_0.., g_0..,
//! o_0... The step kernel wants the four gates of unit j side by side, so on
//! upload the rows are reordered **by unit**: row 4j + q holds PyTorch row
//! q·H + j (q = 0..3 for i, f, g, o). `W_ih`, `W_hh` and the biases all take
//! this layout; each row stays K-fast (its inputs contiguous), as in PyTorch.
//!
//! For `W_hh` ([4H, H_out] per direction) that one layout serves both
//! directions of the recurrence with coalesced reads: the forward step
//! splits a unit's four rows over lanes along k (consecutive lanes read
//! consecutive k), and the backward step's lanes, one per input column k,
//! walk the rows (consecutive lanes again read consecutive k). Its gradient
//! dW_hh = dGᵀ · H_prev is one GEMM straight into it. Downloads convert
//! back; the public layout is always PyTorch's.

/// PyTorch row q·H + j → row 4j + q, for a [4H, cols] matrix (or a \[4H\] bias
/// with `cols = 1`).
pub fn rows_by_unit(w: &[f32], hidden: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for q in 0..4 {
        for j in 0..hidden {
            let (src, dst) = ((q * hidden + j) * cols, (4 * j + q) * cols);
            out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
        }
    }
    out
}

/// Inverse of [`rows_by_unit`].
pub fn rows_by_gate(w: &[f32], hidden: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for q in 0..4 {
        for j in 0..hidden {
            let (src, dst) = ((4 * j + q) * cols, (q * hidden + j) * cols);
            out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_invert_and_place_gates_by_unit() {
        let (h, cols) = (3, 5);
        let w: Vec<f32> = (0..4 * h * cols).map(|x| x as f32).collect();
        let by_unit = rows_by_unit(&w, h, cols);
        // Unit 1's forget-gate row (q = 1) is PyTorch row H + 1.
        assert_eq!(by_unit[(4 + 1) * cols], w[(h + 1) * cols]);
        assert_eq!(rows_by_gate(&by_unit, h, cols), w);
    }
}
