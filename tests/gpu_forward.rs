//! The GPU forward pass against the reference, run in f64 on the same
//! (f32-valued) weights and inputs.

mod common;

use common::assert_close;
use common::case::Case;
use common::gpu::gpu_or_skip;
use wgpu_lstm::gpu::GpuLstm;
use wgpu_lstm::reference;
use wgpu_lstm::{InitOptions, LstmConfig, LstmWeights};

/// Runs `case` on the CPU and the GPU and compares output, h_n and c_n.
fn check(name: &str, c: Case, atol: f64) {
    let Some(ctx) = gpu_or_skip(name) else { return };
    let w = LstmWeights::<f32>::init(&c.config, 17, InitOptions::default()).unwrap();
    // Seeds 3 (input), 4 (h_0), 5 (c_0).
    let data = c.data::<f32>(3);
    let x = c.input(&data);
    let data64 = data.cast::<f64>();
    let want = reference::forward(&w.cast::<f64>(), &c.input(&data64)).unwrap();
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
    check("single_layer", Case::new(LstmConfig::new(5, 8), 6, 3), 1e-5);
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
                    let mut c = Case::new(cfg, 1 + (n % 5), 1 + (n % 4));
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
