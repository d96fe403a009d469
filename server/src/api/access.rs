//! AccessService: API tokens, the caller's identity, and the audit log.

use tonic::{Request, Response, Status};
use tracing::info;

use super::error::ApiError;
use super::{listing, AppState};
use crate::auth::manage::{self, TokenError, TokenSpec};
use crate::auth::{Actor, Credential, Role};
use crate::convert::{opt_timestamp, timestamp, ROLES};
use crate::db::audit::{AuditFilter, AuditRow};
use crate::db::tokens::{self as store, TokenRow};
use crate::proto::access_service_server::AccessService;
use crate::proto::*;
use crate::text::quote;

pub struct AccessApi {
    state: AppState,
}

impl AccessApi {
    pub fn new(state: AppState) -> Self {
        AccessApi { state }
    }
}

const AUDIT_FILTERS: &[&str] = &["principal", "actor", "fabric", "rpc", "code"];

fn role_from_proto(value: i32) -> Option<Role> {
    crate::proto::Role::try_from(value).ok().and_then(|r| ROLES.word(r)).and_then(|word| word.parse().ok())
}

fn token_to_proto(row: &TokenRow) -> ApiToken {
    ApiToken {
        id: row.id.to_string(),
        name: row.name.clone(),
        role: ROLES.of(&row.role) as i32,
        fabrics: row.fabric_scope.clone(),
        allowed_networks: row.allowed_networks.clone(),
        description: row.description.clone(),
        created_by: row.created_by.clone(),
        create_time: Some(timestamp(row.created_at)),
        expire_time: opt_timestamp(row.expires_at),
        last_use_time: opt_timestamp(row.last_used_at),
        revoke_time: opt_timestamp(row.revoked_at),
        lookup: format!("{}{}", crate::auth::token::PREFIX, row.lookup_key),
    }
}

fn audit_to_proto(row: AuditRow) -> AuditEvent {
    let AuditRow { id, time, event: row } = row;
    let targets = match row.targets {
        serde_json::Value::Object(map) => {
            map.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect()
        }
        _ => Default::default(),
    };
    AuditEvent {
        id,
        time: Some(timestamp(time)),
        principal: row.principal,
        actor: row.actor,
        rpc: row.rpc,
        fabric_id: row.fabric_id.map(|id| id.to_string()).unwrap_or_default(),
        fabric_name: row.fabric_name,
        targets,
        code: row.code,
        message: row.message,
        peer: row.peer,
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> ApiError {
        match e {
            TokenError::Invalid(field, why) => ApiError::invalid(field, why),
            TokenError::Exists(name) => {
                ApiError::AlreadyExists(format!("an active token named {} exists", quote(&name)))
            }
            TokenError::Db(e) => ApiError::Db(e),
        }
    }
}

fn time(field: &str, t: Option<prost_types::Timestamp>) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    t.map(|t| {
        let nanos = u32::try_from(t.nanos).map_err(|_| ApiError::invalid(field, "nanos must not be negative"))?;
        chrono::DateTime::from_timestamp(t.seconds, nanos).ok_or_else(|| ApiError::invalid(field, "is out of range"))
    })
    .transpose()
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let created_by = super::requester(&request)?;
        let req = request.into_inner();
        let ttl = req
            .ttl
            .map(|d| std::time::Duration::try_from(d).map_err(|_| ApiError::invalid("ttl", "must not be negative")))
            .transpose()?;
        let spec = TokenSpec {
            name: req.name,
            role: role_from_proto(req.role),
            fabrics: req.fabrics,
            ttl,
            allowed_networks: req.allowed_networks,
            description: req.description,
        };
        let mut conn = self.state.conn().await?;
        let (row, value) =
            manage::create(&mut conn, &self.state.token_pepper, &spec, &created_by).await.map_err(ApiError::from)?;
        info!(token = %row.name, role = %row.role, created_by = %created_by, "API token created");
        Ok(Response::new(CreateTokenResponse { token: Some(token_to_proto(&row)), value: value.expose().to_string() }))
    }

    async fn list_tokens(&self, request: Request<ListTokensRequest>) -> Result<Response<ListTokensResponse>, Status> {
        let req = request.into_inner();
        let page = listing::page(req.page_size, &req.page_token)?;
        let mut conn = self.state.conn().await?;
        let listed = store::list(&mut conn, req.include_revoked, &page).await.map_err(ApiError::from)?;
        let cursor = listed.items.last().map(store::cursor);
        Ok(Response::new(ListTokensResponse {
            tokens: listed.items.iter().map(token_to_proto).collect(),
            next_page_token: listing::next_page_token(listed.has_more, cursor.as_deref()),
            total_size: i32::try_from(listed.total).unwrap_or(i32::MAX),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let by = super::requester(&request)?;
        let name = request.into_inner().name;
        crate::text::no_nul(&name).map_err(|e| ApiError::invalid("name", e))?;
        let mut conn = self.state.conn().await?;
        let row = store::revoke(&mut conn, &name)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound { kind: "token", id: name })?;
        info!(token = %row.name, revoked_by = %by, "API token revoked");
        Ok(Response::new(RevokeTokenResponse { token: Some(token_to_proto(&row)) }))
    }

    async fn who_am_i(&self, request: Request<WhoAmIRequest>) -> Result<Response<WhoAmIResponse>, Status> {
        let principal = super::principal(&request)?;
        let (kind, expires_at) = match &principal.credential {
            Credential::Token { expires_at, .. } => (PrincipalKind::Token, *expires_at),
            Credential::Certificate => (PrincipalKind::Certificate, None),
        };
        Ok(Response::new(WhoAmIResponse {
            principal: principal.name.clone(),
            kind: kind as i32,
            role: ROLES.of(principal.role.as_str()) as i32,
            fabrics: principal.scope.globs().to_vec(),
            actor: request.extensions().get::<Actor>().map(|a| a.0.clone()).unwrap_or_default(),
            expire_time: opt_timestamp(expires_at),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let req = request.into_inner();
        let page = listing::page(req.page_size, &req.page_token)?;
        let terms = listing::filter(&req.filter, AUDIT_FILTERS)?;
        let filter = AuditFilter {
            principal: terms.get("principal").cloned(),
            actor: terms.get("actor").cloned(),
            fabric: terms.get("fabric").cloned(),
            rpc: terms.get("rpc").cloned(),
            code: terms.get("code").cloned(),
            since: time("start_time", req.start_time)?,
            until: time("end_time", req.end_time)?,
        };
        let mut conn = self.state.conn().await?;
        let listed = crate::db::audit::list(&mut conn, &filter, &page).await.map_err(ApiError::from)?;
        let cursor = listed.items.last().map(|e| e.id.to_string());
        Ok(Response::new(ListAuditEventsResponse {
            total_size: i32::try_from(listed.total).unwrap_or(i32::MAX),
            next_page_token: listing::next_page_token(listed.has_more, cursor.as_deref()),
            events: listed.items.into_iter().map(audit_to_proto).collect(),
        }))
    }
}
