//! Kubernetes: its version rules ([`version`]) and the kubeadm config
//! ([`kubeadm`]). The release mkstick installs is a download, in
//! [`crate::os::kubernetes`].

pub mod kubeadm;
pub mod version;
