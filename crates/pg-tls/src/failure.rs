//! [`TlsFailure`]: why a connection's TLS failed, recognised in any client library's errors.

use std::error::Error;

use rustls::CertificateError;

/// Why TLS stopped a connection. Found in the error of tokio-postgres, pgwire-replication or
/// sqlx by [`TlsFailure::find`]; each is a configuration problem (the same attempt fails again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// The mode requires TLS and the server does not offer it (`ssl = off`).
    #[error("the server does not offer TLS, which the sslmode requires")]
    ServerRefusedTls,
    /// The server's certificate does not lead to a trusted root (wrong `sslrootcert`, or a
    /// self-signed certificate): `{detail}` is rustls' reason.
    #[error(
        "the server's certificate is not trusted by the configured root certificates: {detail}"
    )]
    UntrustedCertificate {
        /// rustls' reason.
        detail: String,
    },
    /// The certificate is trusted but does not name the host connected to (`verify-full`).
    #[error("the server's certificate does not name the host connected to: {detail}")]
    WrongHost {
        /// rustls' reason.
        detail: String,
    },
    /// Another handshake failure (protocol, expired certificate, ...).
    #[error("the TLS handshake failed: {detail}")]
    Handshake {
        /// The reason.
        detail: String,
    },
}

impl TlsFailure {
    /// The TLS failure somewhere in `error`'s chain (including errors wrapped in `io::Error`),
    /// or `None` when it is not one.
    pub fn find(error: &(dyn Error + 'static)) -> Option<TlsFailure> {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(found) = Self::from_one(error) {
                return Some(found);
            }
            next = error.source().or_else(|| {
                // `io::Error::source` skips the error it wraps; look at that one too.
                error
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .map(|inner| inner as &(dyn Error + 'static))
            });
        }
        None
    }

    fn from_one(error: &(dyn Error + 'static)) -> Option<TlsFailure> {
        if let Some(rustls) = error.downcast_ref::<rustls::Error>() {
            return Some(Self::from_rustls(rustls));
        }
        Self::from_message(&error.to_string())
    }

    fn from_rustls(error: &rustls::Error) -> TlsFailure {
        let detail = error.to_string();
        match error {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => TlsFailure::WrongHost { detail },
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
                | CertificateError::BadSignature
                | CertificateError::BadEncoding
                | CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. },
            ) => TlsFailure::UntrustedCertificate { detail },
            _ => TlsFailure::Handshake { detail },
        }
    }

    /// From a message only: pgwire-replication reports TLS failures as text
    /// (`PgWireError::Tls(String)`), and tokio-postgres and sqlx the refusal.
    fn from_message(message: &str) -> Option<TlsFailure> {
        let detail = || message.to_owned();
        let refused = [
            "server does not support TLS",
            "SSLRequest rejected",
            "server does not support SSL",
        ];
        if refused.iter().any(|text| message.contains(text)) {
            return Some(TlsFailure::ServerRefusedTls);
        }
        if !message.contains("TLS handshake failed")
            && !message.contains("invalid peer certificate")
        {
            return None;
        }
        let lower = message.to_ascii_lowercase();
        Some(
            if lower.contains("notvalidforname") || lower.contains("not valid for name") {
                TlsFailure::WrongHost { detail: detail() }
            } else if lower.contains("issuer") || lower.contains("badsignature") {
                TlsFailure::UntrustedCertificate { detail: detail() }
            } else {
                TlsFailure::Handshake { detail: detail() }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose source is `inner`, as the drivers wrap rustls's errors.
    #[derive(Debug, thiserror::Error)]
    #[error("connecting failed")]
    struct Wrapped(#[source] rustls::Error);

    fn found(error: rustls::Error) -> Option<TlsFailure> {
        TlsFailure::find(&Wrapped(error))
    }

    #[test]
    fn rustls_errors_anywhere_in_the_chain_are_classified() {
        let invalid = |error| rustls::Error::InvalidCertificate(error);
        assert!(matches!(
            found(invalid(CertificateError::NotValidForName)),
            Some(TlsFailure::WrongHost { .. })
        ));
        assert!(matches!(
            found(invalid(CertificateError::UnknownIssuer)),
            Some(TlsFailure::UntrustedCertificate { .. })
        ));
        assert!(matches!(
            found(invalid(CertificateError::Expired)),
            Some(TlsFailure::Handshake { .. })
        ));
    }

    #[test]
    fn messages_of_drivers_that_report_text_are_classified() {
        let text = |message: &str| TlsFailure::from_message(message);
        assert_eq!(
            text("server does not support TLS"),
            Some(TlsFailure::ServerRefusedTls)
        );
        assert!(matches!(
            text("TLS handshake failed: invalid peer certificate: NotValidForName"),
            Some(TlsFailure::WrongHost { .. })
        ));
        assert!(matches!(
            text("TLS handshake failed: invalid peer certificate: UnknownIssuer"),
            Some(TlsFailure::UntrustedCertificate { .. })
        ));
        assert!(matches!(
            text("TLS handshake failed: peer sent no certificates"),
            Some(TlsFailure::Handshake { .. })
        ));
        assert_eq!(text("connection refused"), None);
    }
}
