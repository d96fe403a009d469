//! Push deliveries as the forges send them, to `serve --webhook-listen`.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The webhook secret the tests give their repositories.
pub const SECRET: &str = "whsec-0123456789abcdef";

/// The hex HMAC-SHA256 of `body` under SECRET (GitHub's and Gitea's signature).
pub fn hmac_hex(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// GitHub's headers of a push delivery of `body`.
pub fn github(body: &str) -> Vec<(&'static str, String)> {
    vec![("X-GitHub-Event", "push".into()), ("X-Hub-Signature-256", format!("sha256={}", hmac_hex(body)))]
}

/// A push event's body (the fields fabricsync reads, and one it does not).
pub fn push(git_ref: &str, after: &str) -> String {
    json!({ "ref": git_ref, "after": after, "repository": { "full_name": "lab/fabric" } }).to_string()
}

/// POSTs a delivery to the receiver on `port`; the HTTP status and the JSON answer.
pub async fn deliver(port: u16, path: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("http://127.0.0.1:{port}{path}")).body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("the webhook receiver answers");
    let code = response.status().as_u16();
    (code, serde_json::from_str(&response.text().await.expect("a body")).expect("a JSON answer"))
}
