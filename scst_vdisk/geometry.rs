// SPDX-License-Identifier: GPL-2.0

//! Validation of a virtual disk's size and block size (plain `core` Rust).

use crate::scst_core::mgmt::{parse_u64, MgmtError, MgmtResult};

/// Logical block sizes a vdisk device accepts.
pub const BLOCK_SIZES: [u32; 4] = [512, 1024, 2048, 4096];

/// Parses a `blocksize=` value: one of [`BLOCK_SIZES`].
pub fn parse_block_size(value: &str) -> MgmtResult<'_, u32> {
    parse_u64(value)
        .and_then(|b| u32::try_from(b).ok())
        .filter(|b| BLOCK_SIZES.contains(b))
        .ok_or(MgmtError::BadValue {
            key: "blocksize",
            value,
            expected: "512, 1024, 2048 or 4096",
        })
}

/// Checks that `size` is a whole, non-zero number of blocks of
/// `block_size` (one of [`BLOCK_SIZES`]).
pub fn check<'a>(size_text: &'a str, size: u64, block_size: u32) -> MgmtResult<'a, ()> {
    // Block sizes are powers of two.
    if size == 0 || size & (u64::from(block_size) - 1) != 0 {
        return Err(MgmtError::BadValue {
            key: "size",
            value: size_text,
            expected: "a non-zero multiple of the block size",
        });
    }
    Ok(())
}
