//! Shapes and FLOP counts shared by the benches.
#![allow(dead_code)]

/// (B, T, I, H): the standard shapes of the project's benchmarks.
pub const STANDARD_SHAPES: [(usize, usize, usize, usize); 4] = [
    (1, 100, 64, 128),
    (16, 100, 128, 256),
    (64, 100, 256, 512),
    (64, 50, 512, 1024),
];

/// Forward FLOPs of one layer·direction: 2 multiply-adds (= 8 FLOPs per
/// gate-unit pair) over the 4H gate rows of [I + H] inputs: 8·H·(I+H)·B·T.
pub fn forward_flops(b: usize, t: usize, i: usize, h: usize) -> f64 {
    8.0 * h as f64 * (i + h) as f64 * b as f64 * t as f64
}

/// A training step (forward + backward) is counted as 3× the forward: the
/// backward pass does two products of the forward's size (dX/dh and dW).
pub fn training_flops(b: usize, t: usize, i: usize, h: usize) -> f64 {
    3.0 * forward_flops(b, t, i, h)
}

/// `B1_T100_I64_H128`
pub fn label(b: usize, t: usize, i: usize, h: usize) -> String {
    format!("B{b}_T{t}_I{i}_H{h}")
}
