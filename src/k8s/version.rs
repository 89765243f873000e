//! The upgrade rule kubeadm enforces between Kubernetes releases: one
//! minor version at a time, never down. The release type itself is parsed
//! with the config ([`crate::config::kubernetes::KubeVersion`]).

use crate::config::kubernetes::KubeVersion;

/// What a node whose cluster runs `from` does when it boots a stick
/// carrying `to`. The booted node runs the same logic in
/// `overlays/kubernetes/usr/local/bin/mkstick-kubernetes`; this copy lets
/// `mkstick plan` explain it, and the tests pin both to the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Same release: the kubelet starts from the kept state.
    Keep,
    /// The next minor, or a newer patch: `kubeadm upgrade apply`.
    Upgrade,
    /// A downgrade, or more than one minor ahead: refused, cluster untouched.
    Refuse,
}

pub fn step(from: KubeVersion, to: KubeVersion) -> Step {
    if from == to {
        Step::Keep
    } else if from.major != to.major || to < from {
        Step::Refuse
    } else if to.minor == from.minor || to.minor == from.minor + 1 {
        Step::Upgrade
    } else {
        Step::Refuse
    }
}

/// The oldest cluster version a stick carrying `to` upgrades: every release
/// from it up to (not including) `to` gets [`Step::Upgrade`], `to` itself
/// [`Step::Keep`], anything else [`Step::Refuse`]. mkstick writes it into
/// `/etc/mkstick/kubernetes.env`, so the node script applies this rule
/// without a copy of it.
pub fn upgrades_from(to: KubeVersion) -> KubeVersion {
    KubeVersion {
        major: to.major,
        minor: to.minor.saturating_sub(1),
        patch: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        s.parse().unwrap()
    }

    #[test]
    fn upgrade_rule_is_one_minor_at_a_time() {
        assert_eq!(step(v("1.36.4"), v("1.36.4")), Step::Keep);
        assert_eq!(step(v("1.36.4"), v("1.36.5")), Step::Upgrade);
        assert_eq!(step(v("1.36.4"), v("1.37.0")), Step::Upgrade);
        assert_eq!(step(v("1.36.4"), v("1.37.9")), Step::Upgrade);
        assert_eq!(step(v("1.36.4"), v("1.38.0")), Step::Refuse);
        assert_eq!(step(v("1.36.4"), v("1.36.3")), Step::Refuse);
        assert_eq!(step(v("1.36.4"), v("1.35.9")), Step::Refuse);
        assert_eq!(step(v("1.36.4"), v("2.0.0")), Step::Refuse);
    }

    /// The node script knows only `upgrades_from(to)..to`; it must give the
    /// same answer as `step` for every pair.
    #[test]
    fn upgrades_from_bounds_exactly_the_upgrades() {
        let versions = [
            "0.36.4", "1.0.0", "1.0.3", "1.1.0", "1.34.9", "1.35.0", "1.35.9", "1.36.0", "1.36.4",
            "1.36.10", "1.37.0", "1.37.3", "1.38.0", "2.0.0", "2.1.0",
        ];
        for from in versions.map(v) {
            for to in versions.map(v) {
                let window = upgrades_from(to) <= from && from < to;
                assert_eq!(step(from, to) == Step::Upgrade, window, "{from} -> {to}");
            }
        }
    }
}
