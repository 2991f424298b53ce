//! The project's main job in miniature: one LSTM with the same weights and
//! inputs on the CPU engine and on the GPU, each held to the reference (the
//! plain-loop specification), with the largest difference and the time each
//! took.
//!
//! Run: `cargo run --release --example quickstart`

use std::time::Instant;

use wgpu_lstm::{
    Device, InitOptions, Lstm, LstmConfig, LstmInput, LstmWeights, Result, Tensor, reference,
};

fn main() -> Result<()> {
    // nn.LSTM(32, 64, num_layers=2, bidirectional=True), batch 8, 50 steps,
    // sequences of unequal length.
    let config = LstmConfig::new(32, 64).num_layers(2).bidirectional(true);
    let weights = LstmWeights::<f32>::init(&config, 7, InitOptions::default())?;
    let (t, b) = (50, 8);
    let data = (0..t * b * 32).map(|k| ((k as f32) * 0.37).sin()).collect();
    let input = Tensor::new([t, b, 32], data)?;
    let lengths = [50, 45, 40, 35, 30, 25, 20, 15];
    let x = LstmInput::new(&input).with_lengths(&lengths);
    println!(
        "LSTM {} → {}, {} layers, bidirectional; input [T={t}, B={b}, I=32], lengths {lengths:?}",
        config.input_size, config.hidden_size, config.num_layers
    );

    let start = Instant::now();
    let spec = reference::forward(&weights, &x)?;
    println!("reference: {:.2?}", start.elapsed());
    println!(
        "output[49, 0, :4] = {:+.5?}",
        &spec.output.data()[49 * b * 128..49 * b * 128 + 4]
    );

    let max_diff = |a: &Tensor<f32>, b: &Tensor<f32>| {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    for device in [Ok(Device::cpu()), Device::gpu()] {
        let device = match device {
            Ok(device) => device,
            Err(e) => {
                println!("GPU: skipped ({e})");
                continue;
            }
        };
        let mut lstm = Lstm::new(&device, &weights)?;
        lstm.forward(&x)?; // the first call builds the buffers for this shape
        let start = Instant::now();
        let out = lstm.forward(&x)?;
        println!(
            "{}: {:.2?}; max |out - reference|: output {:.2e}, h_n {:.2e}, c_n {:.2e}",
            device.name(),
            start.elapsed(),
            max_diff(&out.output, &spec.output),
            max_diff(&out.h_n, &spec.h_n),
            max_diff(&out.c_n, &spec.c_n)
        );
    }
    Ok(())
}
