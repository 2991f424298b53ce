//! Two GEMM crates on the products an LSTM step makes at the standard shapes
//! (f32, row-major): `gemm`, which the reference and the CPU engine use, and
//! `matrixmultiply` for comparison:
//! - `proj`: the input projection, [T·B, I] · [I, 4H]ᵀ-stored weights;
//! - `recur`: one recurrent step, [B, H] · W_hhᵀ. At B = 1 it is a
//!   matrix-vector product, where packing GEMMs pay overhead for nothing;
//! - `dw`: a weight gradient, dGᵀ · X over all T·B rows;
//! - `square_1024`: 1024³, as `benches/gpu.rs` times the GEMM kernel.
//!
//! Run: `cargo bench --bench cpu_gemm`. Throughput is in FLOPs (2·m·n·k).

#[path = "common.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::STANDARD_SHAPES;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Which crate computes the product.
#[derive(Clone, Copy, Debug)]
enum GemmBackend {
    Gemm,
    MatrixMultiply,
}

/// A row-major `[rows, cols]` matrix, or its transpose, as (data, rows,
/// cols, row stride, column stride).
#[derive(Clone, Copy)]
struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl<'a> MatRef<'a> {
    fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols as isize,
            cs: 1,
        }
    }

    fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// c = a · b with the chosen crate, on every core.
fn matmul_with(backend: GemmBackend, c: &mut [f32], a: MatRef<'_>, b: MatRef<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k && c.len() >= m * n);
    assert!(a.data.len() >= m * k && b.data.len() >= k * n);
    // SAFETY: the asserts keep every index inside its slice.
    unsafe {
        match backend {
            GemmBackend::Gemm => gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.data.as_ptr(),
                a.cs,
                a.rs,
                b.data.as_ptr(),
                b.cs,
                b.rs,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            ),
            GemmBackend::MatrixMultiply => matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.data.as_ptr(),
                a.rs,
                a.cs,
                b.data.as_ptr(),
                b.rs,
                b.cs,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            ),
        }
    }
}

/// (name, m, n, k, a transposed?, b transposed?)
fn products() -> Vec<(String, usize, usize, usize, bool, bool)> {
    let mut out = Vec::new();
    for (b, t, i, h) in STANDARD_SHAPES {
        out.push((format!("proj_B{b}_H{h}"), t * b, 4 * h, i, false, true));
        out.push((format!("recur_B{b}_H{h}"), b, 4 * h, h, false, true));
        out.push((format!("dw_B{b}_H{h}"), 4 * h, h, t * b, true, false));
    }
    // The GPU GEMM bench's square product (C = A · Bᵀ), for a like-for-like ratio.
    out.push(("square_1024".into(), 1024, 1024, 1024, false, true));
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_gemm");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, m, n, k, ta, tb) in products() {
        let a: Vec<f32> = (0..m * k).map(|x| (x % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|x| (x % 5) as f32 * 0.1).collect();
        let mut c_out = vec![0f32; m * n];
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        for backend in [GemmBackend::Gemm, GemmBackend::MatrixMultiply] {
            let am = if ta {
                MatRef::new(&a, k, m).t()
            } else {
                MatRef::new(&a, m, k)
            };
            let bm = if tb {
                MatRef::new(&b, n, k).t()
            } else {
                MatRef::new(&b, k, n)
            };
            group.bench_function(BenchmarkId::new(format!("{backend:?}"), &name), |bench| {
                bench.iter(|| {
                    matmul_with(backend, &mut c_out, am, bm);
                    black_box(&c_out);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
