//! The C ABI's input parsing, called through the `extern "C"` functions exactly as C calls them:
//! `x0x_id_from_hex`, `x0x_agent_builder_with_bootstrap`, `x0x_agent_builder_with_bind`,
//! `x0x_agent_builder_with_agent_key`, `x0x_agent_builder_with_machine_key`,
//! `x0x_agent_builder_with_data_dir`, `x0x_agent_builder_with_agent_key_file`, and the local
//! task list calls that take strings (`x0x_task_list_new_local`, `x0x_task_list_add_task`) and
//! hand them back (`x0x_task_list_name`, `x0x_task_list_tasks`), plus NULL pointers everywhere.
//!
//! Strings are arbitrary bytes (interior NULs, invalid UTF-8) copied with a NUL appended: the
//! callee sees the bytes up to the first NUL, as a C caller's string.
//!
//! Checks: nothing panics (libfuzzer-sys aborts on a panic even when `ffi_status` would catch
//! it, so a caught `X0X_PANIC` is found too); each call returns `X0X_OK` exactly when the Rust
//! API accepts the same text (invalid UTF-8 is `X0X_INVALID_ARGUMENT`), otherwise
//! `X0X_INVALID_ARGUMENT` with a non-empty last error message and the out-parameter untouched;
//! strings come back as they went in.
//!
//! Input: byte 0 picks the function (bit 7: pass NULL for the builder / out-parameter), the rest
//! is its argument.
#![no_main]

use std::ffi::{c_char, CStr};
use std::net::SocketAddr;
use std::ptr;

use libfuzzer_sys::fuzz_target;
use x0x::ffi::boundary::x0x_last_error_message;
use x0x::ffi::builder::*;
use x0x::ffi::bytes::{x0x_bytes_free, X0xBytes};
use x0x::ffi::identity::{x0x_id_from_hex, x0x_id_to_hex, X0xId};
use x0x::ffi::status::{X0xStatus, X0X_INVALID_ARGUMENT, X0X_OK};
use x0x::ffi::tasklist::*;
use x0x::{AgentBuilder, AgentId, Keypair};

/// A C string of `bytes`: a copy with a NUL appended.
fn c_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.push(0);
    out
}

/// What the callee reads from that C string: the bytes before the first NUL, if UTF-8.
fn as_c_sees(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).ok()
}

/// Checks `status` against whether the Rust API accepts the input.
fn expect(status: X0xStatus, ok: bool, what: &str) {
    if ok {
        assert_eq!(status, X0X_OK, "{what}: rejected ({})", last_error());
    } else {
        assert_eq!(status, X0X_INVALID_ARGUMENT, "{what}: status {status}");
        assert!(!last_error().is_empty(), "{what}: failed without a message");
    }
}

fn last_error() -> String {
    let ptr = x0x_last_error_message();
    assert!(!ptr.is_null());
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .expect("the last error is UTF-8")
        .to_owned()
}

/// A builder setter taking one string, against the Rust rule it must follow.
unsafe fn setter(
    f: unsafe extern "C" fn(*mut X0xAgentBuilder, *const c_char) -> X0xStatus,
    null: bool,
    arg: &[u8],
    rule: impl Fn(&str) -> bool,
    what: &str,
) {
    let builder = x0x_agent_builder_new();
    assert!(!builder.is_null());
    let text = c_string(arg);
    if null {
        expect(f(ptr::null_mut(), text.as_ptr().cast()), false, what);
    } else {
        expect(f(builder, ptr::null()), false, what);
        let ok = as_c_sees(arg).is_some_and(&rule);
        expect(f(builder, text.as_ptr().cast()), ok, what);
    }
    x0x_agent_builder_free(builder);
}

unsafe fn id_from_hex(null: bool, arg: &[u8]) {
    let text = c_string(arg);
    let sentinel = X0xId { bytes: [0xa5; 32] };
    let mut out = sentinel;
    if null {
        expect(
            x0x_id_from_hex(text.as_ptr().cast(), ptr::null_mut()),
            false,
            "id_from_hex",
        );
        expect(x0x_id_from_hex(ptr::null(), &mut out), false, "id_from_hex");
        assert_eq!(out, sentinel);
        return;
    }
    let expected = as_c_sees(arg).and_then(|s| AgentId::from_hex(s).ok());
    let status = x0x_id_from_hex(text.as_ptr().cast(), &mut out);
    expect(status, expected.is_some(), "id_from_hex");
    match expected {
        Some(id) => {
            assert_eq!(out.bytes, id.0);
            // And back: x0x_id_to_hex into a buffer exactly large enough.
            let mut hex = [0x55u8; 65];
            expect(
                x0x_id_to_hex(&out, hex.as_mut_ptr().cast(), hex.len()),
                true,
                "id_to_hex",
            );
            let back = CStr::from_bytes_with_nul(&hex).expect("NUL-terminated");
            assert_eq!(
                back.to_str().unwrap(),
                as_c_sees(arg).unwrap().to_ascii_lowercase()
            );
        }
        None => assert_eq!(out, sentinel, "out changed on failure"),
    }
}

unsafe fn agent_key(null: bool, key: &[u8]) {
    let builder = if null {
        ptr::null_mut()
    } else {
        x0x_agent_builder_new()
    };
    let ok = !null && Keypair::from_bytes(key).is_ok();
    expect(
        x0x_agent_builder_with_agent_key(builder, key.as_ptr(), key.len()),
        ok,
        "with_agent_key",
    );
    // (NULL, 0) is the empty key (rejected); (NULL, n > 0) is rejected too, never read.
    expect(
        x0x_agent_builder_with_agent_key(builder, ptr::null(), 0),
        false,
        "with_agent_key",
    );
    expect(
        x0x_agent_builder_with_agent_key(builder, ptr::null(), 72),
        false,
        "with_agent_key",
    );
    x0x_agent_builder_free(builder);
}

unsafe fn task_list(null: bool, arg: &[u8]) {
    let mut parts = arg.splitn(3, |&b| b == 0);
    let name = parts.next().unwrap_or_default();
    let title = parts.next().unwrap_or_default();
    let description = parts.next();
    let (name_c, title_c) = (c_string(name), c_string(title));
    let description_c = description.map(c_string);

    let mut list: *mut X0xTaskList = ptr::null_mut();
    if null {
        expect(
            x0x_task_list_new_local(name_c.as_ptr().cast(), ptr::null_mut()),
            false,
            "new",
        );
        expect(
            x0x_task_list_new_local(ptr::null(), &mut list),
            false,
            "new_local",
        );
        assert!(list.is_null());
        expect(
            x0x_task_list_add_task(
                ptr::null(),
                title_c.as_ptr().cast(),
                ptr::null(),
                ptr::null_mut(),
            ),
            false,
            "add_task",
        );
        return;
    }
    let name_ok = std::str::from_utf8(name).is_ok();
    expect(
        x0x_task_list_new_local(name_c.as_ptr().cast(), &mut list),
        name_ok,
        "new_local",
    );
    if !name_ok {
        assert!(list.is_null());
        return;
    }
    let mut bytes = X0xBytes {
        data: ptr::null_mut(),
        len: 0,
    };
    expect(x0x_task_list_name(list, &mut bytes), true, "task_list_name");
    let got = if bytes.data.is_null() {
        &[][..]
    } else {
        std::slice::from_raw_parts(bytes.data, bytes.len)
    };
    assert_eq!(got, name, "the name does not come back");
    x0x_bytes_free(&mut bytes);
    assert!(bytes.data.is_null() && bytes.len == 0);

    let title_ok = std::str::from_utf8(title).is_ok();
    // The description may hold NULs (only the first two split the input): C sees up to the
    // first one.
    let description = description.map(|d| &d[..d.iter().position(|&b| b == 0).unwrap_or(d.len())]);
    let description_ok = description.is_none_or(|d| std::str::from_utf8(d).is_ok());
    let mut id = X0xId::default();
    let description_ptr = description_c
        .as_ref()
        .map_or(ptr::null(), |d| d.as_ptr().cast());
    let added = title_ok && description_ok;
    expect(
        x0x_task_list_add_task(list, title_c.as_ptr().cast(), description_ptr, &mut id),
        added,
        "add_task",
    );
    let mut batch: *mut X0xTaskBatch = ptr::null_mut();
    expect(
        x0x_task_list_tasks(list, &mut batch),
        true,
        "task_list_tasks",
    );
    let len = x0x_task_batch_len(batch);
    assert_eq!(len, usize::from(added));
    assert!(x0x_task_batch_get(batch, len).is_null());
    if added {
        let task = &*x0x_task_batch_get(batch, 0);
        assert_eq!(task.id, id);
        assert_eq!(CStr::from_ptr(task.title).to_bytes(), title);
        assert_eq!(
            CStr::from_ptr(task.description).to_bytes(),
            description.unwrap_or_default()
        );
    }
    x0x_task_batch_free(batch);
    x0x_task_list_free(list);
}

unsafe fn id_to_hex(arg: &[u8]) {
    // Any buffer length: OK exactly when the hex and its NUL fit, and nothing written past it.
    let len = arg.first().map_or(0, |&b| usize::from(b));
    let id = X0xId { bytes: [0x3c; 32] };
    let mut buffer = vec![0x77u8; len + 8];
    let status = x0x_id_to_hex(&id, buffer.as_mut_ptr().cast(), len);
    expect(status, len > 64, "id_to_hex");
    assert!(
        buffer[len.min(65)..].iter().all(|&b| b == 0x77),
        "written past the buffer"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, arg)) = data.split_first() else {
        return;
    };
    let null = selector & 0x80 != 0;
    unsafe {
        match selector & 0x7f {
            0 => id_from_hex(null, arg),
            1 => setter(
                x0x_agent_builder_with_bootstrap,
                null,
                arg,
                |s| AgentBuilder::new().with_bootstrap(s).is_ok(),
                "with_bootstrap",
            ),
            2 => setter(
                x0x_agent_builder_with_bind,
                null,
                arg,
                |s| s.parse::<SocketAddr>().is_ok(),
                "with_bind",
            ),
            3 => agent_key(null, arg),
            4 => {
                // The first 40 bytes with a valid checksum: reaches the checks behind it.
                let mut head = [0u8; 40];
                let n = arg.len().min(40);
                head[..n].copy_from_slice(&arg[..n]);
                agent_key(null, &x0x_fuzz::key_bytes(&head));
            }
            5 => setter(
                x0x_agent_builder_with_machine_key,
                null,
                arg,
                |s| !s.is_empty(),
                "with_machine_key",
            ),
            6 => setter(
                x0x_agent_builder_with_data_dir,
                null,
                arg,
                |s| !s.is_empty(),
                "with_data_dir",
            ),
            7 => task_list(null, arg),
            8 => id_to_hex(arg),
            9 => setter(
                x0x_agent_builder_with_agent_key_file,
                null,
                arg,
                |s| !s.is_empty(),
                "with_agent_key_file",
            ),
            _ => {}
        }
    }
});
