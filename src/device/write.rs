//! Stage 4 (write): an image -> a stick, then [`WriteReport`].
//!
//! The image was checked beforehand ([`super::validate::image`]). Unless
//! `full` is set, the ranges the image has data in are first read from the
//! stick through O_DIRECT and compared with the image in 64 KiB chunks, as is
//! the partition table the stick would get; if all are equal, nothing is
//! written (the compare was the verification). Otherwise, in this order, so
//! that a stick never boots half-written:
//! 1. zero the target's first and last MiB (both GPT copies), fsync;
//! 2. write the body: the chunks that differ (with `full`: every range the
//!    image has data in; holes are free FAT clusters and padding, which need
//!    not be zero on the stick), and every data range inside the MiBs zeroed
//!    in step 1, with an fsync every 256 MiB;
//! 3. verify: drop the device's caches, read every written range back through
//!    a fresh O_DIRECT descriptor and compare sha256 with what was written
//!    (a chunk found equal in the compare was read from the medium already);
//! 4. write the partition table for the target's size: the protective MBR,
//!    the primary GPT and the backup GPT at the target's last LBA, fsync, and
//!    check both headers read back.
//!
//! On any failure or interruption from step 1 on, the first and last MiB
//! are zeroed again. One during the compare leaves the stick as it was: its
//! older image still boots.

use super::validate::{ImageGpt, Range};
use crate::formats::gpt::SECTOR_BYTES;
use crate::io::{Sha256Digest, BUFFER_SIZE};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub const MIB: u64 = 1 << 20;
/// Read-back chunk: large O_DIRECT reads, as `dd bs=4M iflag=direct` does.
const READ_BACK_BYTES: usize = 4 * MIB as usize;

/// The unit of a diff write: a chunk that differs from the image anywhere is
/// rewritten whole (a FAT sector or an initrd change touches one or two).
const COMPARE_BYTES: usize = 64 * 1024;

/// fsync this often while writing, so progress and Ctrl-C stay honest.
const SYNC_EVERY_BYTES: u64 = 256 * MIB;

/// Where an image is written. The real one is a block device or a file;
/// tests wrap it to inject faults.
pub trait Target {
    fn size_bytes(&self) -> u64;
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
    /// Read back from the medium, not from a cache.
    fn read_back(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The target as a file, for the GPT update.
    fn file(&self) -> &File;
    /// Make the next reads come from the medium (default: nothing to drop).
    fn drop_caches(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The ranges of `file` that hold data (SEEK_DATA/SEEK_HOLE), 4 KiB-aligned.
/// Where the filesystem cannot tell, the whole file is one range.
pub fn mapped_ranges(file: &File, len: u64) -> Vec<Range> {
    use nix::unistd::{lseek, Whence};
    let whole = vec![Range { start: 0, len }];
    let Ok(end) = i64::try_from(len) else {
        return whole;
    };
    let mut out: Vec<Range> = Vec::new();
    let mut pos: i64 = 0;
    while pos < end {
        let data = match lseek(file, pos, Whence::SeekData) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENXIO) => break, // no data after pos
            Err(_) => return whole,
        };
        let hole = lseek(file, data, Whence::SeekHole).unwrap_or(end).min(end);
        // lseek returns offsets >= 0; anything else, or no progress (the
        // file changed under us), means the map cannot be trusted.
        let (Ok(data_at), Ok(hole_at)) = (u64::try_from(data), u64::try_from(hole)) else {
            return whole;
        };
        if hole <= pos || data_at >= len {
            return whole;
        }
        let start = data_at / 4096 * 4096;
        let stop = hole_at.div_ceil(4096).saturating_mul(4096).min(len);
        add_range(
            &mut out,
            Range {
                start,
                len: stop.saturating_sub(start),
            },
        );
        pos = hole;
    }
    out
}

/// What the write phase does: the image's data ranges in order, those in its
/// last MiB next, those in its first MiB last. The partition table itself
/// (the MBR, both GPT headers and entry arrays: `gpt_areas`) is left out and
/// written at the very end, sized for the target. The gaps need no writing:
/// the target's first and last MiB were zeroed first, and elsewhere a hole is
/// free FAT space or padding.
pub fn write_plan(mapped: &[Range], image_len: u64, gpt_areas: &[Range]) -> Vec<Range> {
    let head_end = MIB.min(image_len);
    let tail_start = image_len.saturating_sub(MIB).max(head_end);
    let clip = |lo: u64, hi: u64| -> Vec<Range> {
        let mut out = Vec::new();
        for r in mapped {
            let (mut start, end) = (r.start.max(lo), r.end().min(hi));
            for g in gpt_areas {
                if g.start <= start && g.end() > start {
                    start = g.end();
                }
            }
            let mut stop = end;
            for g in gpt_areas {
                if g.start > start && g.start < stop {
                    stop = g.start;
                }
            }
            if stop > start {
                out.push(Range {
                    start,
                    len: stop - start,
                });
            }
        }
        out
    };
    let mut plan = clip(head_end, tail_start);
    plan.extend(clip(tail_start, image_len));
    plan.extend(clip(0, head_end));
    plan
}

#[derive(Debug, Clone)]
pub struct WriteReport {
    pub image_bytes: u64,
    pub bytes_written: u64,
    pub bytes_skipped: u64,
    pub write_seconds: f64,
    pub verify_seconds: Option<f64>,
    /// Bytes read from the stick and compared with the image (0 with `full`).
    pub bytes_compared: u64,
    /// Of the image's data, the bytes written (chunks that differed, or all
    /// with `full`); `bytes_written` adds the zeroed MiBs and the GPT.
    pub bytes_rewritten: u64,
    /// The stick already held the image and its partition table: nothing
    /// was written.
    pub unchanged: bool,
    /// sha256 over the per-range digests, in write order.
    pub digest: Sha256Digest,
    pub gpt_moved: bool,
}

pub struct WriteOptions<'a> {
    pub verify: bool,
    /// Write every data range, without comparing with the stick first.
    pub full: bool,
    pub interrupted: &'a AtomicBool,
    pub on_compared: &'a dyn Fn(u64),
    pub on_written: &'a dyn Fn(u64),
    pub on_verified: &'a dyn Fn(u64),
    /// Called after the data is written and verified, just before the
    /// partition table is written (tests stop the process here).
    pub before_partition_table: &'a dyn Fn(),
}

fn check_interrupt(flag: &AtomicBool) -> Result<()> {
    if flag.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Zero the first and last MiB of the target: no partition table is left.
pub fn clear_partition_table(target: &mut dyn Target) -> io::Result<()> {
    let size = target.size_bytes();
    let zeros = vec![0u8; MIB.min(size) as usize];
    target.write_at(&zeros, 0)?;
    if size > MIB {
        let at = size - MIB.min(size);
        target.write_at(&zeros[..(size - at) as usize], at)?;
    }
    target.sync()
}

/// Write `image`, checked beforehand by [`super::validate::image`] into
/// `table`, to `target`. On a failure once writing has begun, the target's
/// partition table is cleared before the error is returned. A failure
/// before the first write (the image changed since it was checked, is
/// larger than the target, or the compare was interrupted or could not
/// read) leaves the target untouched, and the error says so: an older
/// image the stick held still boots.
pub fn write_image(
    image: &File,
    table: &ImageGpt,
    target: &mut dyn Target,
    opts: &WriteOptions,
) -> Result<WriteReport> {
    let image_len = image.metadata().context("reading the image size")?.len();
    if image_len != table.size_bytes {
        bail!(
            "the image changed since it was checked ({} bytes, now {image_len}); nothing was written",
            table.size_bytes
        );
    }
    if image_len > target.size_bytes() {
        bail!(
            "the image ({image_len} bytes) is larger than the target ({} bytes); nothing was written",
            target.size_bytes()
        );
    }
    let mut touched = false;
    let result = write_inner(image, table, target, opts, &mut touched);
    if let Err(e) = result {
        if !touched {
            return Err(e.context("nothing was written; the stick is as it was"));
        }
        return match clear_partition_table(target) {
            Ok(()) => Err(e.context(
                "the stick's partition table was cleared, so it cannot boot half-written",
            )),
            Err(clear) => Err(e.context(format!(
                "clearing the partition table also failed ({clear}); do not boot from this stick"
            ))),
        };
    }
    result
}

/// Drop the all-zero sectors of the ranges in the first MiB: the target's
/// first MiB is zeroed before anything else, so writing them changes nothing,
/// and skipping them keeps a page shared with the GPT from being written twice.
fn skip_zero_head_sectors(image: &File, plan: Vec<Range>) -> Result<Vec<Range>> {
    let mut out = Vec::with_capacity(plan.len());
    for r in plan {
        if r.end() > MIB {
            out.push(r);
            continue;
        }
        let mut bytes = vec![0u8; r.len as usize];
        image
            .read_exact_at(&mut bytes, r.start)
            .context("reading the image's first MiB")?;
        let mut run: Option<Range> = None;
        for (i, sector) in bytes.chunks(SECTOR_BYTES as usize).enumerate() {
            let at = r.start + i as u64 * SECTOR_BYTES;
            if sector.iter().all(|&b| b == 0) {
                out.extend(run.take());
            } else {
                let run = run.get_or_insert(Range { start: at, len: 0 });
                run.len += sector.len() as u64;
            }
        }
        out.extend(run);
    }
    Ok(out)
}

/// Reads a byte range of a file at its own position.
struct RangeFileReader<'f> {
    file: &'f File,
    at: u64,
    end: u64,
}

impl Read for RangeFileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.end - self.at).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(&mut buf[..n], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Writes into the target from an offset on; syncs every `SYNC_EVERY_BYTES`
/// and stops when interrupted.
struct TargetWriter<'t, 'o> {
    target: &'t mut dyn Target,
    at: u64,
    since_sync: &'t mut u64,
    opts: &'t WriteOptions<'o>,
}

impl io::Write for TargetWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.opts.interrupted.load(Ordering::Relaxed) {
            return Err(io::Error::other("interrupted"));
        }
        self.target.write_at(buf, self.at)?;
        self.at += buf.len() as u64;
        *self.since_sync += buf.len() as u64;
        (self.opts.on_written)(buf.len() as u64);
        if *self.since_sync >= SYNC_EVERY_BYTES {
            self.target.sync()?;
            *self.since_sync = 0;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sets `touched` before its first write to the target.
fn write_inner(
    image: &File,
    table: &ImageGpt,
    target: &mut dyn Target,
    opts: &WriteOptions,
    touched: &mut bool,
) -> Result<WriteReport> {
    let image_len = table.size_bytes;
    let mapped = mapped_ranges(image, image_len);
    let mut plan = skip_zero_head_sectors(image, write_plan(&mapped, image_len, &table.areas))?;
    let started = Instant::now();
    let gpt_bytes: u64 = table.areas.iter().map(|a| a.len).sum();
    let in_ranges = |plan: &[Range]| plan.iter().fold(0u64, |n, r| n.saturating_add(r.len));
    let bytes_skipped = image_len.saturating_sub(in_ranges(&plan).saturating_add(gpt_bytes));

    let mut bytes_compared = 0;
    if !opts.full {
        check_interrupt(opts.interrupted)?;
        let differing = compare(image, target, &plan, opts)?;
        bytes_compared = in_ranges(&plan);
        let table_same = partition_table_matches(target, table)
            .context("comparing the stick's partition table with the image's")?;
        if differing.is_empty() && table_same {
            return Ok(WriteReport {
                image_bytes: image_len,
                bytes_written: 0,
                bytes_skipped,
                write_seconds: 0.0,
                verify_seconds: Some(started.elapsed().as_secs_f64()),
                bytes_compared,
                bytes_rewritten: 0,
                unchanged: true,
                digest: Sha256Digest(Sha256::new().finalize().into()),
                gpt_moved: target.size_bytes() > image_len,
            });
        }
        plan = with_cleared_areas(differing, &plan, target.size_bytes());
    }
    let started = Instant::now();

    check_interrupt(opts.interrupted)?;
    *touched = true;
    clear_partition_table(target).context("clearing the old partition table")?;
    let mut written = 2 * MIB.min(target.size_bytes());
    let mut since_sync = 0u64;
    let mut digests = Vec::with_capacity(plan.len());
    for r in &plan {
        let reader = RangeFileReader {
            file: image,
            at: r.start,
            end: r.end(),
        };
        let mut writer = TargetWriter {
            target: &mut *target,
            at: r.start,
            since_sync: &mut since_sync,
            opts,
        };
        let context = || format!("writing bytes {}..{}", r.start, r.end());
        if opts.verify {
            let (d, _) = crate::io::copy_hashed(reader, &mut writer).with_context(context)?;
            digests.push(d.0);
        } else {
            io::copy(
                &mut std::io::BufReader::with_capacity(BUFFER_SIZE, reader),
                &mut writer,
            )
            .with_context(context)?;
        }
        written = written.saturating_add(r.len);
    }
    target.sync().context("syncing data to the stick")?;

    let verify_seconds = if opts.verify {
        let started = Instant::now();
        verify(target, &plan, &digests, opts)?;
        Some(started.elapsed().as_secs_f64())
    } else {
        None
    };

    // Last, the partition table: only now can the stick boot.
    check_interrupt(opts.interrupted)?;
    (opts.before_partition_table)();
    check_interrupt(opts.interrupted)?;
    written =
        written.saturating_add(write_gpt(target, table).context("writing the partition table")?);
    let write_seconds = started.elapsed().as_secs_f64() - verify_seconds.unwrap_or(0.0);

    let mut all = Sha256::new();
    for d in &digests {
        all.update(d);
    }
    Ok(WriteReport {
        image_bytes: image_len,
        bytes_written: written,
        bytes_skipped,
        write_seconds,
        verify_seconds,
        bytes_compared,
        bytes_rewritten: in_ranges(&plan),
        unchanged: false,
        digest: Sha256Digest(all.finalize().into()),
        gpt_moved: target.size_bytes() > image_len,
    })
}

/// Read each range of `plan` from the stick (O_DIRECT, 4 MiB at a time) and
/// from the image, and return the [`COMPARE_BYTES`] chunks that differ,
/// adjacent ones merged, in plan order.
fn compare(
    image: &File,
    target: &mut dyn Target,
    plan: &[Range],
    opts: &WriteOptions,
) -> Result<Vec<Range>> {
    let mut want = vec![0u8; READ_BACK_BYTES];
    let mut got = vec![0u8; READ_BACK_BYTES];
    let mut differing: Vec<Range> = Vec::new();
    for r in plan {
        let mut at = r.start;
        while at < r.end() {
            check_interrupt(opts.interrupted)?;
            let n = (r.end() - at).min(READ_BACK_BYTES as u64) as usize;
            let end = at.saturating_add(n as u64);
            image
                .read_exact_at(&mut want[..n], at)
                .with_context(|| format!("reading the image's bytes {at}..{end}"))?;
            target
                .read_back(&mut got[..n], at)
                .with_context(|| format!("reading the stick's bytes {at}..{end}"))?;
            let mut chunk_at = at;
            for (w, g) in want[..n]
                .chunks(COMPARE_BYTES)
                .zip(got[..n].chunks(COMPARE_BYTES))
            {
                if w != g {
                    add_range(
                        &mut differing,
                        Range {
                            start: chunk_at,
                            len: w.len() as u64,
                        },
                    );
                }
                chunk_at = chunk_at.saturating_add(w.len() as u64);
            }
            (opts.on_compared)(n as u64);
            at = end;
        }
    }
    Ok(differing)
}

/// Append `r` to `ranges` (sorted by start, as `r` is after them), merged
/// with the last one if they touch or overlap.
fn add_range(ranges: &mut Vec<Range>, r: Range) {
    match ranges.last_mut() {
        Some(last) if last.end() >= r.start => {
            last.len = r.end().max(last.end()).saturating_sub(last.start)
        }
        _ => ranges.push(r),
    }
}

/// The ranges a diff write writes: the chunks that differ, plus every part
/// of the plan inside the target's first and last MiB, which are zeroed
/// before anything is written. Sorted by offset, overlaps merged.
fn with_cleared_areas(differing: Vec<Range>, plan: &[Range], target_bytes: u64) -> Vec<Range> {
    let edge = MIB.min(target_bytes);
    let cleared = [(0, edge), (target_bytes - edge, target_bytes)];
    let mut all = differing;
    for r in plan {
        for (lo, hi) in cleared {
            let (start, end) = (r.start.max(lo), r.end().min(hi));
            if end > start {
                all.push(Range {
                    start,
                    len: end - start,
                });
            }
        }
    }
    all.sort_by_key(|r| r.start);
    let mut out: Vec<Range> = Vec::with_capacity(all.len());
    for r in all {
        add_range(&mut out, r);
    }
    out
}

/// Whether the stick already holds, byte for byte, the partition table that
/// [`write_gpt`] would write for its size (read through O_DIRECT). The table
/// is rendered into a sparse scratch file of the target's size.
fn partition_table_matches(target: &mut dyn Target, table: &ImageGpt) -> Result<bool> {
    let size = target.size_bytes();
    // Without a scratch file (a full or small temporary directory), the
    // table is taken to differ: it is then written again, as after a change.
    let Ok(scratch) = tempfile::tempfile() else {
        return Ok(false);
    };
    if scratch.set_len(size).is_err() {
        return Ok(false);
    }
    let Ok((_, areas)) = render_gpt(&scratch, size, table) else {
        return Ok(false);
    };
    for a in areas {
        let n = usize::try_from(a.len).context("the GPT's size is out of range")?;
        let (mut want, mut got) = (vec![0u8; n], vec![0u8; n]);
        scratch
            .read_exact_at(&mut want, a.start)
            .context("reading the scratch file")?;
        target
            .read_back(&mut got, a.start)
            .with_context(|| format!("reading the stick's bytes {}..{}", a.start, a.end()))?;
        if want != got {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Read every range back and compare its sha256 with what was written.
/// Hashing runs on a second thread while the next chunk is read.
fn verify(
    target: &mut dyn Target,
    plan: &[Range],
    want: &[[u8; 32]],
    opts: &WriteOptions,
) -> Result<()> {
    struct RangeReader<'t> {
        target: &'t mut dyn Target,
        at: u64,
        end: u64,
        interrupted: &'t AtomicBool,
        on_read: &'t dyn Fn(u64),
    }
    impl Read for RangeReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.interrupted.load(Ordering::Relaxed) {
                return Err(io::Error::other("interrupted"));
            }
            let n = (self.end - self.at).min(buf.len() as u64) as usize;
            if n == 0 {
                return Ok(0);
            }
            self.target.read_back(&mut buf[..n], self.at)?;
            self.at += n as u64;
            (self.on_read)(n as u64);
            Ok(n)
        }
    }
    for (r, want) in plan.iter().zip(want) {
        let reader = RangeReader {
            target: &mut *target,
            at: r.start,
            end: r.end(),
            interrupted: opts.interrupted,
            on_read: opts.on_verified,
        };
        let (got, _) = crate::io::copy_hashed_in_chunks(reader, &mut io::sink(), READ_BACK_BYTES)
            .with_context(|| format!("reading back bytes {}..{}", r.start, r.end()))?;
        if got.0 != *want {
            bail!(
                "verification failed: bytes {}..{} read back from the stick differ from the image (sha256 {} instead of {}); the stick may be faulty or fake",
                r.start,
                r.end(),
                got,
                Sha256Digest(*want)
            );
        }
    }
    Ok(())
}

/// Write the image's partition table for the target's size: the protective
/// MBR covering the whole target, the primary GPT, and the backup GPT at the
/// target's last LBA. Then read it back past the caches and check it.
/// Returns the bytes written.
fn write_gpt(target: &mut dyn Target, table: &ImageGpt) -> Result<u64> {
    let size = target.size_bytes();
    let file = target.file().try_clone().context("reopening the target")?;
    let (last_lba, areas) = render_gpt(&file, size, table)?;
    target.sync().context("syncing the partition table")?;
    target
        .drop_caches()
        .context("dropping the stick's caches")?;
    let mut check = crate::io::Slice::new(&file, 0, size);
    let disk = gpt::GptConfig::new()
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open_from_device(&mut check)
        .context("the partition table does not read back from the stick")?;
    let backup = disk
        .backup_header()
        .context("the backup GPT header does not read back")?;
    if backup.current_lba != last_lba
        || disk.partitions() != &table.partitions
        || *disk.guid() != table.disk_guid
    {
        bail!("the partition table read back from the stick differs from the image's");
    }
    Ok(areas.iter().fold(0u64, |n, a| n.saturating_add(a.len)))
}

/// Lay out the image's partition table for a disk of `size` bytes in `file`:
/// the protective MBR covering the whole disk, the primary GPT, and the
/// backup GPT at its last LBA. Returns the last LBA and the two areas
/// written: MBR, primary header and entries; backup entries and header.
fn render_gpt(file: &File, size: u64, table: &ImageGpt) -> Result<(u64, [Range; 2])> {
    let lbas = size / SECTOR_BYTES;
    let last_lba = lbas
        .checked_sub(1)
        .with_context(|| format!("the target is only {size} bytes"))?;
    let mut dev = crate::io::Slice::new(file, 0, size);
    gpt::mbr::ProtectiveMBR::with_lb_size(u32::try_from(last_lba).unwrap_or(u32::MAX))
        .overwrite_lba0(&mut dev)
        .context("writing the protective MBR")?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(&mut dev, Some(table.disk_guid))
        .context("laying out the GPT")?;
    disk.update_partitions(table.partitions.clone())
        .context("adding the partitions")?;
    let h = disk.primary_header().context("the new GPT header")?.clone();
    disk.write().context("writing the GPT")?;
    dev.finish().context("writing the GPT")?;
    // The entry arrays follow the primary header and precede the backup one
    // (the gpt crate's own header: 128 entries of 128 bytes).
    let entries = u64::from(h.num_parts)
        .checked_mul(u64::from(h.part_size))
        .context("the new GPT's size is out of range")?;
    let primary_len = entries
        .checked_add(2 * SECTOR_BYTES)
        .context("the new GPT's size is out of range")?;
    let backup_len = entries
        .checked_add(SECTOR_BYTES)
        .context("the new GPT's size is out of range")?;
    let backup_at = lbas
        .saturating_mul(SECTOR_BYTES)
        .checked_sub(backup_len)
        .context("the target is too small for a GPT")?;
    Ok((
        last_lba,
        [
            Range {
                start: 0,
                len: primary_len,
            },
            Range {
                start: backup_at,
                len: backup_len,
            },
        ],
    ))
}

/// A block device (or, for tests and `--to-file`, a regular file) opened for
/// writing, with a separate O_DIRECT descriptor for reading back.
pub struct DeviceTarget {
    file: File,
    direct: Option<File>,
    /// Reused for O_DIRECT reads; the aligned window lies inside it.
    aligned: Vec<u8>,
    size_bytes: u64,
    is_block: bool,
    path: std::path::PathBuf,
}

impl DeviceTarget {
    pub fn new(
        file: File,
        path: &std::path::Path,
        size_bytes: u64,
        is_block: bool,
    ) -> DeviceTarget {
        DeviceTarget {
            file,
            direct: None,
            aligned: Vec::new(),
            size_bytes,
            is_block,
            path: path.to_path_buf(),
        }
    }

    /// Drop every cached page of the device, then open a fresh O_DIRECT fd.
    fn direct_fd(&mut self) -> io::Result<&File> {
        if self.direct.is_none() {
            if self.is_block {
                super::ioctl::flush_buffers(&self.file)?;
            }
            let _ = nix::fcntl::posix_fadvise(
                &self.file,
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_DIRECT)
                .open(&self.path)?;
            self.direct = Some(f);
        }
        Ok(self.direct.as_ref().expect("set just above"))
    }
}

impl Target for DeviceTarget {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.direct = None; // a later read-back must not see stale pages
        self.file.write_all_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn read_back(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        // O_DIRECT needs aligned memory: read into an aligned window of a
        // larger buffer, then copy out.
        const ALIGN: usize = 4096;
        let len = buf.len().div_ceil(ALIGN) * ALIGN;
        if self.aligned.len() < len + ALIGN {
            self.aligned = vec![0u8; len + ALIGN];
        }
        self.direct_fd()?;
        let fd = self.direct.as_ref().expect("opened just above");
        let skew = self.aligned.as_ptr().align_offset(ALIGN);
        let window = &mut self.aligned[skew..skew + len];
        let mut done = 0;
        while done < buf.len() {
            let n = fd.read_at(&mut window[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stick ended early",
                ));
            }
            done += n;
        }
        buf.copy_from_slice(&window[..buf.len()]);
        Ok(())
    }

    fn file(&self) -> &File {
        &self.file
    }

    fn drop_caches(&mut self) -> io::Result<()> {
        self.direct = None;
        if self.is_block {
            super::ioctl::flush_buffers(&self.file)?;
        }
        let _ = nix::fcntl::posix_fadvise(
            &self.file,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate::test_image;
    use super::*;

    #[test]
    fn plan_writes_body_then_tail_then_head_and_skips_holes_and_the_gpt() {
        let r = |start, len| Range { start, len };
        let mapped = [r(0, 64 * 1024), r(3 * MIB, 4096), r(9 * MIB, MIB)];
        let gpt = [r(0, 34 * 512), r(10 * MIB - 33 * 512, 33 * 512)];
        assert_eq!(
            write_plan(&mapped, 10 * MIB, &gpt),
            [
                r(3 * MIB, 4096),
                r(9 * MIB, MIB - 33 * 512),
                r(34 * 512, 64 * 1024 - 34 * 512)
            ]
        );
    }

    #[test]
    fn a_diff_write_adds_the_data_inside_the_zeroed_mibs_and_merges() {
        let r = |start, len| Range { start, len };
        let plan = [r(2 * MIB, 4 * MIB), r(9 * MIB, MIB), r(40960, 4096)];
        let differing = vec![r(3 * MIB, 65536), r(3 * MIB + 65536, 65536)];
        assert_eq!(
            with_cleared_areas(differing, &plan, 10 * MIB),
            [r(40960, 4096), r(3 * MIB, 2 * 65536), r(9 * MIB, MIB)]
        );
        // Nothing differs and nothing lies in the zeroed MiBs: nothing.
        assert_eq!(with_cleared_areas(Vec::new(), &plan[..1], 64 * MIB), []);
    }

    #[test]
    fn a_second_write_of_the_same_image_writes_nothing() {
        let img = test_image::with_guids(uuid::Uuid::from_u128(3), uuid::Uuid::from_u128(4));
        let table = super::super::validate::image(&img).unwrap();
        let mut target = FileTarget(tempfile::tempfile().unwrap());
        target.0.set_len(table.size_bytes() + 4 * MIB).unwrap();
        let never = AtomicBool::new(false);
        let opts = quiet(&never);
        let first = write_image(&img, &table, &mut target, &opts).unwrap();
        assert!(!first.unchanged && first.bytes_rewritten > 0);
        let second = write_image(&img, &table, &mut target, &opts).unwrap();
        assert!(second.unchanged, "{second:?}");
        assert_eq!(second.bytes_written, 0);
        assert_eq!(second.bytes_compared, first.bytes_compared);
        // One byte of the FAT boot sector changed on the target: that chunk
        // (and the table) again.
        let mut b = [0u8];
        target.0.read_exact_at(&mut b, MIB + 3).unwrap();
        target.0.write_all_at(&[!b[0]], MIB + 3).unwrap();
        let third = write_image(&img, &table, &mut target, &opts).unwrap();
        assert!(!third.unchanged);
        assert!(
            third.bytes_rewritten <= COMPARE_BYTES as u64 * 2,
            "{third:?}"
        );
    }

    /// A verified diff write with no progress, stopped when `interrupted`.
    fn quiet(interrupted: &AtomicBool) -> WriteOptions<'_> {
        WriteOptions {
            verify: true,
            full: false,
            interrupted,
            on_compared: &|_| {},
            on_written: &|_| {},
            on_verified: &|_| {},
            before_partition_table: &|| {},
        }
    }

    /// A plain file as a target (no O_DIRECT): enough for the GPT logic.
    struct FileTarget(File);
    impl Target for FileTarget {
        fn size_bytes(&self) -> u64 {
            self.0.metadata().map(|m| m.len()).unwrap_or(0)
        }
        fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.0.write_all_at(buf, offset)
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn read_back(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.0.read_exact_at(buf, offset)
        }
        fn file(&self) -> &File {
            &self.0
        }
    }

    #[test]
    fn gpt_moves_to_the_end_of_a_bigger_target() {
        let (disk, part) = (uuid::Uuid::from_u128(7), uuid::Uuid::from_u128(8));
        let img = test_image::with_guids(disk, part);
        let table = super::super::validate::image(&img).unwrap();
        let mut target = FileTarget(tempfile::tempfile().unwrap());
        target.0.set_len(test_image::ESP_BYTES + 16 * MIB).unwrap();
        let never = AtomicBool::new(false);
        let report = write_image(&img, &table, &mut target, &quiet(&never)).unwrap();
        assert!(report.gpt_moved);
        let esp = crate::formats::gpt::read_esp(&target.0).unwrap();
        assert_eq!(
            (esp.disk_guid, esp.part_guid, esp.first_lba),
            (disk, part, 2048)
        );
    }

    /// A target of the image's size holding an old, valid GPT: the image's
    /// first and last MiB, and nothing between.
    fn target_with_old_gpt(img: &File, size: u64) -> FileTarget {
        let target = FileTarget(tempfile::tempfile().unwrap());
        target.0.set_len(size).unwrap();
        for at in [0, size - MIB] {
            let mut old = vec![0u8; MIB as usize];
            img.read_exact_at(&mut old, at).unwrap();
            target.0.write_all_at(&old, at).unwrap();
        }
        assert!(crate::formats::gpt::read_esp(&target.0).is_ok());
        target
    }

    #[test]
    fn an_interrupted_write_leaves_no_partition_table() {
        let img = test_image::with_guids(uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let table = super::super::validate::image(&img).unwrap();
        let mut target = target_with_old_gpt(&img, table.size_bytes());
        // Interrupted once the first bytes are written.
        let stop = AtomicBool::new(false);
        let opts = WriteOptions {
            on_written: &|_| stop.store(true, Ordering::Relaxed),
            ..quiet(&stop)
        };
        let e = write_image(&img, &table, &mut target, &opts).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("interrupted") && e.contains("cleared"), "{e}");
        assert!(
            crate::formats::gpt::read_esp(&target.0).is_err(),
            "no GPT survives"
        );
    }

    #[test]
    fn an_interrupted_compare_leaves_the_stick_as_it_was() {
        let img = test_image::with_guids(uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let table = super::super::validate::image(&img).unwrap();
        let size = table.size_bytes();
        let mut target = target_with_old_gpt(&img, size);
        let mut before = vec![0u8; size as usize];
        target.0.read_exact_at(&mut before, 0).unwrap();
        // Interrupted while the first chunks are compared, before any write.
        let stop = AtomicBool::new(false);
        let opts = WriteOptions {
            on_compared: &|_| stop.store(true, Ordering::Relaxed),
            ..quiet(&stop)
        };
        let e = write_image(&img, &table, &mut target, &opts).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("interrupted") && e.contains("nothing was written"),
            "{e}"
        );
        let mut after = vec![0u8; size as usize];
        target.0.read_exact_at(&mut after, 0).unwrap();
        assert!(before == after, "the stick changed");
    }

    #[test]
    fn sparse_files_report_their_data_ranges() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(8 * MIB).unwrap();
        f.write_all_at(&[1u8; 100], 2 * MIB + 10).unwrap();
        let ranges = mapped_ranges(&f, 8 * MIB);
        let total: u64 = ranges.iter().map(|r| r.len).sum();
        assert!(
            total < MIB,
            "a mostly empty sparse file maps little: {ranges:?}"
        );
        assert!(ranges
            .iter()
            .any(|r| r.start <= 2 * MIB + 10 && r.end() >= 2 * MIB + 110));
    }
}
