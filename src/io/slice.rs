//! An offset window over a file, with positional reads and writes.
//!
//! fatfs and gpt see the window as a whole device. Two optimisations keep a
//! big build close to the speed of `cp`:
//! - an optional *head cache* holds the first bytes of the window (the FAT
//!   region) in memory, so the many small table updates cost no syscalls;
//! - consecutive writes are *combined* into one large write, because fatfs
//!   writes file data one cluster at a time.
//!
//! Call [`Slice::finish`] (or `flush`) before dropping: a drop does not write.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// Writes are combined up to this many bytes before they go to the file.
const COMBINE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct Slice<'f> {
    file: &'f File,
    start: u64,
    len: u64,
    pos: u64,
    head: Vec<u8>,
    head_dirty: bool,
    pending: Vec<u8>,
    pending_at: u64,
}

impl<'f> Slice<'f> {
    /// A window of `len` bytes starting at byte `start` of `file`.
    pub fn new(file: &'f File, start: u64, len: u64) -> Self {
        Slice {
            file,
            start,
            len,
            pos: 0,
            head: Vec::new(),
            head_dirty: false,
            pending: Vec::new(),
            pending_at: 0,
        }
    }

    /// Keep the first `head_bytes` of the window in memory until `finish`.
    pub fn with_head_cache(mut self, head_bytes: u64) -> io::Result<Self> {
        self.flush_pending()?;
        let n = head_bytes.min(self.len) as usize;
        let mut head = vec![0u8; n];
        self.file.read_exact_at(&mut head, self.start)?;
        self.head = head;
        Ok(self)
    }

    /// Write out everything held in memory.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        if self.head_dirty {
            self.file.write_all_at(&self.head, self.start)?;
            self.head_dirty = false;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.file
                .write_all_at(&self.pending, self.start + self.pending_at)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Bytes that may be transferred at the current position.
    fn room(&self, want: usize) -> usize {
        (self.len.saturating_sub(self.pos)).min(want as u64) as usize
    }
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let head_len = self.head.len() as u64;
        let n = if self.pos < head_len {
            let n = n.min((head_len - self.pos) as usize);
            let at = self.pos as usize;
            buf[..n].copy_from_slice(&self.head[at..at + n]);
            n
        } else {
            let n = n.min(usize::try_from(self.len - self.pos).unwrap_or(usize::MAX));
            let end = self.pos + n as u64;
            let pend_end = self.pending_at + self.pending.len() as u64;
            if !self.pending.is_empty() && self.pos < pend_end && end > self.pending_at {
                self.flush_pending()?;
            }
            self.file.read_at(&mut buf[..n], self.start + self.pos)?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Slice<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.room(buf.len());
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "write at byte {} is past the end of a {}-byte partition",
                    self.pos, self.len
                ),
            ));
        }
        let head_len = self.head.len() as u64;
        let n = if self.pos < head_len {
            let n = n.min((head_len - self.pos) as usize);
            let at = self.pos as usize;
            self.head[at..at + n].copy_from_slice(&buf[..n]);
            self.head_dirty = true;
            n
        } else {
            let pend_end = self.pending_at + self.pending.len() as u64;
            let joins = !self.pending.is_empty() && self.pos == pend_end;
            if joins && self.pending.len() + n <= COMBINE_BYTES {
                self.pending.extend_from_slice(&buf[..n]);
            } else {
                self.flush_pending()?;
                if n >= COMBINE_BYTES {
                    self.file.write_all_at(&buf[..n], self.start + self.pos)?;
                } else {
                    self.pending_at = self.pos;
                    self.pending.extend_from_slice(&buf[..n]);
                }
            }
            n
        };
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.finish()
    }
}

impl Seek for Slice<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the partition",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn contents(f: &File) -> Vec<u8> {
        let mut out = vec![0u8; f.metadata().unwrap().len() as usize];
        f.read_exact_at(&mut out, 0).unwrap();
        out
    }

    #[test]
    fn window_maps_offsets_and_refuses_to_write_past_its_end() {
        let f = file_with(&[0u8; 64]);
        let mut s = Slice::new(&f, 16, 32);
        s.seek(SeekFrom::Start(30)).unwrap();
        assert_eq!(s.write(&[7u8; 5]).unwrap(), 2, "clamped to the window");
        assert!(s.write(&[7u8; 1]).is_err(), "nothing fits past the end");
        s.finish().unwrap();
        let c = contents(&f);
        assert_eq!(&c[46..48], &[7, 7]);
        assert_eq!(c[48], 0, "bytes after the window are untouched");
        assert_eq!(s.seek(SeekFrom::End(-32)).unwrap(), 0);
        assert!(s.seek(SeekFrom::Current(-1)).is_err());
    }

    #[test]
    fn head_cache_and_combined_writes_reach_the_file_only_on_finish() {
        let f = file_with(&vec![0u8; 1 << 20]);
        let mut s = Slice::new(&f, 4096, (1 << 20) - 4096)
            .with_head_cache(1000)
            .unwrap();
        // Straddle the head boundary, then write sequentially in odd chunks.
        s.seek(SeekFrom::Start(990)).unwrap();
        s.write_all(&[1u8; 20]).unwrap();
        for i in 0..300u32 {
            s.write_all(&vec![(i % 200) as u8 + 2; 333]).unwrap();
        }
        // Read back through the slice before finishing: must see new data.
        let mut back = vec![0u8; 20 + 300 * 333];
        s.seek(SeekFrom::Start(990)).unwrap();
        s.read_exact(&mut back).unwrap();
        s.finish().unwrap();
        let c = contents(&f);
        assert_eq!(&c[4096 + 990..4096 + 1010], &[1u8; 20]);
        for i in 0..300usize {
            let at = 4096 + 1010 + i * 333;
            assert!(c[at..at + 333].iter().all(|&b| b == (i % 200) as u8 + 2));
        }
        assert_eq!(&back[..], &c[4096 + 990..4096 + 1010 + 300 * 333]);
    }

    #[test]
    fn random_writes_match_a_plain_file_for_many_buffer_sizes() {
        // The same sequence of writes through a Slice and straight into a Vec.
        let mut model = vec![0u8; 200_000];
        let f = file_with(&model);
        let mut s = Slice::new(&f, 0, 200_000).with_head_cache(5000).unwrap();
        let mut seed = 12345u64;
        for round in 0..400 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let at = (seed >> 33) as usize % 190_000;
            let len = [1, 7, 512, 4096, 9000][round % 5];
            let len = len.min(200_000 - at);
            let byte = (round % 251) as u8;
            s.seek(SeekFrom::Start(at as u64)).unwrap();
            s.write_all(&vec![byte; len]).unwrap();
            model[at..at + len].fill(byte);
        }
        s.finish().unwrap();
        assert_eq!(contents(&f), model);
    }
}
