//! [`TlsError`]: TLS settings that cannot be turned into a client configuration.

use std::path::PathBuf;

/// The TLS settings cannot be used (before any connection is tried). Always a configuration
/// problem: a person must fix the file or the mode.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The root certificate file cannot be read or parsed.
    #[error("cannot read the root certificate file {path} (sslrootcert)")]
    ReadRootCert {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The root certificate file holds no usable certificate.
    #[error("the root certificate file {path} (sslrootcert) holds no usable certificate")]
    NoRootCert {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS client configuration")]
    Rustls(#[source] rustls::Error),
    /// The certificate verifier cannot be built from the roots.
    #[error("cannot build the certificate verifier")]
    Verifier(#[source] rustls::client::VerifierBuilderError),
}
