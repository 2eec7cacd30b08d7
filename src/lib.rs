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
pub mod direct;
/// cbindgen:ignore
pub(crate) mod duplicates;
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
pub(crate) mod gossip;
/// cbindgen:ignore
pub mod identity;
/// cbindgen:ignore
pub(crate) mod instance;
/// cbindgen:ignore
pub mod logs;
/// cbindgen:ignore
pub(crate) mod net;
/// cbindgen:ignore
pub(crate) mod overlay;
/// cbindgen:ignore
pub(crate) mod penalties;
/// cbindgen:ignore
pub mod presence;
/// cbindgen:ignore
pub(crate) mod private_files;
/// cbindgen:ignore
pub mod pubsub;
/// cbindgen:ignore
pub(crate) mod queue;
/// cbindgen:ignore
pub(crate) mod replay;
/// cbindgen:ignore
pub(crate) mod replica;
/// cbindgen:ignore
pub(crate) mod runtime;
/// cbindgen:ignore
#[doc(hidden)]
pub mod sim;
/// cbindgen:ignore
pub mod stats;
/// cbindgen:ignore
pub(crate) mod streams;
/// cbindgen:ignore
pub mod tasklist;
/// cbindgen:ignore
pub mod tasklists;
/// cbindgen:ignore
#[cfg(any(feature = "testing", fuzzing))]
#[doc(hidden)]
pub mod testing;
/// cbindgen:ignore
pub(crate) mod wire;

pub use agent::{Agent, AgentBuilder};
pub use direct::{DirectMessage, Inbox};
pub use error::{Error, ErrorKind, Result};
pub use events::{Event, EventStream};
pub use identity::{AgentId, Keypair, MachineId, PublicKey};
pub use presence::AgentInfo;
pub use pubsub::{Message, Subscription};
pub use stats::{Stats, TopicStats};
pub use tasklist::TaskId;
pub use tasklists::{TaskList, TaskStatus};
