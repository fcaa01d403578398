//! The records of a Berkeley DB hash database (rpm's `Packages` before rpm 4.16): the
//! metadata page gives the byte order and page size, every hash page is read for its
//! key/data pairs, and a data item stored off-page is gathered from its chain of overflow
//! pages. Every offset is checked against its page, a chain may not visit more pages than
//! the file holds, and the records together may not hold more bytes than the file.

/// What is wrong with a Berkeley DB file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BdbError {
    /// The file is not a Berkeley DB hash database rpm can have written.
    #[error("not a Berkeley DB hash database: {0}")]
    Format(String),
    /// A page holds an item outside it, or a chain that loops or ends early.
    #[error("page {page}: {message}")]
    Page {
        /// The page number.
        page: u32,
        /// What is wrong.
        message: String,
    },
}

/// The magic number of a hash database.
const HASH_MAGIC: u32 = 0x0006_1561;
/// The size of a page's header.
const PAGE_HEADER: usize = 26;
/// Page types.
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASH: u8 = 13;
/// Item types of a hash page.
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;

/// A database file with its byte order.
struct Db<'a> {
    bytes: &'a [u8],
    little: bool,
    page_size: usize,
    pages: u32,
}

impl Db<'_> {
    fn u32_at(&self, at: usize) -> u32 {
        self.num(&self.bytes[at..at + 4])
    }

    /// A 32-bit number of 4 bytes in the file's byte order.
    fn num(&self, b: &[u8]) -> u32 {
        let b = [b[0], b[1], b[2], b[3]];
        if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    }

    fn u16_of(&self, page: &[u8], at: usize) -> u16 {
        let b = [page[at], page[at + 1]];
        if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    }

    fn page(&self, number: u32) -> &[u8] {
        let at = number as usize * self.page_size;
        &self.bytes[at..at + self.page_size]
    }

    /// The data of an off-page item: `len` bytes from the chain of overflow pages that
    /// starts at `first`.
    fn overflow(&self, from: u32, first: u32, len: u32) -> Result<Vec<u8>, BdbError> {
        let bad = |page: u32, message: String| BdbError::Page { page, message };
        if len as usize > self.bytes.len() {
            return Err(bad(
                from,
                format!("an item of {len} bytes is larger than the file"),
            ));
        }
        let mut out = Vec::with_capacity(len as usize);
        let mut next = first;
        let mut visited = 0u32;
        while out.len() < len as usize {
            if next == 0 || next >= self.pages {
                return Err(bad(
                    from,
                    format!(
                        "overflow chain ends at page {next} after {} of {len} bytes",
                        out.len()
                    ),
                ));
            }
            visited += 1;
            if visited > self.pages {
                return Err(bad(from, "overflow chain loops".to_string()));
            }
            let page = self.page(next);
            if page[25] != P_OVERFLOW {
                return Err(bad(next, format!("type {} in an overflow chain", page[25])));
            }
            let used = self.u16_of(page, 22) as usize;
            if PAGE_HEADER + used > self.page_size || out.len() + used > len as usize {
                return Err(bad(
                    next,
                    format!("{used} bytes do not fit the page or the item"),
                ));
            }
            out.extend_from_slice(&page[PAGE_HEADER..PAGE_HEADER + used]);
            let at = next as usize * self.page_size + 16;
            next = self.u32_at(at);
        }
        Ok(out)
    }
}

/// The records of a hash database whose keys are 4-byte numbers (rpm's package numbers,
/// in the file's byte order), as (key, value) in page order.
pub(crate) fn records(bytes: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, BdbError> {
    if bytes.len() < 512 {
        return Err(BdbError::Format(format!(
            "{} bytes, less than a page",
            bytes.len()
        )));
    }
    let magic_le = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let magic_be = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let little = match (magic_le, magic_be) {
        (HASH_MAGIC, _) => true,
        (_, HASH_MAGIC) => false,
        _ => return Err(BdbError::Format(format!("magic {magic_le:#010x}"))),
    };
    let mut db = Db {
        bytes,
        little,
        page_size: 0,
        pages: 0,
    };
    let page_size = db.u32_at(20);
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(BdbError::Format(format!("page size {page_size}")));
    }
    if bytes[24] != 0 {
        return Err(BdbError::Format("the file is encrypted".to_string()));
    }
    db.page_size = page_size as usize;
    let last = db.u32_at(32);
    let in_file = (bytes.len() / db.page_size) as u64;
    db.pages = (u64::from(last) + 1).min(in_file) as u32;

    let mut out = Vec::new();
    let mut total = 0usize;
    for number in 1..db.pages {
        let page = db.page(number);
        if page[25] != P_HASH && page[25] != P_HASH_UNSORTED {
            continue;
        }
        let entries = db.u16_of(page, 20) as usize;
        if PAGE_HEADER + 2 * entries > db.page_size {
            return Err(BdbError::Page {
                page: number,
                message: format!("{entries} entries do not fit the page"),
            });
        }
        // Items are packed from the end of the page down: item i ends where item i-1
        // starts.
        let item = |i: usize| -> Result<&[u8], BdbError> {
            let start = db.u16_of(page, PAGE_HEADER + 2 * i) as usize;
            let end = if i == 0 {
                db.page_size
            } else {
                db.u16_of(page, PAGE_HEADER + 2 * (i - 1)) as usize
            };
            if start < PAGE_HEADER + 2 * entries || start >= end || end > db.page_size {
                return Err(BdbError::Page {
                    page: number,
                    message: format!("item {i} at {start}..{end} is outside the page"),
                });
            }
            Ok(&page[start..end])
        };
        for pair in 0..entries / 2 {
            let key = item(2 * pair)?;
            let data = item(2 * pair + 1)?;
            if key[0] != H_KEYDATA || key.len() != 5 {
                return Err(BdbError::Page {
                    page: number,
                    message: format!("item {}: not a 4-byte key", 2 * pair),
                });
            }
            let k = db.num(&key[1..5]);
            let value = match data[0] {
                H_KEYDATA => data[1..].to_vec(),
                H_OFFPAGE if data.len() >= 12 => {
                    db.overflow(number, db.num(&data[4..8]), db.num(&data[8..12]))?
                }
                other => {
                    return Err(BdbError::Page {
                        page: number,
                        message: format!("item {}: type {other}", 2 * pair + 1),
                    });
                }
            };
            total += value.len();
            if total > bytes.len() {
                return Err(BdbError::Page {
                    page: number,
                    message: "the records hold more bytes than the file".to_string(),
                });
            }
            out.push((k, value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash database of 512-byte pages (little-endian unless `big`): the metadata page,
    /// one hash page with the given (key, first overflow page, length) items, then
    /// `overflow` pages of (next, data).
    fn db_in(big: bool, pairs: &[(u32, u32, u32)], overflow: &[(u32, &[u8])]) -> Vec<u8> {
        let n32 = |n: u32| {
            if big {
                n.to_be_bytes()
            } else {
                n.to_le_bytes()
            }
        };
        let n16 = |n: u16| {
            if big {
                n.to_be_bytes()
            } else {
                n.to_le_bytes()
            }
        };
        let size = 512;
        let pages = 2 + overflow.len();
        let mut out = vec![0u8; size * pages];
        out[12..16].copy_from_slice(&n32(HASH_MAGIC));
        out[20..24].copy_from_slice(&n32(size as u32));
        out[32..36].copy_from_slice(&n32(pages as u32 - 1));
        let page = &mut out[size..2 * size];
        page[25] = P_HASH;
        page[20..22].copy_from_slice(&n16(2 * pairs.len() as u16));
        let mut end = size;
        for (i, (key, first, len)) in pairs.iter().enumerate() {
            let mut k = vec![H_KEYDATA];
            k.extend_from_slice(&n32(*key));
            let mut d = vec![H_OFFPAGE, 0, 0, 0];
            d.extend_from_slice(&n32(*first));
            d.extend_from_slice(&n32(*len));
            for (j, item) in [k, d].iter().enumerate() {
                end -= item.len();
                page[end..end + item.len()].copy_from_slice(item);
                let at = PAGE_HEADER + 2 * (2 * i + j);
                page[at..at + 2].copy_from_slice(&n16(end as u16));
            }
        }
        for (n, (next, data)) in overflow.iter().enumerate() {
            let page = &mut out[(2 + n) * size..(3 + n) * size];
            page[25] = P_OVERFLOW;
            page[16..20].copy_from_slice(&n32(*next));
            page[22..24].copy_from_slice(&n16(data.len() as u16));
            page[PAGE_HEADER..PAGE_HEADER + data.len()].copy_from_slice(data);
        }
        out
    }

    fn db(pairs: &[(u32, u32, u32)], overflow: &[(u32, &[u8])]) -> Vec<u8> {
        db_in(false, pairs, overflow)
    }

    #[test]
    fn reads_overflow_chains() {
        let file = db(&[(7, 2, 6)], &[(3, b"abc"), (0, b"def")]);
        assert_eq!(records(&file).unwrap(), [(7, b"abcdef".to_vec())]);
        // A big-endian file (written on s390x or ppc64): the magic tells the byte order.
        let file = db_in(true, &[(7, 2, 6)], &[(3, b"abc"), (0, b"def")]);
        assert_eq!(records(&file).unwrap(), [(7, b"abcdef".to_vec())]);
    }

    #[test]
    fn a_looping_chain_is_an_error() {
        let file = db(&[(7, 2, 400)], &[(3, b"abc"), (2, b"def")]);
        assert_eq!(
            records(&file).unwrap_err(),
            BdbError::Page {
                page: 1,
                message: "overflow chain loops".to_string()
            }
        );
    }

    #[test]
    fn chains_past_the_file_or_amplified_records_are_errors() {
        let file = db(&[(7, 9, 3)], &[]);
        assert!(
            records(&file)
                .unwrap_err()
                .to_string()
                .contains("ends at page 9")
        );
        // Many items sharing one long chain would hold more than the file.
        let chunk = [b'x'; 400];
        let pairs: Vec<(u32, u32, u32)> = (0..20).map(|k| (k, 2, 800)).collect();
        let file = db(&pairs, &[(3, &chunk), (0, &chunk)]);
        assert!(
            records(&file)
                .unwrap_err()
                .to_string()
                .contains("more bytes than the file")
        );
        assert!(
            records(&[0u8; 4096])
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
    }
}
