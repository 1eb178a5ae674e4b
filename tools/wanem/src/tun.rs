//! Creating a tun device (`/dev/net/tun` + `TUNSETIFF`).
//!
//! The one place in the crate that needs `unsafe`: the `ioctl` call.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// Path of the tun clone device.
pub const TUN_CLONE_DEV: &str = "/dev/net/tun";

/// Opens `/dev/net/tun` and attaches it to a new layer-3 tun interface
/// `ifname` (`IFF_TUN | IFF_NO_PI`: every read/write is one bare IP packet).
///
/// The interface is created in the network namespace of the calling thread and
/// lives as long as the returned file is open. The file is non-blocking.
pub fn open_tun(ifname: &str) -> io::Result<File> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(TUN_CLONE_DEV)?;

    // SAFETY: `ifreq` is a plain C struct (a char array and a union of plain
    // data and a raw pointer); the all-zero bit pattern is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;

    // SAFETY: the descriptor is open for the whole call (owned by `file`),
    // `req` is an initialised `ifreq` that outlives the call, and TUNSETIFF
    // reads and writes exactly one `ifreq` through the pointer.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETIFF,
            &mut req as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}
