//! Reading conntrack over ctnetlink: the entries of balanced connections
//! (conntrack mark in the backend-id range), for least-connection scheduling.
//!
//! One dump request with a mark filter (`CTA_MARK`/`CTA_MARK_MASK`, Linux 4.x+:
//! the kernel skips other entries before they are copied out); each reply
//! entry gives its mark, id and, for TCP, its state. Blocking: called on the
//! load balancer's engine thread, never where timers run.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{
    bind, recv, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};

use super::leastconn::Entries;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_MARK: u16 = 8;
const CTA_ID: u16 = 12;
const CTA_MARK_MASK: u16 = 21;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
const TCP_CONNTRACK_ESTABLISHED: u8 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A ctnetlink socket in one netns.
#[derive(Debug)]
pub struct Conntrack {
    fd: OwnedFd,
    seq: u32,
}

impl Conntrack {
    /// Opens a socket in the netns at `netns` (a file under /run/netns or
    /// /proc), or in the caller's.
    pub fn open(netns: Option<&Path>) -> std::io::Result<Conntrack> {
        let fd = match netns {
            None => open_socket()?,
            Some(path) => {
                let ns = std::fs::File::open(path)?;
                // A socket stays in the netns it was made in: make it on a
                // short-lived thread there.
                std::thread::spawn(move || {
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                    open_socket()
                })
                .join()
                .map_err(|_| std::io::Error::other("conntrack socket thread panicked"))??
            }
        };
        Ok(Conntrack { fd, seq: 0 })
    }

    /// Entries whose mark satisfies `mark & mask == value`.
    pub fn dump(&mut self, value: u32, mask: u32) -> std::io::Result<Entries> {
        self.seq = self.seq.wrapping_add(1);
        let request = dump_request(self.seq, value, mask);
        send(self.fd.as_raw_fd(), &request, MsgFlags::empty())?;
        let mut out = Entries::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            match parse_batch(&buf[..n], &mut out) {
                Batch::More => {}
                Batch::Done => return Ok(out),
                Batch::Error(errno) => {
                    return Err(std::io::Error::from_raw_os_error(errno));
                }
            }
        }
    }
}

fn open_socket() -> std::io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    // A dump of many entries arrives in bursts; a small buffer drops some.
    let _ = setsockopt(&fd, sockopt::RcvBuf, &(4 << 20));
    Ok(fd)
}

fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn dump_request(seq: u32, value: u32, mask: u32) -> Vec<u8> {
    let mut body = Vec::new();
    // nfgenmsg: AF_UNSPEC (both families), version 0, res_id 0.
    body.extend_from_slice(&[0, 0, 0, 0]);
    attr(&mut body, CTA_MARK, &value.to_be_bytes());
    attr(&mut body, CTA_MARK_MASK, &mask.to_be_bytes());
    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET).to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    msg
}

enum Batch {
    More,
    Done,
    Error(i32),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Attributes of `b` as `(type, payload)`.
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, at)?);
        let kind = u16_at(b, at + 2)? & NLA_TYPE_MASK;
        if len < 4 || at + len > b.len() {
            return None;
        }
        let payload = &b[at + 4..at + len];
        at += (len + 3) & !3;
        Some((kind, payload))
    })
}

/// One datagram of netlink messages; entries go to `out`.
fn parse_batch(b: &[u8], out: &mut Entries) -> Batch {
    let mut at = 0;
    while let (Some(len), Some(kind)) = (u32_at(b, at), u16_at(b, at + 4)) {
        let len = len as usize;
        if len < 16 || at + len > b.len() {
            break;
        }
        let msg = &b[at + 16..at + len];
        match kind {
            NLMSG_DONE => return Batch::Done,
            NLMSG_ERROR => {
                let errno = msg
                    .get(..4)
                    .and_then(|e| e.try_into().ok())
                    .map_or(0, i32::from_ne_bytes);
                return if errno == 0 {
                    Batch::Done
                } else {
                    Batch::Error(-errno)
                };
            }
            _ => {
                if let Some(entry) = msg.get(4..).and_then(entry) {
                    out.push(entry);
                }
            }
        }
        at += (len + 3) & !3;
    }
    Batch::More
}

/// `(mark, id, established TCP)` of one conntrack entry's attributes.
fn entry(b: &[u8]) -> Option<(u32, u32, bool)> {
    let (mut mark, mut id, mut established) = (None, None, false);
    for (kind, payload) in attrs(b) {
        match kind {
            CTA_MARK => mark = payload.try_into().ok().map(u32::from_be_bytes),
            CTA_ID => id = payload.try_into().ok().map(u32::from_be_bytes),
            CTA_PROTOINFO => {
                for (k, tcp) in attrs(payload) {
                    if k == CTA_PROTOINFO_TCP {
                        established |= attrs(tcp).any(|(k, v)| {
                            k == CTA_PROTOINFO_TCP_STATE
                                && v.first() == Some(&TCP_CONNTRACK_ESTABLISHED)
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Some((mark?, id?, established))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_aligned_netlink_message() {
        let r = dump_request(7, 0x7a5f_0000, 0xffff_0000);
        assert_eq!(r.len() % 4, 0);
        assert_eq!(u32_at(&r, 0), Some(r.len() as u32));
        assert_eq!(u16_at(&r, 4), Some(0x0101));
        let a: Vec<(u16, Vec<u8>)> = attrs(&r[20..]).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(a[0], (CTA_MARK, 0x7a5f_0000u32.to_be_bytes().to_vec()));
        assert_eq!(a[1], (CTA_MARK_MASK, 0xffff_0000u32.to_be_bytes().to_vec()));
    }

    #[test]
    fn entries_parse_with_nested_tcp_state() {
        let mut tcp = Vec::new();
        attr(
            &mut tcp,
            CTA_PROTOINFO_TCP_STATE,
            &[TCP_CONNTRACK_ESTABLISHED],
        );
        let mut info = Vec::new();
        attr(&mut info, CTA_PROTOINFO_TCP | 0x8000, &tcp);
        let mut e = Vec::new();
        attr(&mut e, CTA_PROTOINFO | 0x8000, &info);
        attr(&mut e, CTA_MARK, &0x7a5f_0003u32.to_be_bytes());
        attr(&mut e, CTA_ID, &42u32.to_be_bytes());
        assert_eq!(entry(&e), Some((0x7a5f_0003, 42, true)));
        let mut udp = Vec::new();
        attr(&mut udp, CTA_MARK, &1u32.to_be_bytes());
        attr(&mut udp, CTA_ID, &2u32.to_be_bytes());
        assert_eq!(entry(&udp), Some((1, 2, false)));
        assert_eq!(entry(&[1, 2, 3]), None);
    }
}
