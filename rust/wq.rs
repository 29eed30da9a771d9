// SPDX-License-Identifier: GPL-2.0

//! A workqueue the module owns, for long-running works (listeners, receive
//! loops): dropping it waits until every work on it has returned, so no
//! module code runs after the module's teardown.

use super::bindings;
use core::ptr::NonNull;
use kernel::{prelude::*, str::CStr, workqueue::Queue};

/// An unbound workqueue.
///
/// # Invariants
///
/// `wq` is a workqueue from `alloc_workqueue` that this object owns.
pub(crate) struct OwnedQueue {
    wq: NonNull<bindings::workqueue_struct>,
}

// SAFETY: workqueues may be used and destroyed from any thread.
unsafe impl Send for OwnedQueue {}
// SAFETY: queueing works is thread-safe.
unsafe impl Sync for OwnedQueue {}

impl OwnedQueue {
    /// Creates a workqueue named `name`, with the default limit of works
    /// running at once.
    pub(crate) fn new(name: &'static CStr) -> Result<Self> {
        Self::alloc(name, false)
    }

    /// Creates a workqueue named `name` that runs as many works at once as
    /// an unbound workqueue may (`WQ_UNBOUND_MAX_ACTIVE`), for works that
    /// each last as long as a connection.
    pub(crate) fn wide(name: &'static CStr) -> Result<Self> {
        Self::alloc(name, true)
    }

    fn alloc(name: &'static CStr, wide: bool) -> Result<Self> {
        // SAFETY: `name` is NUL-terminated and static.
        let wq = unsafe { bindings::scst_rs_alloc_workqueue(name.as_char_ptr(), wide) };
        // INVARIANT: a new workqueue we own, or an error.
        Ok(Self {
            wq: NonNull::new(wq).ok_or(ENOMEM)?,
        })
    }

    /// Waits until the queue is empty: every work queued, and every work
    /// those queue on it meanwhile, has returned.
    pub(crate) fn drain(&self) {
        // SAFETY: we own the workqueue; draining it only waits.
        unsafe { bindings::scst_rs_drain_workqueue(self.wq.as_ptr()) };
    }

    /// The queue, to spawn works on.
    pub(crate) fn queue(&self) -> &Queue {
        // SAFETY: the workqueue lives as long as `self`. The kernel crate's
        // bindings declare the same C type under another path.
        unsafe { Queue::from_raw(self.wq.as_ptr().cast()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: we own the workqueue; destroy_workqueue drains it first.
        unsafe { bindings::scst_rs_destroy_workqueue(self.wq.as_ptr()) };
    }
}
