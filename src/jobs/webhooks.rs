//! Webhook delivery: every security event is POSTed, signed, to each registered endpoint;
//! claims use a lease like the mail outbox, failures are retried with the same backoff.

use std::sync::Arc;
use std::time::Duration;

use crate::service::protection::Protection;

pub struct WebhookWorker {
    protection: Arc<Protection>,
    http: reqwest::Client,
}

impl WebhookWorker {
    pub fn new(protection: Arc<Protection>) -> anyhow::Result<Self> {
        // No redirects: a signed event goes to the registered URL or nowhere.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Rampart-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { protection, http })
    }

    /// Delivers one batch of due events; returns how many were delivered.
    pub async fn step(&self) -> anyhow::Result<usize> {
        crate::service::protection::deliver_webhooks(&self.protection, &self.http).await
    }

    /// Polls every `poll` until `shutdown` changes; goes on at once while batches are full.
    pub async fn run(self, poll: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.step().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!("webhook delivery failed: {e:#}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
