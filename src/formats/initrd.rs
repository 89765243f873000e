//! The config initrd: a gzip-compressed newc cpio holding the Ignition config,
//! built like `coreos-installer pxe ignition wrap` (which uses xz): the file
//! mode 0600, uid/gid 0, mtime 0, parent directories first, then a trailer.

use anyhow::{bail, Context, Result};
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use std::io::{Read, Write};

const NEWC_MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;

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

/// An uncompressed newc archive of `members` in the order given, each a
/// name, a full mode (type bits included: `0o040755` for a directory) and
/// contents: for fixtures shaped like another tool's archives.
pub fn newc_members(members: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ino, (name, mode, contents)) in (1u32..).zip(members) {
        let nlink = if mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        header(&mut out, ino, *mode, nlink, name, contents.len());
        out.extend_from_slice(contents);
        pad4(&mut out);
    }
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
            .get(at..at + HEADER_BYTES)
            .context("the cpio archive ends before its trailer")?;
        let h = Header::parse(head).with_context(|| format!("at byte {at}"))?;
        let (size, namesize) = (h.size as usize, h.namesize as usize);
        let name_bytes = data
            .get(at + HEADER_BYTES..at + HEADER_BYTES + namesize)
            .context("the cpio archive is cut inside a name")?;
        let name = String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .into_owned();
        at = (at + HEADER_BYTES + namesize).next_multiple_of(4);
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
            mode: h.mode,
            uid: h.uid,
            gid: h.gid,
            mtime: h.mtime,
            data: body,
        });
    }
}

/// The fixed-size part of a newc member header: the magic and 13 fields of
/// 8 hex digits (the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`).
pub const HEADER_BYTES: usize = 110;

/// The fields of one newc header that a reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub size: u32,
    /// The name's length in bytes, its closing NUL included.
    pub namesize: u32,
}

impl Header {
    /// Parse the first [`HEADER_BYTES`] of `head`: "070701", or "070702"
    /// (newc with a checksum, which the kernel reads alike).
    pub fn parse(head: &[u8]) -> Result<Header> {
        let head = head
            .get(..HEADER_BYTES)
            .context("the cpio header is cut short")?;
        if &head[..6] != NEWC_MAGIC && &head[..6] != b"070702" {
            bail!("not a newc cpio archive (bad magic)");
        }
        let field = |i: usize| -> Result<u32> {
            let s = std::str::from_utf8(&head[6 + i * 8..14 + i * 8])?;
            Ok(u32::from_str_radix(s, 16)?)
        };
        Ok(Header {
            mode: field(1)?,
            uid: field(2)?,
            gid: field(3)?,
            mtime: field(5)?,
            size: field(6)?,
            namesize: field(11)?,
        })
    }

    pub fn is_regular_file(&self) -> bool {
        self.mode & 0o170000 == S_IFREG
    }
}

/// The longest member name a reader of outside input accepts, its NUL
/// included: the kernel's `PATH_MAX`.
pub const MAX_NAME_BYTES: u32 = 4096;

/// Walk one newc archive on `r`, from its first header through its trailer,
/// without holding more than one name in memory. `visit` gets each member's
/// name (less a leading `./` or `/`, as the kernel unpacks it), its header,
/// and a reader limited to its body; what it leaves unread is skipped.
/// Padding is counted from the archive's first byte, which the kernel
/// requires to sit on a 4-byte boundary (`init/initramfs.c`).
pub fn walk<R: Read + ?Sized>(
    r: &mut R,
    visit: &mut dyn FnMut(&str, &Header, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    // Bytes of the archive read so far; at most 2^32 per member, so a
    // u64 cannot overflow before the input ends.
    let mut at = 0u64;
    loop {
        let mut head = [0u8; HEADER_BYTES];
        r.read_exact(&mut head)
            .context("the cpio archive ends before its trailer")?;
        let h = Header::parse(&head)?;
        if h.namesize == 0 || h.namesize > MAX_NAME_BYTES {
            bail!(
                "a cpio member name of {} bytes (at most {MAX_NAME_BYTES})",
                h.namesize
            );
        }
        let mut name = vec![0u8; h.namesize as usize];
        r.read_exact(&mut name)
            .context("the cpio archive is cut inside a name")?;
        at += (HEADER_BYTES + name.len()) as u64;
        skip(r, at.next_multiple_of(4) - at, &mut at)?;
        let name = String::from_utf8_lossy(name.strip_suffix(&[0]).unwrap_or(&name)).into_owned();
        if name == TRAILER {
            // The trailer has no body; the archive may still be padded,
            // which the caller skips with whatever follows.
            return Ok(());
        }
        let shown = name.trim_start_matches("./").trim_start_matches('/');
        let size = u64::from(h.size);
        let mut body = Read::take(&mut *r, size);
        visit(shown, &h, &mut body)?;
        let rest = body.limit();
        skip(r, rest, &mut at)?;
        at += size - rest;
        skip(r, at.next_multiple_of(4) - at, &mut at)?;
    }
}

/// Read and drop `n` bytes of an archive, counting them in `at`.
fn skip<R: Read + ?Sized>(r: &mut R, n: u64, at: &mut u64) -> Result<()> {
    let got = std::io::copy(&mut Read::take(&mut *r, n), &mut std::io::sink())
        .context("reading the cpio archive")?;
    if got != n {
        bail!("the cpio archive ends inside a member");
    }
    *at += n;
    Ok(())
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
