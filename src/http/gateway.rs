//! The gateway listener (`--gateway-listen`): Rampart itself in front of the exchange API,
//! for clients that sign the request body (ccxt's orders), which a proxy's `auth_request`
//! never shows to `/authz`.
//!
//! Every request is decided exactly as `/authz` decides it (the route's security type; the
//! signature over the query string followed by the body) and, when allowed, forwarded to
//! `gateway_upstream` unchanged — method, request target byte for byte, headers, body —
//! with the caller's identity in `X-Rampart-*` headers, which clients cannot set (inbound
//! ones are dropped). Refusals answer in the exchange's error shape,
//! `{"code": -2015, "msg": …, "rampart_code": "permission_missing"}` with the exchange's
//! HTTP status, so client libraries raise their usual exceptions.
//!
//! The body is read whole (at most `gateway_body_limit_bytes`, within
//! `gateway_body_timeout_ms`) before anything reaches the upstream: the signature covers
//! it, and an oversized or slow upload must cost the upstream nothing. The answer streams
//! back as it arrives. Each client connection keeps its own kept-alive HTTP/1.1 connection
//! to the upstream ([`UpstreamSlot`]): a client's requests come one after another, so no
//! shared pool needs locking or lookups.
//! The listener is served by [`serve`], not `axum::serve`: it must time out a client that
//! never finishes its headers (axum's server sets no timer), and hyper calls the one
//! handler directly, with no router or middleware per request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::domain::api_key::Refusal;
use crate::http::extract::client_ip;
use crate::http::AppState;
use crate::service::api_keys::{Access, AuthzError, GatewayRequest, Identity};

/// The gateway listener's settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `http://host:port` or `https://host`, with an optional path prefix.
    pub upstream: String,
    pub body_limit: usize,
    /// For the headers of each request, then again for its body.
    pub body_timeout: Duration,
    pub upstream_timeout: Duration,
}

/// Serves the gateway router on `listener` (HTTP/1.1, keep-alive) until `stop` turns true,
/// then lets requests in flight finish. Each connection must deliver a request's headers
/// within `header_timeout` (slow-header clients are cut off, so idle sockets cannot pile
/// up) and the body within the body timeout (in the handler). At most `max_connections`
/// are open at once; beyond that new ones wait in the kernel's accept queue, so a flood of
/// connections cannot use up the file descriptors the main listener and the database
/// need.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handler: GatewayHandler,
    header_timeout: Duration,
    max_connections: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    use hyper_util::rt::{TokioIo, TokioTimer};
    // Every connection task holds a clone of `open`; `closed()` resolves when all are gone.
    let (all_done, open) = tokio::sync::watch::channel(());
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("gateway accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => break,
        };
        let _ = stream.set_nodelay(true);
        // Straight from hyper to the handler: no router or middleware to run per request
        // (there is one route), which the forwarding's cost is sensitive to.
        let gw = handler.0.clone();
        let slot = Arc::new(UpstreamSlot::default());
        let service =
            hyper::service::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
                let (gw, slot) = (gw.clone(), slot.clone());
                async move {
                    let response = handle(&gw, peer, &slot, req.map(Body::new)).await;
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
        let mut stop = stop.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("gateway connection ended: {e}");
                    }
                }
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(open);
            drop(permit);
        });
    }
    drop(open);
    all_done.closed().await;
    Ok(())
}

impl GatewayConfig {
    /// Refuses an upstream that cannot be forwarded to: not http(s), no host, or with a
    /// query string, fragment or credentials (which would be sent on every request).
    pub fn check_upstream(upstream: &str) -> anyhow::Result<()> {
        let url = url::Url::parse(upstream)
            .with_context(|| format!("gateway_upstream {upstream:?} is not a URL"))?;
        let problem = if !matches!(url.scheme(), "http" | "https") {
            Some("must start with http:// or https://")
        } else if url.host_str().is_none() {
            Some("has no host")
        } else if url.query().is_some() || url.fragment().is_some() {
            Some("must not have a query string or fragment")
        } else if !url.username().is_empty() || url.password().is_some() {
            Some("must not carry credentials")
        } else {
            None
        };
        match problem {
            Some(p) => anyhow::bail!("gateway_upstream {p} (like http://127.0.0.1:9000)"),
            None => Ok(()),
        }
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type UpstreamSender = hyper::client::conn::http1::SendRequest<Body>;

/// Forwards allowed requests to the upstream.
struct Forwarder {
    connector: Connector,
    /// The upstream, to connect to.
    upstream: Uri,
    /// The upstream's `Host`.
    host: HeaderValue,
    /// The upstream's path prefix without a trailing slash ("" for none); the request
    /// target is appended as sent.
    prefix: String,
    config: GatewayConfig,
}

impl Forwarder {
    /// A new connection to the upstream (TCP, TLS for https), its driver on its own task.
    async fn connect(&self) -> anyhow::Result<UpstreamSender> {
        use tower::Service;
        let io = self
            .connector
            .clone()
            .call(self.upstream.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to the upstream: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("gateway upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// Sends on the client connection's upstream connection, or on a new one when there is
    /// none, it has closed, or the upstream closed it before this request was written (an
    /// idle kept-alive connection the upstream timed out: nothing was sent, so sending
    /// again is safe even for an order).
    async fn send(
        &self,
        slot: &UpstreamSlot,
        mut request: axum::http::Request<Body>,
    ) -> anyhow::Result<axum::http::Response<hyper::body::Incoming>> {
        if let Some(mut sender) = slot.take() {
            if sender.ready().await.is_ok() {
                match sender.try_send_request(request).await {
                    Ok(response) => {
                        slot.put(sender);
                        return Ok(response);
                    }
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => request = unsent,
                        None => return Err(e.into_error().into()),
                    },
                }
            }
        }
        let mut sender = self.connect().await?;
        let response = sender.send_request(request).await?;
        slot.put(sender);
        Ok(response)
    }
}

/// The upstream connection of one client connection, between its requests.
#[derive(Default)]
pub struct UpstreamSlot(std::sync::Mutex<Option<UpstreamSender>>);

impl UpstreamSlot {
    fn take(&self) -> Option<UpstreamSender> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }

    fn put(&self, sender: UpstreamSender) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(sender);
        }
    }
}

struct GatewayState {
    app: AppState,
    forwarder: Forwarder,
    /// `rampart_gateway_requests_total` by outcome, registered once (a labelled
    /// `counter!` per request would build and hash its key every time).
    forwarded: metrics::Counter,
    refused: metrics::Counter,
    upstream_failed: metrics::Counter,
}

/// What the gateway listener runs for every request (see [`serve`]).
#[derive(Clone)]
pub struct GatewayHandler(Arc<GatewayState>);

/// The gateway listener's handler.
pub fn handler(app: AppState, config: GatewayConfig) -> anyhow::Result<GatewayHandler> {
    GatewayConfig::check_upstream(&config.upstream)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let url = url::Url::parse(&config.upstream)?;
    let upstream: Uri = config.upstream.parse()?;
    let authority = upstream
        .authority()
        .ok_or_else(|| anyhow::anyhow!("gateway_upstream has no host"))?;
    let forwarder = Forwarder {
        connector,
        host: HeaderValue::from_str(authority.as_str())?,
        prefix: url.path().trim_end_matches('/').to_owned(),
        upstream,
        config,
    };
    let counter = |outcome: &'static str| metrics::counter!("rampart_gateway_requests_total", "outcome" => outcome);
    Ok(GatewayHandler(Arc::new(GatewayState {
        app,
        forwarder,
        forwarded: counter("forwarded"),
        refused: counter("refused"),
        upstream_failed: counter("upstream_failed"),
    })))
}

const UNKNOWN: &str = "An unknown error occurred while processing the request.";

async fn handle(
    gw: &GatewayState,
    peer: SocketAddr,
    slot: &UpstreamSlot,
    request: Request,
) -> Response {
    use tracing::Instrument;
    let span =
        tracing::debug_span!("gateway", method = %request.method(), path = %request.uri().path());
    let response = decide_and_forward(gw, Some(peer), slot, request)
        .instrument(span)
        .await;
    let outcome = match response
        .headers()
        .get(RAMPART_ERROR)
        .map(HeaderValue::as_bytes)
    {
        None => &gw.forwarded,
        Some(b"upstream_unavailable" | b"upstream_timeout") => &gw.upstream_failed,
        Some(_) => &gw.refused,
    };
    outcome.increment(1);
    response
}

async fn decide_and_forward(
    gw: &GatewayState,
    peer: Option<SocketAddr>,
    slot: &UpstreamSlot,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let peer_ip = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| p.ip());
    let Ok(ip) = client_ip(peer_ip, &parts.headers, &gw.app.trusted_proxies) else {
        return refused(&Refusal::BadParameter(
            "X-Forwarded-For",
            "from the proxy is malformed",
        ));
    };
    let body = match read_body(&parts.headers, body, &gw.forwarder.config).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Ok(body_text) = std::str::from_utf8(&body) else {
        return refused(&Refusal::BadParameter("body", "is not valid UTF-8"));
    };
    if let Some(refusal) = ambiguous_headers(&parts.headers, !body.is_empty()) {
        return refused(&refusal);
    }
    let api_key = parts
        .headers
        .get("x-mbx-apikey")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let decision = gw
        .app
        .gateway
        .authorize(&GatewayRequest {
            api_key,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            body: body_text,
            ip,
        })
        .await;
    let identity = match decision {
        Ok(Access::Public) => None,
        Ok(Access::Key(id)) => Some(id),
        Err(AuthzError::Refused(r)) => {
            metrics::counter!("rampart_authz_refused_total", "code" => r.code()).increment(1);
            return refused(&r);
        }
        Err(AuthzError::Failed(e)) => {
            tracing::error!("gateway decision failed: {e:#}");
            return exchange_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                -1000,
                "internal_error",
                UNKNOWN,
            );
        }
    };
    // Origin form, as sent, behind the upstream's path prefix if it has one.
    let uri = if gw.forwarder.prefix.is_empty() {
        Ok(parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone())))
    } else {
        format!(
            "{}{}",
            gw.forwarder.prefix,
            parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
        )
        .parse::<Uri>()
    };
    let Ok(uri) = uri else {
        return refused(&Refusal::NonCanonicalPath);
    };
    let mut upstream = axum::http::Request::new(Body::from(body));
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = uri;
    let mut headers = forwarded_headers(parts.headers, ip, identity.as_ref());
    headers.insert(header::HOST, gw.forwarder.host.clone());
    *upstream.headers_mut() = headers;
    forward(&gw.forwarder, slot, upstream).await
}

/// The body, whole: refused when larger than the limit (by its `Content-Length` before
/// reading anything, or as it arrives) or slower than the body timeout.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    config: &GatewayConfig,
) -> Result<Bytes, Response> {
    let too_large = || {
        exchange_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            -1000,
            "body_too_large",
            &format!(
                "The request body is larger than {} bytes.",
                config.body_limit
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.body_limit as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(
        config.body_timeout,
        axum::body::to_bytes(body, config.body_limit),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let over_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if over_limit {
                too_large()
            } else {
                exchange_error(
                    StatusCode::BAD_REQUEST,
                    -1000,
                    "body_unreadable",
                    "The request body could not be read.",
                )
            })
        }
        Err(_) => Err(exchange_error(
            StatusCode::REQUEST_TIMEOUT,
            -1000,
            "body_timeout",
            &format!(
                "The request body did not arrive within {} ms.",
                config.body_timeout.as_millis()
            ),
        )),
    }
}

/// A body that is not a form: the exchange signs and reads only form bodies, and a JSON
/// body would carry parameters Rampart never saw as parameters.
const NOT_A_FORM: Refusal = Refusal::BadParameter(
    "body",
    "must be form-encoded (Content-Type: application/x-www-form-urlencoded)",
);

/// Headers that would make the upstream read another request than the one Rampart judged:
/// the key twice (Rampart judges one, the upstream might use the other), the body's type
/// twice or not a form, or a body that the upstream would decode (`Content-Encoding`)
/// into parameters nobody signed.
pub(crate) fn ambiguous_headers(headers: &HeaderMap, has_body: bool) -> Option<Refusal> {
    if headers.get_all("x-mbx-apikey").iter().count() > 1 {
        return Some(Refusal::DuplicateParameter("X-MBX-APIKEY".into()));
    }
    if headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
        return Some(Refusal::DuplicateParameter("Content-Type".into()));
    }
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Some(Refusal::BadParameter(
            "Content-Encoding",
            "must be absent: bodies are read as sent",
        ));
    }
    (has_body && !is_form(headers)).then_some(NOT_A_FORM)
}

/// Form-encoded (the exchange's only body type), or no declared type.
fn is_form(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_none_or(|v| {
        v.to_str().is_ok_and(|t| {
            t.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
    })
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus those the
/// forwarding sets itself (`Host` from the upstream, the length of the body as read).
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Headers that make some frameworks run another method or path than the one Rampart
/// judged, and the caller-address headers Rampart sets itself: never from clients.
const DROPPED: [&str; 11] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-real-ip",
    "forwarded",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    // Rampart answered any `Expect: 100-continue` itself when it read the body.
    "expect",
];

/// An inbound header the upstream never receives: the fixed list above, anything that
/// claims to be Rampart's (`x-rampart-*`) or a proxy's (`x-forwarded-*`), and any name
/// with an underscore — many servers read `X-Rampart_Uid` as `X-Rampart-Uid` (CGI-style
/// `HTTP_X_RAMPART_UID`), which would let a client add to its identity. nginx drops
/// underscored names by default too.
fn dropped(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.contains('_')
        || n.starts_with("x-rampart-")
        || n.starts_with("x-forwarded-")
        || DROPPED.contains(&n)
}

/// Removes hop-by-hop headers and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The client's headers as the upstream receives them: without hop-by-hop, override and
/// `X-Rampart-*` headers (a client cannot claim an identity), with the identity Rampart
/// established, and the caller's address as Rampart judged it (`X-Forwarded-For`,
/// `X-Real-IP`; only trusted proxies' forwarding headers count).
fn forwarded_headers(mut headers: HeaderMap, ip: IpAddr, identity: Option<&Identity>) -> HeaderMap {
    let host = headers.get(header::HOST).cloned();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    let claimed: Vec<HeaderName> = headers.keys().filter(|n| dropped(n)).cloned().collect();
    for name in claimed {
        headers.remove(name);
    }
    let ip = HeaderValue::from_str(&ip.to_canonical().to_string())
        .unwrap_or(HeaderValue::from_static("unknown"));
    headers.insert("x-forwarded-for", ip.clone());
    headers.insert("x-real-ip", ip);
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
    let auth = match identity {
        None => "public",
        Some(id) => {
            for (name, value) in [
                ("x-rampart-uid", id.uid.as_str()),
                ("x-rampart-key", id.api_key.as_str()),
                ("x-rampart-permissions", id.permissions.as_str()),
            ] {
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.insert(HeaderName::from_static(name), v);
                }
            }
            if let Some(until) = id.withdrawals_locked_until {
                headers.insert(
                    HeaderName::from_static(LOCKED_UNTIL),
                    HeaderValue::from(until),
                );
            }
            id.via
        }
    };
    headers.insert(
        HeaderName::from_static("x-rampart-auth"),
        HeaderValue::from_static(auth),
    );
    headers
}

/// Sends the request upstream and streams its answer back; an upstream that cannot be
/// reached or does not answer in time is a 502 / 504 in the exchange's shape.
async fn forward(
    forwarder: &Forwarder,
    slot: &UpstreamSlot,
    request: axum::http::Request<Body>,
) -> Response {
    let sent = tokio::time::timeout(
        forwarder.config.upstream_timeout,
        forwarder.send(slot, request),
    )
    .await;
    match sent {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            // Only Rampart's own refusals carry it (metrics and proxies count on that).
            parts.headers.remove(RAMPART_ERROR);
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(e)) => {
            tracing::warn!("gateway upstream failed: {e:#}");
            exchange_error(
                StatusCode::BAD_GATEWAY,
                -1001,
                "upstream_unavailable",
                "Internal error; unable to process your request. Please try again.",
            )
        }
        Err(_) => {
            tracing::warn!(
                "gateway upstream did not answer within {} ms",
                forwarder.config.upstream_timeout.as_millis()
            );
            exchange_error(
                StatusCode::GATEWAY_TIMEOUT,
                -1007,
                "upstream_timeout",
                "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
            )
        }
    }
}

/// Set on every refusal: Rampart's stable code (the body has it too, as `rampart_code`).
const RAMPART_ERROR: &str = "x-rampart-error";
/// Sent with refusals and forwarded requests while a withdrawal lock is in force.
const LOCKED_UNTIL: &str = "x-rampart-withdrawals-locked-until";

/// A refusal in the exchange's shape, with the exchange's status and code for it.
pub(crate) fn refused(r: &Refusal) -> Response {
    let (status, code) = r.exchange_error();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut resp = exchange_error(status, code, r.code(), &r.message());
    if let Refusal::WithdrawalsLocked { until } = r {
        resp.headers_mut().insert(
            HeaderName::from_static(LOCKED_UNTIL),
            HeaderValue::from(*until),
        );
    }
    resp
}

/// `{"code": …, "msg": …, "rampart_code": …}` with `X-Rampart-Error`.
fn exchange_error(
    status: StatusCode,
    code: i32,
    rampart_code: &'static str,
    msg: &str,
) -> Response {
    let mut resp = (
        status,
        axum::Json(json!({"code": code, "msg": msg, "rampart_code": rampart_code})),
    )
        .into_response();
    resp.headers_mut().insert(
        HeaderName::from_static(RAMPART_ERROR),
        HeaderValue::from_static(rampart_code),
    );
    resp
}
