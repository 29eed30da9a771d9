// SPDX-License-Identifier: GPL-2.0

//! A misc character device (`/dev/<name>`) whose files are Rust objects,
//! the poll wait queues they sleep on, user memory pinned into a
//! scatterlist, and a sleep that ignores signals.

use super::{bindings, sg::SgList};
use core::ffi::{c_int, c_long, c_uint, c_ulong, c_void};
use core::ptr::NonNull;
use kernel::{alloc::flags::GFP_KERNEL, error::to_result, prelude::*, str::CStr, sync::Arc};

/// An open file of a [`MiscDevice`].
pub(crate) trait MiscFile: Send + Sync + 'static {
    /// `ioctl(2)`: returns the call's result or an error.
    fn ioctl(&self, cmd: u32, arg: usize, nonblock: bool) -> Result<i64>;

    /// `poll(2)`: the ready events (`POLLIN` and the like) and the queue
    /// that is woken when they may have changed.
    fn poll(&self) -> (u32, Option<&PollQueue>);

    /// The last `close(2)` of the file.
    fn release(&self);
}

/// What opens the files of a [`MiscDevice`].
pub(crate) trait MiscOpen: Send + Sync + 'static {
    /// `open(2)`: a new file.
    fn open(&self) -> Result<Arc<dyn MiscFile>>;
}

/// `EPOLLIN | EPOLLRDNORM`: a file has something to read.
pub(crate) const POLL_IN: u32 = bindings::scst_rs_poll_mask_SCST_RS_POLL_IN;
/// `EPOLLERR`: a file is unusable.
pub(crate) const POLL_ERR: u32 = bindings::scst_rs_poll_mask_SCST_RS_POLL_ERR;

/// The registered device. Only one may exist at a time (the C side keeps
/// one `struct miscdevice`).
///
/// # Invariants
///
/// The device is registered with `_ops` (boxed so that its address, given to
/// C, is stable) as its context until this value drops.
pub(crate) struct MiscDevice {
    _ops: KBox<Arc<dyn MiscOpen>>,
}

impl MiscDevice {
    /// Registers `/dev/<name>`.
    pub(crate) fn register(name: &'static CStr, ops: Arc<dyn MiscOpen>) -> Result<Self> {
        let ops = KBox::new(ops, GFP_KERNEL)?;
        let ctx: *const Arc<dyn MiscOpen> = &*ops;
        // SAFETY: `name` is static; `ctx` stays valid until `drop`
        // deregisters the device, after which C no longer uses it.
        to_result(unsafe {
            bindings::scst_rs_misc_register(name.as_char_ptr(), ctx.cast_mut().cast())
        })?;
        // INVARIANT: registered with `_ops`.
        Ok(Self { _ops: ops })
    }
}

impl Drop for MiscDevice {
    fn drop(&mut self) {
        // SAFETY: registered by `register`. Open files hold a reference on
        // the module (the fops owner), so none is left when it unloads,
        // and misc_deregister waits for opens in progress.
        unsafe { bindings::scst_rs_misc_deregister() };
        // `_ops` drops after this, once C no longer uses it.
    }
}

/// Called by the C `open` of the device.
///
/// # Safety
///
/// `ctx` is the context of a registered [`MiscDevice`]; `private` is
/// valid for writes.
#[no_mangle]
unsafe extern "C" fn scst_rs_misc_cb_open(ctx: *mut c_void, private: *mut *mut c_void) -> c_int {
    // SAFETY: by the function's requirements `ctx` points to the boxed
    // `Arc<dyn MiscOpen>` of the registered device.
    let ops = unsafe { &*ctx.cast::<Arc<dyn MiscOpen>>() };
    let file = match ops.open().and_then(|f| Ok(KBox::new(f, GFP_KERNEL)?)) {
        Ok(f) => f,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: `private` is valid for writes; the box is reclaimed by
    // `scst_rs_misc_cb_release`.
    unsafe { *private = KBox::into_raw(file).cast() };
    0
}

/// Recovers the file object C holds.
///
/// # Safety
///
/// `private` was set by [`scst_rs_misc_cb_open`] and not yet released.
unsafe fn file_of<'a>(private: *mut c_void) -> &'a Arc<dyn MiscFile> {
    // SAFETY: the caller guarantees the box is live.
    unsafe { &*private.cast::<Arc<dyn MiscFile>>() }
}

/// Called by the C `release`.
///
/// # Safety
///
/// `private` was set by [`scst_rs_misc_cb_open`]; this is its last use.
#[no_mangle]
unsafe extern "C" fn scst_rs_misc_cb_release(private: *mut c_void) {
    // SAFETY: the box `open` leaked, handed back once.
    let file = unsafe { KBox::from_raw(private.cast::<Arc<dyn MiscFile>>()) };
    file.release();
}

/// Called by the C `unlocked_ioctl`.
///
/// # Safety
///
/// `private` was set by [`scst_rs_misc_cb_open`] and is not released
/// while the call runs (the VFS holds the file).
#[no_mangle]
unsafe extern "C" fn scst_rs_misc_cb_ioctl(
    private: *mut c_void,
    cmd: c_uint,
    arg: c_ulong,
    nonblock: bool,
) -> c_long {
    // SAFETY: as the function requires.
    let file = unsafe { file_of(private) };
    match file.ioctl(cmd, arg as usize, nonblock) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// Called by the C `poll`.
///
/// # Safety
///
/// As for [`scst_rs_misc_cb_ioctl`]; `queue` is valid for writes.
#[no_mangle]
unsafe extern "C" fn scst_rs_misc_cb_poll(
    private: *mut c_void,
    queue: *mut *mut bindings::scst_rs_pollq,
) -> c_uint {
    // SAFETY: as the function requires.
    let file = unsafe { file_of(private) };
    let (mask, q) = file.poll();
    // SAFETY: `queue` is valid for writes. The queue lives as long as the
    // file, which C holds until after every poll table drops it.
    unsafe { *queue = q.map_or(core::ptr::null_mut(), |q| q.q.as_ptr()) };
    mask
}

/// A wait queue that `poll(2)` sleeps on.
///
/// # Invariants
///
/// `q` is a queue from `scst_rs_pollq_alloc` that this object owns.
pub(crate) struct PollQueue {
    q: NonNull<bindings::scst_rs_pollq>,
}

// SAFETY: wait queues are used from any thread under their own lock.
unsafe impl Send for PollQueue {}
// SAFETY: waking is thread-safe.
unsafe impl Sync for PollQueue {}

impl PollQueue {
    /// An empty queue.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: no requirements; null on failure.
        let q = unsafe { bindings::scst_rs_pollq_alloc() };
        // INVARIANT: a new queue we own.
        Ok(Self {
            q: NonNull::new(q).ok_or(ENOMEM)?,
        })
    }

    /// Wakes the pollers: events may have changed.
    pub(crate) fn wake(&self) {
        // SAFETY: the queue is live by the type invariants.
        unsafe { bindings::scst_rs_pollq_wake(self.q.as_ptr()) };
    }
}

impl Drop for PollQueue {
    fn drop(&mut self) {
        // SAFETY: we own the queue; its owner's files are released, so no
        // poll table refers to it.
        unsafe { bindings::scst_rs_pollq_free(self.q.as_ptr()) };
    }
}

/// `len` bytes of a process's memory at `addr`, pinned (they can be
/// neither swapped nor moved) and described by a scatterlist.
///
/// # Invariants
///
/// `buf` is a buffer from `scst_rs_ubuf_pin` of `len` bytes that this
/// object owns.
pub(crate) struct PinnedUserBuf {
    buf: NonNull<bindings::scst_rs_ubuf>,
    addr: usize,
    len: usize,
}

// SAFETY: pinned pages may be used and unpinned from any thread.
unsafe impl Send for PinnedUserBuf {}
// SAFETY: shared references only read the description.
unsafe impl Sync for PinnedUserBuf {}

impl PinnedUserBuf {
    /// Pins `len` bytes at `addr` of the calling process, for writing.
    pub(crate) fn pin(addr: usize, len: usize) -> Result<Self> {
        let mut err: c_int = 0;
        // SAFETY: the helper checks the range; user memory is only pinned.
        let buf = unsafe { bindings::scst_rs_ubuf_pin(addr, len, &mut err) };
        match NonNull::new(buf) {
            // INVARIANT: a new pinned buffer of `len` bytes.
            Some(buf) => Ok(Self { buf, addr, len }),
            None => Err(Error::from_errno(if err < 0 { err } else { -22 })),
        }
    }

    /// The user address of the buffer.
    pub(crate) fn addr(&self) -> usize {
        self.addr
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The pages as a scatterlist.
    pub(crate) fn sg(&mut self) -> SgList<'_> {
        let mut nents = 0u32;
        // SAFETY: `buf` is live by the type invariants.
        let sgl = unsafe { bindings::scst_rs_ubuf_sg(self.buf.as_ptr(), &mut nents) };
        // SAFETY: the table covers `len` bytes and lives as long as `self`,
        // which stays borrowed mutably. The process may write the pages
        // concurrently: that only changes the bytes a copy sees.
        unsafe { SgList::from_raw(sgl, nents, self.len) }
    }
}

impl Drop for PinnedUserBuf {
    fn drop(&mut self) {
        // SAFETY: we own the buffer and nothing borrows its scatterlist.
        unsafe { bindings::scst_rs_ubuf_unpin(self.buf.as_ptr()) };
    }
}

/// Sleeps `ms` milliseconds whatever signals are pending.
pub(crate) fn sleep_ms(ms: u32) {
    // SAFETY: called only from process context (the callers may sleep).
    unsafe { bindings::scst_rs_msleep(ms) };
}
