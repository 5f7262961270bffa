//! Background work. Each job has a single-step function that tests call directly, and a
//! loop; [`spawn`] starts every loop that `rampart serve` runs, so no job can exist that the
//! running server forgets to start.

pub mod outbox;
pub mod timed;
pub mod webhooks;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::service::Services;

/// How often each loop looks for work.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    pub outbox: Duration,
    pub timed: Duration,
    pub webhooks: Duration,
}

/// Starts the mail outbox, the timed job and webhook delivery; each stops when `stop`
/// turns true (after finishing the item in hand). The jobs get the services they call,
/// never the HTTP edge's state: they run beside the server, not inside it.
pub fn spawn(
    services: &Services,
    outbox: outbox::OutboxWorker,
    every: Intervals,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let webhooks = webhooks::WebhookWorker::new(services.protection.clone())?;
    Ok(vec![
        tokio::spawn(outbox.run(every.outbox, stop.clone())),
        tokio::spawn(timed::run(services.clone(), every.timed, stop.clone())),
        tokio::spawn(webhooks.run(every.webhooks, stop.clone())),
    ])
}
