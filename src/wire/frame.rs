//! Frames: a big-endian `u32` length, then that many bytes; after the hello each starts with
//! a [`FrameKind`] byte.

/// The largest frame a peer may send; a longer length prefix closes the connection.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// The gossip layer's message size limit: a frame minus room for its own header.
pub const GOSSIP_MAX_MESSAGE_SIZE: usize = MAX_FRAME_LEN - 4096;

/// What a frame after the hello holds: its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A postcard-encoded `iroh_gossip::proto::Message`.
    Gossip = 0,
    /// A publisher's public key ([`crate::identity::PUBLIC_KEY_LEN`] bytes), sent before the
    /// first envelope from that publisher on the stream.
    Key = 1,
    /// A postcard-encoded directory message (`overlay::directory::Message`), point to point.
    Directory = 2,
    /// A signed agent card (`presence`), on the control stream.
    Card = 3,
    /// A postcard-encoded [`crate::wire::Origin`]: a batch the link's peer published, sent
    /// before its signed envelope, on the lane the peer's own envelopes take.
    Origin = 4,
}

/// Splits a frame after the hello into its kind and body; `None` for an unknown kind.
pub fn split_frame(frame: &[u8]) -> Option<(FrameKind, &[u8])> {
    let (&kind, body) = frame.split_first()?;
    match kind {
        0 => Some((FrameKind::Gossip, body)),
        1 => Some((FrameKind::Key, body)),
        2 => Some((FrameKind::Directory, body)),
        3 => Some((FrameKind::Card, body)),
        4 => Some((FrameKind::Origin, body)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_after_the_hello_say_what_they_hold() {
        assert_eq!(
            split_frame(&[0, 9, 9]),
            Some((FrameKind::Gossip, &[9u8, 9][..]))
        );
        assert_eq!(split_frame(&[1]), Some((FrameKind::Key, &[][..])));
        assert_eq!(split_frame(&[2]), Some((FrameKind::Directory, &[][..])));
        assert_eq!(split_frame(&[3, 7]), Some((FrameKind::Card, &[7u8][..])));
        assert_eq!(split_frame(&[4, 0]), Some((FrameKind::Origin, &[0u8][..])));
        assert_eq!(split_frame(&[5, 0]), None);
        assert_eq!(split_frame(&[]), None);
    }
}
