#![no_main]
//! See tests/fuzz/src/config.rs.

libfuzzer_sys::fuzz_target!(init: mkstick_fuzz::init("config"), |data: &[u8]| {
    mkstick_fuzz::config::run(data);
});
