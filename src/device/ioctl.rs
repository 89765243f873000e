//! The block-device ioctls mkstick needs, each behind a safe function. This
//! file holds the only `unsafe` code in mkstick: each call passes a file
//! descriptor that the borrowed `File` keeps open for the call, and, where
//! the kernel writes a result, a pointer to a local of the size the request
//! encodes (linux/fs.h).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

// BLKGETSIZE64 = _IOR(0x12, 114, size_t): the device size in bytes.
nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
// BLKSSZGET = _IO(0x12, 104), which writes an int: the logical sector size.
nix::ioctl_read_bad!(
    blksszget,
    nix::request_code_none!(0x12, 104),
    nix::libc::c_int
);
// BLKFLSBUF = _IO(0x12, 97): flush and drop the device's buffer cache.
nix::ioctl_none!(blkflsbuf, 0x12, 97);
// BLKRRPART = _IO(0x12, 95): re-read the partition table.
nix::ioctl_none!(blkrrpart, 0x12, 95);

pub fn size_bytes(f: &File) -> io::Result<u64> {
    let mut n = 0u64;
    // SAFETY: `f` is open for the call; the kernel writes one u64 into `n`.
    unsafe { blkgetsize64(f.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    Ok(n)
}

pub fn logical_sector_bytes(f: &File) -> io::Result<u32> {
    let mut n: nix::libc::c_int = 0;
    // SAFETY: `f` is open for the call; the kernel writes one int into `n`.
    unsafe { blksszget(f.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    u32::try_from(n)
        .map_err(|_| io::Error::other(format!("the kernel reports a sector size of {n}")))
}

pub fn flush_buffers(f: &File) -> io::Result<()> {
    // SAFETY: `f` is open for the call; the request takes no argument.
    unsafe { blkflsbuf(f.as_raw_fd()) }.map_err(io::Error::from)?;
    Ok(())
}

pub fn reread_partitions(f: &File) -> io::Result<()> {
    // SAFETY: `f` is open for the call; the request takes no argument.
    unsafe { blkrrpart(f.as_raw_fd()) }.map_err(io::Error::from)?;
    Ok(())
}
