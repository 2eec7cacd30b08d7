//! The hello, the first frame of every connection, decoded before the peer is authenticated
//! (`net::read_hello`: postcard `wire::Hello`), then checked (`Hello::verify`) against a fixed
//! TLS exporter secret, as each side of a connection does.
//!
//! Checks: nothing panics; a hello verifies for one role at most (a signature binds the role, so
//! a hello cannot be reflected back); a verified hello's keys are its `agent_key` and
//! `machine_key` and it does not verify for another connection's secret; a decoded hello encodes
//! and decodes to itself.
//!
//! Input: the frame's bytes (without the length prefix).
#![no_main]

use libfuzzer_sys::fuzz_target;
use x0x::testing::wire::{self, Hello, Role};
use x0x_fuzz::EXPORTER;

fuzz_target!(|data: &[u8]| {
    let Ok(hello) = postcard::from_bytes::<Hello>(data) else {
        return;
    };
    let again: Hello = postcard::from_bytes(&wire::encode(&hello).expect("a hello encodes"))
        .expect("a re-encoded hello decodes");
    assert_eq!(
        (
            (&again.agent_key, &again.machine_key, &again.endorsement),
            (again.listen, again.incarnation, &again.signature)
        ),
        (
            (&hello.agent_key, &hello.machine_key, &hello.endorsement),
            (hello.listen, hello.incarnation, &hello.signature)
        ),
        "a hello does not survive encoding"
    );
    let dialer = hello.verify(Role::Dialer, &EXPORTER);
    let acceptor = hello.verify(Role::Acceptor, &EXPORTER);
    assert!(
        dialer.is_err() || acceptor.is_err(),
        "a hello verifies for both roles"
    );
    for sender in [dialer, acceptor].into_iter().flatten() {
        assert_eq!(sender.agent_key.as_bytes(), &hello.agent_key[..]);
        let machine = x0x::PublicKey::from_bytes(&hello.machine_key).expect("verified");
        assert_eq!(sender.machine, machine.machine_id());
        let mut other = EXPORTER;
        other[0] ^= 1;
        assert!(hello.verify(Role::Dialer, &other).is_err());
        assert!(hello.verify(Role::Acceptor, &other).is_err());
    }
});
