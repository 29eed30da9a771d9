// SPDX-License-Identifier: GPL-2.0

//! A command's data buffer as a scatterlist borrowed from its owner (the
//! SCSI midlayer for scst_local).

use super::bindings;
use core::marker::PhantomData;

/// A scatterlist of `len` bytes in `nents` entries, valid for `'a`.
///
/// # Invariants
///
/// `sgl` is null with `nents == 0 && len == 0`, or points to a scatterlist of
/// `nents` entries covering at least `len` bytes that stays valid, and is
/// not accessed by anyone else, for `'a`.
pub(crate) struct SgList<'a> {
    sgl: *mut bindings::scatterlist,
    nents: u32,
    len: usize,
    _owner: PhantomData<&'a mut ()>,
}

impl<'a> SgList<'a> {
    /// Wraps a scatterlist.
    ///
    /// # Safety
    ///
    /// `sgl` must satisfy the type invariants for `'a`.
    pub(crate) unsafe fn from_raw(sgl: *mut bindings::scatterlist, nents: u32, len: usize) -> Self {
        if sgl.is_null() {
            return Self::empty();
        }
        // INVARIANT: the caller guarantees the scatterlist.
        Self {
            sgl,
            nents,
            len,
            _owner: PhantomData,
        }
    }

    /// A buffer of no bytes.
    pub(crate) fn empty() -> Self {
        // INVARIANT: null with no entries and no bytes.
        Self {
            sgl: core::ptr::null_mut(),
            nents: 0,
            len: 0,
            _owner: PhantomData,
        }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first `len` bytes of the buffer (all of it if it is shorter).
    pub(crate) fn limited(mut self, len: usize) -> Self {
        // INVARIANT: a list that covers `self.len` bytes covers fewer.
        self.len = self.len.min(len);
        self
    }

    /// Copies `data` into the buffer at `offset`; returns the bytes copied.
    pub(crate) fn copy_from_slice(&mut self, offset: usize, data: &[u8]) -> usize {
        if self.sgl.is_null() || offset >= self.len {
            return 0;
        }
        let n = data.len().min(self.len - offset);
        // SAFETY: by the type invariants `sgl` has `nents` valid entries we
        // may write for `'a` (and `&mut self` excludes other users of this
        // view); `data` is valid for `n` bytes.
        unsafe {
            bindings::scst_rs_sg_copy_from_buffer(
                self.sgl,
                self.nents,
                data.as_ptr().cast(),
                n,
                offset,
            )
        }
    }

    /// Copies from the buffer at `offset` into `out`; returns the bytes
    /// copied.
    pub(crate) fn copy_to_slice(&self, offset: usize, out: &mut [u8]) -> usize {
        if self.sgl.is_null() || offset >= self.len {
            return 0;
        }
        let n = out.len().min(self.len - offset);
        // SAFETY: by the type invariants `sgl` has `nents` valid entries;
        // `out` is valid for writes of `n` bytes.
        unsafe {
            bindings::scst_rs_sg_copy_to_buffer(
                self.sgl,
                self.nents,
                out.as_mut_ptr().cast(),
                n,
                offset,
            )
        }
    }

    /// Zeroes `len` bytes of the buffer from `offset` (as many as it
    /// holds); returns the bytes zeroed.
    pub(crate) fn zero(&mut self, offset: usize, len: usize) -> usize {
        if self.sgl.is_null() || offset >= self.len {
            return 0;
        }
        let n = len.min(self.len - offset);
        // SAFETY: by the type invariants `sgl` has `nents` valid entries we
        // may write for `'a`; `&mut self` excludes other users of this view.
        unsafe { bindings::scst_rs_sg_zero(self.sgl, self.nents, n, offset) }
    }

    /// Copies `len` bytes from the start of `src` to the start of this
    /// buffer (as many as both hold); returns the bytes copied.
    pub(crate) fn copy_from_sg(&mut self, src: &SgList<'_>, len: usize) -> usize {
        let n = len.min(self.len).min(src.len);
        if n == 0 {
            return 0;
        }
        // SAFETY: by the type invariants both lists are valid for their
        // lengths; `&mut self` excludes other users of the destination.
        unsafe { bindings::scst_rs_sg_copy_sg(self.sgl, self.nents, src.sgl, src.nents, n) }
    }

    /// The raw scatterlist, for the file I/O of this layer.
    pub(super) fn raw(&self) -> (*mut bindings::scatterlist, u32) {
        (self.sgl, self.nents)
    }
}
