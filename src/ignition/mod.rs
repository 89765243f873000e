//! Render stage, Ignition part: [`Plan`] -> typed Ignition spec 3.3.0 [`Config`].
//!
//! A live system runs Ignition at every boot, so every file and link is
//! written with `overwrite: true`, every file has an explicit mode, and
//! nothing here ever formats a disk.

mod types;

pub use types::*;

use crate::plan::{OverlayFile, Plan};
use base64::Engine;

pub const SPEC_VERSION: &str = "3.3.0";

/// The Ignition config mkstick puts on the stick.
pub fn render(plan: &Plan) -> Config {
    let node = &plan.node;
    let mut files = vec![
        File::new(
            "/etc/hostname",
            0o644,
            format!("{}\n", node.hostname).as_bytes(),
        ),
        File::new(
            "/etc/mkstick/release",
            0o644,
            plan.release_file().as_bytes(),
        ),
    ];
    let mut units = Vec::new();
    for f in &plan.overlay {
        match f {
            OverlayFile::Unit { name, contents } => units.push(Unit {
                name: name.clone(),
                enabled: Some(contents.lines().any(|l| l.trim() == "[Install]")),
                contents: Some(contents.clone()),
                ..Unit::default()
            }),
            OverlayFile::File {
                path,
                mode,
                contents,
            } => files.push(File::new(path, *mode, contents)),
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    units.sort_by(|a, b| a.name.cmp(&b.name));

    let merge = plan
        .extra_ignition
        .iter()
        .map(|x| Resource {
            source: data_url(&x.contents),
            compression: None,
            verification: Verification {
                hash: Some(format!("sha512-{}", x.sha512_hex)),
            },
        })
        .collect();

    Config {
        ignition: Ignition {
            version: SPEC_VERSION.to_string(),
            config: IgnitionConfig { merge },
        },
        passwd: Passwd {
            users: vec![User {
                name: "core".to_string(),
                ssh_authorized_keys: node
                    .ssh_authorized_keys
                    .iter()
                    .map(|k| k.to_string())
                    .collect(),
                password_hash: node.password_hash.as_ref().map(|h| h.to_string()),
            }],
        },
        storage: Storage {
            files,
            links: vec![Link {
                path: "/etc/localtime".to_string(),
                target: format!("../usr/share/zoneinfo/{}", node.timezone),
                hard: Some(false),
                overwrite: Some(true),
            }],
            directories: Vec::new(),
        },
        systemd: Systemd { units },
    }
}

impl File {
    /// A file written at every boot, replacing whatever is there.
    pub fn new(path: &str, mode: u32, contents: &[u8]) -> File {
        File {
            path: path.to_string(),
            overwrite: Some(true),
            mode: Some(mode),
            contents: Some(Resource {
                source: data_url(contents),
                compression: None,
                verification: Verification::default(),
            }),
        }
    }
}

/// Serialize a config as Ignition reads it: compact JSON with a final newline.
pub fn to_json(config: &Config) -> Vec<u8> {
    let mut out =
        serde_json::to_vec_pretty(config).expect("typed Ignition structs always serialize");
    out.push(b'\n');
    out
}

/// An RFC 2397 data URL: percent-encoded text when the bytes are UTF-8,
/// base64 otherwise (both are what Butane emits).
pub fn data_url(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let mut out = String::from("data:,");
            for b in text.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        }
        Err(_) => format!(
            "data:;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
    }
}

/// Decode a data URL written by [`data_url`] (or any base64/percent one).
pub fn decode_data_url(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    if meta.ends_with(";base64") {
        return base64::engine::general_purpose::STANDARD.decode(data).ok();
    }
    let bytes = data.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_round_trip_text_and_binary() {
        for sample in [
            &b"hello world\n100% = \"quoted\" & #hash\n"[..],
            &[0u8, 159, 146, 150, 255][..],
            "grüße\n".as_bytes(),
        ] {
            let url = data_url(sample);
            assert_eq!(decode_data_url(&url).unwrap(), sample, "{url}");
        }
        assert_eq!(data_url(b"a b/c\n"), "data:,a%20b/c%0A");
        assert!(data_url(&[0xff]).starts_with("data:;base64,"));
    }
}
