//! Platforms (`os/arch[/variant]`, Go's names, normalised) and the order in which an image
//! index's entries satisfy one: the workspace's one platform type.

pub use rbuild_platform::{Platform, PlatformError};
