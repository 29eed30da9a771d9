// SPDX-License-Identifier: GPL-2.0

//! Connected RDMA channels (`rdma_channel.c`): an accepted connection with
//! its queue pair, rings of receive and send units, and the RDMA READ and
//! WRITE transfers of the commands on it.
//!
//! A [`Channel`] is a counted reference. Dropping the last one destroys
//! the channel on the RDMA workqueue (drain, QP, CQ, PD, CM id), so that a
//! reference may be dropped anywhere, a completion included. The owner's
//! [`ChannelHandler`] is told of what arrives and completes, and dropped
//! once the channel is gone.

use super::bindings;
use super::sg::SgList;
use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use kernel::{error::to_result, prelude::*, sync::Arc};

/// What a channel is made with: asked for, and then what the device gave.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelConfig {
    /// Receive units, and the largest request each takes.
    pub(crate) rq_size: u32,
    pub(crate) req_size: u32,
    /// Send units (at most `rq_size`), and the largest response.
    pub(crate) tx_count: u32,
    pub(crate) rsp_size: u32,
    /// Send queue entries, half of them for RDMA transfers.
    pub(crate) sq_size: u32,
    /// The completion vector the channel's CQ should take (any vector
    /// number: the pool takes it modulo the device's); `None`, the pool's
    /// choice.
    pub(crate) comp_vector: Option<u32>,
}

/// What happened to a channel's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChannelEvent {
    /// The connection is up (requests may have arrived before).
    Established,
    /// The connection ended (disconnected, rejected, its device or
    /// address gone).
    Closed,
    /// A send, receive or transfer failed: the channel is unusable.
    Failed,
}

/// What a channel's owner does with what arrives and completes. Every
/// call runs in process context that should not block for long: the
/// CQ pool's workqueue (its other channels wait), or the connection
/// manager's handler for [`Self::event`].
pub(crate) trait ChannelHandler: Send + Sync + 'static {
    /// A request unit of `iu.len()` bytes arrived; its receive unit is
    /// posted again after this returns.
    fn received(&self, ch: &ChannelRef<'_>, iu: &[u8]);

    /// Send unit `slot` completed (`ok`: it reached the initiator; else
    /// the channel is failing or closing). It may be used again.
    fn sent(&self, ch: &ChannelRef<'_>, slot: u32, ok: bool);

    /// The RDMA READs posted with `cookie` completed (`ok`: the data is in
    /// the buffer).
    fn read_done(&self, ch: &ChannelRef<'_>, cookie: u64, ok: bool);

    /// The connection changed; [`ChannelEvent::Closed`] and
    /// [`ChannelEvent::Failed`] may come more than once.
    fn event(&self, ch: &ChannelRef<'_>, event: ChannelEvent);
}

/// Why a post did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PostError {
    /// The send queue (or the registrations) are all in use: try again
    /// once a send or transfer of the channel completed.
    Full,
    /// The channel is closing: nothing is posted any more.
    Closing,
    /// Anything else (a unit in use, a bad length).
    Failed(Error),
}

impl PostError {
    fn of(errno: i32) -> Self {
        let e = Error::from_errno(errno);
        if e == EAGAIN {
            Self::Full
        } else if e.to_errno() == -(kernel::bindings::ESHUTDOWN as i32) {
            Self::Closing
        } else {
            Self::Failed(e)
        }
    }
}

/// A counted reference to a channel.
///
/// # Invariants
///
/// `ch` is a channel of `rdma_channel.c` of which this holds a reference;
/// the RDMA table stays attached while it exists (the channel counts as
/// an RDMA object until destroyed).
pub(crate) struct Channel {
    ch: NonNull<bindings::scst_rs_ch>,
}

// SAFETY: the channel's functions may be called from any thread (its
// posting is counted against its closing, its counts are atomic, its
// send units claimed with atomic bits).
unsafe impl Send for Channel {}
// SAFETY: as above; `&self` methods are all safe to call concurrently.
unsafe impl Sync for Channel {}

impl Clone for Channel {
    fn clone(&self) -> Self {
        // SAFETY: this holds a reference (type invariant), so the count
        // is not zero.
        unsafe { bindings::scst_rs_ch_get(self.ch.as_ptr()) };
        // INVARIANT: the reference just taken.
        Self { ch: self.ch }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // SAFETY: gives back this reference (type invariant); the last
        // queues the destruction, which is safe in any context.
        unsafe { bindings::scst_rs_ch_put(self.ch.as_ptr()) };
    }
}

impl Channel {
    /// Closes the channel: no more posts, the connection ends, and every
    /// posted unit and transfer completes (flushed). Asynchronous (on the
    /// RDMA workqueue), idempotent; any context.
    pub(crate) fn close(&self) {
        // SAFETY: the channel is live (type invariant).
        unsafe { bindings::scst_rs_ch_close(self.ch.as_ptr()) };
    }

    /// Sends `data` in send unit `slot`, after the RDMA WRITEs of `xfer`.
    /// On success the unit is busy until [`ChannelHandler::sent`], and
    /// the transfer is freed then; on failure the transfer is given back.
    pub(crate) fn send(
        &self,
        slot: u32,
        data: &[u8],
        xfer: Option<Xfer>,
    ) -> core::result::Result<(), (PostError, Option<Xfer>)> {
        let Ok(len) = u32::try_from(data.len()) else {
            return Err((PostError::Failed(EINVAL), xfer));
        };
        if let Some(x) = &xfer {
            if x.ch != self.ch {
                return Err((PostError::Failed(EINVAL), xfer));
            }
        }
        let raw = xfer
            .as_ref()
            .map_or(core::ptr::null_mut(), |x| x.x.as_ptr());
        // The helper copies `data`, and takes `raw` only on success.
        // SAFETY: the channel is live (type invariant); `data` holds `len`
        // bytes; `raw` is null or a transfer of this channel (checked).
        let ret = unsafe {
            bindings::scst_rs_ch_send(self.ch.as_ptr(), slot, data.as_ptr().cast(), len, raw)
        };
        if ret != 0 {
            return Err((PostError::of(ret), xfer));
        }
        // The channel owns it now and frees it when the send completes.
        if let Some(x) = xfer {
            core::mem::forget(x);
        }
        Ok(())
    }

    /// Posts the RDMA READs of `xfer`; [`ChannelHandler::read_done`] is
    /// told `cookie` when they completed. On failure the transfer is
    /// given back.
    pub(crate) fn read(
        &self,
        xfer: Xfer,
        cookie: u64,
    ) -> core::result::Result<(), (PostError, Xfer)> {
        if xfer.ch != self.ch || xfer.write {
            return Err((PostError::Failed(EINVAL), xfer));
        }
        // SAFETY: the channel is live (type invariant); the transfer is
        // one of this channel's, taken by the helper only on success.
        let ret = unsafe { bindings::scst_rs_ch_read(self.ch.as_ptr(), xfer.x.as_ptr(), cookie) };
        if ret != 0 {
            return Err((PostError::of(ret), xfer));
        }
        // The channel frees it when the reads complete.
        core::mem::forget(xfer);
        Ok(())
    }

    /// A transfer of up to `max` remote regions: RDMA WRITE (`write`, the
    /// data-in) or RDMA READ, for the command of send unit `slot`, whose
    /// own one-region transfer it is when it can be (allocated otherwise).
    pub(crate) fn xfer(&self, slot: u32, max: u32, write: bool) -> Result<Xfer> {
        // SAFETY: the channel is live (type invariant); the helper checks
        // `slot` and takes the unit's transfer only if it is free.
        let x = unsafe { bindings::scst_rs_xfer_alloc(self.ch.as_ptr(), max, write, slot) };
        let x = NonNull::new(x).ok_or(ENOMEM)?;
        // INVARIANT: a new transfer of this channel, holding a reference.
        Ok(Xfer {
            x,
            ch: self.ch,
            write,
        })
    }
}

/// Logs, for every channel not yet freed, its references and how far its
/// teardown went (what a removal waiting for channels says).
pub(crate) fn report_channels() {
    // SAFETY: the helper only walks its own list, under its lock.
    unsafe { bindings::scst_rs_ch_report() };
}

/// A channel during a callback of its handler: the channel lives at least
/// as long, without a reference of its own.
pub(crate) struct ChannelRef<'a> {
    /// Never dropped: it holds no reference.
    ch: ManuallyDrop<Channel>,
    _callback: core::marker::PhantomData<&'a ()>,
}

impl ChannelRef<'_> {
    /// A counted reference, unless the channel is being destroyed (its
    /// last completions, flushed by the drain, come after its last
    /// reference went).
    pub(crate) fn get(&self) -> Option<Channel> {
        // SAFETY: the channel is live during the callback.
        if unsafe { bindings::scst_rs_ch_tryget(self.ch.ch.as_ptr()) } {
            // INVARIANT: the reference just taken.
            Some(Channel { ch: self.ch.ch })
        } else {
            None
        }
    }
}

impl core::ops::Deref for ChannelRef<'_> {
    type Target = Channel;

    fn deref(&self) -> &Channel {
        &self.ch
    }
}

/// An RDMA READ or WRITE transfer of a command: its remote regions, each
/// over a slice of the command's buffer whose pages it holds.
///
/// # Invariants
///
/// `x` is a transfer of channel `ch` (whose reference it holds), owned by
/// this until it is posted or dropped.
pub(crate) struct Xfer {
    x: NonNull<bindings::scst_rs_xfer>,
    ch: NonNull<bindings::scst_rs_ch>,
    write: bool,
}

// SAFETY: a transfer is only used through `&mut self` or by value.
unsafe impl Send for Xfer {}

impl Xfer {
    /// Adds the remote region of `len` bytes at `remote`/`rkey`, to or
    /// from the bytes at `offset` of `data`. `Err(EAGAIN)`: the channel's
    /// registrations are all in use for now.
    pub(crate) fn add(
        &mut self,
        data: &mut SgList<'_>,
        offset: u32,
        len: u32,
        remote: u64,
        rkey: u32,
    ) -> Result {
        let end = u64::from(offset) + u64::from(len);
        if len == 0 || end > data.len() as u64 {
            return Err(EINVAL);
        }
        let (sgl, nents) = data.raw();
        // The helper takes references to the pages it maps: they outlive
        // the DMA whatever `data`'s owner does later.
        // SAFETY: the transfer is this one's (type invariant); `sgl` has
        // `nents` entries covering `offset + len` bytes (checked above).
        to_result(unsafe {
            bindings::scst_rs_xfer_add(self.x.as_ptr(), sgl, nents, offset, len, remote, rkey)
        })
    }
}

impl Drop for Xfer {
    fn drop(&mut self) {
        // SAFETY: the transfer is owned by this, not posted (type
        // invariant): nothing of the device uses it.
        unsafe { bindings::scst_rs_xfer_free(self.x.as_ptr()) };
    }
}

/// A channel made for a connect request, not accepted yet: the request's
/// handler accepts it ([`Self::accept`]) or, dropping it, destroys it.
///
/// # Invariants
///
/// `ch` is a channel of the request whose handler is running for `'a`,
/// holding the creator's reference.
pub(crate) struct PendingChannel<'a> {
    ch: NonNull<bindings::scst_rs_ch>,
    /// The request's id.
    id: *mut bindings::rdma_cm_id,
    _request: core::marker::PhantomData<&'a ()>,
}

impl PendingChannel<'_> {
    /// Whether this is the channel of the request whose id is `id`.
    pub(super) fn of(&self, id: *mut bindings::rdma_cm_id) -> bool {
        self.id == id
    }

    /// Accepts the connection with `private_data` (SRP: the login
    /// response); the channel's handler is told of it from now on. Only
    /// through [`super::rdma::ConnectRequest::accept`], which keeps the id
    /// from the CM then.
    pub(super) fn accept(self, private_data: &[u8]) -> Result<Channel> {
        let len = u8::try_from(private_data.len()).map_err(|_| EINVAL)?;
        let ch = self.ch;
        // SAFETY: the channel is live, in its request's handler (type
        // invariant); `private_data` holds `len` bytes.
        let ret =
            unsafe { bindings::scst_rs_ch_accept(ch.as_ptr(), private_data.as_ptr().cast(), len) };
        if ret != 0 {
            // Dropping `self` abandons the channel.
            return Err(Error::from_errno(ret));
        }
        core::mem::forget(self);
        // INVARIANT: the creator's reference, now the caller's.
        Ok(Channel { ch })
    }
}

impl Drop for PendingChannel<'_> {
    fn drop(&mut self) {
        // SAFETY: still in the request's handler (type invariant); this
        // drops the only reference (the handler box goes with it), and
        // the CM destroys the id when the handler returns.
        unsafe { bindings::scst_rs_ch_abandon(self.ch.as_ptr()) };
    }
}

/// A device's shared receive queue (SCST's `use_srq`): the channels made
/// with it take their requests from its units, not from rings of their
/// own. A counted reference; dropping the last destroys the queue, which
/// sleeps (process context).
///
/// # Invariants
///
/// `srq` is a shared receive queue of `rdma_channel.c` of which this
/// holds a reference. The queue holds its device (whose unregistration
/// waits for it) and counts as an RDMA object (the table stays attached).
pub(crate) struct Srq {
    srq: NonNull<bindings::scst_rs_srq>,
}

// SAFETY: the queue's functions may be called from any thread (its count
// is atomic, its posts the device's).
unsafe impl Send for Srq {}
// SAFETY: as above; no `&self` method changes anything.
unsafe impl Sync for Srq {}

impl Srq {
    /// A shared receive queue on `dev` of up to `size` units of
    /// `req_size` bytes (as many as the device allows), every one posted.
    /// `EOPNOTSUPP`: the device has none.
    pub(crate) fn new(dev: &super::rdma::IbDevice<'_>, size: u32, req_size: u32) -> Result<Self> {
        let mut err = 0;
        // SAFETY: the device is registered and the table attached while
        // `dev` lives (its invariant); the helper takes its own reference
        // to the device.
        let srq = unsafe { bindings::scst_rs_srq_create(dev.as_ptr(), size, req_size, &mut err) };
        let srq = NonNull::new(srq).ok_or_else(|| Error::from_errno(err))?;
        // INVARIANT: the creator's reference.
        Ok(Self { srq })
    }

    /// Its units: what the device gave.
    pub(crate) fn size(&self) -> u32 {
        // SAFETY: the queue is live (type invariant).
        unsafe { bindings::scst_rs_srq_size(self.srq.as_ptr()) }
    }
}

impl Clone for Srq {
    fn clone(&self) -> Self {
        // SAFETY: this holds a reference (type invariant).
        unsafe { bindings::scst_rs_srq_get(self.srq.as_ptr()) };
        // INVARIANT: the reference just taken.
        Self { srq: self.srq }
    }
}

impl Drop for Srq {
    fn drop(&mut self) {
        // SAFETY: gives back this reference (type invariant).
        unsafe { bindings::scst_rs_srq_put(self.srq.as_ptr()) };
    }
}

/// Creates the channel of a connect request's `id`, its receive units
/// posted, as `cfg` asks (and says, on return, as the device gave); on
/// `srq` (which must be of the request's device, its units of
/// `cfg.req_size` bytes, else `EINVAL`) if given. Called by
/// [`super::rdma::ConnectRequest::create_channel`].
///
/// # Safety
///
/// `id` is a connect request's id, live for `'a`, in its handler.
pub(super) unsafe fn create<'a>(
    id: *mut bindings::rdma_cm_id,
    cfg: &mut ChannelConfig,
    srq: Option<&Srq>,
    handler: Arc<dyn ChannelHandler>,
) -> Result<PendingChannel<'a>> {
    let owner = KBox::into_raw(KBox::new(handler, GFP_KERNEL)?);
    let mut raw = bindings::scst_rs_ch_config {
        rq_size: cfg.rq_size,
        req_size: cfg.req_size,
        tx_count: cfg.tx_count,
        rsp_size: cfg.rsp_size,
        sq_size: cfg.sq_size,
        comp_vector: cfg
            .comp_vector
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(-1),
        srq: srq.map_or(core::ptr::null_mut(), |q| q.srq.as_ptr()),
    };
    let mut err = 0;
    // SAFETY: `id` is live in its handler (contract); `owner` is a boxed
    // handler the channel hands back through `scst_rs_ch_released`;
    // `raw.srq` is null or a live queue (which the helper checks is of
    // the id's device, and takes a reference to).
    let ch = unsafe { bindings::scst_rs_ch_create(id, &mut raw, owner.cast(), &mut err) };
    let Some(ch) = NonNull::new(ch) else {
        // SAFETY: the channel was not made: the box is still ours.
        drop(unsafe { KBox::from_raw(owner) });
        return Err(Error::from_errno(err));
    };
    *cfg = ChannelConfig {
        rq_size: raw.rq_size,
        req_size: raw.req_size,
        tx_count: raw.tx_count,
        rsp_size: raw.rsp_size,
        sq_size: raw.sq_size,
        comp_vector: cfg.comp_vector,
    };
    // INVARIANT: the creator's reference, in the request's handler.
    Ok(PendingChannel {
        ch,
        id,
        _request: core::marker::PhantomData,
    })
}

/// # Safety
///
/// `owner` is a channel's boxed handler and `ch` that channel, live for
/// the call.
unsafe fn callback<'a>(
    owner: *mut c_void,
    ch: *mut bindings::scst_rs_ch,
) -> Option<(&'a Arc<dyn ChannelHandler>, ChannelRef<'a>)> {
    let ch = NonNull::new(ch)?;
    // SAFETY: per the function's contract.
    let handler = unsafe { &*(owner as *const Arc<dyn ChannelHandler>) };
    // INVARIANT (of the `Channel` inside): live for the callback, and
    // never dropped, so no reference is given back.
    let r = ChannelRef {
        ch: ManuallyDrop::new(Channel { ch }),
        _callback: core::marker::PhantomData,
    };
    Some((handler, r))
}

/// # Safety
///
/// Called by a channel's receive completion: `owner` and `ch` as in
/// [`callback`], `data` valid for `len` bytes during the call.
#[no_mangle]
unsafe extern "C" fn scst_rs_ch_received(
    owner: *mut c_void,
    ch: *mut bindings::scst_rs_ch,
    data: *const c_void,
    len: u32,
) {
    // SAFETY: per the function's contract.
    let Some((handler, ch)) = (unsafe { callback(owner, ch) }) else {
        return;
    };
    if data.is_null() {
        return;
    }
    // SAFETY: `data` holds `len` bytes during the call (contract).
    let iu = unsafe { core::slice::from_raw_parts(data.cast::<u8>(), len as usize) };
    handler.received(&ch, iu);
}

/// # Safety
///
/// Called by a channel's send completion: `owner` and `ch` as in
/// [`callback`].
#[no_mangle]
unsafe extern "C" fn scst_rs_ch_sent(
    owner: *mut c_void,
    ch: *mut bindings::scst_rs_ch,
    slot: u32,
    ok: bool,
) {
    // SAFETY: per the function's contract.
    if let Some((handler, ch)) = unsafe { callback(owner, ch) } {
        handler.sent(&ch, slot, ok);
    }
}

/// # Safety
///
/// Called by a channel's RDMA READ completion: `owner` and `ch` as in
/// [`callback`].
#[no_mangle]
unsafe extern "C" fn scst_rs_ch_read_done(
    owner: *mut c_void,
    ch: *mut bindings::scst_rs_ch,
    cookie: u64,
    ok: bool,
) {
    // SAFETY: per the function's contract.
    if let Some((handler, ch)) = unsafe { callback(owner, ch) } {
        handler.read_done(&ch, cookie, ok);
    }
}

/// # Safety
///
/// Called by a channel's CM handler or a failed completion: `owner` and
/// `ch` as in [`callback`].
#[no_mangle]
unsafe extern "C" fn scst_rs_ch_event(
    owner: *mut c_void,
    ch: *mut bindings::scst_rs_ch,
    event: i32,
) {
    let event = match event as u32 {
        bindings::SCST_RS_CH_ESTABLISHED => ChannelEvent::Established,
        bindings::SCST_RS_CH_CLOSED => ChannelEvent::Closed,
        _ => ChannelEvent::Failed,
    };
    // SAFETY: per the function's contract.
    if let Some((handler, ch)) = unsafe { callback(owner, ch) } {
        handler.event(&ch, event);
    }
}

/// # Safety
///
/// Called once a channel is destroyed, with its boxed handler, which
/// nothing uses any more.
#[no_mangle]
unsafe extern "C" fn scst_rs_ch_released(owner: *mut c_void) {
    if owner.is_null() {
        return;
    }
    // SAFETY: the box `accept` leaked, handed back exactly once.
    drop(unsafe { KBox::from_raw(owner.cast::<Arc<dyn ChannelHandler>>()) });
}
