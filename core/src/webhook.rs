//! Git push webhooks: which forge sent a delivery, whether it proves the repository's secret,
//! and which branch it moved. Headers and body in, a verdict out; the HTTP listener, the
//! secret's storage and the runs queued are the server's.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The forges whose push deliveries are understood, each with its own proof of the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// `X-GitHub-Event`; `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    GitHub,
    /// `X-Gitlab-Event`; `X-Gitlab-Token: <the secret itself>` (GitLab signs nothing).
    GitLab,
    /// `X-Gitea-Event`; `X-Gitea-Signature: <hex HMAC-SHA256 of the body>`. Gitea also sends
    /// GitHub's headers, so it is told apart first.
    Gitea,
}

impl Forge {
    pub fn word(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
            Forge::Gitea => "gitea",
        }
    }

    /// The header carrying the proof of the secret.
    pub fn proof_header(self) -> &'static str {
        match self {
            Forge::GitHub => "x-hub-signature-256",
            Forge::GitLab => "x-gitlab-token",
            Forge::Gitea => "x-gitea-signature",
        }
    }

    fn event_header(self) -> &'static str {
        match self {
            Forge::GitHub => "x-github-event",
            Forge::GitLab => "x-gitlab-event",
            Forge::Gitea => "x-gitea-event",
        }
    }
}

/// Why a delivery is refused. The messages name headers and fields, never the secret or the
/// proof sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// None of X-Gitea-Event, X-Gitlab-Event, X-GitHub-Event.
    UnknownForge,
    /// The forge's proof header is absent.
    Unsigned(Forge),
    /// The proof does not match the repository's secret.
    BadSignature(Forge),
    /// A push whose body is not the forge's JSON (`ref` missing, not JSON).
    Payload(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::UnknownForge => {
                write!(
                    f,
                    "not a GitHub, GitLab or Gitea delivery: no X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event header"
                )
            }
            Rejection::Unsigned(forge) => {
                write!(f, "{} delivery without its {} header", forge.word(), forge.proof_header())
            }
            Rejection::BadSignature(forge) => {
                write!(
                    f,
                    "{} delivery whose {} does not match the repository's webhook secret",
                    forge.word(),
                    forge.proof_header()
                )
            }
            Rejection::Payload(why) => write!(f, "push payload: {why}"),
        }
    }
}

impl std::error::Error for Rejection {}

/// A delivery as received: the forge, its event name and its proof, and the raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub forge: Forge,
    pub event: &'a str,
    proof: &'a str,
    body: &'a [u8],
}

/// What a verified delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A push to `git_ref` (`refs/heads/main`, `refs/tags/v1`), now at `after`.
    Push { git_ref: String, after: String },
    /// The forge checks that the hook works (GitHub's and Gitea's `ping`).
    Ping,
    /// Any other event (issues, merge requests, tag pushes on GitLab): accepted, ignored.
    Other,
}

/// Reads a delivery's forge and proof; `header` looks a header up by its lower-case name.
pub fn delivery<'a>(header: impl Fn(&str) -> Option<&'a str>, body: &'a [u8]) -> Result<Delivery<'a>, Rejection> {
    let forge = [Forge::Gitea, Forge::GitLab, Forge::GitHub]
        .into_iter()
        .find(|f| header(f.event_header()).is_some())
        .ok_or(Rejection::UnknownForge)?;
    let event = header(forge.event_header()).unwrap_or_default();
    let proof = header(forge.proof_header()).filter(|p| !p.is_empty()).ok_or(Rejection::Unsigned(forge))?;
    Ok(Delivery { forge, event, proof, body })
}

/// Checks the proof against `secret` in constant time.
pub fn verify(delivery: &Delivery, secret: &[u8]) -> Result<(), Rejection> {
    let bad = Rejection::BadSignature(delivery.forge);
    match delivery.forge {
        Forge::GitHub | Forge::Gitea => {
            let hex_mac = match delivery.forge {
                Forge::GitHub => delivery.proof.strip_prefix("sha256=").ok_or(bad.clone())?,
                _ => delivery.proof,
            };
            let given = hex::decode(hex_mac.trim()).map_err(|_| bad.clone())?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| bad.clone())?;
            mac.update(delivery.body);
            mac.verify_slice(&given).map_err(|_| bad)
        }
        // Compared as digests, so neither the length nor a prefix of the secret shows in timing.
        Forge::GitLab => {
            let (given, wanted) = (Sha256::digest(delivery.proof.as_bytes()), Sha256::digest(secret));
            let differ = given.iter().zip(wanted.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if differ == 0 {
                Ok(())
            } else {
                Err(bad)
            }
        }
    }
}

/// What a verified delivery asks for.
pub fn event(delivery: &Delivery) -> Result<Event, Rejection> {
    let push = match delivery.forge {
        Forge::GitHub | Forge::Gitea => match delivery.event {
            "push" => true,
            "ping" => return Ok(Event::Ping),
            _ => false,
        },
        Forge::GitLab => delivery.event == "Push Hook",
    };
    if !push {
        return Ok(Event::Other);
    }
    let body: serde_json::Value =
        serde_json::from_slice(delivery.body).map_err(|e| Rejection::Payload(format!("not JSON: {e}")))?;
    let text = |field: &str| body.get(field).and_then(serde_json::Value::as_str).map(str::to_string);
    let git_ref = text("ref").filter(|r| !r.is_empty()).ok_or(Rejection::Payload("no \"ref\" string".into()))?;
    Ok(Event::Push { git_ref, after: text("after").unwrap_or_default() })
}

/// Whether a push to `pushed` (a full ref, `refs/heads/main`) moves a fabric that follows
/// `fabric_ref` (`main`, `refs/heads/main`, a tag, a commit). Only the same branch or tag does.
pub fn moves(fabric_ref: &str, pushed: &str) -> bool {
    fabric_ref == pushed
        || pushed.strip_prefix("refs/heads/") == Some(fabric_ref)
        || pushed.strip_prefix("refs/tags/") == Some(fabric_ref)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a webhook secret of some length";
    const BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"0123abcd","repository":{"name":"fabric"}}"#;

    fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers<'a>(pairs: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn each_forge_proves_the_secret_its_own_way() {
        let github = [
            ("x-github-event", "push".to_string()),
            ("x-hub-signature-256", format!("sha256={}", hmac_hex(SECRET, BODY))),
        ];
        let gitlab =
            [("x-gitlab-event", "Push Hook".to_string()), ("x-gitlab-token", String::from_utf8_lossy(SECRET).into())];
        // Gitea sends GitHub's event header too, with its own signature.
        let gitea = [
            ("x-github-event", "push".to_string()),
            ("x-gitea-event", "push".to_string()),
            ("x-gitea-signature", hmac_hex(SECRET, BODY)),
        ];
        for (pairs, forge) in [(&github[..], Forge::GitHub), (&gitlab[..], Forge::GitLab), (&gitea[..], Forge::Gitea)] {
            let d = delivery(headers(pairs), BODY).expect("a delivery");
            assert_eq!(d.forge, forge);
            assert_eq!(verify(&d, SECRET), Ok(()), "{forge:?}");
            assert_eq!(verify(&d, b"another secret"), Err(Rejection::BadSignature(forge)), "{forge:?}");
            let push = Event::Push { git_ref: "refs/heads/main".into(), after: "0123abcd".into() };
            assert_eq!(event(&d), Ok(push));
        }
    }

    #[test]
    fn a_changed_body_or_a_malformed_signature_is_refused() {
        let signed = [
            ("x-github-event", "push".to_string()),
            ("x-hub-signature-256", format!("sha256={}", hmac_hex(SECRET, BODY))),
        ];
        let tampered = br#"{"ref":"refs/heads/evil","after":"0123abcd"}"#;
        let d = delivery(headers(&signed), tampered).expect("a delivery");
        assert_eq!(verify(&d, SECRET), Err(Rejection::BadSignature(Forge::GitHub)));
        for proof in ["", "sha256=zz", "sha1=00", &hmac_hex(SECRET, BODY)] {
            let pairs = [("x-github-event", "push".to_string()), ("x-hub-signature-256", proof.to_string())];
            let refused = delivery(headers(&pairs), BODY).and_then(|d| verify(&d, SECRET));
            assert!(
                matches!(refused, Err(Rejection::Unsigned(_) | Rejection::BadSignature(_))),
                "{proof}: {refused:?}"
            );
        }
        let unknown = [("x-bitbucket-event", "push".to_string())];
        assert_eq!(delivery(headers(&unknown), BODY), Err(Rejection::UnknownForge));
        let message = Rejection::BadSignature(Forge::GitLab).to_string();
        assert!(message.contains("x-gitlab-token") && !message.contains("secret of"), "{message}");
    }

    #[test]
    fn pings_and_other_events_are_not_pushes_and_a_push_needs_its_ref() {
        let event_of = |forge_header: &'static str, name: &str, body: &[u8]| {
            let pairs = [
                (forge_header, name.to_string()),
                ("x-hub-signature-256", "sha256=00".to_string()),
                ("x-gitlab-token", "t".to_string()),
            ];
            let d = delivery(headers(&pairs), body).expect("a delivery");
            event(&d)
        };
        assert_eq!(event_of("x-github-event", "ping", b"{}"), Ok(Event::Ping));
        assert_eq!(event_of("x-github-event", "issues", b"{}"), Ok(Event::Other));
        assert_eq!(event_of("x-gitlab-event", "Tag Push Hook", b"{}"), Ok(Event::Other));
        assert!(
            matches!(event_of("x-github-event", "push", b"{}"), Err(Rejection::Payload(m)) if m.contains("\"ref\""))
        );
        assert!(
            matches!(event_of("x-github-event", "push", b"<xml/>"), Err(Rejection::Payload(m)) if m.contains("not JSON"))
        );
    }

    #[test]
    fn a_push_moves_fabrics_on_that_branch_or_tag_only() {
        assert!(moves("main", "refs/heads/main"));
        assert!(moves("refs/heads/main", "refs/heads/main"));
        assert!(moves("v1", "refs/tags/v1"));
        assert!(!moves("main", "refs/heads/maintenance"));
        assert!(!moves("main", "refs/heads/feature/main"));
        assert!(!moves("0123abcd", "refs/heads/main"));
    }
}
