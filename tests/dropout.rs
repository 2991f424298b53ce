//! Inter-layer dropout: the counter-based mask and its use in the forward pass.

mod common;

use common::random_tensor;
use wgpu_lstm::dropout::{Dropout, keep_threshold, mask_hash};
use wgpu_lstm::reference;
use wgpu_lstm::{InitOptions, LstmConfig, LstmInput, LstmWeights};

#[test]
fn mask_is_reproducible_for_a_seed_and_differs_across_seeds() {
    let a = Dropout { p: 0.3, seed: 42 }.mask::<f32>(1, 7, 3, 10);
    let b = Dropout { p: 0.3, seed: 42 }.mask::<f32>(1, 7, 3, 10);
    let c = Dropout { p: 0.3, seed: 43 }.mask::<f32>(1, 7, 3, 10);
    let other_layer = Dropout { p: 0.3, seed: 42 }.mask::<f32>(0, 7, 3, 10);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, other_layer);
}

#[test]
fn kept_fraction_and_mean_scale_match_p() {
    // 200k draws: the kept fraction's standard error is about 1e-3.
    for p in [0.1, 0.5, 0.8] {
        let mask = Dropout { p, seed: 9 }.mask::<f64>(0, 100, 20, 100);
        let n = mask.len() as f64;
        let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64 / n;
        let mean: f64 = mask.iter().sum::<f64>() / n;
        assert!(
            (kept - (1.0 - p)).abs() < 5e-3,
            "p={p}: kept fraction {kept}"
        );
        assert!(
            (mean - 1.0).abs() < 1e-2,
            "p={p}: mean scale {mean}, expected 1"
        );
        for &m in &mask {
            assert!(
                m == 0.0 || (m - 1.0 / (1.0 - p)).abs() < 1e-12,
                "mask value {m}"
            );
        }
    }
}

#[test]
fn hash_bits_are_unbiased() {
    // Each of the 32 output bits should be set about half the time.
    let mut counts = [0u32; 32];
    let n = 50_000u32;
    for i in 0..n {
        let h = mask_hash(7, 0, i / 100, (i / 10) % 10, i % 10);
        for (bit, count) in counts.iter_mut().enumerate() {
            *count += (h >> bit) & 1;
        }
    }
    for (bit, &c) in counts.iter().enumerate() {
        let frac = c as f64 / n as f64;
        assert!(
            (frac - 0.5).abs() < 0.02,
            "bit {bit} set in {frac} of hashes"
        );
    }
    assert_eq!(keep_threshold(0.0), 0);
}

fn setup(dropout: f64) -> (LstmWeights<f64>, wgpu_lstm::Tensor<f64>) {
    let cfg = LstmConfig::new(4, 6).num_layers(3).dropout(dropout);
    let w = LstmWeights::init(&cfg, 1, InitOptions::default()).unwrap();
    (w, random_tensor(&[5, 2, 4], 3, 1.0))
}

#[test]
fn zero_probability_equals_no_dropout() {
    let (w, x) = setup(0.0);
    let (train, cache) = reference::forward_train(&w, &LstmInput::new(&x), 5).unwrap();
    let eval = reference::forward(&w, &LstmInput::new(&x)).unwrap();
    assert_eq!(train, eval);
    assert!(cache.layers.iter().all(|l| l.dropout_mask.is_none()));
}

#[test]
fn evaluation_mode_ignores_dropout() {
    let (w_drop, x) = setup(0.5);
    let (mut w_plain, _) = setup(0.0);
    w_plain.config.dropout = 0.0;
    let eval = reference::forward(&w_drop, &LstmInput::new(&x)).unwrap();
    let plain = reference::forward(&w_plain, &LstmInput::new(&x)).unwrap();
    assert_eq!(eval, plain);
    // And training mode does change the output, differently per seed.
    let (t1, _) = reference::forward_train(&w_drop, &LstmInput::new(&x), 1).unwrap();
    let (t2, _) = reference::forward_train(&w_drop, &LstmInput::new(&x), 2).unwrap();
    assert_ne!(t1.output, eval.output);
    assert_ne!(t1.output, t2.output);
}

#[test]
fn training_applies_the_documented_mask_to_inner_layers_only() {
    let (w, x) = setup(0.5);
    let (_, cache) = reference::forward_train(&w, &LstmInput::new(&x), 11).unwrap();
    let expected = |layer| Dropout { p: 0.5, seed: 11 }.mask::<f64>(layer, 5, 2, 6);
    assert_eq!(cache.layers[0].dropout_mask, Some(expected(0)));
    assert_eq!(cache.layers[1].dropout_mask, Some(expected(1)));
    assert_eq!(
        cache.layers[2].dropout_mask, None,
        "no dropout after the last layer"
    );
    // Layer 1's saved input is layer 0's output times layer 0's mask.
    let mask = expected(0);
    for (i, &v) in cache.layers[1].input.iter().enumerate() {
        if mask[i] == 0.0 {
            assert_eq!(v, 0.0, "dropped element {i} reached the next layer");
        }
    }
}

// ---- Variational (per-sequence) input and recurrent dropout ----

use wgpu_lstm::cpu::CpuEngine;
use wgpu_lstm::dropout::{MaskKind, VariationalMask};

#[test]
fn variational_masks_keep_one_minus_p_at_the_documented_scale() {
    for (kind, p) in [(MaskKind::Recurrent, 0.3), (MaskKind::Input, 0.15)] {
        let mask = VariationalMask {
            p,
            seed: 5,
            kind,
            layer: 1,
            direction: 1,
        }
        .mask::<f64>(64, 512);
        let n = mask.len() as f64;
        let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64;
        assert!(
            mask.iter().all(|&m| m == 0.0 || m == 1.0 / (1.0 - p)),
            "kept values are exactly 1/(1-p)"
        );
        // Binomial: 4 standard deviations.
        let sd = (n * p * (1.0 - p)).sqrt();
        assert!(
            (kept - n * (1.0 - p)).abs() < 4.0 * sd,
            "{kind:?}: kept {kept} of {n}"
        );
        // The mean of the mask, the expected scale of a kept-or-dropped unit, is 1.
        let mean = mask.iter().sum::<f64>() / n;
        assert!((mean - 1.0).abs() < 4.0 * sd / n / (1.0 - p), "mean {mean}");
    }
}

#[test]
fn variational_masks_differ_by_kind_layer_direction_and_seed() {
    let base = VariationalMask {
        p: 0.5,
        seed: 9,
        kind: MaskKind::Recurrent,
        layer: 0,
        direction: 0,
    };
    let m0 = base.mask::<f32>(4, 64);
    for other in [
        VariationalMask {
            kind: MaskKind::Input,
            ..base
        },
        VariationalMask { layer: 1, ..base },
        VariationalMask {
            direction: 1,
            ..base
        },
        VariationalMask { seed: 10, ..base },
    ] {
        assert_ne!(other.mask::<f32>(4, 64), m0, "{other:?}");
    }
    assert_eq!(base.mask::<f32>(4, 64), m0, "reproducible");
}

/// Recurrent dropout multiplies h_{t-1} by the same mask at every step: row
/// b's sequence under the mask equals, with no dropout at all, the same
/// sequence alone through an LSTM whose W_hh columns are scaled by row b's
/// mask. Input dropout likewise scales W_ih's columns. Checked on the
/// reference and the CPU engine.
#[test]
fn a_sequence_has_the_same_masks_at_every_step() {
    let (p_in, p_rec, seed) = (0.3, 0.4, 21);
    let cfg = LstmConfig::new(6, 10)
        .input_dropout(p_in)
        .recurrent_dropout(p_rec);
    let w = LstmWeights::<f64>::init(&cfg, 3, InitOptions::default()).unwrap();
    let (t, b) = (7, 4);
    let input = random_tensor::<f64>(&[t, b, 6], 8, 1.0);
    let (out, _) = reference::forward_train(&w, &LstmInput::new(&input), seed).unwrap();
    let engine = CpuEngine::new();
    let w32 = w.cast::<f32>();
    let input32 = input.cast::<f32>();
    let (out32, _) = engine
        .forward_train(&w32, &LstmInput::new(&input32), seed)
        .unwrap();
    let mask = |kind, p, units| {
        VariationalMask {
            p,
            seed,
            kind,
            layer: 0,
            direction: 0,
        }
        .mask::<f64>(b, units)
    };
    let (m_in, m_rec) = (
        mask(MaskKind::Input, p_in, 6),
        mask(MaskKind::Recurrent, p_rec, 10),
    );
    assert!(
        m_rec.contains(&0.0) && m_in.contains(&0.0),
        "something is dropped"
    );
    for row in 0..b {
        let mut scaled = w.clone();
        scaled.config.input_dropout = 0.0;
        scaled.config.recurrent_dropout = 0.0;
        let l = scaled.layer_mut(0, 0);
        for (k, v) in l.weight_ih.iter_mut().enumerate() {
            *v *= m_in[row * 6 + k % 6];
        }
        for (k, v) in l.weight_hh.iter_mut().enumerate() {
            *v *= m_rec[row * 10 + k % 10];
        }
        let x_row: Vec<f64> = (0..t)
            .flat_map(|s| input.data()[(s * b + row) * 6..(s * b + row + 1) * 6].to_vec())
            .collect();
        let x_row = wgpu_lstm::Tensor::new([t, 1, 6], x_row).unwrap();
        let want = reference::forward(&scaled, &LstmInput::new(&x_row)).unwrap();
        for s in 0..t {
            let got = &out.output.data()[(s * b + row) * 10..(s * b + row + 1) * 10];
            let got32 = &out32.output.data()[(s * b + row) * 10..(s * b + row + 1) * 10];
            let want = &want.output.data()[s * 10..(s + 1) * 10];
            for j in 0..10 {
                assert!((got[j] - want[j]).abs() < 1e-12, "row {row} step {s}");
                assert!(
                    (got32[j] as f64 - want[j]).abs() < 1e-5,
                    "CPU engine row {row} step {s}"
                );
            }
        }
    }
}

#[test]
fn zero_variational_probabilities_equal_no_dropout() {
    let cfg = LstmConfig::new(4, 6).num_layers(2).bidirectional(true);
    let w = LstmWeights::<f64>::init(&cfg, 4, InitOptions::default()).unwrap();
    let input = random_tensor::<f64>(&[5, 3, 4], 2, 1.0);
    let x = LstmInput::new(&input);
    let plain = reference::forward(&w, &x).unwrap();
    let mut zero = w.clone();
    zero.config = zero.config.input_dropout(0.0).recurrent_dropout(0.0);
    for seed in [0, 1, 77] {
        assert_eq!(reference::forward_train(&zero, &x, seed).unwrap().0, plain);
    }
}
