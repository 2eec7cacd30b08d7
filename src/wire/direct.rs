//! Direct messages and requests (`crate::direct`): one bidirectional stream per message on a
//! direct connection. The sender writes one [`Letter`] frame and finishes the stream; the
//! recipient writes one [`Answer`] frame and finishes its half. Who sent it is the
//! connection's authenticated peer, so a letter carries no signature.

use bytes::{BufMut, Bytes, BytesMut};

use super::{put_varint, read_varint, MAX_PAYLOAD_LEN};

/// A letter's frame is at most this long: the payload and its header.
pub const MAX_LETTER_LEN: usize = MAX_PAYLOAD_LEN + 32;
/// An answer's frame is at most this long: a reply payload, or a refusal's text.
pub const MAX_ANSWER_LEN: usize = MAX_PAYLOAD_LEN + 32;
/// A refusal's text is cut to this many bytes.
pub const MAX_REFUSAL_LEN: usize = 1024;

/// A direct message (`request_id` 0) or a request (any other id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Letter {
    pub request_id: u64,
    /// When the sender sent it (milliseconds since the Unix epoch, the sender's clock).
    pub timestamp_ms: u64,
    pub payload: Bytes,
}

impl Letter {
    /// The frame body.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(20 + self.payload.len());
        put_varint(&mut out, self.request_id);
        put_varint(&mut out, self.timestamp_ms);
        out.extend_from_slice(&self.payload);
        Bytes::from(out)
    }

    /// Reads a frame body; `None` if it does not decode.
    pub fn decode(frame: &Bytes) -> Option<Self> {
        let (request_id, rest) = read_varint(frame)?;
        let (timestamp_ms, rest) = read_varint(rest)?;
        let payload = frame.slice(frame.len() - rest.len()..);
        (payload.len() <= MAX_PAYLOAD_LEN).then_some(Self {
            request_id,
            timestamp_ms,
            payload,
        })
    }
}

/// What the recipient answers a letter with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A message is in the recipient's inbox.
    Delivered,
    /// A request's reply.
    Reply(Bytes),
    /// Not taken, or the request failed; the text says why (shown to the sender as is).
    Refused(String),
}

const DELIVERED: u8 = 0;
const REPLY: u8 = 1;
const REFUSED: u8 = 2;

impl Answer {
    /// The frame body.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Self::Delivered => out.put_u8(DELIVERED),
            Self::Reply(payload) => {
                out.put_u8(REPLY);
                out.put_slice(payload);
            }
            Self::Refused(why) => {
                out.put_u8(REFUSED);
                out.put_slice(truncated(why, MAX_REFUSAL_LEN).as_bytes());
            }
        }
        out.freeze()
    }

    /// Reads a frame body; `None` if it does not decode.
    pub fn decode(frame: &Bytes) -> Option<Self> {
        let (&tag, body) = frame.split_first()?;
        match tag {
            DELIVERED if body.is_empty() => Some(Self::Delivered),
            REPLY if body.len() <= MAX_PAYLOAD_LEN => Some(Self::Reply(frame.slice(1..))),
            REFUSED => Some(Self::Refused(
                String::from_utf8_lossy(&body[..body.len().min(MAX_REFUSAL_LEN)]).into_owned(),
            )),
            _ => None,
        }
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_and_answers_round_trip() {
        for letter in [
            Letter {
                request_id: 0,
                timestamp_ms: 1,
                payload: Bytes::new(),
            },
            Letter {
                request_id: u64::MAX,
                timestamp_ms: 1_765_000_000_000,
                payload: Bytes::from(vec![7; MAX_PAYLOAD_LEN]),
            },
        ] {
            let frame = letter.encode();
            assert!(frame.len() <= MAX_LETTER_LEN);
            assert_eq!(Letter::decode(&frame), Some(letter));
        }
        for answer in [
            Answer::Delivered,
            Answer::Reply(Bytes::from_static(b"ok")),
            Answer::Refused("no inbox".into()),
        ] {
            assert_eq!(Answer::decode(&answer.encode()), Some(answer));
        }
    }

    #[test]
    fn bad_frames_do_not_decode() {
        let too_big = Letter {
            request_id: 1,
            timestamp_ms: 1,
            payload: Bytes::from(vec![0; MAX_PAYLOAD_LEN + 1]),
        };
        assert_eq!(Letter::decode(&too_big.encode()), None);
        assert_eq!(Letter::decode(&Bytes::from_static(&[0xff; 11])), None);
        for bad in [&[][..], &[0, 1][..], &[9][..]] {
            assert_eq!(Answer::decode(&Bytes::copy_from_slice(bad)), None);
        }
        let long = Answer::Refused("é".repeat(MAX_REFUSAL_LEN)).encode();
        let Some(Answer::Refused(text)) = Answer::decode(&long) else {
            panic!("a long refusal decodes");
        };
        assert!(text.len() <= MAX_REFUSAL_LEN && !text.contains('\u{fffd}'));
    }
}
