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
