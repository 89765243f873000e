#![no_main]
//! See tests/fuzz/src/release_metadata.rs.

libfuzzer_sys::fuzz_target!(init: mkstick_fuzz::init("release_metadata"), |data: &[u8]| {
    mkstick_fuzz::release_metadata::run(data);
});
