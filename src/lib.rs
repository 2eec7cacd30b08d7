//! x0x: an agent networking SDK.
//!
//! The crate has two halves. The core (`identity`, `agent`, `runtime`, `error`) is safe Rust on
//! tokio and knows nothing of C or Python. [`ffi`] is the only place with `extern "C"` functions
//! and raw pointers; `include/x0x.h` is generated from it by cbindgen.

pub mod agent;
pub mod error;
pub mod ffi;
pub mod identity;
pub mod runtime;

pub use agent::{Agent, AgentBuilder};
pub use error::{Error, ErrorKind, Result};
pub use identity::{AgentId, Keypair, MachineId, PublicKey};
