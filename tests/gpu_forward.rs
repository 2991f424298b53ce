//! The GPU forward pass against the CPU reference.

mod common;

use common::gpu::gpu_or_skip;
use common::{assert_close, random_tensor};
use wgpu_lstm::cpu;
use wgpu_lstm::gpu::GpuLstm;
use wgpu_lstm::{InitOptions, LstmConfig, LstmInput, LstmWeights};

struct Case {
    config: LstmConfig,
    seq_len: usize,
    batch: usize,
    lengths: Option<Vec<usize>>,
    with_state: bool,
    scale: f64,
}

fn case(config: LstmConfig, seq_len: usize, batch: usize) -> Case {
    Case {
        config,
        seq_len,
        batch,
        lengths: None,
        with_state: false,
        scale: 1.0,
    }
}

/// Runs `case` on the CPU and the GPU and compares output, h_n and c_n.
fn check(name: &str, c: Case, atol: f64) {
    let Some(ctx) = gpu_or_skip(name) else { return };
    let cfg = &c.config;
    let w = LstmWeights::<f32>::init(cfg, 17, InitOptions::default()).unwrap();
    let (t, b) = (c.seq_len, c.batch);
    let shape = if cfg.batch_first {
        [b, t, cfg.input_size]
    } else {
        [t, b, cfg.input_size]
    };
    let input = random_tensor::<f32>(&shape, 3, c.scale);
    let state_shape = [cfg.num_layers * cfg.num_directions(), b, cfg.hidden_size];
    let (h0, c0) = (
        random_tensor::<f32>(&state_shape, 4, 0.5),
        random_tensor::<f32>(&state_shape, 5, 0.5),
    );
    let mut x = LstmInput::new(&input);
    if c.with_state {
        x = x.with_state(&h0, &c0);
    }
    if let Some(l) = &c.lengths {
        x = x.with_lengths(l);
    }
    let want = cpu::forward(&w, &x).unwrap();
    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    let got = gpu.forward_host(&x).unwrap();
    for (k, g, e) in [
        ("output", &got.output, &want.output),
        ("h_n", &got.h_n, &want.h_n),
        ("c_n", &got.c_n, &want.c_n),
    ] {
        assert_eq!(g.shape(), e.shape(), "{name}/{k}");
        assert!(
            g.data().iter().all(|v| v.is_finite()),
            "{name}/{k}: non-finite"
        );
        assert_close(&format!("{name}/{k}"), g.data(), e.data(), atol, 0.0);
    }
}

#[test]
fn single_layer_matches_cpu() {
    check("single_layer", case(LstmConfig::new(5, 8), 6, 3), 1e-5);
}

#[test]
fn grid_matches_cpu() {
    let mut n = 0;
    for layers in 1..=3 {
        for bidirectional in [false, true] {
            for (h, i) in [(1, 1), (7, 3), (33, 5), (100, 7)] {
                for bias in [true, false] {
                    let cfg = LstmConfig::new(i, h)
                        .num_layers(layers)
                        .bidirectional(bidirectional)
                        .bias(bias)
                        .batch_first(n % 2 == 1);
                    let mut c = case(cfg, 1 + (n % 5), 1 + (n % 4));
                    c.with_state = n % 3 == 0;
                    if c.batch > 1 {
                        c.lengths =
                            Some((0..c.batch).map(|k| 1 + (k * 7 + n) % c.seq_len).collect());
                    }
                    check(
                        &format!(
                            "grid case {n}: L={layers} bidir={bidirectional} H={h} I={i} bias={bias}"
                        ),
                        c,
                        1e-5,
                    );
                    n += 1;
                }
            }
        }
    }
}
