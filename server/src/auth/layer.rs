//! The tower layer in front of every service: authenticates the caller, applies the RPC's
//! rule (role, fabric scope, limits), records the audit log, and ends open streams of a token
//! that is revoked or expires. Handlers find the `Principal` and `Actor` in the request's
//! extensions and only filter their lists by the principal's scope.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};
use uuid::Uuid;

use super::audit::AuditLog;
use super::authenticator::{AuthError, Authenticator};
use super::limits::{Exceeded, Limits, StreamSlot};
use super::rules::{self, Access, Rule, Target};
use super::{Actor, Credential, Principal, Role};
use crate::db::audit::NewAuditEvent;
use crate::db::{DbConn, DbPool};
use crate::text::{quote, QUOTED_CHARS};
use crate::transport::PeerInfo;

pub const ACTOR_HEADER: &str = "x-fabricsync-actor";
const MAX_ACTOR_CHARS: usize = 128;

pub struct AuthSettings {
    pub public_reflection: bool,
    /// Largest request message; bodies read for scope checks are bounded by it.
    pub max_message_bytes: usize,
}

/// What the layer needs, shared by every connection.
pub struct Gate {
    pub authenticator: Authenticator,
    pub limits: Limits,
    pub audit: AuditLog,
    pub pool: DbPool,
    pub settings: AuthSettings,
    /// Fabric names by id: a fabric-scoped call then needs no database round trip (a renamed
    /// fabric leaves or enters a scope within the cache's bound). Only found names are kept,
    /// so a new fabric is seen at once.
    pub fabric_names: super::cache::Cache<Uuid, String>,
}

#[derive(Clone)]
pub struct AuthLayer {
    gate: Arc<Gate>,
}

impl AuthLayer {
    pub fn new(gate: Arc<Gate>) -> AuthLayer {
        AuthLayer { gate }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService { inner, gate: self.gate.clone() }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    gate: Arc<Gate>,
}

type Req = http::Request<Body>;

impl<S> Service<Req> for AuthService<S>
where
    S: Service<Req, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = http::Response<GuardedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The ready service goes with this call; the clone waits for the next poll_ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move { Ok(gate.handle(req, inner).await) })
    }
}

/// One call as the audit log sees it.
struct Call {
    rpc: String,
    peer: PeerInfo,
    actor: Option<Actor>,
}

/// The fabric a call is about, once resolved.
#[derive(Default)]
struct About {
    fabric_id: Option<Uuid>,
    fabric_name: String,
    targets: serde_json::Map<String, serde_json::Value>,
}

/// Why a call is refused before it reaches the service.
struct Refusal {
    status: Status,
    principal: String,
    about: About,
}

impl Refusal {
    fn new(status: Status, principal: &str) -> Refusal {
        Refusal { status, principal: principal.to_string(), about: About::default() }
    }
}

impl Gate {
    async fn handle<S>(&self, req: Req, mut inner: S) -> http::Response<GuardedBody>
    where
        S: Service<Req, Response = http::Response<Body>, Error = Infallible>,
    {
        let rule = rules::rule(req.uri().path());
        let access = rule.map_or(Access::Role(Role::Admin), |r| r.access);
        if access == Access::Open || (access == Access::Reflection && self.settings.public_reflection) {
            return forward(&mut inner, req).await.map(GuardedBody::plain);
        }
        let call = Call {
            rpc: req.uri().path().trim_start_matches('/').to_string(),
            peer: req.extensions().get::<PeerInfo>().cloned().unwrap_or_default(),
            actor: actor(req.headers()),
        };
        match self.admit(req, rule, &call).await {
            Ok((mut req, principal, about)) => {
                let slot = match rule
                    .filter(|r| r.streaming)
                    .map(|_| self.limits.open_stream(&principal.name))
                    .transpose()
                {
                    Ok(slot) => slot,
                    Err(exceeded) => {
                        return self
                            .refuse(&call, Refusal { status: exhausted(exceeded), principal: principal.name, about })
                            .await
                    }
                };
                req.extensions_mut().insert(principal.clone());
                if let Some(actor) = &call.actor {
                    req.extensions_mut().insert(actor.clone());
                }
                let response = forward(&mut inner, req).await;
                if rule.is_some_and(|r| r.audited) {
                    let status = Status::from_header_map(response.headers()).unwrap_or_else(|| Status::ok(""));
                    self.audit.record(event(&call, &principal.name, about, &status)).await;
                }
                let revocation = match (rule.is_some_and(|r| r.streaming), &principal.credential) {
                    (true, Credential::Token { id, expires_at }) => {
                        Some(Revocation::new(*id, *expires_at, &self.authenticator))
                    }
                    _ => None,
                };
                response.map(|body| GuardedBody { inner: body, revocation, _slot: slot, done: false })
            }
            Err(refusal) => self.refuse(&call, refusal).await,
        }
    }

    /// Authenticates and authorizes; returns the request (its body read back when it had to be
    /// decoded), the principal, and what the call is about.
    async fn admit(
        &self,
        req: Req,
        rule: Option<&'static Rule>,
        call: &Call,
    ) -> Result<(Req, Principal, About), Refusal> {
        let principal = self.authenticate(req.headers(), &call.peer).await?;
        let name = principal.name.clone();
        self.limits.check_rate(&name).map_err(|e| Refusal::new(exhausted(e), &name))?;
        let method = call.rpc.rsplit_once('.').map_or(call.rpc.as_str(), |(_, m)| m);
        let needed = match rule.map(|r| r.access) {
            Some(Access::Role(role)) => role,
            Some(_) => Role::Viewer,
            // An RPC without a rule (the rules test keeps this from happening) is admin only.
            None => Role::Admin,
        };
        if rule.is_none_or(|r| r.unscoped) && !principal.scope.is_all() {
            let why = format!(
                "{method} needs a principal without a fabric scope; {name:?} is limited to {}",
                principal.scope.globs().join(", ")
            );
            return Err(Refusal::new(Status::permission_denied(why), &name));
        }
        let audited = rule.is_some_and(|r| r.audited);
        let decoder =
            rule.filter(|r| r.audited || !principal.scope.is_all()).and_then(|r| r.targets.map(|t| (r.method, t)));
        if principal.role < needed {
            // Refused whatever the target, before any lookup: no fabric's existence shows
            // through. The audit row still names what was asked for.
            let about = match decoder.filter(|_| audited) {
                Some((rpc, decode)) => {
                    self.read_targets(req, rpc, decode).await.map(|(_, t)| About::of(&t)).unwrap_or_default()
                }
                None => About::default(),
            };
            let why = format!("{method} needs role {needed}; {name:?} has role {}", principal.role);
            return Err(Refusal { status: Status::permission_denied(why), principal: name, about });
        }
        let Some((rpc, decode)) = decoder else {
            return Ok((req, principal, About::default()));
        };
        let (req, targets) = self.read_targets(req, rpc, decode).await.map_err(|status| Refusal::new(status, &name))?;
        let about = self.resolve(&targets, &principal, audited).await.map_err(|status| Refusal::new(status, &name))?;
        Ok((req, principal, about))
    }

    async fn authenticate(&self, headers: &http::HeaderMap, peer: &PeerInfo) -> Result<Principal, Refusal> {
        let failed = |e: AuthError| {
            let status = match e {
                AuthError::Db(_) => Status::unavailable("cannot check credentials now (database unavailable); retry"),
                _ => Status::unauthenticated(e.to_string()),
            };
            Refusal::new(status, e.principal())
        };
        match headers.get(http::header::AUTHORIZATION) {
            Some(value) => {
                let value = value.to_str().map_err(|_| failed(AuthError::Malformed))?;
                let (scheme, token) = value.split_once(' ').ok_or_else(|| failed(AuthError::Malformed))?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(failed(AuthError::Malformed));
                }
                self.authenticator.token(token.trim(), peer.remote.map(|a| canonical(a.ip()))).await.map_err(failed)
            }
            None => match &peer.client_cert {
                Some(cert) => self.authenticator.certificate(cert).map_err(failed),
                None => Err(failed(AuthError::Missing)),
            },
        }
    }

    /// Reads the (unary or first) request message to find its targets, and rebuilds the body.
    async fn read_targets(&self, req: Req, rpc: &str, decode: rules::Targets) -> Result<(Req, Vec<Target>), Status> {
        let (parts, body) = req.into_parts();
        let limit = self.settings.max_message_bytes + 5;
        let bytes = http_body_util::Limited::new(body, limit)
            .collect()
            .await
            .map_err(|_| {
                Status::invalid_argument(format!(
                    "request larger than {} bytes or cut off",
                    self.settings.max_message_bytes
                ))
            })?
            .to_bytes();
        let targets = match grpc_message(&bytes) {
            Some(message) => decode(message)
                .map_err(|e| Status::invalid_argument(format!("the request is not a valid {rpc} request: {e}")))?,
            None => return Err(Status::invalid_argument("the request body is not one uncompressed gRPC message")),
        };
        Ok((http::Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes))), targets))
    }

    /// Finds the fabric behind each target and checks it against the principal's scope: a
    /// fabric outside the scope is NOT_FOUND, as if it did not exist. A repository may be read
    /// when one fabric in the scope uses it, and changed only when every fabric using it is in
    /// the scope (it would change what the others pull).
    async fn resolve(&self, targets: &[Target], principal: &Principal, mutating: bool) -> Result<About, Status> {
        let mut about = About::of(targets);
        let unavailable = |e: crate::db::DbError| {
            tracing::warn!(error = %e, "resolving a request's fabric failed");
            Status::unavailable("database unavailable; retry")
        };
        // Connected only when a lookup is not answered by the cache of fabric names.
        let mut conn = None;
        for target in targets {
            match target {
                Target::Fabric(id) => {
                    let Ok(uuid) = Uuid::parse_str(id) else { continue };
                    match self.fabric_name(&mut conn, uuid).await.map_err(unavailable)? {
                        Some(name) if principal.scope.allows(&name) => about.fabric(uuid, name),
                        Some(_) => return Err(not_found("fabric", uuid)),
                        None => {}
                    }
                }
                Target::Run(id) => {
                    let Ok(uuid) = Uuid::parse_str(id) else { continue };
                    match crate::db::runs::fabric_of(connected(&self.pool, &mut conn).await.map_err(unavailable)?, uuid)
                        .await
                        .map_err(unavailable)?
                    {
                        Some((fabric, name)) if principal.scope.allows(&name) => about.fabric(fabric, name),
                        Some(_) => return Err(not_found("sync run", uuid)),
                        None => {}
                    }
                }
                Target::Repository(id) => {
                    let Ok(uuid) = Uuid::parse_str(id) else { continue };
                    if !principal.scope.is_all() {
                        let users = crate::db::fabrics::names_using_repository(
                            connected(&self.pool, &mut conn).await.map_err(unavailable)?,
                            uuid,
                        )
                        .await
                        .map_err(unavailable)?;
                        let in_scope = |name: &String| principal.scope.allows(name);
                        let allowed = if mutating {
                            !users.is_empty() && users.iter().all(in_scope)
                        } else {
                            users.iter().any(in_scope)
                        };
                        if !allowed {
                            return Err(not_found("repository", uuid));
                        }
                    }
                }
                Target::FabricName(name) if !name.is_empty() && !principal.scope.allows(name) => {
                    let why = format!(
                        "fabric name {} is outside the scope of {:?} ({})",
                        quote(name),
                        principal.name,
                        principal.scope.globs().join(", ")
                    );
                    return Err(Status::permission_denied(why));
                }
                Target::FabricName(name) if about.fabric_name.is_empty() => about.fabric_name = bounded(name),
                Target::FabricName(_) | Target::Named(..) => {}
            }
        }
        Ok(about)
    }

    /// A fabric's name, from the cache or the database (then cached).
    async fn fabric_name(&self, conn: &mut Option<DbConn>, id: Uuid) -> Result<Option<String>, crate::db::DbError> {
        if let Some(name) = self.fabric_names.get(&id) {
            return Ok(Some(name));
        }
        let name = crate::db::fabrics::name_of(connected(&self.pool, conn).await?, id).await?;
        if let Some(name) = &name {
            self.fabric_names.put(id, name.clone());
        }
        Ok(name)
    }

    async fn refuse(&self, call: &Call, refusal: Refusal) -> http::Response<GuardedBody> {
        self.audit.record_or_drop(event(call, &refusal.principal, refusal.about, &refusal.status));
        refusal.status.into_http::<Body>().map(GuardedBody::plain)
    }
}

/// The connection of `slot`, made on first use.
async fn connected<'a>(pool: &DbPool, slot: &'a mut Option<DbConn>) -> Result<&'a mut DbConn, crate::db::DbError> {
    if slot.is_none() {
        *slot = Some(crate::db::connect(pool).await?);
    }
    slot.as_mut().ok_or_else(|| crate::db::DbError::Pool("no connection".into()))
}

/// The audit row of a call.
fn event(call: &Call, principal: &str, about: About, status: &Status) -> NewAuditEvent {
    NewAuditEvent {
        principal: principal.to_string(),
        actor: call.actor.as_ref().map(|a| a.0.clone()).unwrap_or_default(),
        rpc: call.rpc.clone(),
        fabric_id: about.fabric_id,
        fabric_name: about.fabric_name,
        targets: serde_json::Value::Object(about.targets),
        code: code_name(status.code()).to_string(),
        message: if status.code() == Code::Ok { String::new() } else { status.message().chars().take(1024).collect() },
        peer: call.peer.remote.map(|a| a.to_string()).unwrap_or_default(),
    }
}

impl About {
    /// The targets as the audit log records them (bounded), before any lookup.
    fn of(targets: &[Target]) -> About {
        let mut about = About::default();
        for target in targets {
            let (key, value) = match target {
                Target::Fabric(v) => ("fabric_id", v),
                Target::Run(v) => ("run_id", v),
                Target::Repository(v) => ("repository_id", v),
                Target::FabricName(v) => ("fabric_name", v),
                Target::Named(key, v) => (*key, v),
            };
            if !value.is_empty() {
                about.targets.insert(key.to_string(), bounded(value).into());
            }
        }
        about
    }

    fn fabric(&mut self, id: Uuid, name: String) {
        self.fabric_id = Some(id);
        self.fabric_name = name;
    }
}

async fn forward<S>(inner: &mut S, req: Req) -> http::Response<Body>
where
    S: Service<Req, Response = http::Response<Body>, Error = Infallible>,
{
    match inner.call(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The message of a gRPC request body holding exactly one uncompressed message.
fn grpc_message(bytes: &[u8]) -> Option<&[u8]> {
    let (header, message) = bytes.split_at_checked(5)?;
    let mut header = header;
    let compressed = header.get_u8();
    let len = usize::try_from(header.get_u32()).ok()?;
    (compressed == 0 && message.len() == len).then_some(message)
}

/// The actor metadata, cleaned: printable, bounded; absent when empty.
fn actor(headers: &http::HeaderMap) -> Option<Actor> {
    let value = headers.get(ACTOR_HEADER)?.to_str().ok()?;
    let clean: String = value.chars().filter(|c| !c.is_control()).take(MAX_ACTOR_CHARS).collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| Actor(clean.to_string()))
}

/// IPv4-mapped IPv6 peers (dual-stack listeners) compare as IPv4 against allowed networks.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Worded as the handlers word it, so a scope refusal reads like an id that does not exist.
fn not_found(kind: &str, id: Uuid) -> Status {
    Status::not_found(format!("{kind} {:?} not found", id.to_string()))
}

/// Request values as the audit log stores them: at most as many characters as messages quote.
fn bounded(value: &str) -> String {
    value.chars().take(QUOTED_CHARS).collect()
}

fn exhausted(exceeded: Exceeded) -> Status {
    let (message, retry) = match exceeded {
        Exceeded::Rate(wait) => {
            (format!("request rate limit of this principal exceeded; retry in {} ms", wait.as_millis().max(1)), wait)
        }
        Exceeded::Streams(max) => {
            (format!("this principal already has {max} open streams; close one and retry"), Duration::from_secs(1))
        }
    };
    Status::with_error_details(Code::ResourceExhausted, message, ErrorDetails::with_retry_info(Some(retry)))
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Ends a stream when its token is revoked or expires, checked every second.
struct Revocation {
    token: Uuid,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    invalid: tokio::sync::watch::Receiver<Arc<std::collections::HashSet<Uuid>>>,
    tick: tokio::time::Interval,
}

impl Revocation {
    fn new(
        token: Uuid,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        authenticator: &Authenticator,
    ) -> Revocation {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Revocation { token, expires_at, invalid: authenticator.invalid_tokens(), tick }
    }

    fn ended(&self) -> bool {
        self.invalid.borrow().contains(&self.token) || self.expires_at.is_some_and(|at| at <= chrono::Utc::now())
    }
}

/// A response body, with what an open stream holds: its revocation check and its slot in the
/// principal's stream limit (released when the body is dropped).
pub struct GuardedBody {
    inner: Body,
    revocation: Option<Revocation>,
    _slot: Option<StreamSlot>,
    done: bool,
}

impl GuardedBody {
    fn plain(inner: Body) -> GuardedBody {
        GuardedBody { inner, revocation: None, _slot: None, done: false }
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(revocation) = &mut self.revocation {
            while revocation.tick.poll_tick(cx).is_ready() {
                if revocation.ended() {
                    self.done = true;
                    let mut trailers = http::HeaderMap::new();
                    let _ = Status::unauthenticated("the token of this stream was revoked or has expired")
                        .add_header(&mut trailers);
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
            }
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }

    /// A trailers-only response (an error before the first message) must end with its
    /// headers, revocation check or not: gRPC clients reject a separate empty end.
    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.revocation.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_frames() {
        let mut body = vec![0, 0, 0, 0, 3];
        body.extend_from_slice(b"abc");
        assert_eq!(grpc_message(&body), Some(&b"abc"[..]));
        body[0] = 1;
        assert_eq!(grpc_message(&body), None, "compressed");
        assert_eq!(grpc_message(&[0, 0, 0, 0, 9, 1]), None, "cut off");
        assert_eq!(grpc_message(&[0, 0]), None);
        assert_eq!(grpc_message(&[0, 0, 0, 0, 0]), Some(&b""[..]));
    }

    #[test]
    fn actors_are_cleaned() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(actor(&headers), None);
        headers.insert(ACTOR_HEADER, http::HeaderValue::from_static("  alice  "));
        assert_eq!(actor(&headers), Some(Actor("alice".into())));
        headers.insert(ACTOR_HEADER, http::HeaderValue::from_str(&"x".repeat(500)).unwrap());
        assert_eq!(actor(&headers).unwrap().0.len(), MAX_ACTOR_CHARS);
        headers.insert(ACTOR_HEADER, http::HeaderValue::from_static("   "));
        assert_eq!(actor(&headers), None);
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(canonical(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
