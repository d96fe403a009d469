//! The imperative shell of the binary: resolves the database and keys, then runs a subcommand.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use fabricsync_core::manifest::kinds::KindRegistry;
use tracing::info;

use crate::config::{Cli, Command, Common, ServeArgs, TokenCommand};
use crate::crypto::{self, Keyring, Sealed};
use crate::db;
use crate::embedded_pg::EmbeddedPostgres;
use crate::outbound::Outbound;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Generate { resources, out } = &cli.command {
        return generate(*resources, out);
    }
    // Refused before the database starts: a wrong listen setting should fail at once.
    if let Command::Serve(args) = &cli.command {
        if args.tls_cert.is_none() {
            crate::transport::check_plaintext(args.listen, args.insecure_plaintext)?;
            if let Some(webhooks) = args.webhook_listen {
                crate::transport::check_plaintext(webhooks, args.insecure_plaintext)?;
            }
        }
    }
    let (url, embedded) = database(&cli.common).await?;
    let result = match &cli.command {
        Command::Serve(args) => serve(&cli.common, args, &url).await,
        Command::Migrate => migrate(&url).await.map(|_| ()),
        Command::RotateKeys { add_key } => rotate_keys(&cli.common, add_key.as_deref(), &url).await,
        Command::Token { action } => token(&cli.common, action, &url).await,
        Command::Generate { .. } => Ok(()),
    };
    if let Some(pg) = embedded {
        pg.stop().await.context("stopping the embedded PostgreSQL")?;
    }
    result
}

/// DATABASE_URL when given, else the embedded private cluster in <data-dir>/postgres.
async fn database(common: &Common) -> anyhow::Result<(String, Option<EmbeddedPostgres>)> {
    if let Some(url) = &common.database_url {
        return Ok((url.clone(), None));
    }
    let dir = common.data_dir.join("postgres");
    info!(dir = %dir.display(), "no DATABASE_URL: using the embedded PostgreSQL");
    let pg = EmbeddedPostgres::start(&dir).await.context("starting the embedded PostgreSQL")?;
    db::ensure_database(&pg.url("postgres"), "fabricsync").await.context("creating database fabricsync")?;
    Ok((pg.url("fabricsync"), Some(pg)))
}

fn key_file(common: &Common) -> PathBuf {
    common.key_file.clone().unwrap_or_else(|| common.data_dir.join("encryption.keys"))
}

/// FABRICSYNC_ENCRYPTION_KEYS, else the key file; the default key file is generated on first use.
fn keyring(common: &Common) -> anyhow::Result<Keyring> {
    if let Some(keys) = &common.encryption_keys {
        return Keyring::parse(keys).context("FABRICSYNC_ENCRYPTION_KEYS");
    }
    let path = key_file(common);
    let keyring = match &common.key_file {
        Some(_) => Keyring::load(&path)?,
        None => Keyring::load_or_create(&path)?,
    };
    Ok(keyring)
}

async fn migrate(url: &str) -> anyhow::Result<usize> {
    let applied = db::migrate(url).await?;
    info!(applied, "database migrations applied");
    Ok(applied)
}

/// The CRD files (*.yaml, *.yml) of `dir`, by name, as (path, text).
fn crd_files(dir: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            Ok((p.display().to_string(), std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?))
        })
        .collect()
}

async fn serve(common: &Common, args: &ServeArgs, url: &str) -> anyhow::Result<()> {
    let keyring = Arc::new(keyring(common)?);
    let mut settings = crate::context::Settings::new(args, common, outbound(common, args)?);
    if let Some(dir) = &args.crds_dir {
        let files = crd_files(dir).map_err(|e| anyhow::anyhow!("--crds-dir: {e}"))?;
        let registry = KindRegistry::with_extra(&files).map_err(|e| anyhow::anyhow!("--crds-dir: {e}"))?;
        info!(files = files.len(), dir = %dir.display(), "extra CRDs loaded");
        // One registry for the life of the process, shared by every task.
        settings.kinds = Box::leak(Box::new(registry));
    }
    if let Some(path) = &args.client_cert_identities {
        let identities = crate::auth::certs::CertIdentities::load(path)?;
        info!(entries = identities.len(), file = %path.display(), "client certificate identities loaded");
        settings.client_cert_identities = Some(Arc::new(identities));
    }
    migrate(url).await?;
    let pool = db::pool(url, args.db_pool_size)?;
    let given = args.bootstrap_token.as_deref().map(crate::crypto::Secret::new);
    let mut conn = db::connect(&pool).await?;
    let pepper = crate::auth::manage::pepper(&mut conn, &keyring).await?;
    if let Some(path) = crate::auth::manage::bootstrap(&mut conn, &pepper, given.as_ref(), &common.data_dir).await? {
        info!(path = %path.display(), "no API token existed: an admin token was created and written to this file (mode 0600)");
    }
    drop(conn);
    crate::server::serve(settings, url, pool, keyring, pepper).await
}

/// `fabricsync token ...`: tokens straight in the database, for bootstrap and recovery.
async fn token(common: &Common, action: &TokenCommand, url: &str) -> anyhow::Result<()> {
    use crate::auth::manage::{self, TokenSpec};
    let keyring = keyring(common)?;
    migrate(url).await?;
    let mut conn = <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(url)
        .await
        .context("connecting to the database")?;
    match action {
        TokenCommand::Create { name, role, fabrics, expires, allowed_networks, description } => {
            let spec = TokenSpec {
                name: name.clone(),
                role: Some(*role),
                fabrics: fabrics.clone(),
                ttl: *expires,
                allowed_networks: allowed_networks.clone(),
                description: description.clone(),
            };
            let pepper = manage::pepper(&mut conn, &keyring).await?;
            let (row, value) =
                manage::create(&mut conn, &pepper, &spec, "cli").await.map_err(|e| anyhow::anyhow!("{e}"))?;
            info!(token = %row.name, role = %row.role, "API token created");
            println!("{}", value.expose());
        }
        TokenCommand::List { all } => {
            let mut page = db::Page { size: crate::api::listing::MAX_PAGE_SIZE, after: None };
            println!("{:<24} {:<9} {:<20} {:<26} {:<26} REVOKED", "NAME", "ROLE", "FABRICS", "EXPIRES", "LAST USED");
            loop {
                let listed = db::tokens::list(&mut conn, *all, &page).await?;
                let when =
                    |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or_else(|| "-".to_string(), |t| t.to_rfc3339());
                for row in &listed.items {
                    let fabrics =
                        if row.fabric_scope.is_empty() { "*".to_string() } else { row.fabric_scope.join(",") };
                    println!(
                        "{:<24} {:<9} {:<20} {:<26} {:<26} {}",
                        row.name,
                        row.role,
                        fabrics,
                        when(row.expires_at),
                        when(row.last_used_at),
                        when(row.revoked_at)
                    );
                }
                match (listed.has_more, listed.items.last()) {
                    (true, Some(last)) => page.after = Some(db::tokens::cursor(last)),
                    _ => break,
                }
            }
        }
        TokenCommand::Revoke { name } => match db::tokens::revoke(&mut conn, name).await? {
            Some(row) => info!(token = %row.name, "API token revoked"),
            None => anyhow::bail!("no active token named {name:?}"),
        },
    }
    Ok(())
}

/// The outbound policy from the flags. The embedded default on loopback (a local trial, as in the
/// README) reads local repositories without --allow-file-repositories.
fn outbound(common: &Common, args: &ServeArgs) -> anyhow::Result<Outbound> {
    let embedded_on_loopback = common.database_url.is_none() && args.listen.ip().is_loopback();
    if embedded_on_loopback && !args.allow_file_repositories {
        info!("embedded PostgreSQL on a loopback address: file:// repositories are allowed");
    }
    let allow_file = args.allow_file_repositories || embedded_on_loopback;
    Outbound::new(allow_file, args.allow_hosts.clone(), args.deny_hosts.clone(), &common.data_dir)
        .with_context(|| format!("--data-dir {}", common.data_dir.display()))
}

fn generate(resources: usize, out: &std::path::Path) -> anyhow::Result<()> {
    let files = fabricsync_core::manifest::generate::fabric(resources);
    for file in &files {
        let path = out.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &file.bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    info!(files = files.len(), out = %out.display(), "fabric generated");
    Ok(())
}

async fn rotate_keys(common: &Common, add_key: Option<&str>, url: &str) -> anyhow::Result<()> {
    if let Some(id) = add_key {
        let path = key_file(common);
        let existing = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let updated = format!("{}{existing}", Keyring::generate_key_line(id));
        Keyring::parse(&updated)?;
        std::fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))?;
        info!(key_id = id, "added a new primary key");
    }
    let keyring = keyring(common)?;
    migrate(url).await?;
    let mut conn = <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(url)
        .await
        .context("connecting to the database")?;
    let mut resealed = 0;
    for (id, slot, blob, key_id) in db::repositories::sealed_secrets(&mut conn).await? {
        let context = match slot {
            db::repositories::SecretSlot::Credentials => crypto::repository_secret_context(id),
            db::repositories::SecretSlot::Webhook => crypto::repository_webhook_context(id),
        };
        if let Some(new) = reseal(&keyring, Sealed { key_id, blob }, &context)? {
            db::repositories::store_sealed_secret(&mut conn, id, slot, &new.blob, &new.key_id).await?;
            resealed += 1;
        }
    }
    for (id, blob, key_id) in db::fabrics::sealed_tokens(&mut conn).await? {
        let context = crypto::fabric_token_context(id);
        if let Some(new) = reseal(&keyring, Sealed { key_id, blob }, &context)? {
            db::fabrics::store_sealed_token(&mut conn, id, &new.blob, &new.key_id).await?;
            resealed += 1;
        }
    }
    for (fabric_id, name, blob, key_id) in db::inventory::sealed_cluster_tokens(&mut conn).await? {
        let context = crypto::inventory_cluster_token_context(fabric_id, &name);
        if let Some(new) = reseal(&keyring, Sealed { key_id, blob }, &context)? {
            db::inventory::store_sealed_cluster_token(&mut conn, fabric_id, &name, &new.blob, &new.key_id).await?;
            resealed += 1;
        }
    }
    for (name, blob, key_id) in db::server_keys::all(&mut conn).await? {
        let context = crypto::server_key_context(&name);
        if let Some(new) = reseal(&keyring, Sealed { key_id, blob }, &context)? {
            db::server_keys::store(&mut conn, &name, &new.blob, &new.key_id).await?;
            resealed += 1;
        }
    }
    info!(resealed, primary = keyring.primary_key_id(), "secrets re-sealed with the primary key");
    Ok(())
}

fn reseal(keyring: &Keyring, sealed: Sealed, context: &str) -> anyhow::Result<Option<Sealed>> {
    if !keyring.is_stale(&sealed) {
        return Ok(None);
    }
    let plain = keyring.open(&sealed, context).with_context(|| format!("opening {context}"))?;
    Ok(Some(keyring.seal(&plain, context)))
}
