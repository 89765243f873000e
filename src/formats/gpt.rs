//! The partition table: a protective MBR and a GPT with one EFI system
//! partition, both with IDs derived from the build seed.

use crate::io::Slice;
use anyhow::{bail, Context, Result};
use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::GptConfig;
use std::collections::BTreeMap;
use std::fs::File;

pub const SECTOR_BYTES: u64 = 512;
/// The EFI partition starts at 1 MiB, the alignment every partitioning tool uses.
pub const ESP_FIRST_LBA: u64 = 2048;
/// GPT partition name of the EFI partition; `mkstick` finds its sticks by it.
pub const ESP_NAME: &str = "MKSTICK";

/// UEFI 2.10, 5.3.2: partition entries are 128 bytes. The gpt crate
/// asserts that a header says so (a panic), so a header is checked first.
const PART_ENTRY_BYTES: u32 = 128;

/// Where the EFI partition is, as read from an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspLocation {
    pub first_lba: u64,
    pub last_lba: u64,
    pub name: String,
    pub part_guid: uuid::Uuid,
    pub disk_guid: uuid::Uuid,
}

impl EspLocation {
    pub fn start_bytes(&self) -> u64 {
        self.first_lba * SECTOR_BYTES
    }
    pub fn size_bytes(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR_BYTES
    }
}

/// Write the protective MBR and both GPT headers into `file`, which must
/// already have its final length: the backup GPT goes at its end.
pub fn write(
    file: &File,
    disk_guid: uuid::Uuid,
    esp_guid: uuid::Uuid,
    esp_bytes: u64,
) -> Result<()> {
    let total_bytes = file.metadata().context("reading the image size")?.len();
    let total_lbas = total_bytes / SECTOR_BYTES;
    let mut dev = Slice::new(file, 0, total_bytes);
    ProtectiveMBR::with_lb_size(u32::try_from(total_lbas - 1).unwrap_or(u32::MAX))
        .overwrite_lba0(&mut dev)
        .context("writing the protective MBR")?;
    let mut disk = GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(&mut dev, Some(disk_guid))
        .context("creating the GPT")?;
    let esp = Partition {
        part_type_guid: gpt::partition_types::EFI,
        part_guid: esp_guid,
        first_lba: ESP_FIRST_LBA,
        last_lba: ESP_FIRST_LBA + esp_bytes / SECTOR_BYTES - 1,
        flags: 0,
        name: ESP_NAME.to_string(),
    };
    if esp.last_lba > disk.header().last_usable {
        bail!("the EFI partition does not fit in the image (internal sizing error)");
    }
    disk.update_partitions(BTreeMap::from([(1, esp)]))
        .context("adding the EFI partition")?;
    disk.write().context("writing the GPT")?;
    dev.finish().context("writing the partition table")?;
    Ok(())
}

/// Find the mkstick EFI partition of an image or stick.
pub fn read_esp(file: &File) -> Result<EspLocation> {
    let total = crate::io::len_of(file).context("reading the size")?;
    check_entry_size(file, total)?;
    let mut dev = Slice::new(file, 0, total);
    let disk = GptConfig::new()
        .writable(false)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(&mut dev)
        .context("no valid GPT found; this is not an mkstick image")?;
    let disk_guid = *disk.guid();
    let esp = disk
        .partitions()
        .values()
        .find(|p| p.part_type_guid == gpt::partition_types::EFI)
        .context("the GPT has no EFI system partition; this is not an mkstick image")?;
    let end_bytes = esp
        .last_lba
        .checked_add(1)
        .and_then(|lbas| lbas.checked_mul(SECTOR_BYTES));
    if esp.last_lba < esp.first_lba || end_bytes.is_none_or(|end| end > total) {
        bail!("the EFI partition lies outside the image; the image is cut or damaged");
    }
    Ok(EspLocation {
        first_lba: esp.first_lba,
        last_lba: esp.last_lba,
        name: esp.name.clone(),
        part_guid: esp.part_guid,
        disk_guid,
    })
}

/// Refuse a GPT whose header gives partition entries of another size than
/// 128 bytes. The header checked is the one the gpt crate uses: the
/// primary (LBA 1) when its checksum is right, else the backup (last LBA).
fn check_entry_size(file: &File, total: u64) -> Result<()> {
    use gpt::header::read_header_from_arbitrary_device as read_header;
    let lb = LogicalBlockSize::Lb512;
    let header = read_header(&mut Slice::new(file, 0, total), lb).or_else(|e| {
        if total < 3 * SECTOR_BYTES {
            return Err(e);
        }
        // The last LBA, read as LBA 1 of a window that ends with it.
        let start = (total / SECTOR_BYTES - 2) * SECTOR_BYTES;
        read_header(&mut Slice::new(file, start, 2 * SECTOR_BYTES), lb)
    });
    match header {
        Ok(h) if h.part_size != PART_ENTRY_BYTES => bail!(
            "the GPT gives its partition entries as {} bytes, not {PART_ENTRY_BYTES}; the image is damaged or not an mkstick image",
            h.part_size
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_one_esp_with_given_guids() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(4 << 20).unwrap();
        let disk = uuid::Uuid::from_u128(0x1111);
        let part = uuid::Uuid::from_u128(0x2222);
        write(&f, disk, part, 2 << 20).unwrap();
        let esp = read_esp(&f).unwrap();
        assert_eq!(esp.first_lba, 2048);
        assert_eq!(esp.size_bytes(), 2 << 20);
        assert_eq!((esp.disk_guid, esp.part_guid), (disk, part));
        assert_eq!(esp.name, "MKSTICK");
    }

    /// Found by scripts/fuzz (target `image`): a GPT header, checksum
    /// right, that gives its partition entries as 0 bytes long made the
    /// gpt crate panic (`assert_eq!(header.part_size, 128)`).
    #[test]
    fn gpt_partition_entry_size_zero_is_an_error() {
        use std::os::unix::fs::FileExt;
        let img = include_bytes!("../../tests/fixtures/fuzz/image/gpt-partition-entry-size-0.disk");
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(img, 0).unwrap();
        let e = read_esp(&f).unwrap_err();
        assert!(format!("{e:#}").contains("partition entries"), "{e:#}");
    }

    /// Found by scripts/fuzz (target `image`): an EFI partition whose last
    /// LBA is 2^64 - 1 overflowed the check that it lies inside the image.
    #[test]
    fn gpt_esp_last_lba_max_is_an_error() {
        use std::os::unix::fs::FileExt;
        let img = include_bytes!("../../tests/fixtures/fuzz/image/gpt-esp-last-lba-max.disk");
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(img, 0).unwrap();
        let e = read_esp(&f).unwrap_err();
        assert!(format!("{e:#}").contains("outside the image"), "{e:#}");
    }

    #[test]
    fn a_blank_file_is_not_an_image() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(1 << 20).unwrap();
        let e = read_esp(&f).unwrap_err();
        assert!(format!("{e:#}").contains("not an mkstick image"), "{e:#}");
    }
}
