//! The virtual router MAC address (RFC 5798 §7.3): 00-00-5E-00-01-{VRID} for IPv4,
//! 00-00-5E-00-02-{VRID} for IPv6, carried by a macvlan over the instance's interface
//! (keepalived's `use_vmac`).
//!
//! With it, the Master's virtual addresses, its adverts and its announcements all use
//! the virtual MAC, so a failover changes no host's neighbour entry: the switch only
//! learns the MAC on another port.
//!
//! The macvlan is up only while Master: a Backup's copy of the MAC must send nothing
//! (IPv6 would send MLD reports from it) or the switch would learn it on the wrong port.
//! Adverts are still received on the parent interface.
//!
//! Linux answers ARP for any local address on any interface (`arp_ignore` 0): the
//! parent would answer for the virtual addresses with its own MAC. And when the Master
//! replies to a host it has no neighbour entry for, the ARP request it sends out of the
//! parent names the virtual address as sender, with the parent's MAC (`arp_announce`
//! 0), which moves that host's entry for the virtual address to the parent's MAC. So
//! while a macvlan of this process uses it, the parent gets `arp_ignore = 1` (answer
//! only for its own addresses) and `arp_announce = 2` (ask with its own address), and
//! its old values back after.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use futures::TryStreamExt;
use netlink_packet_route::address::AddressHeaderFlags;
use netlink_packet_route::link::MacVlanMode;
use rtnetlink::{LinkMacVlan, LinkUnspec};

use super::link::HardwareAddress;
use super::sysctl;
use super::Error;
use crate::wire::{AddressFamily, Vrid};

/// The virtual router MAC of `vrid` (RFC 5798 §7.3).
pub fn virtual_mac(vrid: Vrid, family: AddressFamily) -> HardwareAddress {
    let kind = match family {
        AddressFamily::Ipv4 => 0x01,
        AddressFamily::Ipv6 => 0x02,
    };
    [0x00, 0x00, 0x5e, 0x00, kind, vrid.get()]
}

/// The macvlan's name: unique per parent (by index), VRID and family, and within
/// IFNAMSIZ: `vr51.4` over interface 4, `vr6.51.4` for IPv6.
pub fn interface_name(parent_index: u32, vrid: Vrid, family: AddressFamily) -> Option<String> {
    let name = match family {
        AddressFamily::Ipv4 => format!("vr{}.{parent_index}", vrid.get()),
        AddressFamily::Ipv6 => format!("vr6.{}.{parent_index}", vrid.get()),
    };
    (name.len() <= 15).then_some(name)
}

/// The parent's sysctls set while a macvlan uses it.
const PARENT_SYSCTLS: [(&str, &str); 2] = [("arp_ignore", "1"), ("arp_announce", "2")];

/// Parents whose sysctls this process changed: how many macvlans use each, and the
/// values to put back.
type Saved = Vec<(&'static str, String)>;
static PARENTS: Mutex<Option<HashMap<String, (usize, Saved)>>> = Mutex::new(None);

/// A macvlan carrying the virtual MAC; removed by [`VirtualMacLink::remove`].
#[derive(Debug)]
pub struct VirtualMacLink {
    handle: rtnetlink::Handle,
    pub name: String,
    pub index: u32,
    pub mac: HardwareAddress,
    parent: String,
    family: AddressFamily,
    /// IPv6: the parent's link-local address, which adverts are sent from.
    link_local: Option<IpAddr>,
}

impl VirtualMacLink {
    /// Creates the macvlan, down. A leftover of the same name (a killed run) is
    /// replaced.
    ///
    /// Mode bridge, not private: in private mode the kernel hands a multicast frame
    /// whose source MAC is one of the parent's own up macvlans to that macvlan only. Two
    /// Masters of one VRID (a healing split brain) send from the same virtual MAC, so
    /// each would swallow the other's adverts and never hear them on the parent.
    pub async fn create(
        handle: &rtnetlink::Handle,
        parent: &str,
        parent_index: u32,
        vrid: Vrid,
        family: AddressFamily,
        link_local: Option<IpAddr>,
    ) -> Result<VirtualMacLink, Error> {
        let name = interface_name(parent_index, vrid, family)
            .ok_or_else(|| Error::InterfaceNotFound(format!("vmac name for {parent}")))?;
        let mac = virtual_mac(vrid, family);
        let existing = handle
            .link()
            .get()
            .match_name(name.clone())
            .execute()
            .try_next()
            .await;
        if let Ok(Some(old)) = existing {
            let _ = handle.link().del(old.header.index).execute().await;
        }
        let message = LinkMacVlan::new(&name, parent_index, MacVlanMode::Bridge)
            .address(mac.to_vec())
            .build();
        handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| Error::Netlink {
                op: format!("create macvlan {name} over {parent}"),
                source: e,
            })?;
        let index = handle
            .link()
            .get()
            .match_name(name.clone())
            .execute()
            .try_next()
            .await
            .map_err(|e| Error::Netlink {
                op: format!("get link {name}"),
                source: e,
            })?
            .ok_or_else(|| Error::InterfaceNotFound(name.clone()))?
            .header
            .index;
        let link = VirtualMacLink {
            handle: handle.clone(),
            name,
            index,
            mac,
            parent: parent.to_owned(),
            family,
            link_local,
        };
        if let Err(e) = link.configure() {
            link.delete().await;
            return Err(e);
        }
        Ok(link)
    }

    /// The sysctls keepalived sets for a VMAC.
    fn configure(&self) -> Result<(), Error> {
        match self.family {
            AddressFamily::Ipv4 => {
                // Answer ARP for the virtual addresses here, not elsewhere; hear a
                // peer whose source is one of our addresses (an owner).
                sysctl::write("ipv4", &self.name, "arp_ignore", "1")?;
                sysctl::write("ipv4", &self.name, "accept_local", "1")?;
                sysctl::write("ipv4", &self.name, "rp_filter", "0")?;
                let mut parents = PARENTS.lock().unwrap_or_else(PoisonError::into_inner);
                let parents = parents.get_or_insert_with(HashMap::new);
                if let Some((n, _)) = parents.get_mut(&self.parent) {
                    *n += 1;
                } else {
                    let mut saved = Vec::new();
                    for (key, value) in PARENT_SYSCTLS {
                        saved.push((key, sysctl::read("ipv4", &self.parent, key)?));
                        sysctl::write("ipv4", &self.parent, key, value)?;
                    }
                    parents.insert(self.parent.clone(), (1, saved));
                }
            }
            AddressFamily::Ipv6 => {
                // No addresses of its own (no EUI-64 from a MAC both routers share).
                sysctl::write("ipv6", &self.name, "addr_gen_mode", "1")?;
            }
        }
        Ok(())
    }

    /// Up, with the IPv6 link-local address to send from (an IPv6 interface loses its
    /// addresses when it goes down).
    pub async fn activate(&self) -> Result<(), Error> {
        self.set_up(true).await?;
        if let Some(ll) = self.link_local {
            let mut request = self.handle.address().add(self.index, ll, 64);
            request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
            match request.execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::EEXIST => {}
                Err(e) => {
                    return Err(Error::Netlink {
                        op: format!("add {ll} to {}", self.name),
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    pub async fn deactivate(&self) -> Result<(), Error> {
        self.set_up(false).await
    }

    async fn set_up(&self, up: bool) -> Result<(), Error> {
        let builder = LinkUnspec::new_with_index(self.index);
        let message = if up { builder.up() } else { builder.down() }.build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| Error::Netlink {
                op: format!("set {} {}", self.name, if up { "up" } else { "down" }),
                source: e,
            })
    }

    /// Deletes the macvlan and gives the parent its sysctls back once no macvlan of
    /// this process uses it.
    pub async fn remove(&self) {
        self.delete().await;
        if self.family == AddressFamily::Ipv4 {
            let mut parents = PARENTS.lock().unwrap_or_else(PoisonError::into_inner);
            let parents = parents.get_or_insert_with(HashMap::new);
            if let Some((n, old)) = parents.get_mut(&self.parent) {
                *n -= 1;
                if *n == 0 {
                    for (key, value) in old.iter() {
                        if let Err(e) = sysctl::write("ipv4", &self.parent, key, value) {
                            tracing::warn!(interface = %self.parent, error = %e, "cannot restore {key}");
                        }
                    }
                    parents.remove(&self.parent);
                }
            }
        }
    }

    async fn delete(&self) {
        match self.handle.link().del(self.index).execute().await {
            Ok(()) => tracing::info!(interface = %self.name, "virtual MAC interface removed"),
            Err(e) => {
                tracing::warn!(interface = %self.name, error = %e, "cannot remove virtual MAC interface")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_and_name_per_rfc_and_family() {
        let vrid = Vrid::new(51).expect("non-zero");
        assert_eq!(
            virtual_mac(vrid, AddressFamily::Ipv4),
            [0, 0, 0x5e, 0, 1, 51]
        );
        assert_eq!(
            virtual_mac(vrid, AddressFamily::Ipv6),
            [0, 0, 0x5e, 0, 2, 51]
        );
        assert_eq!(
            interface_name(4, vrid, AddressFamily::Ipv4).as_deref(),
            Some("vr51.4")
        );
        assert_eq!(
            interface_name(4, vrid, AddressFamily::Ipv6).as_deref(),
            Some("vr6.51.4")
        );
        let max = Vrid::new(255).expect("non-zero");
        assert_eq!(
            interface_name(999_999_999, max, AddressFamily::Ipv4).map(|n| n.len()),
            Some(15)
        );
        assert_eq!(interface_name(999_999_999, max, AddressFamily::Ipv6), None);
    }
}
