//! `rampart bench`: measurements reported in issue notes and the README.
//!
//! - `login`: sign-ins per second through the real sign-in service (throttle checks,
//!   argon2id, device, session, login row and audit event in one transaction) against
//!   argon2id verifications per second alone, same parameters, same cores, alternating
//!   rounds in one run; prints each round and the median ratio.
//! - `withdrawals`: withdrawal decisions per second and their p50/p99 through the service
//!   (one transaction each: account row, locks, allowlist, look-alike index, the write with
//!   its audit event, mail and feed entry) on a database seeded with ACCOUNTS accounts and
//!   HISTORY past withdrawals (and as many known addresses), in bulk SQL.
//! - `seed`: an account with many devices and a live session, for the HTTP load runs of
//!   `scripts/bench-http` (wrk against `GET /api/v1/me` and `/api/v1/me/devices`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use crate::clock::{Clock, Stopwatch, SystemClock, HOUR};
use crate::config::Settings;
use crate::domain::device::DeviceInfo;
use crate::domain::password;
use crate::domain::secret::{random_token, token_hash};
use crate::service::api_keys::GatewayRequest;
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
    /// In-process gateway verification against a bare HMAC-SHA256, plus Ed25519 and RSA
    /// verification rates, with KEYS keys in the database.
    Authz {
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        #[arg(long, default_value_t = 200_000)]
        iterations: u32,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Seed KEYS HMAC keys; prints `API_KEY SECRET` of one of them.
    SeedKeys {
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Two instances on one PostgreSQL database: time from a freeze returning on A until B
    /// refuses the account's API key (cache eviction through LISTEN/NOTIFY).
    Propagation {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 100)]
        freezes: usize,
    },
    /// Withdrawal decisions per second and p50/p99 on a database with ACCOUNTS accounts and
    /// HISTORY past withdrawals (seeded in bulk first).
    Withdrawals {
        #[arg(long, default_value_t = 100_000)]
        accounts: usize,
        #[arg(long, default_value_t = 1_000_000)]
        history: usize,
        /// Decisions per round.
        #[arg(long, default_value_t = 5_000)]
        decisions: usize,
        /// Decisions in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Database to use [default: a fresh SQLite file in the temp directory]. Use an
        /// empty database: it is seeded.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Prints a signed original URI for the gateway (recvWindow 60 s), for wrk; with
    /// `--body-bytes`, a signed form body of exactly that many bytes instead (the request
    /// as ccxt sends an order: parameters, timestamp and signature in the body).
    Sign {
        #[arg(long)]
        secret: String,
        #[arg(long, default_value = "/api/v3/order")]
        path: String,
        /// The parameters before `timestamp` [default: a limit order's].
        #[arg(long)]
        params: Option<String>,
        /// Print a form body padded to this many bytes (with `newClientOrderId`).
        #[arg(long)]
        body_bytes: Option<usize>,
    },
}

const BENCH_PARAMS: &str =
    "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=60000";

/// Inserts `n` HMAC keys (allowlisted to loopback) for one account; returns one key and its secret.
async fn seed_keys(app: &crate::app::App, n: usize) -> anyhow::Result<(String, String)> {
    let account = seed_account(
        app,
        &format!(
            "keys-{}@rampart.example",
            &uuid::Uuid::new_v4().to_string()[..8]
        ),
    )
    .await?;
    let now = app.state.now();
    let mut last = (String::new(), String::new());
    for _ in 0..n.max(1) {
        let key = crate::domain::api_key::new_key();
        let secret = crate::domain::api_key::new_secret();
        let record = crate::store::ApiKeyRecord {
            api_key: key.clone(),
            account_id: account.id.clone(),
            label: "bench".into(),
            key_type: Some(crate::domain::api_key::KeyType::Hmac),
            secret_enc: Some(app.state.secret_box.seal(secret.as_bytes(), &key)?),
            public_key: None,
            access: crate::domain::api_key::KeyAccess::decode(
                "read,spot_trade".into(),
                "127.0.0.1/32".into(),
            ),
            created_at: now,
            created_ip: "127.0.0.1".into(),
            created_device: "bench".into(),
            created_unusual: false,
            expires_at: None,
            last_used_at: None,
            last_used_ip: None,
            warned_7d_at: None,
            warned_1d_at: None,
            deleted_at: None,
            suspended_at: None,
        };
        app.store()
            .create_api_key(&record, &Effects::default())
            .await?;
        last = (key, secret);
    }
    Ok(last)
}

fn hmac_hex(secret: &str, payload: &str) -> String {
    use hmac::Mac;
    let mut m = crate::domain::secret::hmac_sha256(secret.as_bytes());
    m.update(payload.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// `params&newClientOrderId=x…&timestamp=…&signature=…`, exactly `bytes` long.
fn signed_body(
    secret: &str,
    params: &str,
    now: crate::clock::Millis,
    bytes: usize,
) -> anyhow::Result<String> {
    // The signature is 64 hex digits whatever the payload: size the padding first.
    let fixed = format!("{params}&newClientOrderId=&timestamp={now}&signature=").len() + 64;
    let Some(pad) = bytes.checked_sub(fixed) else {
        anyhow::bail!("--body-bytes must be at least {fixed}");
    };
    let payload = format!(
        "{params}&newClientOrderId={}&timestamp={now}",
        "x".repeat(pad)
    );
    let body = format!("{payload}&signature={}", hmac_hex(secret, &payload));
    debug_assert_eq!(body.len(), bytes);
    Ok(body)
}

fn ns_per_op(start: Stopwatch, n: u32) -> f64 {
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

async fn bench_propagation(
    a: &crate::app::App,
    b: &crate::app::App,
    freezes: usize,
) -> anyhow::Result<()> {
    use crate::service::api_keys::AuthzError;
    let ip: IpAddr = [127, 0, 0, 1].into();
    let mut waits = Vec::with_capacity(freezes);
    for i in 0..freezes {
        let (key, secret) = seed_keys(a, 1).await?;
        let auth = b
            .store()
            .api_key_auth(&key)
            .await?
            .ok_or_else(|| anyhow::anyhow!("seeded key missing"))?;
        let params = format!("{BENCH_PARAMS}&timestamp={}", b.state.now());
        let query = format!("{params}&signature={}", hmac_hex(&secret, &params));
        // B has the key in its cache.
        if b.state
            .gateway
            .authorize(&GatewayRequest {
                api_key: Some(&key),
                method: "GET",
                path: "/api/v3/account",
                query: &query,
                body: "",
                ip,
            })
            .await
            .is_err()
        {
            anyhow::bail!("round {i}: B refused a valid request before the freeze");
        }
        // A freezes exactly as the freeze endpoint does.
        let fx = crate::store::Effects::default();
        a.store()
            .freeze_account(&auth.key.account_id, a.state.now(), &fx)
            .await?;
        a.state
            .invalidator
            .invalidate_keys(&format!("account:{}", auth.key.account_id))
            .await?;
        let returned = Stopwatch::start();
        loop {
            match b
                .state
                .gateway
                .authorize(&GatewayRequest {
                    api_key: Some(&key),
                    method: "GET",
                    path: "/api/v3/account",
                    query: &query,
                    body: "",
                    ip,
                })
                .await
            {
                Err(AuthzError::Refused(crate::domain::api_key::Refusal::AccountFrozen)) => break,
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => anyhow::bail!("round {i}: unexpected answer {e:?}"),
            }
            if returned.elapsed() > Duration::from_secs(5) {
                anyhow::bail!("round {i}: B still accepts the key 5 s after the freeze");
            }
        }
        waits.push(returned.elapsed().as_secs_f64() * 1000.0);
    }
    let worst = waits.iter().copied().fold(0.0, f64::max);
    println!(
        "{freezes} freezes: B refused the key {:.2} ms (median) / {:.2} ms (worst) after the freeze returned on A (target < 50 ms); \
         B refuses the session cookie on the very next request (sessions are read from the database)",
        median(waits),
        worst
    );
    Ok(())
}

async fn bench_authz(
    app: &crate::app::App,
    keys: usize,
    iterations: u32,
    rounds: usize,
) -> anyhow::Result<()> {
    use base64::Engine;
    println!("seeding {keys} keys...");
    let (key, secret) = seed_keys(app, keys).await?;
    let services = &app.state.services;
    let ip: IpAddr = [127, 0, 0, 1].into();
    let (mut bare, mut full, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let params = format!("{BENCH_PARAMS}&timestamp={}", services.now());
        let query = format!("{params}&signature={}", hmac_hex(&secret, &params));
        // Bare HMAC-SHA256 of the same payload (key setup included, as a verifier would).
        let start = Stopwatch::start();
        let mut sink = 0u8;
        for _ in 0..iterations {
            sink ^= hmac_hex(&secret, &params).as_bytes()[0];
        }
        let b = ns_per_op(start, iterations);
        std::hint::black_box(sink);
        // The gateway's whole check, in process: parse, cache lookup, verify, window,
        // expiry, freeze, allowlist, permission.
        let start = Stopwatch::start();
        for _ in 0..iterations {
            if services
                .gateway
                .authorize(&GatewayRequest {
                    api_key: Some(&key),
                    method: "POST",
                    path: "/api/v3/order",
                    query: &query,
                    body: "",
                    ip,
                })
                .await
                .is_err()
            {
                anyhow::bail!("a valid request was refused");
            }
        }
        let f = ns_per_op(start, iterations);
        println!(
            "round {round}: bare HMAC {b:7.0} ns   full verification {f:7.0} ns   ratio {:.2}",
            f / b
        );
        bare.push(b);
        full.push(f);
        ratio.push(f / b);
    }
    println!(
        "median: bare HMAC-SHA256 {:.0} ns ({:.0}/s), verification {:.0} ns ({:.0}/s), ratio {:.2} (target <= 3)",
        median(bare.clone()),
        1e9 / median(bare),
        median(full.clone()),
        1e9 / median(full),
        median(ratio)
    );

    // Public-key verification rates (the payload of a typical order).
    let payload = format!("{BENCH_PARAMS}&timestamp={}", services.now());
    let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let ed_sig = {
        use ed25519_dalek::Signer;
        base64::engine::general_purpose::STANDARD.encode(ed.sign(payload.as_bytes()).to_bytes())
    };
    let ed_verifier = crate::domain::api_key::Verifier::Ed25519(Box::new(ed.verifying_key()));
    let n = 20_000;
    let start = Stopwatch::start();
    for _ in 0..n {
        anyhow::ensure!(ed_verifier.verify(payload.as_bytes(), &ed_sig));
    }
    println!(
        "Ed25519 verification: {:.0}/s ({:.1} µs each)",
        1e9 / ns_per_op(start, n),
        ns_per_op(start, n) / 1000.0
    );
    for bits in [2048usize, 4096] {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits)?;
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private.clone());
        let sig = rsa::signature::Signer::sign(&signer, payload.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD
            .encode(rsa::signature::SignatureEncoding::to_bytes(&sig));
        let v = crate::domain::api_key::Verifier::Rsa(Box::new(rsa::pkcs1v15::VerifyingKey::new(
            private.to_public_key(),
        )));
        let n = 5_000;
        let start = Stopwatch::start();
        for _ in 0..n {
            anyhow::ensure!(v.verify(payload.as_bytes(), &sig));
        }
        println!(
            "RSA-{bits} verification: {:.0}/s ({:.1} µs each)",
            1e9 / ns_per_op(start, n),
            ns_per_op(start, n) / 1000.0
        );
    }
    Ok(())
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const PASSWORD: &str = "Bench-harbor-lantern-91";

fn temp_db() -> String {
    let path = std::env::temp_dir().join(format!("rampart-bench-{}.db", uuid::Uuid::new_v4()));
    format!("sqlite://{}", path.display())
}

async fn seed_account(app: &crate::app::App, email: &str) -> anyhow::Result<Account> {
    let now = app.state.now();
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
        recovery_required: false,
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
    // Benchmarks run on throwaway databases on this machine: their mails stay in the
    // outbox (the dev mailbox transport) instead of reaching anyone.
    settings.dev_mailbox = true;
    match command {
        BenchCommand::Authz {
            keys,
            iterations,
            rounds,
            database_url,
        } => {
            settings.database_url = database_url.unwrap_or_else(temp_db).into();
            settings.secret_key = Some(
                crate::domain::secret::ServerKey::generate()
                    .to_base64()
                    .into(),
            );
            let app = crate::app::build(settings, Arc::new(SystemClock)).await?;
            bench_authz(&app, keys, iterations, rounds).await?;
            app.store().close().await;
        }
        BenchCommand::Propagation {
            database_url,
            freezes,
        } => {
            settings.database_url = database_url.into();
            settings.secret_key = Some(
                crate::domain::secret::ServerKey::generate()
                    .to_base64()
                    .into(),
            );
            let a = crate::app::build(settings.clone(), Arc::new(SystemClock)).await?;
            let b = crate::app::build(settings, Arc::new(SystemClock)).await?;
            bench_propagation(&a, &b, freezes).await?;
        }
        BenchCommand::Withdrawals {
            accounts,
            history,
            decisions,
            concurrency,
            rounds,
            database_url,
        } => {
            settings.database_url = database_url.unwrap_or_else(temp_db).into();
            settings.secret_key = Some(
                crate::domain::secret::ServerKey::generate()
                    .to_base64()
                    .into(),
            );
            let url = secrecy::ExposeSecret::expose_secret(&settings.database_url).to_owned();
            let app = crate::app::build(settings, Arc::new(SystemClock)).await?;
            let uids = seed_withdrawal_history(&url, accounts.max(1), history).await?;
            bench_withdrawals(
                &app,
                &uids,
                decisions.max(1),
                concurrency.max(1),
                rounds.max(1),
            )
            .await?;
            app.store().close().await;
        }
        BenchCommand::SeedKeys { keys, database_url } => {
            if let Some(u) = database_url {
                settings.database_url = u.into();
            }
            let app = crate::app::build(settings, Arc::new(SystemClock)).await?;
            let (key, secret) = seed_keys(&app, keys).await?;
            app.store().close().await;
            println!("{key} {secret}");
        }
        BenchCommand::Sign {
            secret,
            path,
            params,
            body_bytes,
        } => {
            let params = params.unwrap_or_else(|| BENCH_PARAMS.to_owned());
            let now = SystemClock.now();
            match body_bytes {
                None => {
                    let params = format!("{params}&timestamp={now}");
                    println!("{path}?{params}&signature={}", hmac_hex(&secret, &params));
                }
                Some(n) => println!("{}", signed_body(&secret, &params, now, n)?),
            }
        }
        BenchCommand::Login {
            seconds,
            rounds,
            database_url,
        } => {
            settings.database_url = database_url.unwrap_or_else(temp_db).into();
            settings.secret_key = Some(
                crate::domain::secret::ServerKey::generate()
                    .to_base64()
                    .into(),
            );
            let app = crate::app::build(settings, Arc::new(SystemClock)).await?;
            let account = seed_account(&app, "bench@rampart.example").await?;
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let mut emails = Vec::new();
            for i in 0..cores * 4 {
                emails.push(
                    seed_account(&app, &format!("bench{i}@rampart.example"))
                        .await?
                        .email,
                );
            }
            let span = Duration::from_secs(seconds);
            println!(
                "cores: {cores}; {seconds} s per measurement; {rounds} rounds; database {}",
                app.settings.database_url_redacted()
            );
            let (mut bound, mut signin, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            for round in 1..=rounds {
                let a = argon2_rate(&account.password_hash, cores, span).await?;
                let s = signin_rate(&app, &emails, span).await?;
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
                settings.database_url = u.into();
            }
            let app = crate::app::build(settings, Arc::new(SystemClock)).await?;
            let email = format!(
                "bench-{}@rampart.example",
                &uuid::Uuid::new_v4().to_string()[..8]
            );
            let account = seed_account(&app, &email).await?;
            let now = app.state.now();
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
                    trusted_at: None,
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
                    method: crate::domain::sign_in::SignInMethod::Password,
                    confirm_token_hash: None,
                    ended_at: None,
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
                    method: crate::domain::sign_in::SignInMethod::Password,
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
    let start = Stopwatch::start();
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

/// One task per account (so no account's throttle sees a burst from unknown browsers),
/// four per core, so a core never waits for a sign-in to finish its database work.
async fn signin_rate(
    app: &crate::app::App,
    emails: &[String],
    span: Duration,
) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicU64::new(0));
    let start = Stopwatch::start();
    let mut handles = Vec::new();
    for (t, email) in emails.iter().enumerate() {
        let (state, count, email) = (app.state.clone(), count.clone(), email.clone());
        handles.push(tokio::spawn(async move {
            let ip: IpAddr = [203, 0, 113, u8::try_from(t % 250).unwrap_or(1)].into();
            // Each task is one browser: its first sign-in makes it a known device (its
            // device cookie), as a returning user's browser is.
            let mut client = Client::new(ip, UA, None, &state.geo);
            while start.elapsed() < span {
                let outcome = state.signin.sign_in(&email, PASSWORD, &client).await?;
                if let crate::service::sessions::SignInOutcome::SignedIn(signed) = outcome {
                    if let Some(token) = signed.new_device_token {
                        client.device_token = Some(token);
                    }
                }
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

/// A pool of either backend, for the bulk seeder's plain SQL.
enum BulkPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl BulkPool {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(match crate::domain::backend::Backend::of(url)? {
            crate::domain::backend::Backend::Sqlite => {
                Self::Sqlite(sqlx::SqlitePool::connect(url).await?)
            }
            crate::domain::backend::Backend::Postgres => {
                Self::Postgres(sqlx::PgPool::connect(url).await?)
            }
        })
    }

    /// Runs a script of statements in one transaction.
    async fn script(&self, sql: &str) -> anyhow::Result<()> {
        let sql = format!("BEGIN; {sql} COMMIT;");
        match self {
            Self::Sqlite(p) => sqlx::raw_sql(&sql).execute(p).await.map(drop)?,
            Self::Postgres(p) => sqlx::raw_sql(&sql).execute(p).await.map(drop)?,
        }
        Ok(())
    }
}

/// Seeds ACCOUNTS accounts and HISTORY confirmed withdrawals spread over them (each
/// destination also a known address), with multi-row inserts of generated values only
/// (numbers, hex and UUIDs: nothing to quote). Returns the accounts' UIDs.
async fn seed_withdrawal_history(
    url: &str,
    accounts: usize,
    history: usize,
) -> anyhow::Result<Vec<String>> {
    const BATCH: usize = 1_000;
    let pool = BulkPool::connect(url).await?;
    let now = SystemClock.now();
    let started = Stopwatch::start();
    let ids: Vec<String> = (0..accounts)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let uids: Vec<String> = (0..accounts)
        .map(|i| (20_000_000_000u64 + i as u64).to_string())
        .collect();
    for chunk in (0..accounts).collect::<Vec<_>>().chunks(BATCH) {
        let values = chunk
            .iter()
            .map(|&i| {
                format!(
                    "('{}', '{}', 'seed{i}@bench.example', 'x', {now}, {now})",
                    ids[i], uids[i]
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        pool.script(&format!(
            "INSERT INTO accounts (id, uid, email, password_hash, email_confirmed_at, created_at) VALUES {values};"
        ))
        .await?;
    }
    let mut done = 0;
    while done < history {
        let n = BATCH.min(history - done);
        let mut withdrawals = Vec::with_capacity(n);
        let mut known = Vec::with_capacity(n);
        for j in done..done + n {
            let account = &ids[j % accounts];
            let address = format!("0x{}", &token_hash(&j.to_string())[..40]);
            let at = now - (j as i64) * 1_000;
            withdrawals.push(format!(
                "('{}', 'seed-{j}', 'x', '{account}', 'ETH', 'ETH', '0.01', '{address}', 'session', 'confirmed', '{{}}', '[]', {at})",
                uuid::Uuid::new_v4()
            ));
            known.push(format!(
                "('{account}', '{address}', '{}', {at})",
                crate::domain::withdrawal::lookalike_key(&address)
            ));
        }
        pool.script(&format!(
            "INSERT INTO withdrawals (id, request_id, request_hash, account_id, asset, network, amount, address, via, state, answer, reasons, created_at) VALUES {};
             INSERT INTO known_addresses (account_id, address, lookalike_key, first_seen_at) VALUES {};",
            withdrawals.join(","),
            known.join(",")
        ))
        .await?;
        done += n;
    }
    println!(
        "seeded {accounts} accounts and {history} past withdrawals in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match pool {
        BulkPool::Sqlite(p) => p.close().await,
        BulkPool::Postgres(p) => p.close().await,
    }
    Ok(uids)
}

/// DECISIONS withdrawal requests per round, CONCURRENCY in flight, to random seeded
/// accounts and fresh destinations; prints decisions/s and p50/p99 per round.
async fn bench_withdrawals(
    app: &crate::app::App,
    uids: &[String],
    decisions: usize,
    concurrency: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let services = &app.state.services;
    let token = services
        .withdrawals
        .add_platform_token(&format!("bench-{}", &uuid::Uuid::new_v4().to_string()[..8]))
        .await?;
    let platform = Arc::new(
        services
            .withdrawals
            .authenticate_platform(Some(&token))
            .await?,
    );
    let uids = Arc::new(uids.to_vec());
    let mut rates = Vec::new();
    for round in 1..=rounds {
        let next = Arc::new(AtomicU64::new(0));
        let started = Stopwatch::start();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (next, uids, platform) = (next.clone(), uids.clone(), platform.clone());
            let withdrawals = services.withdrawals.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= decisions {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    let req = crate::service::withdrawals::WithdrawalRequest {
                        request_id: format!("bench-{round}-{i}-{}", random_token()),
                        account_uid: uids[rand::random::<usize>() % uids.len()].clone(),
                        asset: "ETH".into(),
                        network: "ETH".into(),
                        amount: "0.5".into(),
                        address: format!("0x{}", &token_hash(&random_token())[..40]),
                        memo: None,
                        via: "session".into(),
                        api_key: None,
                    };
                    let t = Stopwatch::start();
                    withdrawals.request(&platform, &req).await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1_000.0);
                }
            }));
        }
        let mut latencies = Vec::with_capacity(decisions);
        for t in tasks {
            latencies.extend(t.await??);
        }
        let secs = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let pct =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        let rate = decisions as f64 / secs;
        println!(
            "round {round}: {rate:.0} decisions/s, p50 {:.2} ms, p99 {:.2} ms ({decisions} decisions, {concurrency} in flight)",
            pct(0.50),
            pct(0.99)
        );
        rates.push(rate);
    }
    println!("median: {:.0} decisions/s", median(rates));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::api_key::parse_signed;

    #[test]
    fn the_signed_body_has_the_asked_size_and_a_signature_the_gateway_accepts() {
        let body = signed_body("s3cret", BENCH_PARAMS, 1_700_000_000_000, 1024).expect("fits");
        assert_eq!(body.len(), 1024);
        let parsed = parse_signed("", &body).expect("the gateway's parser accepts it");
        assert_eq!(parsed.timestamp, 1_700_000_000_000);
        assert_eq!(parsed.recv_window, 60_000);
        assert_eq!(parsed.signature, hmac_hex("s3cret", &parsed.payload));
        assert!(signed_body("s3cret", BENCH_PARAMS, 1_700_000_000_000, 100).is_err());
    }
}
