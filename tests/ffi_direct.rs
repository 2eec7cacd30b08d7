//! The direct-message `extern "C"` functions, called as a C program calls them: two agents on
//! loopback, a request answered through an `X0xDirectMessage` taken from a batch, cancellation
//! reaching the recipient, freeing handles while operations are pending, and NULL arguments.

use std::ffi::{c_void, CStr};
use std::ptr;
use std::time::{Duration, Instant};

use x0x::ffi::agent::*;
use x0x::ffi::boundary::x0x_last_error_message;
use x0x::ffi::builder::*;
use x0x::ffi::bytes::*;
use x0x::ffi::direct_message::*;
use x0x::ffi::identity::*;
use x0x::ffi::inbox::*;
use x0x::ffi::op::*;
use x0x::ffi::status::*;

const WAIT_MS: u32 = 10_000;

fn last_error() -> String {
    unsafe { CStr::from_ptr(x0x_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// Waits for a callback-less op, frees it, and returns its status, result and message.
unsafe fn finish(op: *mut X0xOp) -> (X0xStatus, *mut c_void, String) {
    let (mut status, mut result) = (-1, ptr::null_mut());
    assert_eq!(x0x_op_wait(op, WAIT_MS, &mut status, &mut result), X0X_OK);
    let message = CStr::from_ptr(x0x_op_error_message(op))
        .to_string_lossy()
        .into_owned();
    x0x_op_free(op);
    (status, result, message)
}

/// An agent from the default builder, joined through `bootstrap` (or starting a network).
unsafe fn agent(bootstrap: Option<&str>) -> *mut X0xAgent {
    let builder = x0x_agent_builder_new();
    if let Some(addr) = bootstrap {
        let addr = std::ffi::CString::new(addr).unwrap();
        assert_eq!(
            x0x_agent_builder_with_bootstrap(builder, addr.as_ptr()),
            X0X_OK
        );
    }
    let mut op = ptr::null_mut();
    assert_eq!(
        x0x_agent_builder_build(builder, None, ptr::null_mut(), &mut op),
        X0X_OK
    );
    x0x_agent_builder_free(builder);
    let (status, agent, message) = finish(op);
    assert_eq!(status, X0X_OK, "{message}");
    let agent: *mut X0xAgent = agent.cast();
    let mut op = ptr::null_mut();
    assert_eq!(
        x0x_agent_join_network(agent, WAIT_MS, None, ptr::null_mut(), &mut op),
        X0X_OK
    );
    let (status, _, message) = finish(op);
    assert_eq!(status, X0X_OK, "{message}");
    agent
}

unsafe fn id_of(agent: *const X0xAgent) -> X0xId {
    let mut id = X0xId::default();
    assert_eq!(x0x_agent_agent_id(agent, &mut id), X0X_OK);
    id
}

unsafe fn addr_of(agent: *const X0xAgent) -> String {
    let mut buf = [0 as std::ffi::c_char; X0X_ADDR_STR_LEN];
    assert_eq!(
        x0x_agent_local_addr(agent, buf.as_mut_ptr(), buf.len()),
        X0X_OK
    );
    CStr::from_ptr(buf.as_ptr()).to_str().unwrap().to_owned()
}

unsafe fn start_request(from: *const X0xAgent, to: &X0xId, payload: &[u8]) -> *mut X0xOp {
    let mut op = ptr::null_mut();
    assert_eq!(
        x0x_agent_request(
            from,
            to,
            payload.as_ptr(),
            payload.len(),
            WAIT_MS,
            None,
            ptr::null_mut(),
            &mut op
        ),
        X0X_OK
    );
    op
}

/// The next message of `inbox`, waited for.
unsafe fn next_message(inbox: *const X0xInbox) -> *mut X0xDirectMessage {
    let mut op = ptr::null_mut();
    assert_eq!(
        x0x_inbox_next(inbox, 1, None, ptr::null_mut(), &mut op),
        X0X_OK
    );
    let (status, batch, message) = finish(op);
    assert_eq!(status, X0X_OK, "{message}");
    let batch: *mut X0xDirectMessageBatch = batch.cast();
    assert_eq!(x0x_direct_message_batch_len(batch), 1);
    let taken = x0x_direct_message_batch_take(batch, 0);
    assert!(!taken.is_null());
    assert!(
        x0x_direct_message_batch_take(batch, 0).is_null(),
        "taken twice"
    );
    assert!(x0x_direct_message_batch_take(batch, 1).is_null());
    x0x_direct_message_batch_free(batch);
    taken
}

unsafe fn payload_of(message: *const X0xDirectMessage) -> Vec<u8> {
    let (mut data, mut len) = (ptr::null(), 0usize);
    assert_eq!(
        x0x_direct_message_payload(message, &mut data, &mut len),
        X0X_OK
    );
    if len == 0 {
        assert!(data.is_null());
        return Vec::new();
    }
    std::slice::from_raw_parts(data, len).to_vec()
}

unsafe fn stats(agent: *const X0xAgent) -> X0xStats {
    let mut stats = X0xStats::default();
    assert_eq!(x0x_agent_stats(agent, &mut stats), X0X_OK);
    stats
}

unsafe fn close(agent: *mut X0xAgent) {
    let mut op = ptr::null_mut();
    assert_eq!(
        x0x_agent_close(agent, None, ptr::null_mut(), &mut op),
        X0X_OK
    );
    assert_eq!(finish(op).0, X0X_OK);
    x0x_agent_free(agent);
}

#[test]
fn a_request_is_answered_through_a_taken_message_and_a_cancel_reaches_the_recipient() {
    unsafe {
        let a = agent(None);
        let b = agent(Some(&addr_of(a)));
        let (a_id, b_id) = (id_of(a), id_of(b));
        let mut inbox = ptr::null_mut();
        assert_eq!(x0x_agent_inbox(b, 0, &mut inbox), X0X_OK);
        let mut second = ptr::null_mut();
        assert_eq!(x0x_agent_inbox(b, 0, &mut second), X0X_IN_USE);
        assert!(second.is_null());

        // A request, answered from the message handle after its batch is gone.
        let op = start_request(a, &b_id, b"ping");
        let message = next_message(inbox);
        assert_eq!(payload_of(message), b"ping");
        let (mut sender, mut request_id, mut timestamp) = (X0xId::default(), 0u64, 0u64);
        assert_eq!(x0x_direct_message_sender(message, &mut sender), X0X_OK);
        assert_eq!(sender, a_id);
        assert_eq!(
            x0x_direct_message_request_id(message, &mut request_id),
            X0X_OK
        );
        assert_ne!(request_id, 0);
        assert_eq!(
            x0x_direct_message_timestamp_ms(message, &mut timestamp),
            X0X_OK
        );
        assert!(timestamp > 1_700_000_000_000, "{timestamp}");
        assert_eq!(
            x0x_direct_message_reply(message, b"pong".as_ptr(), 4),
            X0X_OK
        );
        assert_eq!(
            x0x_direct_message_reply(message, b"again".as_ptr(), 5),
            X0X_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("answered already"),
            "{}",
            last_error()
        );
        x0x_direct_message_free(message);
        let (status, reply, error) = finish(op);
        assert_eq!(status, X0X_OK, "{error}");
        let reply: *mut X0xBytes = reply.cast();
        assert_eq!(
            std::slice::from_raw_parts((*reply).data, (*reply).len),
            b"pong"
        );
        x0x_bytes_destroy(reply);
        x0x_bytes_destroy(ptr::null_mut());

        // An empty reply is {NULL, 0}; an unclaimed reply is freed with its op.
        let op = start_request(a, &b_id, b"");
        let message = next_message(inbox);
        assert!(payload_of(message).is_empty());
        assert_eq!(x0x_direct_message_reply(message, ptr::null(), 0), X0X_OK);
        x0x_direct_message_free(message);
        let (status, reply, _) = finish(op);
        assert_eq!(status, X0X_OK);
        let reply: *mut X0xBytes = reply.cast();
        assert!((*reply).data.is_null() && (*reply).len == 0);
        x0x_bytes_destroy(reply);
        let op = start_request(a, &b_id, b"unclaimed");
        let message = next_message(inbox);
        assert_eq!(x0x_direct_message_reply(message, b"x".as_ptr(), 1), X0X_OK);
        x0x_direct_message_free(message);
        let mut status = -1;
        assert_eq!(
            x0x_op_wait(op, WAIT_MS, &mut status, ptr::null_mut()),
            X0X_OK
        );
        assert_eq!(status, X0X_OK);
        x0x_op_free(op);

        // Cancelled while the recipient holds it: the requester gets X0X_CANCELLED; once the
        // stop crossed the network (the recipient counts the request refused), the recipient's
        // late reply finds nobody waiting.
        let refused = stats(b).direct_refused;
        let op = start_request(a, &b_id, b"slow");
        let message = next_message(inbox);
        assert_eq!(x0x_op_cancel(op), X0X_OK);
        assert_eq!(finish(op).0, X0X_CANCELLED);
        let deadline = Instant::now() + Duration::from_millis(u64::from(WAIT_MS));
        while stats(b).direct_refused == refused {
            assert!(
                Instant::now() < deadline,
                "the cancel never reached the recipient"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            x0x_direct_message_reply(message, b"late".as_ptr(), 4),
            X0X_CANCELLED
        );
        assert!(last_error().contains("stopped waiting"), "{}", last_error());
        x0x_direct_message_free(message);

        // A plain message: nothing to reply to.
        let mut op = ptr::null_mut();
        assert_eq!(
            x0x_agent_send(
                a,
                &b_id,
                b"hi".as_ptr(),
                2,
                0,
                None,
                ptr::null_mut(),
                &mut op
            ),
            X0X_OK
        );
        assert_eq!(finish(op).0, X0X_OK);
        let message = next_message(inbox);
        let mut request_id = 7;
        assert_eq!(
            x0x_direct_message_request_id(message, &mut request_id),
            X0X_OK
        );
        assert_eq!(request_id, 0);
        assert_eq!(
            x0x_direct_message_reply(message, b"x".as_ptr(), 1),
            X0X_INVALID_ARGUMENT
        );
        assert!(last_error().contains("not a request"), "{}", last_error());
        x0x_direct_message_free(message);

        // Freeing the inbox ends a pending next with X0X_CLOSED; later senders are refused.
        let mut next = ptr::null_mut();
        assert_eq!(
            x0x_inbox_next(inbox, 16, None, ptr::null_mut(), &mut next),
            X0X_OK
        );
        x0x_inbox_free(inbox);
        assert_eq!(finish(next).0, X0X_CLOSED);
        let op = start_request(a, &b_id, b"after");
        let (status, _, error) = finish(op);
        assert_eq!(status, X0X_REMOTE, "{error}");

        close(a);
        close(b);
    }
}

#[test]
fn null_arguments_are_invalid_and_start_nothing() {
    unsafe {
        let a = agent(None);
        let to = X0xId { bytes: [7; 32] };
        // A raw pointer, so the closures below can share it.
        let op: *mut *mut X0xOp = &mut ptr::null_mut();
        let starts: [(&dyn Fn() -> X0xStatus, &str); 8] = [
            (
                &|| {
                    x0x_agent_send(
                        ptr::null(),
                        &to,
                        ptr::null(),
                        0,
                        0,
                        None,
                        ptr::null_mut(),
                        op,
                    )
                },
                "agent must not be NULL",
            ),
            (
                &|| x0x_agent_send(a, ptr::null(), ptr::null(), 0, 0, None, ptr::null_mut(), op),
                "to must not be NULL",
            ),
            (
                &|| x0x_agent_request(a, &to, ptr::null(), 1, 0, None, ptr::null_mut(), op),
                "payload must not be NULL",
            ),
            (
                &|| x0x_agent_inbox(ptr::null(), 0, ptr::null_mut()),
                "agent must not be NULL",
            ),
            (
                &|| x0x_agent_inbox(a, 0, ptr::null_mut()),
                "out must not be NULL",
            ),
            (
                &|| x0x_inbox_next(ptr::null(), 1, None, ptr::null_mut(), op),
                "inbox must not be NULL",
            ),
            (
                &|| x0x_direct_message_reply(ptr::null(), ptr::null(), 0),
                "message must not be NULL",
            ),
            (
                &|| x0x_direct_message_reply_error(ptr::null(), c"why".as_ptr()),
                "message must not be NULL",
            ),
        ];
        for (call, why) in starts {
            assert_eq!(call(), X0X_INVALID_ARGUMENT, "{why}");
            assert!(last_error().contains(why), "{why}: {}", last_error());
        }
        assert!((*op).is_null(), "no operation was started");
        let big = vec![0u8; X0X_MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            x0x_agent_request(
                a,
                &to,
                big.as_ptr(),
                big.len(),
                0,
                None,
                ptr::null_mut(),
                op
            ),
            X0X_INVALID_ARGUMENT
        );
        assert!(last_error().contains("262145"), "{}", last_error());
        assert!((*op).is_null());
        // An unknown agent: the operation starts, then fails with X0X_NOT_FOUND.
        assert_eq!(
            x0x_agent_send(a, &to, b"x".as_ptr(), 1, 3000, None, ptr::null_mut(), op),
            X0X_OK
        );
        let (status, result, error) = finish(*op);
        assert_eq!(
            (status, result),
            (X0X_NOT_FOUND, ptr::null_mut()),
            "{error}"
        );
        x0x_inbox_free(ptr::null_mut());
        x0x_direct_message_free(ptr::null_mut());
        x0x_direct_message_batch_free(ptr::null_mut());
        assert_eq!(x0x_direct_message_batch_len(ptr::null()), 0);
        assert!(x0x_direct_message_batch_take(ptr::null_mut(), 0).is_null());
        close(a);
    }
}
