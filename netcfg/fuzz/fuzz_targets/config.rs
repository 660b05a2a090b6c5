//! Any bytes as a config folder: `host.toml`, then `ve/` files after
//! `\n#=== ve/NAME\n` lines (see `src/lib.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = netcfg_fuzz::load(data);
});
