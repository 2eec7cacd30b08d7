//! Log records to a C callback (`x0x_set_log_callback`): x0x's own and its dependencies'
//! (quinn, rustls, iroh-gossip), delivered by `crate::logs` on its own thread.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use super::boundary::ffi_status;
use super::op::{unless_shut_down, UserData};
use super::status::X0xStatus;
use crate::error::Error;
use crate::logs::{self, Level, LevelFilter, LogRecord};

/// Log levels (`x0x_set_log_callback`), most severe first: a callback set for one level gets
/// that level's records and the more severe ones. `X0X_LOG_OFF` gets none.
pub const X0X_LOG_OFF: i32 = 0;
/// Something failed that the caller should know about.
pub const X0X_LOG_ERROR: i32 = 1;
/// Something unexpected that x0x worked around.
pub const X0X_LOG_WARN: i32 = 2;
/// Notable events.
pub const X0X_LOG_INFO: i32 = 3;
/// What is useful when debugging a connection (dials, their failures, peers coming and going).
pub const X0X_LOG_DEBUG: i32 = 4;
/// Everything, packet by packet: costly.
pub const X0X_LOG_TRACE: i32 = 5;

/// Receives one log record: its level (`X0X_LOG_ERROR` … `X0X_LOG_TRACE`), where it comes from
/// (a Rust module path such as `"x0x::gossip"` or `"quinn_proto::connection"`) and the message,
/// both NUL-terminated UTF-8 valid only during the call. Called on the library's log thread,
/// one record at a time, with no library lock held.
pub type X0xLogCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: i32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

fn level_number(level: Level) -> i32 {
    match level {
        Level::Error => X0X_LOG_ERROR,
        Level::Warn => X0X_LOG_WARN,
        Level::Info => X0X_LOG_INFO,
        Level::Debug => X0X_LOG_DEBUG,
        Level::Trace => X0X_LOG_TRACE,
    }
}

/// Sends every log record at `max_level` or more severe to `callback` from now on, replacing the
/// callback set before; `X0X_LOG_OFF` or a NULL callback turns logging off. Records below the
/// level are not even formatted. Without a call, nothing is logged. The callback stops with
/// `x0x_shutdown`. Returns `X0X_OK`, or `X0X_INVALID_ARGUMENT` (a level outside 0…5).
#[no_mangle]
pub extern "C" fn x0x_set_log_callback(
    max_level: i32,
    callback: X0xLogCallback,
    user_data: *mut c_void,
) -> X0xStatus {
    ffi_status(|| {
        let level = match max_level {
            X0X_LOG_OFF => LevelFilter::Off,
            X0X_LOG_ERROR => LevelFilter::Error,
            X0X_LOG_WARN => LevelFilter::Warn,
            X0X_LOG_INFO => LevelFilter::Info,
            X0X_LOG_DEBUG => LevelFilter::Debug,
            X0X_LOG_TRACE => LevelFilter::Trace,
            other => {
                return Err(Error::invalid_argument(format!(
                    "max_level must be X0X_LOG_OFF (0) to X0X_LOG_TRACE (5), got {other}"
                )))
            }
        };
        let user_data = UserData(user_data);
        let sink = callback.map(|callback| -> logs::Sink {
            Arc::new(move |record: &LogRecord| {
                // Interior NULs (never in x0x's own messages) would cut the text: replaced.
                let text = |s: &str| CString::new(s.replace('\0', "\u{fffd}")).unwrap_or_default();
                let (target, message) = (text(&record.target), text(&record.message));
                let level = level_number(record.level);
                // SAFETY: the caller supplied this callback and user_data for these calls.
                unless_shut_down(|| unsafe {
                    callback(user_data.get(), level, target.as_ptr(), message.as_ptr());
                });
            })
        });
        logs::set_sink(level, sink)
    })
}
