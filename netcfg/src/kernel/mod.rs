//! The kernel side: netlink over rtnetlink, sysctls, namespaces, features.

pub mod dump;
pub mod events;
pub mod features;
pub mod garp;
pub mod ipv6;
pub mod link;
pub mod netns;
pub mod state;
pub mod sysctl;
pub mod ve;
