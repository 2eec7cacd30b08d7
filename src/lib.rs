//! x0x: an agent networking SDK.
//!
//! The crate has two halves. The core (every module but [`ffi`]) is safe Rust on tokio and knows
//! nothing of C or Python. [`ffi`] is the only place with `extern "C"` functions and raw
//! pointers; `include/x0x.h` is generated from it by cbindgen, which is told to skip the core.

/// cbindgen:ignore
pub mod agent;
/// cbindgen:ignore
pub(crate) mod context;
/// cbindgen:ignore
pub mod duplicates;
/// cbindgen:ignore
pub mod error;
/// cbindgen:ignore
pub mod events;
pub mod ffi;
/// cbindgen:ignore
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
/// cbindgen:ignore
pub mod gossip;
/// cbindgen:ignore
pub mod identity;
/// cbindgen:ignore
pub(crate) mod instance;
/// cbindgen:ignore
pub mod net;
/// cbindgen:ignore
pub(crate) mod overlay;
/// cbindgen:ignore
pub mod penalties;
/// cbindgen:ignore
pub mod pubsub;
/// cbindgen:ignore
pub mod queue;
/// cbindgen:ignore
pub mod replay;
/// cbindgen:ignore
pub mod runtime;
/// cbindgen:ignore
#[doc(hidden)]
pub mod sim;
/// cbindgen:ignore
pub mod stats;
pub mod streams;
/// cbindgen:ignore
pub mod tasklist;
/// cbindgen:ignore
pub mod tasklists;
/// cbindgen:ignore
pub mod wire;

pub use agent::{Agent, AgentBuilder};
pub use error::{Error, ErrorKind, Result};
pub use identity::{AgentId, Keypair, MachineId, PublicKey};
