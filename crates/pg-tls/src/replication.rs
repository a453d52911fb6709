//! [`PgTls`] for `pgwire-replication`, which does the libpq negotiation itself.

use pgwire_replication::{SslMode as WireSslMode, TlsConfig};

use crate::config::{PgTls, SslMode};

impl PgTls {
    /// The replication client's TLS settings. Its `verify-full` refuses an IP address as the host
    /// (the certificate must name a host): connect by name, or use `verify-ca`.
    pub fn replication(&self) -> TlsConfig {
        let mode = match self.effective_mode() {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            SslMode::Require => WireSslMode::Require,
            SslMode::VerifyCa => WireSslMode::VerifyCa,
            SslMode::VerifyFull => WireSslMode::VerifyFull,
        };
        TlsConfig {
            mode,
            ca_pem_path: self.root_cert.clone(),
            ..TlsConfig::default()
        }
    }
}
