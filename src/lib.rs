//! Rampart: the account-protection server behind a platform's Security Center.
//!
//! Modules in reading order:
#![forbid(unsafe_code)]

/// Building and running the whole application from settings.
pub mod app;
/// `rampart bench`: throughput and latency measurements.
pub mod bench;
/// Injected time: every rule reads `now` from a [`clock::Clock`], so tests move time.
pub mod clock;
/// Typed settings: defaults < `rampart.toml` < `RAMPART_*` environment.
pub mod config;
/// Demo mode: a seeded account whose history looks compromised.
pub mod demo;
/// The rules, pure: emails, passwords, devices, throttling, audit chaining. No I/O.
pub mod domain;
/// IP geolocation from an MMDB file (DB-IP city lite); "unknown" without one.
pub mod geo;
/// HTTP edge: JSON API, server-rendered pages, errors, extractors, middleware.
pub mod http;
/// Background work: the outbox delivery worker.
pub mod jobs;
/// Outgoing mail: composition (with the anti-phishing code) and SMTP / local mailbox delivery.
pub mod mail;
/// The incident report as a PDF.
pub mod pdf;
/// Application services: the use cases that combine domain rules, storage and time.
pub mod service;
/// Storage traits by area and their SQLite and PostgreSQL implementations.
pub mod store;
