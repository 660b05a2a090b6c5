//! Adding and removing the addresses an instance holds while Master, over rtnetlink.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressScope};
use rtnetlink::AddressMessageBuilder;

use super::Error;

/// Prefix length a virtual address gets when none is configured: a host route, as in
/// keepalived.
pub fn default_prefix_len(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// One address an instance holds while Master, where and how it goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// The interface it goes on.
    pub ifindex: u32,
    /// IPv4 label (`eth0:vip`).
    pub label: Option<String>,
    /// `rt_scope_t`; `None`: universe.
    pub scope: Option<u8>,
    /// IPv4 broadcast address.
    pub broadcast: Option<Ipv4Addr>,
}

impl HeldAddress {
    /// `address/prefix_len` on `ifindex`, nothing else set.
    pub fn new(address: IpAddr, prefix_len: u8, ifindex: u32) -> HeldAddress {
        HeldAddress {
            address,
            prefix_len,
            ifindex,
            label: None,
            scope: None,
            broadcast: None,
        }
    }
}

/// The addresses one instance holds while Master (virtual IPs and excluded ones).
#[derive(Debug, Clone)]
pub struct VirtualAddressSet {
    handle: rtnetlink::Handle,
    addresses: Vec<HeldAddress>,
}

impl VirtualAddressSet {
    /// The prefix lengths must fit their families.
    pub fn new(
        handle: rtnetlink::Handle,
        addresses: Vec<HeldAddress>,
    ) -> Result<VirtualAddressSet, Error> {
        for a in &addresses {
            if a.prefix_len > default_prefix_len(a.address) {
                return Err(Error::InvalidPrefixLength {
                    address: a.address,
                    prefix_len: a.prefix_len,
                });
            }
        }
        Ok(VirtualAddressSet { handle, addresses })
    }

    pub fn addresses(&self) -> &[HeldAddress] {
        &self.addresses
    }

    /// Adds every address; one already there is fine. IPv6 addresses skip duplicate
    /// address detection (IFA_F_NODAD): the VRRP election already decided who owns
    /// them, and a tentative address would not answer for a second or more.
    ///
    /// Tries every address and returns the errors of those that failed.
    pub async fn add_all(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        for a in &self.addresses {
            let mut request = self
                .handle
                .address()
                .add(a.ifindex, a.address, a.prefix_len);
            let m = request.message_mut();
            if a.address.is_ipv6() {
                m.header.flags |= AddressHeaderFlags::Nodad;
            }
            if let Some(scope) = a.scope {
                m.header.scope = AddressScope::from(scope);
            }
            if let Some(label) = &a.label {
                m.attributes.push(AddressAttribute::Label(label.clone()));
            }
            if let Some(brd) = a.broadcast {
                m.attributes
                    .retain(|x| !matches!(x, AddressAttribute::Broadcast(_)));
                m.attributes.push(AddressAttribute::Broadcast(brd));
            }
            match request.execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => errors.push(Error::Netlink {
                    op: format!("add {}/{}", a.address, a.prefix_len),
                    source: e,
                }),
            }
        }
        errors
    }

    /// Removes every address; one already gone is fine. Returns the failures.
    pub async fn remove_all(&self) -> Vec<Error> {
        let mut errors = Vec::new();
        for a in &self.addresses {
            let message = match a.address {
                IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
                    .index(a.ifindex)
                    .address(v4, a.prefix_len)
                    .build(),
                IpAddr::V6(v6) => AddressMessageBuilder::<Ipv6Addr>::new()
                    .index(a.ifindex)
                    .address(v6, a.prefix_len)
                    .build(),
            };
            match self.handle.address().del(message).execute().await {
                Ok(()) => {}
                // IPv4 answers EADDRNOTAVAIL, IPv6 ENOENT (or ENODEV once the
                // interface is gone, taking its addresses with it).
                Err(e)
                    if matches!(
                        errno(&e),
                        Some(libc::EADDRNOTAVAIL | libc::ENOENT | libc::ENODEV)
                    ) => {}
                Err(e) => errors.push(Error::Netlink {
                    op: format!("remove {}/{}", a.address, a.prefix_len),
                    source: e,
                }),
            }
        }
        errors
    }
}

/// The errno of a netlink NACK.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}
