//! A small, partial ISO 9660 reader: a verified ISO -> one file's bytes.
//!
//! Fedora CoreOS publishes its EFI boot chain only as `images/efiboot.img`
//! inside the live ISO. coreos-installer reads ISOs the same way
//! (`src/io/iso9660.rs`): the primary volume descriptor, then directory
//! records, matching names without case and without the `;1` version.
//! Rock Ridge and Joliet names are not needed for that path, so they are
//! not read. ECMA-119 is the reference for every offset below.

use anyhow::{bail, Context, Result};
use std::io::{Read, Seek, SeekFrom};

/// ECMA-119 6.1.2: logical sectors are 2048 bytes.
const SECTOR_BYTES: u64 = 2048;
/// ECMA-119 6.2.1: the system area is sectors 0-15; descriptors start at 16.
const FIRST_DESCRIPTOR_SECTOR: u64 = 16;
/// ECMA-119 8.1.1: volume descriptor types.
const PRIMARY_DESCRIPTOR: u8 = 1;
const TERMINATOR_DESCRIPTOR: u8 = 255;
/// ECMA-119 8.4.18: the root directory record sits at byte 156 of the PVD.
const ROOT_RECORD_OFFSET: usize = 156;
/// ECMA-119 9.1.6: file flag bit 1 marks a directory.
const FLAG_DIRECTORY: u8 = 0x02;
/// A guard against a damaged ISO that points a directory at gigabytes.
const MAX_DIR_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone)]
struct Record {
    name: String,
    extent_lba: u64,
    size_bytes: u64,
    is_dir: bool,
}

/// The bytes of the file at `path` (`/`-separated, any case).
pub fn read_file<R: Read + Seek>(iso: &mut R, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
    let root = root_record(iso)?;
    let mut cur = root;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_dir {
            bail!("{} is not a directory in the ISO", parts[..i].join("/"));
        }
        let entries = read_dir(iso, &cur)?;
        cur = entries
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(part))
            .with_context(|| format!("the ISO has no {}", parts[..=i].join("/")))?;
    }
    if cur.is_dir {
        bail!("{path} is a directory in the ISO, not a file");
    }
    if cur.size_bytes > max_bytes {
        bail!(
            "{path} in the ISO is {} bytes, more than the {max_bytes} expected",
            cur.size_bytes
        );
    }
    read_extent(iso, &cur).with_context(|| format!("reading {path} from the ISO"))
}

/// The bytes of a record's extent; its size was checked by the caller.
fn read_extent<R: Read + Seek>(iso: &mut R, rec: &Record) -> Result<Vec<u8>> {
    iso.seek(SeekFrom::Start(rec.extent_lba * SECTOR_BYTES))
        .context("seeking in the ISO")?;
    let mut out = vec![0u8; rec.size_bytes as usize];
    iso.read_exact(&mut out).context("the image is cut short")?;
    Ok(out)
}

fn root_record<R: Read + Seek>(iso: &mut R) -> Result<Record> {
    let mut sector = [0u8; SECTOR_BYTES as usize];
    for n in FIRST_DESCRIPTOR_SECTOR..FIRST_DESCRIPTOR_SECTOR + 64 {
        iso.seek(SeekFrom::Start(n * SECTOR_BYTES))
            .context("seeking in the ISO")?;
        iso.read_exact(&mut sector).context(
            "reading the ISO's volume descriptors: the file is not an ISO image or is cut short",
        )?;
        // ECMA-119 8.1: type, then the standard identifier "CD001".
        if &sector[1..6] != b"CD001" {
            bail!("not an ISO 9660 image (no CD001 volume descriptor at sector {n})");
        }
        match sector[0] {
            PRIMARY_DESCRIPTOR => {
                let (rec, _) = parse_record(&sector[ROOT_RECORD_OFFSET..])?;
                return Ok(rec);
            }
            TERMINATOR_DESCRIPTOR => break,
            _ => {}
        }
    }
    bail!("the ISO has no primary volume descriptor")
}

fn read_dir<R: Read + Seek>(iso: &mut R, dir: &Record) -> Result<Vec<Record>> {
    if dir.size_bytes > MAX_DIR_BYTES {
        bail!(
            "an ISO directory claims {} bytes; the ISO is damaged",
            dir.size_bytes
        );
    }
    let buf = read_extent(iso, dir).context("reading an ISO directory")?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        if buf[pos] == 0 {
            // ECMA-119 6.8.1.1: records never cross a sector; a zero length
            // pads to the next one.
            pos = (pos / SECTOR_BYTES as usize + 1) * SECTOR_BYTES as usize;
            continue;
        }
        let (rec, len) = parse_record(&buf[pos..])?;
        pos += len;
        // The first two records are "." and ".." (identifiers 0x00, 0x01).
        if rec.name != "\0" && rec.name != "\u{1}" {
            out.push(rec);
        }
    }
    Ok(out)
}

/// ECMA-119 9.1: one directory record -> (record, its length).
fn parse_record(b: &[u8]) -> Result<(Record, usize)> {
    let len = *b.first().context("an ISO directory record is cut short")? as usize;
    if len < 34 || b.len() < len {
        bail!("an ISO directory record is damaged (length {len})");
    }
    let u32le = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as u64;
    let name_len = b[32] as usize;
    if 33 + name_len > len {
        bail!("an ISO directory record's name runs past its end");
    }
    let raw = &b[33..33 + name_len];
    let mut name = String::from_utf8_lossy(raw).into_owned();
    if let Some((stem, _version)) = name.split_once(';') {
        name = stem.to_string();
    }
    if name.len() > 1 && name.ends_with('.') {
        name.pop();
    }
    Ok((
        Record {
            name,
            extent_lba: u32le(2),
            size_bytes: u32le(10),
            is_dir: b[25] & FLAG_DIRECTORY != 0,
        },
        len,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made ISO: PVD at 16, terminator at 17, root dir at 18,
    /// IMAGES dir at 19, EFIBOOT.IMG;1 at 20.
    fn tiny_iso() -> Vec<u8> {
        let mut iso = vec![0u8; 21 * 2048];
        let record = |name: &[u8], lba: u32, size: u32, dir: bool| -> Vec<u8> {
            let mut r = vec![0u8; 33 + name.len() + (name.len() + 1) % 2];
            r[0] = r.len() as u8;
            r[2..6].copy_from_slice(&lba.to_le_bytes());
            r[6..10].copy_from_slice(&lba.to_be_bytes());
            r[10..14].copy_from_slice(&size.to_le_bytes());
            r[14..18].copy_from_slice(&size.to_be_bytes());
            r[25] = if dir { FLAG_DIRECTORY } else { 0 };
            r[32] = name.len() as u8;
            r[33..33 + name.len()].copy_from_slice(name);
            r
        };
        let pvd = 16 * 2048;
        iso[pvd] = PRIMARY_DESCRIPTOR;
        iso[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
        let root = record(b"\0", 18, 2048, true);
        iso[pvd + 156..pvd + 156 + root.len()].copy_from_slice(&root);
        iso[17 * 2048] = TERMINATOR_DESCRIPTOR;
        iso[17 * 2048 + 1..17 * 2048 + 6].copy_from_slice(b"CD001");
        let mut dir = Vec::new();
        dir.extend(record(b"\0", 18, 2048, true));
        dir.extend(record(b"\x01", 18, 2048, true));
        dir.extend(record(b"IMAGES", 19, 2048, true));
        iso[18 * 2048..18 * 2048 + dir.len()].copy_from_slice(&dir);
        let mut dir = Vec::new();
        dir.extend(record(b"\0", 19, 2048, true));
        dir.extend(record(b"\x01", 18, 2048, true));
        dir.extend(record(b"EFIBOOT.IMG;1", 20, 5, false));
        iso[19 * 2048..19 * 2048 + dir.len()].copy_from_slice(&dir);
        iso[20 * 2048..20 * 2048 + 5].copy_from_slice(b"hello");
        iso
    }

    #[test]
    fn finds_a_file_without_case_or_version() {
        let mut c = std::io::Cursor::new(tiny_iso());
        assert_eq!(
            read_file(&mut c, "images/efiboot.img", 100).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn reports_what_is_missing_or_wrong() {
        let mut c = std::io::Cursor::new(tiny_iso());
        let e = read_file(&mut c, "images/nope.img", 100).unwrap_err();
        assert!(format!("{e:#}").contains("no images/nope.img"), "{e:#}");
        let e = read_file(&mut c, "images", 100).unwrap_err();
        assert!(format!("{e:#}").contains("is a directory"), "{e:#}");
        let e = read_file(&mut c, "images/efiboot.img", 4).unwrap_err();
        assert!(format!("{e:#}").contains("more than"), "{e:#}");
        let mut cut = std::io::Cursor::new(tiny_iso()[..19 * 2048].to_vec());
        assert!(read_file(&mut cut, "images/efiboot.img", 100).is_err());
        let mut junk = std::io::Cursor::new(vec![7u8; 40 * 2048]);
        let e = read_file(&mut junk, "x", 1).unwrap_err();
        assert!(format!("{e:#}").contains("not an ISO"), "{e:#}");
    }
}
