//! Bounds on untrusted tar streams: image layers, image archives and the archives ADD
//! extracts. One [`Limits`] value says how far such a stream may go; every reader of one
//! (the store's archive loader, the layer unpacker, ADD, the build outputs, and `rbuild
//! report`) reads it through [`Limits::reader`], so all of them stop at
//! the same place with a [`LimitError`] that says which limit was crossed.
//!
//! It is a leaf crate of its own so that every one of those readers (the store, the
//! executor, the engine and the report crate, which may not depend on each other) shares
//! one set of limits and defaults. It does no I/O of its own: [`TarLimiter`] is a state
//! machine over the bytes a caller's reader yields, and [`LimitedTar`] only passes them
//! through it.
//!
//! The limiter follows the tar stream the way the `tar` crate reads it (headers, GNU
//! long-name and long-link entries, PAX extended headers with their `size`, `path` and
//! `linkpath` records, GNU sparse extension blocks) and checks each entry's header before
//! the reader above it sees the entry:
//!
//! - the uncompressed stream as a whole, bytes after the end of the archive included, is at
//!   most [`Limits::max_layer_bytes`];
//! - it holds at most [`Limits::max_entries`] entries;
//! - a name or link target (after long names and PAX records are applied) is at most
//!   [`Limits::max_path_bytes`] long, and a name has at most [`Limits::max_path_depth`]
//!   components;
//! - a GNU long-name or long-link entry or a PAX extended header is at most
//!   [`MAX_EXTENSION_BYTES`]: the `tar` crate reads such an entry whole into memory before
//!   it returns the entry it describes, so this is what keeps a header that claims a
//!   gigabyte from taking a gigabyte.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{self, Read, Seek, SeekFrom};

/// The default of [`Limits::max_layer_bytes`]: 64 GiB, well above real layers (the largest
/// public images have layers of a few GiB) and far below what a small bomb expands to.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;
/// The default of [`Limits::max_entries`].
pub const DEFAULT_MAX_ENTRIES: u64 = 4_000_000;
/// The default of [`Limits::max_path_bytes`]: Linux's `PATH_MAX`, which no path a program
/// can open in one call exceeds.
pub const DEFAULT_MAX_PATH_BYTES: usize = 4096;
/// The default of [`Limits::max_path_depth`].
pub const DEFAULT_MAX_PATH_DEPTH: usize = 256;
/// The largest GNU long-name or long-link entry, or PAX extended header: Go's
/// `archive/tar`, which Docker, containerd and BuildKit read layers with, stops at the same
/// size.
pub const MAX_EXTENSION_BYTES: u64 = 1 << 20;

/// How far an untrusted tar stream may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes of the uncompressed stream.
    pub max_layer_bytes: u64,
    /// The most entries (long-name, long-link and PAX header entries not counted).
    pub max_entries: u64,
    /// The longest entry name or link target, in bytes.
    pub max_path_bytes: usize,
    /// The most components (`a/b/c` has 3; empty and `.` components do not count) of an
    /// entry name.
    pub max_path_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_path_bytes: DEFAULT_MAX_PATH_BYTES,
            max_path_depth: DEFAULT_MAX_PATH_DEPTH,
        }
    }
}

impl Limits {
    /// `inner`, an uncompressed tar stream, checked against these limits as it is read.
    pub fn reader<R: Read>(&self, inner: R) -> LimitedTar<R> {
        LimitedTar {
            inner,
            limiter: TarLimiter::new(*self),
        }
    }
}

/// A limit a tar stream crossed. Callers name the layer or archive around it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The stream is larger than [`Limits::max_layer_bytes`].
    #[error("larger than {limit} bytes uncompressed")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// More entries than [`Limits::max_entries`].
    #[error("more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// A name longer than [`Limits::max_path_bytes`].
    #[error("entry {entry} has a name of {bytes} bytes, more than the {limit} allowed")]
    NameTooLong {
        /// The name, shortened.
        entry: String,
        /// Its length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A link target longer than [`Limits::max_path_bytes`].
    #[error("entry {entry} links to a name of {bytes} bytes, more than the {limit} allowed")]
    LinkTooLong {
        /// The entry, shortened.
        entry: String,
        /// The target's length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A name with more components than [`Limits::max_path_depth`].
    #[error("entry {entry} has {depth} path components, more than the {limit} allowed")]
    TooDeep {
        /// The name, shortened.
        entry: String,
        /// Its components.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// A long-name, long-link or PAX header entry larger than [`MAX_EXTENSION_BYTES`].
    #[error("{after}: a {kind} of {bytes} bytes, more than the {limit} allowed")]
    ExtensionTooLarge {
        /// What it is (`GNU long name`, `GNU long link`, `PAX extended header`).
        kind: &'static str,
        /// Where it is: after which entry.
        after: String,
        /// The size its header claims.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
}

impl LimitError {
    /// The limit error `e` carries, when a [`LimitedTar`] made it.
    pub fn of(e: &io::Error) -> Option<&LimitError> {
        e.get_ref()?.downcast_ref::<LimitError>()
    }

    /// This error as an `io::Error` (kind `InvalidData`) that [`LimitError::of`] finds again.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// A name for messages: quoted, and cut in the middle when long.
fn show(name: &[u8]) -> String {
    const KEEP: usize = 48;
    let text = String::from_utf8_lossy(name);
    if text.chars().count() <= 2 * KEEP {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(KEEP).collect();
    let tail: String = {
        let mut t: Vec<char> = text.chars().rev().take(KEEP / 2).collect();
        t.reverse();
        t.into_iter().collect()
    };
    format!("{:?}", format!("{head}...{tail}"))
}

const BLOCK: u64 = 512;

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// What the next bytes of the stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A header block.
    Header,
    /// GNU sparse extension blocks, then `data` bytes of data.
    SparseBlocks { data: u64 },
    /// The data of a long-name, long-link or PAX header entry (`left` bytes), then its
    /// padding.
    Extension { kind: u8, left: u64, pad: u64 },
    /// An entry's data and padding.
    Data { left: u64 },
    /// After the end of the archive (or a header the tar reader refuses on its own): only
    /// counted.
    End,
}

/// Follows a tar stream block by block and checks it against [`Limits`]: feed it every byte
/// of the stream in order ([`TarLimiter::feed`], or [`TarLimiter::skip`] for bytes of entry
/// data that are skipped unread).
#[derive(Debug, Clone)]
pub struct TarLimiter {
    limits: Limits,
    state: State,
    seen: u64,
    entries: u64,
    block: Vec<u8>,
    ext: Vec<u8>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
    last: Vec<u8>,
}

impl TarLimiter {
    /// A limiter at the start of a stream.
    pub fn new(limits: Limits) -> Self {
        TarLimiter {
            limits,
            state: State::Header,
            seen: 0,
            entries: 0,
            block: Vec::with_capacity(BLOCK as usize),
            ext: Vec::new(),
            long_name: None,
            long_link: None,
            pax: None,
            last: Vec::new(),
        }
    }

    /// Bytes of the stream so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Entries so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// How many more bytes the stream may have.
    pub fn room(&self) -> u64 {
        self.limits.max_layer_bytes.saturating_sub(self.seen)
    }

    fn count(&mut self, n: u64) -> Result<(), LimitError> {
        self.seen = self.seen.saturating_add(n);
        if self.seen > self.limits.max_layer_bytes {
            return Err(LimitError::TooLarge {
                limit: self.limits.max_layer_bytes,
            });
        }
        Ok(())
    }

    /// The next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), LimitError> {
        self.count(data.len() as u64)?;
        while !data.is_empty() {
            match self.state {
                State::End => return Ok(()),
                State::Data { left } => {
                    let n = left.min(data.len() as u64);
                    data = &data[n as usize..];
                    self.data_done(left - n);
                }
                State::Extension { kind, left, pad } => {
                    let n = left.min(data.len() as u64) as usize;
                    self.ext.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if left - n as u64 == 0 {
                        self.extension_done(kind);
                        self.data_done(pad);
                    } else {
                        self.state = State::Extension {
                            kind,
                            left: left - n as u64,
                            pad,
                        };
                    }
                }
                State::Header | State::SparseBlocks { .. } => {
                    let n = (BLOCK as usize - self.block.len()).min(data.len());
                    self.block.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.block.len() == BLOCK as usize {
                        let block = std::mem::take(&mut self.block);
                        let result = match self.state {
                            State::SparseBlocks { data } => {
                                self.sparse_block(&block, data);
                                Ok(())
                            }
                            _ => self.header(&block),
                        };
                        self.block = block;
                        self.block.clear();
                        result?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `n` bytes of the stream that the reader skips over unread (entry data it seeks past).
    pub fn skip(&mut self, n: u64) -> Result<(), LimitError> {
        self.count(n)?;
        match self.state {
            State::Data { left } if n <= left => self.data_done(left - n),
            State::End => {}
            _ if n == 0 => {}
            // A reader only skips entry data: anything else means the stream is not what
            // the limiter takes it for, so stop following it (the size still counts).
            _ => self.state = State::End,
        }
        Ok(())
    }

    fn data_done(&mut self, left: u64) {
        self.state = if left == 0 {
            State::Header
        } else {
            State::Data { left }
        };
    }

    fn extension_done(&mut self, kind: u8) {
        let data = std::mem::take(&mut self.ext);
        match kind {
            b'L' => self.long_name = Some(data),
            b'K' => self.long_link = Some(data),
            _ => self.pax = Some(data),
        }
    }

    fn sparse_block(&mut self, block: &[u8], data: u64) {
        // Each extension block ends its 21 sparse records with an "is extended" flag.
        self.state = if block[504] == 1 {
            State::SparseBlocks { data }
        } else if data == 0 {
            State::Header
        } else {
            State::Data { left: padded(data) }
        };
    }

    fn header(&mut self, h: &[u8]) -> Result<(), LimitError> {
        if h.iter().all(|&b| b == 0) || !checksum_ok(h) {
            // The end of the archive; or a header the tar reader refuses itself.
            self.state = State::End;
            return Ok(());
        }
        let kind = h[156];
        let ustar = &h[257..263] == b"ustar\0" && &h[263..265] == b"00";
        let gnu = &h[257..263] == b"ustar " && &h[263..265] == b" \0";
        let Some(header_size) = numeric(&h[124..136]) else {
            self.state = State::End;
            return Ok(());
        };
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        let pax_size = self
            .pax
            .as_deref()
            .filter(|_| !extension)
            .and_then(|p| pax_value(p, b"size", true))
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
        let size = pax_size.unwrap_or(header_size);
        if (ustar || gnu) && matches!(kind, b'L' | b'K' | b'x') {
            let taken = match kind {
                b'L' => self.long_name.is_some(),
                b'K' => self.long_link.is_some(),
                _ => self.pax.is_some(),
            };
            if taken {
                // The tar reader refuses two of a kind for one entry.
                self.state = State::End;
                return Ok(());
            }
            if size > MAX_EXTENSION_BYTES {
                return Err(LimitError::ExtensionTooLarge {
                    kind: match kind {
                        b'L' => "GNU long name",
                        b'K' => "GNU long link",
                        _ => "PAX extended header",
                    },
                    after: if self.entries == 0 {
                        "at the start".into()
                    } else {
                        format!("after entry {}", show(&self.last))
                    },
                    bytes: size,
                    limit: MAX_EXTENSION_BYTES,
                });
            }
            self.ext.clear();
            self.state = if size == 0 {
                self.extension_done(kind);
                State::Header
            } else {
                State::Extension {
                    kind,
                    left: size,
                    pad: padded(size) - size,
                }
            };
            return Ok(());
        }
        // An entry the reader returns, with what the entries before it said about it.
        let long_name = self.long_name.take();
        let long_link = self.long_link.take();
        let pax = self.pax.take();
        if kind != b'g' {
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(LimitError::TooManyEntries {
                    limit: self.limits.max_entries,
                });
            }
        }
        let name = match (
            &long_name,
            pax.as_deref().and_then(|p| pax_value(p, b"path", false)),
        ) {
            (Some(l), _) => strip_nul(l).to_vec(),
            (None, Some(p)) => p.to_vec(),
            (None, None) => header_path(h, ustar),
        };
        let link = match (
            &long_link,
            pax.as_deref()
                .and_then(|p| pax_value(p, b"linkpath", false)),
        ) {
            (Some(l), _) => strip_nul(l).len(),
            (None, Some(p)) => p.len(),
            (None, None) => until_nul(&h[157..257]).len(),
        };
        self.check_name(&name, kind, link)?;
        self.last = name;
        self.state = if kind == b'S' && gnu && h[482] == 1 {
            State::SparseBlocks { data: size }
        } else if size == 0 {
            State::Header
        } else {
            State::Data { left: padded(size) }
        };
        Ok(())
    }

    fn check_name(&self, name: &[u8], kind: u8, link: usize) -> Result<(), LimitError> {
        let limit = self.limits.max_path_bytes;
        // A directory's name may end in `/`, which names nothing.
        let bytes = name.len() - name.iter().rev().take_while(|&&b| b == b'/').count();
        if bytes > limit {
            return Err(LimitError::NameTooLong {
                entry: show(name),
                bytes,
                limit,
            });
        }
        if matches!(kind, b'1' | b'2') && link > limit {
            return Err(LimitError::LinkTooLong {
                entry: show(name),
                bytes: link,
                limit,
            });
        }
        let depth = name
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .count();
        if depth > self.limits.max_path_depth {
            return Err(LimitError::TooDeep {
                entry: show(name),
                depth,
                limit: self.limits.max_path_depth,
            });
        }
        Ok(())
    }
}

fn until_nul(field: &[u8]) -> &[u8] {
    field
        .iter()
        .position(|&b| b == 0)
        .map_or(field, |i| &field[..i])
}

fn strip_nul(name: &[u8]) -> &[u8] {
    name.strip_suffix(b"\0").unwrap_or(name)
}

/// The header's own name: ustar joins the prefix field and the name field.
fn header_path(h: &[u8], ustar: bool) -> Vec<u8> {
    let name = until_nul(&h[..100]);
    if !ustar || (h[345] == 0 && !name.contains(&b'\\')) {
        return name.to_vec();
    }
    let prefix = until_nul(&h[345..500]);
    let mut out = Vec::with_capacity(prefix.len() + 1 + name.len());
    if !prefix.is_empty() {
        out.extend_from_slice(prefix);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// An octal field (up to a NUL, spaces trimmed), or a base-256 one (high bit set).
fn numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let (first, rest) = if field.len() == 8 {
            (u64::from(field[0] ^ 0x80), &field[1..])
        } else {
            (0, &field[field.len() - 8..])
        };
        return Some(rest.iter().fold(first, |n, &b| (n << 8) | u64::from(b)));
    }
    let text = std::str::from_utf8(until_nul(field)).ok()?;
    u64::from_str_radix(text.trim(), 8).ok()
}

fn checksum_ok(h: &[u8]) -> bool {
    let sum: u32 = h[..148]
        .iter()
        .chain(&h[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * 32;
    numeric(&h[148..156]).is_some_and(|c| c == u64::from(sum))
}

/// The value of the first PAX record `key` (`LEN key=value\n`), read as the `tar` crate reads
/// them: records end at an empty line; a malformed record is skipped, or ends the search when
/// `strict` (the crate looks up `size` that way, and `path` and `linkpath` the other).
fn pax_value<'a>(records: &'a [u8], key: &[u8], strict: bool) -> Option<&'a [u8]> {
    for line in records.split(|&b| b == b'\n') {
        if line.is_empty() {
            return None;
        }
        match pax_record(line) {
            Some((k, v)) if k == key => return Some(v),
            Some(_) => {}
            None if strict => return None,
            None => {}
        }
    }
    None
}

/// One record line (without its newline) as (key, value).
fn pax_record(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = line.iter().position(|&b| b == b' ')?;
    let len: usize = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
    if line.len() + 1 != len {
        return None;
    }
    let record = &line[space + 1..];
    let eq = record.iter().position(|&b| b == b'=')?;
    Some((&record[..eq], &record[eq + 1..]))
}

/// A reader of an uncompressed tar stream that fails, with a [`LimitError`] inside the
/// `io::Error`, once the stream crosses a [`Limits`]. Seeking forward (as the `tar` crate
/// does over entry data it is not asked for) is followed; other seeks are refused.
#[derive(Debug)]
pub struct LimitedTar<R> {
    inner: R,
    limiter: TarLimiter,
}

impl<R> LimitedTar<R> {
    /// The stream's limiter (bytes and entries so far).
    pub fn limiter(&self) -> &TarLimiter {
        &self.limiter
    }

    /// The reader inside.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for LimitedTar<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for at most one byte past the size limit: enough to know it was passed.
        let room = self.limiter.room().saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.limiter.feed(&buf[..n]).map_err(LimitError::into_io)?;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for LimitedTar<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::Current(n) if n >= 0 => {
                self.limiter.skip(n as u64).map_err(LimitError::into_io)?;
                self.inner.seek(to)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a checked tar stream only seeks forward",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar header block for `name` of `kind` and `size` (name up to 100 bytes).
    fn header(name: &[u8], kind: u8, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name);
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    /// An entry: header, data, padding.
    fn entry(name: &[u8], kind: u8, data: &[u8]) -> Vec<u8> {
        let mut out = header(name, kind, data.len() as u64);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
        out
    }

    /// PAX records: `LEN key=value\n`, LEN counting itself.
    fn pax(records: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let body = format!(" {k}={v}\n");
            let mut len = body.len() + 1;
            while body.len() + len.to_string().len() != len {
                len = body.len() + len.to_string().len();
            }
            out.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        out
    }

    fn end() -> Vec<u8> {
        vec![0u8; 1024]
    }

    /// Feeds `stream` in pieces of `step` bytes.
    fn run(limits: Limits, stream: &[u8], step: usize) -> Result<TarLimiter, LimitError> {
        let mut l = TarLimiter::new(limits);
        for piece in stream.chunks(step) {
            l.feed(piece)?;
        }
        Ok(l)
    }

    #[test]
    fn pax_records_are_read_as_the_tar_crate_reads_them() {
        let p = pax(&[("path", "a/b"), ("size", "12345678901")]);
        assert_eq!(pax_value(&p, b"path", false), Some(&b"a/b"[..]));
        assert_eq!(pax_value(&p, b"size", true), Some(&b"12345678901"[..]));
        assert_eq!(pax_value(b"9 path=x\n", b"path", false), Some(&b"x"[..]));
        assert_eq!(
            pax_value(b"8 path=x\n", b"path", false),
            None,
            "a wrong length"
        );
        // A malformed record ends a strict search; an empty line ends any.
        let mut p = b"3 x\n".to_vec();
        p.extend(pax(&[("size", "7")]));
        assert_eq!(pax_value(&p, b"size", true), None);
        assert_eq!(pax_value(&p, b"size", false), Some(&b"7"[..]));
        let mut p = b"\n".to_vec();
        p.extend(pax(&[("path", "x")]));
        assert_eq!(pax_value(&p, b"path", false), None);
    }

    #[test]
    fn follows_data_long_names_and_pax_records() {
        let mut s = entry(b"a", b'0', &[7u8; 1000]);
        s.extend(entry(b"././@LongLink", b'L', &[b'n'; 3000]));
        s.extend(entry(b"x", b'0', b"data"));
        // A PAX header whose size record says how much data follows.
        s.extend(entry(
            b"pax",
            b'x',
            &pax(&[("size", "700"), ("path", "p/q")]),
        ));
        let mut big = header(b"ignored", b'0', 0);
        big.extend(vec![1u8; 1024]);
        s.extend(big);
        s.extend(entry(b"last", b'5', b""));
        s.extend(end());
        for step in [1, 7, 512, 4096, s.len()] {
            let l = run(Limits::default(), &s, step).unwrap();
            assert_eq!(l.entries(), 4, "step {step}");
            assert_eq!(l.last, b"last");
        }
    }

    #[test]
    fn names_past_the_limits_are_refused() {
        let limits = Limits {
            max_path_bytes: 100,
            max_path_depth: 3,
            ..Limits::default()
        };
        let mut s = entry(b"././@LongLink", b'L', &[b'n'; 101]);
        s.extend(entry(b"x", b'0', b""));
        let e = run(limits, &s, 512).unwrap_err();
        assert!(
            matches!(e, LimitError::NameTooLong { bytes: 101, .. }),
            "{e}"
        );
        let s = entry(b"./a/b//c/./d", b'5', b"");
        let e = run(limits, &s, 512).unwrap_err();
        assert_eq!(
            e.to_string(),
            "entry \"./a/b//c/./d\" has 4 path components, more than the 3 allowed"
        );
        let mut s = entry(b"pax", b'x', &pax(&[("linkpath", &"t".repeat(101))]));
        s.extend(entry(b"l", b'2', b""));
        let e = run(limits, &s, 512).unwrap_err();
        assert!(
            matches!(e, LimitError::LinkTooLong { bytes: 101, .. }),
            "{e}"
        );
        // A long name shown in an error is cut.
        let long = LimitError::NameTooLong {
            entry: show("a/".repeat(1000).as_bytes()),
            bytes: 2000,
            limit: 100,
        };
        assert!(long.to_string().len() < 200, "{long}");
    }

    #[test]
    fn extension_headers_are_refused_before_their_data() {
        let mut s = entry(b"first", b'0', b"");
        s.extend(header(b"././@LongLink", b'L', 1 << 30));
        // Only the header: the limiter refuses it without the gigabyte.
        let e = run(Limits::default(), &s, 512).unwrap_err();
        assert_eq!(
            e.to_string(),
            "after entry \"first\": a GNU long name of 1073741824 bytes, more than the 1048576 allowed"
        );
        let s = header(b"pax", b'x', MAX_EXTENSION_BYTES + 1);
        assert!(matches!(
            run(Limits::default(), &s, 512).unwrap_err(),
            LimitError::ExtensionTooLarge {
                kind: "PAX extended header",
                ..
            }
        ));
    }

    #[test]
    fn entries_and_bytes_are_counted() {
        let limits = Limits {
            max_entries: 3,
            ..Limits::default()
        };
        let mut s = Vec::new();
        for i in 0..4 {
            s.extend(entry(format!("f{i}").as_bytes(), b'0', b"x"));
        }
        assert_eq!(
            run(limits, &s, 100).unwrap_err(),
            LimitError::TooManyEntries { limit: 3 }
        );
        let limits = Limits {
            max_layer_bytes: 2000,
            ..Limits::default()
        };
        // Bytes after the end of the archive count too.
        let mut s = entry(b"f", b'0', b"x");
        s.extend(end());
        s.extend(vec![0u8; 1000]);
        assert_eq!(
            run(limits, &s, 100).unwrap_err(),
            LimitError::TooLarge { limit: 2000 }
        );
    }

    #[test]
    fn the_reader_stops_at_the_limit_and_carries_the_error() {
        let limits = Limits {
            max_layer_bytes: 1000,
            ..Limits::default()
        };
        let data = vec![0u8; 5000];
        let mut r = limits.reader(&data[..]);
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(
            LimitError::of(&e),
            Some(&LimitError::TooLarge { limit: 1000 })
        );
        assert_eq!(r.limiter().seen(), 1001);
    }
}
