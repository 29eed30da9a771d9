// SPDX-License-Identifier: GPL-2.0

//! srpt: SCST's SRP target driver (`ib_srpt`) over RDMA.
//!
//! It runs while scst_srpt.ko is loaded (that module links the RDMA stack:
//! see `rust/rdma_ops.h`). Each port of each RDMA device is a target,
//! named by the port's GID as SCST names it
//! (`targets/ib_srpt/fe80:0000:0000:0000:5054:00ff:fe12:3456`), created
//! when the device appears and removed when it goes.
//!
//! With `rdma_cm_port` set, an RDMA/CM listener takes logins on that port:
//! each is checked (`login.rs`) and a bad one rejected with its reason; an
//! accepted one opens a session named after the initiator's address and
//! an RDMA channel (`channel.rs`) whose commands (`command.rs`) move their
//! data with RDMA READ and WRITE. A device that goes closes its channels
//! first, then its targets.
//!
//! IB/CM logins (native InfiniBand, without IP) are not listened for yet.

mod channel;
mod command;
mod srq;
// Shared with the host tests, which use all of it.
#[allow(unreachable_pub, dead_code)]
pub(crate) mod data;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod iu;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod login;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod vectors;

use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::rdma::{
    CmListener, CmListenerHandler, ConnectRequest, IbClientDevice, IbDevice, Rdma, RdmaHandler,
    RdmaHost, SrptParams,
};
use crate::kernel_ext::rdma_channel::{ChannelConfig, Srq};
use crate::kernel_ext::sysfs::SysfsBuf;
use crate::kernel_ext::wq::OwnedQueue;
use crate::scst_core::{
    mgmt::{Line, MgmtError, KEY_MARK},
    pr::TransportId,
    target::{SessionHandle, TargetDriver},
    MgmtOutcome, Registry, Scst,
};
use channel::{Events, Nexus, SrpChannel, Terms};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use kernel::{
    alloc::flags::GFP_KERNEL,
    c_str, new_mutex,
    prelude::*,
    str::CStr,
    sync::{Arc, Mutex},
};
use srq::DeviceSrq;

/// Receive units posted per channel: the requests an initiator may have
/// outstanding (SCST's limit; a device with fewer work requests lowers it).
const RQ_SIZE: u32 = 128;

/// SCST's name of the driver, under `targets/`.
const DRIVER: &str = "ib_srpt";

/// The driver under `targets/ib_srpt/`: its targets are the RDMA ports, so
/// `mgmt` creates none.
#[pin_data]
struct SrptDriver {
    /// What each target's attributes show, by target.
    #[pin]
    ports: Mutex<KVec<PortInfo>>,
}

/// A target's port.
struct PortInfo {
    target: GidName,
    gid: [u8; 16],
    /// The RDMA device's name.
    device: KVec<u8>,
    /// The target port identifier's halves (`id_ext`, `ioc_guid`).
    service_guid: u64,
    /// The port's link layer, as ib_core names it.
    link_layer: &'static CStr,
    /// `port_id`: the ID string a device management agent reports for
    /// the port (SCST's default until an administrator names it).
    port_id: KVec<u8>,
    /// The device's completion vectors, those the port's channels may
    /// take (`comp_v_mask`), and the last one a channel took.
    comp_vectors: u32,
    comp_v_mask: KVec<u32>,
    last_vector: Option<u32>,
}

impl PortInfo {
    /// The completion vector the next channel's CQ takes.
    fn next_vector(&mut self) -> Option<u32> {
        let v = vectors::next(&self.comp_v_mask, self.comp_vectors, self.last_vector)?;
        self.last_vector = Some(v);
        Some(v)
    }
}

/// SCST's ib_srpt target attributes (of those it has, these apply).
const TARGET_ATTRS: &[&CStr] = &[
    c_str!("login_info"),
    c_str!("device"),
    c_str!("link_layer"),
    c_str!("port_id"),
    c_str!("comp_v_mask"),
];
const ATTR_LOGIN_INFO: usize = 0;
const ATTR_DEVICE: usize = 1;
const ATTR_LINK_LAYER: usize = 2;
const ATTR_PORT_ID: usize = 3;
const ATTR_COMP_V_MASK: usize = 4;

/// SCST's ib_srpt's `port_id` until one is set, and the room it has.
const DEFAULT_PORT_ID: &str = "SCST SRP target";
const MAX_PORT_ID_LEN: usize = 63;

impl TargetDriver for SrptDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    fn mgmt_help(&self) -> &'static str {
        "The targets of ib_srpt are the ports of the RDMA devices: \
         none is added or removed here.\n"
    }

    fn mgmt<'a>(
        &self,
        _scst: &Arc<Scst>,
        _registry: &mut Registry,
        line: Line<'a>,
    ) -> MgmtOutcome<'a> {
        Err(MgmtError::UnknownCommand(line.verb()).into())
    }

    fn target_attributes(&self) -> &'static [&'static CStr] {
        TARGET_ATTRS
    }

    fn show_target_attribute(&self, target: &CStr, index: usize, out: &mut SysfsBuf) {
        let mut ports = self.ports.lock();
        let Some(port) = port_of(&mut ports, target.as_bytes()) else {
            return;
        };
        let _ = match index {
            // What an initiator's add_target needs, as SCST shows it.
            ATTR_LOGIN_INFO => {
                let _ = write!(
                    out,
                    "tid_ext={:016x},ioc_guid={:016x},pkey=ffff,dgid=",
                    port.service_guid, port.service_guid
                );
                for b in port.gid {
                    let _ = write!(out, "{:02x}", b);
                }
                writeln!(out, ",service_id={:016x}", port.service_guid)
            }
            ATTR_DEVICE => writeln!(out, "{}", core::str::from_utf8(&port.device).unwrap_or("?")),
            ATTR_LINK_LAYER => writeln!(out, "{}", port.link_layer.to_str().unwrap_or("?")),
            ATTR_PORT_ID => {
                let id = core::str::from_utf8(&port.port_id).unwrap_or("?");
                let _ = writeln!(out, "{}", id);
                // Saved by scstadmin only when it is not the default.
                if id != DEFAULT_PORT_ID {
                    let _ = out.write_str(KEY_MARK);
                }
                Ok(())
            }
            ATTR_COMP_V_MASK => {
                let _ = vectors::format(&port.comp_v_mask, port.comp_vectors, out);
                let _ = writeln!(out);
                out.write_str(KEY_MARK)
            }
            _ => Ok(()),
        };
    }

    fn store_target_attribute<'a>(
        &self,
        target: &CStr,
        index: usize,
        value: &'a str,
    ) -> MgmtOutcome<'a> {
        let mut ports = self.ports.lock();
        let port = port_of(&mut ports, target.as_bytes())
            .ok_or(MgmtError::Refused("the target is being removed"))?;
        match index {
            ATTR_PORT_ID => {
                if value.len() > MAX_PORT_ID_LEN {
                    return Err(MgmtError::BadValue {
                        key: "port_id",
                        value,
                        expected: "at most 63 characters",
                    }
                    .into());
                }
                let mut id = KVec::new();
                id.extend_from_slice(value.as_bytes(), GFP_KERNEL)?;
                port.port_id = id;
                Ok(())
            }
            ATTR_COMP_V_MASK => {
                vectors::parse(value, port.comp_vectors, &mut port.comp_v_mask).map_err(|e| {
                    MgmtError::BadValue {
                        key: "comp_v_mask",
                        value,
                        expected: match e {
                            vectors::MaskError::Malformed => {
                                "a hex mask, a comma between groups of 8 digits"
                            }
                            vectors::MaskError::OutOfRange => {
                                "no bit past the device's completion vectors"
                            }
                            vectors::MaskError::Empty => "at least one completion vector",
                        },
                    }
                })?;
                Ok(())
            }
            _ => Err(MgmtError::Refused("read-only attribute").into()),
        }
    }
}

/// The port whose target is named `target`.
fn port_of<'p>(ports: &'p mut [PortInfo], target: &[u8]) -> Option<&'p mut PortInfo> {
    ports.iter_mut().find(|p| p.target.0 == target)
}

impl SrptDriver {
    /// The completion vector the next channel of `target` takes (`None`:
    /// the CQ pool's choice).
    fn next_vector(&self, target: &GidName) -> Option<u32> {
        port_of(&mut self.ports.lock(), &target.0).and_then(PortInfo::next_vector)
    }

    fn forget(&self, target: &GidName) {
        let mut ports = self.ports.lock();
        if let Some(i) = ports.iter().position(|p| p.target.0 == target.0) {
            ports.swap_remove(i);
        }
    }
}

/// A target's name: the port's GID as SCST prints it (`%pI6`, eight
/// groups of four hex digits).
#[derive(Clone, Copy)]
struct GidName([u8; 39]);

impl GidName {
    fn new(gid: &[u8; 16]) -> Self {
        Self(login::target_name(gid))
    }

    fn as_str(&self) -> &str {
        // Hex digits and colons only.
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// What the driver's parts share: the core, the driver's targets, its
/// workqueue, and the RDMA devices it serves.
#[pin_data]
pub(crate) struct SrptShared {
    scst: Arc<Scst>,
    driver: Arc<SrptDriver>,
    /// Task management and session teardown run here (they wait).
    wq: OwnedQueue,
    #[pin]
    devices: Mutex<KVec<Arc<SrptDevice>>>,
}

impl SrptShared {
    fn device(&self, id: usize) -> Option<Arc<SrptDevice>> {
        self.devices.lock().iter().find(|d| d.dev_id == id).cloned()
    }

    /// Takes a closing channel off its device's list.
    fn forget_channel(&self, ch: &Arc<SrpChannel>) {
        let devices = self.devices.lock();
        for d in devices.iter() {
            let mut c = d.channels.lock();
            if let Some(i) = c.list.iter().position(|x| Arc::ptr_eq(x, ch)) {
                c.list.swap_remove(i);
                return;
            }
        }
    }
}

/// Channels alive (until their last command is gone), which a device's
/// removal waits for, with what each still holds.
#[pin_data]
pub(crate) struct ChannelCount {
    n: AtomicUsize,
    /// The channels' traces, those ended pruned as new ones come.
    #[pin]
    traces: Mutex<KVec<Arc<ChannelTrace>>>,
}

/// What keeps a channel alive, for the log of a removal that waits for
/// it. Counters only: a channel's parts update them from any context.
pub(crate) struct ChannelTrace {
    peer: [u8; 48],
    peer_len: usize,
    /// Commands the core holds, and those whose data-out is being fetched.
    pub(super) in_core: AtomicUsize,
    pub(super) data_out: AtomicUsize,
    /// Task management functions running.
    pub(super) in_tm: AtomicUsize,
    /// The channel is closing; its RDMA connection is destroyed; it ended.
    pub(super) closed: AtomicBool,
    pub(super) released: AtomicBool,
    /// The channel holds its RDMA channel's own reference.
    pub(super) holds: AtomicBool,
    ended: AtomicBool,
}

impl ChannelTrace {
    fn new(peer: &str) -> Result<Arc<Self>> {
        let mut name = [0u8; 48];
        let n = peer.len().min(name.len());
        name[..n].copy_from_slice(&peer.as_bytes()[..n]);
        Ok(Arc::new(
            Self {
                peer: name,
                peer_len: n,
                in_core: AtomicUsize::new(0),
                data_out: AtomicUsize::new(0),
                in_tm: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                released: AtomicBool::new(false),
                holds: AtomicBool::new(false),
                ended: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )?)
    }

    fn peer(&self) -> &str {
        core::str::from_utf8(self.peer.get(..self.peer_len).unwrap_or(&[])).unwrap_or("?")
    }
}

/// How often a device's removal looks again for its channels, and how
/// often it says it still waits.
const REMOVE_POLL_MS: u32 = 10;
const REMOVE_REPORT_MS: u32 = 10_000;

/// One channel counted alive, until this drops (in any context).
pub(crate) struct Counted {
    count: Arc<ChannelCount>,
    pub(super) trace: Arc<ChannelTrace>,
}

impl Counted {
    /// Counts the channel of `peer`; process context.
    fn new(count: &Arc<ChannelCount>, peer: &str) -> Result<Self> {
        let trace = ChannelTrace::new(peer)?;
        {
            let mut traces = count.traces.lock();
            let mut i = 0;
            while i < traces.len() {
                if traces[i].ended.load(Ordering::Acquire) {
                    traces.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            traces.push(trace.clone(), GFP_KERNEL)?;
        }
        count.n.fetch_add(1, Ordering::AcqRel);
        Ok(Self {
            count: count.clone(),
            trace,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.trace.ended.store(true, Ordering::Release);
        self.count.n.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ChannelCount {
    /// Waits until none is alive: each ends once its commands have (a
    /// backend ends or times out its I/O), so the wait ends too; it says
    /// so every 10 s meanwhile.
    fn wait_none(&self, device: &CStr) {
        let mut waited = 0u32;
        while self.n.load(Ordering::Acquire) != 0 {
            crate::kernel_ext::misc::sleep_ms(REMOVE_POLL_MS);
            waited += REMOVE_POLL_MS;
            if waited % REMOVE_REPORT_MS == 0 {
                pr_info!(
                    "ib_srpt: {} waits for {} channels to end\n",
                    device,
                    self.n.load(Ordering::Acquire)
                );
                self.report(device);
            }
        }
    }

    /// Says what each channel still alive holds.
    fn report(&self, device: &CStr) {
        crate::kernel_ext::rdma_channel::report_channels();
        for t in self.traces.lock().iter() {
            if t.ended.load(Ordering::Acquire) {
                continue;
            }
            pr_info!(
                "ib_srpt: {}: channel of {}: closing {}, {} commands in the core, \
                 {} awaiting data-out, {} task management functions, connection \
                 released {}, held {}\n",
                device,
                t.peer(),
                t.closed.load(Ordering::Relaxed),
                t.in_core.load(Ordering::Relaxed),
                t.data_out.load(Ordering::Relaxed),
                t.in_tm.load(Ordering::Relaxed),
                t.released.load(Ordering::Relaxed),
                t.holds.load(Ordering::Relaxed)
            );
        }
    }
}

/// The RDMA devices' side of the driver.
#[pin_data]
struct Handler {
    shared: Arc<SrptShared>,
    /// `srpt_service_guid` of the attached stack (0: each device's node
    /// GUID).
    service_guid: AtomicU64,
    /// The RDMA/CM listener, while attached with `rdma_cm_port` set.
    #[pin]
    listener: Mutex<Option<CmListener>>,
    /// `srpt_srq_size` with `use_srq` of the attached stack (0: without),
    /// and `srp_max_req_size`: what each device's shared receive queue
    /// is made of.
    srq_size: AtomicU32,
    req_size: AtomicU32,
}

/// The ranges SCST's ib_srpt takes its parameters in (a request unit for
/// a CDB and a few descriptors at least; a response with its fixed part and
/// a little sense; a send queue for a few commands), and bounds on what a
/// channel allocates per unit.
const MIN_MAX_REQ_SIZE: u32 = 996;
const MAX_MAX_REQ_SIZE: u32 = 65536;
const MIN_MAX_RSP_SIZE: u32 = iu::RSP_LEN as u32 + 4;
const MAX_MAX_RSP_SIZE: u32 = 4096;
const MIN_SQ_SIZE: u32 = 16;
const MAX_SQ_SIZE: u32 = 16384;
const MIN_SRQ_SIZE: u32 = 4;
const MAX_SRQ_SIZE: u32 = 65535;

/// Refuses parameters out of range, saying which.
fn check_params(p: &SrptParams) -> Result {
    let checks = [
        (
            "srp_max_req_size",
            p.srp_max_req_size,
            MIN_MAX_REQ_SIZE,
            MAX_MAX_REQ_SIZE,
        ),
        (
            "srp_max_rsp_size",
            p.srp_max_rsp_size,
            MIN_MAX_RSP_SIZE,
            MAX_MAX_RSP_SIZE,
        ),
        ("srpt_sq_size", p.srpt_sq_size, MIN_SQ_SIZE, MAX_SQ_SIZE),
        ("srpt_srq_size", p.srpt_srq_size, MIN_SRQ_SIZE, MAX_SRQ_SIZE),
    ];
    for (name, value, min, max) in checks {
        if value < min || value > max {
            pr_err!(
                "ib_srpt: {} {} is out of range ({} to {})\n",
                name,
                value,
                min,
                max
            );
            return Err(EINVAL);
        }
    }
    Ok(())
}

impl RdmaHandler for Handler {
    fn attach(&self, rdma: &Rdma) -> Result {
        let params = rdma.params();
        check_params(&params)?;
        let scst = &self.shared.scst;
        self.service_guid
            .store(params.srpt_service_guid, Ordering::Relaxed);
        let srq_size = match params.use_srq {
            true => params.srpt_srq_size,
            false => 0,
        };
        self.srq_size.store(srq_size, Ordering::Relaxed);
        self.req_size
            .store(params.srp_max_req_size, Ordering::Relaxed);
        scst.register_target_driver(self.shared.driver.clone())?;
        if let Err(e) = rdma.register_client() {
            scst.unregister_target_driver(DRIVER);
            return Err(e);
        }
        if params.rdma_cm_port != 0 {
            let logins = Arc::new(
                Logins {
                    shared: self.shared.clone(),
                    params,
                },
                GFP_KERNEL,
            )?;
            match CmListener::new(rdma, params.rdma_cm_port, logins) {
                Ok(l) => *self.listener.lock() = Some(l),
                Err(e) => {
                    pr_err!(
                        "ib_srpt: cannot listen on RDMA/CM port {} ({:?})\n",
                        params.rdma_cm_port,
                        e
                    );
                    rdma.unregister_client();
                    scst.unregister_target_driver(DRIVER);
                    return Err(e);
                }
            }
        }
        pr_info!(
            "ib_srpt: SRP target up: rdma_cm_port {}, srp_max_req_size {}, \
             srp_max_rsp_size {}, srp_max_rdma_size {}, srpt_sq_size {}, \
             srpt_srq_size {}, use_srq {}, srpt_service_guid {:#018x}\n",
            params.rdma_cm_port,
            params.srp_max_req_size,
            params.srp_max_rsp_size,
            params.srp_max_rdma_size,
            params.srpt_sq_size,
            params.srpt_srq_size,
            params.use_srq,
            params.srpt_service_guid
        );
        Ok(())
    }

    fn detach(&self, rdma: &Rdma) {
        // No login comes in once the listener is gone.
        let listener = self.listener.lock().take();
        drop(listener);
        // Each device closes its channels and waits for them.
        rdma.unregister_client();
        self.shared.scst.unregister_target_driver(DRIVER);
        pr_info!("ib_srpt: SRP target down\n");
    }

    fn add_device(&self, dev: &IbDevice<'_>) -> Result<Arc<dyn IbClientDevice>> {
        let shared = &self.shared;
        // Room for every port's target first: once a target is added,
        // nothing fails before the device holds it (a failed add is never
        // removed).
        let mut targets = KVec::with_capacity(dev.ports().count(), GFP_KERNEL)?;
        let mut name = KVec::new();
        name.extend_from_slice(dev.name().as_bytes_with_nul(), GFP_KERNEL)?;
        let service_guid = match self.service_guid.load(Ordering::Relaxed) {
            0 => dev.node_guid(),
            guid => guid,
        };
        let live = Arc::pin_init(
            pin_init!(ChannelCount {
                n: AtomicUsize::new(0),
                traces <- new_mutex!(KVec::new()),
            }),
            GFP_KERNEL,
        )?;
        let srq = match self.srq_size.load(Ordering::Relaxed) {
            0 => None,
            size => match Srq::new(dev, size, self.req_size.load(Ordering::Relaxed))
                .and_then(DeviceSrq::new)
            {
                Ok(srq) => {
                    pr_info!(
                        "ib_srpt: {}: shared receive queue of {} units\n",
                        dev.name(),
                        srq.queue.size()
                    );
                    Some(srq)
                }
                Err(e) => {
                    // As SCST's and LIO's targets do: work without.
                    pr_warn!(
                        "ib_srpt: {}: no shared receive queue ({:?}): a ring per channel\n",
                        dev.name(),
                        e
                    );
                    None
                }
            },
        };
        let mut list = KVec::new();
        shared.devices.lock().reserve(1, GFP_KERNEL)?;
        list.reserve(4, GFP_KERNEL)?;
        for port in dev.ports() {
            let gid = match dev.port_gid(port) {
                Ok(gid) => gid,
                Err(e) => {
                    pr_warn!(
                        "ib_srpt: {} port {}: no GID ({:?}): no target\n",
                        dev.name(),
                        port,
                        e
                    );
                    continue;
                }
            };
            let name = GidName::new(&gid);
            let mut device_name = KVec::new();
            device_name.extend_from_slice(dev.name().as_bytes(), GFP_KERNEL)?;
            let mut port_id = KVec::new();
            port_id.extend_from_slice(DEFAULT_PORT_ID.as_bytes(), GFP_KERNEL)?;
            let comp_vectors = dev.comp_vectors();
            let mut comp_v_mask = KVec::new();
            comp_v_mask.extend_with(vectors::words_for(comp_vectors), 0u32, GFP_KERNEL)?;
            vectors::allow_all(&mut comp_v_mask, comp_vectors);
            // Shown from the moment the target exists.
            shared.driver.ports.lock().push(
                PortInfo {
                    target: name,
                    gid,
                    device: device_name,
                    service_guid,
                    link_layer: dev.link_layer(port),
                    port_id,
                    comp_vectors,
                    comp_v_mask,
                    last_vector: None,
                },
                GFP_KERNEL,
            )?;
            let added = shared.scst.with_registry(|r| {
                shared
                    .scst
                    .add_target(r, DRIVER, name.as_str())
                    .map_err(|e| e.errno())
            });
            match added {
                Ok(()) => targets.push((port, name), GFP_KERNEL)?,
                Err(e) => {
                    shared.driver.forget(&name);
                    pr_warn!(
                        "ib_srpt: {} port {}: target {} not added ({:?})\n",
                        dev.name(),
                        port,
                        name.as_str(),
                        e
                    );
                }
            }
        }
        let device = Arc::pin_init(
            pin_init!(SrptDevice {
                shared: shared.clone(),
                dev_id: dev.id(),
                name,
                service_guid,
                targets,
                channels <- new_mutex!(DeviceChannels {
                    removed: false,
                    list,
                    nexuses: KVec::new(),
                    srq,
                }),
                live,
            }),
            GFP_KERNEL,
        );
        let device = match device {
            Ok(d) => d,
            Err(e) => {
                // A failed add is never removed: its targets go now. (The
                // targets moved into the failed initializer are dropped
                // with it; their names are the ports' GIDs again.)
                for port in dev.ports() {
                    if let Ok(gid) = dev.port_gid(port) {
                        remove_targets(shared, &[(port, GidName::new(&gid))]);
                    }
                }
                return Err(e);
            }
        };
        // Reserved above; a device not listed takes no login.
        let _ = shared.devices.lock().push(device.clone(), GFP_KERNEL);
        Ok(device)
    }
}

/// The RDMA/CM listener's side: SRP logins.
struct Logins {
    shared: Arc<SrptShared>,
    params: SrptParams,
}

/// The completion vector a channel's CQ was asked for, as the log says it.
struct Vector(Option<u32>);

impl core::fmt::Display for Vector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{}", v),
            None => f.write_str("any"),
        }
    }
}

/// Where a channel takes immediate data, as the log says it.
struct Immediate(Option<usize>);

impl core::fmt::Display for Immediate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(offset) => write!(f, "immediate data at {}", offset),
            None => f.write_str("no immediate data"),
        }
    }
}

/// An accepted login, as the log says it.
struct Accepted {
    vector: Option<u32>,
    immediate_offset: Option<usize>,
    /// Its credits, on the device's shared receive queue.
    srq_credits: Option<u32>,
}

/// Where a channel's requests arrive, as the log says it.
struct Receives(Option<u32>);

impl core::fmt::Display for Receives {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(n) => write!(f, ", {} credits of the shared receive queue", n),
            None => Ok(()),
        }
    }
}

/// A login's refusal: the SRP_LOGIN_REJ reason and what the log says.
struct Refused(u32, &'static str);

impl CmListenerHandler for Logins {
    fn connect_request(&self, req: &ConnectRequest<'_>) {
        let formats = iu::buf_fmt::DIRECT | iu::buf_fmt::INDIRECT;
        let login = match iu::LoginRequest::parse_rdma_cm(req.private_data()) {
            Ok(login) => login,
            Err(e) => {
                pr_peer!(
                    pr_warn,
                    "ib_srpt: malformed RDMA/CM login ({:?}, {} bytes): rejected\n",
                    e,
                    req.private_data().len()
                );
                req.reject(&iu::login_reject(
                    [0; 8],
                    iu::reject::UNABLE_ESTABLISH_CHANNEL,
                    formats,
                ));
                return;
            }
        };
        let mut peer = [0u8; 48];
        let peer = req.peer_name(&mut peer);
        let peer_str = core::str::from_utf8(peer).unwrap_or("?");
        match self.login(req, &login, peer_str) {
            Ok(accepted) => pr_peer!(
                pr_info,
                "ib_srpt: {} logged in on {} port {} (it_iu_len {}, completion vector {}, {}{})\n",
                peer_str,
                req.device().name(),
                req.port(),
                login.req_it_iu_len,
                Vector(accepted.vector),
                Immediate(accepted.immediate_offset),
                Receives(accepted.srq_credits)
            ),
            Err(Refused(reason, why)) => {
                pr_peer!(
                    pr_info,
                    "ib_srpt: login of {} on {} port {} (it_iu_len {}) rejected ({}): reason {:#010x}\n",
                    peer_str,
                    req.device().name(),
                    req.port(),
                    login.req_it_iu_len,
                    why,
                    reason
                );
                req.reject(&iu::login_reject(login.tag, reason, formats));
            }
        }
    }
}

impl Logins {
    /// Checks a login and opens its session and channel.
    fn login(
        &self,
        req: &ConnectRequest<'_>,
        login: &iu::LoginRequest,
        peer: &str,
    ) -> core::result::Result<Accepted, Refused> {
        use iu::reject::{INSUFFICIENT_RESOURCES, UNABLE_ESTABLISH_CHANNEL};
        let dev = req.device();
        let port = req.port();
        let device = self
            .shared
            .device(dev.id())
            .ok_or(Refused(UNABLE_ESTABLISH_CHANNEL, "device not served"))?;
        let target = device
            .target_of(port)
            .ok_or(Refused(UNABLE_ESTABLISH_CHANNEL, "port without a target"))?;
        let scst = &self.shared.scst;
        let enabled = scst
            .with_registry(|r| Scst::target_state(r, DRIVER, target.as_str().as_bytes()))
            .is_some_and(|t| t.enabled.load(Ordering::Relaxed));
        if !enabled {
            return Err(Refused(INSUFFICIENT_RESOURCES, "target not enabled"));
        }
        let limits = login::Limits {
            max_req_size: self.params.srp_max_req_size,
            service_guid: device.service_guid,
            rq_size: RQ_SIZE,
        };
        let others = device.has_channels_of(&login.initiator_port_id, port);
        let grant = login::judge(login, &limits, others).map_err(|r| Refused(r, "refused"))?;
        // On the device's shared receive queue, if it has one: as many
        // credits as it has units for.
        let srq = device.channels.lock().srq.clone();
        let credits = match &srq {
            Some(q) => Some(q.credits(RQ_SIZE).ok_or(Refused(
                INSUFFICIENT_RESOURCES,
                "shared receive queue taken",
            ))?),
            None => None,
        };
        let depth = credits.as_ref().map_or(RQ_SIZE, |c| c.count());
        if grant.terminate_others {
            device.shutdown_channels_of(&login.initiator_port_id, port);
        }
        // Another channel of the same I_T nexus shares its session.
        let joined = match grant.terminate_others {
            true => None,
            false => device.join_nexus(&login.initiator_port_id, port),
        };
        let nexus = match joined {
            Some(nexus) => nexus,
            None => {
                let session = scst
                    .with_registry(|r| {
                        scst.add_network_session(
                            r,
                            DRIVER,
                            target.as_str(),
                            peer,
                            TransportId::srp(login.initiator_port_id),
                            |_| {
                                let handle: Arc<dyn SessionHandle> =
                                    Arc::new(SrptSession, GFP_KERNEL)?;
                                Ok(handle)
                            },
                        )
                    })
                    .map_err(|_| Refused(INSUFFICIENT_RESOURCES, "no session"))?;
                match Arc::new(
                    Nexus::new(session.clone(), login.initiator_port_id, port),
                    GFP_KERNEL,
                ) {
                    Ok(nexus) => {
                        device.add_nexus(nexus.clone());
                        nexus
                    }
                    Err(_) => {
                        scst.with_registry(|r| Scst::remove_session(r, DRIVER, &session));
                        return Err(Refused(INSUFFICIENT_RESOURCES, "no memory"));
                    }
                }
            }
        };
        let terms = Terms {
            max_rsp: (grant.response.max_ti_iu_len as usize)
                .min(self.params.srp_max_rsp_size as usize),
            immediate_offset: grant.immediate_offset.map(usize::from),
        };
        let srp = match Counted::new(&device.live, peer).and_then(|live| {
            SrpChannel::new(self.shared.clone(), nexus.clone(), terms, depth, live)
        }) {
            Ok(srp) => srp,
            Err(_) => {
                nexus.release(&self.shared);
                return Err(Refused(INSUFFICIENT_RESOURCES, "no memory"));
            }
        };
        let mut cfg = ChannelConfig {
            rq_size: depth,
            req_size: self.params.srp_max_req_size,
            tx_count: depth,
            rsp_size: self.params.srp_max_rsp_size,
            sq_size: self.params.srpt_sq_size,
            comp_vector: self.shared.driver.next_vector(&target),
        };
        let vector = cfg.comp_vector;
        // The credits go back once the RDMA channel is destroyed.
        let events = match Arc::new(Events::new(srp.clone(), credits), GFP_KERNEL) {
            Ok(e) => e,
            Err(_) => {
                srp.shutdown();
                return Err(Refused(INSUFFICIENT_RESOURCES, "no memory"));
            }
        };
        // The channel takes its own reference to the queue.
        let pending = match req.create_channel(&mut cfg, srq.as_ref().map(|q| &q.queue), events) {
            Ok(p) => p,
            Err(e) => {
                pr_warn!("ib_srpt: {}: no RDMA channel ({:?})\n", peer, e);
                srp.shutdown();
                return Err(Refused(INSUFFICIENT_RESOURCES, "no RDMA channel"));
            }
        };
        // Its send units free before a request can arrive.
        srp.ready(cfg.tx_count);
        let mut response = grant.response;
        response.req_lim_delta = cfg.tx_count;
        let mut channels = device.channels.lock();
        if channels.removed || channels.list.reserve(1, GFP_KERNEL).is_err() {
            drop(channels);
            drop(pending);
            srp.shutdown();
            return Err(Refused(UNABLE_ESTABLISH_CHANNEL, "device going"));
        }
        match req.accept(pending, &response.encode()) {
            Ok(ch) => {
                srp.open(ch);
                // Reserved above.
                let _ = channels.list.push(srp, GFP_KERNEL);
                Ok(Accepted {
                    vector,
                    immediate_offset: terms.immediate_offset,
                    srq_credits: srq.is_some().then_some(cfg.tx_count),
                })
            }
            Err(e) => {
                drop(channels);
                pr_warn!("ib_srpt: {}: accept failed ({:?})\n", peer, e);
                srp.shutdown();
                Err(Refused(UNABLE_ESTABLISH_CHANNEL, "accept failed"))
            }
        }
    }
}

/// A session's side in the driver: nothing beyond its channel.
struct SrptSession;

impl SessionHandle for SrptSession {}

/// A device's channels, and the I_T nexuses they make.
struct DeviceChannels {
    /// The device is going: no new channel.
    removed: bool,
    list: KVec<Arc<SrpChannel>>,
    nexuses: KVec<Arc<Nexus>>,
    /// The device's shared receive queue (`use_srq`), until it is removed.
    srq: Option<DeviceSrq>,
}

/// An RDMA device: its targets, one per port, and its channels.
#[pin_data]
struct SrptDevice {
    shared: Arc<SrptShared>,
    /// The `ib_device`'s identity, and its name (NUL-terminated).
    dev_id: usize,
    name: KVec<u8>,
    service_guid: u64,
    targets: KVec<(u32, GidName)>,
    #[pin]
    channels: Mutex<DeviceChannels>,
    live: Arc<ChannelCount>,
}

impl SrptDevice {
    fn name(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.name).unwrap_or(c_str!("?"))
    }

    fn target_of(&self, port: u32) -> Option<GidName> {
        self.targets
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, n)| *n)
    }

    /// Joins the open nexus of an initiator port and a target port, if
    /// there is one.
    fn join_nexus(&self, initiator: &[u8; 16], port: u32) -> Option<Arc<Nexus>> {
        let c = self.channels.lock();
        c.nexuses
            .iter()
            .find(|n| n.port == port && n.initiator_port_id == *initiator && n.join())
            .cloned()
    }

    /// Records a new nexus (forgetting those whose channels all left).
    fn add_nexus(&self, nexus: Arc<Nexus>) {
        let mut c = self.channels.lock();
        let mut i = 0;
        while i < c.nexuses.len() {
            if c.nexuses[i].open() {
                i += 1;
            } else {
                c.nexuses.swap_remove(i);
            }
        }
        // Without room, later channels of the nexus get sessions of their own.
        let _ = c.nexuses.push(nexus, GFP_KERNEL);
    }

    fn has_channels_of(&self, initiator: &[u8; 16], port: u32) -> bool {
        self.channels
            .lock()
            .list
            .iter()
            .any(|c| c.nexus.port == port && c.nexus.initiator_port_id == *initiator)
    }

    /// Ends an initiator's channels on a port (a single-channel login
    /// replaces them).
    fn shutdown_channels_of(&self, initiator: &[u8; 16], port: u32) {
        loop {
            let next = self
                .channels
                .lock()
                .list
                .iter()
                .find(|c| c.nexus.port == port && c.nexus.initiator_port_id == *initiator)
                .cloned();
            match next {
                Some(c) => c.shutdown(),
                None => return,
            }
        }
    }

    fn remove_targets(&self) {
        remove_targets(&self.shared, &self.targets);
    }
}

/// Removes a device's targets.
fn remove_targets(shared: &SrptShared, targets: &[(u32, GidName)]) {
    for (_, name) in targets.iter() {
        shared.driver.forget(name);
        let _ = shared.scst.with_registry(|r| {
            shared
                .scst
                .del_target(r, DRIVER, name.as_str())
                .map_err(|e| e.errno())
        });
    }
}

impl IbClientDevice for SrptDevice {
    /// Closes the device's channels and waits for them (their QPs and CQs
    /// are the device's), then removes its targets.
    fn remove(&self) {
        let list = {
            let mut c = self.channels.lock();
            c.removed = true;
            core::mem::replace(&mut c.list, KVec::new())
        };
        for ch in list.iter() {
            ch.shutdown();
        }
        drop(list);
        self.live.wait_none(self.name());
        // Its channels are gone, and with them their references: this
        // destroys the queue (the device's unregistration waits for it).
        let srq = self.channels.lock().srq.take();
        drop(srq);
        {
            let mut devices = self.shared.devices.lock();
            if let Some(i) = devices.iter().position(|d| d.dev_id == self.dev_id) {
                devices.swap_remove(i);
            }
        }
        self.remove_targets();
    }
}

/// srpt's registration with the RDMA stack, for scst.ko's lifetime.
pub(crate) struct Srpt {
    _host: RdmaHost,
    shared: Arc<SrptShared>,
}

impl Drop for Srpt {
    fn drop(&mut self) {
        // Works of channels long gone (session teardown) end before the
        // module does.
        self.shared.wq.drain();
    }
}

/// Makes srpt the handler scst_srpt.ko attaches to.
pub(crate) fn register(scst: &Arc<Scst>) -> Result<Srpt> {
    let driver = Arc::pin_init(
        pin_init!(SrptDriver {
            ports <- new_mutex!(KVec::new()),
        }),
        GFP_KERNEL,
    )?;
    let shared = Arc::pin_init(
        try_pin_init!(SrptShared {
            scst: scst.clone(),
            driver,
            wq: OwnedQueue::new(c_str!("scst_srpt"))?,
            devices <- new_mutex!(KVec::new()),
        }? Error),
        GFP_KERNEL,
    )?;
    let handler_shared = shared.clone();
    let handler: Arc<dyn RdmaHandler> = Arc::pin_init(
        pin_init!(Handler {
            shared: handler_shared,
            service_guid: AtomicU64::new(0),
            listener <- new_mutex!(None),
            srq_size: AtomicU32::new(0),
            req_size: AtomicU32::new(0),
        }),
        GFP_KERNEL,
    )?;
    Ok(Srpt {
        _host: RdmaHost::new(handler)?,
        shared,
    })
}
