#![no_main]
//! See tests/fuzz/src/openpgp.rs.

libfuzzer_sys::fuzz_target!(init: mkstick_fuzz::init("openpgp"), |data: &[u8]| {
    mkstick_fuzz::openpgp::run(data);
});
