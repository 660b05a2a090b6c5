//! A raw IPv4 datagram, as a raw protocol-112 socket delivers it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vrrp_fuzz::ipv4(data);
});
