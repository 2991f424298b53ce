//! The CPU engine at the standard shapes: inference (forward) and a
//! training step (forward in training mode + backward through time), one
//! layer, f32. Compare with `tools/bench_pytorch.py --device cpu`, which
//! times PyTorch's `nn.LSTM` on the same shapes and modes.
//!
//! Run: `cargo bench --bench cpu_lstm`

#[path = "common.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{STANDARD_SHAPES, forward_flops, label, training_flops};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_lstm::cpu::CpuEngine;
use wgpu_lstm::reference::OutputGrads;
use wgpu_lstm::{InitOptions, LstmConfig, LstmInput, LstmWeights, Tensor};

fn random(shape: [usize; 3], seed: u64) -> Tensor<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = (0..shape.iter().product())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    Tensor::new(shape, data).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut forward = c.benchmark_group("cpu_forward");
    forward.sample_size(10).warm_up_time(Duration::from_secs(1));
    for (b, t, i, h) in STANDARD_SHAPES {
        let w =
            LstmWeights::<f32>::init(&LstmConfig::new(i, h), 1, InitOptions::default()).unwrap();
        let x = random([t, b, i], 2);
        forward.throughput(Throughput::Elements(forward_flops(b, t, i, h) as u64));
        forward.bench_function(label(b, t, i, h), |bench| {
            bench.iter(|| black_box(CpuEngine::new().forward(&w, &LstmInput::new(&x)).unwrap()))
        });
    }
    forward.finish();

    let mut train = c.benchmark_group("cpu_training_step");
    train.sample_size(10).warm_up_time(Duration::from_secs(1));
    for (b, t, i, h) in STANDARD_SHAPES {
        let w =
            LstmWeights::<f32>::init(&LstmConfig::new(i, h), 1, InitOptions::default()).unwrap();
        let x = random([t, b, i], 2);
        let dy = random([t, b, h], 3);
        train.throughput(Throughput::Elements(training_flops(b, t, i, h) as u64));
        train.bench_function(label(b, t, i, h), |bench| {
            bench.iter(|| {
                let (_, cache) = CpuEngine::new()
                    .forward_train(&w, &LstmInput::new(&x), 0)
                    .unwrap();
                let grads = OutputGrads {
                    d_output: &dy,
                    d_h_n: None,
                    d_c_n: None,
                };
                black_box(CpuEngine::new().backward(&w, &cache, &grads).unwrap())
            })
        });
    }
    train.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
