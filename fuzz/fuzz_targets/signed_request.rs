//! Fuzzes the gateway's parser of signed requests (query string + body) and the signature
//! check that follows it: no input may panic, and whatever parses must verify or not
//! without error.
//!
//! Run: `cargo install cargo-fuzz && cargo fuzz run signed_request` (needs a nightly
//! toolchain, or RUSTC_BOOTSTRAP=1 with the stable one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::domain::api_key::{parse_signed, timestamp_ok, Verifier};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let split = data.first().map_or(0, |b| usize::from(*b)) % (text.len() + 1);
    let mid = (0..=split).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    let (query, body) = text.split_at(mid);
    if let Ok(req) = parse_signed(query, body) {
        let _ = timestamp_ok(&req, 1_700_000_000_000);
        let _ = Verifier::hmac("rmps_fuzz").verify(req.payload.as_bytes(), &req.signature);
    }
});
