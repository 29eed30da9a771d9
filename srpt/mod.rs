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
//! each is checked (`login.rs`) and a bad one rejected with its reason.
//!
//! Status: RDMA channels and the SRP data path are not written yet, so a
//! login that passes the checks is rejected too (UNABLE TO ESTABLISH
//! CHANNEL), and IB/CM logins (native InfiniBand) are not listened for.

// Shared with the host tests, which use all of it.
#[allow(unreachable_pub, dead_code)]
pub(crate) mod data;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod iu;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod login;

use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::peer_log_allowed;
use crate::kernel_ext::rdma::{
    CmListener, CmListenerHandler, ConnectRequest, IbClientDevice, IbDevice, Rdma, RdmaHandler,
    RdmaHost, SrptParams,
};
use crate::kernel_ext::sysfs::SysfsBuf;
use crate::scst_core::{
    mgmt::{Line, MgmtError},
    target::TargetDriver,
    MgmtOutcome, Registry, Scst,
};
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{
    alloc::flags::GFP_KERNEL,
    c_str, new_mutex,
    prelude::*,
    str::CStr,
    sync::{Arc, Mutex},
};

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
}

/// SCST's ib_srpt target attributes (of those it has, these apply).
const TARGET_ATTRS: &[&CStr] = &[c_str!("login_info"), c_str!("device")];

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
        let ports = self.ports.lock();
        let Some(port) = ports
            .iter()
            .find(|p| p.target.as_str().as_bytes() == target.as_bytes())
        else {
            return;
        };
        let _ = match index {
            // What an initiator's add_target needs, as SCST shows it.
            0 => {
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
            _ => writeln!(out, "{}", core::str::from_utf8(&port.device).unwrap_or("?")),
        };
    }
}

impl SrptDriver {
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

/// The RDMA devices' side of the driver.
#[pin_data]
struct Handler {
    scst: Arc<Scst>,
    driver: Arc<SrptDriver>,
    /// `srpt_service_guid` of the attached stack (0: each device's node
    /// GUID).
    service_guid: AtomicU64,
    /// The RDMA/CM listener, while attached with `rdma_cm_port` set.
    #[pin]
    listener: Mutex<Option<CmListener>>,
}

impl RdmaHandler for Handler {
    fn attach(&self, rdma: &Rdma) -> Result {
        let params = rdma.params();
        self.service_guid
            .store(params.srpt_service_guid, Ordering::Relaxed);
        self.scst.register_target_driver(self.driver.clone())?;
        if let Err(e) = rdma.register_client() {
            self.scst.unregister_target_driver(DRIVER);
            return Err(e);
        }
        if params.rdma_cm_port != 0 {
            let logins = Arc::new(Logins { params }, GFP_KERNEL)?;
            match CmListener::new(rdma, params.rdma_cm_port, logins) {
                Ok(l) => *self.listener.lock() = Some(l),
                Err(e) => {
                    pr_err!(
                        "ib_srpt: cannot listen on RDMA/CM port {} ({:?})\n",
                        params.rdma_cm_port,
                        e
                    );
                    rdma.unregister_client();
                    self.scst.unregister_target_driver(DRIVER);
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
        rdma.unregister_client();
        self.scst.unregister_target_driver(DRIVER);
        pr_info!("ib_srpt: SRP target down\n");
    }

    fn add_device(&self, dev: &IbDevice<'_>) -> Result<Arc<dyn IbClientDevice>> {
        // Room for every port's target first: once a target is added,
        // nothing fails before the device holds it (a failed add is never
        // removed).
        let mut device = SrptDevice {
            scst: self.scst.clone(),
            driver: self.driver.clone(),
            targets: KVec::with_capacity(dev.ports().count(), GFP_KERNEL)?,
        };
        let service_guid = match self.service_guid.load(Ordering::Relaxed) {
            0 => dev.node_guid(),
            guid => guid,
        };
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
            // Shown from the moment the target exists.
            self.driver.ports.lock().push(
                PortInfo {
                    target: name,
                    gid,
                    device: device_name,
                    service_guid,
                },
                GFP_KERNEL,
            )?;
            let added = self.scst.with_registry(|r| {
                self.scst
                    .add_target(r, DRIVER, name.as_str())
                    .map_err(|e| e.errno())
            });
            match added {
                Ok(()) => device.targets.push(name, GFP_KERNEL)?,
                Err(e) => {
                    self.driver.forget(&name);
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
        // Should this fail, dropping the device removes its targets.
        Ok(Arc::new(device, GFP_KERNEL)?)
    }
}

/// The RDMA/CM listener's side: SRP logins.
struct Logins {
    params: SrptParams,
}

impl CmListenerHandler for Logins {
    fn connect_request(&self, req: &ConnectRequest<'_>) {
        let formats = iu::buf_fmt::DIRECT | iu::buf_fmt::INDIRECT;
        let login = match iu::LoginRequest::parse_rdma_cm(req.private_data()) {
            Ok(login) => login,
            Err(e) => {
                if peer_log_allowed() {
                    pr_warn!(
                        "ib_srpt: malformed RDMA/CM login ({:?}, {} bytes): rejected\n",
                        e,
                        req.private_data().len()
                    );
                }
                req.reject(&iu::login_reject(
                    [0; 8],
                    iu::reject::UNABLE_ESTABLISH_CHANNEL,
                    formats,
                ));
                return;
            }
        };
        let dev = req.device();
        let limits = login::Limits {
            max_req_size: self.params.srp_max_req_size,
            service_guid: match self.params.srpt_service_guid {
                0 => dev.node_guid(),
                guid => guid,
            },
            rq_size: RQ_SIZE,
        };
        let (reason, why) = match login::judge(&login, &limits, false) {
            Err(reason) => (reason, "refused"),
            // Channels are not written yet.
            Ok(_) => (
                iu::reject::UNABLE_ESTABLISH_CHANNEL,
                "valid, but RDMA channels are not implemented yet",
            ),
        };
        if peer_log_allowed() {
            let name = login::initiator_name(&login.initiator_port_id);
            pr_info!(
                "ib_srpt: login of {} on {} port {} (it_iu_len {}) {}: reject reason {:#010x}\n",
                core::str::from_utf8(&name).unwrap_or("?"),
                dev.name(),
                req.port(),
                login.req_it_iu_len,
                why,
                reason
            );
        }
        req.reject(&iu::login_reject(login.tag, reason, formats));
    }
}

/// An RDMA device's targets, one per port.
struct SrptDevice {
    scst: Arc<Scst>,
    driver: Arc<SrptDriver>,
    targets: KVec<GidName>,
}

impl SrptDevice {
    fn remove_targets(&self) {
        for name in self.targets.iter() {
            self.driver.forget(name);
            let _ = self.scst.with_registry(|r| {
                self.scst
                    .del_target(r, DRIVER, name.as_str())
                    .map_err(|e| e.errno())
            });
        }
    }
}

impl IbClientDevice for SrptDevice {
    fn remove(&self) {
        self.remove_targets();
    }
}

impl Drop for SrptDevice {
    /// A device whose add failed is never removed: its targets go here.
    /// (After `remove`, they are gone already and this finds none.)
    fn drop(&mut self) {
        self.remove_targets();
    }
}

/// srpt's registration with the RDMA stack, for scst.ko's lifetime.
pub(crate) struct Srpt {
    _host: RdmaHost,
}

/// Makes srpt the handler scst_srpt.ko attaches to.
pub(crate) fn register(scst: &Arc<Scst>) -> Result<Srpt> {
    let driver = Arc::pin_init(
        pin_init!(SrptDriver {
            ports <- new_mutex!(KVec::new()),
        }),
        GFP_KERNEL,
    )?;
    let handler: Arc<dyn RdmaHandler> = Arc::pin_init(
        pin_init!(Handler {
            scst: scst.clone(),
            driver,
            service_guid: AtomicU64::new(0),
            listener <- new_mutex!(None),
        }),
        GFP_KERNEL,
    )?;
    Ok(Srpt {
        _host: RdmaHost::new(handler)?,
    })
}
