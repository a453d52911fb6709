//! TLS for a test server: a throwaway certificate authority and a server certificate it signed
//! for the name `localhost` only (not `127.0.0.1`), generated with rcgen when the server is
//! created. Clients that verify the chain trust `ca.crt`; connecting by IP address with
//! `verify-full` fails on the host name, which is what tests of host verification need.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::error::{Error, Result};
use crate::pg_init::{RunAs, quote};

/// The files a TLS test server uses, in its temp dir.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) ca_cert: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
}

impl TlsFiles {
    /// The `postgresql.conf` settings that turn TLS on with these files.
    pub(crate) fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("ssl".to_owned(), "on".to_owned()),
            (
                "ssl_cert_file".to_owned(),
                quote(&self.server_cert.to_string_lossy()),
            ),
            (
                "ssl_key_file".to_owned(),
                quote(&self.server_key.to_string_lossy()),
            ),
        ]
    }
}

fn certificate_error(error: rcgen::Error) -> Error {
    Error::io(
        "generating the test certificates",
        std::io::Error::other(error),
    )
}

/// Generates the authority and the server certificate into `dir/tls`, readable by the server's
/// user (the key only by it, mode 0600, as PostgreSQL requires).
pub(crate) fn generate(dir: &Path, run_as: RunAs) -> Result<TlsFiles> {
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).map_err(|e| Error::io(format!("creating {}", tls.display()), e))?;
    run_as.give(&tls)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(certificate_error)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "surefoot test CA");
    let ca_key = KeyPair::generate().map_err(certificate_error)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(certificate_error)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let server_params =
        CertificateParams::new(vec!["localhost".to_owned()]).map_err(certificate_error)?;
    let server_key = KeyPair::generate().map_err(certificate_error)?;
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(certificate_error)?;
    let files = TlsFiles {
        ca_cert: tls.join("ca.crt"),
        server_cert: tls.join("server.crt"),
        server_key: tls.join("server.key"),
    };
    write(&files.ca_cert, &ca_cert.pem(), 0o644, run_as)?;
    write(&files.server_cert, &server_cert.pem(), 0o644, run_as)?;
    write(
        &files.server_key,
        &server_key.serialize_pem(),
        0o600,
        run_as,
    )?;
    Ok(files)
}

fn write(path: &Path, contents: &str, mode: u32, run_as: RunAs) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let action = || format!("writing {}", path.display());
    std::fs::write(path, contents).map_err(|e| Error::io(action(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(action(), e))?;
    run_as.give(path)
}
