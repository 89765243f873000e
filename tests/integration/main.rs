//! mkstick's one integration test binary.

mod common;

mod cli;
mod devices;
mod fetch;
mod flash_safety;
mod golden;
mod http;
mod image;
mod images;
mod inspect;
mod kubernetes;
mod layout;
mod network;
mod nfs_image;
mod node_logic;
mod os_contract;
mod plan;
mod progress;
mod reflash;
mod refuse;
mod registry;
mod shell;

#[cfg(feature = "boot-tests")]
mod boot;
#[cfg(feature = "boot-tests")]
mod fetch_boot;
#[cfg(feature = "boot-tests")]
mod k8s_boot;
#[cfg(feature = "boot-tests")]
mod secure_boot;
#[cfg(feature = "boot-tests")]
mod storage_boot;
