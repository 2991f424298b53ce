//! The SIMD building blocks of the CPU engine's kernels: the instruction set
//! chosen at run time ([`Isa`]), masked vector loads and stores, the fused
//! multiply-add, and the register-tiled product of a tile of rows with a
//! packed panel (AVX-512 and AVX2 intrinsics, or portable code that the
//! compiler vectorises for the target's baseline).

use std::sync::OnceLock;

#[cfg(test)]
thread_local! {
    static FORCED: std::cell::Cell<Option<Isa>> = const { std::cell::Cell::new(None) };
}

/// The kernel variants, by instruction set.
// Off x86-64 only `Portable` is built.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The best variant this CPU runs (or, in this crate's tests, the one
    /// the calling thread asked for with [`Isa::force`]).
    pub fn detect() -> Isa {
        #[cfg(test)]
        if let Some(isa) = FORCED.get() {
            return isa;
        }
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    return Isa::Avx2;
                }
            }
            Isa::Portable
        })
    }

    /// Makes [`Isa::detect`] return `isa` on this thread (`None`: detect).
    #[cfg(test)]
    pub fn force(isa: Option<Isa>) {
        FORCED.set(isa);
    }

    /// Every variant this CPU can run (for tests).
    #[cfg(test)]
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                v.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    /// Batch rows per full register tile.
    pub fn rows(self) -> usize {
        match self {
            Isa::Avx512 => 6,
            Isa::Avx2 => 3,
            Isa::Portable => 2,
        }
    }

    /// Hidden units per panel (the f32 lanes of one vector register).
    pub fn units(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 | Isa::Portable => 8,
        }
    }
}

/// `ISA` parameters of the kernel functions (const generics take no enums).
pub(super) const PORTABLE: u8 = 0;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) const AVX2: u8 = 1;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) const AVX512: u8 = 2;

/// `lanes` (≤ U) floats from `src`, zero after them. A full vector is one
/// fixed-size copy (a variable-length loop would become a `memcpy` call).
///
/// # Safety
/// `src..src+lanes` is readable.
#[inline(always)]
pub(super) unsafe fn load<const U: usize>(src: *const f32, lanes: usize) -> [f32; U] {
    let mut v = [0f32; U];
    // SAFETY: the caller's contract.
    unsafe {
        if lanes == U {
            v = src.cast::<[f32; U]>().read_unaligned();
        } else {
            for (l, v) in v.iter_mut().enumerate().take(lanes) {
                *v = *src.add(l);
            }
        }
    }
    v
}

/// The first `lanes` floats of `v` to `dst` (see [`load`]).
///
/// # Safety
/// `dst..dst+lanes` is writable.
#[inline(always)]
pub(super) unsafe fn store<const U: usize>(dst: *mut f32, v: &[f32; U], lanes: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        if lanes == U {
            dst.cast::<[f32; U]>().write_unaligned(*v);
        } else {
            for (l, &v) in v.iter().enumerate().take(lanes) {
                *dst.add(l) = v;
            }
        }
    }
}

/// a·b + c, fused where the instruction set has FMA.
#[inline(always)]
pub(super) fn madd<const ISA: u8>(a: f32, b: f32, c: f32) -> f32 {
    if ISA == PORTABLE {
        a * b + c
    } else {
        a.mul_add(b, c)
    }
}

/// acc[gate][r][lane] += Σ_k h_rows[r][k] · w[k][gate][lane], in portable
/// code: the tile's accumulators are a local value, which the compiler keeps
/// in registers when it vectorises the loop.
#[inline(always)]
fn product<const U: usize, const MR: usize, const ISA: u8>(
    mut acc: [[[f32; U]; MR]; 4],
    w: &[f32],
    h_rows: [&[f32]; MR],
) -> [[[f32; U]; MR]; 4] {
    for (k, wk) in w.chunks_exact(4 * U).enumerate() {
        let hv: [f32; MR] = std::array::from_fn(|r| h_rows[r][k]);
        for g in 0..4 {
            let wg: &[f32; U] = wk[g * U..(g + 1) * U].try_into().unwrap();
            for r in 0..MR {
                for l in 0..U {
                    acc[g][r][l] = madd::<ISA>(hv[r], wg[l], acc[g][r][l]);
                }
            }
        }
    }
    acc
}

/// acc[j][r][l] += Σ_k rows[r][k] · w[k][j][l], with the `ISA`'s kernel.
///
/// # Safety
/// The CPU has the instruction set `ISA` names.
#[inline(always)]
pub(super) unsafe fn product_any<const U: usize, const R: usize, const ISA: u8>(
    acc: &mut [[[f32; U]; R]; 4],
    w: &[f32],
    rows: [&[f32]; R],
) {
    match ISA {
        // SAFETY: the caller's contract.
        #[cfg(target_arch = "x86_64")]
        AVX512 => unsafe {
            product_avx512::<R>(acc.as_flattened_mut().as_flattened_mut(), w, rows)
        },
        #[cfg(target_arch = "x86_64")]
        AVX2 => unsafe { product_avx2::<R>(acc.as_flattened_mut().as_flattened_mut(), w, rows) },
        _ => *acc = product::<U, R, ISA>(*acc, w, rows),
    }
}

/// [`product`] with AVX-512 intrinsics: 16 units per panel, so each gate of
/// a row is one register; `acc` is [4][R][16].
///
/// # Safety
/// The CPU has AVX-512F and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
#[allow(clippy::needless_range_loop)] // indices name registers here
unsafe fn product_avx512<const R: usize>(acc: &mut [f32], w: &[f32], h_rows: [&[f32]; R]) {
    use std::arch::x86_64::*;
    let h = h_rows[0].len();
    assert!(acc.len() == R * 64 && w.len() == h * 64);
    assert!(h_rows.iter().all(|row| row.len() == h));
    let mut a = [[_mm512_setzero_ps(); 4]; R];
    // SAFETY: the asserts bound every offset below.
    unsafe {
        for r in 0..R {
            for g in 0..4 {
                a[r][g] = _mm512_loadu_ps(acc.as_ptr().add((g * R + r) * 16));
            }
        }
        for k in 0..h {
            let wk = w.as_ptr().add(k * 64);
            let wv = [
                _mm512_loadu_ps(wk),
                _mm512_loadu_ps(wk.add(16)),
                _mm512_loadu_ps(wk.add(32)),
                _mm512_loadu_ps(wk.add(48)),
            ];
            for r in 0..R {
                let hv = _mm512_set1_ps(*h_rows[r].get_unchecked(k));
                for g in 0..4 {
                    a[r][g] = _mm512_fmadd_ps(hv, wv[g], a[r][g]);
                }
            }
        }
        for r in 0..R {
            for g in 0..4 {
                _mm512_storeu_ps(acc.as_mut_ptr().add((g * R + r) * 16), a[r][g]);
            }
        }
    }
}

/// [`product`] with AVX2 and FMA intrinsics: 8 units per panel; `acc` is
/// [4][R][8].
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::needless_range_loop)] // indices name registers here
unsafe fn product_avx2<const R: usize>(acc: &mut [f32], w: &[f32], h_rows: [&[f32]; R]) {
    use std::arch::x86_64::*;
    let h = h_rows[0].len();
    assert!(acc.len() == R * 32 && w.len() == h * 32);
    assert!(h_rows.iter().all(|row| row.len() == h));
    let mut a = [[_mm256_setzero_ps(); 4]; R];
    // SAFETY: the asserts bound every offset below.
    unsafe {
        for r in 0..R {
            for g in 0..4 {
                a[r][g] = _mm256_loadu_ps(acc.as_ptr().add((g * R + r) * 8));
            }
        }
        for k in 0..h {
            let wk = w.as_ptr().add(k * 32);
            let hv: [__m256; R] =
                std::array::from_fn(|r| _mm256_set1_ps(*h_rows[r].get_unchecked(k)));
            for g in 0..4 {
                let wv = _mm256_loadu_ps(wk.add(g * 8));
                for r in 0..R {
                    a[r][g] = _mm256_fmadd_ps(hv[r], wv, a[r][g]);
                }
            }
        }
        for r in 0..R {
            for g in 0..4 {
                _mm256_storeu_ps(acc.as_mut_ptr().add((g * R + r) * 8), a[r][g]);
            }
        }
    }
}

/// Calls `$tile::<.., R, ..>(args.., b0)` for rows `0..$batch` in tiles of
/// `$mr` rows (`b0` = a tile's first row), then once for the rows left over,
/// with `R` = their count (so that no row is computed twice). `$mr` ≤ 6.
macro_rules! row_tiles {
    ($batch:expr, $mr:ident, $tile:ident::<$u:ident, _, $isa:ident>($($arg:expr),*)) => {{
        let batch = $batch;
        let full = batch - batch % $mr;
        for b0 in (0..full).step_by($mr) {
            $tile::<$u, $mr, $isa>($($arg,)* b0);
        }
        match batch - full {
            0 => {}
            1 => $tile::<$u, 1, $isa>($($arg,)* full),
            2 => $tile::<$u, 2, $isa>($($arg,)* full),
            3 => $tile::<$u, 3, $isa>($($arg,)* full),
            4 => $tile::<$u, 4, $isa>($($arg,)* full),
            5 => $tile::<$u, 5, $isa>($($arg,)* full),
            _ => unreachable!("tiles have at most 6 rows"),
        }
    }};
}
pub(super) use row_tiles;
