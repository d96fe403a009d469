//! List conventions shared by every List RPC: page size, opaque page tokens, and the
//! `field=value` filter grammar.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use fabricsync_core::vocab::Word;

use super::error::ApiError;
use crate::db::Page;
use crate::text::quote;

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;
const TOKEN_PREFIX: &str = "after:";
pub const MAX_FILTER: usize = 4096;

/// A filter value that must be one of a domain type's words; the error names the filter field
/// and the allowed words.
pub fn word_filter<W: Word>(field: &str, value: &str) -> Result<String, ApiError> {
    match W::parse(value) {
        Some(word) => Ok(word.word().to_string()),
        None => Err(ApiError::invalid("filter", format!("{field} must be one of {}", W::listing()))),
    }
}

/// page_size 0 means the default; larger than the maximum is clamped; negative is an error.
pub fn page(page_size: i32, page_token: &str) -> Result<Page, ApiError> {
    if page_size < 0 {
        return Err(ApiError::invalid("page_size", "must not be negative"));
    }
    let size = if page_size == 0 { DEFAULT_PAGE_SIZE } else { i64::from(page_size).min(MAX_PAGE_SIZE) };
    let after = if page_token.is_empty() {
        None
    } else {
        let bad = || ApiError::invalid("page_token", "is not a token returned by this list");
        let decoded = B64.decode(page_token).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        if text.contains('\0') {
            return Err(bad()); // never in a token we made; it would reach the query
        }
        Some(text.strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?.to_string())
    };
    Ok(Page { size, after })
}

/// The token of the page after the one ending with `last_name`.
pub fn next_page_token(has_more: bool, last_name: Option<&str>) -> String {
    match (has_more, last_name) {
        (true, Some(name)) => B64.encode(format!("{TOKEN_PREFIX}{name}")),
        _ => String::new(),
    }
}

/// Parses `field=value` terms separated by spaces (ANDed). Only `allowed` fields; each at most once.
pub fn filter(text: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    // Values go into queries: bounded, and no NUL (PostgreSQL text cannot hold one).
    super::validate::max_len(text, MAX_FILTER).map_err(|e| ApiError::invalid("filter", e))?;
    let mut terms = BTreeMap::new();
    for term in text.split_whitespace() {
        let Some((field, value)) = term.split_once('=') else {
            return Err(ApiError::invalid("filter", format!("term {} is not field=value", quote(term))));
        };
        if !allowed.contains(&field) {
            return Err(ApiError::invalid(
                "filter",
                format!("unknown field {}; allowed: {}", quote(field), allowed.join(", ")),
            ));
        }
        if value.is_empty() {
            return Err(ApiError::invalid("filter", format!("field {} has an empty value", quote(field))));
        }
        // `field=""` asks for the empty value (the fabric's own cluster: `cluster=""`).
        let value = if value == "\"\"" { "" } else { value };
        if terms.insert(field.to_string(), value.to_string()).is_some() {
            return Err(ApiError::invalid("filter", format!("field {} is given twice", quote(field))));
        }
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_and_tokens() {
        assert_eq!(page(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(page(10_000, "").unwrap().size, MAX_PAGE_SIZE);
        assert!(page(-1, "").is_err());
        let token = next_page_token(true, Some("fab-7"));
        assert_eq!(page(5, &token).unwrap().after.as_deref(), Some("fab-7"));
        assert_eq!(next_page_token(false, Some("x")), "");
        let nul = B64.encode("after:a\0b");
        for bad in ["%%%", "bm90LWEtdG9rZW4", nul.as_str()] {
            assert!(matches!(page(1, bad), Err(ApiError::InvalidArgument(v)) if v[0].field == "page_token"));
        }
    }

    #[test]
    fn filters() {
        let f = filter(" name=a  provider=github ", &["name", "provider"]).unwrap();
        assert_eq!(f["name"], "a");
        assert_eq!(f["provider"], "github");
        assert!(filter("", &["name"]).unwrap().is_empty());
        assert_eq!(filter(r#"name="""#, &["name"]).unwrap()["name"], "");
        for bad in ["nope", "color=red", "name=", "name=a name=b", "name=a\0b", &"x".repeat(MAX_FILTER + 1)] {
            assert!(
                matches!(filter(bad, &["name"]), Err(ApiError::InvalidArgument(v)) if v[0].field == "filter"),
                "{bad}"
            );
        }
    }
}
