//! RepositoryService.

use tonic::{Request, Response, Status};
use tracing::info;
use uuid::Uuid;

use fabricsync_core::vocab as v;

use super::error::{ApiError, Violations};
use super::{check_etag, etag, listing, mask_paths, parse_id, validate, AppState};
use crate::convert::{self, AUTH_TYPES, CONNECTION_STATUSES, PROVIDERS};
use crate::crypto::{self, Secret};
use crate::db::repositories::{self as store, RepositoryFilter, RepositoryRow};
use crate::db::DbError;
use crate::git::Endpoint;
use crate::outbound::{Outbound, Refused};
use crate::proto::repository_auth::Method;
use crate::proto::repository_service_server::RepositoryService;
use crate::proto::*;
use crate::text::quote;

pub struct RepositoryApi {
    state: AppState,
}

impl RepositoryApi {
    pub fn new(state: AppState) -> Self {
        RepositoryApi { state }
    }
}

const UPDATABLE: &[&str] = &["name", "description", "url", "provider", "auth", "webhook_secret"];
const FILTERS: &[&str] = &["name", "provider", "auth_type", "connection_status"];
const DEFAULT_TOKEN_USER: &str = "x-access-token";

/// Validated credentials, ready to store: the secret is sealed by the caller with the row's id.
#[derive(Debug)]
pub(crate) struct AuthInput {
    pub auth_type: AuthType,
    pub username: Option<String>,
    pub known_hosts: Option<String>,
    pub secret: Option<Secret>,
}

/// Checks a RepositoryAuth from a request (field paths under `field`); unset means anonymous.
pub(crate) fn auth_input(auth: Option<&RepositoryAuth>, field: &str, v: &mut Violations) -> AuthInput {
    let none = AuthInput { auth_type: AuthType::None, username: None, known_hosts: None, secret: None };
    let Some(auth) = auth else { return none };
    // A message without its oneof set is a client bug (or a newer method we do not know), not
    // a request for anonymous access.
    let Some(method) = auth.method.as_ref() else {
        v.add(field, "must set one method: none, token, basic or ssh_key");
        return none;
    };
    match method {
        Method::None(_) => none,
        Method::Token(t) => {
            v.check(validate::secret(&t.token, validate::MAX_TOKEN), &format!("{field}.token.token"));
            v.check(validate::max_len(&t.username, 256), &format!("{field}.token.username"));
            let username = if t.username.is_empty() { DEFAULT_TOKEN_USER.to_string() } else { t.username.clone() };
            AuthInput {
                auth_type: AuthType::Token,
                username: Some(username),
                known_hosts: None,
                secret: Some(Secret::new(t.token.clone())),
            }
        }
        Method::Basic(b) => {
            if b.username.is_empty() {
                v.add(format!("{field}.basic.username"), "is required");
            }
            v.check(validate::max_len(&b.username, 256), &format!("{field}.basic.username"));
            v.check(validate::secret(&b.password, validate::MAX_TOKEN), &format!("{field}.basic.password"));
            AuthInput {
                auth_type: AuthType::Basic,
                username: Some(b.username.clone()),
                known_hosts: None,
                secret: Some(Secret::new(b.password.clone())),
            }
        }
        Method::SshKey(k) => {
            v.check(validate::ssh_private_key(&k.private_key), &format!("{field}.ssh_key.private_key"));
            v.check(
                validate::max_len(&k.known_hosts, validate::MAX_KNOWN_HOSTS),
                &format!("{field}.ssh_key.known_hosts"),
            );
            let known_hosts = (!k.known_hosts.trim().is_empty()).then(|| k.known_hosts.clone());
            AuthInput {
                auth_type: AuthType::SshKey,
                username: None,
                known_hosts,
                secret: Some(Secret::new(k.private_key.clone())),
            }
        }
    }
}

fn is_ssh_url(url: &str) -> bool {
    url.starts_with("ssh://") || !url.contains("://")
}

/// Token and basic credentials travel over HTTP(S); an SSH key only over SSH.
fn check_auth_matches_url(auth_type: v::AuthType, url: &str, violations: &mut Violations) {
    let http = url.starts_with("https://") || url.starts_with("http://");
    match auth_type {
        v::AuthType::Token | v::AuthType::Basic if !http => {
            violations.add("auth", format!("{auth_type} credentials need an https:// URL"))
        }
        v::AuthType::SshKey if !is_ssh_url(url) => {
            violations.add("auth", "an SSH key needs an ssh:// or user@host:path URL")
        }
        _ => {}
    }
}

fn provider_word(value: i32, violations: &mut Violations) -> v::Provider {
    match Provider::try_from(value) {
        Ok(p) => PROVIDERS.domain(p).unwrap_or(v::Provider::Generic),
        Err(_) => {
            violations.add("repository.provider", format!("unknown value {value}"));
            v::Provider::Generic
        }
    }
}

/// Refuses, before anything is stored, a URL the outbound policy already rules out: file:// when
/// not enabled or inside the data directory, a literal or resolved address that is refused.
/// What cannot be told yet (a path that does not exist, a name that does not resolve) is checked
/// again at connect time, where every outbound connection is.
async fn check_reachable(outbound: &Outbound, url: &str) -> Result<(), ApiError> {
    let refused = match crate::git::endpoint(url) {
        Some(Endpoint::File(path)) => match outbound.repository_path(&path) {
            Ok(_) | Err(Refused::Unreadable) => None,
            Err(refused) => Some(refused),
        },
        Some(Endpoint::Host { host, port }) => outbound.precheck(&host, port).await.err(),
        None => None,
    };
    refused.map_or(Ok(()), |r| Err(ApiError::invalid("repository.url", r.to_string())))
}

fn check_fields(r: &Repository, v: &mut Violations) {
    v.check(validate::dns1123_label(&r.name), "repository.name");
    v.check(validate::max_len(&r.description, validate::MAX_DESCRIPTION), "repository.description");
    v.check(validate::git_url(&r.url), "repository.url");
}

/// A webhook secret as given: empty (none), or 16 to 256 printable ASCII characters without
/// spaces (what every forge's settings page accepts and a header can carry).
fn webhook_secret(value: &str, field: &str, v: &mut Violations) -> Option<Secret> {
    if value.is_empty() {
        return None;
    }
    if !(16..=256).contains(&value.len()) {
        v.add(field, "must be 16 to 256 characters long");
    } else if !value.bytes().all(|b| b.is_ascii_graphic()) {
        v.add(field, "must be printable ASCII without spaces");
    }
    Some(Secret::new(value))
}

/// Stores the webhook secret into `row`, sealed and bound to the row's id (None removes it).
fn set_webhook_secret(row: &mut RepositoryRow, secret: Option<Secret>, keyring: &crypto::Keyring) {
    let sealed = secret.map(|s| keyring.seal_secret(&s, &crypto::repository_webhook_context(row.id)));
    row.webhook_secret_key_id = sealed.as_ref().map(|s| s.key_id.clone());
    row.webhook_secret_sealed = sealed.map(|s| s.blob);
}

/// Stores validated credentials into `row`, sealing the secret bound to the row's id.
fn set_auth(row: &mut RepositoryRow, auth: AuthInput, keyring: &crypto::Keyring) {
    row.auth_type = AUTH_TYPES.domain(auth.auth_type).unwrap_or(v::AuthType::None);
    // SSH usernames come from the URL.
    row.auth_username = auth.username;
    row.ssh_known_hosts = auth.known_hosts;
    let sealed = auth.secret.map(|s| keyring.seal_secret(&s, &crypto::repository_secret_context(row.id)));
    row.secret_key_id = sealed.as_ref().map(|s| s.key_id.clone());
    row.secret_sealed = sealed.map(|s| s.blob);
}

pub(crate) fn to_proto(row: &RepositoryRow) -> Repository {
    let username = match row.auth_type {
        v::AuthType::SshKey => ssh_user(&row.url).unwrap_or_default(),
        _ => row.auth_username.clone().unwrap_or_default(),
    };
    Repository {
        id: row.id.to_string(),
        name: row.name.clone(),
        description: row.description.clone(),
        url: row.url.clone(),
        provider: crate::convert::proto_of(&PROVIDERS, row.provider) as i32,
        auth: Some(RepositoryAuthInfo {
            r#type: crate::convert::proto_of(&AUTH_TYPES, row.auth_type) as i32,
            username,
            has_secret: row.secret_sealed.is_some(),
            has_known_hosts: row.ssh_known_hosts.is_some(),
        }),
        connection_status: crate::convert::proto_of(&CONNECTION_STATUSES, row.connection_status) as i32,
        last_validated: convert::opt_timestamp(row.last_validated),
        validation_error: row.validation_error.clone().unwrap_or_default(),
        create_time: Some(convert::timestamp(row.created_at)),
        update_time: Some(convert::timestamp(row.updated_at)),
        etag: etag(row.version),
        has_webhook_secret: row.webhook_secret_sealed.is_some(),
    }
}

fn ssh_user(url: &str) -> Option<String> {
    let rest = url.strip_prefix("ssh://").unwrap_or(url);
    let (user, _) = rest.split_once('@')?;
    (!user.contains('/') && !user.contains(':')).then(|| user.to_string())
}

fn name_taken(name: &str) -> impl FnOnce(DbError) -> ApiError + '_ {
    move |e| match e {
        DbError::UniqueViolation(_) => {
            ApiError::AlreadyExists(format!("a repository named {} already exists", quote(name)))
        }
        e => e.into(),
    }
}

async fn load(state: &AppState, id: Uuid) -> Result<RepositoryRow, ApiError> {
    let mut conn = state.conn().await?;
    store::get(&mut conn, id).await?.ok_or_else(|| ApiError::NotFound { kind: "repository", id: id.to_string() })
}

#[tonic::async_trait]
impl RepositoryService for RepositoryApi {
    async fn create_repository(
        &self,
        request: Request<CreateRepositoryRequest>,
    ) -> Result<Response<CreateRepositoryResponse>, Status> {
        let req = request.into_inner();
        let repository = req.repository.ok_or_else(|| ApiError::invalid("repository", "is required"))?;
        let mut v = Violations::default();
        check_fields(&repository, &mut v);
        let provider = provider_word(repository.provider, &mut v);
        let auth = auth_input(req.auth.as_ref(), "auth", &mut v);
        let hook = webhook_secret(&req.webhook_secret, "webhook_secret", &mut v);
        check_auth_matches_url(AUTH_TYPES.domain(auth.auth_type).unwrap_or(v::AuthType::None), &repository.url, &mut v);
        v.into_result()?;
        check_reachable(&self.state.settings.outbound, &repository.url).await?;

        let now = crate::db::now();
        let mut row = RepositoryRow {
            id: Uuid::new_v4(),
            name: repository.name,
            description: repository.description,
            url: repository.url,
            provider,
            auth_type: v::AuthType::None,
            auth_username: None,
            ssh_known_hosts: None,
            secret_sealed: None,
            secret_key_id: None,
            webhook_secret_sealed: None,
            webhook_secret_key_id: None,
            connection_status: v::ConnectionStatus::Unknown,
            last_validated: None,
            validation_error: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        set_auth(&mut row, auth, &self.state.keyring);
        set_webhook_secret(&mut row, hook, &self.state.keyring);
        let mut conn = self.state.conn().await?;
        store::insert(&mut conn, &row).await.map_err(name_taken(&row.name))?;
        info!(repository_id = %row.id, name = %row.name, auth_type = %row.auth_type, "repository created");
        Ok(Response::new(CreateRepositoryResponse { repository: Some(to_proto(&row)) }))
    }

    async fn get_repository(
        &self,
        request: Request<GetRepositoryRequest>,
    ) -> Result<Response<GetRepositoryResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let row = load(&self.state, id).await?;
        Ok(Response::new(GetRepositoryResponse { repository: Some(to_proto(&row)) }))
    }

    async fn list_repositories(
        &self,
        request: Request<ListRepositoriesRequest>,
    ) -> Result<Response<ListRepositoriesResponse>, Status> {
        let scope = super::scope_patterns(&request)?;
        let req = request.into_inner();
        let page = listing::page(req.page_size, &req.page_token)?;
        let terms = listing::filter(&req.filter, FILTERS)?;
        let filter = RepositoryFilter {
            name: terms.get("name").cloned(),
            provider: terms.get("provider").map(|w| listing::word_filter::<v::Provider>("provider", w)).transpose()?,
            auth_type: terms
                .get("auth_type")
                .map(|w| listing::word_filter::<v::AuthType>("auth_type", w))
                .transpose()?,
            connection_status: terms
                .get("connection_status")
                .map(|w| listing::word_filter::<v::ConnectionStatus>("connection_status", w))
                .transpose()?,
            scope,
        };
        let mut conn = self.state.conn().await?;
        let listed = store::list(&mut conn, &filter, &page).await.map_err(ApiError::from)?;
        Ok(Response::new(ListRepositoriesResponse {
            next_page_token: listing::next_page_token(listed.has_more, listed.items.last().map(|r| r.name.as_str())),
            repositories: listed.items.iter().map(to_proto).collect(),
            total_size: listed.total as i32,
        }))
    }

    async fn update_repository(
        &self,
        request: Request<UpdateRepositoryRequest>,
    ) -> Result<Response<UpdateRepositoryResponse>, Status> {
        let req = request.into_inner();
        let input = req.repository.ok_or_else(|| ApiError::invalid("repository", "is required"))?;
        let id = parse_id("repository.id", &input.id)?;
        let paths = mask_paths(req.update_mask.as_ref(), UPDATABLE)?;
        let current = load(&self.state, id).await?;
        check_etag(&req.etag, current.version, "repository")?;

        let mut row = current.clone();
        let mut v = Violations::default();
        let mut auth = None;
        let mut hook = None;
        for path in &paths {
            match path.as_str() {
                "name" => {
                    v.check(validate::dns1123_label(&input.name), "repository.name");
                    row.name = input.name.clone();
                }
                "description" => {
                    v.check(validate::max_len(&input.description, validate::MAX_DESCRIPTION), "repository.description");
                    row.description = input.description.clone();
                }
                "url" => {
                    v.check(validate::git_url(&input.url), "repository.url");
                    row.url = input.url.clone();
                }
                "provider" => row.provider = provider_word(input.provider, &mut v),
                "auth" => {
                    if req.auth.is_none() {
                        v.add("auth", "is required when update_mask names auth");
                    }
                    auth = Some(auth_input(req.auth.as_ref(), "auth", &mut v));
                }
                "webhook_secret" => hook = Some(webhook_secret(&req.webhook_secret, "webhook_secret", &mut v)),
                _ => {}
            }
        }
        // Credentials are bound to the repository they were given for (as Argo CD binds them to
        // their URL): pointed elsewhere without new ones, the stored ones are dropped.
        let credentials_cleared = auth.is_none()
            && current.auth_type != v::AuthType::None
            && !crate::git::same_repository(&current.url, &row.url);
        if credentials_cleared {
            auth = Some(AuthInput { auth_type: AuthType::None, username: None, known_hosts: None, secret: None });
        }
        let auth_type = auth.as_ref().and_then(|a| AUTH_TYPES.domain(a.auth_type)).unwrap_or(row.auth_type);
        check_auth_matches_url(auth_type, &row.url, &mut v);
        v.into_result()?;
        if row.url != current.url {
            check_reachable(&self.state.settings.outbound, &row.url).await?;
        }
        if let Some(auth) = auth {
            set_auth(&mut row, auth, &self.state.keyring);
        }
        if let Some(hook) = hook {
            set_webhook_secret(&mut row, hook, &self.state.keyring);
        }
        if row.url != current.url || row.secret_sealed != current.secret_sealed || row.auth_type != current.auth_type {
            // Where or how we connect changed: the last test result no longer applies.
            row.connection_status = v::ConnectionStatus::Unknown;
            row.validation_error = None;
            row.last_validated = None;
        }
        let mut conn = self.state.conn().await?;
        if !store::update(&mut conn, &row, current.version).await.map_err(name_taken(&row.name))? {
            return Err(ApiError::stale_etag("repository").into());
        }
        let updated = load(&self.state, id).await?;
        info!(repository_id = %id, fields = ?paths, credentials_cleared, "repository updated");
        Ok(Response::new(UpdateRepositoryResponse { repository: Some(to_proto(&updated)), credentials_cleared }))
    }

    async fn delete_repository(
        &self,
        request: Request<DeleteRepositoryRequest>,
    ) -> Result<Response<DeleteRepositoryResponse>, Status> {
        let req = request.into_inner();
        let id = parse_id("id", &req.id)?;
        let current = load(&self.state, id).await?;
        check_etag(&req.etag, current.version, "repository")?;
        let mut conn = self.state.conn().await?;
        let in_use = |names: Vec<String>| {
            ApiError::FailedPrecondition(format!(
                "repository {:?} is used by fabric(s) {}; delete them or point them at another repository first",
                current.name,
                names.join(", ")
            ))
        };
        let fabrics = store::referencing_fabrics(&mut conn, id).await.map_err(ApiError::from)?;
        if !fabrics.is_empty() {
            return Err(in_use(fabrics).into());
        }
        let expected = (!req.etag.is_empty()).then_some(current.version);
        match store::delete(&mut conn, id, expected).await {
            Ok(0) => return Err(ApiError::stale_etag("repository").into()),
            Ok(_) => {}
            // A fabric was created for it in the meantime.
            Err(DbError::ForeignKeyViolation(_)) => {
                let fabrics = store::referencing_fabrics(&mut conn, id).await.map_err(ApiError::from)?;
                return Err(in_use(fabrics).into());
            }
            Err(e) => return Err(ApiError::from(e).into()),
        }
        info!(repository_id = %id, "repository deleted");
        Ok(Response::new(DeleteRepositoryResponse {}))
    }

    async fn test_repository_connection(
        &self,
        request: Request<TestRepositoryConnectionRequest>,
    ) -> Result<Response<TestRepositoryConnectionResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        let row = load(&self.state, id).await?;
        let auth = crate::credentials::git_auth(&row, &self.state.keyring).map_err(ApiError::from)?;
        let url = row.url.clone();
        let timeout = self.state.settings.git_timeout;
        let outbound = self.state.settings.outbound.clone();
        let outcome = tokio::task::spawn_blocking(move || crate::git::probe(&outbound, &url, &auth, timeout))
            .await
            .map_err(|e| ApiError::Internal(format!("connection test task: {e}")))?;
        let now = crate::db::now();
        let mut response = TestRepositoryConnectionResponse::default();
        let (status, error) = match &outcome {
            Ok(report) => {
                response.reachable = true;
                response.default_branch = report.default_branch.clone().unwrap_or_default();
                response.ref_count = report.ref_count as i32;
                response.latency = prost_types::Duration::try_from(report.latency).ok();
                (v::ConnectionStatus::Reachable, None)
            }
            Err(e) => {
                response.failure = failure(e.kind()) as i32;
                response.message = e.to_string();
                (v::ConnectionStatus::Failed, Some(e.to_string()))
            }
        };
        info!(repository_id = %id, %status, reason = ?outcome.as_ref().err().map(|e| e.kind()), "repository connection tested");
        let mut conn = self.state.conn().await?;
        store::record_validation(&mut conn, id, status, error.as_deref(), now).await.map_err(ApiError::from)?;
        response.repository = Some(to_proto(&load(&self.state, id).await?));
        Ok(Response::new(response))
    }
}

fn failure(kind: crate::git::FailureKind) -> ConnectionFailure {
    use crate::git::FailureKind as K;
    match kind {
        K::Dns => ConnectionFailure::Dns,
        K::ConnectionRefused => ConnectionFailure::ConnectionRefused,
        K::Timeout => ConnectionFailure::Timeout,
        K::Tls => ConnectionFailure::Tls,
        K::Authentication => ConnectionFailure::Authentication,
        K::NotARepository => ConnectionFailure::NotARepository,
        K::Protocol => ConnectionFailure::Protocol,
        K::RemoteFailed => ConnectionFailure::RemoteFailed,
        K::HostKey => ConnectionFailure::HostKey,
        _ => ConnectionFailure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_inputs_are_checked_without_echoing_secrets() {
        let mut v = Violations::default();
        let auth = RepositoryAuth {
            method: Some(Method::SshKey(SshKeyAuth { private_key: "hunter2".into(), known_hosts: String::new() })),
        };
        auth_input(Some(&auth), "auth", &mut v);
        let err = v.into_result().unwrap_err().to_string();
        assert!(err.contains("auth.ssh_key.private_key"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let mut v = Violations::default();
        let token =
            RepositoryAuth { method: Some(Method::Token(TokenAuth { token: "t0k".into(), username: String::new() })) };
        let input = auth_input(Some(&token), "auth", &mut v);
        assert!(v.into_result().is_ok());
        assert_eq!(input.username.as_deref(), Some(DEFAULT_TOKEN_USER));
        assert_eq!(input.secret.unwrap().expose(), "t0k");
    }

    #[test]
    fn an_auth_without_a_method_is_invalid() {
        let mut v = Violations::default();
        let input = auth_input(Some(&RepositoryAuth { method: None }), "auth", &mut v);
        assert_eq!(input.auth_type, AuthType::None);
        let err = v.into_result().unwrap_err().to_string();
        assert!(err.contains("auth: must set one method"), "{err}");
        let mut v = Violations::default();
        auth_input(None, "auth", &mut v);
        assert!(v.into_result().is_ok(), "no auth at all is anonymous");
    }

    #[test]
    fn auth_must_match_the_url_scheme() {
        let mut v = Violations::default();
        check_auth_matches_url(v::AuthType::Token, "git@host:org/repo.git", &mut v);
        check_auth_matches_url(v::AuthType::SshKey, "https://host/repo.git", &mut v);
        check_auth_matches_url(v::AuthType::SshKey, "ssh://git@host/repo.git", &mut v);
        check_auth_matches_url(v::AuthType::None, "file:///srv/repo", &mut v);
        let err = v.into_result().unwrap_err().to_string();
        assert_eq!(err.matches("auth:").count(), 2, "{err}");
    }

    #[test]
    fn ssh_users_come_from_the_url() {
        assert_eq!(ssh_user("ssh://git@host/r.git").as_deref(), Some("git"));
        assert_eq!(ssh_user("deploy@host:r.git").as_deref(), Some("deploy"));
        assert_eq!(ssh_user("ssh://host/r.git"), None);
    }
}
