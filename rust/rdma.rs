// SPDX-License-Identifier: GPL-2.0

//! The RDMA stack, reached through scst_srpt.ko.
//!
//! scst.ko links nothing of ib_core or rdma_cm (it must load where they are
//! absent): scst_srpt.ko links them and, when it loads, attaches a table of
//! their functions (`rdma_ops.h`, `rdma_helpers.c`). Then the
//! [`RdmaHandler`] scst.ko registered is attached, registers its IB client,
//! and is told of each RDMA device as it comes and goes. When scst_srpt.ko
//! unloads the handler is detached, after which nothing of the RDMA stack
//! may be used; the client is unregistered by then, so every device it was
//! told of was removed first.

use super::bindings;
use super::rdma_channel::{Channel, ChannelConfig, ChannelHandler, PendingChannel, Srq};
use core::ffi::c_void;
use core::ops::RangeInclusive;
use core::ptr::NonNull;
use kernel::{error::to_result, prelude::*, str::CStr, sync::Arc};

/// SCST's ib_srpt parameters, as scst_srpt.ko was loaded with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SrptParams {
    pub(crate) rdma_cm_port: u16,
    pub(crate) srp_max_req_size: u32,
    pub(crate) srp_max_rsp_size: u32,
    pub(crate) srp_max_rdma_size: u32,
    pub(crate) srpt_sq_size: u32,
    pub(crate) srpt_srq_size: u32,
    pub(crate) use_srq: bool,
    pub(crate) srpt_service_guid: u64,
}

/// What scst.ko does with the RDMA stack while scst_srpt.ko is loaded.
pub(crate) trait RdmaHandler: Send + Sync + 'static {
    /// scst_srpt.ko is loading: the stack can be used through `rdma` (its
    /// client registered). An error fails the load.
    fn attach(&self, rdma: &Rdma) -> Result;

    /// scst_srpt.ko is unloading: everything of the stack should go
    /// before this returns (the client unregistered through `rdma`, the
    /// listeners dropped). A client left registered is unregistered after
    /// it, with a warning, and the unload waits for objects left alive.
    fn detach(&self, rdma: &Rdma);

    /// An RDMA device is there (at registration, or plugged in later).
    /// What is returned is told when the device goes.
    fn add_device(&self, dev: &IbDevice<'_>) -> Result<Arc<dyn IbClientDevice>>;
}

/// A device the handler took, until it goes.
pub(crate) trait IbClientDevice: Send + Sync {
    /// The device is being unregistered, or the client is: what uses it
    /// must end before this returns.
    fn remove(&self);
}

/// The attached stack, during [`RdmaHandler::attach`] and
/// [`RdmaHandler::detach`].
///
/// # Invariants
///
/// Exists only during those calls, which `rdma_helpers.c` makes with the
/// table attached and its lock held.
pub(crate) struct Rdma {
    _private: (),
}

impl Rdma {
    /// The parameters scst_srpt.ko was loaded with.
    pub(crate) fn params(&self) -> SrptParams {
        // SAFETY: the table is attached (type invariant), so are the
        // parameters; the pointer is to a static of rdma_helpers.c.
        let p = unsafe { &*bindings::scst_rs_srpt_params() };
        SrptParams {
            rdma_cm_port: p.rdma_cm_port,
            srp_max_req_size: p.srp_max_req_size,
            srp_max_rsp_size: p.srp_max_rsp_size,
            srp_max_rdma_size: p.srp_max_rdma_size,
            srpt_sq_size: p.srpt_sq_size,
            srpt_srq_size: p.srpt_srq_size,
            use_srq: p.use_srq,
            srpt_service_guid: p.srpt_service_guid,
        }
    }

    /// Registers the IB client: [`RdmaHandler::add_device`] runs for every
    /// device there now, before this returns, and for those that come. A
    /// second registration is refused (`EBUSY`); the client is
    /// unregistered at the latest when the stack is detached.
    pub(crate) fn register_client(&self) -> Result {
        // SAFETY: the table is attached and its lock held (type invariant).
        to_result(unsafe { bindings::scst_rs_ib_register_client() })
    }

    /// Unregisters the IB client: every device added is removed
    /// ([`IbClientDevice::remove`]) before this returns.
    pub(crate) fn unregister_client(&self) {
        // SAFETY: as in `register_client`; the helper unregisters only a
        // client it registered.
        unsafe { bindings::scst_rs_ib_unregister_client() }
    }
}

/// An RDMA device, during the IB client's callback or the CM event that
/// passed it (the lifetime).
///
/// # Invariants
///
/// `dev` is a registered `ib_device`, and the table is attached (the
/// client is registered) for as long as the reference lives.
pub(crate) struct IbDevice<'a> {
    dev: *mut bindings::ib_device,
    _callback: core::marker::PhantomData<&'a ()>,
}

impl IbDevice<'_> {
    /// The device's name (`rxe0`, `siw0`, `mlx5_0`).
    pub(crate) fn name(&self) -> &CStr {
        // SAFETY: `dev` is registered (type invariant): its name is a
        // NUL-terminated string that lives as long as the device.
        unsafe { CStr::from_char_ptr(bindings::scst_rs_ib_device_name(self.dev)) }
    }

    /// The device's port numbers.
    pub(crate) fn ports(&self) -> RangeInclusive<u32> {
        // SAFETY: `dev` is registered (type invariant).
        let (first, last) = unsafe {
            (
                bindings::scst_rs_ib_first_port(self.dev),
                bindings::scst_rs_ib_last_port(self.dev),
            )
        };
        first..=last
    }

    /// GID 0 of `port`: the port's own identifier (for RoCE and iWARP the
    /// link-local one derived from the interface's address).
    pub(crate) fn port_gid(&self, port: u32) -> Result<[u8; 16]> {
        let mut gid = [0u8; 16];
        // SAFETY: `dev` is registered and the table attached (type
        // invariant); `gid` has the 16 bytes the helper writes.
        to_result(unsafe { bindings::scst_rs_ib_port_gid(self.dev, port, gid.as_mut_ptr()) })?;
        Ok(gid)
    }

    /// The `ib_device`, registered while `self` lives.
    pub(super) fn as_ptr(&self) -> *mut bindings::ib_device {
        self.dev
    }

    /// The device's identity while it is registered (its address), to
    /// tell devices apart; not a name.
    pub(crate) fn id(&self) -> usize {
        self.dev as usize
    }

    /// The device's node GUID.
    pub(crate) fn node_guid(&self) -> u64 {
        // SAFETY: `dev` is registered (type invariant).
        unsafe { bindings::scst_rs_ib_node_guid(self.dev) }
    }

    /// `port`'s link layer as ib_core's sysfs names it: `InfiniBand`,
    /// `Ethernet` (RoCE, iWARP) or `Unknown`.
    pub(crate) fn link_layer(&self, port: u32) -> &'static CStr {
        // SAFETY: `dev` is registered and the table attached (type
        // invariant); the helper returns one of its string literals.
        unsafe { CStr::from_char_ptr(bindings::scst_rs_ib_link_layer(self.dev, port)) }
    }

    /// How many completion vectors the device's CQs may take.
    pub(crate) fn comp_vectors(&self) -> u32 {
        // SAFETY: `dev` is registered (type invariant).
        unsafe { bindings::scst_rs_ib_comp_vectors(self.dev) }
    }
}

/// What an RDMA/CM listener does with the connect requests it gets.
pub(crate) trait CmListenerHandler: Send + Sync + 'static {
    /// A connect request, in the connection manager's process context
    /// (it may sleep, never for long: the CM's other events wait). A
    /// request the handler does not reject is rejected without private
    /// data; the request's id goes when this returns. The handler must not
    /// drop its own listener here (destroying it waits for this call).
    fn connect_request(&self, req: &ConnectRequest<'_>);
}

/// A connect request, during [`CmListenerHandler::connect_request`].
///
/// # Invariants
///
/// `id` is the request's own CM id, live until the handler returns, on a
/// registered device, with the table attached.
pub(crate) struct ConnectRequest<'a> {
    id: NonNull<bindings::rdma_cm_id>,
    data: &'a [u8],
    /// Rejected, or accepted: answered either way.
    rejected: core::cell::Cell<bool>,
    /// Accepted: the id stays, the channel's.
    accepted: core::cell::Cell<bool>,
}

impl ConnectRequest<'_> {
    /// The private data the request carried (SRP: the login request).
    pub(crate) fn private_data(&self) -> &[u8] {
        self.data
    }

    /// The device the request arrived on.
    pub(crate) fn device(&self) -> IbDevice<'_> {
        // SAFETY: the id is live and bound to a device (type invariant).
        let dev = unsafe { bindings::scst_rs_cm_device(self.id.as_ptr()) };
        // INVARIANT: the CM holds the device for the request's lifetime.
        IbDevice {
            dev,
            _callback: core::marker::PhantomData,
        }
    }

    /// The initiator's address as text (`192.168.1.2`, or an IPv6
    /// address in eight groups), in `buf`.
    pub(crate) fn peer_name<'b>(&self, buf: &'b mut [u8; 48]) -> &'b [u8] {
        // SAFETY: the id is live (type invariant); `buf` holds 48 bytes.
        let n = unsafe {
            bindings::scst_rs_cm_peer_name(self.id.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        buf.get(..n).unwrap_or(&[])
    }

    /// The device's port the request arrived on.
    pub(crate) fn port(&self) -> u32 {
        // SAFETY: the id is live (type invariant).
        unsafe { bindings::scst_rs_cm_port(self.id.as_ptr()) }
    }

    /// Makes the channel that accepting the request will connect, as
    /// `cfg` asks (and says, on return, as the device gave); its `handler`
    /// is told of it once accepted. Not once rejected.
    /// With `srq`, a shared receive queue of the request's device whose
    /// units take `cfg.req_size` bytes, the channel's requests arrive in
    /// it.
    pub(crate) fn create_channel(
        &self,
        cfg: &mut ChannelConfig,
        srq: Option<&Srq>,
        handler: Arc<dyn ChannelHandler>,
    ) -> Result<PendingChannel<'_>> {
        if self.rejected.get() {
            return Err(EINVAL);
        }
        // SAFETY: the id is the request's, live in its handler for the
        // request's lifetime (type invariant).
        unsafe { super::rdma_channel::create(self.id.as_ptr(), cfg, srq, handler) }
    }

    /// Accepts the request on `ch` with `private_data` (the login
    /// response).
    pub(crate) fn accept(&self, ch: PendingChannel<'_>, private_data: &[u8]) -> Result<Channel> {
        if self.rejected.get() || !ch.of(self.id.as_ptr()) {
            return Err(EINVAL);
        }
        let ch = ch.accept(private_data)?;
        self.rejected.set(true);
        self.accepted.set(true);
        Ok(ch)
    }

    /// Rejects the request with `data` as the reject's private data (the
    /// consumer-defined reason; IB carries at most 148 bytes, and longer
    /// data rejects without any).
    pub(crate) fn reject(&self, data: &[u8]) {
        if self.rejected.replace(true) {
            return;
        }
        let len = u8::try_from(data.len()).unwrap_or(u8::MAX);
        // SAFETY: the id is live (type invariant); `data` holds `len` bytes.
        let ret =
            unsafe { bindings::scst_rs_cm_reject(self.id.as_ptr(), data.as_ptr().cast(), len) };
        if ret != 0 {
            pr_warn!("scst: rdma_reject failed ({})\n", ret);
        }
    }
}

/// An RDMA/CM listener on a port of every address.
///
/// # Invariants
///
/// `id` is a listener of `rdma_helpers.c` (a listening CM id per address
/// family) whose context is `handler`'s box; the table stays attached
/// until it is destroyed (`rdma_helpers.c` counts it).
pub(crate) struct CmListener {
    id: NonNull<bindings::scst_rs_listener>,
    handler: KBox<Arc<dyn CmListenerHandler>>,
}

// SAFETY: the id is only destroyed (in `drop`), which any thread may do;
// the handler is `Send + Sync`.
unsafe impl Send for CmListener {}
// SAFETY: no method takes `&self`.
unsafe impl Sync for CmListener {}

impl CmListener {
    /// Listens on `port` of every IPv4 and IPv6 address, while the stack
    /// is attached (`_rdma`).
    pub(crate) fn new(
        _rdma: &Rdma,
        port: u16,
        handler: Arc<dyn CmListenerHandler>,
    ) -> Result<Self> {
        let handler = KBox::new(handler, GFP_KERNEL)?;
        let ctx: *const Arc<dyn CmListenerHandler> = &*handler;
        let mut err = 0;
        // SAFETY: the table is attached (`_rdma`); `ctx` lives in the box,
        // which outlives the id (dropped after it).
        let id = unsafe { bindings::scst_rs_cm_listen(port, ctx as *mut c_void, &mut err) };
        let id = NonNull::new(id).ok_or_else(|| Error::from_errno(err))?;
        Ok(Self { id, handler })
    }
}

impl Drop for CmListener {
    fn drop(&mut self) {
        // SAFETY: the id is live (type invariant); destroying it waits for
        // its running handlers (from one of them it would wait forever: see
        // `CmListenerHandler`), after which `handler` may go.
        unsafe { bindings::scst_rs_cm_destroy(self.id.as_ptr()) };
        let _ = &self.handler;
    }
}

/// # Safety
///
/// Called by the listener's CM handler for a connect request, with the
/// listener's context, the request's live id, and its private data.
#[no_mangle]
unsafe extern "C" fn scst_rs_cm_connect_request(
    ctx: *mut c_void,
    id: *mut bindings::rdma_cm_id,
    data: *const c_void,
    len: u8,
) -> i32 {
    let Some(id) = NonNull::new(id) else {
        return 1;
    };
    // SAFETY: `ctx` is the listener's boxed handler (contract), which
    // outlives the id's handlers.
    let handler = unsafe { &*(ctx as *const Arc<dyn CmListenerHandler>) };
    let data = if data.is_null() {
        &[][..]
    } else {
        // SAFETY: the CM passes `len` bytes of private data at `data`,
        // valid during the event.
        unsafe { core::slice::from_raw_parts(data.cast::<u8>(), usize::from(len)) }
    };
    // INVARIANT: the id is live and bound for the handler's duration.
    let req = ConnectRequest {
        id,
        data,
        rejected: core::cell::Cell::new(false),
        accepted: core::cell::Cell::new(false),
    };
    handler.connect_request(&req);
    if req.accepted.get() {
        // The id is the channel's now.
        return 0;
    }
    req.reject(&[]);
    // Non-zero: the CM destroys the request's id.
    1
}

/// The handler's registration, from scst.ko's load to its unload.
///
/// # Invariants
///
/// `handler` is the pointer `rdma_helpers.c` holds until this drops.
pub(crate) struct RdmaHost {
    handler: KBox<Arc<dyn RdmaHandler>>,
}

impl RdmaHost {
    /// Makes `handler` the one scst_srpt.ko attaches to.
    pub(crate) fn new(handler: Arc<dyn RdmaHandler>) -> Result<Self> {
        let handler = KBox::new(handler, GFP_KERNEL)?;
        let ptr: *const Arc<dyn RdmaHandler> = &*handler;
        // SAFETY: the box outlives the registration (`Drop` withdraws it);
        // a second handler is refused.
        to_result(unsafe { bindings::scst_rs_rdma_set_handler(ptr as *mut c_void) })?;
        Ok(Self { handler })
    }
}

impl Drop for RdmaHost {
    fn drop(&mut self) {
        // scst.ko is unloading, so scst_srpt.ko, which depends on it, is
        // gone: nothing is attached.
        let _ = &self.handler;
        // SAFETY: withdraws the pointer before the box is freed (refused,
        // with a warning, only while attached, which scst_srpt.ko's
        // dependency on scst.ko rules out).
        let _ = unsafe { bindings::scst_rs_rdma_set_handler(core::ptr::null_mut()) };
    }
}

/// # Safety
///
/// `handler` is the pointer [`RdmaHost::new`] registered, still registered.
unsafe fn handler_of<'a>(handler: *mut c_void) -> &'a Arc<dyn RdmaHandler> {
    // SAFETY: per the function's contract.
    unsafe { &*(handler as *const Arc<dyn RdmaHandler>) }
}

/// # Safety
///
/// Called by `scst_rdma_attach()` with the registered handler, the table
/// attached and the lock held.
#[no_mangle]
unsafe extern "C" fn scst_rs_rdma_attach(handler: *mut c_void) -> i32 {
    // SAFETY: per the function's contract.
    let handler = unsafe { handler_of(handler) };
    // INVARIANT: the table is attached and the lock held for this call.
    match handler.attach(&Rdma { _private: () }) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by `scst_rdma_detach()` with the registered handler, the table
/// still attached and the lock held.
#[no_mangle]
unsafe extern "C" fn scst_rs_rdma_detach(handler: *mut c_void) {
    // SAFETY: per the function's contract.
    let handler = unsafe { handler_of(handler) };
    // INVARIANT: as in attach.
    handler.detach(&Rdma { _private: () });
}

/// # Safety
///
/// Called by the IB client's `add` with the registered handler and a
/// registered device, the client registered; `data` is where the device's
/// client data goes.
#[no_mangle]
unsafe extern "C" fn scst_rs_ib_add(
    handler: *mut c_void,
    dev: *mut bindings::ib_device,
    data: *mut *mut c_void,
) -> i32 {
    // SAFETY: per the function's contract.
    let handler = unsafe { handler_of(handler) };
    // Room for the device's data first, so that a device the handler
    // took is never dropped without being removed.
    let Ok(slot) = KBox::<Arc<dyn IbClientDevice>>::new_uninit(GFP_KERNEL) else {
        return ENOMEM.to_errno();
    };
    // INVARIANT: the device is registered and the client too, for the call.
    let dev = IbDevice {
        dev,
        _callback: core::marker::PhantomData,
    };
    match handler.add_device(&dev) {
        Ok(device) => {
            // SAFETY: `data` is valid for writes (contract); the box is
            // taken back in `scst_rs_ib_remove`.
            unsafe { *data = KBox::into_raw(KBox::write(slot, device)).cast() };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the IB client's `remove` with the registered handler, and the
/// `data` `scst_rs_ib_add` gave this device (null if it failed).
#[no_mangle]
unsafe extern "C" fn scst_rs_ib_remove(
    _handler: *mut c_void,
    _dev: *mut bindings::ib_device,
    data: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: `data` is the box `scst_rs_ib_add` leaked for this device,
    // handed back exactly once.
    let device = unsafe { KBox::from_raw(data.cast::<Arc<dyn IbClientDevice>>()) };
    device.remove();
}
