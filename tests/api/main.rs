//! The integration suite: one binary, the real server over HTTP. Runs on SQLite, and on
//! PostgreSQL when RAMPART_TEST_DATABASE_URL is set.

// Test code: a failed expectation should stop the test with its message. clippy.toml's
// allow-*-in-tests covers #[test] functions but not the helpers they share, hence this.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod helpers;

mod accounts;
mod api_keys;
mod audit;
mod bad_input;
mod console;
mod email_change;
mod factors;
mod gateway_clients;
mod gateway_listener;
mod gateway_nginx;
mod gateway_njs;
mod incidents;
mod lockout;
mod origin;
mod outbox;
mod pages;
mod protection;
mod schema;
mod served;
mod sessions;
mod step_up_email;
mod store_contract;
mod support;
mod test_logs;
mod withdrawals;
