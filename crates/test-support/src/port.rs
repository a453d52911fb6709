//! Picking a free loopback port.

use std::net::{Ipv4Addr, TcpListener};

use crate::error::{Error, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and reading what the kernel chose; the socket is
/// closed before returning, so another process could take the port before the caller binds it.
/// Servers in this crate retry with a new port when that happens.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("binding 127.0.0.1:0 to find a free port", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the address of a probe socket", e))?;
    Ok(addr.port())
}
