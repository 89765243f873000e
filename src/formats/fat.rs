//! The FAT32 EFI system partition: sizing, formatting with fixed IDs and
//! timestamps, and reading a FAT tree back.

use crate::io::Slice;
use anyhow::{bail, Context, Result};
use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions, ReadWriteSeek};
use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

/// The volume label, also the GPT partition name (11 bytes, space-padded).
pub const VOLUME_LABEL: &[u8; 11] = b"MKSTICK    ";

/// FAT32 needs at least this many clusters (Microsoft's FAT specification,
/// "FAT Type Determination"); below it a volume is FAT16.
const FAT32_MIN_CLUSTERS: u64 = 65_525;
/// Reserved sectors fatfs puts before the FAT on FAT32.
const RESERVED_SECTORS: u64 = 8;
const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;

/// The size of the partition and of its clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatLayout {
    pub size_bytes: u64,
    pub cluster_bytes: u32,
}

/// Clusters left for data in a FAT32 volume of `size` bytes (two FATs).
fn data_clusters(size: u64, cluster: u64) -> u64 {
    let entries = size / cluster + 2;
    let fat_bytes = (entries * 4).div_ceil(SECTOR) * SECTOR;
    size.saturating_sub(RESERVED_SECTORS * SECTOR + 2 * fat_bytes) / cluster
}

/// The least room kept for the config region (see [`layout`]).
const CONFIG_ROOM_MIN: u64 = 4 * MIB;
/// The cluster size the config region is measured in, whatever the
/// volume's: the largest one [`layout`] chooses, so the room does not
/// depend on the choice.
const CONFIG_CLUSTER: u64 = 32768;

/// The room kept for the config region's files of these sizes: twice what
/// they take, rounded up to a power of two, and at least 4 MiB. A config
/// that grows or shrinks within the same room leaves the volume's size, and
/// with it every cluster of the OS region, where it was.
pub fn config_room(config_sizes: &[u64]) -> u64 {
    let taken: u64 = config_sizes
        .iter()
        .map(|s| s.div_ceil(CONFIG_CLUSTER).max(1) * CONFIG_CLUSTER)
        .sum();
    (2 * taken).next_power_of_two().max(CONFIG_ROOM_MIN)
}

/// Choose the smallest whole-MiB FAT32 partition that holds the OS region's
/// files, the config region's room ([`config_room`]) and `dirs`
/// directories, with 2 % of slack, and the largest cluster size (fewer,
/// larger writes) that still keeps it FAT32. The result depends on the
/// config's files only through their room: that is what keeps a reflash
/// after a config change small.
pub fn layout(os_sizes: &[u64], config_sizes: &[u64], dirs: usize) -> FatLayout {
    let room = config_room(config_sizes);
    let mut best: Option<FatLayout> = None;
    for cluster in [CONFIG_CLUSTER, 16384, 8192, 4096, 2048, 1024, 512] {
        let os: u64 = os_sizes
            .iter()
            .map(|s| s.div_ceil(cluster).max(1) * cluster)
            .sum::<u64>()
            + (dirs as u64 + 1) * cluster;
        let need = os + room;
        // The slack: room for directory growth.
        let mut size = (need + os / 50).div_ceil(MIB) * MIB;
        while data_clusters(size, cluster) * cluster < need
            || data_clusters(size, cluster) < FAT32_MIN_CLUSTERS + 64
        {
            size += MIB;
        }
        let candidate = FatLayout {
            size_bytes: size,
            cluster_bytes: cluster as u32,
        };
        if best.is_none_or(|b| size < b.size_bytes) {
            best = Some(candidate);
        }
    }
    best.expect("the cluster list is not empty")
}

/// Format `len` bytes at `start` of `file` as FAT32.
pub fn format(file: &File, start: u64, layout: FatLayout, volume_id: u32) -> Result<()> {
    let mut disk = Slice::new(file, start, layout.size_bytes);
    fatfs::format_volume(
        &mut disk,
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat32)
            .bytes_per_cluster(layout.cluster_bytes)
            .volume_id(volume_id)
            .volume_label(*VOLUME_LABEL),
    )
    .context("formatting the EFI partition as FAT32")?;
    disk.finish().context("writing the FAT32 structures")?;
    Ok(())
}

/// Bytes from the start of a FAT32 volume to its first data cluster: the
/// region fatfs updates in small writes, worth caching in memory.
pub fn metadata_bytes(file: &File, start: u64) -> Result<u64> {
    let mut bpb = [0u8; 48];
    file.read_exact_at(&mut bpb, start)
        .context("reading the FAT boot sector")?;
    let bytes_per_sector = u16::from_le_bytes([bpb[11], bpb[12]]) as u64;
    let reserved = u16::from_le_bytes([bpb[14], bpb[15]]) as u64;
    let fats = bpb[16] as u64;
    let sectors_per_fat = u32::from_le_bytes([bpb[36], bpb[37], bpb[38], bpb[39]]) as u64;
    Ok((reserved + fats * sectors_per_fat) * bytes_per_sector)
}

const DIR_ENTRY_BYTES: usize = 32;
const ATTR_LFN: u8 = 0x0f;
const ATTR_DIRECTORY: u8 = 0x10;
const DELETED: u8 = 0xe5;
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";

/// Repair what fatfs 0.3.6 writes into every new directory: a long-name
/// (LFN) entry before `.` and another before `..` (fixed upstream after 0.3;
/// no later release is published). The FAT specification requires `.` and
/// `..` to be the first two entries, and `fsck.fat` rejects the volume
/// otherwise. Each directory's first four slots become `.`, `..` and two
/// deleted entries. `..` of a directory in the root also gets cluster 0, as
/// the specification requires (fatfs writes the root's cluster number).
/// Call this after the filesystem is unmounted.
pub fn fix_dot_entries(file: &File, start: u64) -> Result<()> {
    let mut bpb = [0u8; 48];
    file.read_exact_at(&mut bpb, start)
        .context("reading the FAT boot sector")?;
    let bytes_per_sector = u16::from_le_bytes([bpb[11], bpb[12]]) as u64;
    let cluster_bytes = bytes_per_sector * bpb[13] as u64;
    let data_start = start + metadata_bytes(file, start)?;
    let fat_start = start + u16::from_le_bytes([bpb[14], bpb[15]]) as u64 * bytes_per_sector;
    let root = u32::from_le_bytes([bpb[44], bpb[45], bpb[46], bpb[47]]);
    let cluster_at = |c: u32| data_start + (c as u64 - 2) * cluster_bytes;
    let next = |c: u32| -> Result<u32> {
        let mut e = [0u8; 4];
        file.read_exact_at(&mut e, fat_start + c as u64 * 4)
            .context("reading the FAT")?;
        Ok(u32::from_le_bytes(e) & 0x0fff_ffff)
    };
    let mut todo = vec![(root, None::<bool>)];
    let mut seen = 0usize;
    while let Some((first, parent_is_root)) = todo.pop() {
        seen += 1;
        if seen > 100_000 {
            bail!("the new FAT volume's directories loop (internal error)");
        }
        // Read the whole directory (its cluster chain).
        let mut dir = Vec::new();
        let mut c = first;
        while (2..0x0fff_fff8).contains(&c) && dir.len() < (1 << 24) {
            let mut buf = vec![0u8; cluster_bytes as usize];
            file.read_exact_at(&mut buf, cluster_at(c))
                .context("reading a directory")?;
            dir.extend_from_slice(&buf);
            c = next(c)?;
        }
        for e in dir.chunks_exact(DIR_ENTRY_BYTES) {
            if e[0] == 0 {
                break;
            }
            let name = &e[..11];
            if e[0] == DELETED
                || e[11] == ATTR_LFN
                || e[11] & ATTR_DIRECTORY == 0
                || name == DOT
                || name == DOTDOT
            {
                continue;
            }
            let sub = (u16::from_le_bytes([e[20], e[21]]) as u32) << 16
                | u16::from_le_bytes([e[26], e[27]]) as u32;
            todo.push((sub, Some(parent_is_root.is_none())));
        }
        let Some(parent_is_root) = parent_is_root else {
            continue; // the root has no `.` or `..`
        };
        if dir.len() < 4 * DIR_ENTRY_BYTES {
            continue;
        }
        let slot = |i: usize| &dir[i * DIR_ENTRY_BYTES..(i + 1) * DIR_ENTRY_BYTES];
        let broken = slot(0)[11] == ATTR_LFN
            && &slot(1)[..11] == DOT
            && slot(2)[11] == ATTR_LFN
            && &slot(3)[..11] == DOTDOT;
        if broken {
            let mut fixed = Vec::with_capacity(4 * DIR_ENTRY_BYTES);
            fixed.extend_from_slice(slot(1));
            let mut dotdot = slot(3).to_vec();
            if parent_is_root {
                for i in [20, 21, 26, 27] {
                    dotdot[i] = 0;
                }
            }
            fixed.extend_from_slice(&dotdot);
            for _ in 0..2 {
                let mut deleted = [0u8; DIR_ENTRY_BYTES];
                deleted[0] = DELETED;
                fixed.extend_from_slice(&deleted);
            }
            file.write_all_at(&fixed, cluster_at(first))
                .context("repairing a directory")?;
        }
    }
    Ok(())
}

/// FAT timestamps from `SOURCE_DATE_EPOCH`, never from the clock.
#[derive(Debug)]
pub struct FixedTime(fatfs::DateTime);

impl FixedTime {
    /// The time for `epoch_secs` (UTC), or 1980-01-01 00:00, FAT's first
    /// representable instant, when there is none.
    pub fn new(epoch_secs: Option<i64>) -> Result<FixedTime> {
        let Some(secs) = epoch_secs else {
            return Ok(FixedTime(dos_time(1980, 1, 1, 0, 0, 0)));
        };
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        if !(1980..=2107).contains(&y) {
            bail!("SOURCE_DATE_EPOCH={secs} is year {y}; FAT timestamps hold 1980 to 2107");
        }
        Ok(FixedTime(dos_time(
            y as u16,
            m,
            d,
            (rem / 3600) as u16,
            (rem / 60 % 60) as u16,
            (rem % 60) as u16,
        )))
    }
}

fn dos_time(year: u16, month: u16, day: u16, hour: u16, min: u16, sec: u16) -> fatfs::DateTime {
    fatfs::DateTime {
        date: fatfs::Date { year, month, day },
        time: fatfs::Time {
            hour,
            min,
            sec,
            millis: 0,
        },
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u16, u16) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u16;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u16;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

/// Options for opening a FAT volume with fixed timestamps.
pub fn fs_options(time: &'static FixedTime) -> FsOptions {
    FsOptions::new()
        .update_accessed_date(false)
        .time_provider(time)
}

/// Visit every file of a FAT volume, depth first in name order, with its
/// `/`-separated path and an open handle.
pub fn walk<T: ReadWriteSeek>(
    fs: &FileSystem<T>,
    mut visit: impl FnMut(&str, &mut fatfs::File<T>) -> Result<()>,
) -> Result<()> {
    fn dir_level<T: ReadWriteSeek>(
        dir: fatfs::Dir<T>,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &mut fatfs::File<T>) -> Result<()>,
        depth: usize,
    ) -> Result<()> {
        if depth > 32 {
            bail!("directories nest deeper than 32 levels under {prefix}; the FAT volume looks damaged");
        }
        let mut entries = Vec::new();
        for e in dir.iter() {
            let e = e.context("reading a FAT directory")?;
            let name = e.file_name();
            if name != "." && name != ".." {
                entries.push(e);
            }
        }
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = format!("{prefix}{}", e.file_name());
            if e.is_dir() {
                dir_level(e.to_dir(), &format!("{path}/"), visit, depth + 1)?;
            } else {
                visit(&path, &mut e.to_file())?;
            }
        }
        Ok(())
    }
    dir_level(fs.root_dir(), "", &mut visit, 0)
}

/// Check what fatfs 0.3.6 takes on trust before it opens a volume mkstick
/// did not write. It puts the cluster numbers of directory entries and of
/// the FAT into unchecked 32-bit arithmetic (a panic in a debug build, a
/// read of the wrong place in a release one). So every cluster that a
/// directory entry, the FAT32 root or a cluster chain names must be one of
/// the volume's (2 to the last), and no chain may loop or join another.
/// The rest of the boot sector fatfs checks itself. Leaves `disk` at 0.
pub fn check_volume<D: Read + Seek>(disk: &mut D) -> Result<()> {
    let r = check_clusters(disk);
    disk.seek(SeekFrom::Start(0))
        .context("reading the FAT volume")?;
    r
}

/// Up to `len` bytes at `at`: fewer where the image is cut.
fn read_at<D: Read + Seek>(disk: &mut D, at: u64, len: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    disk.seek(SeekFrom::Start(at))
        .and_then(|_| disk.take(len).read_to_end(&mut out))
        .context("reading the FAT volume")?;
    Ok(out)
}

/// A little-endian number of `n` bytes at `at`, if `b` holds them.
fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(n)?)?;
    Some(bytes.iter().rev().fold(0, |v, x| v << 8 | u64::from(*x)))
}

fn check_clusters<D: Read + Seek>(disk: &mut D) -> Result<()> {
    let boot = read_at(disk, 0, 512)?;
    if boot.len() < 512 {
        return Ok(()); // fatfs refuses it
    }
    let bpb = |at, n| le(&boot, at, n).expect("the boot sector holds 512 bytes");
    let (bps, spc, reserved, fats) = (bpb(11, 2), bpb(13, 1), bpb(14, 2), bpb(16, 1));
    let root_sectors = (bpb(17, 2) * DIR_ENTRY_BYTES as u64).div_ceil(bps.max(1));
    let fat32 = bpb(22, 2) == 0;
    let fat_sectors = if fat32 { bpb(36, 4) } else { bpb(22, 2) };
    let total = match bpb(19, 2) {
        0 => bpb(32, 4),
        t => t,
    };
    // FAT32's extended flags: bit 7 turns mirroring off, bits 0-3 name the active FAT.
    let flags = bpb(40, 2);
    let active = if fat32 && flags & 0x80 != 0 {
        flags & 0x0f
    } else {
        0
    };
    let fat_start = reserved + active * fat_sectors;
    let first_data = reserved + fats * fat_sectors + root_sectors;
    if [
        fat_start,
        fats * fat_sectors,
        first_data,
        fat_sectors * bps * 8,
    ]
    .iter()
    .any(|v| *v > u64::from(u32::MAX))
    {
        bail!("the FAT volume is damaged: its sizes do not fit in 32 bits");
    }
    if bps == 0 || spc == 0 || total <= first_data {
        return Ok(()); // fatfs refuses it
    }
    let clusters = (total - first_data) / spc;
    // Microsoft's FAT specification, "FAT Type Determination", as fatfs does it.
    let (entry_bits, end_marker) = match clusters {
        0..4085 => (12, 0xff7),
        4085..65525 => (16, 0xfff7),
        _ => (32, 0x0fff_fff7),
    };
    if fat32 != (entry_bits == 32) {
        return Ok(()); // fatfs refuses it
    }
    let last = clusters + 1;
    let fat = read_at(disk, fat_start * bps, (last + 1) * entry_bits / 8 + 4)?;
    // The FAT entry of cluster `c`, if the FAT holds it.
    let next = |c: u64| -> Option<u64> {
        let v = le(
            &fat,
            (c * entry_bits / 8) as usize,
            entry_bits.div_ceil(8) as usize,
        )?;
        Some(match entry_bits {
            12 if c % 2 == 1 => v >> 4,
            12 => v & 0xfff,
            16 => v,
            _ => v & 0x0fff_ffff,
        })
    };
    let follows = |c: u64| next(c).filter(|n| *n != 0 && *n < end_marker);
    // Check the chain from `first`: every cluster one of the volume's, no
    // loop. `good` holds the clusters whose chain onwards is checked.
    let mut good = std::collections::BTreeSet::new();
    let mut check_chain = |first: u64| -> Result<()> {
        let mut this = std::collections::BTreeSet::new();
        let mut c = Some(first);
        while let Some(n) = c.filter(|n| !good.contains(n)) {
            if !(2..=last).contains(&n) {
                bail!("the FAT volume is damaged: it names cluster {n}, and its clusters are 2 to {last}");
            }
            if !this.insert(n) {
                bail!("the FAT volume is damaged: the cluster chain through cluster {n} loops");
            }
            // The end, a free or bad cluster, or a cut FAT end it, as in fatfs.
            c = follows(n);
        }
        good.extend(this);
        Ok(())
    };
    // The clusters of a checked chain.
    let clusters_of =
        |first: u64| std::iter::successors(Some(first), |c| follows(*c)).take(last as usize);
    // Read every directory once; `None` is FAT12/16's fixed root directory.
    let mut dirs = vec![None];
    if fat32 {
        check_chain(bpb(44, 4)).context("the root directory")?;
        dirs = vec![Some(bpb(44, 4))];
    }
    let mut scanned: std::collections::BTreeSet<u64> = dirs.iter().flatten().copied().collect();
    while let Some(dir) = dirs.pop() {
        let mut bytes = Vec::new();
        match dir {
            None => bytes = read_at(disk, (first_data - root_sectors) * bps, root_sectors * bps)?,
            Some(first) => {
                for c in clusters_of(first) {
                    bytes.extend(read_at(
                        disk,
                        (first_data + (c - 2) * spc) * bps,
                        spc * bps,
                    )?);
                }
            }
        }
        for e in bytes.chunks_exact(DIR_ENTRY_BYTES) {
            if e[0] == 0 {
                break;
            }
            if e[0] == DELETED || e[11] & ATTR_LFN == ATTR_LFN {
                continue;
            }
            let hi = if fat32 { le(e, 20, 2).unwrap_or(0) } else { 0 };
            let c = hi << 16 | le(e, 26, 2).unwrap_or(0);
            if c == 0 {
                continue; // no clusters
            }
            check_chain(c)?;
            if e[11] & ATTR_DIRECTORY != 0 && scanned.insert(c) {
                dirs.push(Some(c));
            }
        }
    }
    Ok(())
}

/// Every file of an in-memory FAT image (such as FCOS's `efiboot.img`).
pub fn read_tree(image: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut disk = Cursor::new(image.to_vec());
    check_volume(&mut disk)?;
    let fs = FileSystem::new(disk, FsOptions::new()).context("not a FAT filesystem")?;
    let mut out = Vec::new();
    walk(&fs, |path, file| {
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .with_context(|| format!("reading {path}"))?;
        out.push((path.to_string(), data));
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by scripts/fuzz (target `image`, FAT alone): a file whose
    /// directory entry starts it at cluster 1, which is reserved, made
    /// fatfs overflow computing where cluster 1 lies.
    #[test]
    fn fat_file_first_cluster_1_is_an_error() {
        let img = include_bytes!("../../tests/fixtures/fuzz/image/fat-file-first-cluster-1.fat");
        let e = read_tree(img).unwrap_err();
        assert!(format!("{e:#}").contains("cluster"), "{e:#}");
    }

    #[test]
    fn layout_is_fat32_and_holds_the_files() {
        for sizes in [
            vec![10u64],
            vec![900 << 20, 100 << 20, 12 << 20],
            vec![3 << 30],
        ] {
            let config = [2000u64, 90_000];
            let l = layout(&sizes, &config, 4);
            let c = l.cluster_bytes as u64;
            assert!(
                data_clusters(l.size_bytes, c) >= FAT32_MIN_CLUSTERS,
                "{l:?}"
            );
            let need: u64 =
                sizes.iter().map(|s| s.div_ceil(c) * c).sum::<u64>() + config_room(&config);
            assert!(data_clusters(l.size_bytes, c) * c >= need, "{l:?}");
            assert_eq!(l.size_bytes % MIB, 0);
            let total: u64 = sizes.iter().sum();
            assert!(
                l.size_bytes <= (total + total / 20 + 64 * MIB).max(40 * MIB),
                "little slack: {l:?}"
            );
        }
    }

    #[test]
    fn epoch_converts_to_fat_time() {
        // 2021-03-04 05:06:07 UTC
        let t = FixedTime::new(Some(1_614_834_367)).unwrap().0;
        assert_eq!((t.date.year, t.date.month, t.date.day), (2021, 3, 4));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (5, 6, 7));
        let t = FixedTime::new(None).unwrap().0;
        assert_eq!((t.date.year, t.date.month, t.date.day), (1980, 1, 1));
        assert!(
            FixedTime::new(Some(0)).is_err(),
            "1970 is before FAT's epoch"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn formats_writes_and_reads_back() {
        let f = tempfile::tempfile().unwrap();
        let l = layout(&[5000], &[70_000], 2);
        f.set_len(l.size_bytes).unwrap();
        format(&f, 0, l, 0xdead_beef).unwrap();
        let head = metadata_bytes(&f, 0).unwrap();
        let mut disk = Slice::new(&f, 0, l.size_bytes)
            .with_head_cache(head)
            .unwrap();
        {
            let time: &'static FixedTime = Box::leak(Box::new(FixedTime::new(None).unwrap()));
            let fs = FileSystem::new(&mut disk, fs_options(time)).unwrap();
            assert_eq!(fs.fat_type(), FatType::Fat32);
            fs.root_dir().create_dir("EFI").unwrap();
            let mut w = fs.root_dir().create_file("EFI/a.txt").unwrap();
            std::io::Write::write_all(&mut w, &[7u8; 5000]).unwrap();
            drop(w);
            fs.unmount().unwrap();
        }
        disk.finish().unwrap();
        let mut bytes = vec![0u8; l.size_bytes as usize];
        f.read_exact_at(&mut bytes, 0).unwrap();
        let tree = read_tree(&bytes).unwrap();
        assert_eq!(tree, vec![("EFI/a.txt".to_string(), vec![7u8; 5000])]);
        assert!(read_tree(&[0u8; 4096]).is_err());
    }
}
