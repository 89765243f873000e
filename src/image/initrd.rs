//! The config initrd: a gzip-compressed newc cpio holding the Ignition config,
//! built like `coreos-installer pxe ignition wrap` (which uses xz): the file
//! mode 0600, uid/gid 0, mtime 0, parent directories first, then a trailer.

use anyhow::{bail, Context, Result};
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use std::io::{Read, Write};

const NEWC_MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// One archive member as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub data: Vec<u8>,
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, name: &str, size: usize) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        size as u32,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(NEWC_MAGIC);
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

/// An uncompressed newc archive holding `contents` at `path` with `mode`.
pub fn newc(path: &str, mode: u32, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 512);
    let parts: Vec<&str> = path.split('/').collect();
    let mut ino = 1;
    for i in 1..parts.len() {
        header(&mut out, ino, S_IFDIR | 0o755, 2, &parts[..i].join("/"), 0);
        ino += 1;
    }
    header(
        &mut out,
        ino,
        S_IFREG | (mode & 0o7777),
        1,
        path,
        contents.len(),
    );
    out.extend_from_slice(contents);
    pad4(&mut out);
    header(&mut out, 0, 0, 1, TRAILER, 0);
    out
}

/// gzip with no file name and mtime 0, so the bytes depend only on the input.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .write(Vec::with_capacity(data.len() / 2 + 64), Compression::best());
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// The config initrd for `config` placed at `path` inside the initramfs.
pub fn wrap(path: &str, config: &[u8]) -> Vec<u8> {
    gzip(&newc(path, 0o600, config))
}

/// Read back a (possibly gzip-compressed) newc archive.
pub fn read(bytes: &[u8]) -> Result<Vec<Member>> {
    let raw;
    let data: &[u8] = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .context("decompressing the config initrd")?;
        raw = out;
        &raw
    } else {
        bytes
    };
    let mut members = Vec::new();
    let mut at = 0usize;
    loop {
        let head = data
            .get(at..at + 110)
            .context("the cpio archive ends before its trailer")?;
        if &head[..6] != NEWC_MAGIC {
            bail!("not a newc cpio archive (bad magic at byte {at})");
        }
        let field = |i: usize| -> Result<u32> {
            let s = std::str::from_utf8(&head[6 + i * 8..14 + i * 8])?;
            Ok(u32::from_str_radix(s, 16)?)
        };
        let (mode, uid, gid, mtime) = (field(1)?, field(2)?, field(3)?, field(5)?);
        let (size, namesize) = (field(6)? as usize, field(11)? as usize);
        let name_bytes = data
            .get(at + 110..at + 110 + namesize)
            .context("the cpio archive is cut inside a name")?;
        let name = String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .into_owned();
        at = (at + 110 + namesize).next_multiple_of(4);
        let body = data
            .get(at..at + size)
            .context("the cpio archive is cut inside a file")?
            .to_vec();
        at = (at + size).next_multiple_of(4);
        if name == TRAILER {
            return Ok(members);
        }
        members.push(Member {
            name,
            mode,
            uid,
            gid,
            mtime,
            data: body,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trips_with_fixed_metadata() {
        let cfg = br#"{"ignition":{"version":"3.3.0"}}"#;
        let img = wrap("config.ign", cfg);
        assert_eq!(&img[..2], &[0x1f, 0x8b], "gzip");
        assert_eq!(&img[4..8], &[0, 0, 0, 0], "gzip mtime is 0");
        assert_eq!(img[3] & 0x08, 0, "no file name in the gzip header");
        let m = read(&img).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "config.ign");
        assert_eq!(m[0].mode, 0o100600);
        assert_eq!((m[0].uid, m[0].gid, m[0].mtime), (0, 0, 0));
        assert_eq!(m[0].data, cfg);
        assert_eq!(wrap("config.ign", cfg), img, "deterministic");
    }

    #[test]
    fn nested_paths_get_parent_directories_first() {
        let m = read(&newc("usr/share/oem/config.ign", 0o600, b"x")).unwrap();
        let names: Vec<_> = m.iter().map(|m| (m.name.as_str(), m.mode)).collect();
        assert_eq!(
            names,
            [
                ("usr", 0o040755),
                ("usr/share", 0o040755),
                ("usr/share/oem", 0o040755),
                ("usr/share/oem/config.ign", 0o100600)
            ]
        );
    }

    #[test]
    fn every_alignment_of_name_and_body_reads_back() {
        for name_len in 1..9 {
            for body_len in 0..9 {
                let name = "n".repeat(name_len);
                let body = vec![b'b'; body_len];
                let m = read(&newc(&name, 0o600, &body)).unwrap();
                assert_eq!(
                    (m[0].name.as_str(), m[0].data.as_slice()),
                    (name.as_str(), &body[..])
                );
            }
        }
    }

    #[test]
    fn damaged_archives_are_errors_not_panics() {
        let a = newc("config.ign", 0o600, b"hello");
        for cut in [0, 5, 100, 115, a.len() - 4] {
            assert!(read(&a[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = a.clone();
        bad[0] = b'9';
        assert!(read(&bad).is_err());
    }
}
