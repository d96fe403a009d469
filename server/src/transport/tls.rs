//! TLS for the gRPC listener: the rustls server configuration built from PEM files (certificate
//! chain, private key, optional client CA for mTLS), rebuilt when the files change (cert-manager
//! rotates them in place, often by a symlink swap), and the verified client certificate read as
//! a `ClientCert`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use x509_parser::asn1_rs::ToDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};
use zeroize::Zeroizing;

use super::ClientCert;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: String },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Where the server's certificate chain, its key and the optional client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The files' content as read at one moment.
struct Contents {
    cert: Vec<u8>,
    key: Zeroizing<Vec<u8>>,
    client_ca: Option<Vec<u8>>,
}

impl Contents {
    async fn read(files: &TlsFiles) -> Result<Contents, TlsError> {
        async fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
            tokio::fs::read(path).await.map_err(|source| TlsError::Read { path: path.display().to_string(), source })
        }
        Ok(Contents {
            cert: read(&files.cert).await?,
            key: Zeroizing::new(read(&files.key).await?),
            client_ca: match &files.client_ca {
                Some(path) => Some(read(path).await?),
                None => None,
            },
        })
    }

    /// Tells one content from the next without keeping a copy of the key around.
    fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [Some(&self.cert[..]), Some(&self.key[..]), self.client_ca.as_deref()] {
            let part = part.unwrap_or_default();
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: display(path), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: display(path) });
    }
    Ok(certs)
}

/// The server configuration for `contents` (ring provider, TLS 1.2 and 1.3, ALPN h2). With a
/// client CA, a presented client certificate must chain to it; clients without one are still
/// accepted, since they may authenticate with an API token instead.
fn server_config(contents: &Contents, files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let invalid =
        |path: &Path, e: &dyn std::fmt::Display| TlsError::Invalid { path: display(path), message: e.to_string() };
    let chain = certificates(&contents.cert, &files.cert)?;
    // The PEM error names no content, so it cannot leak key material.
    let key = PrivateKeyDer::from_pem_slice(&contents.key)
        .map_err(|e| TlsError::Pem { path: display(&files.key), message: format!("no usable private key: {e}") })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&files.cert, &e))?;
    let builder = match (&contents.client_ca, &files.client_ca) {
        (Some(pem), Some(path)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(pem, path)? {
                roots.add(cert).map_err(|e| invalid(path, &e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| invalid(path, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            TlsError::KeyMismatch { cert: display(&files.cert), key: display(&files.key) }
        }
        other => invalid(&files.key, &other),
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The current server configuration, replaced when the files change. A connection takes the
/// configuration of the moment it is accepted and keeps it, so a reload never touches open
/// connections.
pub struct Reloading {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Reloading {
    /// Reads the files once; any problem is fatal here (at start), unlike on a reload.
    pub async fn load(files: TlsFiles) -> Result<(Arc<Reloading>, [u8; 32]), TlsError> {
        let contents = Contents::read(&files).await?;
        let config = server_config(&contents, &files)?;
        Ok((Arc::new(Reloading { files, current: RwLock::new(Arc::new(config)) }), contents.fingerprint()))
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Polls the files every `interval` until `shutdown`. New content that builds a valid
    /// configuration replaces the current one; content that does not (a half-written file, a
    /// key that does not match the certificate) leaves the old one serving, with one warning
    /// per distinct content.
    pub fn spawn_watch(
        self: Arc<Self>,
        loaded: [u8; 32],
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut seen: Result<[u8; 32], String> = Ok(loaded);
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                let (now, config) = match Contents::read(&self.files).await {
                    Ok(contents) => (Ok(contents.fingerprint()), Some(server_config(&contents, &self.files))),
                    Err(e) => (Err(e.to_string()), None),
                };
                if now == seen {
                    continue;
                }
                seen = now;
                match config {
                    Some(Ok(config)) => {
                        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate files changed; new connections use them");
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "TLS files changed but are not usable; still serving the previous certificate")
                    }
                    None => {
                        tracing::warn!(error = %seen.as_ref().err().map(String::as_str).unwrap_or_default(), "TLS files unreadable; still serving the previous certificate")
                    }
                }
            }
        })
    }
}

/// Subject (RFC 4514) and DNS, URI and e-mail SANs of a DER certificate.
pub fn client_cert(der: &[u8]) -> Result<ClientCert, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut sans = Vec::new();
    if let Some(ext) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => sans.push(s.to_string()),
                _ => {}
            }
        }
    }
    Ok(ClientCert { subject: rfc4514(cert.subject()), sans })
}

/// A distinguished name as RFC 4514 writes it, and as `openssl x509 -noout -subject -nameopt
/// RFC2253` prints it (so that is what an identities file can copy): the last RDN first, `,`
/// between RDNs, `+` inside one (in openssl's order, also reversed), special characters
/// escaped; attribute types without a short name as dotted OIDs.
pub fn rfc4514(name: &X509Name) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            let mut attrs: Vec<String> = rdn
                .iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let key = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.6" => "C",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "ST",
                        "2.5.4.9" => "STREET",
                        "2.5.4.10" => "O",
                        "2.5.4.11" => "OU",
                        "0.9.2342.19200300.100.1.25" => "DC",
                        "0.9.2342.19200300.100.1.1" => "UID",
                        "1.2.840.113549.1.9.1" => "emailAddress",
                        _ => oid.as_str(),
                    };
                    let value = match attr.as_str() {
                        Ok(s) => escape(s),
                        // Not a string type: the DER value in hex, as RFC 4514 prescribes.
                        Err(_) => format!("#{}", hex::encode(attr.attr_value().to_der_vec().unwrap_or_default())),
                    };
                    format!("{key}={value}")
                })
                .collect();
            attrs.reverse();
            attrs.join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl req -x509 -multivalue-rdn -subj '/DC=org/DC=example/O=Example, Inc./OU=ops+CN=net box/emailAddress=a@example.org'
    /// -addext 'subjectAltName=DNS:netbox.example.org,URI:spiffe://example.org/netbox,email:ops@example.org,IP:10.0.0.1'`
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIICsTCCAligAwIBAgIUP6HpHGCaZW3GZEPmxEXYc3C41oowCgYIKoZIzj0EAwIw\ngYIxEzARBgoJkiaJk/IsZAEZFgNvcmcxFzAVBgoJkiaJk/IsZAEZFgdleGFtcGxl\nMRYwFAYDVQQKDA1FeGFtcGxlLCBJbmMuMRwwCgYDVQQLDANvcHMwDgYDVQQDDAdu\nZXQgYm94MRwwGgYJKoZIhvcNAQkBFg1hQGV4YW1wbGUub3JnMCAXDTI2MTIwMTIx\nMzcxNFoYDzIxMjYxMTA3MjEzNzE0WjCBgjETMBEGCgmSJomT8ixkARkWA29yZzEX\nMBUGCgmSJomT8ixkARkWB2V4YW1wbGUxFjAUBgNVBAoMDUV4YW1wbGUsIEluYy4x\nHDAKBgNVBAsMA29wczAOBgNVBAMMB25ldCBib3gxHDAaBgkqhkiG9w0BCQEWDWFA\nZXhhbXBsZS5vcmcwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARgd+FXXRO9Oyza\n5HkA9Zcqn114BYoNz/Ir8gIrpe6GvtnPsKrM1rFnzROSF2MjwEGnh6PWQC0Y78+d\n8NmRYJFHo4GnMIGkMB0GA1UdDgQWBBQePmfcGSqq5EIij2jZViwIXEdm0jAfBgNV\nHSMEGDAWgBQePmfcGSqq5EIij2jZViwIXEdm0jAPBgNVHRMBAf8EBTADAQH/MFEG\nA1UdEQRKMEiCEm5ldGJveC5leGFtcGxlLm9yZ4Ybc3BpZmZlOi8vZXhhbXBsZS5v\ncmcvbmV0Ym94gQ9vcHNAZXhhbXBsZS5vcmeHBAoAAAEwCgYIKoZIzj0EAwIDRwAw\nRAIgdIzfY2UerGbLF9vt9VVWrO77LNxPRu+SZ/Yc05limj0CIB7QCd8P93PkmjmS\nd8jUtSOpJyhhyxr0CyMNjhLIBlkY\n-----END CERTIFICATE-----";

    #[test]
    fn client_cert_reads_subject_as_openssl_prints_it_and_sans() {
        let der = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
        let cert = client_cert(&der).unwrap();
        // openssl x509 -noout -subject -nameopt RFC2253
        assert_eq!(cert.subject, "emailAddress=a@example.org,CN=net box+OU=ops,O=Example\\, Inc.,DC=example,DC=org");
        // IP SANs are not names.
        assert_eq!(cert.sans, ["netbox.example.org", "spiffe://example.org/netbox", "ops@example.org"]);
        assert!(client_cert(b"not a certificate").is_err());
    }

    #[test]
    fn config_errors_name_the_file() {
        let files = TlsFiles {
            cert: "/etc/tls/tls.crt".into(),
            key: "/etc/tls/tls.key".into(),
            client_ca: Some("/etc/tls/ca.crt".into()),
        };
        let contents = |cert: &str, key: &str, ca: &str| Contents {
            cert: cert.into(),
            key: Zeroizing::new(key.as_bytes().to_vec()),
            client_ca: Some(ca.into()),
        };
        let error = |c: Contents| server_config(&c, &files).unwrap_err().to_string();
        assert_eq!(error(contents("", "", "")), "/etc/tls/tls.crt: no PEM certificate in it");
        // A certificate where the key should be: no key, and nothing of the file in the message.
        let e = error(contents(CERT, CERT, CERT));
        assert!(e.starts_with("/etc/tls/tls.key: no usable private key") && !e.contains("MII"), "{e}");
        assert_eq!(
            Contents { client_ca: None, ..contents(CERT, "k", "") }.fingerprint(),
            Contents { client_ca: None, ..contents(CERT, "k", "") }.fingerprint()
        );
        assert_ne!(contents(CERT, "k", "").fingerprint(), contents(CERT, "k2", "").fingerprint());
        // The same bytes split differently between the files are another content.
        assert_ne!(contents("ab", "c", "").fingerprint(), contents("a", "bc", "").fingerprint());
    }

    #[test]
    fn escapes_rfc4514_specials() {
        assert_eq!(escape("netbox"), "netbox");
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("a\"b<c>;\\"), "a\\\"b\\<c\\>\\;\\\\");
        assert_eq!(escape("a#b c"), "a#b c");
    }
}
