//! The GPU weight layout and its conversion from and to PyTorch's.
//!
//! PyTorch stores the 4H gate rows as four blocks: i_0..i_{H-1}, f_0.., g_0..,
//! o_0... The step kernel wants the four gates of unit j side by side, so on
//! upload the rows are reordered **by unit**: row 4j + q holds PyTorch row
//! q·H + j (q = 0..3 for i, f, g, o). `W_hh` is also transposed, to
//! [H_in, H, 4], so that at each input k a workgroup reads the gates of its
//! consecutive units as consecutive vec4s. Downloads convert back; the public
//! layout is always PyTorch's.

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

/// W_hh [4H, H_in] (PyTorch) → [H_in, H, 4]: element (k, j, q) = W_hh[q·H + j, k].
pub fn recurrent_to_gpu(w: &[f32], hidden: usize, inputs: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for q in 0..4 {
        for j in 0..hidden {
            for k in 0..inputs {
                out[(k * hidden + j) * 4 + q] = w[(q * hidden + j) * inputs + k];
            }
        }
    }
    out
}

/// Inverse of [`recurrent_to_gpu`].
pub fn recurrent_from_gpu(w: &[f32], hidden: usize, inputs: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for q in 0..4 {
        for j in 0..hidden {
            for k in 0..inputs {
                out[(q * hidden + j) * inputs + k] = w[(k * hidden + j) * 4 + q];
            }
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
        let wh: Vec<f32> = (0..4 * h * h).map(|x| x as f32).collect();
        let g = recurrent_to_gpu(&wh, h, h);
        // (k = 2, j = 1, q = 3) is W_hh[3H + 1, 2].
        assert_eq!(g[(2 * h + 1) * 4 + 3], wh[(3 * h + 1) * h + 2]);
        assert_eq!(recurrent_from_gpu(&g, h, h), wh);
    }
}
