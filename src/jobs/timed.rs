//! Timed work: weakening changes whose 48 hours are up take effect; owners whose right
//! password was not followed by a second factor within three minutes are alerted; API-key
//! last use is written in batches, with address alerts and expiry warnings; recovery
//! evidence is deleted 30 days after its request was decided; held withdrawals whose hold
//! ran out are released (one transaction each: a worker killed mid-batch releases none twice).

use std::time::Duration;

use crate::service::Services;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TimedReport {
    pub changes_applied: usize,
    pub signin_alerts: usize,
    /// API-key mails queued (forbidden-address alerts, expiry warnings).
    pub api_key_mails: usize,
    /// Files of recovery evidence deleted after their retention.
    pub evidence_deleted: usize,
    /// Held withdrawals released because their hold ran out.
    pub withdrawals_released: usize,
}

/// One pass over everything that is due. Each kind of work runs whatever happened to the
/// others: a failure in one (a damaged row, a database hiccup) must not stop the alerts
/// and changes of every other account. Any failure is returned after all of them ran.
pub async fn step(services: &Services) -> anyhow::Result<TimedReport> {
    let changes = services.pending_changes.apply_due_changes().await;
    let alerts = services.signin.alert_incomplete_signins().await;
    let key_mails = services.api_keys.api_key_housekeeping().await;
    let evidence = services.support.delete_expired_evidence().await;
    let released = services.withdrawals.release_due(500).await;
    let mut failed = Vec::new();
    let mut count = |what: &str, r: crate::service::ServiceResult<usize>| match r {
        Ok(n) => n,
        Err(e) => {
            failed.push(format!("{what}: {e}"));
            0
        }
    };
    let report = TimedReport {
        changes_applied: count("applying due changes", changes),
        signin_alerts: count("unfinished sign-in alerts", alerts),
        api_key_mails: count("API key housekeeping", key_mails),
        evidence_deleted: count("deleting expired recovery evidence", evidence),
        withdrawals_released: count("releasing held withdrawals", released),
    };
    if failed.is_empty() {
        Ok(report)
    } else {
        Err(anyhow::anyhow!("{}", failed.join("; ")))
    }
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
