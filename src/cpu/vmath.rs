//! Activations on short f32 arrays, written so that the compiler turns each
//! into a handful of vector instructions: no calls, no branches, only
//! arithmetic, comparisons and selects on every lane.
//!
//! The functions are `#[inline(always)]`: they take on the instruction set of
//! the kernel they are inlined into (see `fused.rs`). Each works on M
//! vectors of N lanes at once: a kernel passes all the rows of its tile, so
//! that the M dependency chains are independent and overlap.
//!
//! - `exp`: Cephes' `expf` (range reduction by ln 2 in two parts, a degree-5
//!   polynomial, and the power of two built in the exponent bits), within
//!   2 ulp of the true value on [-87, 88]. Inputs are clamped to that range,
//!   which keeps every result finite; NaN stays NaN.
//! - `sigmoid(x) = 1 / (1 + exp(-x))`.
//! - The divisions: with `ISA` = AVX-512, the 14-bit reciprocal estimate
//!   refined by one Newton step (within about 1 ulp, and a few times
//!   cheaper than a division); otherwise a division.
//! - `tanh`: the same two forms as [`Real::tanh_act`](crate::Real::tanh_act)
//!   for f32, an odd series below |x| = 1/4 and `1 - 2/(e^{2|x|} + 1)` above.

#[cfg_attr(not(target_arch = "x86_64"), allow(unused_imports))]
use super::simd::AVX512;

/// Largest input whose `exp` has a normal, finite result built this way.
const EXP_HI: f32 = 88.0;
const EXP_LO: f32 = -87.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = LN2_HI + LN2_LO, with LN2_HI exact in few bits so that n·LN2_HI is exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³: adding it rounds a float below 2²² to an integer, which then sits
/// in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// Clamps to [lo, hi], keeping NaN (unlike `f32::clamp`'s callers expect of
/// min/max, a NaN must reach the output).
#[inline(always)]
fn clamp_keep_nan(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x > hi { hi } else { x };
    if x < lo { lo } else { x }
}

#[inline(always)]
pub fn exp<const N: usize, const M: usize>(x: &mut [[f32; N]; M]) {
    for v in x.as_flattened_mut() {
        let x = clamp_keep_nan(*v, EXP_LO, EXP_HI);
        // n = round(x / ln 2), as a float and in the bits of `k`.
        let k = x * LOG2E + ROUND;
        let n = k - ROUND;
        let r = x - n * LN2_HI - n * LN2_LO;
        let mut p = 1.987_569_1e-4;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 0.5;
        let y = p * r * r + r + 1.0;
        // 2^n: (n + 127) in the exponent field. k's bits are 0x4B40_0000 + n.
        let bits = k.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23;
        *v = y * f32::from_bits(bits);
    }
}

/// 1 / x, lane by lane (see the module's notes).
#[inline(always)]
fn recip<const N: usize, const ISA: u8>(x: &mut [f32; N]) {
    #[cfg(target_arch = "x86_64")]
    if ISA == AVX512 && N == 16 {
        // SAFETY: kernels instantiated with ISA = AVX512 run only where
        // AVX-512F was detected; N = 16 lanes are one register.
        return unsafe { recip_avx512(x) };
    }
    for v in x.iter_mut() {
        *v = 1.0 / *v;
    }
}

/// # Safety
/// The CPU has AVX-512F, and N = 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn recip_avx512<const N: usize>(x: &mut [f32; N]) {
    use std::arch::x86_64::*;
    // SAFETY: N = 16 floats are read and written (the caller's contract).
    unsafe {
        let v = _mm512_loadu_ps(x.as_ptr());
        let r = _mm512_rcp14_ps(v);
        // r·(2 − v·r): the relative error e of the estimate becomes e².
        let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(v, r, _mm512_set1_ps(2.0)));
        _mm512_storeu_ps(x.as_mut_ptr(), r);
    }
}

// The functions below are written as loops over lanes, in place: the
// compiler keeps such loops in registers, where array `map`s and copies of
// nested arrays tend to become calls.

#[inline(always)]
pub fn sigmoid<const N: usize, const M: usize, const ISA: u8>(x: &mut [[f32; N]; M]) {
    for v in x.as_flattened_mut() {
        *v = -*v;
    }
    exp(x);
    for x in x.iter_mut() {
        for v in x.iter_mut() {
            *v += 1.0;
        }
        recip::<N, ISA>(x);
    }
}

#[inline(always)]
pub fn tanh<const N: usize, const M: usize, const ISA: u8>(x: &mut [[f32; N]; M]) {
    let mut e = *x;
    for e in e.as_flattened_mut() {
        *e = 2.0 * e.abs();
    }
    exp(&mut e);
    for (x, e) in x.iter_mut().zip(e.iter_mut()) {
        for e in e.iter_mut() {
            *e += 1.0;
        }
        recip::<N, ISA>(e);
        for (v, &r) in x.iter_mut().zip(e.iter()) {
            let a = *v;
            let x2 = a * a;
            let mut p = 62.0 / 2835.0;
            p = p * x2 - 17.0 / 315.0;
            p = p * x2 + 2.0 / 15.0;
            p = p * x2 - 1.0 / 3.0;
            let small = a + a * x2 * p;
            let big = 1.0 - 2.0 * r;
            // tanh is odd: the sign of x (which keeps tanh(-0) = -0).
            *v = (if a.abs() < 0.25 { small } else { big }).copysign(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cpu::simd::PORTABLE;

    fn check<const N: usize>(
        f: impl Fn(&mut [f32; N]),
        exact: fn(f64) -> f64,
        range: f32,
        max_rel: f64,
        max_abs: f64,
    ) {
        let mut worst = (0f64, 0f64);
        let n = 400_000;
        for chunk in 0..n / N {
            let mut x = [0f32; N];
            for (l, v) in x.iter_mut().enumerate() {
                *v = -range + 2.0 * range * (chunk * N + l) as f32 / n as f32;
            }
            let input = x;
            f(&mut x);
            for (&xi, &yi) in input.iter().zip(&x) {
                let want = exact(xi as f64);
                let abs = (yi as f64 - want).abs();
                worst.0 = worst.0.max(abs / want.abs().max(1e-30));
                worst.1 = worst.1.max(abs);
            }
        }
        assert!(
            worst.0 < max_rel || worst.1 < max_abs,
            "relative {:e}, absolute {:e}",
            worst.0,
            worst.1
        );
    }

    #[test]
    fn exp_within_2_ulp() {
        check(
            |x: &mut [f32; 8]| exp(std::array::from_mut(x)),
            f64::exp,
            87.0,
            2.0 * f32::EPSILON as f64,
            0.0,
        );
    }

    /// Relative error against f64 on [-20, 20]; sigmoid's relative error
    /// grows only where its value is far below what f32 sums can see.
    fn check_activations<const N: usize>(
        sigmoid: impl Fn(&mut [f32; N]),
        tanh: impl Fn(&mut [f32; N]),
    ) {
        let max_rel = 4.0 * f32::EPSILON as f64;
        check(sigmoid, |x| 1.0 / (1.0 + (-x).exp()), 20.0, max_rel, 0.0);
        check(tanh, f64::tanh, 20.0, max_rel, 0.0);
    }

    #[test]
    fn sigmoid_and_tanh_are_accurate() {
        check_activations(
            |x: &mut [f32; 8]| sigmoid::<8, 1, PORTABLE>(std::array::from_mut(x)),
            |x: &mut [f32; 8]| tanh::<8, 1, PORTABLE>(std::array::from_mut(x)),
        );
    }

    #[test]
    fn several_vectors_at_once_give_the_same_bits() {
        let mut x = [[0f32; 8]; 3];
        for (k, v) in x.as_flattened_mut().iter_mut().enumerate() {
            *v = (k as f32 - 11.0) * 0.37;
        }
        let (mut s, mut t) = (x, x);
        sigmoid::<8, 3, PORTABLE>(&mut s);
        tanh::<8, 3, PORTABLE>(&mut t);
        for r in 0..3 {
            let (mut s1, mut t1) = ([x[r]], [x[r]]);
            sigmoid::<8, 1, PORTABLE>(&mut s1);
            tanh::<8, 1, PORTABLE>(&mut t1);
            assert_eq!(s1[0].map(f32::to_bits), s[r].map(f32::to_bits));
            assert_eq!(t1[0].map(f32::to_bits), t[r].map(f32::to_bits));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sigmoid_and_tanh_with_the_avx512_reciprocal_are_accurate() {
        use crate::cpu::simd::AVX512;
        #[target_feature(enable = "avx512f")]
        fn sigmoid_avx512(x: &mut [f32; 16]) {
            sigmoid::<16, 1, AVX512>(std::array::from_mut(x))
        }
        #[target_feature(enable = "avx512f")]
        fn tanh_avx512(x: &mut [f32; 16]) {
            tanh::<16, 1, AVX512>(std::array::from_mut(x))
        }
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        // SAFETY: AVX-512F was detected.
        check_activations(
            |x| unsafe { sigmoid_avx512(x) },
            |x| unsafe { tanh_avx512(x) },
        );
        let mut x = [0f32; 16];
        x[..8].copy_from_slice(&[1e4, -1e4, f32::MAX, -f32::MAX, f32::NAN, 0.0, -0.0, 1e-30]);
        let (mut s, mut t) = (x, x);
        // SAFETY: as above.
        unsafe { (sigmoid_avx512(&mut s), tanh_avx512(&mut t)) };
        assert_eq!(&t[..4], &[1.0, -1.0, 1.0, -1.0]);
        assert!(t[4].is_nan() && s[4].is_nan());
        assert_eq!((t[5].to_bits(), t[6].to_bits()), (0, (-0.0f32).to_bits()));
        assert_eq!((s[0], s[2], s[5]), (1.0, 1.0, 0.5));
        assert!(s[1] >= 0.0 && s[1] < 1e-37 && s[3] >= 0.0 && s[3] < 1e-37);
    }

    #[test]
    fn saturation_and_nan() {
        let mut x = [
            1e4f32,
            -1e4,
            f32::MAX,
            -f32::MAX,
            f32::NAN,
            0.0,
            -0.0,
            1e-30,
        ];
        let input = x;
        let mut s = x;
        tanh::<8, 1, PORTABLE>(std::array::from_mut(&mut x));
        sigmoid::<8, 1, PORTABLE>(std::array::from_mut(&mut s));
        assert_eq!(&x[..4], &[1.0, -1.0, 1.0, -1.0]);
        assert!(x[4].is_nan() && s[4].is_nan());
        assert_eq!(x[5].to_bits(), 0.0f32.to_bits());
        assert_eq!(x[6].to_bits(), (-0.0f32).to_bits());
        assert_eq!(x[7], 1e-30);
        assert_eq!((s[0], s[2]), (1.0, 1.0));
        assert!(s[1] >= 0.0 && s[1] < 1e-37 && s[3] >= 0.0 && s[3] < 1e-37);
        assert_eq!(s[5], 0.5);
        let mut e = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            1.0,
            -1.0,
            88.0,
            -87.0,
            f32::NAN,
        ];
        exp(std::array::from_mut(&mut e));
        assert!(e[0].is_finite() && e[0] > 1e38);
        assert!(e[1] > 0.0 && e[1] < 2e-38);
        assert_eq!(e[2], 1.0);
        assert!(e[7].is_nan());
        let _ = input;
    }
}
