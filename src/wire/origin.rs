//! Origin frames: a publisher's small batch sent unsigned, straight to its neighbours in the
//! topic's swarm, ahead of the signed envelope that carries the same batch (see
//! `overlay::node`). The sender is the connection's authenticated peer (the hello binds the
//! link to its agent key, TLS protects what crosses it), so the frame names no sender; the
//! signed envelope with the same sequence number follows and is compared with it.

use serde::{Deserialize, Serialize};

use super::{check_topic, encode, Item, Rejection, MAX_BATCH_BYTES, MAX_BATCH_ITEMS};
use crate::error::Result;

/// An origin frame's body: a batch this link's peer published, before it was signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The topic every message in the batch was published on.
    pub topic: String,
    /// The sequence number the signed envelope of this batch carries.
    pub seq: u64,
    /// The sequence number of the publisher's previous envelope on this topic in this run
    /// (`None` for its first): a receiver delivers the batch early only after that one.
    pub prev: Option<u64>,
    /// The messages, in publish order.
    pub items: Vec<Item>,
}

/// Encodes an origin frame's body.
pub fn encode_origin(topic: &str, seq: u64, prev: Option<u64>, items: &[Item]) -> Result<Vec<u8>> {
    // Field for field the layout of `Origin`, without copying the items.
    encode(&(topic, seq, prev, items))
}

/// Decodes an origin frame's body; `Malformed` if it does not decode or is over the limits of
/// an envelope (a topic of 1 to `MAX_TOPIC_LEN` bytes, at most `MAX_BATCH_ITEMS` messages and
/// `MAX_BATCH_BYTES` of payload).
pub fn parse_origin(body: &[u8]) -> std::result::Result<Origin, Rejection> {
    let origin: Origin = postcard::from_bytes(body).map_err(|_| Rejection::Malformed)?;
    let bytes: usize = origin.items.iter().map(|item| item.payload.len()).sum();
    if check_topic(&origin.topic).is_err()
        || origin.items.is_empty()
        || origin.items.len() > MAX_BATCH_ITEMS
        || bytes > MAX_BATCH_BYTES
        || origin.prev.is_some_and(|prev| prev >= origin.seq)
    {
        return Err(Rejection::Malformed);
    }
    Ok(origin)
}

/// What an origin frame and the signed envelope of the same batch must agree on: BLAKE3 over
/// the topic and the messages.
pub fn batch_hash(topic: &str, items: &[Item]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    // postcard of (topic, items): length-prefixed, so no two batches share an encoding.
    match encode(&(topic, items)) {
        Ok(bytes) => {
            hasher.update(&bytes);
        }
        // Encoding into a Vec cannot fail; hash something no batch encodes to if it does.
        Err(_) => {
            hasher.update(b"unencodable");
        }
    }
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::wire::{MAX_PAYLOAD_LEN, MAX_TOPIC_LEN};

    fn item(payload: &[u8]) -> Item {
        Item {
            timestamp_ms: 5,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn an_origin_round_trips_and_garbage_is_malformed() {
        let items = vec![item(b"one"), item(b"two")];
        let body = encode_origin("chat", 9, Some(8), &items).unwrap();
        let origin = parse_origin(&body).unwrap();
        assert_eq!(
            origin,
            Origin {
                topic: "chat".into(),
                seq: 9,
                prev: Some(8),
                items: items.clone(),
            }
        );
        assert_eq!(
            parse_origin(&encode_origin("chat", 1, None, &items).unwrap())
                .unwrap()
                .prev,
            None
        );
        for garbage in [&b""[..], b"\x00", &[0xff; 12], &body[..body.len() - 1]] {
            assert_eq!(parse_origin(garbage), Err(Rejection::Malformed));
        }
    }

    #[test]
    fn origins_are_bounded_like_envelopes() {
        let one = vec![item(b"x")];
        let bad = [
            encode_origin("", 2, None, &one).unwrap(),
            encode_origin(&"t".repeat(MAX_TOPIC_LEN + 1), 2, None, &one).unwrap(),
            encode_origin("t", 2, None, &[]).unwrap(),
            encode_origin("t", 2, None, &vec![item(b""); MAX_BATCH_ITEMS + 1]).unwrap(),
            encode_origin(
                "t",
                2,
                None,
                &vec![item(&[0; MAX_PAYLOAD_LEN]); MAX_BATCH_BYTES / MAX_PAYLOAD_LEN + 1],
            )
            .unwrap(),
            // `prev` names an earlier envelope.
            encode_origin("t", 2, Some(2), &one).unwrap(),
        ];
        for body in bad {
            assert_eq!(parse_origin(&body), Err(Rejection::Malformed));
        }
        let full = vec![item(b""); MAX_BATCH_ITEMS];
        assert!(parse_origin(&encode_origin("t", 2, Some(1), &full).unwrap()).is_ok());
    }

    #[test]
    fn the_batch_hash_covers_topic_and_every_message() {
        let items = vec![item(b"ab"), item(b"c")];
        let hash = batch_hash("t", &items);
        assert_eq!(hash, batch_hash("t", &items.clone()));
        assert_ne!(hash, batch_hash("u", &items));
        assert_ne!(hash, batch_hash("t", &[item(b"a"), item(b"bc")]));
        assert_ne!(hash, batch_hash("t", &items[..1]));
        let mut later = items.clone();
        later[1].timestamp_ms += 1;
        assert_ne!(hash, batch_hash("t", &later));
    }
}
