// SPDX-License-Identifier: GPL-2.0

//! Data buffers a command owns: pages described by a scatterlist, filled
//! from the network and handed to backends and to TCP without copies.

use super::{bindings, sg::SgList};
use core::ptr::NonNull;
use kernel::prelude::*;

/// `len` bytes in freshly allocated pages.
///
/// # Invariants
///
/// `pages` is a buffer from `scst_rs_pages_alloc` that this object owns.
pub(crate) struct Pages {
    pages: NonNull<bindings::scst_rs_pages>,
    len: usize,
}

// SAFETY: the buffer is plain memory with no thread affinity.
unsafe impl Send for Pages {}
// SAFETY: shared references only read the buffer's description.
unsafe impl Sync for Pages {}

impl Pages {
    /// Allocates `len` bytes (may sleep).
    pub(crate) fn alloc(len: usize) -> Result<Self> {
        // SAFETY: the helper takes any length and returns null on failure.
        let pages = NonNull::new(unsafe { bindings::scst_rs_pages_alloc(len) }).ok_or(ENOMEM)?;
        // INVARIANT: a new buffer we own.
        Ok(Self { pages, len })
    }

    /// The buffer as a scatterlist, borrowed mutably.
    pub(crate) fn sg(&mut self) -> SgList<'_> {
        let mut nents = 0u32;
        // SAFETY: `pages` is valid by the type invariants.
        let sgl = unsafe { bindings::scst_rs_pages_sg(self.pages.as_ptr(), &mut nents) };
        // SAFETY: the scatterlist covers `len` bytes in `nents` entries and
        // lives as long as `self`, which stays borrowed mutably.
        unsafe { SgList::from_raw(sgl, nents, self.len) }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: we own the buffer; TCP holds its own page references for
        // data still in flight.
        unsafe { bindings::scst_rs_pages_free(self.pages.as_ptr()) };
    }
}
