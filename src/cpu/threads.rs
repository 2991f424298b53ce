//! How the CPU engine's threads share a recurrence: each step's panels split
//! between the threads of the engine's rayon pool, each thread keeping the
//! same share from step to step, or groups of batch rows on threads of their
//! own. Every row's and unit's arithmetic is the same either way, so the
//! results do not depend on the threads.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this many multiply-adds per step, one thread runs every step: the
/// hand-over between threads at each step costs more than the split saves.
const PARALLEL_FROM_FMAS: usize = 1 << 15;

/// Multiply-adds per work item: enough to amortise claiming it.
pub(super) const ITEM_FMAS: usize = 1 << 15;

/// How many threads of the current rayon pool (the engine's, see
/// [`CpuEngine`](super::CpuEngine)) should help with phases of `fmas`
/// multiply-adds split into `items`.
pub(super) fn helpers(fmas: usize, items: usize) -> usize {
    if fmas >= PARALLEL_FROM_FMAS {
        (rayon::current_num_threads() - 1).min(items - 1)
    } else {
        0
    }
}

/// Runs `work(s, rows, items)` for every phase s in order, over all batch
/// rows and all `items` of each phase, on the calling thread and pool
/// threads when a phase of `step_fmas` multiply-adds is worth sharing:
///
/// - Threads split each phase's items (`in_phases`), each keeping the same
///   share, and with it its weights in its core's cache, from phase to
///   phase; phase s starts once phase s-1 is complete.
/// - With fewer items than threads, and enough rows, each thread instead
///   takes a group of batch rows (of at least [`GROUP_ROWS`]) through every
///   phase. Rows are independent, so groups need no synchronisation between
///   phases, but each group reads all the weights at every phase.
pub(super) fn in_steps(
    phases: usize,
    items: usize,
    batch: usize,
    step_fmas: usize,
    work: impl Fn(usize, std::ops::Range<usize>, std::ops::Range<usize>) + Sync,
) {
    let groups = (1 + helpers(step_fmas, usize::MAX)).min(batch / GROUP_ROWS);
    let helpers = helpers(step_fmas, items);
    if helpers + 1 < groups {
        in_phases(1, groups, groups - 1, |_, g| {
            let rows = batch * g / groups..batch * (g + 1) / groups;
            for s in 0..phases {
                work(s, rows.clone(), 0..items);
            }
        });
    } else {
        in_phases(phases, items, helpers, |s, item| {
            work(s, 0..batch, item..item + 1)
        });
    }
}

/// The fewest batch rows per group of [`in_steps`].
const GROUP_ROWS: usize = 4;

/// Runs `f(phase, item)` for every phase in order and every item of it, on
/// the calling thread and `helpers` threads of the rayon pool.
///
/// An item of phase s starts once every item of phase s-1 is done, and sees
/// all their writes. Each thread owns a contiguous share of every phase's
/// items and claims its own first, then any left over: as long as the
/// threads keep pace, an item stays on the same thread from phase to phase
/// (and its weights in that core's cache). Nothing waits for a helper to
/// start: the caller alone can claim every item, so a busy pool only costs
/// speed.
///
/// A thread that must wait for the end of a phase spins for a few
/// microseconds (a phase usually ends sooner), then sleeps until the thread
/// that completes the phase wakes it. Sleeping matters when the threads
/// outnumber the cores that are free: a spinning thread would take the core
/// from the one it waits for.
pub(super) fn in_phases(
    phases: usize,
    items: usize,
    helpers: usize,
    f: impl Fn(usize, usize) + Sync,
) {
    let workers = helpers + 1;
    // claimed[i] = how many phases have claimed item i.
    let claimed: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
    let done = AtomicUsize::new(0);
    let sleepers = AtomicUsize::new(0);
    let wake = (std::sync::Mutex::new(()), std::sync::Condvar::new());
    let work = |w: usize| {
        let own = items * w / workers;
        for s in 0..phases {
            let ready = || done.load(Ordering::Acquire) >= s * items;
            let mut spins = 0u32;
            while !ready() {
                if spins < SPINS {
                    spins += 1;
                    std::hint::spin_loop();
                    continue;
                }
                // SeqCst on `sleepers` and `done`: either the finisher sees
                // this sleeper, or this thread sees the finished phase.
                let mut guard = wake.0.lock().unwrap_or_else(|e| e.into_inner());
                sleepers.fetch_add(1, Ordering::SeqCst);
                while done.load(Ordering::SeqCst) < s * items {
                    guard = wake.1.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                sleepers.fetch_sub(1, Ordering::SeqCst);
            }
            // Own share first, then the others', in order.
            for j in 0..items {
                let item = (own + j) % items;
                let claim =
                    claimed[item].compare_exchange(s, s + 1, Ordering::Relaxed, Ordering::Relaxed);
                if claim.is_err() {
                    continue; // another thread's, or a later phase's
                }
                f(s, item);
                let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                if finished.is_multiple_of(items) && sleepers.load(Ordering::SeqCst) > 0 {
                    let _guard = wake.0.lock().unwrap_or_else(|e| e.into_inner());
                    wake.1.notify_all();
                }
            }
        }
    };
    if helpers == 0 {
        work(0);
    } else {
        rayon::scope(|scope| {
            let work = &work;
            for w in 1..workers {
                scope.spawn(move |_| work(w));
            }
            work(0);
        });
    }
}

/// Spin-loop hints before a waiting thread sleeps (a few microseconds).
const SPINS: u32 = 1 << 10;
