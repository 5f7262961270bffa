//! The integration suite: one binary, the real server over HTTP. Runs on SQLite, and on
//! PostgreSQL when RAMPART_TEST_DATABASE_URL is set.

mod helpers;

mod accounts;
mod api_keys;
mod audit;
mod bad_input;
mod factors;
mod gateway_nginx;
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
