//! The one process-wide tokio runtime. Every agent and every C/Python operation runs on it, so a
//! process never pays for more than one set of worker threads however many agents it hosts.

use once_cell::sync::Lazy;
use tokio::runtime::{Handle, Runtime};

/// Two workers: the target machines have two cores, and CPU-heavy work (signing) goes to the
/// blocking pool rather than occupying a worker.
const WORKER_THREADS: usize = 2;

static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("x0x-rt")
        // Blocking-pool threads (key files) are rare: don't keep idle ones around for long.
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .enable_all()
        .build()
        .expect("x0x: the tokio runtime could not start (out of threads or memory?)")
});

/// A handle to the process-wide runtime, started on first use.
pub fn handle() -> &'static Handle {
    RUNTIME.handle()
}
