//! The private items the fuzz targets (fuzz/) need, exposed only when x0x is built for fuzzing:
//! cargo-fuzz passes `--cfg fuzzing` to every crate it builds, and a normal build has no such
//! module. The targets use these instead of copies, so they always fuzz what x0x runs. Not an API.

use iroh_gossip::proto;

use crate::error::Result;
use crate::tasklist::TaskListState;
use crate::tasklists::{PersistedList, Store, SyncMessage};

pub use crate::gossip::{network_topic, MAX_STRIKES};
pub use crate::wire::MESSAGE_DOMAIN;

/// `replay::WINDOW`: how far below a sender's highest sequence number is still accepted.
pub const WINDOW: u64 = crate::replay::WINDOW;

/// `gossip::proto_config`: the configuration of an agent's gossip state machine.
pub fn proto_config() -> proto::Config {
    crate::overlay::node::proto_config()
}

/// Decodes a task list pub/sub payload (`tasklists::SyncMessage`) as `TaskList::on_message`
/// does: the name and state of a delta or full-state chunk, `None` for a request.
pub fn decode_sync_message(
    payload: &[u8],
) -> std::result::Result<Option<(String, TaskListState)>, postcard::Error> {
    Ok(match postcard::from_bytes::<SyncMessage>(payload)? {
        SyncMessage::Delta { name, state } | SyncMessage::Full { name, state } => {
            Some((name, state))
        }
        SyncMessage::Request => None,
    })
}

/// The payloads a list named `name` sends: a delta and a full-state chunk of `state`, and a
/// request.
pub fn encode_sync_messages(name: &str, state: &TaskListState) -> Vec<Vec<u8>> {
    [
        SyncMessage::Delta {
            name: name.into(),
            state: state.clone(),
        },
        SyncMessage::Full {
            name: name.into(),
            state: state.clone(),
        },
        SyncMessage::Request,
    ]
    .iter()
    .map(|message| crate::wire::encode(message).expect("a sync message encodes"))
    .collect()
}

/// Decodes a task list file as `Store::load_all` does (`Store::decode`: magic, version,
/// checksum, then the postcard `tasklists::PersistedList`); returns the list's name and state.
pub fn decode_list_file(bytes: &[u8]) -> std::result::Result<(String, TaskListState), String> {
    Store::decode(bytes).map(|list| (list.name, list.state))
}

/// A task list file as `Store::save` writes it (`Store::encode`).
pub fn encode_list_file(
    id: [u8; 32],
    name: &str,
    me: [u8; 32],
    state: TaskListState,
) -> Result<Vec<u8>> {
    Store::encode(&PersistedList {
        id,
        name: name.into(),
        me,
        state,
    })
}
