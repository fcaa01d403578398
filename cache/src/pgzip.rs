//! Parallel gzip: the input is cut into fixed-size chunks, each compressed on its own thread
//! into an independent gzip member. A concatenation of gzip members is one valid gzip stream
//! (RFC 1952, section 2.2), which Go's, zlib's and flate2's multi-member readers decode as one.
//!
//! Written here rather than taken from `gzp`: fixed chunk boundaries make the output the same
//! whatever the number of threads (so layer digests are reproducible across machines), and
//! this needs nothing beyond `flate2` and `std::thread`.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread;

use flate2::Compression;
use flate2::write::GzEncoder;

/// The size of one independently compressed chunk.
pub const CHUNK: usize = 4 * 1024 * 1024;

/// A gzip writer that compresses chunks on up to `threads` threads.
#[derive(Debug)]
pub struct ParallelGzWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
    level: Compression,
    threads: usize,
    pending: VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
}

fn compress(data: &[u8], level: Compression) -> io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 2 + 64), level);
    enc.write_all(data)?;
    enc.finish()
}

impl<W: Write> ParallelGzWriter<W> {
    /// A writer into `inner` using `threads` threads (1: compress inline).
    pub fn new(inner: W, level: Compression, threads: usize) -> ParallelGzWriter<W> {
        ParallelGzWriter {
            inner,
            buf: Vec::with_capacity(CHUNK),
            level,
            threads: threads.max(1),
            pending: VecDeque::new(),
        }
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let out = rx
                .recv()
                .map_err(|_| io::Error::other("a gzip worker thread stopped"))??;
            self.inner.write_all(&out)?;
        }
        Ok(())
    }

    fn dispatch(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        if self.threads == 1 {
            let out = compress(&data, self.level)?;
            return self.inner.write_all(&out);
        }
        while self.pending.len() >= self.threads {
            self.write_oldest()?;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let level = self.level;
        thread::Builder::new()
            .name("rbuild-gzip".into())
            .spawn(move || {
                let _ = tx.send(compress(&data, level));
            })?;
        self.pending.push_back(rx);
        Ok(())
    }

    /// Compresses what is left, writes every member in order and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.pending.is_empty() {
            self.dispatch()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParallelGzWriter::new(Vec::new(), Compression::fast(), threads);
        w.write_all(data).unwrap();
        let gz = w.finish().unwrap();
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        gz
    }

    #[test]
    fn output_decodes_and_does_not_depend_on_threads() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let one = roundtrip(&data, 1);
        let two = roundtrip(&data, 2);
        let four = roundtrip(&data, 4);
        assert_eq!(one, two);
        assert_eq!(one, four);
        let empty = roundtrip(b"", 2);
        assert!(!empty.is_empty());
    }
}
