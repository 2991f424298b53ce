//! Runs the reference LSTM (`wgpu_lstm::reference`, the plain-loop
//! specification every engine is held to) on a small problem and prints what
//! it computed: a 2-layer bidirectional LSTM over a batch of variable-length
//! sequences, forward and backward through time in f64, with a
//! finite-difference spot check of one gradient.
//!
//! Run: `cargo run --release --example cpu_reference`

use std::time::Instant;

use wgpu_lstm::reference::{self, OutputGrads};
use wgpu_lstm::{InitOptions, LstmConfig, LstmInput, LstmWeights, Result, Tensor};

fn main() -> Result<()> {
    // nn.LSTM(input_size=8, hidden_size=16, num_layers=2, bidirectional=True)
    let config = LstmConfig::new(8, 16).num_layers(2).bidirectional(true);
    let weights = LstmWeights::<f64>::init(&config, 42, InitOptions::default())?;
    let (seq_len, batch) = (12, 3);
    println!(
        "LSTM: input_size {}, hidden_size {}, {} layers, bidirectional, {} parameters",
        config.input_size,
        config.hidden_size,
        config.num_layers,
        weights.num_params()
    );

    // A deterministic input: three phase-shifted sine waves, lengths 12, 7, 3.
    let data = (0..seq_len * batch * config.input_size)
        .map(|k| {
            let (t, rest) = (k / (batch * 8), k % (batch * 8));
            let (b, f) = (rest / 8, rest % 8);
            ((t as f64) * 0.5 + b as f64 + f as f64 * 0.3).sin()
        })
        .collect();
    let input = Tensor::new([seq_len, batch, config.input_size], data)?;
    let lengths = [12, 7, 3];
    let x = LstmInput::new(&input).with_lengths(&lengths);

    let start = Instant::now();
    let (out, cache) = reference::forward_train(&weights, &x, 0)?;
    let forward_time = start.elapsed();
    println!("input {:?}, lengths {lengths:?}", input.shape());
    println!(
        "output {:?}  h_n {:?}  c_n {:?}",
        out.output.shape(),
        out.h_n.shape(),
        out.c_n.shape()
    );
    let row =
        |t: usize, b: usize| &out.output.data()[(t * batch + b) * 32..(t * batch + b) * 32 + 4];
    println!("output[0, 0, :4]  = {:+.5?}", row(0, 0));
    println!(
        "output[6, 1, :4]  = {:+.5?}  (last valid step of sequence 1)",
        row(6, 1)
    );
    println!("output[7, 1, :4]  = {:+.5?}  (padding: zero)", row(7, 1));
    println!(
        "h_n[top layer, forward, seq 0, :4] = {:+.5?}",
        &out.h_n.data()[2 * batch * 16..2 * batch * 16 + 4]
    );

    // Loss = Σ output²/2, so d_output = output.
    let loss = |o: &Tensor<f64>| o.data().iter().map(|v| v * v / 2.0).sum::<f64>();
    let start = Instant::now();
    let grads = reference::backward(
        &weights,
        &cache,
        &OutputGrads {
            d_output: &out.output,
            d_h_n: None,
            d_c_n: None,
        },
    )?;
    let backward_time = start.elapsed();
    println!("loss = Σ output²/2 = {:.6}", loss(&out.output));
    for (name, _, g) in grads.weights.named_params().iter().take(4) {
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        println!("‖∂loss/∂{name}‖ = {norm:.6}");
    }

    // Finite-difference check of one weight: (L(w+ε) - L(w-ε)) / 2ε.
    let eps = 1e-6;
    let probe = |delta: f64| -> Result<f64> {
        let mut w = weights.clone();
        w.layer_mut(0, 1).weight_hh[5] += delta;
        Ok(loss(&reference::forward(&w, &x)?.output))
    };
    let numeric = (probe(eps)? - probe(-eps)?) / (2.0 * eps);
    let analytic = grads.weights.layer(0, 1).weight_hh[5];
    println!(
        "∂loss/∂weight_hh_l0_reverse[0,5]: backward {analytic:.9}, finite difference {numeric:.9}"
    );
    println!("forward {forward_time:.2?}, backward {backward_time:.2?} (f64, reference)");
    Ok(())
}
