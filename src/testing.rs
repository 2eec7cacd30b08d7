//! The internals the integration tests (`tests/*.rs`) and the fuzz targets (`fuzz/`) reach:
//! built only with the `testing` feature (the tests' own dev-dependency on x0x turns it on) or
//! under `--cfg fuzzing`. Not an API: nothing here is stable, and users never need it.

/// The QUIC transport: endpoints, authenticated dials, close codes.
pub mod net {
    pub use crate::net::*;
}

/// What crosses the network: frames, hellos, envelopes, iroh-gossip's byte layout.
pub mod wire {
    pub use crate::wire::*;
}

/// Per-connection readers and writers.
pub mod streams {
    pub use crate::streams::*;
}

/// The per-sender replay window.
pub mod replay {
    pub use crate::replay::*;
}

pub use crate::gossip::MAX_STRIKES;
pub use crate::overlay::node::network_topic;

/// How many neighbours `agent` has in `topic`'s swarm (0 if it takes no part in the topic).
pub fn swarm_neighbours(agent: &crate::Agent, topic: &str) -> usize {
    agent.context().swarm_neighbours(topic)
}

/// `agent`'s current signed card, as it shows it to peers.
pub fn card_of(agent: &crate::Agent) -> bytes::Bytes {
    agent
        .presence()
        .card()
        .expect("the agent can sign its card")
        .0
}

/// A task list's sync messages, and the topic and key its id grants.
pub mod replica {
    pub use crate::replica::{ListChannel, SyncMessage};
}
