//! Kubernetes release versions (`1.36.4`) and the upgrade rule kubeadm
//! enforces: one minor version at a time, never down.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for KubeVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let fix = "write a Kubernetes release like \"1.36.4\"";
        let t = s.strip_prefix('v').unwrap_or(s);
        let parts: Vec<&str> = t.split('.').collect();
        let nums: Option<Vec<u32>> = parts
            .iter()
            .map(|p| {
                (!p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse().ok())
                    .flatten()
            })
            .collect();
        match nums.as_deref() {
            Some([major, minor, patch]) => Ok(KubeVersion {
                major: *major,
                minor: *minor,
                patch: *patch,
            }),
            Some([_, _]) => Err(format!(
                "`{s}` names a minor version; mkstick pins a release, so add the patch number; {fix}"
            )),
            _ => Err(format!("`{s}` is not a Kubernetes version; {fix}")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for KubeVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for KubeVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

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
    fn parses_releases_only() {
        assert_eq!(v("1.36.4").to_string(), "1.36.4");
        assert_eq!(v("v1.36.4"), v("1.36.4"));
        assert!("1.36".parse::<KubeVersion>().unwrap_err().contains("patch"));
        for bad in [
            "",
            "1",
            "1.36.4.1",
            "1.x.4",
            "1.36.-1",
            "1.36.4-rc.0",
            " 1.36.4",
        ] {
            assert!(bad.parse::<KubeVersion>().is_err(), "{bad}");
        }
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
