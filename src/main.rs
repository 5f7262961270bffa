//! The `rampart` command: serve, migrate, verify the audit chain, benchmark.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;

use rampart::clock::SystemClock;
use rampart::config::{LogFormat, Settings};

/// mimalloc: the gateway listener allocates per request (headers, bodies), and glibc's
/// malloc/free were a tenth of its CPU time in `scripts/bench-gateway`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rampart: the account-protection server behind a platform's Security Center.
///
/// Configuration is layered: built-in defaults, then `rampart.toml` (or --config), then
/// RAMPART_* environment variables, then the flags given here.
#[derive(Parser)]
#[command(name = "rampart", version, about, long_about)]
struct Cli {
    /// A TOML settings file (default: ./rampart.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, the pages and the background workers.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080; env RAMPART_LISTEN].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// sqlite://FILE or postgres://… [default: sqlite://rampart.db; env RAMPART_DATABASE_URL].
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// Seed a demo account whose history looks compromised (reset to that state at every
        /// start), and print its credentials. Implies --dev-mailbox.
        #[arg(long)]
        demo: bool,
        /// Development only: show every mail at /dev/mailbox instead of sending it. Anyone
        /// who can reach the server reads every code and link there [env RAMPART_DEV_MAILBOX].
        #[arg(long)]
        dev_mailbox: bool,
        /// Also listen here as the exchange API's gateway: verify every request (query
        /// string and body) and forward allowed ones to --gateway-upstream
        /// [env RAMPART_GATEWAY_LISTEN].
        #[arg(long, value_name = "ADDR", requires = "gateway_upstream")]
        gateway_listen: Option<String>,
        /// The exchange API behind the gateway, e.g. http://127.0.0.1:9000
        /// [env RAMPART_GATEWAY_UPSTREAM].
        #[arg(long, value_name = "URL")]
        gateway_upstream: Option<String>,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Audit-log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Webhook endpoints that receive every security event, signed.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// The operator console's staff: add (prints a one-time enrolment link), list, disable.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
        #[arg(long, global = true, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Platform credentials for the withdrawal guard's API: add (prints the token once),
    /// list, revoke.
    PlatformToken {
        #[command(subcommand)]
        command: PlatformTokenCommand,
        #[arg(long, global = true, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Measure throughput and latency (see README, "Benchmarks").
    Bench {
        #[command(subcommand)]
        command: rampart::bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Register an endpoint; prints its id and the secret it will be signed with (once).
    Add {
        url: String,
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// The delivery log: the latest deliveries with their attempts, status and error.
    Log {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum PlatformTokenCommand {
    /// Creates a token and prints it once (it is stored hashed).
    Add { name: String },
    /// Lists tokens: name, created, revoked.
    List,
    /// Revokes a token; requests with it are refused at once.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Adds an operator and prints their one-time enrolment link (24 hours).
    Add {
        #[arg(long)]
        email: String,
        /// support, reviewer or admin.
        #[arg(long)]
        role: String,
    },
    /// Lists every operator with role and state.
    List,
    /// Disables an operator; their console sessions end at once.
    Disable {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain over every event; exit 1 at the first tampered one.
    Verify {
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RAMPART_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    init_logs(settings.log_format);
    match cli.command {
        Command::Serve {
            listen,
            database_url,
            demo,
            dev_mailbox,
            gateway_listen,
            gateway_upstream,
        } => {
            if let Some(l) = gateway_listen {
                settings.gateway_listen = Some(l.parse().with_context(|| {
                    format!("--gateway-listen {l:?} is not an address like 127.0.0.1:8443")
                })?);
            }
            if let Some(u) = gateway_upstream {
                settings.gateway_upstream = Some(u);
            }
            if let Some(l) = listen {
                settings.listen = l.parse().with_context(|| {
                    format!("--listen {l:?} is not an address like 127.0.0.1:8080")
                })?;
            }
            if let Some(u) = database_url {
                settings.database_url = u.into();
            }
            settings.demo |= demo;
            settings.dev_mailbox |= dev_mailbox;
            serve(settings).await?;
        }
        Command::Migrate { database_url } => {
            if let Some(u) = database_url {
                settings.database_url = u.into();
            }
            let store = rampart::store::connect(settings.database_url.expose_secret()).await?;
            store.close().await;
            println!(
                "database schema is up to date ({})",
                settings.database_url_redacted()
            );
        }
        Command::Audit {
            command: AuditCommand::Verify { database_url },
        } => {
            if let Some(u) = database_url {
                settings.database_url = u.into();
            }
            let store = rampart::store::connect(settings.database_url.expose_secret()).await?;
            let report = rampart::service::audit::verify(store.as_ref()).await;
            store.close().await;
            return match report? {
                Ok(count) => {
                    println!("audit chain intact: {count} events verified");
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(why) => {
                    println!("AUDIT CHAIN BROKEN: {why}");
                    Ok(std::process::ExitCode::FAILURE)
                }
            };
        }
        Command::Bench { command } => rampart::bench::run(command, settings).await?,
        Command::Operator {
            command,
            database_url,
        } => {
            if let Some(u) = database_url {
                settings.database_url = u.into();
            }
            let command = match command {
                OperatorCommand::Add { email, role } => {
                    rampart::app::OperatorCommand::Add { email, role }
                }
                OperatorCommand::List => rampart::app::OperatorCommand::List,
                OperatorCommand::Disable { email } => {
                    rampart::app::OperatorCommand::Disable { email }
                }
            };
            let out =
                rampart::app::operator_command(&settings, Arc::new(SystemClock), command).await?;
            print!("{out}");
        }
        Command::PlatformToken {
            command,
            database_url,
        } => {
            if let Some(u) = database_url {
                settings.database_url = u.into();
            }
            let store = rampart::store::connect(settings.database_url.expose_secret()).await?;
            let now = rampart::clock::Clock::now(&SystemClock);
            use rampart::service::withdrawals as w;
            let out = match command {
                PlatformTokenCommand::Add { name } => w::add_platform_token(store.as_ref(), now, &name)
                    .await
                    .map(|token| format!("platform token {name:?} added. It is shown this once; keep it in the platform's secret store:\n{token}\n")),
                PlatformTokenCommand::List => store
                    .platform_tokens()
                    .await
                    .map_err(Into::into)
                    .map(|list| {
                        let mut out = String::new();
                        for t in list {
                            let state = match t.revoked_at {
                                Some(at) => format!("revoked {}", rampart::clock::format_utc(at)),
                                None => "live".to_owned(),
                            };
                            out.push_str(&format!("{}\tcreated {}\t{state}\n", t.name, rampart::clock::format_utc(t.created_at)));
                        }
                        if out.is_empty() {
                            out.push_str("no platform tokens\n");
                        }
                        out
                    }),
                PlatformTokenCommand::Revoke { name } => w::revoke_platform_token(store.as_ref(), now, &name)
                    .await
                    .and_then(|done| {
                        if done {
                            Ok(format!("platform token {name:?} revoked\n"))
                        } else {
                            Err(rampart::service::ServiceError::NotFound("not_found", format!("no live platform token named {name:?}")))
                        }
                    }),
            };
            store.close().await;
            print!("{}", out.map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        Command::Webhook {
            command: WebhookCommand::Add { url, database_url },
        } => {
            if let Some(u) = database_url {
                settings.database_url = u.into();
            }
            let key = rampart::app::load_or_create_key(&settings)?;
            let store = rampart::store::connect(settings.database_url.expose_secret()).await?;
            let sealed_with = rampart::domain::secret::SecretBox::new(&key);
            let added = rampart::service::protection::add_webhook(
                store.as_ref(),
                &sealed_with,
                rampart::clock::Clock::now(&SystemClock),
                &url,
            )
            .await;
            store.close().await;
            let (id, secret) = added.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("webhook {id} -> {url}");
            println!("signing secret (shown once; verify X-Rampart-Signature = sha256=HMAC-SHA256(secret, body)): {secret}");
        }
        Command::Webhook {
            command:
                WebhookCommand::Log {
                    limit,
                    database_url,
                },
        } => {
            if let Some(u) = database_url {
                settings.database_url = u.into();
            }
            let store = rampart::store::connect(settings.database_url.expose_secret()).await?;
            for d in store.webhook_log(limit).await? {
                let state = match (d.delivered_at, d.dead_at) {
                    (Some(at), _) => format!("delivered {}", rampart::clock::format_utc(at)),
                    (None, Some(at)) => format!("gave up {}", rampart::clock::format_utc(at)),
                    (None, None) => "pending".to_owned(),
                };
                println!(
                    "{} endpoint {} created {} attempts {} {} status {} {}",
                    d.id,
                    d.endpoint_id,
                    rampart::clock::format_utc(d.created_at),
                    d.attempts,
                    state,
                    d.last_status
                        .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    d.last_error.unwrap_or_default()
                );
            }
            store.close().await;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Prints a start-up line; a closed stdout (a supervisor that does not read it) must not
/// take the server down, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

async fn serve(mut settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    // From here on `listen` is the address actually bound (port 0 picks one), so the
    // default public_url points at it.
    settings.listen = listener.local_addr()?;
    let addr = settings.listen;
    let demo = settings.demo;
    let smtp_ignored = settings.smtp_url.is_some() && (settings.dev_mailbox || demo);
    let url_warning = settings.public_url_warning(addr);
    let db = settings.database_url_redacted();
    let app = rampart::app::build(settings, Arc::new(SystemClock)).await?;
    let url = app.public_url.clone();
    say!("Rampart listening on {addr}");
    say!("  open: {url}/signin");
    say!("  database: {db}");
    if let Some(g) = &app.gateway {
        say!("  gateway listening on {} → {}", g.addr, g.upstream);
    }
    if let Some(w) = url_warning {
        say!("  WARNING: {w}");
        tracing::warn!("{w}");
    }
    if app.state.mailbox_enabled {
        say!("  !!! DEV MAILBOX ON: every mail (codes, sign-in and freeze links of every account)");
        say!("  !!! is shown to anyone who can reach {url}/dev/mailbox and none is sent.");
        say!("  !!! For trying Rampart only; configure smtp_url for real use.");
        if smtp_ignored {
            say!("  !!! smtp_url is set but ignored while the dev mailbox is on.");
        }
        tracing::warn!("dev mailbox on: every mail is readable at {url}/dev/mailbox");
    }
    if !app.state.geo.is_loaded() {
        say!("  geolocation: no MMDB file; locations read \"unknown\" (run scripts/fetch-geoip)");
    }
    if demo {
        let creds = rampart::demo::seed(&app).await?;
        if creds.reset {
            say!("  demo account reset to its starting state (changes from the last run are gone)");
        }
        say!("  demo account: {} / {}", creds.email, creds.password);
        say!("  open {url}/signin and review its devices and login history");
    }
    rampart::app::serve(app, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
