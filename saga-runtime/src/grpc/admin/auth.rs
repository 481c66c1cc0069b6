//! [`BearerAuth`]: the admin API's optional bearer token check.

use std::sync::Arc;

use tonic::Status;
use tonic::metadata::MetadataMap;

/// The admin API's token check: when it holds a token, it admits only calls carrying
/// `authorization: Bearer <token>`, compared in constant time; others get `UNAUTHENTICATED`
/// (the message never echoes what was sent). Without a token it admits every call.
#[derive(Clone, Default)]
pub struct BearerAuth {
    token: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl BearerAuth {
    /// Admits calls bearing `token`, or every call when `None`.
    pub fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(|t| Arc::from(t.as_bytes())),
        }
    }

    /// True when calls must bear a token.
    pub fn is_enabled(&self) -> bool {
        self.token.is_some()
    }
}

impl BearerAuth {
    /// Admits or refuses a call by its request metadata.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(token) if constant_time_eq(token.as_bytes(), expected) => Ok(()),
            Some(_) => Err(Status::unauthenticated(
                "the admin API refused the bearer token: pass the orchestrator's admin token (`--token` or SAGAFLOW_ADMIN_TOKEN)",
            )),
            None => Err(Status::unauthenticated(
                "the admin API requires `authorization: Bearer <token>`: pass the orchestrator's admin token (`--token` or SAGAFLOW_ADMIN_TOKEN)",
            )),
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths, never on where
/// they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(auth: &BearerAuth, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut metadata = MetadataMap::new();
        if let Some(header) = header {
            metadata.insert("authorization", header.parse().expect("ascii"));
        }
        auth.check(&metadata).map_err(|s| s.code())
    }

    #[test]
    fn a_token_admits_only_its_bearer() {
        let auth = BearerAuth::new(Some("s3cret"));
        assert_eq!(call(&auth, Some("Bearer s3cret")), Ok(()));
        let refused = Err(tonic::Code::Unauthenticated);
        assert_eq!(call(&auth, Some("Bearer s3cre")), refused);
        assert_eq!(call(&auth, Some("Bearer s3cret2")), refused);
        assert_eq!(call(&auth, Some("Basic s3cret")), refused);
        assert_eq!(call(&auth, None), refused);
    }

    #[test]
    fn without_a_token_every_call_is_admitted() {
        let auth = BearerAuth::new(None);
        assert!(!auth.is_enabled());
        assert_eq!(call(&auth, None), Ok(()));
        assert_eq!(call(&auth, Some("Bearer anything")), Ok(()));
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
