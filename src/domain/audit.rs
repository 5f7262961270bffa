//! The audit log's hash chain. Each event's hash covers the previous event's hash and every
//! field of the event, so changing, removing or reordering any stored event breaks every
//! hash after it; `rampart audit verify` recomputes the chain.

use sha2::{Digest, Sha256};

use crate::clock::Millis;

/// The hash that the first event chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event as stored: who, what, when, from which IP and device, with details as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: Millis,
    pub account_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// SHA-256 over the previous hash and the length-prefixed fields (no field can bleed into
/// the next).
#[allow(clippy::too_many_arguments)]
pub fn chain_hash(
    prev_hash: &str,
    seq: i64,
    at: Millis,
    account_id: Option<&str>,
    actor: &str,
    action: &str,
    ip: Option<&str>,
    device: Option<&str>,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"rampart-audit-v1");
    let mut field = |bytes: Option<&[u8]>| match bytes {
        None => h.update([0u8]),
        Some(b) => {
            h.update([1u8]);
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        }
    };
    field(Some(prev_hash.as_bytes()));
    field(Some(&seq.to_be_bytes()));
    field(Some(&at.to_be_bytes()));
    field(account_id.map(str::as_bytes));
    field(Some(actor.as_bytes()));
    field(Some(action.as_bytes()));
    field(ip.map(str::as_bytes));
    field(device.map(str::as_bytes));
    field(Some(detail.as_bytes()));
    hex::encode(h.finalize())
}

impl AuditRecord {
    pub fn expected_hash(&self) -> String {
        chain_hash(
            &self.prev_hash,
            self.seq,
            self.at,
            self.account_id.as_deref(),
            &self.actor,
            &self.action,
            self.ip.as_deref(),
            self.device.as_deref(),
            &self.detail,
        )
    }
}

/// Where a chain first goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The event's own hash does not match its contents.
    Altered { seq: i64 },
    /// The event does not chain from the one before it (removed or reordered events).
    Broken { seq: i64 },
}

/// Verifies events given in `seq` order, continuing from `prev` (GENESIS at the start).
/// Returns the last hash on success.
pub fn verify_chain<'a>(
    prev: &str,
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<String, ChainBreak> {
    let mut prev = prev.to_owned();
    for r in records {
        if r.prev_hash != prev {
            return Err(ChainBreak::Broken { seq: r.seq });
        }
        if r.expected_hash() != r.hash {
            return Err(ChainBreak::Altered { seq: r.seq });
        }
        prev = r.hash.clone();
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord {
                    seq,
                    at: seq * 1000,
                    account_id: Some("a".into()),
                    actor: "account".into(),
                    action: "signin.succeeded".into(),
                    ip: Some("203.0.113.9".into()),
                    device: None,
                    detail: "{}".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                r.hash = r.expected_hash();
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn detects_alteration_removal_and_reordering() {
        let good = chain(4);
        assert!(verify_chain(GENESIS, &good).is_ok());
        let mut altered = good.clone();
        altered[1].ip = Some("198.51.100.1".into());
        assert_eq!(
            verify_chain(GENESIS, &altered),
            Err(ChainBreak::Altered { seq: 2 })
        );
        let mut removed = good.clone();
        removed.remove(1);
        assert_eq!(
            verify_chain(GENESIS, &removed),
            Err(ChainBreak::Broken { seq: 3 })
        );
        let mut swapped = good;
        swapped.swap(2, 3);
        assert!(verify_chain(GENESIS, &swapped).is_err());
    }
}
