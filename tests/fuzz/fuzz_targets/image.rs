#![no_main]
//! See tests/fuzz/src/image.rs.

libfuzzer_sys::fuzz_target!(init: mkstick_fuzz::init("image"), |data: &[u8]| {
    mkstick_fuzz::image::run(data);
});
