//! `lstm-bench --gemm SIZES`: the GEMM kernel alone, in each tile, beside
//! the CPU's `gemm` crate, in GFLOP/s.

use std::error::Error;
use std::time::Instant;

use wgpu_lstm::gpu::{GemmBench, GemmLayout, GemmTile, GpuContext};

/// One product's (M, N, K) and operand layout.
type Size = (usize, usize, usize, GemmLayout);

/// Parses "1024;512x256x1600:TN" into (M, N, K) products; a single number
/// is square; the layout (`NT`, the input projection's, unless `:NN` or
/// `:TN` follows) says which operands are stored transposed.
pub(crate) fn parse_sizes(s: &str) -> Result<Vec<Size>, Box<dyn Error>> {
    s.split(';')
        .map(|p| {
            let (dims, layout) = match p.trim().split_once(':') {
                None => (p.trim(), GemmLayout::NT),
                Some((d, l)) => (
                    d,
                    match l.trim() {
                        "NN" => GemmLayout::NN,
                        "NT" => GemmLayout::NT,
                        "TN" => GemmLayout::TN,
                        _ => return Err(format!("bad GEMM layout in {p:?}: use NN, NT or TN").into()),
                    },
                ),
            };
            let dims: Vec<usize> = dims
                .split('x')
                .map(|d| d.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("bad GEMM size {p:?}: {e}"))?;
            match dims[..] {
                [n] if n > 0 => Ok((n, n, n, layout)),
                [m, n, k] if m > 0 && n > 0 && k > 0 => Ok((m, n, k, layout)),
                _ => Err(format!("bad GEMM size {p:?}: use N or MxNxK, then :NN, :NT or :TN").into()),
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

/// C[M, N] = op(A) · op(B) with the `gemm` crate on every core, the operands
/// stored as `layout` says.
fn cpu_gemm((m, n, k, layout): Size, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // Column and row strides of op(A) [M, K] and op(B) [K, N] as stored.
    let (a_cs, a_rs) = if layout.trans_a { (m, 1) } else { (1, k) };
    let (b_cs, b_rs) = if layout.trans_b { (k, 1) } else { (1, n) };
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
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
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
        "{:>19}  {:<24} {:>10} {:>9}",
        "M x N x K layout", "engine", "ms", "GFLOP/s"
    );
    for &size in sizes {
        let (m, n, k, layout) = size;
        let flops = 2.0 * (m * n * k) as f64;
        let t = |trans: bool| if trans { "T" } else { "N" };
        let label = format!("{m}x{n}x{k} {}{}", t(layout.trans_a), t(layout.trans_b));
        let row = |engine: &str, ms: f64| {
            println!(
                "{label:>19}  {engine:<24} {ms:>10.3} {:>9.2}",
                flops / ms / 1e6
            );
        };
        if let Some(ctx) = ctx {
            for tile in GemmTile::CANDIDATES {
                let bench = GemmBench::with_layout(ctx, (m, n, k), layout, tile)?;
                let ms = median_ms(iters, || Ok(bench.run(ctx, 1)?))?;
                row(&format!("gpu {tile}"), ms);
            }
        }
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0.0f32; m * n];
        let ms = median_ms(iters, || {
            cpu_gemm(size, &a, &b, &mut c);
            Ok(())
        })?;
        row("cpu gemm crate", ms);
    }
    Ok(())
}
