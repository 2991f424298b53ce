//! The project's main job in miniature: one LSTM, run by the CPU reference
//! and by the GPU engine on the same weights and inputs, with the largest
//! difference between them, the time each took and the GPU work counted.
//!
//! Run: `cargo run --release --example quickstart`

use std::time::Instant;

use wgpu_lstm::gpu::{GpuContext, GpuLstm};
use wgpu_lstm::{InitOptions, LstmConfig, LstmInput, LstmWeights, Result, Tensor, cpu};

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
    let reference = cpu::forward(&weights, &x)?;
    println!("CPU reference: {:.2?}", start.elapsed());

    let ctx = match GpuContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            println!("GPU: skipped ({e})");
            return Ok(());
        }
    };
    let info = ctx.adapter_info();
    println!(
        "GPU: {} ({:?}, {:?}, {})",
        info.name, info.backend, info.device_type, info.driver
    );
    let mut gpu = GpuLstm::new(&ctx, &weights)?;
    gpu.forward_host(&x)?; // first call builds the buffers for this shape
    let before = ctx.counters();
    let start = Instant::now();
    let out = gpu.forward_host(&x)?;
    let elapsed = start.elapsed();
    let work = ctx.counters() - before;
    println!(
        "GPU forward: {elapsed:.2?}, {} submit, {} dispatches, {} buffers created",
        work.submits, work.dispatches, work.buffers
    );
    let max_diff = |a: &Tensor<f32>, b: &Tensor<f32>| {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    println!(
        "max |GPU - CPU|: output {:.2e}, h_n {:.2e}, c_n {:.2e}",
        max_diff(&out.output, &reference.output),
        max_diff(&out.h_n, &reference.h_n),
        max_diff(&out.c_n, &reference.c_n)
    );
    println!(
        "output[49, 0, :4] = {:+.5?}",
        &out.output.data()[49 * b * 128..49 * b * 128 + 4]
    );
    Ok(())
}
