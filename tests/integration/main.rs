//! mkstick's one integration test binary.

mod common;

mod cli;
mod devices;
mod golden;
mod image;

#[cfg(feature = "boot-tests")]
mod boot;
#[cfg(feature = "boot-tests")]
mod storage_boot;
