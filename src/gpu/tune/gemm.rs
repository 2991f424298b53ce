//! Tuning the GEMM kernel: which [`GemmTile`] computes a product fastest on
//! this adapter, per operand types, layout and size class (each dimension
//! rounded up to a power of two).

use super::{Candidate, TuneReport, select};
use crate::error::Result;
use crate::gpu::kernels::{
    BoundGemm, GemmKernel, GemmLayout, GemmOp, GemmParams, GemmTile, GemmTypes,
};
use crate::gpu::tensor::TENSOR_USAGE;
use crate::gpu::{GpuContext, Precision};

/// The family's name in reports and the cache.
pub(crate) const FAMILY: &str = "gemm";

/// Timed repetitions (after one warm-up); the median counts.
const REPEATS: usize = 3;
/// The longest reduction timed: K only lengthens every tile's loop alike.
const TIMED_K: u32 = 256;

fn bucket(v: u32, max: u32) -> u32 {
    v.max(16).next_power_of_two().min(max)
}

/// The size class of an M × N product: each dimension rounded up to a
/// power of two, at most 4096. (K only lengthens every tile's loop alike.)
pub(crate) fn class(types: GemmTypes, layout: GemmLayout, p: &GemmParams) -> String {
    let t = |p: Precision| p.to_string();
    format!(
        "{}/{}/{}/{} {}{} {}x{}",
        t(types.a),
        t(types.b),
        t(types.bias),
        t(types.c),
        if layout.trans_a { "T" } else { "N" },
        if layout.trans_b { "T" } else { "N" },
        bucket(p.m, 4096),
        bucket(p.n, 4096),
    )
}

pub(crate) fn name(t: GemmTile) -> String {
    t.to_string()
}

pub(crate) fn parse(s: &str) -> Option<GemmTile> {
    GemmTile::CANDIDATES.into_iter().find(|t| name(*t) == s)
}

/// A buffer of `values` stored as `precision`.
fn buffer(ctx: &GpuContext, values: &[f32], precision: Precision) -> Result<wgpu::Buffer> {
    let bytes = crate::gpu::params::to_bytes(values, precision);
    let b = ctx.create_buffer("gemm tuning", bytes.len().max(4) as u64, TENSOR_USAGE)?;
    ctx.queue().write_buffer(&b, 0, &bytes);
    Ok(b)
}

/// `params` over the buffers A, B, bias and C, in `tile`'s pipeline for
/// them (`vec4` loads where aligned), with K in `splits` parallel slices.
fn bind(
    ctx: &GpuContext,
    types: GemmTypes,
    layout: GemmLayout,
    tile: GemmTile,
    params: GemmParams,
    [a, b, bias, c]: [&wgpu::Buffer; 4],
    splits: u32,
) -> Result<BoundGemm> {
    let kernel = GemmKernel::for_params(ctx, types, layout, tile, &params);
    let op = GemmOp {
        params,
        a,
        b,
        bias,
        c,
    };
    BoundGemm::split(ctx, kernel, &op, splits)
}

/// Checks `tile` on a product with edge tiles in M, N and K and the
/// epilogue, in the class's types and layout, against f64; with `splits` >
/// 1, K split into that many parallel slices (and the epilogue adding to
/// C, without a bias). `None` when it agrees within a gross-error screen
/// (1e-3 of the largest term sum in f32 storage, 2e-2 with f16 operands; a
/// wrong kernel is off by O(1)).
/// A tile that loads `vec4`s is also checked on an aligned product with
/// whole tiles, where it does.
fn check(
    ctx: &GpuContext,
    types: GemmTypes,
    layout: GemmLayout,
    tile: GemmTile,
    splits: u32,
) -> Result<Option<String>> {
    // Long enough for `splits` slices of 64 rows, with a short last one.
    let k = if splits > 1 { 64 * splits + 45 } else { 45 };
    let wrong = check_product(ctx, types, layout, tile, splits, (70, 37, k))?;
    if wrong.is_some() || !tile.vectorizable() {
        return Ok(wrong);
    }
    let whole = (tile.bm + 8, tile.bn + 4, k + 7);
    Ok(check_product(ctx, types, layout, tile, splits, whole)?
        .map(|why| format!("with vec4 loads: {why}")))
}

fn check_product(
    ctx: &GpuContext,
    types: GemmTypes,
    layout: GemmLayout,
    tile: GemmTile,
    splits: u32,
    (m, n, k): (u32, u32, u32),
) -> Result<Option<String>> {
    let split = splits > 1;
    let (m, n, k) = (m as usize, n as usize, k as usize);
    let value = |i: usize, s: usize| ((i * s + 3) % 29) as f32 / 14.0 - 1.0;
    // Values rounded through each operand's storage type, so that the
    // reference sees what the kernel reads.
    let stored = |v: f32, p: Precision| match p {
        Precision::F32 => v,
        Precision::F16 => half::f16::from_f32(v).to_f32(),
    };
    let a: Vec<f32> = (0..m * k).map(|i| stored(value(i, 7), types.a)).collect();
    let b: Vec<f32> = (0..k * n).map(|i| stored(value(i, 5), types.b)).collect();
    let bias: Vec<f32> = (0..2 * n)
        .map(|i| stored(value(i, 3), types.bias))
        .collect();
    let old: Vec<f32> = (0..m * n).map(|i| stored(value(i, 11), types.c)).collect();
    let epilogue = match split {
        true => GemmParams::ACCUMULATE,
        false => GemmParams::BIAS | GemmParams::BIAS_PAIR | GemmParams::ACCUMULATE,
    };
    let params = GemmParams::dense(m as u32, n as u32, k as u32, layout, epilogue);
    let (ga, gb, gbias, gc) = (
        buffer(ctx, &a, types.a)?,
        buffer(ctx, &b, types.b)?,
        buffer(ctx, &bias, types.bias)?,
        buffer(ctx, &old, types.c)?,
    );
    bind(
        ctx,
        types,
        layout,
        tile,
        params,
        [&ga, &gb, &gbias, &gc],
        splits,
    )?
    .run(ctx, 1)?;
    let bytes = crate::gpu::tensor::read_buffers(ctx, &[&gc])?;
    let got = crate::gpu::params::from_bytes(&bytes[0], m * n, types.c);
    let tol = match types {
        t if t == GemmTypes::default() => 1e-3,
        _ => 2e-2,
    };
    let mut worst = 0.0f64;
    for i in 0..m {
        for j in 0..n {
            let at = |p: usize| match layout.trans_a {
                true => a[p * m + i],
                false => a[i * k + p],
            } as f64
                * match layout.trans_b {
                    true => b[j * k + p],
                    false => b[p * n + j],
                } as f64;
            let scale: f64 = (0..k).map(|p| at(p).abs()).sum::<f64>() + 4.0;
            let biases = match split {
                true => 0.0,
                false => bias[j] as f64 + bias[n + j] as f64,
            };
            let want: f64 = (0..k).map(at).sum::<f64>() + biases + old[i * n + j] as f64;
            let e = (got[i * n + j] as f64 - want).abs() / scale;
            if e.is_nan() || e > worst {
                worst = e;
            }
        }
    }
    Ok((worst.is_nan() || worst > tol)
        .then(|| format!("off by {worst:.2e} of its terms' magnitude (tolerance {tol:.0e})")))
}

/// Times `tile` on an M × N × K product (K split into `splits` parallel
/// slices): wall time to the finished result, the median of a few runs.
fn time(
    ctx: &GpuContext,
    types: GemmTypes,
    layout: GemmLayout,
    tile: GemmTile,
    (m, n, k): (u32, u32, u32),
    splits: u32,
) -> Result<f64> {
    let params = GemmParams::dense(m, n, k, layout, 0);
    let zeros = |len: u32, p: Precision| buffer(ctx, &vec![0.0; len as usize], p);
    let (ga, gb, gc) = (
        zeros(m * k, types.a)?,
        zeros(k * n, types.b)?,
        zeros(m * n, types.c)?,
    );
    // Bound once; each run is one submit and one wait.
    let bound = bind(
        ctx,
        types,
        layout,
        tile,
        params,
        [&ga, &gb, &ga, &gc],
        splits,
    )?;
    let mut runs = Vec::new();
    for i in 0..=REPEATS {
        let start = std::time::Instant::now();
        bound.run(ctx, 1)?;
        if i > 0 {
            runs.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    runs.sort_by(f64::total_cmp);
    Ok(runs[runs.len() / 2])
}

/// Chooses the tile for the class of `p` by checking and timing every
/// candidate on `ctx`.
pub(crate) fn tune_gemm(
    ctx: &GpuContext,
    types: GemmTypes,
    layout: GemmLayout,
    p: &GemmParams,
) -> Result<(GemmTile, TuneReport)> {
    let class = class(types, layout, p);
    let dims = (bucket(p.m, 4096), bucket(p.n, 4096), bucket(p.k, TIMED_K));
    let candidates: Vec<Candidate<GemmTile>> = GemmTile::CANDIDATES
        .into_iter()
        .map(|config| Candidate {
            config,
            name: name(config),
        })
        .collect();
    // At most about 0.25 GFLOP per run (K at least 32), so that tuning a
    // large class stays quick on slow adapters.
    let (m, n, k) = dims;
    let k = k.min((125_000_000 / (m as u64 * n as u64)).max(32) as u32);
    let s = select(
        FAMILY,
        &class,
        &candidates,
        |t| check(ctx, types, layout, t, 1),
        |t| time(ctx, types, layout, t, (m, n, k), 1),
    )?;
    let chosen = s.chosen;
    Ok((chosen, TuneReport::measured(FAMILY, class, s, "wall")))
}

/// The family of parallel split-K counts.
pub(crate) const SPLIT_FAMILY: &str = "gemm split-k";

/// The split counts tried: K in this many parallel slices, then a column
/// sum of the slices (1: unsplit).
pub(crate) const SPLITS: [u32; 5] = [1, 2, 4, 8, 16];

/// The split class of a product: its GEMM class and K rounded up to a
/// power of two (at most one block of [`GEMM_K_CHUNK`] rows).
pub(crate) fn split_class(types: GemmTypes, layout: GemmLayout, p: &GemmParams) -> String {
    format!(
        "{} k{}",
        class(types, layout, p),
        bucket(p.k, crate::gpu::kernels::GEMM_K_CHUNK)
    )
}

pub(crate) fn parse_splits(s: &str) -> Option<u32> {
    s.parse().ok().filter(|s| SPLITS.contains(s))
}

/// Chooses how many parallel slices of K the products of `p`'s split class
/// run in, with `tile`, by checking and timing each count on `ctx` (the
/// product timed at the class's M, N and K, at most about 0.5 GFLOP).
pub(crate) fn tune_splits(
    ctx: &GpuContext,
    types: GemmTypes,
    layout: GemmLayout,
    tile: GemmTile,
    p: &GemmParams,
) -> Result<(u32, TuneReport)> {
    let class = split_class(types, layout, p);
    let (m, n) = (bucket(p.m, 4096), bucket(p.n, 4096));
    let k = bucket(p.k, crate::gpu::kernels::GEMM_K_CHUNK)
        .min((250_000_000 / (m as u64 * n as u64)).max(128) as u32);
    let dense = GemmParams::dense(m, n, k, layout, 0);
    let candidates: Vec<Candidate<u32>> = SPLITS
        .into_iter()
        .filter(|&s| s == 1 || dense.split_parallel(s).is_some())
        .map(|config| Candidate {
            config,
            name: config.to_string(),
        })
        .collect();
    let s = select(
        SPLIT_FAMILY,
        &class,
        &candidates,
        |splits| check(ctx, types, layout, tile, splits),
        |splits| time(ctx, types, layout, tile, (m, n, k), splits),
    )?;
    let chosen = s.chosen;
    Ok((chosen, TuneReport::measured(SPLIT_FAMILY, class, s, "wall")))
}
