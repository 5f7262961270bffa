//! `rampart bench`: measurements reported in issue notes and the README.
//!
//! - `login`: sign-ins per second through the real sign-in service (throttle checks,
//!   argon2id, device, session, login row and audit event in one transaction) against
//!   argon2id verifications per second alone, same parameters, same cores, alternating
//!   rounds in one run; prints each round and the median ratio.
//! - `seed`: an account with many devices and a live session, for the HTTP load runs of
//!   `scripts/bench-http` (wrk against `GET /api/v1/me` and `/api/v1/me/devices`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::json;

use crate::clock::{SystemClock, HOUR};
use crate::config::Settings;
use crate::domain::device::DeviceInfo;
use crate::domain::password;
use crate::domain::secret::{random_token, token_hash};
use crate::service::Client;
use crate::store::{
    Account, AuditEvent, Confirmation, Device, Effects, Login, Session, SignInRecord,
};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Sign-ins/s vs the argon2id bound on the same cores.
    Login {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Alternating rounds (argon2 alone, then sign-in).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Database to use [default: a fresh SQLite file in the temp directory].
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Seed an account with DEVICES devices and print a session cookie for HTTP load tests.
    Seed {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long)]
        database_url: Option<String>,
    },
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const PASSWORD: &str = "Bench-harbor-lantern-91";

fn temp_db() -> String {
    let path = std::env::temp_dir().join(format!("rampart-bench-{}.db", uuid::Uuid::new_v4()));
    format!("sqlite://{}", path.display())
}

async fn seed_account(app: &crate::app::App, email: &str) -> anyhow::Result<Account> {
    let now = app.state.core.now();
    let hash = tokio::task::spawn_blocking(|| password::hash(PASSWORD)).await??;
    let account = Account {
        id: uuid::Uuid::new_v4().to_string(),
        uid: (1_000_000_000u64 + u64::from(rand::random::<u32>())).to_string(),
        email: email.to_owned(),
        password_hash: hash,
        email_confirmed_at: Some(now),
        anti_phishing_code: None,
        created_at: now,
        frozen_at: None,
        require_passkey: false,
    };
    let c = Confirmation {
        account_id: account.id.clone(),
        code_mac: String::new(),
        expires_at: 0,
        attempts: 0,
        created_at: 0,
    };
    app.store()
        .create_account(&account, &c, &Effects::default())
        .await?;
    Ok(account)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub async fn run(command: BenchCommand, mut settings: Settings) -> anyhow::Result<()> {
    match command {
        BenchCommand::Login {
            seconds,
            rounds,
            database_url,
        } => {
            settings.database_url = database_url.unwrap_or_else(temp_db);
            settings.secret_key = Some(crate::domain::secret::ServerKey::generate().to_base64());
            let app = crate::app::build(settings, Arc::new(SystemClock)).await?;
            let account = seed_account(&app, "bench@rampart.example").await?;
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let span = Duration::from_secs(seconds);
            println!(
                "cores: {cores}; {seconds} s per measurement; {rounds} rounds; database {}",
                app.settings.database_url
            );
            let (mut bound, mut signin, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            for round in 1..=rounds {
                let a = argon2_rate(&account.password_hash, cores, span).await?;
                let s = signin_rate(&app, &account.email, cores, span).await?;
                println!(
                    "round {round}: argon2id alone {a:8.1}/s   sign-in {s:8.1}/s   ratio {:.3}",
                    s / a
                );
                bound.push(a);
                signin.push(s);
                ratio.push(s / a);
            }
            println!(
                "median: argon2id alone {:.1}/s, sign-in {:.1}/s, ratio {:.3} (target >= 0.9)",
                median(bound),
                median(signin),
                median(ratio)
            );
            app.store().close().await;
        }
        BenchCommand::Seed {
            devices,
            database_url,
        } => {
            if let Some(u) = database_url {
                settings.database_url = u;
            }
            let app = crate::app::build(settings, Arc::new(SystemClock)).await?;
            let email = format!(
                "bench-{}@rampart.example",
                &uuid::Uuid::new_v4().to_string()[..8]
            );
            let account = seed_account(&app, &email).await?;
            let now = app.state.core.now();
            let mut token = String::new();
            for i in 0..devices.max(1) {
                let info = DeviceInfo::from_user_agent(UA);
                let at = now - i64::try_from(devices - i)? * 60_000;
                let device = Device {
                    id: uuid::Uuid::new_v4().to_string(),
                    account_id: account.id.clone(),
                    token_hash: Some(token_hash(&random_token())),
                    fingerprint: info.fingerprint,
                    model: info.model.clone(),
                    os: info.os.clone(),
                    browser: info.browser.clone(),
                    user_agent: UA.to_owned(),
                    ip: format!("198.51.100.{}", i % 250 + 1),
                    city: None,
                    country: None,
                    first_seen: at,
                    last_active: at,
                };
                token = random_token();
                let session = Session {
                    id: token_hash(&token),
                    account_id: account.id.clone(),
                    device_id: device.id.clone(),
                    created_at: at,
                    last_seen_at: now,
                    expires_at: now + 12 * HOUR,
                    stepped_up_at: None,
                    method: "password".into(),
                };
                let login = Login {
                    id: uuid::Uuid::new_v4().to_string(),
                    account_id: account.id.clone(),
                    success: true,
                    reason: "signed_in".into(),
                    ip: device.ip.clone(),
                    city: None,
                    country: None,
                    device_id: Some(device.id.clone()),
                    model: info.model,
                    os: info.os,
                    browser: info.browser,
                    at,
                    method: "password".into(),
                };
                let fx = Effects::audit(AuditEvent {
                    at,
                    account_id: Some(account.id.clone()),
                    actor: "system".into(),
                    action: "bench.seeded".into(),
                    ip: None,
                    device: None,
                    detail: json!({}),
                });
                app.store()
                    .record_sign_in(
                        &SignInRecord {
                            device,
                            device_is_new: true,
                            session,
                            login,
                        },
                        &fx,
                    )
                    .await?;
            }
            app.store().close().await;
            println!("{token}");
        }
    }
    Ok(())
}

async fn argon2_rate(hash: &str, threads: usize, span: Duration) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (hash, count) = (hash.to_owned(), count.clone());
        handles.push(tokio::task::spawn_blocking(move || {
            while start.elapsed() < span {
                assert!(password::verify(PASSWORD, &hash));
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await?;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn signin_rate(
    app: &crate::app::App,
    email: &str,
    tasks: usize,
    span: Duration,
) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks * 2 {
        let (state, count, email) = (app.state.clone(), count.clone(), email.to_owned());
        handles.push(tokio::spawn(async move {
            let ip: IpAddr = [203, 0, 113, u8::try_from(t % 250).unwrap_or(1)].into();
            let client = Client::new(ip, UA, None, &state.core.geo);
            while start.elapsed() < span {
                state.core.sign_in(&email, PASSWORD, &client).await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
