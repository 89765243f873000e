//! The files of `overlays/` and `manifests/`, embedded at compile time by
//! `build.rs`.

/// One file of `overlays/<group>/<path>` or `manifests/<group>/<path>`.
#[derive(Debug)]
pub struct EmbeddedFile {
    pub group: &'static str,
    pub path: &'static str,
    pub executable: bool,
    pub contents: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/overlays.rs"));
