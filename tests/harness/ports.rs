//! Free TCP ports on 127.0.0.1 for throwaway servers.
//!
//! A port is found by binding port 0 and closing the socket, so another process
//! can still take it before the server binds it; servers that fail to bind retry
//! with a fresh port (see `MariaDb::start`). Within one process a port is never
//! handed out twice, which removes the race between tests running in parallel
//! threads of the same test binary.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Ports handed out by [`free_port`] in this process; never reused.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Attempts before giving up; each failed attempt means the kernel offered a
/// port that this process already handed out.
const MAX_ATTEMPTS: usize = 1000;

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has
/// not handed out before.
pub fn free_port() -> Result<u16> {
    for _ in 0..MAX_ATTEMPTS {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("bind 127.0.0.1:0 to find a free port")?;
        let port = listener
            .local_addr()
            .context("read the port of a bound socket")?
            .port();
        drop(listener);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    bail!("no unused free port after {MAX_ATTEMPTS} attempts")
}

/// Whether nothing listens on 127.0.0.1:`port` (checked by binding it).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}
