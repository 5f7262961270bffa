//! Background work. Each job has a single-step function that tests call directly, and a
//! loop that `rampart serve` runs.

pub mod outbox;
pub mod timed;
