//! The overlay: what an agent decides about its peers, as sans-IO state machines (no sockets,
//! tasks or clocks; `crate::gossip` drives them on tokio and quinn).

pub(crate) mod broadcast;
pub(crate) mod directory;
pub(crate) mod links;
pub(crate) mod membership;
pub(crate) mod node;
