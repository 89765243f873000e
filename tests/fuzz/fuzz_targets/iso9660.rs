#![no_main]
//! See tests/fuzz/src/iso9660.rs.

libfuzzer_sys::fuzz_target!(init: mkstick_fuzz::init("iso9660"), |data: &[u8]| {
    mkstick_fuzz::iso9660::run(data);
});
