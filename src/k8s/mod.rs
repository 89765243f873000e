//! Kubernetes: the release mkstick installs ([`binaries`]), its version
//! rules ([`version`]) and the kubeadm config ([`kubeadm`]).

pub mod binaries;
pub mod kubeadm;
pub mod version;
