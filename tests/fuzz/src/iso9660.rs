//! `iso9660`: the ISO 9660 reader that takes `images/efiboot.img` out of
//! Fedora CoreOS's live ISO, on the whole input as the ISO.

use crate::Seed;
use anyhow::Result;
use std::io::Cursor;
use std::path::Path;

/// The most `fcos.rs` reads out of the ISO (its `EFIBOOT_MAX_BYTES`).
const MAX_BYTES: u64 = 64 << 20;

pub fn run(data: &[u8]) {
    let mut iso = Cursor::new(data);
    let _ = mkstick::os::iso9660::read_file(&mut iso, mkstick::os::fcos::EFIBOOT_PATH, MAX_BYTES);
}

/// ECMA-119 9.1: one directory record.
fn record(name: &[u8], lba: u32, size: u32, dir: bool) -> Vec<u8> {
    let mut r = vec![0u8; 33 + name.len() + (name.len() + 1) % 2];
    r[0] = r.len() as u8;
    r[2..6].copy_from_slice(&lba.to_le_bytes());
    r[6..10].copy_from_slice(&lba.to_be_bytes());
    r[10..14].copy_from_slice(&size.to_le_bytes());
    r[14..18].copy_from_slice(&size.to_be_bytes());
    r[25] = if dir { 2 } else { 0 };
    r[32] = name.len() as u8;
    r[33..33 + name.len()].copy_from_slice(name);
    r
}

/// A small ISO: system area, a primary volume descriptor at sector 16
/// (and another descriptor before the terminator when `extra_descriptor`),
/// the root directory, `IMAGES/`, and `EFIBOOT.IMG;1` holding `contents`.
fn tiny_iso(contents: &[u8], extra_descriptor: bool, filler: usize) -> Vec<u8> {
    let sector = 2048;
    let first = if extra_descriptor { 19 } else { 18 };
    let (root, images, file) = (first, first + 1, first + 2);
    let mut iso = vec![0u8; (file + 1) * sector + contents.len().div_ceil(sector) * sector];
    let mut put = |at: usize, b: &[u8]| iso[at..at + b.len()].copy_from_slice(b);
    put(16 * sector, b"\x01CD001\x01");
    put(16 * sector + 156, &record(b"\0", root as u32, 2048, true));
    if extra_descriptor {
        // A supplementary (Joliet-style) descriptor, which the reader skips.
        put(17 * sector, b"\x02CD001\x01");
    }
    put((first - 1) * sector, b"\xffCD001\x01");
    let mut dir = Vec::new();
    dir.extend(record(b"\0", root as u32, 2048, true));
    dir.extend(record(b"\x01", root as u32, 2048, true));
    for i in 0..filler {
        dir.extend(record(
            format!("FILE{i}.TXT;1").as_bytes(),
            file as u32,
            0,
            false,
        ));
    }
    dir.extend(record(b"IMAGES", images as u32, 2048, true));
    put(root * sector, &dir);
    let mut dir = Vec::new();
    dir.extend(record(b"\0", images as u32, 2048, true));
    dir.extend(record(b"\x01", root as u32, 2048, true));
    dir.extend(record(
        b"EFIBOOT.IMG;1",
        file as u32,
        contents.len() as u32,
        false,
    ));
    put(images * sector, &dir);
    put(file * sector, contents);
    iso
}

pub fn seeds(_repo: &Path) -> Result<Vec<Seed>> {
    Ok(vec![
        ("tiny.iso".into(), tiny_iso(b"hello", false, 0)),
        (
            "two-descriptors.iso".into(),
            tiny_iso(&[0x55; 3000], true, 3),
        ),
    ])
}
