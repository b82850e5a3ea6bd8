//! The blocking manager's own runtime, and running a call on it from any thread.

use std::{future::Future, sync::mpsc};

use psm_core::{Error, Result};
use tokio::runtime::{Handle, Runtime};

/// Worker threads of the manager's runtime: enough for background tasks and calls made from inside
/// other runtimes, few enough for small machines.
const WORKER_THREADS: usize = 2;

/// A runtime that shuts down in the background when dropped: a plain `Runtime` panics when dropped
/// inside an async context.
pub(super) struct OwnedRuntime(Option<Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl OwnedRuntime {
    pub(super) fn start() -> Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("psm-blocking")
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
            .map_err(|e| {
                Error::provider("the blocking api could not start its runtime").with_source(e)
            })
    }

    pub(super) fn handle(&self) -> Result<Handle> {
        self.0
            .as_ref()
            .map(|rt| rt.handle().clone())
            .ok_or_else(|| Error::provider("the blocking api's runtime has shut down"))
    }
}

/// Runs `call` to completion on the runtime behind `handle`, from any thread.
pub(super) fn run_on<T, Fut>(handle: &Handle, call: Fut) -> Result<T>
where
    Fut: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    if Handle::try_current().is_err() {
        return handle.block_on(call);
    }
    // Inside some async runtime, `block_on` panics; the call runs as a task on our own workers instead,
    // so it makes progress even while this thread (maybe the only one of a current-thread runtime) waits.
    let (tx, rx) = mpsc::sync_channel(1);
    handle.spawn(async move {
        // The receiver only goes away if the waiting thread does; then nobody wants the result.
        let _ = tx.send(call.await);
    });
    rx.recv()
        .map_err(|_| Error::provider("the blocking call ended without a result"))?
}
