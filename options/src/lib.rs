//! The text forms of option values, read and written the way docker reads and writes them.
//!
//! - [`size`]: byte sizes. Flags docker reads with go-units' `RAMInBytes` (`--shm-size`,
//!   tmpfs `size=`, buildx `--keep-storage`) use [`size::Rule::Binary`]; a flag that
//!   compares with sizes docker prints uses [`size::Rule::Decimal`]. Sizes are printed as
//!   `docker images` and `docker system df` print them ([`size::human`], [`size::image`]).
//! - [`csv`]: comma-separated `key=value` fields (`--output`, `--cache-to`, `--cache-from`,
//!   `--secret`, `RUN --mount`), split as Go's `encoding/csv` splits one record.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod csv;
pub mod size;
