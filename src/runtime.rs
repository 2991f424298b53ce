//! One implementation of every call that waits for the GPU: each is an
//! `async fn` (the `_async` forms of the API), and the blocking form runs it
//! to completion with [`block_on`].
//!
//! Natively the future waits inside `device.poll`, so blocking on it is
//! exact. In a browser the host may not block: the mapping of a read-back
//! buffer completes only once control returns to the event loop. There
//! `block_on` polls once, which finishes the calls that need no GPU wait
//! (everything on the CPU engine), and otherwise returns
//! [`LstmError::WouldBlock`] naming the `_async` form to await instead.

use std::future::Future;

use crate::error::Result;

/// Runs `future` to completion on this thread; `call` names the blocking
/// API call for the browser's error.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn block_on<T>(
    call: &'static str,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    let _ = call;
    pollster::block_on(future)
}

/// Runs `future` to completion on this thread if it needs no wait; `call`
/// names the blocking API call for the error when it does.
#[cfg(target_arch = "wasm32")]
pub(crate) fn block_on<T>(
    call: &'static str,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => Err(crate::error::LstmError::WouldBlock { call }),
    }
}
