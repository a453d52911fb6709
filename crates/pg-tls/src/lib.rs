//! libpq's `sslmode` and `sslrootcert` for every PostgreSQL connection surefoot makes, on rustls
//! with the `ring` provider (no OpenSSL).
//!
//! One configuration type, [`PgTls`], and one place that turns it into what each client library
//! takes: a [`tokio_postgres`] connector ([`PgTls::connector`]), a `pgwire-replication`
//! [`TlsConfig`](pgwire_replication::TlsConfig) ([`PgTls::replication`]) and, with the `sqlx`
//! feature, sqlx connect options ([`PgTls::sqlx`]). A failed handshake is recognised in any of
//! their error chains by [`TlsFailure::find`], so every crate reports the same typed cause.
//!
//! # Modes (as libpq)
//!
//! | mode | TLS | chain verified | host name verified | plain if the server has no TLS |
//! | --- | --- | --- | --- | --- |
//! | `disable` | never | - | - | always plain |
//! | `prefer` (default) | if offered | no | no | yes |
//! | `require` | always | only with `sslrootcert` (as libpq: then it is `verify-ca`) | no | no, refused |
//! | `verify-ca` | always | yes | no | no, refused |
//! | `verify-full` | always | yes | yes | no, refused |
//!
//! `verify-ca` and `verify-full` trust only `sslrootcert` when it is set, else the Mozilla roots
//! (`webpki-roots`). `prefer` never verifies: it protects against a passive listener only.
//!
//! # Decisions
//!
//! - rustls with `ring`, not aws-lc-rs: no C toolchain beyond `cc`, and its licence is in
//!   `deny.toml`'s list. The provider is passed explicitly to every config, never installed as the
//!   process default, so a second provider elsewhere in the build cannot make it ambiguous.
//! - A TLS failure is a configuration problem ([`TlsFailure`]): retrying the same certificate
//!   against the same server cannot succeed, so callers classify it as such and fail fast.
//! - A wrong CA and a wrong host are told apart ([`TlsFailure::UntrustedCertificate`],
//!   [`TlsFailure::WrongHost`]) because they have different fixes.

#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
mod connector;
mod error;
mod failure;
mod replication;
#[cfg(feature = "sqlx")]
mod sqlx_options;
mod verify;

pub use config::{PgTls, SslMode, UnknownSslMode};
pub use error::TlsError;
pub use failure::TlsFailure;
pub use tokio_postgres_rustls::MakeRustlsConnect;
