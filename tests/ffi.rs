//! Calls the `extern "C"` functions the way a C program does: completion exactly once (success,
//! error, cancel, races), freeing handles while operations are pending, NULL and bad UTF-8.

use std::ffi::{c_char, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use x0x::ffi::agent::*;
use x0x::ffi::boundary::x0x_last_error_message;
use x0x::ffi::builder::*;
use x0x::ffi::bytes::*;
use x0x::ffi::identity::*;
use x0x::ffi::op::*;
use x0x::ffi::status::*;

/// What one operation's callbacks saw.
#[derive(Default)]
struct Record {
    calls: AtomicUsize,
    outcome: Mutex<Option<(X0xStatus, usize, String)>>,
}

unsafe extern "C" fn record(
    user_data: *mut c_void,
    status: X0xStatus,
    result: *mut c_void,
    message: *const c_char,
) {
    let record = &*(user_data as *const Record);
    record.calls.fetch_add(1, Ordering::SeqCst);
    let message = if message.is_null() {
        String::new()
    } else {
        CStr::from_ptr(message).to_string_lossy().into_owned()
    };
    *record.outcome.lock().unwrap() = Some((status, result as usize, message));
}

fn ud(record: &Record) -> *mut c_void {
    record as *const Record as *mut c_void
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(x0x_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// Waits for `op` to settle and returns its status.
unsafe fn settle(op: *mut X0xOp) -> X0xStatus {
    let mut status = -1;
    assert_eq!(
        x0x_op_wait(op, 10_000, &mut status, ptr::null_mut()),
        X0X_OK
    );
    status
}

/// A builder with the defaults, as a C user makes one.
unsafe fn default_builder() -> *mut X0xAgentBuilder {
    let builder = x0x_agent_builder_new();
    assert!(!builder.is_null());
    builder
}

unsafe fn build_blocking(builder: *const X0xAgentBuilder) -> *mut X0xAgent {
    let mut op = ptr::null_mut();
    assert_eq!(
        x0x_agent_builder_build(builder, None, ptr::null_mut(), &mut op),
        X0X_OK
    );
    let (mut status, mut agent) = (-1, ptr::null_mut());
    assert_eq!(x0x_op_wait(op, 10_000, &mut status, &mut agent), X0X_OK);
    assert_eq!(
        status,
        X0X_OK,
        "{:?}",
        CStr::from_ptr(x0x_op_error_message(op))
    );
    x0x_op_free(op);
    agent.cast()
}

#[test]
fn build_success_calls_back_once_with_an_agent() {
    unsafe {
        let builder = default_builder();
        let rec = Record::default();
        let mut op = ptr::null_mut();
        assert_eq!(
            x0x_agent_builder_build(builder, Some(record), ud(&rec), &mut op),
            X0X_OK
        );
        x0x_agent_builder_free(builder); // the build holds its own snapshot
        assert_eq!(settle(op), X0X_OK);
        assert_eq!(rec.calls.load(Ordering::SeqCst), 1);
        let (status, result, message) = rec.outcome.lock().unwrap().clone().unwrap();
        assert_eq!((status, message.as_str()), (X0X_OK, ""));
        let agent = result as *mut X0xAgent;
        let mut id = X0xId::default();
        assert_eq!(x0x_agent_agent_id(agent, &mut id), X0X_OK);
        assert_ne!(id, X0xId::default());
        let mut key = X0xBytes {
            data: ptr::null_mut(),
            len: 0,
        };
        assert_eq!(x0x_agent_public_key(agent, &mut key), X0X_OK);
        assert_eq!(key.len, X0X_PUBLIC_KEY_LEN);
        x0x_bytes_free(&mut key);
        x0x_bytes_free(&mut key); // reset to {NULL, 0}: harmless twice
        assert!(key.data.is_null());
        x0x_agent_free(agent);
        x0x_op_free(op);
    }
}

#[test]
fn build_error_calls_back_once_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let path = std::ffi::CString::new(blocker.join("machine.key").to_str().unwrap()).unwrap();
    unsafe {
        let builder = x0x_agent_builder_new();
        assert_eq!(
            x0x_agent_builder_with_machine_key(builder, path.as_ptr()),
            X0X_OK
        );
        let rec = Record::default();
        let mut op = ptr::null_mut();
        assert_eq!(
            x0x_agent_builder_build(builder, Some(record), ud(&rec), &mut op),
            X0X_OK
        );
        assert_eq!(settle(op), X0X_IO);
        assert_eq!(rec.calls.load(Ordering::SeqCst), 1);
        let (status, result, message) = rec.outcome.lock().unwrap().clone().unwrap();
        assert_eq!((status, result), (X0X_IO, 0));
        assert!(
            message.contains("key file") && message.contains("Not a directory"),
            "{message}"
        );
        let stored = CStr::from_ptr(x0x_op_error_message(op))
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(stored, message);
        x0x_op_free(op);
        x0x_agent_builder_free(builder);
    }
}

#[test]
fn cancel_calls_back_once_with_cancelled() {
    unsafe {
        let rec = Record::default();
        let mut op = ptr::null_mut();
        assert_eq!(x0x_sleep(60_000, Some(record), ud(&rec), &mut op), X0X_OK);
        assert_eq!(x0x_op_cancel(op), X0X_OK);
        assert_eq!(x0x_op_cancel(op), X0X_OK); // idempotent
        assert_eq!(settle(op), X0X_CANCELLED);
        assert_eq!(x0x_op_cancel(op), X0X_OK); // after completion: no effect
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(rec.calls.load(Ordering::SeqCst), 1);
        let (status, _, message) = rec.outcome.lock().unwrap().clone().unwrap();
        assert_eq!(status, X0X_CANCELLED);
        assert!(message.contains("cancelled"), "{message}");
        x0x_op_free(op);
    }
}

#[test]
fn cancel_racing_completion_fires_exactly_once_1000_times() {
    /// Op handles cross to the cancelling thread; x0x handles are thread-safe.
    struct Ops(Vec<*mut X0xOp>);
    unsafe impl Send for Ops {}

    let records: Vec<Record> = (0..1000).map(|_| Record::default()).collect();
    unsafe {
        // 1–2 ms sleeps complete on the runtime while another thread cancels them one by one:
        // early ones complete first, later ones are cancelled first, the middle really races.
        let ops = Ops(records
            .iter()
            .enumerate()
            .map(|(i, rec)| {
                let mut op = ptr::null_mut();
                assert_eq!(
                    x0x_sleep(1 + (i % 2) as u32, Some(record), ud(rec), &mut op),
                    X0X_OK
                );
                op
            })
            .collect());
        let ops = std::thread::spawn(move || {
            for &op in &ops.0 {
                // Spread the cancels over a few ms, across the window where sleeps complete.
                let until = std::time::Instant::now() + std::time::Duration::from_micros(3);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                assert_eq!(x0x_op_cancel(op), X0X_OK);
            }
            ops
        })
        .join()
        .unwrap();
        let mut seen = [0usize; 2];
        for (&op, rec) in ops.0.iter().zip(&records) {
            let status = settle(op);
            assert!(
                status == X0X_OK || status == X0X_CANCELLED,
                "status {status}"
            );
            seen[usize::from(status == X0X_OK)] += 1;
            assert_eq!(rec.calls.load(Ordering::SeqCst), 1);
            x0x_op_free(op);
        }
        eprintln!(
            "cancel won {} times, completion won {} times",
            seen[0], seen[1]
        );
    }
}

#[test]
fn freeing_handles_while_pending_still_calls_back() {
    unsafe {
        let rec = Record::default();
        let mut op = ptr::null_mut();
        assert_eq!(x0x_sleep(30, Some(record), ud(&rec), &mut op), X0X_OK);
        x0x_op_free(op); // releases our handle only
        for _ in 0..500 {
            if rec.calls.load(Ordering::SeqCst) == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(rec.calls.load(Ordering::SeqCst), 1);

        let builder = default_builder();
        let agent = build_blocking(builder);
        let close = Record::default();
        let mut op = ptr::null_mut();
        assert_eq!(
            x0x_agent_close(agent, Some(record), ud(&close), &mut op),
            X0X_OK
        );
        x0x_agent_free(agent); // the close holds its own reference
        assert_eq!(settle(op), X0X_OK);
        assert_eq!(close.calls.load(Ordering::SeqCst), 1);
        x0x_op_free(op);
        x0x_agent_builder_free(builder);
    }
}

#[test]
fn callbackless_ops_hand_out_their_result_once() {
    unsafe {
        let builder = default_builder();
        let mut op = ptr::null_mut();
        assert_eq!(
            x0x_agent_builder_build(builder, None, ptr::null_mut(), &mut op),
            X0X_OK
        );
        let (mut status, mut result) = (-1, ptr::null_mut());
        assert_eq!(
            x0x_op_wait(op, X0X_WAIT_FOREVER, &mut status, &mut result),
            X0X_OK
        );
        assert_eq!(status, X0X_OK);
        assert!(!result.is_null());
        let mut again = ptr::null_mut();
        assert_eq!(x0x_op_wait(op, 0, &mut status, &mut again), X0X_OK);
        assert!(again.is_null(), "the result was handed out twice");
        x0x_agent_free(result.cast());
        x0x_op_free(op);

        // An unclaimed result is freed with the op (ASan/valgrind in the C tests check the leak side).
        let mut op = ptr::null_mut();
        assert_eq!(
            x0x_agent_builder_build(builder, None, ptr::null_mut(), &mut op),
            X0X_OK
        );
        assert_eq!(settle(op), X0X_OK);
        x0x_op_free(op);
        x0x_agent_builder_free(builder);
    }
}

#[test]
fn wait_times_out_then_succeeds() {
    unsafe {
        let mut op = ptr::null_mut();
        assert_eq!(x0x_sleep(200, None, ptr::null_mut(), &mut op), X0X_OK);
        let mut status = -1;
        assert_eq!(
            x0x_op_wait(op, 0, &mut status, ptr::null_mut()),
            X0X_TIMEOUT
        );
        assert!(last_error().contains("not finished"), "{}", last_error());
        assert_eq!(status, -1);
        assert_eq!(settle(op), X0X_OK);
        x0x_op_free(op);
    }
}

static INNER_WAIT: AtomicUsize = AtomicUsize::new(usize::MAX);

unsafe extern "C" fn wait_on_self(
    user_data: *mut c_void,
    _: X0xStatus,
    _: *mut c_void,
    _: *const c_char,
) {
    // user_data is a pointer to the op handle pointer, written before the sleep elapses.
    let op = *(user_data as *const *mut X0xOp);
    let mut status = -1;
    let rc = x0x_op_wait(op, X0X_WAIT_FOREVER, &mut status, ptr::null_mut());
    INNER_WAIT.store(rc as usize, Ordering::SeqCst);
}

#[test]
fn waiting_on_itself_from_a_callback_is_refused_not_deadlocked() {
    unsafe {
        let mut op: *mut X0xOp = ptr::null_mut();
        let slot = &mut op as *mut *mut X0xOp;
        assert_eq!(x0x_sleep(50, Some(wait_on_self), slot.cast(), slot), X0X_OK);
        assert_eq!(settle(op), X0X_OK);
        assert_eq!(
            INNER_WAIT.load(Ordering::SeqCst),
            X0X_INVALID_ARGUMENT as usize
        );
        x0x_op_free(op);
    }
}

#[test]
fn null_pointers_are_invalid_arguments() {
    unsafe {
        let builder = default_builder();
        // Raw pointers, so the shared closures below can write through them.
        let id: *mut X0xId = &mut X0xId::default();
        let bytes: *mut X0xBytes = &mut X0xBytes {
            data: ptr::null_mut(),
            len: 0,
        };
        type Check<'a> = (&'a dyn Fn() -> X0xStatus, &'a str);
        let checks: [Check; 16] = [
            (
                &|| x0x_agent_agent_id(ptr::null(), id),
                "agent must not be NULL",
            ),
            (
                &|| x0x_agent_machine_id(ptr::null(), ptr::null_mut()),
                "agent must not be NULL",
            ),
            (
                &|| x0x_agent_public_key(ptr::null(), bytes),
                "agent must not be NULL",
            ),
            (
                &|| x0x_agent_builder_with_machine_key(builder, ptr::null()),
                "path must not be NULL",
            ),
            (
                &|| x0x_agent_builder_with_bind(ptr::null_mut(), c"127.0.0.1:0".as_ptr()),
                "builder must not be NULL",
            ),
            (
                &|| x0x_agent_builder_with_agent_key_file(builder, ptr::null()),
                "path must not be NULL",
            ),
            (
                &|| x0x_agent_builder_with_agent_key_file(ptr::null_mut(), c"k".as_ptr()),
                "builder must not be NULL",
            ),
            (
                &|| x0x_agent_local_addrs(ptr::null(), bytes),
                "agent must not be NULL",
            ),
            (
                &|| x0x_agent_builder_with_agent_key(builder, ptr::null(), 72),
                "key must not be NULL",
            ),
            (
                &|| {
                    x0x_agent_builder_build(
                        ptr::null(),
                        Some(record),
                        ptr::null_mut(),
                        ptr::null_mut(),
                    )
                },
                "builder must not be NULL",
            ),
            (
                &|| x0x_agent_close(ptr::null(), None, ptr::null_mut(), ptr::null_mut()),
                "agent must not be NULL",
            ),
            (&|| x0x_op_cancel(ptr::null()), "op must not be NULL"),
            (
                &|| x0x_op_wait(ptr::null(), 0, ptr::null_mut(), ptr::null_mut()),
                "op must not be NULL",
            ),
            (&|| x0x_id_from_hex(ptr::null(), id), "hex must not be NULL"),
            (
                &|| x0x_id_to_hex(id, ptr::null_mut(), 65),
                "out must not be NULL",
            ),
            (
                &|| x0x_agent_key_generate(ptr::null_mut()),
                "out must not be NULL",
            ),
        ];
        for (call, expected) in checks {
            assert_eq!(call(), X0X_INVALID_ARGUMENT, "{expected}");
            assert_eq!(last_error(), expected);
        }
        // NULL is a no-op for every free.
        x0x_agent_free(ptr::null_mut());
        x0x_agent_builder_free(ptr::null_mut());
        x0x_op_free(ptr::null_mut());
        x0x_bytes_free(ptr::null_mut());
        assert!(x0x_op_error_message(ptr::null()).is_null());
        x0x_agent_builder_free(builder);
    }
}

#[test]
fn invalid_utf8_and_bad_values_are_invalid_arguments() {
    let bad_utf8 = b"127.0.0.1:\xff\xfe\0";
    unsafe {
        let builder = default_builder();
        // Each check reads the message before the next failing call replaces it.
        let checks: [(&dyn Fn() -> X0xStatus, &str); 9] = [
            (
                &|| x0x_agent_builder_with_bind(builder, bad_utf8.as_ptr().cast()),
                "addr is not valid UTF-8 (invalid byte at offset 10)",
            ),
            (
                &|| x0x_agent_builder_with_bootstrap(builder, bad_utf8.as_ptr().cast()),
                "addr is not valid UTF-8",
            ),
            (
                &|| x0x_agent_builder_with_machine_key(builder, bad_utf8.as_ptr().cast()),
                "path is not valid UTF-8",
            ),
            (
                &|| x0x_agent_builder_with_agent_key_file(builder, bad_utf8.as_ptr().cast()),
                "path is not valid UTF-8",
            ),
            (
                &|| x0x_agent_builder_with_agent_key_file(builder, c"".as_ptr()),
                "path must not be empty",
            ),
            (
                &|| x0x_agent_builder_with_bind(builder, c"localhost".as_ptr()),
                "invalid bind address \"localhost\"",
            ),
            (
                &|| x0x_agent_builder_with_bootstrap(builder, c"no-port".as_ptr()),
                "expected host:port",
            ),
            (
                &|| x0x_agent_builder_with_agent_key(builder, b"short".as_ptr(), 5),
                "expected 72 bytes, got 5",
            ),
            (
                &|| x0x_id_from_hex(c"abc".as_ptr(), &mut X0xId::default()),
                "expected 64 hex digits, got 3",
            ),
        ];
        for (call, expected) in checks {
            assert_eq!(call(), X0X_INVALID_ARGUMENT, "{expected}");
            assert!(
                last_error().contains(expected),
                "{:?} lacks {expected:?}",
                last_error()
            );
        }
        let mut small = [0 as c_char; 64];
        assert_eq!(
            x0x_id_to_hex(&X0xId::default(), small.as_mut_ptr(), small.len()),
            X0X_INVALID_ARGUMENT
        );
        x0x_agent_builder_free(builder);
    }
}

#[test]
fn ids_round_trip_through_hex_and_keys_through_bytes() {
    unsafe {
        let mut key = X0xBytes {
            data: ptr::null_mut(),
            len: 0,
        };
        assert_eq!(x0x_agent_key_generate(&mut key), X0X_OK);
        assert_eq!(key.len, X0X_KEYPAIR_LEN);
        let builder = default_builder();
        assert_eq!(
            x0x_agent_builder_with_agent_key(builder, key.data, key.len),
            X0X_OK
        );
        let first = build_blocking(builder);
        let second = build_blocking(builder);
        let (mut a, mut b) = (X0xId::default(), X0xId::default());
        assert_eq!(x0x_agent_agent_id(first, &mut a), X0X_OK);
        assert_eq!(x0x_agent_agent_id(second, &mut b), X0X_OK);
        assert_eq!(a, b, "the same agent key gives the same agent id");
        let mut exported = X0xBytes {
            data: ptr::null_mut(),
            len: 0,
        };
        assert_eq!(x0x_agent_keypair_bytes(first, &mut exported), X0X_OK);
        assert_eq!(
            std::slice::from_raw_parts(exported.data, exported.len),
            std::slice::from_raw_parts(key.data, key.len)
        );

        let mut hex = [0 as c_char; X0X_ID_HEX_LEN + 1];
        assert_eq!(x0x_id_to_hex(&a, hex.as_mut_ptr(), hex.len()), X0X_OK);
        let text = CStr::from_ptr(hex.as_ptr()).to_str().unwrap();
        assert_eq!(text.len(), X0X_ID_HEX_LEN);
        let mut parsed = X0xId::default();
        assert_eq!(x0x_id_from_hex(hex.as_ptr(), &mut parsed), X0X_OK);
        assert_eq!(parsed, a);

        x0x_bytes_free(&mut exported);
        x0x_bytes_free(&mut key);
        x0x_agent_free(first);
        x0x_agent_free(second);
        x0x_agent_builder_free(builder);
    }
}

#[test]
fn every_status_has_a_name() {
    for (code, name) in [
        (X0X_OK, "OK"),
        (X0X_INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (X0X_CORRUPT, "CORRUPT"),
        (999, "UNKNOWN"),
    ] {
        let got = unsafe { CStr::from_ptr(x0x_status_str(code)) };
        assert_eq!(got.to_str().unwrap(), name);
    }
}

#[test]
fn an_op_that_finishes_at_once_settles_before_the_start_returns() {
    unsafe {
        let mut op = ptr::null_mut();
        assert_eq!(x0x_sleep(0, None, ptr::null_mut(), &mut op), X0X_OK);
        let mut status = -1;
        assert_eq!(x0x_op_wait(op, 0, &mut status, ptr::null_mut()), X0X_OK);
        assert_eq!(status, X0X_OK);
        x0x_op_free(op);
    }
}

#[test]
fn then_attaches_a_callback_before_or_after_settling() {
    unsafe {
        // Before: the callback fires when the sleep ends.
        let rec = Record::default();
        let mut op = ptr::null_mut();
        assert_eq!(x0x_sleep(30, None, ptr::null_mut(), &mut op), X0X_OK);
        assert_eq!(x0x_op_then(op, Some(record), ud(&rec)), X0X_OK);
        assert_eq!(settle(op), X0X_OK);
        assert_eq!(rec.calls.load(Ordering::SeqCst), 1);
        // Only one callback per op.
        assert_eq!(
            x0x_op_then(op, Some(record), ud(&rec)),
            X0X_INVALID_ARGUMENT
        );
        assert!(last_error().contains("only one"), "{}", last_error());
        x0x_op_free(op);

        // After: already settled with a result, which the callback receives.
        let builder = default_builder();
        let rec = Record::default();
        let mut op = ptr::null_mut();
        assert_eq!(
            x0x_agent_builder_build(builder, None, ptr::null_mut(), &mut op),
            X0X_OK
        );
        let mut status = -1;
        assert_eq!(
            x0x_op_wait(op, 10_000, &mut status, ptr::null_mut()),
            X0X_OK
        );
        assert_eq!(x0x_op_then(op, Some(record), ud(&rec)), X0X_OK);
        assert_eq!(settle(op), X0X_OK);
        assert_eq!(rec.calls.load(Ordering::SeqCst), 1);
        let (status, result, _) = rec.outcome.lock().unwrap().clone().unwrap();
        assert_eq!(status, X0X_OK);
        assert_ne!(result, 0, "the untaken result goes to the late callback");
        x0x_agent_free(result as *mut X0xAgent);
        x0x_op_free(op);
        x0x_agent_builder_free(builder);

        // An op started with a callback cannot get a second one; NULL is refused.
        let rec = Record::default();
        let mut op = ptr::null_mut();
        assert_eq!(x0x_sleep(0, Some(record), ud(&rec), &mut op), X0X_OK);
        assert_eq!(
            x0x_op_then(op, Some(record), ud(&rec)),
            X0X_INVALID_ARGUMENT
        );
        assert_eq!(x0x_op_then(op, None, ptr::null_mut()), X0X_INVALID_ARGUMENT);
        assert_eq!(
            x0x_op_then(ptr::null(), Some(record), ptr::null_mut()),
            X0X_INVALID_ARGUMENT
        );
        assert_eq!(settle(op), X0X_OK);
        assert_eq!(rec.calls.load(Ordering::SeqCst), 1);
        x0x_op_free(op);
    }
}

#[test]
fn then_racing_completion_fires_exactly_once_1000_times() {
    let records: Vec<Record> = (0..1000).map(|_| Record::default()).collect();
    unsafe {
        let ops: Vec<_> = records
            .iter()
            .enumerate()
            .map(|(i, rec)| {
                let mut op = ptr::null_mut();
                assert_eq!(
                    x0x_sleep((i % 2) as u32, None, ptr::null_mut(), &mut op),
                    X0X_OK
                );
                assert_eq!(x0x_op_then(op, Some(record), ud(rec)), X0X_OK);
                op
            })
            .collect();
        for (op, rec) in ops.into_iter().zip(&records) {
            assert_eq!(settle(op), X0X_OK);
            assert_eq!(rec.calls.load(Ordering::SeqCst), 1);
            x0x_op_free(op);
        }
    }
}
