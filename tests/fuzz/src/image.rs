//! `image`: `mkstick inspect --verify --show-config` on a whole image (GPT,
//! FAT, the files, `mkstick/manifest.json`, grub.cfg and the config
//! initrd), or the FAT reader alone as it reads Fedora's `efiboot.img`.
//!
//! First byte: bit 0 set reads the rest as a bare FAT image
//! (`fat::read_tree`); otherwise the rest is an image file for `inspect`,
//! with bit 2 picking `--json`. Unless bit 1 is set, the harness first
//! recomputes the GPT headers' CRC-32s (as anyone crafting an image can),
//! so that mutations reach past the checksums into the GPT reader.

use crate::{with_selector, Seed};
use anyhow::{Context, Result};
use fatfs::{FatType, FormatVolumeOptions, FsOptions};
use mkstick::cli::InspectArgs;
use mkstick::progress::Progress;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SECTOR: usize = 512;

pub fn run(data: &[u8]) {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 1 != 0 {
        let _ = mkstick::formats::fat::read_tree(rest);
        return;
    }
    let mut image = rest.to_vec();
    if selector & 2 == 0 {
        fix_gpt_crcs(&mut image);
    }
    let path = PATH.get_or_init(|| crate::scratch().join("fuzz.img"));
    std::fs::write(path, &image).expect("writing the image into the scratch directory");
    let args = InspectArgs {
        image: path.clone(),
        json: selector & 4 != 0,
        show_config: true,
        verify: true,
    };
    let _ = mkstick::inspect::run(&args, &Progress::hidden(), &mut std::io::sink());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Recompute the CRC-32 of each GPT header (primary at LBA 1, backup at
/// the last LBA) and of the partition array it names.
pub fn fix_gpt_crcs(img: &mut [u8]) {
    let last = (img.len() / SECTOR).saturating_sub(1) * SECTOR;
    for at in [SECTOR, last] {
        if at < SECTOR || img.len() < at + 92 || &img[at..at + 8] != b"EFI PART" {
            continue;
        }
        let part_start = u64::from_le_bytes(img[at + 72..at + 80].try_into().expect("8 bytes"));
        let array_bytes = u64::from(u32_at(img, at + 80)) * u64::from(u32_at(img, at + 84));
        let array = part_start
            .checked_mul(SECTOR as u64)
            .and_then(|s| Some((s, s.checked_add(array_bytes)?)))
            .filter(|(_, end)| *end <= img.len() as u64);
        if let Some((s, e)) = array {
            let crc = crate::crc32(&img[s as usize..e as usize]);
            img[at + 88..at + 92].copy_from_slice(&crc.to_le_bytes());
        }
        img[at + 16..at + 20].fill(0);
        let crc = crate::crc32(&img[at..at + 92]);
        img[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A FAT12 volume of `bytes` bytes holding `files`.
fn fat_volume(bytes: usize, files: &[(&str, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut disk = Cursor::new(vec![0u8; bytes]);
    fatfs::format_volume(
        &mut disk,
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat12)
            .bytes_per_cluster(512)
            .volume_id(0x2682_7932)
            .volume_label(*b"MKSTICK    "),
    )
    .context("formatting the seed FAT volume")?;
    {
        let fs = fatfs::FileSystem::new(&mut disk, FsOptions::new())?;
        for (path, contents) in files {
            let mut dir = fs.root_dir();
            let parts: Vec<&str> = path.split('/').collect();
            for d in &parts[..parts.len() - 1] {
                dir = match dir.open_dir(d) {
                    Ok(d) => d,
                    Err(_) => dir.create_dir(d)?,
                };
            }
            let mut f = dir.create_file(parts[parts.len() - 1])?;
            f.truncate()?;
            f.write_all(contents)?;
            f.flush()?;
        }
        fs.unmount()?;
    }
    Ok(disk.into_inner())
}

/// A protective MBR and a GPT with 4 entries (one sector of them) around
/// one EFI system partition named MKSTICK holding `fat`.
fn gpt_image(fat: &[u8]) -> Vec<u8> {
    let fat_sectors = fat.len().div_ceil(SECTOR) as u64;
    let (first, last) = (3u64, 3 + fat_sectors - 1);
    let total = last + 3; // backup array, backup header
    let mut img = vec![0u8; total as usize * SECTOR];
    // Protective MBR (UEFI 2.10, 5.2.3).
    img[446 + 4] = 0xee;
    img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    img[446 + 12..446 + 16]
        .copy_from_slice(&u32::try_from(total - 1).unwrap_or(u32::MAX).to_le_bytes());
    img[510..512].copy_from_slice(&[0x55, 0xaa]);
    // One partition entry (UEFI 5.3.3); GUIDs are stored mixed-endian.
    let mut entry = [0u8; 128];
    let esp_type = uuid_bytes(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b);
    entry[..16].copy_from_slice(&esp_type);
    entry[16..32].copy_from_slice(&uuid_bytes(0x2222_0000_4000_8000_0000_0000_0000_2222));
    entry[32..40].copy_from_slice(&first.to_le_bytes());
    entry[40..48].copy_from_slice(&last.to_le_bytes());
    for (i, c) in "MKSTICK".encode_utf16().enumerate() {
        entry[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
    }
    for lba in [2, last + 1] {
        let at = lba as usize * SECTOR;
        img[at..at + 128].copy_from_slice(&entry);
    }
    img[first as usize * SECTOR..first as usize * SECTOR + fat.len()].copy_from_slice(fat);
    // Headers (UEFI 5.3.2); the CRCs are filled in below.
    for (lba, other, array) in [(1, total - 1, 2), (total - 1, 1, last + 1)] {
        let at = lba as usize * SECTOR;
        let h = &mut img[at..at + 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&lba.to_le_bytes());
        h[32..40].copy_from_slice(&other.to_le_bytes());
        h[40..48].copy_from_slice(&first.to_le_bytes());
        h[48..56].copy_from_slice(&last.to_le_bytes());
        h[56..72].copy_from_slice(&uuid_bytes(0x1111_0000_4000_8000_0000_0000_0000_1111));
        h[72..80].copy_from_slice(&array.to_le_bytes());
        h[80..84].copy_from_slice(&4u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
    }
    fix_gpt_crcs(&mut img);
    img
}

/// A GUID as GPT stores it: the first three fields little-endian.
fn uuid_bytes(v: u128) -> [u8; 16] {
    uuid_le(v.to_be_bytes())
}

fn uuid_le(b: [u8; 16]) -> [u8; 16] {
    let mut o = b;
    o[..4].reverse();
    o[4..6].reverse();
    o[6..8].reverse();
    o
}

pub fn seeds(repo: &Path) -> Result<Vec<Seed>> {
    let read = |p: &str, fallback: &[u8]| {
        std::fs::read(repo.join(p)).unwrap_or_else(|_| fallback.to_vec())
    };
    let ign = read(
        "tests/golden/minimal/ignition.json",
        br#"{"ignition":{"version":"3.3.0"}}"#,
    );
    let grub = read(
        "tests/golden/minimal/grub.cfg",
        b"if linux /os/vmlinuz 'quiet'; then\n",
    );
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("EFI/BOOT/BOOTX64.EFI", b"MZ shim".to_vec()),
        ("EFI/BOOT/grub.cfg", grub),
        ("os/vmlinuz", b"kernel".to_vec()),
        (
            mkstick::payload::grub::CONFIG_INITRD,
            mkstick::formats::initrd::wrap("config.ign", &ign),
        ),
    ];
    let listed: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(p, b)| {
            (
                p.to_string(),
                serde_json::json!({
                    "size-bytes": b.len(),
                    "sha256": mkstick::io::Sha256Digest::of(b).to_string(),
                }),
            )
        })
        .collect();
    let manifest = serde_json::json!({
        "mkstick-version": "0.1.0",
        "os": {"id": "debian-test-os", "name": "Fake OS", "version": "1.0"},
        "seed": "00".repeat(32),
        "files": listed,
    });
    files.push((
        mkstick::payload::MANIFEST_PATH,
        serde_json::to_vec_pretty(&manifest)?,
    ));
    let fat = fat_volume(64 << 10, &files)?;
    let image = gpt_image(&fat);
    let empty_fat = fat_volume(32 << 10, &[])?;
    let mut out = vec![
        ("0-inspect.img".into(), with_selector(0, &image)),
        ("4-inspect-json.img".into(), with_selector(4, &image)),
        (
            "0-empty.img".into(),
            with_selector(0, &gpt_image(&empty_fat)),
        ),
        ("1-efiboot.fat".into(), with_selector(1, &fat)),
    ];
    // The images earlier runs crashed on (the regression tests' inputs),
    // as they are: their checksums are already right.
    for p in crate::files_under(&repo.join("tests/fixtures/fuzz/image"), &[".disk"]) {
        out.push((
            crate::seed_name("2-", repo, &p),
            with_selector(2, &std::fs::read(&p)?),
        ));
    }
    for p in crate::files_under(&repo.join("tests/fixtures/fuzz/image"), &[".fat"]) {
        out.push((
            crate::seed_name("1-", repo, &p),
            with_selector(1, &std::fs::read(&p)?),
        ));
    }
    Ok(out)
}
