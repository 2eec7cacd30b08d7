//! Remote addresses that keep sending invalid messages, and when to stop accepting them.
//!
//! A connection that sends [`crate::gossip`]'s strike limit of invalid messages is closed, but
//! a new one costs an attacker only a handshake with a throwaway key, and each costs the victim
//! a handshake plus a signature check per invalid message (measured: ~40 µs of CPU per invalid
//! message, ~2-4 ms per connection). So an IP address whose connections are closed for
//! strikes more than [`FREE_STRIKE_OUTS`] times is refused (before the handshake) for a while,
//! 1 s at first and twice as long for every further strike-out, up to [`MAX_REFUSAL`]. Agents
//! behind one address (NAT, loopback) share its record: established connections are never
//! touched, only new ones wait.
//!
//! [`FREE_STRIKE_OUTS`]: crate::penalties::FREE_STRIKE_OUTS
//! [`MAX_REFUSAL`]: crate::penalties::MAX_REFUSAL

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Strike-outs an address may have before it is refused.
pub const FREE_STRIKE_OUTS: u32 = 4;
/// The first refusal; each further strike-out doubles it.
pub const FIRST_REFUSAL: Duration = Duration::from_secs(1);
/// The longest refusal.
pub const MAX_REFUSAL: Duration = Duration::from_secs(60);
/// An address with no strike-out for this long starts over.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses tracked at most (the oldest record goes first).
const CAP: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Record {
    strike_outs: u32,
    last: Instant,
    refused_until: Option<Instant>,
}

/// Strike-out records by remote IP address; shared by the readers and the accept loop.
#[derive(Debug, Default)]
pub struct Penalties {
    by_ip: Mutex<HashMap<IpAddr, Record>>,
}

impl Penalties {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        self.by_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that a connection from `ip` was closed for too many invalid messages.
    pub fn strike_out(&self, ip: IpAddr, now: Instant) {
        let mut by_ip = self.lock();
        if by_ip.len() >= CAP && !by_ip.contains_key(&ip) {
            let oldest = by_ip.iter().min_by_key(|(_, r)| r.last).map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                by_ip.remove(&oldest);
            }
        }
        let record = by_ip.entry(ip).or_insert(Record {
            strike_outs: 0,
            last: now,
            refused_until: None,
        });
        if now.duration_since(record.last) > FORGET_AFTER {
            record.strike_outs = 0;
        }
        record.strike_outs += 1;
        record.last = now;
        if record.strike_outs > FREE_STRIKE_OUTS {
            let doublings = (record.strike_outs - FREE_STRIKE_OUTS - 1).min(16);
            let refusal = FIRST_REFUSAL
                .saturating_mul(1 << doublings)
                .min(MAX_REFUSAL);
            record.refused_until = Some(now + refusal);
        }
    }

    /// Whether a new connection from `ip` is refused at `now`.
    pub fn refuses(&self, ip: IpAddr, now: Instant) -> bool {
        self.lock()
            .get(&ip)
            .and_then(|r| r.refused_until)
            .is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_start_after_the_free_strike_outs_and_double_up_to_the_cap() {
        let penalties = Penalties::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t = Instant::now();
        for _ in 0..FREE_STRIKE_OUTS {
            penalties.strike_out(ip, t);
            assert!(!penalties.refuses(ip, t));
        }
        penalties.strike_out(ip, t);
        assert!(penalties.refuses(ip, t));
        assert!(!penalties.refuses(other, t), "only that address");
        assert!(penalties.refuses(ip, t + FIRST_REFUSAL - Duration::from_millis(1)));
        assert!(!penalties.refuses(ip, t + FIRST_REFUSAL));
        penalties.strike_out(ip, t);
        assert!(penalties.refuses(ip, t + FIRST_REFUSAL * 2 - Duration::from_millis(1)));
        assert!(!penalties.refuses(ip, t + FIRST_REFUSAL * 2));
        for _ in 0..40 {
            penalties.strike_out(ip, t);
        }
        assert!(penalties.refuses(ip, t + MAX_REFUSAL - Duration::from_millis(1)));
        assert!(!penalties.refuses(ip, t + MAX_REFUSAL));
    }

    #[test]
    fn a_quiet_address_starts_over_and_the_table_is_bounded() {
        let penalties = Penalties::default();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..=FREE_STRIKE_OUTS {
            penalties.strike_out(ip, t);
        }
        let later = t + FORGET_AFTER + Duration::from_secs(1);
        penalties.strike_out(ip, later);
        assert!(
            !penalties.refuses(ip, later),
            "a strike-out long after counts as the first"
        );
        for i in 0..CAP as u32 + 10 {
            penalties.strike_out(IpAddr::from(i.to_be_bytes()), t);
        }
        assert_eq!(penalties.lock().len(), CAP);
    }
}
