//! Kubernetes: the pinned release mkstick installs ([`binaries`]).

pub mod binaries;
