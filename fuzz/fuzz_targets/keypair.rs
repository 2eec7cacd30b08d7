//! Key pair bytes (`Keypair::from_bytes`: key files and `x0x_agent_builder_with_agent_key`)
//! and hex ids (`AgentId::from_hex`, `MachineId::from_hex`; ids typed by users and C callers).
//!
//! Checks: nothing panics; a key that parses serializes back to the same bytes, and its clone
//! and its re-parse are the same key, which signs what it verifies; a rejection is an
//! `InvalidArgument`; a hex id parses exactly when it is 64 hex digits, and back to lower case.
//!
//! Input: byte 0 is the mode, the rest its argument. Odd: the rest's first 40 bytes get a
//! computed checksum appended (the checks behind the checksum are out of a mutator's reach
//! otherwise). Even: the rest as it is. Either way the rest is also parsed as a hex id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use x0x::{AgentId, ErrorKind, Keypair, MachineId};

fn check_key(bytes: &[u8]) {
    match Keypair::from_bytes(bytes) {
        Ok(key) => {
            assert_eq!(key.to_bytes(), bytes, "a parsed key serializes differently");
            let again = Keypair::from_bytes(&key.to_bytes()).expect("a serialized key parses");
            assert_eq!(again.public_key(), key.public_key());
            assert_eq!(key.clone().public_key(), key.public_key());
            let signature = key.sign(bytes).expect("signs");
            assert!(key.public_key().verify(bytes, &signature));
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        }
    }
}

fn check_hex(text: &str) {
    let well_formed = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
    match AgentId::from_hex(text) {
        Ok(id) => {
            assert!(well_formed, "{text:?} parsed as an id");
            assert_eq!(id.to_hex(), text.to_ascii_lowercase());
            assert_eq!(MachineId::from_hex(text).expect("same rules").0, id.0);
        }
        Err(e) => {
            assert!(!well_formed, "{text:?} did not parse: {e}");
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(MachineId::from_hex(text).is_err());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 && rest.len() >= 40 {
        let head: &[u8; 40] = rest[..40].try_into().expect("40 bytes");
        check_key(&x0x_fuzz::key_bytes(head));
    } else {
        check_key(rest);
    }
    check_hex(&String::from_utf8_lossy(rest));
});
