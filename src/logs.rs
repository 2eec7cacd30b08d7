//! Where log records go: those of x0x and of its dependencies (quinn, rustls, iroh-gossip), as
//! `log` records (`tracing` events become `log` records while no tracing subscriber is set). One
//! sink, set by the embedding program (the C ABI's log callback, which Python's `logging` is fed
//! from), gets them on a thread of its own, `x0x-logs`: never on a network thread, never under a
//! lock of the library. Levels below the sink's cost one atomic load (`log::max_level`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Once};

pub use log::{Level, LevelFilter};
use once_cell::sync::Lazy;

/// Records waiting for the sink; past this, new ones are dropped (and counted) rather than
/// slowing the network down.
const QUEUE: usize = 4096;

/// One log record, formatted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub level: Level,
    /// Where it comes from: a module path, e.g. `x0x::gossip` or `quinn_proto::connection`.
    pub target: String,
    pub message: String,
}

/// Receives every record at or above its level.
pub type Sink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

struct Forwarder {
    queue: SyncSender<LogRecord>,
    dropped: AtomicU64,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

static FORWARDER: Lazy<Forwarder> = Lazy::new(|| {
    let (queue, records) = mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("x0x-logs".into())
        .spawn(move || deliver(&records))
        .expect("x0x: cannot start the log thread");
    Forwarder {
        queue,
        dropped: AtomicU64::new(0),
    }
});

fn deliver(records: &Receiver<LogRecord>) {
    for record in records {
        // Cloned out: the sink runs without the lock, so it may set another sink.
        let sink = SINK.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(sink) = sink {
            sink(&record);
        }
    }
}

impl log::Log for Forwarder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = self.queue.try_send(LogRecord {
                level: Level::Warn,
                target: "x0x::logs".into(),
                message: format!("{dropped} log records were dropped: the log sink fell behind"),
            });
        }
        let formatted = LogRecord {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
        };
        if let Err(TrySendError::Full(_)) = self.queue.try_send(formatted) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

/// Sends every record at or above `level` to `sink` from now on (`None`, or `LevelFilter::Off`:
/// none). Fails if the process already has another `log` logger (a Rust program that set its
/// own gets x0x's records there instead).
pub fn set_sink(level: LevelFilter, sink: Option<Sink>) -> crate::Result<()> {
    static INSTALL: Once = Once::new();
    let mut installed = Ok(());
    INSTALL.call_once(|| installed = log::set_logger(&*FORWARDER));
    if installed.is_err() || !std::ptr::addr_eq(log::logger(), &*FORWARDER) {
        return Err(crate::Error::invalid_argument(
            "this process has its own `log` logger already; x0x's records go there",
        ));
    }
    let level = if sink.is_some() {
        level
    } else {
        LevelFilter::Off
    };
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = sink;
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn records_at_or_above_the_level_reach_the_sink_and_others_cost_nothing() {
        let got: Arc<Mutex<Vec<LogRecord>>> = Arc::default();
        let into = Arc::clone(&got);
        let sink: Sink = Arc::new(move |record| into.lock().unwrap().push(record.clone()));
        set_sink(LevelFilter::Info, Some(sink)).unwrap();
        log::debug!(target: "x0x::test", "not this one");
        log::info!(target: "x0x::test", "dial to {} failed", "127.0.0.1:9");
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the record never arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
        set_sink(LevelFilter::Trace, None).unwrap();
        assert_eq!(log::max_level(), LevelFilter::Off);
        let got = got.lock().unwrap();
        let ours: Vec<_> = got.iter().filter(|r| r.target == "x0x::test").collect();
        assert_eq!(
            ours,
            [&LogRecord {
                level: Level::Info,
                target: "x0x::test".into(),
                message: "dial to 127.0.0.1:9 failed".into(),
            }]
        );
    }
}
