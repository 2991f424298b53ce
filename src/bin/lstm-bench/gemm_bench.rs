//! `lstm-bench --gemm SIZES`: the GEMM kernel alone, in each tile, beside
//! the CPU's `gemm` crate, in GFLOP/s.

use std::error::Error;
use std::time::Instant;

use wgpu_lstm::gpu::{GemmBench, GemmTile, GpuContext};

/// One product's (M, N, K).
type Size = (usize, usize, usize);

/// Parses "1024;512x256x1600" into (M, N, K) products; a single number is
/// square.
pub(crate) fn parse_sizes(s: &str) -> Result<Vec<Size>, Box<dyn Error>> {
    s.split(';')
        .map(|p| {
            let dims: Vec<usize> = p
                .trim()
                .split('x')
                .map(|d| d.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("bad GEMM size {p:?}: {e}"))?;
            match dims[..] {
                [n] if n > 0 => Ok((n, n, n)),
                [m, n, k] if m > 0 && n > 0 && k > 0 => Ok((m, n, k)),
                _ => Err(format!("bad GEMM size {p:?}: use N or MxNxK").into()),
            }
        })
        .collect()
}

/// The median of `iters` timed runs of `f` after one warm-up, in ms.
fn median_ms(
    iters: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn Error>>,
) -> Result<f64, Box<dyn Error>> {
    f()?;
    let mut t = Vec::new();
    for _ in 0..iters {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// C[M, N] = A[M, K] · B[K, N] with the `gemm` crate on every core.
fn cpu_gemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // SAFETY: the assert keeps every index of the row-major operands inside
    // its slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// Times every GEMM tile on `ctx` and the CPU's `gemm` crate at `sizes`,
/// and prints one row per size and engine.
pub(crate) fn run(
    ctx: Option<&GpuContext>,
    sizes: &[Size],
    iters: usize,
) -> Result<(), Box<dyn Error>> {
    println!(
        "{:>16}  {:<24} {:>10} {:>9}",
        "M x N x K", "engine", "ms", "GFLOP/s"
    );
    for &(m, n, k) in sizes {
        let flops = 2.0 * (m * n * k) as f64;
        let label = format!("{m}x{n}x{k}");
        let row = |engine: &str, ms: f64| {
            println!(
                "{label:>16}  {engine:<24} {ms:>10.3} {:>9.2}",
                flops / ms / 1e6
            );
        };
        if let Some(ctx) = ctx {
            for tile in GemmTile::CANDIDATES {
                let bench = GemmBench::with_tile(ctx, m, n, k, tile)?;
                let ms = median_ms(iters, || Ok(bench.run(ctx, 1)?))?;
                row(&format!("gpu {tile}"), ms);
            }
        }
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0.0f32; m * n];
        let ms = median_ms(iters, || {
            cpu_gemm(m, n, k, &a, &b, &mut c);
            Ok(())
        })?;
        row("cpu gemm crate", ms);
    }
    Ok(())
}
