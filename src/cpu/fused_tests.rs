//! The fused f32 kernels (`fused.rs`, `fused_backward.rs`,
//! `fused_projection.rs`), in every
//! instruction-set variant this CPU runs, against the reference
//! (`crate::reference`) run in f64 on the same weights.
//!
//! The grid covers what the kernels special-case: hidden sizes that are not
//! a multiple of the panel width, batches that leave a partial row tile,
//! padded steps (lengths), both directions, stacked layers, given initial
//! states and upstream gradients for h_n and c_n.

use super::CpuEngine;
use super::simd::Isa;
use crate::reference::{self, OutputGrads};
use crate::tensor::Tensor;
use crate::{InitOptions, LstmConfig, LstmInput, LstmWeights};

/// Deterministic values in [-scale, scale).
fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// max |a - b| over max |b|, or the absolute difference when `b` is ~0.
fn rel_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y).abs()));
    diff / max_abs(b).max(1e-3)
}

struct Case {
    input: usize,
    hidden: usize,
    layers: usize,
    bidirectional: bool,
    seq_len: usize,
    batch: usize,
    lengths: bool,
}

impl Case {
    /// The case's configuration, f64 weights, input [T, B, I] and lengths.
    fn setup(&self) -> (LstmConfig, LstmWeights<f64>, Tensor<f64>, Vec<usize>) {
        let config = LstmConfig::new(self.input, self.hidden)
            .num_layers(self.layers)
            .bidirectional(self.bidirectional);
        let w = LstmWeights::<f64>::init(&config, 11, InitOptions::default()).unwrap();
        let (t, b) = (self.seq_len, self.batch);
        let x = Tensor::new([t, b, self.input], values(t * b * self.input, 1, 2.0)).unwrap();
        let lengths: Vec<usize> = (0..b).map(|i| t - i * t / (b + 1)).collect();
        (config, w, x, lengths)
    }
}

fn check(case: &Case, isa: Isa) {
    let (config, w64, x, lengths) = case.setup();
    let w32 = w64.cast::<f32>();
    let (t, b, h) = (case.seq_len, case.batch, case.hidden);
    let states = config.num_directions() * case.layers * b * h;
    let h0 = Tensor::new([states / (b * h), b, h], values(states, 2, 1.0)).unwrap();
    let c0 = Tensor::new([states / (b * h), b, h], values(states, 3, 1.0)).unwrap();
    let (x32, h032, c032) = (x.cast::<f32>(), h0.cast::<f32>(), c0.cast::<f32>());
    let mut in64 = LstmInput::new(&x).with_state(&h0, &c0);
    let mut in32 = LstmInput::new(&x32).with_state(&h032, &c032);
    if case.lengths {
        in64 = in64.with_lengths(&lengths);
        in32 = in32.with_lengths(&lengths);
    }

    let engine = CpuEngine::new();
    Isa::force(Some(isa));
    let (out32, cache32) = engine.forward_train(&w32, &in32, 0).unwrap();
    // Inference projects the input inside the step kernel instead.
    let eval32 = engine.forward(&w32, &in32).unwrap();
    Isa::force(None);
    let (out64, cache64) = reference::forward_train(&w64, &in64, 0).unwrap();
    let label = format!(
        "{isa:?} I{} H{h} L{} bi{} T{t} B{b} lengths {}",
        case.input, case.layers, case.bidirectional, case.lengths
    );
    for (name, a, e) in [
        ("output", &out32.output, &out64.output),
        ("h_n", &out32.h_n, &out64.h_n),
        ("c_n", &out32.c_n, &out64.c_n),
        ("inference output", &eval32.output, &out64.output),
        ("inference h_n", &eval32.h_n, &out64.h_n),
        ("inference c_n", &eval32.c_n, &out64.c_n),
    ] {
        let d = rel_diff(a.data(), e.data()) * max_abs(e.data()).max(1e-3);
        assert!(d <= 1e-5, "{label}: {name} differs by {d:e}");
    }

    let d_out = Tensor::new(
        out64.output.shape().to_vec(),
        values(out64.output.data().len(), 4, 1.0),
    )
    .unwrap();
    let d_hn = Tensor::new(out64.h_n.shape().to_vec(), values(states, 5, 1.0)).unwrap();
    let d_cn = Tensor::new(out64.c_n.shape().to_vec(), values(states, 6, 1.0)).unwrap();
    let (d_out32, d_hn32, d_cn32) = (d_out.cast::<f32>(), d_hn.cast::<f32>(), d_cn.cast::<f32>());
    Isa::force(Some(isa));
    let g32 = engine
        .backward(
            &w32,
            &cache32,
            &OutputGrads {
                d_output: &d_out32,
                d_h_n: Some(&d_hn32),
                d_c_n: Some(&d_cn32),
            },
        )
        .unwrap();
    Isa::force(None);
    let g64 = reference::backward(
        &w64,
        &cache64,
        &OutputGrads {
            d_output: &d_out,
            d_h_n: Some(&d_hn),
            d_c_n: Some(&d_cn),
        },
    )
    .unwrap();
    let tensors = [
        ("d_input", g32.d_input.data(), g64.d_input.data()),
        ("d_h_0", g32.d_h_0.data(), g64.d_h_0.data()),
        ("d_c_0", g32.d_c_0.data(), g64.d_c_0.data()),
    ];
    for (name, a, e) in tensors {
        let d = rel_diff(a, e);
        assert!(d <= 1e-4, "{label}: {name} differs by {d:e} of its max");
    }
    for ((name, _, a), (_, _, e)) in g32
        .weights
        .named_params()
        .into_iter()
        .zip(g64.weights.named_params())
    {
        let d = rel_diff(a, e);
        assert!(
            d <= 1e-4,
            "{label}: grad of {name} differs by {d:e} of its max"
        );
    }
}

#[test]
fn fused_kernels_match_the_f64_reference_in_every_variant() {
    let isas = Isa::available();
    eprintln!("instruction-set variants checked: {isas:?}");
    for isa in isas {
        for (hidden, batch) in [(1, 1), (5, 3), (16, 6), (17, 7), (40, 13), (70, 2)] {
            for (layers, bidirectional, lengths) in [
                (1, false, false),
                (1, true, true),
                (2, false, true),
                (2, true, false),
            ] {
                let case = Case {
                    input: 3,
                    hidden,
                    layers,
                    bidirectional,
                    seq_len: 6,
                    batch,
                    lengths,
                };
                check(&case, isa);
            }
        }
    }
}

#[test]
fn fused_kernels_use_helper_threads_correctly() {
    // Large enough per step (B·4H·H ≥ 2^15 multiply-adds) for the work to be
    // shared with pool threads. (input, hidden, layers, bidirectional, T, B,
    // lengths):
    let cases = [
        // Threads split the panels (a partial one among them), forward and
        // backward, over partial row tiles.
        (8, 100, 1, true, 12, 11, true),
        // One panel: too few for the threads, which take groups of rows
        // (forward; the backward step is too small to share).
        (48, 16, 1, true, 9, 16, true),
        // One backward panel (64 units with AVX-512): the backward pass takes
        // groups of rows.
        (8, 40, 1, true, 12, 13, true),
        // Too few rows for a whole tile.
        (8, 100, 1, true, 12, 3, true),
        // One row, fewer than a tile: the input projection runs before the
        // recurrence, in several blocks of rows (T·B = 150: one of 96 rows,
        // then 54), with an odd I.
        (37, 33, 2, false, 150, 1, false),
    ];
    for isa in Isa::available() {
        for (input, hidden, layers, bidirectional, seq_len, batch, lengths) in cases {
            let case = Case {
                input,
                hidden,
                layers,
                bidirectional,
                seq_len,
                batch,
                lengths,
            };
            check(&case, isa);
        }
    }
}

/// The f32 path's outputs and gradients for `case`, without forcing an
/// instruction set.
fn f32_results(case: &Case, engine: &CpuEngine) -> Vec<Vec<f32>> {
    let (_, w, x, lengths) = case.setup();
    let (w, x) = (w.cast::<f32>(), x.cast::<f32>());
    let mut input = LstmInput::new(&x);
    if case.lengths {
        input = input.with_lengths(&lengths);
    }
    let (out, cache) = engine.forward_train(&w, &input, 0).unwrap();
    let eval = engine.forward(&w, &input).unwrap();
    let d_out = Tensor::new(
        out.output.shape().to_vec(),
        values(out.output.data().len(), 4, 1.0),
    )
    .unwrap()
    .cast::<f32>();
    let grads = OutputGrads {
        d_output: &d_out,
        d_h_n: None,
        d_c_n: None,
    };
    let g = engine.backward(&w, &cache, &grads).unwrap();
    let mut all = vec![
        out.output.into_data(),
        out.h_n.into_data(),
        out.c_n.into_data(),
        eval.output.into_data(),
        eval.h_n.into_data(),
        g.d_input.into_data(),
        g.d_h_0.into_data(),
    ];
    all.extend(
        g.weights
            .named_params()
            .into_iter()
            .map(|(_, _, v)| v.to_vec()),
    );
    all
}

#[test]
fn helper_threads_change_no_bit_of_the_results() {
    // On one thread every kernel runs alone. With more, threads split each
    // step's panels, or take groups of rows when there are fewer panels than
    // threads (forward with H = 16, backward with H = 40). Either way each
    // row's and each unit's arithmetic is unchanged, so the results must be
    // identical.
    let one_thread = CpuEngine::with_threads(1).unwrap();
    let threads = CpuEngine::with_threads(rayon::current_num_threads().max(2)).unwrap();
    for (batch, hidden) in [(3, 100), (11, 100), (16, 100), (16, 16), (13, 40)] {
        let case = Case {
            input: 48,
            hidden,
            layers: 2,
            bidirectional: true,
            seq_len: 12,
            batch,
            lengths: true,
        };
        let threaded = f32_results(&case, &threads);
        let single = f32_results(&case, &one_thread);
        for (k, (a, b)) in threaded.iter().zip(&single).enumerate() {
            let same =
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same,
                "B{batch} H{hidden}: result {k} depends on the threads"
            );
        }
    }
}
