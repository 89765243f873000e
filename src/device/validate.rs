//! Stage 4 (write), first step: an image file -> [`ImageGpt`], or an error
//! saying what is wrong with it. `flash` calls [`image`] before it looks at
//! the target or asks anything, so a cut, damaged or foreign file is refused
//! before a byte reaches a stick.
//!
//! Checked: the file is whole sectors; both GPT headers (CRC, positions, the
//! backup header at the file's last LBA, so a cut image is refused) and both
//! entry arrays (CRC, identical); every partition within the GPT's usable
//! LBAs, and so within the file; partitions do not overlap; an EFI system
//! partition whose FAT opens and whose root directory reads.
//!
//! Every offset here comes from the file, so all arithmetic is checked. The
//! FAT's boot sector and its root directory's cluster chain are checked here
//! before fatfs sees them: fatfs 0.3.6 computes in u32 without checks and
//! would panic (or, without overflow checks, wrap) on a crafted volume.

use crate::formats::gpt::SECTOR_BYTES;
use crate::io::Slice;
use anyhow::{anyhow, bail, Context, Result};
use gpt::disk::LogicalBlockSize;
use gpt::partition::Partition;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The entry size every GPT tool writes (UEFI 2.10, 5.3.2: a multiple of
/// 128; the gpt crate reads only 128).
const ENTRY_BYTES: u32 = 128;
/// The entries of the table mkstick writes onto the stick (the gpt crate's
/// default, as every partitioning tool uses).
const TABLE_ENTRIES: u32 = 128;
/// Far more entries than any real table has; keeps a crafted header from
/// making the gpt crate allocate gigabytes.
const MAX_ENTRIES: u32 = 16_384;
/// FAT32 end-of-chain marks (Microsoft FAT specification, "FAT Data
/// Structure"): 0x0FFFFFF8..=0x0FFFFFFF; the top four bits are reserved.
const FAT32_EOC: u32 = 0x0FFF_FFF8;
const FAT32_MASK: u32 = 0x0FFF_FFFF;
/// Cluster counts that decide the FAT type (same specification, "FAT Type
/// Determination").
const FAT16_MIN_CLUSTERS: u64 = 4085;
const FAT32_MIN_CLUSTERS: u64 = 65_525;
/// More root directory entries than any real volume has; keeps a crafted
/// directory from being read for ever.
const MAX_ROOT_ENTRIES: usize = 65_536;

/// A byte range of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub len: u64,
}

impl Range {
    /// Ranges come from a file's length or a checked GPT, so the sum fits;
    /// saturating keeps a mistake from wrapping to a small offset.
    pub(super) fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// A checked image: its size, its partition table, and where the table's
/// structures lie (the writer leaves them out and writes a table sized for
/// the stick instead). Only [`image`] makes one.
#[derive(Debug, Clone)]
pub struct ImageGpt {
    pub(super) size_bytes: u64,
    pub(super) disk_guid: uuid::Uuid,
    pub(super) partitions: BTreeMap<u32, Partition>,
    /// The MBR, primary header and entries before the first usable LBA; the
    /// backup entries and header after the last usable LBA.
    pub(super) areas: Vec<Range>,
}

impl ImageGpt {
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

fn mul(a: u64, b: u64, what: &str) -> Result<u64> {
    a.checked_mul(b)
        .ok_or_else(|| anyhow!("{what} is out of range ({a} × {b})"))
}

fn add(a: u64, b: u64, what: &str) -> Result<u64> {
    a.checked_add(b)
        .ok_or_else(|| anyhow!("{what} is out of range ({a} + {b})"))
}

/// Bytes of an entry array of `num_parts` entries, rounded up to sectors.
fn array_sectors(num_parts: u32) -> u64 {
    // At most MAX_ENTRIES × 128 bytes: no overflow.
    (u64::from(num_parts) * u64::from(ENTRY_BYTES)).div_ceil(SECTOR_BYTES)
}

/// Check `file` completely as a disk image for a stick; see the module
/// documentation for what is checked.
pub fn image(file: &File) -> Result<ImageGpt> {
    let size_bytes = crate::io::len_of(file).context("reading the image size")?;
    if size_bytes % SECTOR_BYTES != 0 || size_bytes < 3 * SECTOR_BYTES {
        bail!(
            "it is {size_bytes} bytes, not a whole number of 512-byte sectors (at least 3): it is cut short or not a disk image"
        );
    }
    let lbas = size_bytes / SECTOR_BYTES;
    let last_lba = lbas - 1; // lbas >= 3

    let mut dev = Slice::new(file, 0, size_bytes);
    let h = gpt::header::read_header_from_arbitrary_device(&mut dev, LogicalBlockSize::Lb512)
        .map_err(|e| {
            anyhow!("it has no valid GPT (the header at byte 512: {e}): it is not a disk image, or it is damaged")
        })?;
    if h.current_lba != 1 {
        bail!(
            "its GPT header is damaged: it says it lies at LBA {}, not 1",
            h.current_lba
        );
    }
    if h.part_size != ENTRY_BYTES {
        bail!(
            "its GPT entries are {} bytes; mkstick reads only {ENTRY_BYTES}-byte entries",
            h.part_size
        );
    }
    if h.num_parts == 0 || h.num_parts > MAX_ENTRIES {
        bail!(
            "its GPT header is damaged: it says the table has {} entries",
            h.num_parts
        );
    }
    let entries = array_sectors(h.num_parts);
    if h.backup_lba != last_lba {
        let disk_bytes = add(h.backup_lba, 1, "the backup GPT header's LBA")
            .and_then(|n| mul(n, SECTOR_BYTES, "the disk size"))?;
        if disk_bytes > size_bytes {
            bail!(
                "it is cut short: its GPT says the disk is {disk_bytes} bytes, but the file has only {size_bytes}"
            );
        }
        bail!(
            "its GPT says the disk is {disk_bytes} bytes, but the file has {size_bytes}: it is damaged or has something appended"
        );
    }
    // Primary entries after the header and before the first usable LBA;
    // backup entries after the last usable LBA and before the backup header.
    let primary_entries_end = add(h.part_start, entries, "the GPT entries' LBA")?;
    if h.part_start < 2 || primary_entries_end > h.first_usable {
        bail!(
            "its GPT header is damaged: the entries at LBA {} overlap the header or the usable LBAs from {}",
            h.part_start,
            h.first_usable
        );
    }
    if h.first_usable > h.last_usable || h.last_usable >= last_lba {
        bail!(
            "its GPT header is damaged: the usable LBAs {}..={} do not fit in a disk of {lbas} sectors",
            h.first_usable,
            h.last_usable
        );
    }

    let disk = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(&mut dev)
        .map_err(|e| anyhow!("its GPT partition table is damaged ({e})"))?;
    let backup = disk.backup_header().map_err(|e| {
        anyhow!("its backup GPT header (the file's last sector) is missing or damaged ({e}): it is cut short or damaged")
    })?;
    if backup.current_lba != last_lba
        || backup.backup_lba != 1
        || backup.disk_guid != h.disk_guid
        || backup.first_usable != h.first_usable
        || backup.last_usable != h.last_usable
        || backup.num_parts != h.num_parts
        || backup.part_size != h.part_size
        || backup.crc32_parts != h.crc32_parts
    {
        bail!("its backup GPT header does not match the primary one: the image is damaged");
    }
    let backup_entries_end = add(backup.part_start, entries, "the backup GPT entries' LBA")?;
    if backup.part_start <= h.last_usable || backup_entries_end > last_lba {
        bail!(
            "its backup GPT entries at LBA {} overlap the usable LBAs or the backup header",
            backup.part_start
        );
    }
    // Both entry arrays lie inside the file (checked above) and are at most
    // MAX_ENTRIES × 128 bytes.
    let array_bytes = usize::try_from(u64::from(h.num_parts) * u64::from(ENTRY_BYTES))
        .context("the GPT entry array does not fit in memory")?;
    let mut primary = vec![0u8; array_bytes];
    let mut copy = vec![0u8; array_bytes];
    file.read_exact_at(&mut primary, h.part_start * SECTOR_BYTES)
        .context("reading the GPT entries")?;
    file.read_exact_at(&mut copy, backup.part_start * SECTOR_BYTES)
        .context("reading the backup GPT entries")?;
    if primary != copy {
        bail!("its backup GPT entries differ from the primary ones: the image is damaged");
    }

    let partitions = disk.partitions().clone();
    let mut spans: Vec<(u64, u64, u32)> = Vec::new();
    for (&id, p) in &partitions {
        let name = if p.name.is_empty() {
            format!("partition {id}")
        } else {
            format!("partition {id} ({})", p.name)
        };
        if id > TABLE_ENTRIES {
            bail!("its {name} is past entry {TABLE_ENTRIES}, the last one mkstick writes");
        }
        if p.first_lba > p.last_lba {
            bail!(
                "its {name} ends (LBA {}) before it starts (LBA {}): the GPT is damaged",
                p.last_lba,
                p.first_lba
            );
        }
        if p.last_lba >= lbas {
            bail!(
                "its {name} runs past the end of the file: it ends at LBA {}, the file has {lbas} sectors; the image is cut short or damaged",
                p.last_lba
            );
        }
        if p.first_lba < h.first_usable || p.last_lba > h.last_usable {
            bail!(
                "its {name} (LBA {}..={}) lies outside the GPT's usable LBAs {}..={}: the GPT is damaged",
                p.first_lba,
                p.last_lba,
                h.first_usable,
                h.last_usable
            );
        }
        spans.push((p.first_lba, p.last_lba, id));
    }
    spans.sort();
    for pair in spans.windows(2) {
        if pair[1].0 <= pair[0].1 {
            bail!(
                "its partitions {} and {} overlap: the GPT is damaged",
                pair[0].2,
                pair[1].2
            );
        }
    }

    let (esp_id, esp) = partitions
        .iter()
        .find(|(_, p)| p.part_type_guid == gpt::partition_types::EFI)
        .context("its GPT has no EFI system partition: it is not an mkstick image")?;
    // Inside the file, checked above: no overflow.
    let esp_start = esp.first_lba * SECTOR_BYTES;
    let esp_bytes = (esp.last_lba - esp.first_lba + 1) * SECTOR_BYTES;
    check_fat(file, esp_start, esp_bytes).with_context(|| {
        format!("its EFI partition (partition {esp_id}) holds no readable FAT filesystem")
    })?;

    // first_usable and last_usable lie inside the file, checked above.
    let tail_start = (h.last_usable + 1) * SECTOR_BYTES;
    Ok(ImageGpt {
        size_bytes,
        disk_guid: *disk.guid(),
        partitions,
        areas: vec![
            Range {
                start: 0,
                len: h.first_usable * SECTOR_BYTES,
            },
            Range {
                start: tail_start,
                len: size_bytes - tail_start,
            },
        ],
    })
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

/// Check the FAT volume of `len` bytes at byte `start` of `file`: its boot
/// sector, its size against the partition, its root directory's cluster
/// chain, and that fatfs opens it and lists the root directory.
fn check_fat(file: &File, start: u64, len: u64) -> Result<()> {
    let mut boot = [0u8; 512];
    if len < boot.len() as u64 {
        bail!("the partition is only {len} bytes");
    }
    file.read_exact_at(&mut boot, start)
        .context("reading the FAT boot sector")?;
    if boot[510..512] != [0x55, 0xAA] {
        bail!("the boot sector has no 55 AA signature");
    }
    // The BIOS parameter block (Microsoft FAT specification, "Boot Sector
    // and BPB"). Computed in u64 and required to fit fatfs's u32 sums.
    let bytes_per_sector = le16(&boot, 11);
    let sectors_per_cluster = u64::from(boot[13]);
    let reserved = le16(&boot, 14);
    let fats = u64::from(boot[16]);
    let root_entries = le16(&boot, 17);
    let total_16 = le16(&boot, 19);
    let sectors_per_fat_16 = le16(&boot, 22);
    let total_32 = le32(&boot, 32);
    let fat32 = sectors_per_fat_16 == 0;
    let sectors_per_fat = if fat32 {
        le32(&boot, 36)
    } else {
        sectors_per_fat_16
    };
    if !bytes_per_sector.is_power_of_two() || !(512..=4096).contains(&bytes_per_sector) {
        bail!("the boot sector says sectors are {bytes_per_sector} bytes");
    }
    if !sectors_per_cluster.is_power_of_two() || sectors_per_cluster > 128 {
        bail!("the boot sector says clusters are {sectors_per_cluster} sectors");
    }
    if reserved == 0 || fats == 0 || sectors_per_fat == 0 {
        bail!("the boot sector is damaged ({reserved} reserved sectors, {fats} FATs of {sectors_per_fat} sectors)");
    }
    let total = if total_16 != 0 { total_16 } else { total_32 };
    let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
    let fat_sectors = fats * sectors_per_fat;
    let first_data = reserved + fat_sectors + root_sectors;
    if total <= first_data {
        bail!("the boot sector says the volume has {total} sectors, fewer than its FATs need");
    }
    let volume_bytes = total * bytes_per_sector;
    if volume_bytes > len {
        bail!("the volume is {volume_bytes} bytes, larger than its {len}-byte partition");
    }
    // fatfs sums these in u32: sectors of all FATs, the first data sector,
    // and the bits of one FAT.
    let fat_bits = sectors_per_fat * bytes_per_sector * 8;
    if first_data > u64::from(u32::MAX) || fat_bits > u64::from(u32::MAX) {
        bail!("the boot sector's FAT size ({sectors_per_fat} sectors) is out of range");
    }
    let clusters = (total - first_data) / sectors_per_cluster;
    let entry_bits = if clusters < FAT16_MIN_CLUSTERS {
        12
    } else if clusters < FAT32_MIN_CLUSTERS {
        16
    } else {
        32
    };
    if fat32 != (entry_bits == 32) || (fat32 && clusters > u64::from(FAT32_MASK)) {
        bail!("the boot sector is damaged: {clusters} clusters do not match its FAT type");
    }
    if fat_bits / entry_bits < clusters + 2 {
        bail!("its FAT ({sectors_per_fat} sectors) is too small for its {clusters} clusters");
    }
    if fat32 {
        let fs_info = le16(&boot, 48);
        let backup_boot = le16(&boot, 50);
        if fs_info == 0 || fs_info >= reserved || backup_boot >= reserved {
            bail!("the boot sector is damaged: FSInfo at sector {fs_info}, backup at {backup_boot}, {reserved} reserved");
        }
        // The root directory is a cluster chain: follow it in the FAT, so
        // fatfs never meets a cluster number outside the volume.
        let fat_start = start + reserved * bytes_per_sector;
        let mut cluster = le32(&boot, 44);
        let mut seen = 0u64;
        loop {
            if cluster < 2 || cluster >= clusters + 2 {
                bail!("the root directory's cluster chain is broken (cluster {cluster} of {clusters})");
            }
            seen += 1;
            if seen > clusters {
                bail!("the root directory's cluster chain loops");
            }
            let mut entry = [0u8; 4];
            file.read_exact_at(&mut entry, fat_start + cluster * 4)
                .context("reading the FAT")?;
            let next = u32::from_le_bytes(entry) & FAT32_MASK;
            if next >= FAT32_EOC {
                break;
            }
            cluster = u64::from(next);
        }
    }

    let mut disk = Slice::new(file, start, len);
    let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())
        .context("fatfs cannot open it")?;
    for (n, entry) in fs.root_dir().iter().enumerate() {
        entry.context("reading the root directory")?;
        if n >= MAX_ROOT_ENTRIES {
            bail!("the root directory has more than {MAX_ROOT_ENTRIES} entries");
        }
    }
    Ok(())
}

/// A small sparse image as mkstick lays it out, for unit tests: the GPT, a
/// FAT32 EFI partition of [`test_image::ESP_BYTES`] from 1 MiB, and the
/// backup GPT in the last MiB.
#[cfg(test)]
pub(crate) mod test_image {
    use crate::formats::fat::{self, FatLayout};
    use std::fs::File;

    pub const MIB: u64 = 1 << 20;
    /// About the smallest FAT32 volume with 512-byte clusters.
    pub const ESP_BYTES: u64 = 36 * MIB;

    pub fn with_guids(disk: uuid::Uuid, part: uuid::Uuid) -> File {
        let img = tempfile::tempfile().unwrap();
        img.set_len(ESP_BYTES + 2 * MIB).unwrap();
        crate::formats::gpt::write(&img, disk, part, ESP_BYTES).unwrap();
        fat::format(
            &img,
            MIB,
            FatLayout {
                size_bytes: ESP_BYTES,
                cluster_bytes: 512,
            },
            7,
        )
        .unwrap();
        img
    }
}

#[cfg(test)]
mod tests {
    use super::test_image::{ESP_BYTES, MIB};
    use super::*;

    fn good_image() -> File {
        super::test_image::with_guids(uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2))
    }

    fn error(img: &File) -> String {
        format!("{:#}", image(img).unwrap_err())
    }

    #[test]
    fn a_good_image_passes_and_its_gpt_areas_are_found() {
        let img = good_image();
        let t = image(&img).unwrap();
        assert_eq!(t.size_bytes, ESP_BYTES + 2 * MIB);
        assert_eq!(t.partitions.len(), 1);
        assert_eq!(
            t.areas[0],
            Range {
                start: 0,
                len: 34 * 512
            }
        );
        assert_eq!(t.areas[1].start + t.areas[1].len, t.size_bytes);
        assert_eq!(t.areas[1].len, 33 * 512);
    }

    #[test]
    fn a_cut_image_is_refused() {
        let img = good_image();
        img.set_len(20 * MIB).unwrap();
        assert!(error(&img).contains("it is cut short"), "{}", error(&img));
        img.set_len(20 * MIB + 100).unwrap();
        assert!(
            error(&img).contains("not a whole number of 512-byte sectors"),
            "{}",
            error(&img)
        );
    }

    #[test]
    fn a_damaged_fat_boot_sector_is_refused_without_a_panic() {
        let img = good_image();
        let mut boot = [0u8; 512];
        img.read_exact_at(&mut boot, MIB).unwrap();
        // FAT32 root directory at cluster 1: fatfs would compute 1 - 2.
        let mut bad = boot;
        bad[44..48].copy_from_slice(&1u32.to_le_bytes());
        img.write_all_at(&bad, MIB).unwrap();
        let e = error(&img);
        assert!(e.contains("holds no readable FAT filesystem"), "{e}");
        assert!(e.contains("cluster chain is broken"), "{e}");
        // A FAT of 2^28 sectors: fatfs's u32 sums would overflow.
        let mut bad = boot;
        bad[36..40].copy_from_slice(&(1u32 << 28).to_le_bytes());
        img.write_all_at(&bad, MIB).unwrap();
        assert!(error(&img).contains("no readable FAT"), "{}", error(&img));
        // No FAT at all.
        img.write_all_at(&[0u8; 512], MIB).unwrap();
        assert!(
            error(&img).contains("no 55 AA signature"),
            "{}",
            error(&img)
        );
        img.write_all_at(&boot, MIB).unwrap();
        image(&img).unwrap();
    }

    #[test]
    fn a_root_directory_chain_that_loops_is_refused() {
        let img = good_image();
        let mut boot = [0u8; 512];
        img.read_exact_at(&mut boot, MIB).unwrap();
        let fat_start = MIB + le16(&boot, 14) * 512;
        let root = le32(&boot, 44);
        // The root's cluster points to itself.
        img.write_all_at(&(root as u32).to_le_bytes(), fat_start + root * 4)
            .unwrap();
        assert!(error(&img).contains("chain loops"), "{}", error(&img));
    }
}
