//! The outbox delivery worker: claims due mails with a lease, delivers them, and retries
//! failures with exponential backoff. A worker that dies mid-batch leaves leased rows that
//! another worker takes once the lease runs out, so no mail is lost; a mail may then be
//! sent twice, which its Message-ID (the outbox id) lets mail systems recognise.

use std::time::Duration;

use crate::clock::{Millis, SharedClock, MINUTE};
use crate::domain::retry::backoff;
use crate::mail::Transport;
use crate::store::SharedStore;

/// How long a claimed mail is reserved for the worker that claimed it, by default.
pub const LEASE: Millis = 2 * MINUTE;
/// After this many failed tries a mail is given up (and stays visible as dead).
pub const MAX_ATTEMPTS: i64 = 12;
const BATCH: i64 = 32;

#[derive(Clone)]
pub struct OutboxWorker {
    pub store: SharedStore,
    pub clock: SharedClock,
    pub transport: Transport,
    /// See [`LEASE`].
    pub lease: Millis,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepReport {
    pub sent: usize,
    pub failed: usize,
}

impl OutboxWorker {
    /// Claims one batch and delivers it.
    pub async fn step(&self) -> anyhow::Result<StepReport> {
        let now = self.clock.now();
        let batch = self.store.claim_mails(now, now + self.lease, BATCH).await?;
        let mut report = StepReport::default();
        for mail in batch {
            match self.transport.deliver(&mail).await {
                Ok(()) => {
                    self.store.mail_sent(&mail.id, self.clock.now()).await?;
                    metrics::counter!("rampart_mail_sent_total").increment(1);
                    report.sent += 1;
                }
                Err(e) => {
                    let now = self.clock.now();
                    let dead = mail.attempts >= MAX_ATTEMPTS;
                    let error = format!("{e:#}");
                    tracing::warn!(mail = %mail.id, attempts = mail.attempts, dead, "mail delivery failed: {error}");
                    self.store
                        .mail_failed(&mail.id, &error, now + backoff(mail.attempts), dead, now)
                        .await?;
                    metrics::counter!("rampart_mail_failed_total").increment(1);
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Delivers until nothing is due (tests and the demo use this).
    pub async fn drain(&self) -> anyhow::Result<StepReport> {
        let mut total = StepReport::default();
        loop {
            let r = self.step().await?;
            total.sent += r.sent;
            total.failed += r.failed;
            if r.sent + r.failed == 0 {
                return Ok(total);
            }
        }
    }

    /// Polls every `poll` until `shutdown` resolves.
    pub async fn run(self, poll: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.step().await {
                Ok(r) if r.sent + r.failed > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!("outbox step failed: {e:#}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
