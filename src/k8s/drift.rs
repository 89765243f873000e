//! Which `[kubernetes]` settings a cluster already on the data drives takes
//! when a stick built later boots, and which are fixed when the cluster is
//! made. `plan` prints this table; the node compares the fixed ones with
//! what the cluster was made with at every boot, and refuses to apply a
//! change to them (the cluster runs as it was), loudly.

/// When a change to a setting reaches an existing cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExisting {
    /// At the next boot, and how.
    Applied(&'static str),
    /// Never: why it is fixed when the cluster is made.
    FixedAtInit(&'static str),
}

/// Each setting (as `mkstick.toml` names it) and what an existing cluster
/// does with a change to it.
pub const SETTINGS: &[(&str, OnExisting)] = &[
    (
        "version",
        OnExisting::Applied("kubeadm upgrade apply, one minor version per boot"),
    ),
    (
        "api-server-sans",
        OnExisting::Applied(
            "the API server's certificate is made again, before the kubelet starts",
        ),
    ),
    (
        "[ingress], [nfs], [extra] manifests",
        OnExisting::Applied("applied again at every boot"),
    ),
    (
        "pod-cidr",
        OnExisting::FixedAtInit(
            "in the controller manager and kube-proxy; pods hold its addresses",
        ),
    ),
    (
        "service-cidr",
        OnExisting::FixedAtInit(
            "Services hold its addresses; the API certificate names the first one",
        ),
    ),
    (
        "cluster-name",
        OnExisting::FixedAtInit("kubeadm writes it into every kubeconfig"),
    ),
    (
        "advertise-address, [network] address",
        OnExisting::FixedAtInit(
            "etcd, the API server, certificates and kubeconfigs are bound to it",
        ),
    ),
];

/// The fixed settings the node compares, as `KEY=VALUE` words for
/// kubernetes.env's FIXED_SETTINGS (the address is compared on its own,
/// with the address the cluster runs at).
pub fn fixed_settings_env(pod_cidr: &str, service_cidr: &str, cluster_name: &str) -> String {
    let values = [
        ("pod-cidr", pod_cidr),
        ("service-cidr", service_cidr),
        ("cluster-name", cluster_name),
    ];
    debug_assert!(values
        .iter()
        .all(|(k, _)| matches!(setting(k), Some(OnExisting::FixedAtInit(_)))));
    values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What an existing cluster does with a change to `key`.
pub fn setting(key: &str) -> Option<OnExisting> {
    SETTINGS.iter().find(|(k, _)| *k == key).map(|(_, o)| *o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_compared_setting_is_fixed_and_each_setting_is_classified_once() {
        let env = fixed_settings_env("10.244.0.0/16", "10.96.0.0/12", "mkstick");
        assert_eq!(
            env,
            "pod-cidr=10.244.0.0/16 service-cidr=10.96.0.0/12 cluster-name=mkstick"
        );
        for word in env.split(' ') {
            let key = word.split_once('=').unwrap().0;
            assert!(
                matches!(setting(key), Some(OnExisting::FixedAtInit(_))),
                "{key}"
            );
        }
        assert!(matches!(
            setting("api-server-sans"),
            Some(OnExisting::Applied(_))
        ));
        let mut keys: Vec<&str> = SETTINGS.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), SETTINGS.len());
    }
}
