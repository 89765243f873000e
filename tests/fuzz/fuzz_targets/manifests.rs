#![no_main]
//! See tests/fuzz/src/manifests.rs.

libfuzzer_sys::fuzz_target!(init: mkstick_fuzz::init("manifests"), |data: &[u8]| {
    mkstick_fuzz::manifests::run(data);
});
