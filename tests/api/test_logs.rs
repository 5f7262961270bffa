//! No secret reaches the logs. Each test process writes everything the app logs (rampart at
//! TRACE, sqlx and tower_http at DEBUG) to `target/test-logs/api-PID.log`, and the helpers
//! that see a secret (passwords and codes the tests send, mailed codes and link tokens,
//! session and device cookies, TOTP seeds, backup codes, API key secrets, the server key)
//! record it in `api-PID.secrets`. After the whole suite, scripts/test runs the ignored test
//! below, which fails naming the kind of secret and the log line of every one it finds.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// Shorter values are not recorded: a test's deliberately wrong password "x" is no secret,
/// and would be found in every line. Every secret Rampart issues is longer.
const MIN_SECRET_CHARS: usize = 6;

/// `<target>/test-logs` (CARGO_TARGET_TMPDIR is `<target>/tmp`).
pub fn dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-logs")
}

struct Recorder {
    file: File,
    seen: HashSet<String>,
}

static RECORDER: OnceLock<Mutex<Recorder>> = OnceLock::new();

/// Sends this process's logs to its log file; the first call of the process does it, the
/// others return at once. `spawn` calls it before building any app.
pub fn install() {
    recorder();
}

fn recorder() -> &'static Mutex<Recorder> {
    RECORDER.get_or_init(|| {
        let dir = dir();
        std::fs::create_dir_all(&dir).expect("create target/test-logs");
        let pid = std::process::id();
        let log = File::create(dir.join(format!("api-{pid}.log"))).expect("create the log file");
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "warn,rampart=trace,sqlx=debug,tower_http=debug",
            ))
            .with_writer(Mutex::new(log))
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per process");
        let file = File::create(dir.join(format!("api-{pid}.secrets"))).expect("secrets file");
        Mutex::new(Recorder {
            file,
            seen: HashSet::new(),
        })
    })
}

/// Remembers that the tests saw `value`, a secret of this kind.
pub fn record(kind: &str, value: &str) {
    if value.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    let mut r = recorder().lock().expect("secrets file");
    if r.seen.insert(value.to_owned()) {
        let line = serde_json::json!([kind, value]).to_string();
        writeln!(r.file, "{line}").expect("record a secret");
    }
}

/// The kind of secret a request's JSON or form field of this name carries, if any.
fn kind_of_request_field(name: &str) -> Option<&'static str> {
    Some(match name {
        "password" | "new_password" | "current_password" => "password",
        "code" | "email_code" => "code (mailed, TOTP or anti-phishing)",
        "backup_code" => "backup code",
        _ => return None,
    })
}

/// The kind of secret a response's JSON field of this name carries, if any. (Not `code`:
/// in an answer that is an error's stable code.)
fn kind_of_response_field(name: &str) -> Option<&'static str> {
    Some(match name {
        "backup_codes" => "backup code",
        "secret" => "TOTP seed or API key secret",
        // The key is an identifier, not a credential, but logs show only its start.
        "api_key" => "full API key",
        _ => return None,
    })
}

pub fn record_request_json(body: &Value) {
    record_json(body, kind_of_request_field);
}

pub fn record_response_json(body: &Value) {
    record_json(body, kind_of_response_field);
}

/// Records the values of secret-named fields, at any depth, strings or lists of strings.
fn record_json(body: &Value, kind_of: fn(&str) -> Option<&'static str>) {
    match body {
        Value::Object(fields) => {
            for (name, value) in fields {
                match (kind_of(name), value) {
                    // One field name, two secrets: HMAC API key secrets start `rmps_`.
                    (Some("TOTP seed or API key secret"), Value::String(s)) => {
                        let kind = if s.starts_with("rmps_") {
                            "API key secret"
                        } else {
                            "TOTP seed"
                        };
                        record(kind, s);
                    }
                    (Some(kind), Value::String(s)) => record(kind, s),
                    (Some(kind), Value::Array(items)) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .for_each(|s| record(kind, s)),
                    _ => record_json(value, kind_of),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| record_json(v, kind_of)),
        _ => {}
    }
}

pub fn record_form(fields: &[(&str, &str)]) {
    for (name, value) in fields {
        if let Some(kind) = kind_of_request_field(name) {
            record(kind, value);
        }
    }
}

/// A cookie the server set: session and device cookies are bearer tokens.
pub fn record_cookie(name: &str, value: &str) {
    record(&format!("cookie {name}"), value);
}

/// The secrets of a mail: six-digit codes, and the long tokens of its links (UUIDs, which
/// name accounts and devices, are not secrets).
pub fn record_mail(body: &str) {
    for word in tokens(body) {
        if word.len() == 6 && word.bytes().all(|b| b.is_ascii_digit()) {
            record("mailed code", word);
        }
    }
    for link in body.split_whitespace().filter(|w| w.contains("://")) {
        for part in link.split(['/', '?', '&', '=', '#']) {
            if part.len() >= 32 && uuid::Uuid::parse_str(part).is_err() {
                record("mailed link token", part);
            }
        }
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The words of a text: runs of letters, digits, `_`, `-`, and `.` between them (so the
/// digits after a decimal point are not taken for a six-digit code).
fn tokens(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !is_token_char(c) && c != '.')
        .map(|w| w.trim_matches('.'))
        .filter(|w| !w.is_empty())
}

/// Reads every `*.secrets` file: value → kind.
fn recorded_secrets(dir: &Path) -> HashMap<String, String> {
    let mut secrets = HashMap::new();
    for path in files_ending(dir, ".secrets") {
        let file = File::open(&path).expect("open a secrets file");
        for line in BufReader::new(file).lines() {
            let line = line.expect("read a secrets file");
            let (kind, value): (String, String) =
                serde_json::from_str(&line).expect("a recorded secret");
            secrets.insert(value, kind);
        }
    }
    secrets
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Whether the match at `at..end` of `line` stands alone. Short secrets (six-digit codes)
/// must: "0.123456" is a number, not a code. A longer one counts wherever it appears.
fn stands_alone(line: &str, at: usize, end: usize) -> bool {
    if end - at >= 8 {
        return true;
    }
    let before = line[..at].chars().next_back();
    let mut after = line[end..].chars();
    let glued_before = before.is_some_and(|c| is_token_char(c) || c == '.');
    let glued_after = match after.next() {
        Some('.') => after.next().is_some_and(is_token_char),
        Some(c) => is_token_char(c),
        None => false,
    };
    !glued_before && !glued_after
}

#[test]
#[ignore = "run by scripts/test after the whole suite: it reads the logs that run wrote"]
fn no_secret_the_tests_saw_is_in_the_logs() {
    let dir = dir();
    let logs = files_ending(&dir, ".log");
    assert!(
        !logs.is_empty(),
        "no logs in {}: run the suite first (scripts/test does)",
        dir.display()
    );
    let secrets: Vec<(String, String)> = recorded_secrets(&dir).into_iter().collect();
    // The check can only fail if the recording works: a full run sees each of these.
    let kinds: BTreeSet<&str> = secrets.iter().map(|(_, kind)| kind.as_str()).collect();
    for kind in [
        "password",
        "code (mailed, TOTP or anti-phishing)",
        "mailed code",
        "mailed link token",
        "backup code",
        "TOTP seed",
        "API key secret",
        "full API key",
        "cookie rampart_session",
        "server secret key",
    ] {
        assert!(
            kinds.contains(kind),
            "no {kind:?} recorded: is the whole suite's output in {}?",
            dir.display()
        );
    }
    let finder = aho_corasick::AhoCorasick::new(secrets.iter().map(|(value, _)| value))
        .expect("a finder for the secrets");
    let mut found = Vec::new();
    let mut lines_read = 0usize;
    for path in &logs {
        let file = File::open(path).expect("open a log");
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.expect("read a log line");
            lines_read += 1;
            let hit = finder
                .find_overlapping_iter(&line)
                .find(|m| stands_alone(&line, m.start(), m.end()));
            if let Some(m) = hit {
                let kind = &secrets[m.pattern().as_usize()].1;
                found.push(format!("{kind} in {}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    assert!(lines_read > 0, "the logs in {} are empty", dir.display());
    assert!(
        found.is_empty(),
        "{} log lines hold a secret the tests saw ({} secrets, {lines_read} lines checked):\n{}",
        found.len(),
        secrets.len(),
        found
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "no secret in the logs: {} secrets of {} kinds checked against {lines_read} lines",
        secrets.len(),
        kinds.len()
    );
}
