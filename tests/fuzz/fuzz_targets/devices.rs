#![no_main]
//! See tests/fuzz/src/devices.rs.

libfuzzer_sys::fuzz_target!(init: mkstick_fuzz::init("devices"), |data: &[u8]| {
    mkstick_fuzz::devices::run(data);
});
