//! The live boot's contract between an OS's initramfs and its root
//! filesystem image (Fedora CoreOS's `rootfs.img`, the second initrd),
//! read from both while `assemble` copies them (and while `check` hashes
//! them, [`super::OsDir::verify`]): two [`Scan`]s in, a verdict out.
//!
//! Upstream facts (see `src/os/RESEARCH.md`, section 6):
//! - osbuild `stages/org.osbuild.coreos.live-artifacts.mono` (formerly
//!   coreos-assembler `src/cmd-buildextend-live`) writes the build's
//!   version plus a newline into `etc/coreos-live-initramfs`, in a
//!   `gzip -9` newc cpio appended to the ostree's dracut initramfs, and
//!   into `etc/coreos-live-rootfs` in `rootfs.img`, an uncompressed newc
//!   cpio whose first member must be `root.squashfs` or (since Fedora 42)
//!   `root.erofs`, then `etc`, the stamp and the `*.osmet` files.
//! - fedora-coreos-config `overlay.d/05core/usr/lib/dracut/modules.d/
//!   35coreos-live/coreos-livepxe-rootfs.sh` stops the boot when the two
//!   stamps differ ("Found initramfs version X but rootfs version Y"), and
//!   with "No rootfs image found" when the rootfs stamp is missing (and no
//!   `coreos.live.rootfs_url=` is given, which a stick never gives).
//!   `is-live-image` is `test -f /etc/coreos-live-initramfs`.
//! - An initramfs is a row of newc archives, each plain or compressed, with
//!   NUL padding between them (the kernel's `init/initramfs.c`,
//!   `Documentation/driver-api/early-userspace/buffer-format.rst`); a later
//!   member overwrites an earlier one of the same name. coreos-installer
//!   `src/io/initrd.rs` reads `etc/coreos-live-initramfs` the same way.
//!
//! Compressions read: zstd and gzip. Fedora CoreOS compresses its dracut
//! initramfs with `zstd -19` (coreos/fedora-coreos-config#1844, "compress
//! initrd with `zstd -19` on FCOS and RHCOS/SCOS 9"; rpm-ostree then appends
//! its `dracut-random.cpio.gz`, coreos/rpm-ostree#4683), and the stamp comes
//! in its own gzip segment after them; the Debian test OS has one zstd
//! segment (dracut `--zstd`). Any other compression before the stamp is an
//! error that names it.

use crate::formats::initrd::{self, Header};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The initramfs's stamp (osbuild `live-artifacts.mono`).
pub const INITRAMFS_STAMP: &str = "etc/coreos-live-initramfs";
/// The root filesystem image's stamp (osbuild `live-artifacts.mono`).
pub const ROOTFS_STAMP: &str = "etc/coreos-live-rootfs";
/// What the first member of `rootfs.img` may be: the dracut module
/// `35coreos-live` mounts it by these names (osbuild
/// `live-artifacts.mono`, `mkinitrd_pipe`: "it _must_ be the first file").
pub const ROOT_IMAGES: [&str; 2] = ["root.squashfs", "root.erofs"];

/// A stamp holds a version and a newline: anything larger is no stamp.
const MAX_STAMP_BYTES: u32 = 4096;
/// An initramfs unpacks into RAM; past this it is no initramfs, and a
/// crafted one cannot keep the build busy unpacking.
const MAX_UNPACKED_BYTES: u64 = 4 << 30;

/// gzip (RFC 1952), zstd (RFC 8878) and the magics of the compressions the
/// kernel can unpack but mkstick cannot (`lib/decompress.c`).
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const UNREAD_MAGICS: [(&[u8], &str); 6] = [
    (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
    (&[0x5d, 0, 0], "lzma"),
    (b"BZh", "bzip2"),
    (&[0x89, b'L', b'Z', b'O'], "lzo"),
    (&[0x02, 0x21, 0x4c, 0x18], "lz4"),
    (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
];

/// squashfs's magic at its first byte; EROFS's at byte 1024 (osbuild
/// `live-artifacts.mono` checks both at those offsets).
const SQUASHFS_MAGIC: &[u8] = b"hsqs";
const EROFS_MAGIC: &[u8] = &[0xe2, 0xe1, 0xf5, 0xe0];
const EROFS_MAGIC_AT: usize = 1024;

/// What one file told about the contract.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// The first member's name, and whether its content has the magic that
    /// name promises.
    pub first: Option<(String, bool)>,
    /// The last stamp found (a later member overwrites an earlier one),
    /// less trailing newlines, as the shell's `$(cat FILE)` reads it.
    pub stamp: Option<String>,
}

/// What to do about an OS directory that breaks the contract.
const FIX: &str = "fetch the OS again with `mkstick fetch`, or rebuild the OS directory";

/// One file's scan as [`check`] takes it: the file, and the scan's outcome.
pub type Scanned<'a> = (&'a Path, Result<Scan>);

/// The verdict on an OS with a root filesystem image (`os` names it, e.g.
/// "Fedora CoreOS"), from the scans of its initramfs and its rootfs: the
/// boot the initramfs would stop, as a build error instead.
pub fn check(os: &str, dir: &Path, initramfs: Scanned, rootfs: Scanned) -> Result<()> {
    let (rootfs_path, rootfs) = rootfs;
    let (initramfs_path, initramfs) = initramfs;
    let r = rootfs_path.display();
    let i = initramfs_path.display();
    let rootfs = rootfs.with_context(|| format!("reading {r}, the OS's root filesystem image"))?;
    match &rootfs.first {
        Some((name, true)) if ROOT_IMAGES.contains(&name.as_str()) => {}
        Some((name, false)) if ROOT_IMAGES.contains(&name.as_str()) => bail!(
            "{r} starts with {name}, but that is no {} image (its magic is missing); the OS directory is damaged: {FIX}",
            name.trim_start_matches("root.")
        ),
        Some((name, _)) => bail!(
            "{r} starts with `{name}`, but the live initramfs mounts the root filesystem from root.squashfs or root.erofs, the archive's first member; {FIX}"
        ),
        None => bail!("{r} is an empty archive, with no root filesystem in it; {FIX}"),
    }
    let Some(rootfs_stamp) = rootfs.stamp else {
        bail!(
            "{r} has no {ROOTFS_STAMP}, so the initramfs would stop the boot with \"No rootfs image found\"; {FIX}"
        );
    };
    let initramfs = initramfs.with_context(|| format!("reading {i} for its {INITRAMFS_STAMP}"))?;
    let Some(initramfs_stamp) = initramfs.stamp else {
        bail!(
            "{i} has no {INITRAMFS_STAMP}, so it is no live initramfs and would not boot from {r}; {FIX}"
        );
    };
    if initramfs_stamp != rootfs_stamp {
        bail!(
            "{r} is {os} {rootfs_stamp} but {i} is {os} {initramfs_stamp}: {} mixes two releases, and the initramfs would stop the boot (\"Found initramfs version {initramfs_stamp} but rootfs version {rootfs_stamp}\"); {FIX}",
            dir.display()
        );
    }
    Ok(())
}

/// How one file of the contract is scanned: [`scan_initramfs`] or
/// [`scan_rootfs`].
pub type Scanner = fn(&mut dyn BufRead) -> Result<Scan>;

/// Read a file with `read` (a copy or a hash), and with a `scan`ner, scan
/// the same bytes on a thread beside it ([`crate::io::TeeReader`]): one
/// pass over the file. Returns what `read` made, and the scan if there was
/// one; an error of `read` comes first.
pub fn read_beside<R: Read, T>(
    mut reader: R,
    scan: Option<Scanner>,
    read: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<(T, Option<Result<Scan>>)> {
    let Some(scan) = scan else {
        return Ok((read(&mut reader)?, None));
    };
    let mut tee = crate::io::TeeReader::new(reader, move |r| scan(r));
    let made = read(&mut tee)?;
    let scanned = tee.finish().map_err(anyhow::Error::from).and_then(|s| s);
    Ok((made, Some(scanned)))
}

/// Scan an initramfs for [`INITRAMFS_STAMP`].
pub fn scan_initramfs(r: &mut dyn BufRead) -> Result<Scan> {
    let mut scan = Scan::default();
    let mut r = CountingReader::new(r);
    let mut unpacked = 0u64;
    loop {
        if skip_zeros(&mut r)? {
            return Ok(scan);
        }
        let at = r.bytes;
        let mut magic = [0u8; 6];
        let got = read_some(&mut r, &mut magic)?;
        let head = &magic[..got];
        // The magic goes back in front of the segment it opens.
        let mut segment = std::io::Cursor::new(head.to_vec()).chain(&mut r);
        if head.starts_with(b"0707") {
            walk(&mut segment, INITRAMFS_STAMP, &mut scan)
                .with_context(|| format!("reading the cpio archive at byte {at}"))?;
        } else if head.starts_with(GZIP_MAGIC) || head.starts_with(ZSTD_MAGIC) {
            let gzip = head.starts_with(GZIP_MAGIC);
            let what = if gzip { "gzip" } else { "zstd" };
            // Both decoders read no further than their segment's end.
            let decoder: Box<dyn Read + '_> = if gzip {
                Box::new(flate2::bufread::GzDecoder::new(&mut segment))
            } else {
                Box::new(
                    ruzstd::decoding::StreamingDecoder::new(&mut segment)
                        .map_err(|e| anyhow::anyhow!("{e}"))
                        .with_context(|| format!("reading the zstd archive at byte {at}"))?,
                )
            };
            let left = MAX_UNPACKED_BYTES - unpacked;
            let mut limited = BufReader::new(decoder.take(left + 1));
            unpacked += walk_all(&mut limited, &mut scan)
                .with_context(|| format!("unpacking the {what} archive at byte {at}"))?;
            if unpacked > MAX_UNPACKED_BYTES {
                bail!(
                    "it unpacks to more than {} GiB, more than an initramfs holds",
                    MAX_UNPACKED_BYTES >> 30
                );
            }
        } else if let Some((_, name)) = UNREAD_MAGICS.iter().find(|(m, _)| head.starts_with(m)) {
            bail!(
                "at byte {at} it holds an archive compressed with {name}, which mkstick cannot unpack to read {INITRAMFS_STAMP} (it reads gzip and zstd)"
            );
        } else {
            bail!("at byte {at} there is neither a cpio archive nor a compressed one");
        }
    }
}

/// Scan a root filesystem image: its first member, and [`ROOTFS_STAMP`].
/// It is one uncompressed archive, or several with NUL padding between
/// them, which the kernel unpacks alike.
pub fn scan_rootfs(r: &mut dyn BufRead) -> Result<Scan> {
    let mut scan = Scan::default();
    let mut r = CountingReader::new(r);
    loop {
        let at = r.bytes;
        walk(&mut r, ROOTFS_STAMP, &mut scan).with_context(|| {
            format!("it is not an uncompressed newc cpio archive (at byte {at})")
        })?;
        if skip_zeros(&mut r)? {
            return Ok(scan);
        }
    }
}

/// Consume NUL padding; true at the end of the stream.
fn skip_zeros(r: &mut dyn BufRead) -> Result<bool> {
    loop {
        let (zeros, empty) = {
            let buf = r.fill_buf().context("reading the archive")?;
            (buf.iter().take_while(|&&b| b == 0).count(), buf.is_empty())
        };
        if empty {
            return Ok(true);
        }
        if zeros == 0 {
            return Ok(false);
        }
        r.consume(zeros);
    }
}

/// Walk the archives of an unpacked segment to its end; returns its length.
fn walk_all(r: &mut dyn BufRead, scan: &mut Scan) -> Result<u64> {
    let mut r = CountingReader::new(r);
    while !skip_zeros(&mut r)? {
        walk(&mut r, INITRAMFS_STAMP, scan)?;
    }
    Ok(r.bytes)
}

/// Walk one newc archive, noting its first member and the last `stamp`.
fn walk(r: &mut dyn Read, stamp: &str, scan: &mut Scan) -> Result<()> {
    initrd::walk(r, &mut |name: &str, h: &Header, body: &mut dyn Read| {
        if scan.first.is_none() {
            let magic = match name {
                "root.squashfs" => Some((0, SQUASHFS_MAGIC)),
                "root.erofs" => Some((EROFS_MAGIC_AT, EROFS_MAGIC)),
                _ => None,
            };
            let ok = match magic {
                Some((offset, magic)) => {
                    let mut head = vec![0u8; offset + magic.len()];
                    let got = read_some(body, &mut head)?;
                    got == head.len() && &head[offset..] == magic
                }
                None => false,
            };
            scan.first = Some((name.to_string(), ok));
        }
        if name == stamp && h.is_regular_file() {
            if h.size > MAX_STAMP_BYTES {
                bail!("{stamp} holds {} bytes, too many for a version", h.size);
            }
            let mut text = Vec::new();
            body.read_to_end(&mut text)
                .with_context(|| format!("reading {stamp}"))?;
            let text = String::from_utf8_lossy(&text);
            scan.stamp = Some(text.trim_end_matches('\n').to_string());
        }
        Ok(())
    })
}

fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..]).context("reading the archive")?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// A reader that counts the bytes read or consumed through it.
struct CountingReader<R> {
    inner: R,
    bytes: u64,
}

impl<R> CountingReader<R> {
    fn new(inner: R) -> Self {
        CountingReader { inner, bytes: 0 }
    }
}

impl<R: BufRead> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for CountingReader<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.bytes += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::initrd::{gzip, newc_members, S_IFDIR, S_IFREG};

    const DIR: u32 = S_IFDIR | 0o755;
    const FILE: u32 = S_IFREG | 0o644;

    fn squashfs() -> Vec<u8> {
        let mut b = b"hsqs".to_vec();
        b.extend((0..5000u32).map(|i| (i % 251) as u8));
        b
    }

    fn erofs() -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        b.extend_from_slice(EROFS_MAGIC);
        b.extend(vec![9u8; 3000]);
        b
    }

    /// Shaped like osbuild's `rootfs.img`.
    fn rootfs(root: (&str, &[u8]), stamp: Option<&str>) -> Vec<u8> {
        let mut m: Vec<(&str, u32, &[u8])> = vec![(root.0, FILE, root.1), ("etc", DIR, b"")];
        if let Some(s) = stamp {
            m.push((ROOTFS_STAMP, FILE, s.as_bytes()));
        }
        m.push(("fedora-coreos-metal.x86_64.raw.osmet", FILE, b"osmet"));
        newc_members(&m)
    }

    fn stamp_cpio(version: &str) -> Vec<u8> {
        newc_members(&[
            ("etc", DIR, b""),
            (INITRAMFS_STAMP, FILE, version.as_bytes()),
        ])
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    /// Pad to 4 bytes with NULs, as osbuild does before appending.
    fn pad(mut v: Vec<u8>) -> Vec<u8> {
        v.resize(v.len().next_multiple_of(4), 0);
        v
    }

    /// Fedora CoreOS's shape: an early uncompressed cpio, dracut's
    /// compressed one, then osbuild's gzip cpio with the stamp.
    fn fcos_initramfs(main: fn(&[u8]) -> Vec<u8>, version: &str) -> Vec<u8> {
        let early = newc_members(&[
            ("kernel", DIR, b""),
            ("kernel/x86/microcode/GenuineIntel.bin", FILE, &[1u8; 999]),
            ("early_cpio", FILE, b"1\n"),
        ]);
        let body = newc_members(&[("init", FILE, &[2u8; 70_001]), ("etc", DIR, b"")]);
        let mut out = pad(early);
        out.extend(pad(main(&body)));
        out.extend(pad(gzip(&stamp_cpio(version))));
        out
    }

    /// Feed `bytes` in reads of `step` bytes, through a tee as `assemble` does.
    fn scan(bytes: &[u8], step: usize, f: fn(&mut dyn BufRead) -> Result<Scan>) -> Result<Scan> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut tee = crate::io::TeeReader::new(Trickle(bytes, step), move |r| f(r));
        std::io::copy(&mut tee, &mut std::io::sink()).unwrap();
        tee.finish().unwrap()
    }

    #[test]
    fn stamps_are_found_in_every_shape_and_split_anywhere() {
        let v = "42.20250901.3.0";
        let shapes = [
            fcos_initramfs(gzip, v),
            fcos_initramfs(zstd, v),
            // The Debian test OS: one zstd cpio, the stamp inside.
            zstd(&newc_members(&[
                ("init", FILE, &[3u8; 5000]),
                ("etc", DIR, b""),
                (INITRAMFS_STAMP, FILE, format!("{v}\n").as_bytes()),
            ])),
            stamp_cpio(&format!("{v}\n")),
        ];
        for (i, bytes) in shapes.iter().enumerate() {
            for step in [1, 3, 7, 4096, 1 << 20] {
                let s = scan(bytes, step, scan_initramfs).unwrap();
                assert_eq!(s.stamp.as_deref(), Some(v), "shape {i} step {step}");
            }
        }
        for (root, bytes) in [("root.squashfs", squashfs()), ("root.erofs", erofs())] {
            let img = rootfs((root, &bytes), Some(&format!("{v}\n")));
            for step in [1, 5, 4096] {
                let s = scan(&img, step, scan_rootfs).unwrap();
                assert_eq!(s.first, Some((root.to_string(), true)));
                assert_eq!(s.stamp.as_deref(), Some(v));
            }
        }
    }

    #[test]
    fn a_rootfs_may_be_several_archives() {
        let mut img = pad(newc_members(&[("root.squashfs", FILE, &squashfs())]));
        img.extend(newc_members(&[(ROOTFS_STAMP, FILE, b"42.1\n")]));
        let s = scan(&img, 100, scan_rootfs).unwrap();
        assert_eq!(s.first, Some(("root.squashfs".to_string(), true)));
        assert_eq!(s.stamp.as_deref(), Some("42.1"));
        img.extend(b"junk");
        let e = format!("{:#}", scan(&img, 100, scan_rootfs).unwrap_err());
        assert!(
            e.starts_with("it is not an uncompressed newc cpio archive (at byte 5520)"),
            "{e}"
        );
    }

    #[test]
    fn the_last_stamp_wins_as_the_kernel_unpacks_them() {
        let mut two = pad(gzip(&stamp_cpio("41.1\n")));
        two.extend(stamp_cpio("42.2\n"));
        assert_eq!(
            scan(&two, 64, scan_initramfs).unwrap().stamp.as_deref(),
            Some("42.2")
        );
    }

    fn verdict(initramfs: &[u8], rootfs: &[u8]) -> String {
        let i = scan(initramfs, 4096, scan_initramfs);
        let r = scan(rootfs, 4096, scan_rootfs);
        let dir = Path::new("os");
        match check(
            "Fedora CoreOS",
            dir,
            (Path::new("os/initramfs.img"), i),
            (Path::new("os/rootfs.img"), r),
        ) {
            Ok(()) => "ok".into(),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn the_verdict_names_the_file_and_the_fix() {
        let sq = squashfs();
        let good = rootfs(("root.squashfs", &sq), Some("42.1\n"));
        assert_eq!(verdict(&fcos_initramfs(zstd, "42.1\n"), &good), "ok");
        let e = verdict(&fcos_initramfs(zstd, "41.9\n"), &good);
        assert_eq!(
            e,
            "os/rootfs.img is Fedora CoreOS 42.1 but os/initramfs.img is Fedora CoreOS 41.9: os mixes two releases, and the initramfs would stop the boot (\"Found initramfs version 41.9 but rootfs version 42.1\"); fetch the OS again with `mkstick fetch`, or rebuild the OS directory"
        );
        let e = verdict(
            &fcos_initramfs(zstd, "42.1\n"),
            &rootfs(("root.squashfs", &sq), None),
        );
        assert!(
            e.starts_with("os/rootfs.img has no etc/coreos-live-rootfs")
                && e.contains("No rootfs image found"),
            "{e}"
        );
        let e = verdict(&zstd(&newc_members(&[("init", FILE, b"x")])), &good);
        assert!(
            e.starts_with(
                "os/initramfs.img has no etc/coreos-live-initramfs, so it is no live initramfs"
            ),
            "{e}"
        );
        let e = verdict(
            &fcos_initramfs(zstd, "42.1\n"),
            &rootfs(("usr.squashfs", &sq), Some("42.1\n")),
        );
        assert!(
            e.starts_with(
                "os/rootfs.img starts with `usr.squashfs`, but the live initramfs mounts"
            ),
            "{e}"
        );
        let e = verdict(
            &fcos_initramfs(zstd, "42.1\n"),
            &rootfs(("root.erofs", &sq), Some("42.1\n")),
        );
        assert!(
            e.starts_with("os/rootfs.img starts with root.erofs, but that is no erofs image"),
            "{e}"
        );
        let e = verdict(&fcos_initramfs(zstd, "42.1\n"), &gzip(&good));
        assert!(e.starts_with("reading os/rootfs.img, the OS's root filesystem image: it is not an uncompressed newc cpio archive"), "{e}");
    }

    #[test]
    fn a_compression_mkstick_cannot_read_is_named() {
        let mut xz = pad(newc_members(&[("early_cpio", FILE, b"1\n")]));
        xz.extend([0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3]);
        let e = format!("{:#}", scan(&xz, 4096, scan_initramfs).unwrap_err());
        assert!(
            e.contains(
                "at byte 252 it holds an archive compressed with xz, which mkstick cannot unpack"
            ),
            "{e}"
        );
        let e = format!(
            "{:#}",
            scan(b"MZ\x90\x00junk", 4096, scan_initramfs).unwrap_err()
        );
        assert!(
            e.contains("at byte 0 there is neither a cpio archive nor a compressed one"),
            "{e}"
        );
    }

    #[test]
    fn damaged_or_crafted_input_is_an_error_not_a_panic() {
        let good = fcos_initramfs(zstd, "42.1\n");
        for cut in [1, 5, 110, 200, good.len() / 2, good.len() - 9] {
            let _ = scan(&good[..cut], 7, scan_initramfs);
        }
        for i in (0..good.len()).step_by(97) {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            let _ = scan(&bad, 4096, scan_initramfs);
        }
        // A stamp too large to be a version.
        let big = newc_members(&[(INITRAMFS_STAMP, FILE, &vec![b'4'; 5000])]);
        let e = format!("{:#}", scan(&big, 4096, scan_initramfs).unwrap_err());
        assert!(
            e.contains("holds 5000 bytes, too many for a version"),
            "{e}"
        );
        // A name longer than PATH_MAX.
        let long = "n".repeat(5000);
        let e = format!(
            "{:#}",
            scan(&newc_members(&[(&long, FILE, b"")]), 4096, scan_rootfs).unwrap_err()
        );
        assert!(e.contains("a cpio member name of 5001 bytes"), "{e}");
        // A header claiming a 4 GiB body that is not there.
        let mut huge = newc_members(&[("root.squashfs", FILE, b"hsqs")]);
        huge[54..62].copy_from_slice(b"ffffffff");
        assert!(scan(&huge, 4096, scan_rootfs).is_err());
    }
}
