// SPDX-License-Identifier: GPL-2.0

//! Pass-through: a SCSI device of the local SCSI stack, held by its
//! H:C:I:L, and commands sent to it as passthrough requests over the
//! command's own pages, completed later from the request's end_io.

use super::{bindings, sg::SgList};
use core::ptr::NonNull;
use kernel::{prelude::*, sync::Arc, types::ForeignOwnable};

/// Bytes of sense data a device may return (`SCSI_SENSE_BUFFERSIZE`).
pub(crate) const PT_SENSE_MAX: usize = 96;

/// A SCSI device of the local stack, held (the device and its low-level
/// driver's module stay while this lives).
///
/// # Invariants
///
/// `sdev` is a device this object holds a reference to.
pub(crate) struct ScsiDevice {
    sdev: NonNull<bindings::scsi_device>,
}

// SAFETY: the reference may be dropped from any thread; the device's
// fields read here are read-only or read with the midlayer's own checks.
unsafe impl Send for ScsiDevice {}
// SAFETY: shared references only read the device, as above.
unsafe impl Sync for ScsiDevice {}

impl ScsiDevice {
    /// The device at `host:channel:id:lun`, if there is one (not being
    /// removed).
    pub(crate) fn get(host: u32, channel: u32, id: u32, lun: u64) -> Option<Self> {
        // SAFETY: the helper takes any numbers and returns a referenced
        // device or null.
        let sdev = NonNull::new(unsafe { bindings::scst_rs_sdev_get(host, channel, id, lun) })?;
        // INVARIANT: the lookup took a reference for us.
        Some(Self { sdev })
    }

    /// Its peripheral device type (SPC-4 table 49).
    pub(crate) fn device_type(&self) -> u8 {
        // SAFETY: `sdev` is held (type invariants).
        unsafe { bindings::scst_rs_sdev_type(self.sdev.as_ptr()) }
    }

    /// Whether it takes commands (not offline, not being removed).
    pub(crate) fn online(&self) -> bool {
        // SAFETY: `sdev` is held (type invariants).
        unsafe { bindings::scst_rs_sdev_online(self.sdev.as_ptr()) }
    }

    /// Its capacity in bytes as its upper driver (sd) last read it; 0
    /// without one.
    pub(crate) fn bytes(&self) -> u64 {
        // SAFETY: `sdev` is held (type invariants).
        unsafe { bindings::scst_rs_sdev_bytes(self.sdev.as_ptr()) }
    }
}

impl Drop for ScsiDevice {
    fn drop(&mut self) {
        // SAFETY: the reference is ours (type invariants), not used again.
        unsafe { bindings::scst_rs_sdev_put(self.sdev.as_ptr()) };
    }
}

/// Told when a started [`PtRequest`] ended.
pub(crate) trait PtDone: Send + 'static {
    /// The request ended: its outcome is readable. Runs in whatever
    /// context the device completed it, hard interrupt included: it must
    /// not sleep.
    fn ended(self: KBox<Self>);
}

/// How a request ended, as the midlayer reports it.
pub(crate) struct PtOutcome {
    /// The midlayer's result: host byte in bits 16-23, SCSI status in
    /// bits 0-7.
    pub(crate) result: i32,
    /// Bytes of the transfer the device did not move.
    pub(crate) resid: u32,
    pub(crate) sense: [u8; PT_SENSE_MAX],
    pub(crate) sense_len: usize,
}

impl PtOutcome {
    /// The host byte (`DID_*`): 0 when the command reached the device and
    /// the device answered.
    pub(crate) fn host_byte(&self) -> u8 {
        ((self.result >> 16) & 0xff) as u8
    }

    /// The device's SCSI status.
    pub(crate) fn status(&self) -> u8 {
        (self.result & 0xff) as u8
    }

    /// The sense data the device returned.
    pub(crate) fn sense(&self) -> &[u8] {
        self.sense.get(..self.sense_len).unwrap_or(&[])
    }
}

/// One command for a [`ScsiDevice`]: made, started once with the
/// command's buffer, and read once it ended.
///
/// # Invariants
///
/// `pt` is a request from `scst_rs_pt_new` of which this object holds an
/// owner's reference (clones hold their own); the C side holds its own
/// while the request is in flight, so dropping this never ends or frees a
/// request in flight.
pub(crate) struct PtRequest {
    pt: NonNull<bindings::scst_rs_pt>,
    /// Bytes it moves, which the buffer it starts with must hold.
    len: usize,
}

// SAFETY: the C side's request is reference-counted and its outcome is
// published with release/acquire: any thread may use or drop it.
unsafe impl Send for PtRequest {}
// SAFETY: every method through `&self` is safe to run concurrently: start
// is guarded by an atomic bit, the outcome is read after an acquire.
unsafe impl Sync for PtRequest {}

impl PtRequest {
    /// A request for `cdb` to `dev`, moving `len` bytes (to the device if
    /// `write`), timed out after `timeout_ms` and retried by the midlayer
    /// up to `retries` times. May sleep (for a free request of the
    /// device's queue).
    pub(crate) fn new(
        dev: &ScsiDevice,
        cdb: &[u8],
        write: bool,
        len: usize,
        timeout_ms: u32,
        retries: i32,
    ) -> Result<Self> {
        // SAFETY: `dev` is held; `cdb` is valid for its length, copied
        // before the call returns.
        let pt = unsafe {
            bindings::scst_rs_pt_new(
                dev.sdev.as_ptr(),
                cdb.as_ptr(),
                cdb.len() as u32,
                write,
                len,
                timeout_ms,
                retries,
            )
        };
        let pt = kernel::error::from_err_ptr(pt)?;
        // INVARIANT: a new request whose owner's reference we hold.
        NonNull::new(pt).map(|pt| Self { pt, len }).ok_or(ENOMEM)
    }

    /// Starts the request over the first bytes of `data` it was made for
    /// (the device reads them, or writes them for a read; `EINVAL` if
    /// `data` holds fewer). `done` hears when it ended; `Err` gives it
    /// back and nothing started (a request starts once). Where the
    /// device's limits refuse the pages, the data goes through a copy,
    /// which a read's [`Self::copy_in`] places. May sleep.
    ///
    /// The pages stay referenced until the request ended, and the device
    /// writes into them (a read) meanwhile: their owner reads them only
    /// once `done` heard of it.
    pub(crate) fn start<T: PtDone>(
        &self,
        data: &mut SgList<'_>,
        done: KBox<T>,
    ) -> core::result::Result<(), (Error, KBox<T>)> {
        if data.len() < self.len {
            return Err((EINVAL, done));
        }
        let (sgl, nents) = data.raw();
        let ctx = done.into_foreign() as *mut core::ffi::c_void;
        let pt = self.pt.as_ptr();
        // The C side references every page it maps, until its bio ends.
        // `sgl` (null for no data) covers at least the request's `len`
        // (checked above), all the helper maps, and is ours to have
        // written while `data` is borrowed mutably.
        // SAFETY: `pt` is ours (type invariants); `sgl` is valid as above;
        // `ctx` is a `KBox<T>` that `pt_ended::<T>` takes back, once.
        let ret = unsafe { bindings::scst_rs_pt_start(pt, sgl, nents, Some(pt_ended::<T>), ctx) };
        if ret < 0 {
            // SAFETY: `ctx` came from `into_foreign` above, and the C side
            // did not take it: `pt_ended` never runs for it.
            let done = unsafe { KBox::<T>::from_foreign(ctx) };
            return Err((Error::from_errno(ret), done));
        }
        Ok(())
    }

    /// How it ended; `None` until it has.
    pub(crate) fn outcome(&self) -> Option<PtOutcome> {
        let mut o = PtOutcome {
            result: 0,
            resid: 0,
            sense: [0; PT_SENSE_MAX],
            sense_len: 0,
        };
        let mut sense_len = 0u32;
        // SAFETY: `pt` is ours (type invariants); the out pointers are
        // valid, `sense` for `PT_SENSE_MAX` bytes.
        let ended = unsafe {
            bindings::scst_rs_pt_outcome(
                self.pt.as_ptr(),
                &mut o.result,
                &mut o.resid,
                o.sense.as_mut_ptr(),
                PT_SENSE_MAX as u32,
                &mut sense_len,
            )
        };
        o.sense_len = (sense_len as usize).min(PT_SENSE_MAX);
        ended.then_some(o)
    }

    /// Places a bounced read's first `len` bytes in `data`, once it
    /// ended; returns the bytes placed (0 for a request not bounced).
    pub(crate) fn copy_in(&self, data: &mut SgList<'_>, len: usize) -> usize {
        let (sgl, nents) = data.raw();
        if sgl.is_null() {
            return 0;
        }
        let len = len.min(data.len());
        // SAFETY: `pt` is ours (type invariants); `sgl` has `nents` entries
        // covering `data.len()` bytes, ours to write while `data` is
        // borrowed mutably.
        unsafe { bindings::scst_rs_pt_copy_in(self.pt.as_ptr(), sgl, nents, len) }
    }
}

impl PtRequest {
    /// Asks the device to abort the request if it is in flight (the SCSI
    /// error handler aborts it there; it then ends as the handler ends
    /// it). Nothing happens to a request not started, or ended. Any
    /// context.
    pub(crate) fn abort(&self) {
        // SAFETY: `pt` is valid (type invariants); the helper looks at the
        // request under the lock its end_io clears it under.
        unsafe { bindings::scst_rs_pt_abort(self.pt.as_ptr()) };
    }

    /// Whether `other` is this same request.
    pub(crate) fn is(&self, other: &PtRequest) -> bool {
        self.pt == other.pt
    }
}

impl Clone for PtRequest {
    /// Another owner of the same request.
    fn clone(&self) -> Self {
        // SAFETY: `pt` is valid (type invariants); the new reference is the
        // clone's.
        unsafe { bindings::scst_rs_pt_get(self.pt.as_ptr()) };
        // INVARIANT: the clone holds a reference of its own.
        Self {
            pt: self.pt,
            len: self.len,
        }
    }
}

impl Drop for PtRequest {
    fn drop(&mut self) {
        // SAFETY: the owner's reference is ours (type invariants); a
        // request in flight keeps its own.
        unsafe { bindings::scst_rs_pt_put(self.pt.as_ptr()) };
    }
}

/// The C side's completion of [`PtRequest::start`].
///
/// # Safety
///
/// `ctx` is a `KBox<T>` from `into_foreign`, not used again after this.
unsafe extern "C" fn pt_ended<T: PtDone>(ctx: *mut core::ffi::c_void) {
    // SAFETY: guaranteed by the caller.
    let done = unsafe { KBox::<T>::from_foreign(ctx) };
    done.ended();
}

/// Told of SCSI devices leaving the local stack.
pub(crate) trait SdevRemoved: Send + Sync + 'static {
    /// The device at `hctl` (host, channel, id, LUN) is being removed.
    /// Process context, inside the device's removal: it must not wait for
    /// anything that removes or adds a SCSI device.
    fn removed(&self, host: u32, channel: u32, id: u32, lun: u64);
}

/// The watch on SCSI devices leaving (one at a time: the class interface
/// it uses tells its callback nothing but the device).
///
/// # Invariants
///
/// The C side's watch runs with `ctx`, an `Arc<T>` from `into_foreign`,
/// until this drops.
pub(crate) struct SdevWatch<T: SdevRemoved> {
    ctx: *const core::ffi::c_void,
    _t: core::marker::PhantomData<Arc<T>>,
}

// SAFETY: the watch is stopped from any thread; `ctx` is an `Arc<T>` with
// `T: Send + Sync`.
unsafe impl<T: SdevRemoved> Send for SdevWatch<T> {}
// SAFETY: shared references give access to nothing.
unsafe impl<T: SdevRemoved> Sync for SdevWatch<T> {}

impl<T: SdevRemoved> SdevWatch<T> {
    /// Starts the watch: `to` hears of each device removed until the
    /// watch drops. `EBUSY` while another runs.
    pub(crate) fn start(to: Arc<T>) -> Result<Self> {
        let ctx = to.into_foreign();
        let removed = Some(sdev_removed::<T> as _);
        // SAFETY: `sdev_removed::<T>` takes `ctx` as an `Arc<T>` it borrows,
        // valid until the watch stops (in `drop`, or here on failure).
        let ret = unsafe { bindings::scst_rs_sdev_watch_start(removed, ctx as *mut _) };
        if ret < 0 {
            // SAFETY: `ctx` came from `into_foreign` and the watch did not
            // start: nothing else uses it.
            drop(unsafe { Arc::<T>::from_foreign(ctx) });
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: the watch runs with `ctx`.
        Ok(Self {
            ctx,
            _t: core::marker::PhantomData,
        })
    }
}

impl<T: SdevRemoved> Drop for SdevWatch<T> {
    fn drop(&mut self) {
        // SAFETY: the watch runs (type invariants); once stopped, no call
        // uses `ctx`.
        unsafe { bindings::scst_rs_sdev_watch_stop() };
        // SAFETY: `ctx` came from `into_foreign` (type invariants) and the
        // watch no longer uses it.
        drop(unsafe { Arc::<T>::from_foreign(self.ctx) });
    }
}

/// The C side's callback of [`SdevWatch`].
///
/// # Safety
///
/// `ctx` is the `Arc<T>` of a running watch.
unsafe extern "C" fn sdev_removed<T: SdevRemoved>(
    ctx: *mut core::ffi::c_void,
    host: u32,
    channel: u32,
    id: u32,
    lun: u64,
) {
    // SAFETY: the watch keeps the `Arc<T>` alive while it runs.
    let to = unsafe { Arc::<T>::borrow(ctx) };
    to.removed(host, channel, id, lun);
}
