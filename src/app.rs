//! Building the application from settings: store, clock, key, geolocation, mail transport,
//! router and background worker. Nothing here is global except the metrics recorder (the
//! `metrics` crate has one per process), so tests can build many apps side by side.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::domain::secret::ServerKey;
use crate::geo::Geo;
use crate::http::{AppState, Inner};
use crate::jobs::outbox::OutboxWorker;
use crate::mail::{Composer, Transport};
use crate::service::{
    accounts::Accounts,
    api_keys::ApiKeys,
    factors::FactorSettings,
    gateway::Gateway,
    hasher::Hasher,
    key_cache::{CacheInvalidator, KeyCache},
    notices::Notices,
    passkeys::Passkeys,
    pending::PendingChanges,
    protection::Protection,
    recovery::Recovery,
    second_factors::SecondFactors,
    sessions::Sessions,
    sign_in::SignIn,
    step_up::StepUp,
    throttles::Throttles,
    Services,
};
use crate::store::{self, SharedStore};
use secrecy::ExposeSecret;

pub struct App {
    pub state: AppState,
    pub router: Router,
    pub worker: OutboxWorker,
    /// How often `serve`'s background jobs poll.
    pub intervals: crate::jobs::Intervals,
    /// Where people reach this server (`public_url`, or derived from the listen address).
    pub public_url: String,
    pub settings: Settings,
    /// The gateway listener, when `gateway_listen` is set: bound, not yet serving.
    pub gateway: Option<GatewayListener>,
}

/// The gateway listener (`gateway_listen`) and what it serves.
pub struct GatewayListener {
    pub listener: TcpListener,
    /// The address actually bound (port 0 picks one).
    pub addr: SocketAddr,
    pub handler: crate::http::gateway::GatewayHandler,
    pub upstream: String,
    /// How long a client has to send a request's headers.
    pub header_timeout: Duration,
    pub max_connections: usize,
}

impl App {
    pub fn store(&self) -> &SharedStore {
        &self.state.store
    }
}

fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!("metrics disabled: {e}");
                None
            }
        })
        .clone()
}

/// The server key from settings, else from the key file, else a new one written to the key
/// file (readable by the owner only).
pub fn load_or_create_key(settings: &Settings) -> anyhow::Result<ServerKey> {
    if let Some(k) = &settings.secret_key {
        return ServerKey::from_base64(k.expose_secret()).context("RAMPART_SECRET_KEY");
    }
    let path = &settings.secret_key_file;
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return ServerKey::from_base64(&text)
            .with_context(|| format!("bad key in {}", path.display()));
    }
    let key = ServerKey::generate();
    write_private(path, &key.to_base64())?;
    tracing::warn!(
        "generated a new server key in {}; keep it with the database and out of version control",
        path.display()
    );
    Ok(key)
}

fn write_private(path: &std::path::Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

pub async fn build(settings: Settings, clock: SharedClock) -> anyhow::Result<App> {
    // A server that will refuse to start must not leave a key file or a database behind.
    preflight(&settings)?;
    let gateway_listener = match settings.gateway_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on gateway_listen {addr}"))?,
        ),
        None => None,
    };
    let store = store::connect(settings.database_url.expose_secret()).await?;
    build_with_store(settings, clock, store, gateway_listener).await
}

/// The settings that can be refused before anything is written: the route table, a way
/// to send mail, a public URL that passkeys accept.
fn preflight(settings: &Settings) -> anyhow::Result<()> {
    crate::domain::api_key::validate_routes(&settings.gateway_routes)
        .map_err(|e| anyhow::anyhow!("invalid gateway route table in the settings: {e}"))?;
    crate::domain::withdrawal::check_assets(&settings.assets)
        .map_err(|e| anyhow::anyhow!("invalid [[assets]] in the settings: {e}"))?;
    Transport::from_settings(
        settings.smtp_url.as_ref().map(ExposeSecret::expose_secret),
        &settings.mail_from,
        settings.dev_mailbox || settings.demo,
    )?;
    crate::service::passkeys::relying_party(&settings.public_url_for(settings.listen))?;
    match (&settings.gateway_listen, &settings.gateway_upstream) {
        (Some(_), Some(upstream)) => crate::http::gateway::GatewayConfig::check_upstream(upstream)?,
        (None, None) => {}
        (Some(_), None) => anyhow::bail!("gateway_listen is set but gateway_upstream is not: the gateway needs an upstream to forward allowed requests to"),
        (None, Some(_)) => anyhow::bail!("gateway_upstream is set but gateway_listen is not: give the address the gateway listens on"),
    }
    if settings.gateway_body_limit_bytes == 0
        || settings.gateway_body_timeout_ms == 0
        || settings.gateway_upstream_timeout_ms == 0
        || settings.gateway_max_connections == 0
    {
        anyhow::bail!("gateway_body_limit_bytes, gateway_body_timeout_ms, gateway_upstream_timeout_ms and gateway_max_connections must be above 0");
    }
    Ok(())
}

/// The one place where settings become services, after [`preflight`] (only `build` calls
/// it). Every field of [`Settings`] is named here (the destructuring has no `..`), so a
/// setting that nothing uses does not compile.
async fn build_with_store(
    settings: Settings,
    clock: SharedClock,
    store: SharedStore,
    gateway_listener: Option<TcpListener>,
) -> anyhow::Result<App> {
    let Settings {
        listen,
        database_url: _, // connected to by `build` (or the caller) already
        public_url: _,   // resolved against `listen` just below
        smtp_url,
        dev_mailbox,
        mail_from,
        secret_key: _,      // read by `load_or_create_key`
        secret_key_file: _, // likewise
        geoip_paths,
        trusted_proxies,
        cookie_secure,
        body_limit_bytes,
        log_format: _, // applied by `main` before anything logs
        demo,
        outbox_poll_ms,
        outbox_lease_ms,
        gateway_listen: _, // bound by `build`: `gateway_listener`
        gateway_upstream,
        gateway_body_limit_bytes,
        gateway_body_timeout_ms,
        gateway_upstream_timeout_ms,
        gateway_max_connections,
        gateway_routes,
        assets,
        rules,
    } = settings.clone();
    let public_url = settings.public_url_for(listen);
    let key = load_or_create_key(&settings)?;
    let geo = Arc::new(Geo::open(&geoip_paths)?);
    let transport = Transport::from_settings(
        smtp_url.as_ref().map(ExposeSecret::expose_secret),
        &mail_from,
        dev_mailbox || demo,
    )?;
    crate::domain::device::warm_up();
    let composer = Composer {
        public_url: public_url.clone(),
    };
    let services = services(
        store.clone(),
        clock.clone(),
        key,
        rules,
        geo,
        composer,
        gateway_routes,
        assets,
    )?;
    let state = AppState(Arc::new(Inner {
        services,
        trusted_proxies,
        cookie_secure,
        mailbox_enabled: transport.is_local(),
        metrics: metrics_handle(),
    }));
    // Other instances' key changes and freezes reach this instance's cache through the
    // database (PostgreSQL LISTEN/NOTIFY); the listener ends when the app is dropped.
    let weak = Arc::downgrade(&state.0);
    store
        .listen_invalidations(Box::new(move |what: &str| match weak.upgrade() {
            Some(inner) => {
                inner.key_cache.invalidate(what);
                true
            }
            None => false,
        }))
        .await?;
    let router = crate::http::router(state.clone(), body_limit_bytes);
    let gateway = match (gateway_listener, gateway_upstream) {
        (Some(listener), Some(upstream)) => {
            let config = crate::http::gateway::GatewayConfig {
                upstream: upstream.clone(),
                body_limit: gateway_body_limit_bytes,
                body_timeout: Duration::from_millis(gateway_body_timeout_ms),
                upstream_timeout: Duration::from_millis(gateway_upstream_timeout_ms),
            };
            Some(GatewayListener {
                addr: listener.local_addr()?,
                listener,
                header_timeout: config.body_timeout,
                max_connections: gateway_max_connections,
                handler: crate::http::gateway::handler(state.clone(), config)?,
                upstream,
            })
        }
        _ => None,
    };
    let worker = OutboxWorker {
        store,
        clock,
        transport,
        lease: outbox_lease_ms,
    };
    let poll = Duration::from_millis(outbox_poll_ms);
    Ok(App {
        state,
        router,
        worker,
        intervals: crate::jobs::Intervals {
            outbox: poll,
            timed: Duration::from_secs(5),
            webhooks: poll.max(Duration::from_millis(100)),
        },
        public_url,
        settings,
        gateway,
    })
}

/// The composition root: each service gets exactly the store, settings and lower services
/// it uses. Built bottom-up, so a service can only hold what was built before it and the
/// dependencies cannot form a circle.
// The composition root takes each part of the settings it wires by name.
#[allow(clippy::too_many_arguments)]
fn services(
    store: SharedStore,
    clock: SharedClock,
    key: ServerKey,
    rules: crate::domain::rules::Rules,
    geo: Arc<Geo>,
    composer: Composer,
    gateway_routes: Vec<crate::domain::api_key::RouteRule>,
    assets: Vec<crate::domain::withdrawal::Asset>,
) -> anyhow::Result<Services> {
    let secret_box = Arc::new(crate::domain::secret::SecretBox::new(&key));
    let webauthn = crate::service::passkeys::relying_party(&composer.public_url)?;
    // Shared components.
    let hasher = Arc::new(Hasher::new()?);
    let throttles = Arc::new(Throttles {
        store: store.clone(),
        clock: clock.clone(),
        rules: rules.clone(),
    });
    let notices = Arc::new(Notices {
        clock: clock.clone(),
        composer: composer.clone(),
    });
    let second_factors = Arc::new(SecondFactors {
        store: store.clone(),
        clock: clock.clone(),
        key: key.clone(),
        secret_box: secret_box.clone(),
    });
    let key_cache = Arc::new(KeyCache::default());
    let invalidator = Arc::new(CacheInvalidator {
        store: store.clone(),
        cache: key_cache.clone(),
    });
    // Services, each after the ones it calls.
    let step_up = Arc::new(StepUp {
        store: store.clone(),
        clock: clock.clone(),
        key: key.clone(),
        rules: rules.clone(),
        hasher: hasher.clone(),
        throttles: throttles.clone(),
        notices: notices.clone(),
        second_factors: second_factors.clone(),
    });
    let pending_changes = Arc::new(PendingChanges {
        store: store.clone(),
        clock: clock.clone(),
        composer: composer.clone(),
        notices: notices.clone(),
        step_up: step_up.clone(),
    });
    let sessions = Arc::new(Sessions {
        store: store.clone(),
        clock: clock.clone(),
        rules: rules.clone(),
        notices: notices.clone(),
    });
    let signin = Arc::new(SignIn {
        store: store.clone(),
        clock: clock.clone(),
        key: key.clone(),
        composer: composer.clone(),
        hasher: hasher.clone(),
        throttles: throttles.clone(),
        notices: notices.clone(),
        second_factors: second_factors.clone(),
        sessions: sessions.clone(),
    });
    let accounts = Arc::new(Accounts {
        store: store.clone(),
        clock: clock.clone(),
        key: key.clone(),
        rules: rules.clone(),
        composer: composer.clone(),
        hasher: hasher.clone(),
        throttles: throttles.clone(),
        step_up: step_up.clone(),
    });
    let factors = Arc::new(FactorSettings {
        store: store.clone(),
        clock: clock.clone(),
        secret_box: secret_box.clone(),
        notices: notices.clone(),
        throttles: throttles.clone(),
        second_factors: second_factors.clone(),
        step_up: step_up.clone(),
        pending_changes: pending_changes.clone(),
    });
    let operators = Arc::new(crate::service::console::Operators {
        store: store.clone(),
        clock: clock.clone(),
        key: key.clone(),
        rules: rules.clone(),
        public_url: composer.public_url.clone(),
        secret_box: secret_box.clone(),
        hasher: hasher.clone(),
        throttles: throttles.clone(),
    });
    let email_change = Arc::new(crate::service::email_change::EmailChange {
        store: store.clone(),
        clock: clock.clone(),
        key: key.clone(),
        rules: rules.clone(),
        public_url: composer.public_url.clone(),
        step_up: step_up.clone(),
        notices: notices.clone(),
        invalidator: invalidator.clone(),
    });
    let withdrawals = Arc::new(crate::service::withdrawals::Withdrawals {
        store: store.clone(),
        clock: clock.clone(),
        assets: Arc::new(assets),
        public_url: composer.public_url.clone(),
        notices: notices.clone(),
        step_up: step_up.clone(),
        pending_changes: pending_changes.clone(),
    });
    let recovery = Arc::new(Recovery {
        store: store.clone(),
        clock: clock.clone(),
        key: key.clone(),
        rules: rules.clone(),
        hasher: hasher.clone(),
        throttles: throttles.clone(),
        notices: notices.clone(),
        second_factors: second_factors.clone(),
        step_up: step_up.clone(),
        invalidator: invalidator.clone(),
    });
    let passkeys = Arc::new(Passkeys {
        store: store.clone(),
        clock: clock.clone(),
        webauthn,
        composer: composer.clone(),
        notices: notices.clone(),
        throttles: throttles.clone(),
        second_factors: second_factors.clone(),
        sessions: sessions.clone(),
        signin: signin.clone(),
        step_up: step_up.clone(),
        pending_changes: pending_changes.clone(),
    });
    let support = Arc::new(crate::service::support::Support {
        store: store.clone(),
        clock: clock.clone(),
        key: key.clone(),
        rules: rules.clone(),
        public_url: composer.public_url.clone(),
        hasher: hasher.clone(),
        throttles: throttles.clone(),
        notices: notices.clone(),
        second_factors: second_factors.clone(),
        invalidator: invalidator.clone(),
        secret_box: secret_box.clone(),
        passkeys: passkeys.clone(),
    });
    let api_keys = Arc::new(ApiKeys {
        store: store.clone(),
        clock: clock.clone(),
        secret_box: secret_box.clone(),
        composer: composer.clone(),
        key_cache: key_cache.clone(),
        invalidator: invalidator.clone(),
        step_up: step_up.clone(),
    });
    let gateway = Arc::new(Gateway {
        store: store.clone(),
        clock: clock.clone(),
        secret_box: secret_box.clone(),
        key_cache: key_cache.clone(),
        gateway_routes,
        sessions: sessions.clone(),
    });
    let console = Arc::new(crate::service::console::Console {
        store: store.clone(),
        clock: clock.clone(),
        rules: rules.clone(),
        notices: notices.clone(),
        invalidator: invalidator.clone(),
    });
    let protection = Arc::new(Protection {
        store: store.clone(),
        clock: clock.clone(),
        rules: rules.clone(),
        secret_box: secret_box.clone(),
        notices: notices.clone(),
        step_up: step_up.clone(),
        pending_changes: pending_changes.clone(),
        invalidator: invalidator.clone(),
    });
    let incidents = Arc::new(crate::service::incidents::Incidents {
        store: store.clone(),
        clock: clock.clone(),
        key: key.clone(),
        rules: rules.clone(),
        geo: geo.clone(),
        notices,
        step_up: step_up.clone(),
        invalidator: invalidator.clone(),
        protection: protection.clone(),
        api_keys: api_keys.clone(),
        withdrawals: withdrawals.clone(),
        factors: factors.clone(),
        passkeys: passkeys.clone(),
        pending_changes: pending_changes.clone(),
    });
    Ok(Services {
        store,
        clock,
        key,
        rules,
        geo,
        composer,
        secret_box,
        key_cache,
        invalidator,
        accounts,
        sessions,
        signin,
        step_up,
        pending_changes,
        second_factors,
        factors,
        recovery,
        passkeys,
        api_keys,
        gateway,
        protection,
        operators,
        console,
        support,
        email_change,
        withdrawals,
        incidents,
    })
}

/// Serves until `shutdown` resolves, with every background job running beside the server
/// (`jobs::spawn`) and the gateway listener when there is one; on shutdown both listeners
/// stop taking connections, the jobs finish the item in hand and the store closes.
pub async fn serve(
    mut app: App,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let jobs = crate::jobs::spawn(
        &app.state.services,
        app.worker.clone(),
        app.intervals,
        &stop_rx,
    )?;
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let gateway = app.gateway.take().map(|g| {
        tokio::spawn(crate::http::gateway::serve(
            g.listener,
            g.handler,
            g.header_timeout,
            g.max_connections,
            stop_rx.clone(),
        ))
    });
    let service = app
        .router
        .into_make_service_with_connect_info::<SocketAddr>();
    let main = axum::serve(listener, service).with_graceful_shutdown(stopped(stop_rx.clone()));
    let signal = {
        let stop_tx = stop_tx.clone();
        async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        }
    };
    let (served, ()) = tokio::join!(main.into_future(), signal);
    let _ = stop_tx.send(true);
    served?;
    if let Some(gateway) = gateway {
        gateway.await??;
    }
    for job in jobs {
        let _ = job.await;
    }
    app.state.store.close().await;
    Ok(())
}

/// What `rampart operator …` does.
#[derive(Debug, Clone)]
pub enum OperatorCommand {
    /// Adds an operator; prints the one-time enrolment link (24 h).
    Add { email: String, role: String },
    /// Every operator with role and state.
    List,
    /// Disables an operator; their console sessions end at once.
    Disable { email: String },
}

/// Runs `rampart operator …` against the settings' database and answers what to print.
/// Builds only what operators need (no mail transport, no listener), with the same key
/// and `public_url` as the server, so the printed link is the one the server accepts.
pub async fn operator_command(
    settings: &Settings,
    clock: SharedClock,
    command: OperatorCommand,
) -> anyhow::Result<String> {
    let key = load_or_create_key(settings)?;
    let store = store::connect(settings.database_url.expose_secret()).await?;
    let operators = crate::service::console::Operators {
        store: store.clone(),
        clock: clock.clone(),
        key: key.clone(),
        rules: settings.rules.clone(),
        public_url: settings.public_url_for(settings.listen),
        secret_box: Arc::new(crate::domain::secret::SecretBox::new(&key)),
        hasher: Arc::new(Hasher::new()?),
        throttles: Arc::new(Throttles {
            store: store.clone(),
            clock,
            rules: settings.rules.clone(),
        }),
    };
    let done = match command {
        OperatorCommand::Add { email, role } => {
            operators.add(&email, &role, None).await.map(|added| {
                format!(
                    "operator {} ({}) added.\nOne-time enrolment link (works once, until {}):\n{}\n",
                    added.operator.email,
                    added.operator.role,
                    crate::clock::format_utc(added.expires_at),
                    added.enrolment_link
                )
            })
        }
        OperatorCommand::List => operators.list().await.map(|list| {
            let mut out = String::new();
            for o in list {
                let state = match (o.disabled_at, o.enrolled_at) {
                    (Some(at), _) => format!("disabled {}", crate::clock::format_utc(at)),
                    (None, Some(at)) => format!("enrolled {}", crate::clock::format_utc(at)),
                    (None, None) => "not enrolled yet".to_owned(),
                };
                out.push_str(&format!("{}\t{}\t{}\n", o.email, o.role, state));
            }
            if out.is_empty() {
                out.push_str("no operators\n");
            }
            out
        }),
        OperatorCommand::Disable { email } => operators
            .disable_by_email(&email)
            .await
            .map(|()| format!("operator {email} disabled; their console sessions ended\n")),
    };
    store.close().await;
    done.map_err(|e| anyhow::anyhow!("{e}"))
}
