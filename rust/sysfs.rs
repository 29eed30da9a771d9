// SPDX-License-Identifier: GPL-2.0

//! Safe sysfs directories, attribute files and symlinks.
//!
//! A [`Dir`] owns a kobject (a directory); [`DirRef`] is a counted reference
//! to one, usable as a parent or a link target. A [`File`] registers one
//! attribute whose reads and writes go to a [`SysfsOps`] implementation,
//! and a [`Link`] is a symlink. Each removes its entry when dropped.
//!
//! Writes run with the file's kernfs active protection broken, so that a
//! write may remove any sysfs entry, including its own file or directory,
//! without deadlocking against the removal's drain. Reads keep the
//! protection: removing a file waits for its reads in flight, so a read must
//! never wait for a lock held by someone removing sysfs entries.

use super::bindings;
use core::{fmt, ptr::NonNull};
use kernel::fmt;
use kernel::{
    alloc::{flags::GFP_KERNEL, KBox},
    error::{code::*, from_err_ptr, to_result},
    prelude::*,
    str::{CStr, CString},
    sync::Arc,
};

/// A counted reference to a sysfs directory.
///
/// # Invariants
///
/// `kobj` points to a kobject on which this value holds one reference.
pub(crate) struct DirRef {
    kobj: NonNull<bindings::kobject>,
}

// SAFETY: A kobject reference may be taken, used and dropped from any thread.
unsafe impl Send for DirRef {}
// SAFETY: All uses through `&DirRef` are thread-safe kobject/sysfs calls.
unsafe impl Sync for DirRef {}

impl DirRef {
    fn as_ptr(&self) -> *mut bindings::kobject {
        self.kobj.as_ptr()
    }

    /// Takes a reference on a kobject owned by other kernel code (e.g. a
    /// SCSI host's device), so that links can point at it.
    ///
    /// # Safety
    ///
    /// `kobj` must point to a live kobject.
    pub(super) unsafe fn from_foreign(kobj: NonNull<bindings::kobject>) -> Self {
        // SAFETY: the caller guarantees the kobject is live.
        unsafe { bindings::kobject_get(kobj.as_ptr()) };
        // INVARIANT: the reference just taken is ours.
        Self { kobj }
    }
}

impl Clone for DirRef {
    fn clone(&self) -> Self {
        // SAFETY: By the type invariant `kobj` is a live kobject we hold a
        // reference on, so taking another is valid.
        unsafe { bindings::kobject_get(self.as_ptr()) };
        // INVARIANT: The reference just taken is owned by the new value.
        Self { kobj: self.kobj }
    }
}

impl Drop for DirRef {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own one reference; give it back.
        unsafe { bindings::kobject_put(self.as_ptr()) };
    }
}

/// A sysfs directory, removed from sysfs when dropped.
///
/// Outstanding [`DirRef`]s keep the memory alive but not the directory.
pub(crate) struct Dir {
    dir: DirRef,
}

impl Dir {
    /// Creates directory `name` under `parent`.
    ///
    /// Fails with `EEXIST` if the name is taken.
    pub(crate) fn new(parent: &DirRef, name: &str) -> Result<Self> {
        Self::create(parent.as_ptr(), name)
    }

    /// Creates directory `name` under `/sys/kernel`.
    pub(crate) fn new_in_sys_kernel(name: &str) -> Result<Self> {
        // SAFETY: `kernel_kobj` is created at boot and never freed.
        let parent = unsafe { bindings::scst_rs_kernel_kobj() };
        Self::create(parent, name)
    }

    fn create(parent: *mut bindings::kobject, name: &str) -> Result<Self> {
        let name = CString::try_from_fmt(fmt!("{name}"))?;
        // SAFETY: `name` is NUL-terminated and outlives the call (the kobject
        // copies it); `parent` is a live kobject: the kernel's, or one the
        // caller holds a `DirRef` on.
        let kobj = from_err_ptr(unsafe {
            bindings::scst_rs_kobject_create_and_add(name.as_char_ptr(), parent)
        })?;
        let kobj = NonNull::new(kobj).ok_or(ENOMEM)?;
        // INVARIANT: The helper returns the kobject with one reference, ours.
        Ok(Self {
            dir: DirRef { kobj },
        })
    }

    /// A counted reference to this directory.
    pub(crate) fn to_ref(&self) -> DirRef {
        self.dir.clone()
    }
}

impl core::ops::Deref for Dir {
    type Target = DirRef;

    fn deref(&self) -> &DirRef {
        &self.dir
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: The kobject is live (we hold a reference) and was added by
        // `create`; it is deleted only here. The reference is dropped after.
        unsafe { bindings::kobject_del(self.dir.as_ptr()) };
    }
}

/// The buffer a sysfs read fills: one page.
///
/// # Invariants
///
/// `buf` points to `PAGE_SIZE` writable bytes for the lifetime of the value.
pub(crate) struct SysfsBuf {
    buf: *mut u8,
    len: usize,
}

impl SysfsBuf {
    /// Number of bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl fmt::Write for SysfsBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = kernel::page::PAGE_SIZE - self.len;
        let n = s.len().min(room);
        // SAFETY: By the type invariant `buf` has PAGE_SIZE bytes and
        // `len + n <= PAGE_SIZE`; `s` cannot overlap the kernel's page.
        unsafe { core::ptr::copy_nonoverlapping(s.as_ptr(), self.buf.add(self.len), n) };
        self.len += n;
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Permissions of an attribute file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// 0444
    ReadOnly,
    /// 0644
    ReadWrite,
    /// 0600: secrets (CHAP credentials).
    Private,
}

/// What reads and writes of a group of attribute files do.
///
/// One implementation usually serves all files of an object, told apart by
/// [`SysfsOps::Attr`].
pub(crate) trait SysfsOps: Send + Sync + Sized + 'static {
    /// Tells the files of this implementation apart.
    type Attr: Copy + Send + Sync + 'static;

    /// Fills `out` with the file's contents. Must not wait for a lock that is
    /// held while sysfs entries are removed (see the module documentation).
    fn show(&self, attr: Self::Attr, out: &mut SysfsBuf) -> Result {
        let _ = (attr, out);
        Err(EIO)
    }

    /// Handles a write of `input` (the whole write, as given).
    fn store(&self, attr: Self::Attr, input: &[u8]) -> Result {
        let _ = (attr, input);
        Err(EACCES)
    }
}

/// The registered attribute; `attr` must stay the first field.
#[repr(C)]
struct FileInner<T: SysfsOps> {
    attr: bindings::kobj_attribute,
    id: T::Attr,
    ops: Arc<T>,
    _name: CString,
}

/// An attribute file, removed when dropped.
///
/// # Invariants
///
/// `inner.attr` is registered with sysfs in `dir` until `drop`.
pub(crate) struct File<T: SysfsOps> {
    inner: KBox<FileInner<T>>,
    dir: DirRef,
}

// SAFETY: The raw pointers in `inner.attr` point into `inner` itself or are
// lockdep keys; after registration the attribute is only read, by sysfs and
// by `drop`, so the file may move between and be shared by threads as `T` can.
unsafe impl<T: SysfsOps> Send for File<T> {}
// SAFETY: See `Send`: `&File<T>` allows no access to the attribute.
unsafe impl<T: SysfsOps> Sync for File<T> {}

impl<T: SysfsOps> File<T> {
    /// Creates attribute file `name` in `dir`, served by `ops` as `id`.
    pub(crate) fn new(
        dir: &DirRef,
        name: &CStr,
        mode: Mode,
        ops: Arc<T>,
        id: T::Attr,
    ) -> Result<Self> {
        let name = CString::try_from(name)?;
        let (bits, readable, writable) = match mode {
            Mode::ReadOnly => (0o444, true, false),
            Mode::ReadWrite => (0o644, true, true),
            Mode::Private => (0o600, true, true),
        };
        let mut inner = KBox::new(
            FileInner {
                attr: bindings::kobj_attribute::default(),
                id,
                ops,
                _name: name,
            },
            GFP_KERNEL,
        )?;
        inner.attr.attr.name = inner._name.as_char_ptr();
        inner.attr.attr.mode = bits;
        inner.attr.show = if readable {
            Some(show_callback::<T>)
        } else {
            None
        };
        inner.attr.store = if writable {
            Some(store_callback::<T>)
        } else {
            None
        };
        // SAFETY: `inner.attr.attr` is a valid, not yet registered attribute.
        unsafe { bindings::scst_rs_sysfs_attr_init(&mut inner.attr.attr) };
        // SAFETY: `dir` is a live kobject; the attribute lives in a box that
        // is freed only after `sysfs_remove_file_ns` in `drop`.
        to_result(unsafe {
            bindings::sysfs_create_file_ns(dir.as_ptr(), &inner.attr.attr, core::ptr::null())
        })?;
        // INVARIANT: Registered just above.
        Ok(Self {
            inner,
            dir: dir.clone(),
        })
    }
}

impl<T: SysfsOps> Drop for File<T> {
    fn drop(&mut self) {
        // Removal waits for reads and unbroken writes in flight; broken
        // writes do not touch `inner` after breaking (see `store_callback`),
        // so the box may be freed when this returns.
        // SAFETY: by the type invariant the attribute is registered in `dir`
        // (or went with it, if the directory was removed first: the helper
        // checks); see above for what removal waits for.
        unsafe { bindings::scst_rs_sysfs_remove_file(self.dir.as_ptr(), &self.inner.attr.attr) };
    }
}

/// # Safety
///
/// Called by sysfs for an attribute registered by [`File::new`]: `attr` is
/// the first field of a live `FileInner<T>`, `buf` a page.
unsafe extern "C" fn show_callback<T: SysfsOps>(
    _kobj: *mut bindings::kobject,
    attr: *mut bindings::kobj_attribute,
    buf: *mut kernel::ffi::c_char,
) -> isize {
    // SAFETY: `attr` is the first field of a `repr(C)` `FileInner<T>`,
    // alive while this read holds the file's active reference.
    let inner = unsafe { &*attr.cast::<FileInner<T>>() };
    // INVARIANT: sysfs passes a page-sized buffer.
    let mut out = SysfsBuf {
        buf: buf.cast(),
        len: 0,
    };
    match inner.ops.show(inner.id, &mut out) {
        Ok(()) => out.len() as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// # Safety
///
/// Called by sysfs for an attribute registered by [`File::new`]: `kobj` is
/// its live directory, `attr` the first field of a live `FileInner<T>` and
/// `buf` holds `count` bytes.
unsafe extern "C" fn store_callback<T: SysfsOps>(
    kobj: *mut bindings::kobject,
    attr: *mut bindings::kobj_attribute,
    buf: *const kernel::ffi::c_char,
    count: usize,
) -> isize {
    // SAFETY: As in `show_callback`; `inner` is used only before the
    // protection is broken below.
    let (ops, id) = unsafe {
        let inner = &*attr.cast::<FileInner<T>>();
        (inner.ops.clone(), inner.id)
    };
    // SAFETY: `kobj` and `attr` are live, as this write holds the file's
    // active reference. From here on the file may be removed and `inner`
    // freed: only `ops` (our own reference) and `id` (a copy) are used.
    let kn = unsafe { bindings::sysfs_break_active_protection(kobj, &(*attr).attr) };
    // SAFETY: sysfs passes `count` readable bytes that stay valid for the
    // whole write.
    let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
    let result = ops.store(id, input);
    if !kn.is_null() {
        // SAFETY: `kn` came from the matching break above.
        unsafe { bindings::sysfs_unbreak_active_protection(kn) };
    }
    match result {
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// A symlink in a sysfs directory, removed when dropped.
pub(crate) struct Link {
    dir: DirRef,
    name: CString,
}

impl Link {
    /// Creates symlink `name` in `dir` pointing at `target`.
    pub(crate) fn new(dir: &DirRef, name: &str, target: &DirRef) -> Result<Self> {
        let name = CString::try_from_fmt(fmt!("{name}"))?;
        // SAFETY: Both kobjects are live (we hold references); `name` is
        // NUL-terminated and copied by sysfs.
        to_result(unsafe {
            bindings::sysfs_create_link(dir.as_ptr(), target.as_ptr(), name.as_char_ptr())
        })?;
        Ok(Self {
            dir: dir.clone(),
            name,
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // SAFETY: `dir` is live (we hold a reference) and the link was
        // created in it by `new`; the helper skips a removed directory.
        unsafe { bindings::scst_rs_sysfs_remove_link(self.dir.as_ptr(), self.name.as_char_ptr()) };
    }
}
