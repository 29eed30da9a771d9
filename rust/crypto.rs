// SPDX-License-Identifier: GPL-2.0

//! Message digests through the kernel crypto API and random bytes (CHAP),
//! and the kernel's CRC32C (iSCSI header and data digests).

use super::bindings;
use super::sg::SgList;
use core::ptr;
use kernel::{prelude::*, str::CStr};

/// The digest of the concatenation of `parts` with hash `alg` (a crypto
/// API name such as "md5", "sha1", "sha256") into `out`; returns its length.
pub(crate) fn digest(alg: &CStr, parts: &[&[u8]], out: &mut [u8]) -> Result<usize> {
    const MAX_PARTS: usize = 4;
    if parts.len() > MAX_PARTS {
        return Err(EINVAL);
    }
    let mut ptrs = [ptr::null::<core::ffi::c_void>(); MAX_PARTS];
    let mut lens = [0usize; MAX_PARTS];
    for ((p, l), b) in ptrs.iter_mut().zip(lens.iter_mut()).zip(parts) {
        *p = b.as_ptr().cast();
        *l = b.len();
    }
    // SAFETY: `alg` is NUL-terminated; the first `parts.len()` entries of
    // `ptrs`/`lens` describe readable buffers; `out` is writable for its
    // length, which the helper checks against the digest size.
    let n = unsafe {
        bindings::scst_rs_shash_digest(
            alg.as_char_ptr(),
            ptrs.as_ptr(),
            lens.as_ptr(),
            parts.len(),
            out.as_mut_ptr(),
            out.len(),
        )
    };
    kernel::error::to_result(n)?;
    Ok(n as usize)
}

/// Fills `out` with random bytes from the kernel's CSPRNG.
pub(crate) fn random_bytes(out: &mut [u8]) {
    // SAFETY: `out` is writable for its length.
    unsafe { bindings::scst_rs_random_bytes(out.as_mut_ptr().cast(), out.len()) };
}

/// Continues a CRC32C over `data` from `seed` (no inversion on entry or
/// exit), with the kernel's implementation (accelerated where the CPU can).
pub(crate) fn crc32c(seed: u32, data: &[u8]) -> u32 {
    // SAFETY: `data` is readable for its length.
    unsafe { bindings::scst_rs_crc32c(seed, data.as_ptr().cast(), data.len()) }
}

/// Continues a CRC32C over `len` bytes of `sg` from offset `skip`.
pub(crate) fn crc32c_sg(seed: u32, sg: &SgList<'_>, skip: usize, len: usize) -> Result<u32> {
    if skip.checked_add(len).map_or(true, |end| end > sg.len()) {
        return Err(EINVAL);
    }
    let (sgl, nents) = sg.raw();
    // SAFETY: `sgl` has `nents` entries covering `skip + len` bytes, valid
    // while `sg` is borrowed; the helper only reads them.
    Ok(unsafe { bindings::scst_rs_crc32c_sg(seed, sgl, nents, skip, len) })
}
