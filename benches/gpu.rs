//! GPU benches: the GEMM kernel alone, the forward pass, the step kernels
//! alone (GPU time from timestamp queries), and the training step (beside the
//! CPU engine's, on the same model and batch). Calls submit without
//! waiting; each timed batch of calls ends with `GpuContext::synchronize`
//! (`iter_custom`), so GPU time is real.
//!
//! Run: `cargo bench --bench gpu`. Shapes: `WGPU_LSTM_BENCH_SHAPES`
//! ("B,T,I,H;...", default two small standard shapes, since lavapipe is slow)
//! and `WGPU_LSTM_GEMM_SIZES` ("256,512,1024"). Without an adapter the bench
//! says so and measures nothing.

#[path = "common.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{forward_flops, label, training_flops};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wgpu_lstm::gpu::GemmBench as GemmRunner;
use wgpu_lstm::gpu::{GemmLayout, GpuContext, GpuLstm, GpuTensor, InitialState};
use wgpu_lstm::{
    Batch, Device, HeadKind, InitOptions, Inputs, LossKind, LstmConfig, LstmWeights, Model,
    OptimizerKind, Targets, Tensor, TrainConfig, Trainer,
};

fn shapes() -> Vec<(usize, usize, usize, usize)> {
    let spec =
        std::env::var("WGPU_LSTM_BENCH_SHAPES").unwrap_or("1,100,64,128;16,100,128,256".into());
    spec.split(';')
        .map(|s| {
            let v: Vec<usize> = s
                .split(',')
                .map(|x| x.trim().parse().expect("B,T,I,H"))
                .collect();
            (v[0], v[1], v[2], v[3])
        })
        .collect()
}

fn gemm_sizes() -> Vec<usize> {
    std::env::var("WGPU_LSTM_GEMM_SIZES")
        .unwrap_or("256,512,1024".into())
        .split(',')
        .map(|x| x.trim().parse().expect("sizes"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let ctx = match GpuContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("gpu benches skipped: {e}");
            return;
        }
    };
    eprintln!(
        "adapter: {} ({:?})",
        ctx.adapter_info().name,
        ctx.adapter_info().backend
    );

    // Square products, and the LSTM's own at (16, 100, 128, 256): the input
    // projection (NT), dW_hh (TN) and dX (NN), each in the tile the tuner
    // picks on this adapter.
    let mut g = c.benchmark_group("gpu_gemm");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    let products = gemm_sizes()
        .into_iter()
        .map(|n| ((n, n, n), GemmLayout::NT))
        .chain([
            ((1600, 1024, 128), GemmLayout::NT),
            ((1024, 256, 1600), GemmLayout::TN),
            ((1600, 128, 1024), GemmLayout::NN),
        ]);
    for ((m, n, k), layout) in products {
        let runner = GemmRunner::tuned(&ctx, (m, n, k), layout).expect("gemm buffers");
        let t = |trans: bool| if trans { "T" } else { "N" };
        let name = format!("{m}x{n}x{k}_{}{}", t(layout.trans_a), t(layout.trans_b));
        g.throughput(Throughput::Elements(runner.flops() as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                runner.run(&ctx, iters as usize).expect("gemm");
                start.elapsed()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("gpu_forward");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for (b, t, i, h) in shapes() {
        let w =
            LstmWeights::<f32>::init(&LstmConfig::new(i, h), 1, InitOptions::default()).unwrap();
        let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
        let x = GpuTensor::upload(
            &ctx,
            "x",
            &Tensor::new([t, b, i], vec![0.1; t * b * i]).unwrap(),
        )
        .unwrap();
        g.throughput(Throughput::Elements(forward_flops(b, t, i, h) as u64));
        g.bench_function(label(b, t, i, h), |bench| {
            bench.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(gpu.forward(&x, InitialState::Zeros, None).unwrap());
                }
                ctx.synchronize().unwrap();
                start.elapsed()
            })
        });
    }
    g.finish();

    // The step kernels alone: GPU time from timestamp queries, summed over the
    // T step dispatches of each forward (needs TIMESTAMP_QUERY).
    let mut g = c.benchmark_group("gpu_step_kernels");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for (b, t, i, h) in shapes() {
        let w =
            LstmWeights::<f32>::init(&LstmConfig::new(i, h), 1, InitOptions::default()).unwrap();
        let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
        if !gpu.enable_profiling().unwrap() {
            eprintln!("gpu_step_kernels skipped: the adapter has no TIMESTAMP_QUERY");
            break;
        }
        let x = GpuTensor::upload(
            &ctx,
            "x",
            &Tensor::new([t, b, i], vec![0.1; t * b * i]).unwrap(),
        )
        .unwrap();
        // The recurrent products: 8·H·H·B·T FLOPs per forward.
        g.throughput(Throughput::Elements((8 * h * h * b * t) as u64));
        g.bench_function(label(b, t, i, h), |bench| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    gpu.forward(&x, InitialState::Zeros, None).unwrap();
                    total += Duration::from_secs_f64(gpu.kernel_times().unwrap().steps_ms / 1e3);
                }
                total
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("training_step");
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for (b, t, i, h) in shapes() {
        let model =
            Model::<f32>::new(None, &LstmConfig::new(i, h), 1, HeadKind::PerStep, 1).unwrap();
        let config = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(1e-4));
        let x = vec![0.1f32; t * b * i];
        let y = vec![0.0f32; t * b];
        let batch = Batch {
            seq_len: t,
            batch: b,
            inputs: Inputs::Features(&x),
            targets: Targets::Values(&y),
            lengths: None,
        };
        g.throughput(Throughput::Elements(training_flops(b, t, i, h) as u64));
        let device = Device::from_context(ctx.clone());
        let mut gpu = Trainer::new(&device, model.clone(), config.clone()).unwrap();
        g.bench_function(format!("gpu/{}", label(b, t, i, h)), |bench| {
            bench.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    gpu.step(&batch).unwrap();
                }
                ctx.synchronize().unwrap();
                start.elapsed()
            })
        });
        let mut cpu = Trainer::new(&Device::cpu(), model, config).unwrap();
        g.bench_function(format!("cpu/{}", label(b, t, i, h)), |bench| {
            bench.iter(|| cpu.step(black_box(&batch)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
