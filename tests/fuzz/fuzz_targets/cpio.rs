#![no_main]
//! See tests/fuzz/src/cpio.rs.

libfuzzer_sys::fuzz_target!(init: mkstick_fuzz::init("cpio"), |data: &[u8]| {
    mkstick_fuzz::cpio::run(data);
});
