//! Network namespaces: opening them, and netlink sockets bound inside them.
//!
//! A netlink socket belongs to the netns of the thread that creates it. Tokio
//! worker threads must never `setns`, so sockets for other namespaces are made on
//! a short-lived helper thread and handed to the runtime.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use rtnetlink::Handle;

/// Opens a netns file (`/run/netns/NAME`, `/proc/PID/ns/net`).
pub fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Netlink route sockets, one per namespace, created on a helper thread.
pub fn route_sockets(namespaces: Vec<File>) -> io::Result<Vec<io::Result<OwnedFd>>> {
    std::thread::spawn(move || {
        namespaces
            .iter()
            .map(|ns| {
                setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                route_socket()
            })
            .collect()
    })
    .join()
    .map_err(|_| io::Error::other("netns helper thread panicked"))
}

/// A netlink route socket in the calling thread's netns.
pub fn route_socket() -> io::Result<OwnedFd> {
    let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    // SAFETY: the fd was just created and is owned by `socket`, which is consumed.
    Ok(unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) })
}

/// An rtnetlink handle over `fd`; its connection task is spawned on the current
/// tokio runtime.
pub fn handle(fd: OwnedFd) -> io::Result<Handle> {
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` is an open netlink socket we own; TokioSocket takes ownership
    // (and makes it non-blocking).
    let tokio_socket = unsafe { netlink_sys::TokioSocket::from_raw_fd(raw) };
    let (conn, handle, _) = rtnetlink::from_socket(tokio_socket);
    tokio::spawn(conn);
    Ok(handle)
}

/// The inode of a netns file: two paths name the same netns iff these match.
pub fn inode(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata()?.ino())
}
