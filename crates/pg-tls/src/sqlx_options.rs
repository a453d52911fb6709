//! [`PgTls`] for sqlx (the `sqlx` feature).

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::config::{PgTls, SslMode};

impl PgTls {
    /// `options` with this mode and root certificate. sqlx (with its `tls-rustls` feature)
    /// implements libpq's modes itself, `require` with a root certificate as `verify-ca` too.
    pub fn sqlx(&self, options: PgConnectOptions) -> PgConnectOptions {
        let mode = match self.effective_mode() {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        };
        let options = options.ssl_mode(mode);
        match &self.root_cert {
            Some(path) => options.ssl_root_cert(path),
            None => options,
        }
    }
}
