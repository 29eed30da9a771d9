// SPDX-License-Identifier: GPL-2.0

//! scst_iscsi: the iSCSI target driver, all in the kernel: portals, login
//! and negotiation, discovery, the full feature phase.
//!
//! `targets/iscsi/mgmt` takes SCST's lines (`add_target IQN`,
//! `del_target IQN`); `targets/iscsi/enabled` starts and stops the portals
//! (0.0.0.0:3260 and [::]:3260). A target serves logins once its own
//! `enabled` is 1. Each connection has a receive loop on the driver's
//! workqueue (see `conn.rs`); module unload closes every connection and
//! waits for the loops.

// The protocol logic is plain `core` Rust shared with the host tests.
#[allow(unreachable_pub, dead_code)]
pub(crate) mod chap;
mod conn;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod login;
mod login_phase;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod pdu;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod text;

use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::{SocketAddr, TcpListener, TcpStream};
use crate::kernel_ext::sysfs::SysfsBuf;
use crate::kernel_ext::wq::OwnedQueue;
use crate::scst_core::{
    mgmt::{Line, MgmtError},
    target::{SessionHandle, TargetDriver},
    MgmtOutcome, Registry, Scst,
};
use conn::Conn;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use kernel::{
    alloc::flags::GFP_KERNEL,
    c_str, new_mutex,
    prelude::*,
    str::CStr,
    sync::{Arc, Mutex},
};

const DRIVER: &str = "iscsi";

/// The well-known iSCSI port.
const ISCSI_PORT: u16 = 3260;

/// The command window each session gets (ExpCmdSN to MaxCmdSN).
const QUEUED_COMMANDS: u32 = 32;

/// The driver: its portals, its connections, its workqueue.
#[pin_data]
pub(crate) struct DriverState {
    scst: Arc<Scst>,
    #[pin]
    inner: Mutex<Inner>,
    enabled: AtomicBool,
    next_tsih: AtomicU16,
}

struct Inner {
    /// `None` once the module is going away.
    wq: Option<OwnedQueue>,
    portals: KVec<Arc<TcpListener>>,
    conns: KVec<Arc<Conn>>,
}

impl DriverState {
    /// Starts the portals.
    fn enable(self: &Arc<Self>) -> Result {
        let mut inner = self.inner.lock();
        if !inner.portals.is_empty() {
            return Ok(());
        }
        let addrs = [
            SocketAddr::V4([0; 4], ISCSI_PORT),
            SocketAddr::V6([0; 16], ISCSI_PORT),
        ];
        for addr in addrs {
            let listener = match TcpListener::bind(addr, 128) {
                Ok(l) => Arc::new(l, GFP_KERNEL)?,
                Err(e) => {
                    pr_err!("iscsi: cannot listen on a portal: {:?}\n", e);
                    if matches!(addr, SocketAddr::V6(..)) {
                        // No IPv6 in this kernel: IPv4 serves alone.
                        continue;
                    }
                    return Err(e);
                }
            };
            let wq = inner.wq.as_ref().ok_or(ENODEV)?;
            let drv = self.clone();
            let l = listener.clone();
            wq.queue()
                .try_spawn(GFP_KERNEL, move || drv.accept_loop(&l))?;
            inner.portals.push(listener, GFP_KERNEL)?;
        }
        pr_info!("iscsi: portals on port {} enabled\n", ISCSI_PORT);
        Ok(())
    }

    /// Stops the portals (connections stay).
    fn disable(&self) {
        let mut inner = self.inner.lock();
        while let Some(l) = inner.portals.pop() {
            l.shutdown();
        }
    }

    fn accept_loop(self: Arc<Self>, listener: &TcpListener) {
        while let Ok(stream) = listener.accept() {
            if let Err(e) = self.start_connection(stream) {
                pr_err!("iscsi: cannot serve a connection: {:?}\n", e);
            }
        }
    }

    fn start_connection(self: &Arc<Self>, stream: TcpStream) -> Result {
        let mut peer = [0u8; 64];
        if let Ok(n) = stream.peer_addr(&mut peer) {
            let name = core::str::from_utf8(peer.get(..n).unwrap_or(&[])).unwrap_or("?");
            pr_info!("iscsi: connection from {}\n", name);
        }
        let conn = Conn::new(stream)?;
        let mut inner = self.inner.lock();
        let wq = inner.wq.as_ref().ok_or(ENODEV)?;
        let drv = self.clone();
        let c = conn.clone();
        wq.queue().try_spawn(GFP_KERNEL, move || drv.serve(c))?;
        inner.conns.push(conn, GFP_KERNEL)?;
        Ok(())
    }

    /// The receive loop of a connection, from login to close.
    fn serve(self: Arc<Self>, conn: Arc<Conn>) {
        conn::serve(&self, &conn);
        conn.close();
        let mut inner = self.inner.lock();
        if let Some(i) = inner.conns.iter().position(|c| Arc::ptr_eq(c, &conn)) {
            inner.conns.swap_remove(i);
        }
    }

    /// A new session's TSIH (never 0).
    fn new_tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
    }

    /// Closes every connection and waits for all loops (module unload).
    fn shutdown(&self) {
        self.disable();
        let wq = {
            let mut inner = self.inner.lock();
            for c in inner.conns.iter() {
                c.close();
            }
            inner.wq.take()
        };
        // Waits for the accept and receive loops to return.
        drop(wq);
    }
}

/// A session's driver side: closing it closes the connection.
struct IscsiSession {
    conn: Arc<Conn>,
}

impl SessionHandle for IscsiSession {}

impl Drop for IscsiSession {
    fn drop(&mut self) {
        // The receive loop notices, ends, and closes the core session (if
        // it still exists).
        self.conn.close();
    }
}

struct IscsiDriver {
    state: Arc<DriverState>,
}

const ATTRS: &[&CStr] = &[c_str!("enabled")];

impl TargetDriver for IscsiDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    fn mgmt_help(&self) -> &'static str {
        "Usage: echo \"add_target target_name\" >mgmt\n\
         \x20      echo \"del_target target_name\" >mgmt\n"
    }

    fn mgmt<'a>(
        &self,
        scst: &Arc<Scst>,
        registry: &mut Registry,
        mut line: Line<'a>,
    ) -> MgmtOutcome<'a> {
        match line.verb() {
            "add_target" => {
                let name = line.name("target name")?;
                line.end()?;
                scst.add_target(registry, DRIVER, name)?;
                // As in SCST, a new iSCSI target waits for `enabled`.
                if let Some(t) = Scst::target_state(registry, DRIVER, name.as_bytes()) {
                    t.enabled.store(false, Ordering::Relaxed);
                }
                Ok(())
            }
            "del_target" => {
                let name = line.name("target name")?;
                line.end()?;
                scst.del_target(registry, DRIVER, name)
            }
            verb => Err(MgmtError::UnknownCommand(verb).into()),
        }
    }

    fn attributes(&self) -> &'static [&'static CStr] {
        ATTRS
    }

    fn show_attribute(&self, _index: usize, out: &mut SysfsBuf) {
        let _ = writeln!(
            out,
            "{}",
            u8::from(self.state.enabled.load(Ordering::Relaxed))
        );
    }

    fn store_attribute(&self, _scst: &Arc<Scst>, _index: usize, value: &str) -> Result {
        match value {
            "1" => {
                self.state.enable()?;
                self.state.enabled.store(true, Ordering::Relaxed);
            }
            "0" => {
                self.state.disable();
                self.state.enabled.store(false, Ordering::Relaxed);
            }
            _ => {
                pr_err!("iscsi: enabled: {:?}: expected 0 or 1\n", value);
                return Err(EINVAL);
            }
        }
        Ok(())
    }
}

/// The iSCSI driver as the module holds it: dropping it closes every
/// connection and waits for them.
pub(crate) struct Iscsi {
    state: Arc<DriverState>,
}

impl Drop for Iscsi {
    fn drop(&mut self) {
        self.state.shutdown();
    }
}

/// Registers the iSCSI target driver with the core.
pub(crate) fn register(scst: &Arc<Scst>) -> Result<Iscsi> {
    let wq = OwnedQueue::new(c_str!("scst_iscsi"))?;
    let core = scst.clone();
    let state = Arc::pin_init(
        pin_init!(DriverState {
            scst: core,
            inner <- new_mutex!(Inner {
                wq: Some(wq),
                portals: KVec::new(),
                conns: KVec::new(),
            }),
            enabled: AtomicBool::new(false),
            next_tsih: AtomicU16::new(1),
        }),
        GFP_KERNEL,
    )?;
    scst.register_target_driver(Arc::new(
        IscsiDriver {
            state: state.clone(),
        },
        GFP_KERNEL,
    )?)?;
    Ok(Iscsi { state })
}
