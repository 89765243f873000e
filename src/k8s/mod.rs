//! Kubernetes: its version rules ([`version`]), the kubeadm config
//! ([`kubeadm`]) and which settings an existing cluster takes ([`drift`]). The release mkstick installs is a download, in
//! [`crate::os::kubernetes`].

pub mod drift;
pub mod kubeadm;
pub mod version;
