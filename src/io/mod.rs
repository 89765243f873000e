//! Domain-free I/O adapters: hashing readers, an offset window over a file,
//! and the one buffer size every stage uses.

pub mod cleanup;
mod slice;

pub use slice::Slice;

use sha2::{Digest, Sha256};
use std::io::{self, Read};

/// The buffer size for every streaming copy (256 KiB).
pub const BUFFER_SIZE: usize = 256 * 1024;

/// A sha256 digest, printed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// The first 12 hex digits, enough to tell two values apart in a report.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_string()
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{self}")
    }
}

impl std::str::FromStr for Sha256Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(format!(
                "`{s}` is not a sha256 digest (64 lowercase hex digits)"
            ));
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(|e| e.to_string())?;
            out[i] = u8::from_str_radix(pair, 16).map_err(|e| e.to_string())?;
        }
        Ok(Sha256Digest(out))
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A reader that hashes everything read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The digest and length of everything read so far.
    pub fn finish(self) -> (Sha256Digest, u64) {
        (Sha256Digest(self.hasher.finalize().into()), self.bytes)
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A reader that reports every byte read to a progress callback.
pub struct ProgressReader<R, F: FnMut(u64)> {
    inner: R,
    on_read: F,
}

impl<R: Read, F: FnMut(u64)> ProgressReader<R, F> {
    pub fn new(inner: R, on_read: F) -> Self {
        ProgressReader { inner, on_read }
    }
}

impl<R: Read, F: FnMut(u64)> Read for ProgressReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_read)(n as u64);
        Ok(n)
    }
}

/// Chunks a [`TeeReader`] may hold for its consumer before the copy waits.
const TEE_CHUNKS: usize = 4;

/// A reader that hands a copy of every chunk read through it to a consumer
/// on its own thread, which reads them as one stream through a
/// [`ChunkReader`]: a second look at bytes being copied, without a second
/// pass over the file. [`TeeReader::finish`] ends the stream and returns
/// what the consumer made of it. A consumer that returns early costs the
/// copy nothing more; one that is slower holds it back by at most
/// [`TEE_CHUNKS`] chunks.
pub struct TeeReader<R, T> {
    inner: R,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    consumer: std::thread::JoinHandle<T>,
}

impl<R: Read, T: Send + 'static> TeeReader<R, T> {
    pub fn new(inner: R, consumer: impl FnOnce(&mut ChunkReader) -> T + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(TEE_CHUNKS);
        let consumer = std::thread::spawn(move || {
            consumer(&mut ChunkReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
            })
        });
        TeeReader {
            inner,
            tx: Some(tx),
            consumer,
        }
    }

    /// End the consumer's stream (it sees end of file) and wait for its result.
    pub fn finish(mut self) -> io::Result<T> {
        self.tx = None;
        self.consumer
            .join()
            .map_err(|_| io::Error::other("the reader beside the copy panicked"))
    }
}

impl<R: Read, T> Read for TeeReader<R, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(tx) = &self.tx {
                // The consumer may be done; then nobody needs the chunk.
                if tx.send(buf[..n].to_vec()).is_err() {
                    self.tx = None;
                }
            }
        }
        Ok(n)
    }
}

/// The consumer's side of a [`TeeReader`]: the chunks, as one stream.
pub struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let have = std::io::BufRead::fill_buf(self)?;
            let n = have.len().min(buf.len());
            buf[..n].copy_from_slice(&have[..n]);
            n
        };
        self.pos += n;
        Ok(n)
    }
}

impl std::io::BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                // The sender is gone: the end of the stream.
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chunk.len());
    }
}

/// Copy `reader` to `writer`, hashing the bytes on a second thread while the
/// next chunk is read and written, so a copy costs about as much as the
/// slower of copying and hashing, not their sum. Memory stays at four
/// buffers whatever the size of the stream.
pub fn copy_hashed<R: Read, W: std::io::Write>(
    reader: R,
    writer: &mut W,
) -> io::Result<(Sha256Digest, u64)> {
    copy_hashed_in_chunks(reader, writer, BUFFER_SIZE)
}

/// [`copy_hashed`] with reads of up to `chunk_bytes` (large reads suit
/// O_DIRECT, which bypasses the kernel's read-ahead).
pub fn copy_hashed_in_chunks<R: Read, W: std::io::Write>(
    mut reader: R,
    writer: &mut W,
    chunk_bytes: usize,
) -> io::Result<(Sha256Digest, u64)> {
    const POOL_BUFFERS: usize = 4;
    use std::sync::mpsc::{channel, sync_channel};
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(POOL_BUFFERS);
    let (free_tx, free_rx) = channel::<Vec<u8>>();
    for _ in 0..POOL_BUFFERS {
        free_tx
            .send(vec![0u8; chunk_bytes.max(1)])
            .expect("the pool's receiver is alive here");
    }
    let hasher = std::thread::spawn(move || {
        let mut h = Sha256::new();
        let mut bytes = 0u64;
        for (buf, n) in full_rx {
            h.update(&buf[..n]);
            bytes += n as u64;
            // The copier may have stopped early; then nobody needs the buffer.
            let _ = free_tx.send(buf);
        }
        (Sha256Digest(h.finalize().into()), bytes)
    });
    let copied = (|| -> io::Result<()> {
        loop {
            let mut buf = free_rx
                .recv()
                .map_err(|_| io::Error::other("the hashing thread stopped"))?;
            let n = loop {
                match reader.read(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            if n == 0 {
                return Ok(());
            }
            writer.write_all(&buf[..n])?;
            full_tx
                .send((buf, n))
                .map_err(|_| io::Error::other("the hashing thread stopped"))?;
        }
    })();
    drop(full_tx);
    let result = hasher
        .join()
        .map_err(|_| io::Error::other("the hashing thread panicked"))?;
    copied.map(|()| result)
}

/// Hash a whole reader in `BUFFER_SIZE` chunks.
pub fn sha256_reader<R: Read>(reader: R) -> io::Result<(Sha256Digest, u64)> {
    let mut hr = HashReader::new(reader);
    let mut buf = vec![0u8; BUFFER_SIZE];
    while hr.read(&mut buf)? != 0 {}
    Ok(hr.finish())
}

/// The length of a file or a block device (whose metadata says 0).
pub fn len_of(file: &std::fs::File) -> io::Result<u64> {
    use std::io::Seek;
    let mut f = file;
    f.seek(std::io::SeekFrom::End(0))
}

/// A size for people: `512 B`, `3.4 KiB`, `812.0 MiB`, `1.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Write `bytes` lowercase-hex encoded.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn hash_reader_matches_one_shot_digest_for_odd_read_sizes() {
        let data: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let want = Sha256Digest::of(&data);
        for step in [1, 7, 4096, BUFFER_SIZE + 3] {
            let (got, len) = sha256_reader(Trickle(&data, step)).unwrap();
            assert_eq!(got, want, "step {step}");
            assert_eq!(len, data.len() as u64);
        }
    }

    #[test]
    fn digest_parses_and_prints_round_trip() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Sha256Digest>().unwrap(), d);
        assert!("BA7816BF".parse::<Sha256Digest>().is_err());
        assert!(d
            .to_string()
            .to_uppercase()
            .parse::<Sha256Digest>()
            .is_err());
    }

    #[test]
    fn copy_hashed_copies_and_hashes_for_odd_read_sizes() {
        let data: Vec<u8> = (0..3 * BUFFER_SIZE as u32 + 17)
            .map(|i| (i % 253) as u8)
            .collect();
        for step in [1000, BUFFER_SIZE - 1, BUFFER_SIZE, 5 * BUFFER_SIZE] {
            let mut out = Vec::new();
            let (d, n) = copy_hashed(Trickle(&data, step), &mut out).unwrap();
            assert_eq!(
                (d, n),
                (Sha256Digest::of(&data), data.len() as u64),
                "step {step}"
            );
            assert_eq!(out, data);
        }
    }

    #[test]
    fn copy_hashed_reports_a_failing_writer() {
        struct Full;
        impl std::io::Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = vec![1u8; 3 * BUFFER_SIZE];
        let e = copy_hashed(&data[..], &mut Full).unwrap_err();
        assert_eq!(e.to_string(), "disk full");
    }

    #[test]
    fn tee_hands_the_consumer_every_byte_in_order() {
        let data: Vec<u8> = (0..3 * BUFFER_SIZE as u32 + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        for step in [1, 4097, BUFFER_SIZE] {
            let mut tee = TeeReader::new(Trickle(&data, step), |r| {
                let mut seen = Vec::new();
                r.read_to_end(&mut seen).map(|_| seen)
            });
            let mut out = Vec::new();
            io::copy(&mut tee, &mut out).unwrap();
            assert_eq!(out, data);
            assert_eq!(tee.finish().unwrap().unwrap(), data, "step {step}");
        }
    }

    #[test]
    fn a_tee_consumer_that_stops_early_does_not_hold_the_copy() {
        let data = vec![7u8; 20 * BUFFER_SIZE];
        let mut tee = TeeReader::new(Trickle(&data, 1000), |r| {
            let mut first = [0u8; 10];
            r.read_exact(&mut first).map(|()| first)
        });
        let mut out = Vec::new();
        io::copy(&mut tee, &mut out).unwrap();
        assert_eq!(out.len(), data.len());
        assert_eq!(tee.finish().unwrap().unwrap(), [7u8; 10]);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(35 << 20), "35.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn progress_reader_counts_every_byte() {
        let data = vec![1u8; 10_000];
        let mut seen = 0u64;
        let mut r = ProgressReader::new(Trickle(&data, 333), |n| seen += n);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(seen, 10_000);
    }
}
