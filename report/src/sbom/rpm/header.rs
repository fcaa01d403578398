//! The header blob rpm stores for each installed package (the value of a database row):
//! a big-endian index count and data length, that many 16-byte index entries (tag, type,
//! offset, count) and the data store they point into. Every offset and count is checked
//! against the blob before anything is read or allocated.

/// What is wrong with a header blob.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// The blob ends before its index or data store does.
    #[error("header of {len} bytes is shorter than its {needed}-byte index and data store")]
    Short {
        /// The blob's length.
        len: usize,
        /// What its counts say it holds.
        needed: u64,
    },
    /// The counts are past rpm's own bounds.
    #[error("header declares {tags} tags and {data} bytes of data, past rpm's bounds")]
    Bounds {
        /// The index count.
        tags: u32,
        /// The data length.
        data: u32,
    },
    /// A tag's value lies outside the data store or has the wrong type.
    #[error("tag {tag}: {message}")]
    Tag {
        /// The tag.
        tag: u32,
        /// What is wrong.
        message: String,
    },
}

/// rpm's bound on the tags of one header (`hdrchkTags`).
const MAX_TAGS: u32 = 0xffff;
/// rpm's bound on the data store of one header (`hdrchkData`).
const MAX_DATA: u32 = 0x0fff_ffff;

/// The value types of the index.
const INT32: u32 = 4;
const STRING: u32 = 6;
const STRING_ARRAY: u32 = 8;
const I18NSTRING: u32 = 9;

/// One index entry.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    tag: u32,
    kind: u32,
    offset: u32,
    count: u32,
}

/// A parsed header: its index and data store, borrowed from the blob.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    index: Vec<IndexEntry>,
    data: &'a [u8],
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl<'a> Header<'a> {
    /// Parses a header blob as the database stores it (no lead, no header magic).
    pub(crate) fn parse(blob: &'a [u8]) -> Result<Header<'a>, HeaderError> {
        if blob.len() < 8 {
            return Err(HeaderError::Short {
                len: blob.len(),
                needed: 8,
            });
        }
        let tags = be32(blob, 0);
        let data = be32(blob, 4);
        if tags > MAX_TAGS || data > MAX_DATA {
            return Err(HeaderError::Bounds { tags, data });
        }
        let needed = 8 + 16 * u64::from(tags) + u64::from(data);
        if (blob.len() as u64) < needed {
            return Err(HeaderError::Short {
                len: blob.len(),
                needed,
            });
        }
        let store = 8 + 16 * tags as usize;
        let index = (0..tags as usize)
            .map(|i| {
                let at = 8 + 16 * i;
                IndexEntry {
                    tag: be32(blob, at),
                    kind: be32(blob, at + 4),
                    offset: be32(blob, at + 8),
                    count: be32(blob, at + 12),
                }
            })
            .collect();
        Ok(Header {
            index,
            data: &blob[store..store + data as usize],
        })
    }

    /// The last index entry for `tag` (entries appended after the signed region override
    /// it, as rpm reads them).
    fn entry(&self, tag: u32) -> Option<IndexEntry> {
        self.index.iter().rev().find(|e| e.tag == tag).copied()
    }

    fn bad(tag: u32, message: impl Into<String>) -> HeaderError {
        HeaderError::Tag {
            tag,
            message: message.into(),
        }
    }

    /// `count` NUL-terminated strings from `offset`.
    fn strings_at(&self, tag: u32, offset: u32, count: u32) -> Result<Vec<String>, HeaderError> {
        let mut at = offset as usize;
        if at > self.data.len() {
            return Err(Self::bad(
                tag,
                format!("offset {offset} is past the data store"),
            ));
        }
        // Each string takes a byte at least: a count past what is left is a lie.
        if count as usize > self.data.len() - at {
            return Err(Self::bad(
                tag,
                format!("{count} strings do not fit in the data store"),
            ));
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let rest = &self.data[at..];
            let Some(end) = memchr::memchr(0, rest) else {
                return Err(Self::bad(tag, "a string runs past the data store"));
            };
            out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            at += end + 1;
        }
        Ok(out)
    }

    /// A string tag (a string array or an i18n string gives its first value).
    pub(crate) fn string(&self, tag: u32) -> Result<Option<String>, HeaderError> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        match e.kind {
            STRING | STRING_ARRAY | I18NSTRING if e.count >= 1 => {
                Ok(self.strings_at(tag, e.offset, 1)?.pop())
            }
            kind => Err(Self::bad(
                tag,
                format!("type {kind} with count {} is not a string", e.count),
            )),
        }
    }

    /// A string array tag.
    pub(crate) fn strings(&self, tag: u32) -> Result<Option<Vec<String>>, HeaderError> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        match e.kind {
            STRING_ARRAY | I18NSTRING => Ok(Some(self.strings_at(tag, e.offset, e.count)?)),
            STRING if e.count == 1 => Ok(Some(self.strings_at(tag, e.offset, 1)?)),
            kind => Err(Self::bad(tag, format!("type {kind} is not a string array"))),
        }
    }

    /// A 32-bit integer array tag.
    pub(crate) fn int32s(&self, tag: u32) -> Result<Option<Vec<u32>>, HeaderError> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        if e.kind != INT32 {
            return Err(Self::bad(
                tag,
                format!("type {} is not a 32-bit integer", e.kind),
            ));
        }
        let start = e.offset as usize;
        let end = (e.count as u64)
            .checked_mul(4)
            .and_then(|n| n.checked_add(start as u64))
            .filter(|&end| end <= self.data.len() as u64)
            .ok_or_else(|| {
                Self::bad(
                    tag,
                    format!(
                        "{} integers at offset {} run past the data store",
                        e.count, e.offset
                    ),
                )
            })? as usize;
        Ok(Some(
            self.data[start..end]
                .chunks_exact(4)
                .map(|c| be32(c, 0))
                .collect(),
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header blob from (tag, type, count, value bytes), in that order.
    pub(crate) fn blob(entries: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, kind, count, value) in entries {
            if *kind == INT32 {
                while data.len() % 4 != 0 {
                    data.push(0);
                }
            }
            for n in [*tag, *kind, data.len() as u32, *count] {
                index.extend_from_slice(&n.to_be_bytes());
            }
            data.extend_from_slice(value);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&index);
        out.extend_from_slice(&data);
        out
    }

    pub(crate) fn string(tag: u32, value: &str) -> (u32, u32, u32, Vec<u8>) {
        (tag, STRING, 1, format!("{value}\0").into_bytes())
    }

    pub(crate) fn string_array(tag: u32, values: &[&str]) -> (u32, u32, u32, Vec<u8>) {
        let bytes = values.iter().flat_map(|v| format!("{v}\0").into_bytes());
        (tag, STRING_ARRAY, values.len() as u32, bytes.collect())
    }

    pub(crate) fn int32(tag: u32, values: &[u32]) -> (u32, u32, u32, Vec<u8>) {
        let bytes = values.iter().flat_map(|v| v.to_be_bytes());
        (tag, INT32, values.len() as u32, bytes.collect())
    }

    #[test]
    fn reads_strings_arrays_and_integers() {
        let b = blob(&[
            string(1000, "hello"),
            int32(1003, &[2]),
            string_array(1117, &["a", "", "b"]),
            int32(1116, &[0, 1, 0]),
        ]);
        let h = Header::parse(&b).unwrap();
        assert_eq!(h.string(1000).unwrap().as_deref(), Some("hello"));
        assert_eq!(h.int32s(1003).unwrap(), Some(vec![2]));
        assert_eq!(
            h.strings(1117).unwrap(),
            Some(vec!["a".to_string(), String::new(), "b".to_string()])
        );
        assert_eq!(h.int32s(1116).unwrap(), Some(vec![0, 1, 0]));
        assert_eq!(h.string(1001).unwrap(), None);
        assert!(h.int32s(1000).is_err(), "a string read as integers");
    }

    #[test]
    fn counts_and_offsets_outside_the_blob_are_errors() {
        assert!(matches!(
            Header::parse(&[0, 0, 0]),
            Err(HeaderError::Short { len: 3, .. })
        ));
        // The index count says 2 entries, the blob holds one.
        let mut b = blob(&[string(1000, "x")]);
        b[3] = 2;
        assert!(matches!(Header::parse(&b), Err(HeaderError::Short { .. })));
        // Past rpm's bounds.
        let b = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(Header::parse(&b), Err(HeaderError::Bounds { .. })));

        // An offset past the data store, a count past it, a string without its NUL.
        let mut b = blob(&[string(1000, "x"), int32(1116, &[1])]);
        b[8 + 8..8 + 12].copy_from_slice(&1000u32.to_be_bytes());
        b[8 + 16 + 12..8 + 16 + 16].copy_from_slice(&u32::MAX.to_be_bytes());
        let h = Header::parse(&b).unwrap();
        assert!(
            h.string(1000)
                .unwrap_err()
                .to_string()
                .contains("offset 1000")
        );
        assert!(h.int32s(1116).unwrap_err().to_string().contains("run past"));
        let mut b = blob(&[string_array(1117, &["a"])]);
        b[8 + 12..8 + 16].copy_from_slice(&u32::MAX.to_be_bytes());
        let h = Header::parse(&b).unwrap();
        assert!(
            h.strings(1117)
                .unwrap_err()
                .to_string()
                .contains("do not fit")
        );
        let mut b = blob(&[string(1000, "abc")]);
        let last = b.len() - 1;
        b[last] = b'd';
        let h = Header::parse(&b).unwrap();
        assert!(
            h.string(1000)
                .unwrap_err()
                .to_string()
                .contains("runs past")
        );
    }
}
