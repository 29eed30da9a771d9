// SPDX-License-Identifier: GPL-2.0

//! Backing files and block devices of the vdisk handlers, opened in the
//! kernel, with reads and writes straight from and to a command's
//! scatterlist.

use super::{bindings, sg::SgList};
use kernel::{error::from_err_ptr, prelude::*, str::CStr, types::ForeignOwnable};

/// How to open a backing file.
#[derive(Clone, Copy, Default)]
pub(crate) struct OpenOptions {
    /// Open read-only.
    pub(crate) read_only: bool,
    /// Bypass the page cache (`O_DIRECT`).
    pub(crate) direct: bool,
    /// Every write reaches stable storage (`O_DSYNC`).
    pub(crate) sync: bool,
}

/// An open file.
///
/// # Invariants
///
/// `file` is a file reference this object owns, released on drop.
pub(crate) struct BackingFile {
    file: *mut bindings::file,
}

// SAFETY: a `struct file` reference may be used and released from any thread.
unsafe impl Send for BackingFile {}
// SAFETY: the file operations used here may run concurrently.
unsafe impl Sync for BackingFile {}

fn check_len(ret: isize) -> Result<usize> {
    if ret < 0 {
        Err(Error::from_errno(ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// The raw list of `sg`, if it holds `len` bytes from `skip`.
fn range_of(sg: &SgList<'_>, skip: usize, len: usize) -> Result<(*mut bindings::scatterlist, u32)> {
    if skip.checked_add(len).map_or(true, |end| end > sg.len()) {
        return Err(EINVAL);
    }
    Ok(sg.raw())
}

impl BackingFile {
    /// Opens `path` as the module's own file reference.
    pub(crate) fn open(path: &CStr, options: OpenOptions) -> Result<Self> {
        // SAFETY: `path` is a NUL-terminated string valid for the call.
        let file = from_err_ptr(unsafe {
            bindings::scst_rs_file_open(
                path.as_char_ptr(),
                options.read_only,
                options.direct,
                options.sync,
            )
        })?;
        // INVARIANT: filp_open returned a reference we now own.
        Ok(Self { file })
    }

    /// Creates `path`, or truncates it, for writing; a new file is
    /// readable by root only.
    pub(crate) fn create(path: &CStr) -> Result<Self> {
        // SAFETY: `path` is a NUL-terminated string valid for the call.
        let file = from_err_ptr(unsafe { bindings::scst_rs_file_create(path.as_char_ptr()) })?;
        // INVARIANT: filp_open returned a reference we now own.
        Ok(Self { file })
    }

    /// Size in bytes (of the file, or of the block device).
    pub(crate) fn size(&self) -> u64 {
        // SAFETY: `file` is valid by the type invariants.
        unsafe { bindings::scst_rs_file_size(self.file) }
    }

    /// Whether this is a block device.
    pub(crate) fn is_block_device(&self) -> bool {
        // SAFETY: `file` is valid by the type invariants.
        unsafe { bindings::scst_rs_file_is_bdev(self.file) }
    }

    /// Whether this is a regular file.
    pub(crate) fn is_regular(&self) -> bool {
        // SAFETY: `file` is valid by the type invariants.
        unsafe { bindings::scst_rs_file_is_regular(self.file) }
    }

    /// Whether this file can be read without blocking
    /// ([`Self::read_into_nowait`]): its filesystem honours `RWF_NOWAIT`
    /// (ext4, XFS, Btrfs, block devices), or it is a tmpfs file, whose
    /// page cache is read directly. Others (NFS, FUSE) cannot.
    pub(crate) fn can_nowait(&self) -> bool {
        // SAFETY: `file` is valid by the type invariants.
        unsafe { bindings::scst_rs_file_can_nowait(self.file) }
    }

    fn rw_sg(
        &self,
        sg: &SgList<'_>,
        skip: usize,
        len: usize,
        pos: u64,
        write: bool,
        dsync: bool,
    ) -> Result<usize> {
        let (sgl, nents) = range_of(sg, skip, len)?;
        // SAFETY: `file` is valid by the type invariants; `sgl` has `nents`
        // entries covering `skip + len` bytes, valid while `sg` is borrowed.
        check_len(unsafe {
            bindings::scst_rs_file_rw_sg(
                self.file, sgl, nents, skip, len, pos as i64, write, dsync, false,
            )
        })
    }

    /// Reads `len` bytes at `pos` into `sg` from offset `skip`.
    pub(crate) fn read_into(
        &self,
        sg: &mut SgList<'_>,
        skip: usize,
        len: usize,
        pos: u64,
    ) -> Result<usize> {
        self.rw_sg(sg, skip, len, pos, false, false)
    }

    /// [`Self::read_into`], but what it would have to wait for (a page not
    /// in the page cache, a lock) ends it early: `EAGAIN`, or fewer bytes
    /// than `len`, with part of them in `sg`. `EOPNOTSUPP` where the file
    /// cannot do that (see [`Self::can_nowait`]).
    pub(crate) fn read_into_nowait(
        &self,
        sg: &mut SgList<'_>,
        skip: usize,
        len: usize,
        pos: u64,
    ) -> Result<usize> {
        let (sgl, nents) = range_of(sg, skip, len)?;
        // SAFETY: `file` is valid by the type invariants; `sgl` has `nents`
        // entries covering `skip + len` bytes, valid (and ours to write)
        // while `sg` is mutably borrowed.
        check_len(unsafe {
            bindings::scst_rs_file_read_nowait(self.file, sgl, nents, skip, len, pos as i64)
        })
    }

    /// Writes `len` bytes of `sg` from offset `skip` at `pos`; `dsync`
    /// returns only once they are on stable storage.
    pub(crate) fn write_from(
        &self,
        sg: &SgList<'_>,
        skip: usize,
        len: usize,
        pos: u64,
        dsync: bool,
    ) -> Result<usize> {
        self.rw_sg(sg, skip, len, pos, true, dsync)
    }

    /// Starts reading (or, with `write`, writing) `len` bytes at `pos` of
    /// the block device this file is, between it and `sg` from offset
    /// `skip`, as bios of its own; `fua` writes reach stable storage before
    /// they complete. `done` hears the outcome when the last bio ends, in
    /// whatever context the device completes it (hard interrupt included),
    /// or before this returns.
    ///
    /// The pages stay referenced until then; the device writes into them
    /// (a read) meanwhile, so their owner reads them only once `done` ran.
    /// `Err` means nothing started and `done` is dropped unheard.
    ///
    /// With `nowait` it never sleeps (see [`Self::bios_nowait`]): where the
    /// device would make it wait, `done` hears `EAGAIN` instead, perhaps
    /// before this returns.
    ///
    /// An `atomic` write goes as one bio with `REQ_ATOMIC`: the device
    /// writes all of it or none (see [`Self::atomic_write_unit`]); one that
    /// does not fit in one bio fails.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn submit_bios<T: BiosDone>(
        &self,
        sg: &SgList<'_>,
        skip: usize,
        len: usize,
        pos: u64,
        write: bool,
        fua: bool,
        atomic: bool,
        nowait: bool,
        done: KBox<T>,
    ) -> Result {
        let (sgl, nents) = range_of(sg, skip, len)?;
        let ctx = done.into_foreign() as *mut core::ffi::c_void;
        // The C side references every page it keeps beyond the call.
        // SAFETY: `file` is valid (type invariants); `sgl` has `nents` entries
        // covering `skip + len` bytes, valid for the call; `ctx` is a `KBox<T>`
        // that `bios_ended::<T>` takes back, called at most once.
        let ret = unsafe {
            bindings::scst_rs_file_submit_bios(
                self.file,
                sgl,
                nents,
                skip,
                len,
                pos,
                write,
                fua,
                atomic,
                nowait,
                Some(bios_ended::<T>),
                ctx,
            )
        };
        if ret < 0 {
            // SAFETY: `ctx` came from `into_foreign` above, and the C side
            // did not take it: `bios_ended` never runs for it.
            drop(unsafe { KBox::<T>::from_foreign(ctx) });
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    /// Whether this is a block device whose bios may be submitted where
    /// the submitter must not sleep (`REQ_NOWAIT`: the device's queue says
    /// so).
    pub(crate) fn bios_nowait(&self) -> bool {
        // SAFETY: `file` is valid by the type invariants.
        unsafe { bindings::scst_rs_file_bios_nowait(self.file) }
    }

    /// The smallest and largest atomic write (bytes, powers of two) of a
    /// block device that writes atomically; `None` for one that does not,
    /// and for a file.
    pub(crate) fn atomic_write_unit(&self) -> Option<(u32, u32)> {
        let (mut min, mut max) = (0u32, 0u32);
        // SAFETY: `file` is valid by the type invariants; `min` and `max`
        // are valid for writes.
        let can =
            unsafe { bindings::scst_rs_file_atomic_write_unit(self.file, &mut min, &mut max) };
        (can && min > 0 && max >= min).then_some((min, max))
    }

    /// The physical block size of a block device; `None` for a file.
    pub(crate) fn physical_block_size(&self) -> Option<u32> {
        // SAFETY: `file` is valid by the type invariants.
        let size = unsafe { bindings::scst_rs_file_physical_block_size(self.file) };
        (size != 0).then_some(size)
    }

    /// Reads into `buf` at `pos`.
    pub(crate) fn read_at(&self, buf: &mut [u8], pos: u64) -> Result<usize> {
        // SAFETY: `file` is valid; `buf` is valid for writes of its length.
        check_len(unsafe {
            bindings::scst_rs_file_read(self.file, buf.as_mut_ptr().cast(), buf.len(), pos as i64)
        })
    }

    /// Writes `buf` at `pos`.
    pub(crate) fn write_at(&self, buf: &[u8], pos: u64) -> Result<usize> {
        // SAFETY: `file` is valid; `buf` is valid for reads of its length.
        check_len(unsafe {
            bindings::scst_rs_file_write(self.file, buf.as_ptr().cast(), buf.len(), pos as i64)
        })
    }

    /// Writes the byte range `[start, end]` (and the metadata needed to read
    /// it back) to stable storage.
    pub(crate) fn sync_range(&self, start: u64, end: u64) -> Result {
        // SAFETY: `file` is valid by the type invariants.
        kernel::error::to_result(unsafe {
            bindings::scst_rs_file_sync(self.file, start as i64, end.min(i64::MAX as u64) as i64)
        })
    }

    /// Deallocates `len` bytes at `pos`; they read back as zeroes.
    pub(crate) fn punch_hole(&self, pos: u64, len: u64) -> Result {
        // SAFETY: `file` is valid by the type invariants.
        kernel::error::to_result(unsafe {
            bindings::scst_rs_file_punch_hole(self.file, pos as i64, len as i64)
        })
    }

    /// The next data (or, with `hole`, hole) offset at or after `pos`;
    /// `ENXIO` past the last data.
    pub(crate) fn seek(&self, pos: u64, hole: bool) -> Result<u64> {
        // SAFETY: `file` is valid by the type invariants.
        let ret = unsafe { bindings::scst_rs_file_seek(self.file, pos as i64, hole) };
        if ret < 0 {
            Err(Error::from_errno(ret as i32))
        } else {
            Ok(ret as u64)
        }
    }
}

/// Who hears that the bios of [`BackingFile::submit_bios`] ended.
pub(crate) trait BiosDone: Send + 'static {
    /// The last bio ended (`Err` if any failed). Runs in any context, hard
    /// interrupt included: it must not sleep.
    fn bios_done(self: KBox<Self>, result: Result);
}

/// The C side's completion of [`BackingFile::submit_bios`].
///
/// # Safety
///
/// `ctx` is a `KBox<T>` from `into_foreign`, not used again after this.
unsafe extern "C" fn bios_ended<T: BiosDone>(ctx: *mut core::ffi::c_void, err: core::ffi::c_int) {
    // SAFETY: guaranteed by the caller.
    let done = unsafe { KBox::<T>::from_foreign(ctx) };
    done.bios_done(kernel::error::to_result(err));
}

impl Drop for BackingFile {
    fn drop(&mut self) {
        // SAFETY: by the type invariants we own this reference; it is not
        // used again.
        unsafe { bindings::scst_rs_file_close(self.file) };
    }
}
