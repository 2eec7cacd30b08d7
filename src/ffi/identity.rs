//! Ids and keys: `X0xId` values, hex conversion, agent key generation.

use std::ffi::c_char;

use super::boundary::{arg_out, arg_ref, arg_str, ffi_status};
use super::bytes::X0xBytes;
use super::status::X0xStatus;
use crate::error::{Error, Result};
use crate::identity::{self, AgentId, Keypair};

// Literals, because cbindgen cannot evaluate paths; the asserts keep them equal to the core's.
/// Length in bytes of an agent or machine id.
pub const X0X_ID_LEN: usize = 32;
/// Length of an id in hex, without the terminating NUL.
pub const X0X_ID_HEX_LEN: usize = 64;
/// Length in bytes of an ML-DSA-65 public key.
pub const X0X_PUBLIC_KEY_LEN: usize = 1952;
/// Length in bytes of a serialized key pair (see `x0x_agent_key_generate`).
pub const X0X_KEYPAIR_LEN: usize = 72;
const _: () = assert!(X0X_ID_LEN == identity::ID_LEN && X0X_ID_HEX_LEN == 2 * X0X_ID_LEN);
const _: () = assert!(X0X_PUBLIC_KEY_LEN == identity::PUBLIC_KEY_LEN);
const _: () = assert!(X0X_KEYPAIR_LEN == identity::KEYPAIR_LEN);

/// A 32-byte agent or machine id, `SHA-256("AUTONOMI_PEER_ID_V2:" ‖ public key)`. A plain value:
/// copy it freely, nothing to free.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct X0xId {
    /// The id's bytes.
    pub bytes: [u8; X0X_ID_LEN],
}

impl From<[u8; X0X_ID_LEN]> for X0xId {
    fn from(bytes: [u8; X0X_ID_LEN]) -> Self {
        Self { bytes }
    }
}

/// Writes `id` as lower-case hex and a NUL into `out`, which must hold `out_len` bytes, at least
/// `X0X_ID_HEX_LEN + 1`.
///
/// Returns `X0X_OK`, or `X0X_INVALID_ARGUMENT` (NULL pointer, buffer too small).
#[no_mangle]
pub unsafe extern "C" fn x0x_id_to_hex(
    id: *const X0xId,
    out: *mut c_char,
    out_len: usize,
) -> X0xStatus {
    ffi_status(|| {
        let id = arg_ref(id, "id")?;
        if out.is_null() {
            return Err(Error::invalid_argument("out must not be NULL"));
        }
        if out_len <= X0X_ID_HEX_LEN {
            return Err(Error::invalid_argument(format!(
                "out_len is {out_len}; the hex form needs {} bytes with its NUL",
                X0X_ID_HEX_LEN + 1
            )));
        }
        let hex = AgentId(id.bytes).to_hex();
        std::ptr::copy_nonoverlapping(hex.as_ptr(), out.cast(), X0X_ID_HEX_LEN);
        *out.add(X0X_ID_HEX_LEN) = 0;
        Ok(())
    })
}

/// Parses exactly 64 hex digits (either case) from the NUL-terminated `hex` into `*out`.
///
/// Returns `X0X_OK`, or `X0X_INVALID_ARGUMENT` (NULL, bad UTF-8, wrong length, non-hex digit;
/// `x0x_last_error_message` says which). `*out` is unchanged on failure.
#[no_mangle]
pub unsafe extern "C" fn x0x_id_from_hex(hex: *const c_char, out: *mut X0xId) -> X0xStatus {
    ffi_status(|| {
        let hex = arg_str(hex, "hex")?;
        let out = arg_out(out, "out")?;
        out.bytes = AgentId::from_hex(hex)?.0;
        Ok(())
    })
}

/// Generates a new agent key pair and writes it, serialized, to `*out` (free it with
/// `x0x_bytes_free`). Store it to keep an agent's identity; pass it to
/// `x0x_agent_builder_with_agent_key`.
///
/// Format (`X0X_KEYPAIR_LEN` = 72 bytes): `"x0xk"`, version 1, algorithm 1 (ML-DSA-65), two zero
/// bytes, the 32-byte FIPS 204 seed, then SHA-256 of the first 40 bytes. The bytes are secret.
///
/// Returns `X0X_OK`, `X0X_INVALID_ARGUMENT` (NULL `out`) or `X0X_CRYPTO`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_key_generate(out: *mut X0xBytes) -> X0xStatus {
    ffi_status(|| {
        let out = arg_out(out, "out")?;
        *out = X0xBytes::from_vec(Keypair::generate()?.to_bytes());
        Ok(())
    })
}

pub(crate) fn write_id(out: *mut X0xId, bytes: [u8; X0X_ID_LEN]) -> Result<()> {
    // SAFETY: forwarded from the extern fn's contract: NULL or valid for a write.
    let out = unsafe { arg_out(out, "out")? };
    *out = X0xId::from(bytes);
    Ok(())
}
