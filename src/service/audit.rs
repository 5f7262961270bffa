//! Verifying the hash-chained audit log.

use crate::domain::audit::{verify_chain, ChainBreak, GENESIS};
use crate::store::{Store, StoreResult};

/// Walks every event in order. `Ok(Ok(n))`: n events, chain intact. `Ok(Err(why))`: where
/// it breaks, in words.
pub async fn verify(store: &dyn Store) -> StoreResult<Result<u64, String>> {
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut prev = GENESIS.to_owned();
    let mut after = 0;
    let mut count = 0u64;
    loop {
        let batch = store.audit_events(after, 1000).await?;
        let Some(last) = batch.last() else {
            // The head is written in the same transaction as each event: a chain that ends
            // before the head does had events cut off its end.
            if after != head_seq || prev != head_hash {
                return Ok(Err(format!("the log ends at event {after} but {head_seq} were written (events removed from the end)")));
            }
            return Ok(Ok(count));
        };
        if let Some(first) = batch.first() {
            if first.seq != after + 1 {
                return Ok(Err(format!("event {} is missing", after + 1)));
            }
        }
        if let Some(w) = batch.windows(2).find(|w| w[1].seq != w[0].seq + 1) {
            return Ok(Err(format!("event {} is missing", w[0].seq + 1)));
        }
        match verify_chain(&prev, &batch) {
            Ok(h) => prev = h,
            Err(ChainBreak::Altered { seq }) => {
                return Ok(Err(format!("event {seq} was altered after it was written")))
            }
            Err(ChainBreak::Broken { seq }) => {
                return Ok(Err(format!(
                    "event {seq} does not follow the event before it (removed or reordered events)"
                )))
            }
        }
        after = last.seq;
        count += batch.len() as u64;
    }
}
