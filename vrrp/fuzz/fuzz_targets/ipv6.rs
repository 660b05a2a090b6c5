//! A VRRP payload from a raw IPv6 socket (the kernel strips the IPv6 header).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vrrp_fuzz::ipv6(data);
});
