//! Reuse of the CPU path's large f32 buffers between calls.
//!
//! A training step allocates and frees about fifteen [T, B, H]-sized buffers
//! (the gates, the saved states, their gradients). Buffers that large come
//! fresh from the operating system on every call, and at (64, 100, 256, 512)
//! the page faults that fill them took over a tenth of the step. Each thread
//! therefore keeps up to [`MAX_BUFFERS`] freed f32 buffers of at least
//! [`MIN_LEN`] elements, [`MAX_BYTES`] in all, and hands them out again.
//! [`release_scratch`] frees them.

use std::cell::RefCell;

/// Buffers smaller than this (64 KiB of f32) are left to the allocator.
pub const MIN_LEN: usize = 1 << 14;
/// At most this many buffers are kept per thread.
pub const MAX_BUFFERS: usize = 16;
/// At most this many bytes are kept per thread.
pub const MAX_BYTES: usize = 1 << 30;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A vector of `n` zeros, reusing a kept buffer when one fits.
pub(crate) fn zeroed(n: usize) -> Vec<f32> {
    from_pool(n, true)
}

/// A vector of `n` elements with unspecified (but initialised) values, for a
/// caller that writes every element: a kept buffer is not cleared first.
pub(crate) fn reused(n: usize) -> Vec<f32> {
    from_pool(n, false)
}

/// A kept f32 buffer resized to `n` (cleared first with `clear`), or a new
/// vector of zeros.
fn from_pool(n: usize, clear: bool) -> Vec<f32> {
    if n >= MIN_LEN
        && let Some(mut kept) = take(n)
    {
        if clear {
            kept.clear();
        }
        kept.resize(n, 0.0);
        return kept;
    }
    vec![0.0; n]
}

/// Gives `v` back for reuse (f32 buffers of at least [`MIN_LEN`] elements;
/// anything else is freed).
pub(crate) fn recycle(v: Vec<f32>) {
    if v.capacity() < MIN_LEN {
        return;
    }
    POOL.with_borrow_mut(|pool| {
        pool.push(v);
        // Keep the largest buffers within both limits.
        pool.sort_by_key(|b| std::cmp::Reverse(b.capacity()));
        let mut bytes = 0;
        let keep = pool
            .iter()
            .take(MAX_BUFFERS)
            .take_while(|b| {
                bytes += b.capacity() * 4;
                bytes <= MAX_BYTES
            })
            .count();
        pool.truncate(keep);
    });
}

/// The smallest kept buffer that holds `n` elements without wasting more
/// than half of itself.
fn take(n: usize) -> Option<Vec<f32>> {
    POOL.with_borrow_mut(|pool| {
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= n && b.capacity() / 2 <= n)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(k, _)| k)?;
        Some(pool.swap_remove(best))
    })
}

/// Frees the buffers this thread keeps for reuse.
pub fn release_scratch() {
    POOL.with_borrow_mut(Vec::clear);
}

/// The bytes this thread keeps for reuse.
pub fn scratch_bytes() -> usize {
    POOL.with_borrow(|pool| pool.iter().map(|b| b.capacity() * 4).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_zeroed_and_bounded() {
        release_scratch();
        let mut a = zeroed(MIN_LEN * 2);
        a.iter_mut().for_each(|x| *x = 1.0);
        let ptr = a.as_ptr();
        recycle(a);
        assert_eq!(scratch_bytes(), MIN_LEN * 2 * 4);
        // A smaller request within half the capacity reuses it, zeroed.
        let b = zeroed(MIN_LEN + 1);
        assert_eq!(b.as_ptr(), ptr);
        assert!(b.iter().all(|&x| x == 0.0));
        assert_eq!(scratch_bytes(), 0);
        recycle(b);
        // A much smaller one does not.
        let c = zeroed(MIN_LEN / 2);
        assert_ne!(c.as_ptr(), ptr);
        // Small buffers are not kept (the pool holds f32 only, by type).
        recycle(c);
        assert_eq!(scratch_bytes(), MIN_LEN * 2 * 4);
        for _ in 0..2 * MAX_BUFFERS {
            recycle(vec![0.0f32; MIN_LEN]);
        }
        assert!(scratch_bytes() <= MAX_BUFFERS * MIN_LEN * 2 * 4);
        release_scratch();
        assert_eq!(scratch_bytes(), 0);
        // `reused` hands out a kept buffer at the asked length, uncleared.
        let mut d = zeroed(MIN_LEN * 2);
        d.iter_mut().for_each(|x| *x = 2.0);
        let ptr = d.as_ptr();
        recycle(d);
        let e = reused(MIN_LEN + 3);
        assert_eq!((e.as_ptr(), e.len()), (ptr, MIN_LEN + 3));
        release_scratch();
    }
}
