//! The parallel gzip writer: every gzip layer rbuild writes (build steps, converted and
//! pushed layers, imports) goes through [`ParallelGzip`], so the same tar always gives the
//! same blob and the same digest, whatever the machine and its number of threads.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

/// Uncompressed bytes per gzip member when compressing in parallel.
pub const GZIP_CHUNK: usize = 1 << 20;

/// A gzip writer that splits its input into [`GZIP_CHUNK`]-sized pieces and
/// deflates each into an independent gzip member on its own thread, keeping
/// up to `threads` in flight. Concatenated members are one valid gzip stream
/// (RFC 1952) that every OCI runtime reads. The output depends only on the
/// input, not on timing.
///
/// Written here instead of using `gzp`: the job is forty lines over `flate2`
/// and `std::thread`, while `gzp` brings its own thread pool and channel crates.
#[derive(Debug)]
pub struct ParallelGzip<W: Write> {
    out: W,
    buf: Vec<u8>,
    pending: VecDeque<JoinHandle<io::Result<Vec<u8>>>>,
    threads: usize,
    level: flate2::Compression,
}

fn gzip_member(data: &[u8], level: flate2::Compression) -> io::Result<Vec<u8>> {
    let level = if looks_incompressible(data) {
        flate2::Compression::none()
    } else {
        level
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2 + 64), level);
    enc.write_all(data)?;
    enc.finish()
}

/// Whether deflate would gain nothing on `data` (random bytes, files that are
/// compressed already): three samples, at the start, middle and end, each save
/// less than 2% at the fastest level. Such a chunk is stored instead: deflate
/// spends as long searching incompressible bytes for matches as it does on
/// text (about 40 MB/s a core at the default level) to emit the same bytes,
/// while storing them costs a copy and a CRC. The choice depends only on the
/// bytes, so the output stays reproducible.
fn looks_incompressible(data: &[u8]) -> bool {
    const SAMPLE: usize = 16 << 10;
    if data.len() < 4 * SAMPLE {
        return false;
    }
    [0, data.len() / 2 - SAMPLE / 2, data.len() - SAMPLE]
        .into_iter()
        .all(|at| {
            let sample = &data[at..at + SAMPLE];
            let mut enc = flate2::write::DeflateEncoder::new(
                Vec::with_capacity(SAMPLE + 64),
                flate2::Compression::fast(),
            );
            match enc.write_all(sample).and_then(|()| enc.finish()) {
                Ok(out) => out.len() * 100 >= sample.len() * 98,
                Err(_) => false,
            }
        })
}

impl<W: Write> ParallelGzip<W> {
    /// A writer using `threads` workers (at least 1).
    pub fn new(out: W, threads: usize) -> Self {
        ParallelGzip {
            out,
            buf: Vec::with_capacity(GZIP_CHUNK),
            pending: VecDeque::new(),
            threads: threads.max(1),
            level: flate2::Compression::default(),
        }
    }

    /// The same writer compressing at `level` (0-9; flate2's default is 6).
    pub fn with_level(mut self, level: u32) -> Self {
        self.level = flate2::Compression::new(level.min(9));
        self
    }

    fn drain(&mut self, keep: usize) -> io::Result<()> {
        while self.pending.len() > keep {
            let h = self.pending.pop_front().expect("pending is not empty");
            let data = h
                .join()
                .map_err(|_| io::Error::other("gzip worker panicked"))??;
            self.out.write_all(&data)?;
        }
        Ok(())
    }

    fn submit(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(GZIP_CHUNK));
        let level = self.level;
        self.pending
            .push_back(std::thread::spawn(move || gzip_member(&chunk, level)));
        // `threads` members deflate while this thread gathers the next chunk.
        self.drain(self.threads)
    }

    /// Flushes the last member and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.pending.is_empty() {
            let data = std::mem::take(&mut self.buf);
            self.drain(0)?;
            let member = gzip_member(&data, self.level)?;
            self.out.write_all(&member)?;
        }
        self.drain(0)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = GZIP_CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == GZIP_CHUNK {
            self.submit()?;
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
    use crate::decompress;
    use sha2::Digest as _;
    use std::io::Read;

    #[test]
    fn parallel_gzip_round_trips_and_is_deterministic() {
        let data: Vec<u8> = (0..(GZIP_CHUNK * 3 + 12345))
            .map(|i| (i % 251) as u8 ^ (i / 7919) as u8)
            .collect();
        let mut a = ParallelGzip::new(Vec::new(), 2);
        a.write_all(&data).unwrap();
        let a = a.finish().unwrap();
        let mut b = ParallelGzip::new(Vec::new(), 1);
        b.write_all(&data).unwrap();
        let b = b.finish().unwrap();
        assert_eq!(a, b);
        let mut back = Vec::new();
        decompress(&a[..], None)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let mut empty = ParallelGzip::new(Vec::new(), 2);
        empty.write_all(b"").unwrap();
        let e = empty.finish().unwrap();
        let mut back = Vec::new();
        decompress(&e[..], Some("application/vnd.oci.image.layer.v1.tar+gzip"))
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn incompressible_chunks_are_stored_and_the_rest_deflated() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let random: Vec<u8> = (0..GZIP_CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text: Vec<u8> = (0..GZIP_CHUNK)
            .flat_map(|i| format!("line {i} of a text file\n").into_bytes())
            .take(GZIP_CHUNK)
            .collect();
        assert!(looks_incompressible(&random));
        assert!(!looks_incompressible(&text));
        let stored = gzip_member(&random, flate2::Compression::default()).unwrap();
        // stored blocks: 5 bytes per 64 KiB block, plus the gzip header and trailer
        assert!(stored.len() >= random.len() && stored.len() < random.len() + 200);
        let deflated = gzip_member(&text, flate2::Compression::default()).unwrap();
        assert!(deflated.len() < text.len() / 4, "{}", deflated.len());
        let mut gz = ParallelGzip::new(Vec::new(), 2);
        gz.write_all(&[&random[..], &text[..], &random[..100]].concat())
            .unwrap();
        let out = gz.finish().unwrap();
        let mut back = Vec::new();
        decompress(&out[..], None)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, [&random[..], &text[..], &random[..100]].concat());
    }

    #[test]
    fn the_output_stays_what_layer_digests_were_made_with() {
        // Text, then random bytes (stored), then a short tail: the blob's digest is part of
        // every cached layer's identity, so it must not change with the code.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut data: Vec<u8> = (0..GZIP_CHUNK * 2)
            .flat_map(|i| format!("{i:08} a line of a file in a layer\n").into_bytes())
            .take(GZIP_CHUNK * 2)
            .collect();
        data.extend((0..GZIP_CHUNK).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        data.extend_from_slice(b"tail");
        for threads in [1, 2, 3] {
            let mut gz = ParallelGzip::new(Vec::new(), threads);
            gz.write_all(&data).unwrap();
            let blob = gz.finish().unwrap();
            let digest = sha2::Sha256::digest(&blob);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                hex, "e7feb8a037a2f77fc57e76d8b27f9d653b4da96b22a3fa0d133d2b28da1d5d65",
                "{threads} threads"
            );
        }
    }
}
