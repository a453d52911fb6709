//! [`PgTls`] for tokio-postgres: the `ssl_mode` to set and the rustls connector to pass.

use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PgTls, SslMode};
use crate::error::TlsError;
use crate::verify::client_config;

impl PgTls {
    /// Sets `config`'s `ssl_mode` and returns the connector to connect with:
    /// `config.connect(tls.connector(&mut config)?)`. tokio-postgres knows disable, prefer and
    /// require; the verification of the stricter modes is the connector's.
    pub fn connector(
        &self,
        config: &mut tokio_postgres::Config,
    ) -> Result<MakeRustlsConnect, TlsError> {
        config.ssl_mode(match self.mode {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
        });
        Ok(MakeRustlsConnect::new(client_config(self)?))
    }
}
