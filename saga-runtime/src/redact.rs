//! The one place that turns a connection URL into something safe to log or show: every error
//! and log line that names a broker or store address goes through [`redact_url`].

use std::fmt;

use url::Url;

use crate::error::{Cause, Report};

/// What replaces a secret.
pub const MASK: &str = "***";

/// Query parameters whose values are secrets (compared case-insensitively).
const SECRET_PARAMETERS: [&str; 6] = ["password", "pass", "token", "secret", "auth", "key"];

/// `url` with every credential masked: the password (`amqp://guest:***@host`), a user name
/// given without a password (`nats://***@host`, where it is a token), and the values of
/// query parameters named like a secret (`?token=***`). Parsed with the `url` crate; text that
/// is not a URL keeps only what precedes a `@` after its scheme, masked the same way, so a
/// malformed URL still never shows its secret.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) if parsed.has_host() => redact_parsed(parsed),
        _ => redact_text(url),
    }
}

fn redact_parsed(mut url: Url) -> String {
    let masked_user = url.password().is_none() && !url.username().is_empty();
    if url.password().is_some() {
        let _ = url.set_password(Some(MASK));
    }
    if masked_user {
        let _ = url.set_username(MASK);
    }
    let secret = |name: &str| {
        SECRET_PARAMETERS
            .iter()
            .any(|secret| name.eq_ignore_ascii_case(secret))
    };
    if url.query_pairs().any(|(name, _)| secret(&name)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if secret(&name) {
                    MASK.to_string()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// A string that does not parse as a URL with a host: everything between the scheme and the
/// last `@` is masked, and nothing after a `?` is shown.
fn redact_text(text: &str) -> String {
    let text = text.split('?').next().unwrap_or_default();
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://{MASK}@{}", &text[..scheme], &text[at + 1..])
        }
        (None, Some(at)) => format!("{MASK}@{}", &text[at + 1..]),
        _ => text.to_string(),
    }
}

/// The secrets `url` holds, in every form they may be echoed back in (as written and percent
/// decoded): its password, a user name given without a password (a token), the values of
/// query parameters named like a secret; for text that does not parse as a URL, every piece of
/// 3 bytes or more between its scheme and its last `@`.
pub(crate) fn secrets_of(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    let mut add = |secret: &str| {
        if secret.len() >= 3 {
            secrets.push(secret.to_string());
            secrets.push(percent_decode(secret));
        }
    };
    let (before_query, query) = url.split_once('?').unwrap_or((url, ""));
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if SECRET_PARAMETERS
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s))
        {
            add(&value);
        }
    }
    match Url::parse(url) {
        Ok(parsed) if parsed.has_host() => match parsed.password() {
            Some(password) => add(password),
            None => add(parsed.username()),
        },
        _ => {
            if let Some((userinfo, _)) = before_query.rsplit_once('@') {
                let userinfo = userinfo.split_once(':').map_or(userinfo, |(_, rest)| rest);
                userinfo.split([':', '/']).for_each(&mut add);
            }
        }
    }
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets.dedup();
    secrets
}

/// `text` with its `%XX` escapes decoded (as a URL's user name or password is).
pub(crate) fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// `text` with every one of `secrets` ([`secrets_of`]) masked.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_string(), |text, secret| {
        text.replace(secret.as_str(), MASK)
    })
}

/// A client library's error whose whole chain was flattened into one message and scrubbed of
/// the connection's secrets: what a connect error keeps as its source, since a server may
/// echo back part of what it was sent (a vhost, a user name).
#[derive(Debug)]
pub(crate) struct Scrubbed(String);

impl Scrubbed {
    /// `error`'s chain, scrubbed of `secrets`.
    pub(crate) fn of(error: &(dyn std::error::Error + 'static), secrets: &[String]) -> Self {
        Self(scrub(&Report(error).to_string(), secrets))
    }

    /// `cause`'s chain, scrubbed of `secrets`, as a cause.
    #[cfg_attr(not(any(feature = "rabbitmq", feature = "nats")), allow(dead_code))]
    pub(crate) fn cause(cause: &Cause, secrets: &[String]) -> Cause {
        std::sync::Arc::new(Self::of(&**cause, secrets))
    }
}

impl fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Scrubbed {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_credential_is_masked() {
        let cases = [
            (
                "amqp://guest:secret@h:5672/%2f",
                "amqp://guest:***@h:5672/%2f",
            ),
            ("amqps://u:p%40ss@h:5671/vh", "amqps://u:***@h:5671/vh"),
            (
                "redis://:secret@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "rediss://default:secret@h:6380",
                "rediss://default:***@h:6380",
            ),
            (
                "nats://s3cr3tT0ken@127.0.0.1:4222",
                "nats://***@127.0.0.1:4222",
            ),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            (
                "nats://h:4222?token=abc&name=x",
                "nats://h:4222?token=***&name=x",
            ),
            ("not a url user:secret@host", "***@host"),
            ("redis://user:secret@[bad", "redis://***@[bad"),
            (
                "amqp://u:secret@h:5672?password=secret",
                "amqp://u:***@h:5672?password=***",
            ),
        ];
        for (url, expected) in cases {
            let redacted = redact_url(url);
            assert_eq!(redacted, expected, "{url}");
            for secret in ["secret", "s3cr3tT0ken", "p%40ss", "abc"] {
                assert!(!redacted.contains(secret), "{url} -> {redacted}");
            }
        }
    }

    #[test]
    fn echoed_secrets_are_scrubbed_from_any_text() {
        let echoed = "vhost user:Zq7@127.0.0.1/%zz not found; password p@ss; token abc";
        for url in [
            "amqp:/user:Zq7@127.0.0.1:5672/%zz",
            "amqps://u:p%40ss@h:5671/vh",
            "nats://h:4222?token=abc",
        ] {
            let secrets = secrets_of(url);
            assert!(!secrets.is_empty(), "{url}");
            let scrubbed = scrub(echoed, &secrets);
            for secret in &secrets {
                assert!(!scrubbed.contains(secret.as_str()), "{url}: {scrubbed}");
            }
        }
        assert!(secrets_of("nats://127.0.0.1:4222").is_empty());
    }
}
