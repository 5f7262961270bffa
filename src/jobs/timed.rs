//! Timed work: weakening changes whose 48 hours are up take effect; owners whose right
//! password was not followed by a second factor within three minutes are alerted; API-key
//! last use is written in batches, with address alerts and expiry warnings.

use std::time::Duration;

use crate::service::Services;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TimedReport {
    pub changes_applied: usize,
    pub signin_alerts: usize,
    /// API-key mails queued (forbidden-address alerts, expiry warnings).
    pub api_key_mails: usize,
}

/// One pass over everything that is due.
pub async fn step(services: &Services) -> anyhow::Result<TimedReport> {
    Ok(TimedReport {
        changes_applied: services.weakening.apply_due_changes().await?,
        signin_alerts: services.signin.alert_incomplete_signins().await?,
        api_key_mails: services.api_keys.api_key_housekeeping().await?,
    })
}

/// Runs `step` every `every` until `shutdown` changes.
pub async fn run(
    services: Services,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = step(&services).await {
            tracing::error!("timed job failed: {e:#}");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}
