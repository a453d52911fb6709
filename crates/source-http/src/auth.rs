//! Bearer-token authentication, compared in constant time.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Auth;

/// Checks requests against the configured tokens.
///
/// Tokens are kept as SHA-256 digests and a presented token is hashed the same way, so the
/// comparison is of fixed length and constant time ([`subtle`]): neither a token's content nor
/// its length leaks through timing. Every configured token is compared, matched or not.
#[derive(Clone)]
pub(crate) struct Authenticator {
    digests: Option<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tokens = self.digests.as_ref().map(Vec::len);
        f.debug_struct("Authenticator")
            .field("tokens", &tokens)
            .finish()
    }
}

impl Authenticator {
    pub(crate) fn new(auth: &Auth) -> Self {
        let digests = match auth {
            Auth::Bearer(tokens) => Some(
                tokens
                    .iter()
                    .map(|token| digest(token.expose().as_bytes()))
                    .collect(),
            ),
            Auth::NoneOnLoopback => None,
        };
        Self { digests }
    }

    /// True when the request may proceed.
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(digests) = &self.digests else {
            return true;
        };
        let Some(presented) = bearer(headers) else {
            return false;
        };
        let presented = digest(presented);
        let mut matched = subtle::Choice::from(0);
        for expected in digests {
            matched |= expected.ct_eq(&presented);
        }
        matched.into()
    }
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value.get(7..))
        .flatten()
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use surefoot_core_model::Secret;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_a_configured_token_passes() {
        let tokens = vec![
            Secret::new("first-token-0123456"),
            Secret::new("second-token-012345"),
        ];
        let auth = Authenticator::new(&Auth::Bearer(tokens));
        assert!(auth.allows(&headers("Bearer second-token-012345")));
        assert!(auth.allows(&headers("bearer first-token-0123456")));
        assert!(!auth.allows(&headers("Bearer first-token-012345")));
        assert!(!auth.allows(&headers("Basic first-token-0123456")));
        assert!(!auth.allows(&headers("Bearer")));
        assert!(!auth.allows(&HeaderMap::new()));
        assert!(!format!("{auth:?}").contains("token-0"));
    }

    #[test]
    fn no_auth_lets_everyone_in() {
        assert!(Authenticator::new(&Auth::NoneOnLoopback).allows(&HeaderMap::new()));
    }
}
