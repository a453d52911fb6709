//! [`SslMode`] and [`PgTls`]: the settings, with libpq's names and meaning.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

/// libpq's `sslmode`; see the [crate docs](crate) for what each does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, without verification; plain otherwise (libpq's default).
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is verified only when a root certificate is configured.
    Require,
    /// TLS, certificate chain verified against the root certificates.
    VerifyCa,
    /// TLS, chain verified and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `sslmode` that is not one of libpq's five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sslmode {0:?} (expected disable, prefer, require, verify-ca or verify-full)")]
pub struct UnknownSslMode(pub String);

impl FromStr for SslMode {
    type Err = UnknownSslMode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(UnknownSslMode(other.to_owned())),
        }
    }
}

/// TLS settings of one PostgreSQL connection: libpq's `sslmode` and `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct PgTls {
    /// The mode; `prefer` by default, as libpq.
    #[serde(default)]
    pub mode: SslMode,
    /// PEM file of the certificates to trust (libpq's `sslrootcert`); `None` trusts the Mozilla
    /// roots when the mode verifies.
    #[serde(default)]
    pub root_cert: Option<PathBuf>,
}

impl PgTls {
    /// `mode` with no root certificate file.
    pub fn new(mode: SslMode) -> Self {
        Self {
            mode,
            root_cert: None,
        }
    }

    /// `sslmode=disable`.
    pub fn disable() -> Self {
        Self::new(SslMode::Disable)
    }

    /// `sslmode=verify-full` trusting only the certificates in `root_cert`.
    pub fn verify_full(root_cert: impl Into<PathBuf>) -> Self {
        Self::new(SslMode::VerifyFull).with_root_cert(root_cert)
    }

    /// The same with `sslrootcert` set.
    pub fn with_root_cert(mut self, root_cert: impl Into<PathBuf>) -> Self {
        self.root_cert = Some(root_cert.into());
        self
    }

    /// What the connection does: `require` with a root certificate verifies the chain, as
    /// libpq's `verify-ca` (libpq's rule for a root certificate file that exists).
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }

    /// True when the connection must be encrypted (the server is refused if it has no TLS).
    pub fn requires_tls(&self) -> bool {
        matches!(
            self.mode,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_as_libpq() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(mode.as_str().parse::<SslMode>(), Ok(mode));
            let json = format!("{:?}", mode.as_str());
            assert_eq!(serde_json::from_str::<SslMode>(&json).ok(), Some(mode));
        }
        assert!("verify_full".parse::<SslMode>().is_err());
        assert_eq!(SslMode::default(), SslMode::Prefer);
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain() {
        let tls = PgTls::new(SslMode::Require);
        assert_eq!(tls.effective_mode(), SslMode::Require);
        assert_eq!(
            tls.with_root_cert("/ca.pem").effective_mode(),
            SslMode::VerifyCa
        );
        let tls: PgTls = serde_json::from_str(r#"{"mode":"verify-full","root_cert":"/ca.pem"}"#)
            .expect("valid settings");
        assert_eq!(tls, PgTls::verify_full("/ca.pem"));
    }
}
