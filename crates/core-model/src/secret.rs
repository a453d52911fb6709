//! Secrets that never reach a log line, an error, a dead letter or an API response: [`Secret`]
//! (a password, a token) and [`SecretUrl`] (a webhook or Redis URL, whose user information, path
//! and query may each hold a credential).

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret (password, token). `Debug` and `Display` print `[redacted]`; it cannot be serialised;
/// the value is reachable only through [`Secret::expose`], so every use is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that must send it (a connection handshake).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// A URL that is a secret as a whole: a webhook's path often is its token (`/services/T0/B0/XYZ`),
/// and a Redis URL carries a password. `Debug` and `Display` print only its scheme, host and port,
/// with `[redacted]` where user information, a path or a query was; [`SecretUrl::expose`] gives
/// the whole URL to the one place that connects with it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The whole URL, for the one place that must use it (a request, a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What may be shown of the URL: `scheme://host:port`, `[redacted]@` before the host if it
    /// had user information, `/[redacted]` after it if it had a path or a query. A URL that does
    /// not parse shows nothing of itself.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// What may be shown of `url` (see [`SecretUrl::redacted`]), for URLs held as plain strings.
pub fn redact(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return "[redacted url]".to_owned();
    };
    let user = if parsed.username().is_empty() && parsed.password().is_none() {
        ""
    } else {
        "[redacted]@"
    };
    let host = parsed.host_str().unwrap_or("");
    let port = parsed
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let rest = if parsed.path().trim_start_matches('/').is_empty()
        && parsed.query().is_none()
        && parsed.fragment().is_none()
    {
        ""
    } else {
        "/[redacted]"
    };
    format!("{}://{user}{host}{port}{rest}", parsed.scheme())
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret: Secret = serde_json::from_str(r#""hunter2""#).unwrap();
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn a_secret_url_shows_only_its_scheme_host_and_port() {
        let hook = SecretUrl::new("https://user:pw@hooks.example.com:8443/services/T0/XYZ?token=t");
        let shown = format!("{hook:?} {hook}");
        assert_eq!(
            shown,
            "SecretUrl(\"https://[redacted]@hooks.example.com:8443/[redacted]\") \
             https://[redacted]@hooks.example.com:8443/[redacted]"
        );
        for secret in ["user", "pw", "services", "XYZ", "token"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert_eq!(
            SecretUrl::from("redis://127.0.0.1:6379").redacted(),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            SecretUrl::from("redis://:pw@h/2").redacted(),
            "redis://[redacted]@h/[redacted]"
        );
        assert_eq!(SecretUrl::from("not a url pw").redacted(), "[redacted url]");
        assert_eq!(
            hook.expose(),
            "https://user:pw@hooks.example.com:8443/services/T0/XYZ?token=t"
        );
    }
}
