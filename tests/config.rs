//! `LstmConfig` validation and PyTorch-style initialisation.

use wgpu_lstm::{InitOptions, LstmConfig, LstmError, LstmWeights};

fn field_of(err: LstmError) -> &'static str {
    match err {
        LstmError::InvalidConfig { field, .. } => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn defaults_are_pytorchs() {
    let c = LstmConfig::new(10, 20);
    assert_eq!((c.num_layers, c.bias, c.batch_first), (1, true, false));
    assert_eq!((c.dropout, c.bidirectional), (0.0, false));
    c.validate().unwrap();
}

#[test]
fn zero_sizes_are_rejected() {
    assert_eq!(
        field_of(LstmConfig::new(0, 4).validate().unwrap_err()),
        "input_size"
    );
    assert_eq!(
        field_of(LstmConfig::new(4, 0).validate().unwrap_err()),
        "hidden_size"
    );
    let no_layers = LstmConfig::new(4, 4).num_layers(0);
    assert_eq!(field_of(no_layers.validate().unwrap_err()), "num_layers");
}

#[test]
fn dropout_outside_unit_interval_is_rejected() {
    for p in [-0.1, 1.0, 1.5, f64::NAN] {
        let c = LstmConfig::new(4, 4).num_layers(2).dropout(p);
        assert_eq!(field_of(c.validate().unwrap_err()), "dropout", "p = {p}");
    }
    // Allowed, as in PyTorch (which warns): dropout with a single layer does nothing.
    LstmConfig::new(4, 4).dropout(0.5).validate().unwrap();
}

#[test]
fn init_draws_from_plus_minus_one_over_sqrt_h_and_is_seeded() {
    let cfg = LstmConfig::new(7, 16).num_layers(2).bidirectional(true);
    let a = LstmWeights::<f32>::init(&cfg, 3, InitOptions::default()).unwrap();
    let b = LstmWeights::<f32>::init(&cfg, 3, InitOptions::default()).unwrap();
    let c = LstmWeights::<f32>::init(&cfg, 4, InitOptions::default()).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let bound = 1.0 / 16f32.sqrt();
    let all: Vec<f32> = a
        .named_params()
        .iter()
        .flat_map(|(_, _, v)| v.to_vec())
        .collect();
    assert!(all.iter().all(|v| v.abs() <= bound));
    // Uniform on [-k, k): variance k²/3.
    let var = all.iter().map(|v| v * v).sum::<f32>() / all.len() as f32;
    assert!(
        (var - bound * bound / 3.0).abs() < 0.05 * bound * bound,
        "variance {var}"
    );
    let names: Vec<String> = a.named_params().into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(
        &names[..5],
        [
            "weight_ih_l0",
            "weight_hh_l0",
            "bias_ih_l0",
            "bias_hh_l0",
            "weight_ih_l0_reverse"
        ]
    );
    assert_eq!(
        a.num_params(),
        2 * (64 * 7 + 64 * 16 + 128) + 2 * (64 * 32 + 64 * 16 + 128)
    );
}

#[test]
fn unit_forget_bias_sets_the_forget_gate_bias_to_one() {
    let cfg = LstmConfig::new(3, 5).num_layers(2);
    let opts = InitOptions {
        unit_forget_bias: true,
    };
    let w = LstmWeights::<f64>::init(&cfg, 1, opts).unwrap();
    for lw in &w.layers {
        let (bi, bh) = (lw.bias_ih.as_ref().unwrap(), lw.bias_hh.as_ref().unwrap());
        for j in 0..5 {
            assert_eq!(bi[5 + j] + bh[5 + j], 1.0);
        }
        // The other gates keep their uniform draw.
        assert!(bi[..5].iter().any(|&v| v != 0.0 && v.abs() < 1.0));
    }
    let no_bias = cfg.bias(false);
    assert_eq!(
        field_of(LstmWeights::<f32>::init(&no_bias, 1, opts).unwrap_err()),
        "bias"
    );
}
