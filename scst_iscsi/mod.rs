// SPDX-License-Identifier: GPL-2.0

//! scst_iscsi: the iSCSI target driver, all in the kernel: portals, login
//! and negotiation, discovery, the full feature phase.
//!
//! `targets/iscsi/mgmt` takes SCST's lines (`add_target IQN`,
//! `del_target IQN`, CHAP users and `allowed_portal` through
//! `add_target_attribute`); `targets/iscsi/enabled` starts and stops the
//! portals (`add_attribute portal ADDR[:PORT]`; by default 0.0.0.0:3260
//! and [::]:3260). A target serves logins once its own `enabled` is 1. Each connection has a receive loop on the driver's
//! workqueue (see `conn.rs`); module unload closes every connection and
//! waits for the loops.

// The protocol logic is plain `core` Rust shared with the host tests.
#[allow(unreachable_pub, dead_code)]
pub(crate) mod chap;
mod config;
mod conn;
mod ffp;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod login;
mod login_phase;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod params;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod pdu;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod portal;
mod reply;
#[allow(unreachable_pub, dead_code)]
pub(crate) mod text;

use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::net::{SocketAddr, TcpListener, TcpStream};
use crate::kernel_ext::sysfs::SysfsBuf;
use crate::kernel_ext::wq::OwnedQueue;
use crate::scst_core::{
    cdb::encode_lun,
    device::key_mark,
    mgmt::{Line, MgmtError},
    sense::{SenseFormat, MAX_SENSE_LEN, REPORTED_LUNS_DATA_CHANGED},
    target::{SessionAttributes, SessionHandle, TargetDriver},
    MgmtOutcome, Registry, Scst,
};
use config::Config;
use conn::Conn;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use kernel::{
    alloc::flags::GFP_KERNEL,
    c_str, new_condvar, new_mutex,
    prelude::*,
    str::CStr,
    sync::{Arc, CondVar, Mutex},
    time::msecs_to_jiffies,
};
use params::{parse_user, Param, UserKind};
use portal::{Ip, Portal};

const DRIVER: &str = "iscsi";

/// Connections the driver serves at once, whatever their state; one more
/// is closed as it is accepted. Each has a receive work for its life on
/// the driver's workqueue, and at times a sender and a task management
/// work: this keeps them all well within the workqueue's limit of works
/// running at once (`OwnedQueue::wide`), so that accepting, sending and
/// task management always have workers.
const MAX_CONNECTIONS: usize = 128;

/// Connections past [`MAX_CONNECTIONS`] answered with a Login Response at
/// once; more are closed without one.
const MAX_REFUSING: usize = 8;

/// The driver: its portals, its connections, its workqueue.
#[pin_data]
pub(crate) struct DriverState {
    scst: Arc<Scst>,
    #[pin]
    inner: Mutex<Inner>,
    /// Signalled when a connection leaves `inner.conns`.
    #[pin]
    conn_gone: CondVar,
    /// Targets' parameters and CHAP users.
    #[pin]
    config: Mutex<Config>,
    enabled: AtomicBool,
    next_tsih: AtomicU16,
    /// Connections being refused (see [`MAX_REFUSING`]).
    refusing: AtomicUsize,
}

struct Inner {
    /// `None` once the module is going away.
    wq: Option<OwnedQueue>,
    /// The portals listening now, while the driver is enabled.
    portals: KVec<(Portal, Arc<TcpListener>)>,
    conns: KVec<Arc<Conn>>,
}

/// Connections a portal may have waiting to be accepted.
const LISTEN_BACKLOG: i32 = 128;

impl DriverState {
    /// Starts listening on the configured portals. One that cannot listen
    /// is reported and skipped (an IPv6 portal in a kernel without IPv6);
    /// none at all fails.
    fn enable(self: &Arc<Self>) -> Result {
        // Lock order: config, then inner.
        let config = self.config.lock();
        let mut inner = self.inner.lock();
        if !inner.portals.is_empty() {
            return Ok(());
        }
        let mut first_error = None;
        for &portal in config.portals.iter() {
            if let Err(e) = self.listen(&mut inner, portal) {
                pr_err!("iscsi: cannot listen on portal {}: {:?}\n", portal, e);
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) if inner.portals.is_empty() => Err(e),
            _ => Ok(()),
        }
    }

    /// Listens on `portal` and starts its accept loop.
    fn listen(self: &Arc<Self>, inner: &mut Inner, portal: Portal) -> Result {
        let addr = match portal.ip {
            Ip::V4(a) => SocketAddr::V4(a, portal.port),
            Ip::V6(a) => SocketAddr::V6(a, portal.port),
        };
        let listener = Arc::new(TcpListener::bind(addr, LISTEN_BACKLOG)?, GFP_KERNEL)?;
        inner.portals.reserve(1, GFP_KERNEL)?;
        let wq = inner.wq.as_ref().ok_or(ENODEV)?;
        let drv = self.clone();
        let l = listener.clone();
        wq.queue()
            .try_spawn(GFP_KERNEL, move || drv.accept_loop(&l))?;
        inner.portals.push((portal, listener), GFP_KERNEL)?;
        pr_info!("iscsi: listening on {}\n", portal);
        Ok(())
    }

    /// Stops the portals (connections stay).
    fn disable(&self) {
        let mut inner = self.inner.lock();
        while let Some((_, l)) = inner.portals.pop() {
            l.shutdown();
        }
    }

    /// `add_attribute portal`/`del_attribute portal`: changes the portal
    /// list, and the listening sockets at once while enabled.
    fn change_portal<'a>(self: &Arc<Self>, value: &'a str, add: bool) -> MgmtOutcome<'a> {
        let portal = Portal::parse(value).map_err(|e| MgmtError::BadValue {
            key: "portal",
            value,
            expected: e.expected(),
        })?;
        let mut config = self.config.lock();
        let mut inner = self.inner.lock();
        let listening = self.enabled.load(Ordering::Relaxed);
        let known = config.portals.iter().position(|&p| p == portal);
        match (add, known) {
            (true, Some(_)) => Err(MgmtError::AlreadyExists(value).into()),
            (false, None) => Err(MgmtError::NoSuchObject(value).into()),
            (true, None) => {
                config.portals.reserve(1, GFP_KERNEL)?;
                if listening {
                    self.listen(&mut inner, portal).map_err(|e| {
                        pr_err!("iscsi: cannot listen on portal {}: {:?}\n", portal, e);
                        MgmtError::Refused("cannot listen on that address")
                    })?;
                }
                config.portals.push(portal, GFP_KERNEL)?;
                Ok(())
            }
            (false, Some(i)) => {
                config.portals.swap_remove(i);
                if let Some(j) = inner.portals.iter().position(|(p, _)| *p == portal) {
                    if let Some((_, l)) = inner.portals.swap_remove(j) {
                        l.shutdown();
                    }
                }
                Ok(())
            }
        }
    }

    fn accept_loop(self: Arc<Self>, listener: &TcpListener) {
        while let Ok(stream) = listener.accept() {
            if let Err(e) = self.start_connection(stream) {
                pr_peer!(pr_err, "iscsi: cannot serve a connection: {:?}\n", e);
            }
        }
    }

    fn start_connection(self: &Arc<Self>, stream: TcpStream) -> Result {
        let mut peer = [0u8; 64];
        if let Ok(n) = stream.peer_addr(&mut peer) {
            let name = core::str::from_utf8(peer.get(..n).unwrap_or(&[])).unwrap_or("?");
            pr_peer!(pr_info, "iscsi: connection from {}\n", name);
        }
        let mut inner = self.inner.lock();
        let wq = inner.wq.as_ref().ok_or(ENODEV)?;
        if inner.conns.len() >= MAX_CONNECTIONS {
            pr_peer!(
                pr_warn,
                "iscsi: {} connections open: a new one is refused\n",
                MAX_CONNECTIONS
            );
            // Answered "out of resources" on a worker of its own, a few at
            // a time; beyond those, closed at once (dropping the stream).
            if self.refusing.fetch_add(1, Ordering::AcqRel) < MAX_REFUSING {
                let drv = self.clone();
                let spawned = wq.queue().try_spawn(GFP_KERNEL, move || {
                    login_phase::refuse(&stream);
                    drv.refusing.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_ok() {
                    return Ok(());
                }
            }
            self.refusing.fetch_sub(1, Ordering::AcqRel);
            return Ok(());
        }
        let conn = Conn::new(stream)?;
        let drv = self.clone();
        let c = conn.clone();
        wq.queue().try_spawn(GFP_KERNEL, move || drv.serve(c))?;
        inner.conns.push(conn, GFP_KERNEL)?;
        Ok(())
    }

    /// The receive loop of a connection, from login to close.
    fn serve(self: Arc<Self>, conn: Arc<Conn>) {
        ffp::serve(&self, &conn);
        conn.close();
        let mut inner = self.inner.lock();
        if let Some(i) = inner.conns.iter().position(|c| Arc::ptr_eq(c, &conn)) {
            inner.conns.swap_remove(i);
        }
        self.conn_gone.notify_all();
    }

    /// Closes the session with `tsih`, if it is open.
    fn close_session_tsih(&self, tsih: u16) {
        for c in self.inner.lock().conns.iter() {
            if c.has_tsih(tsih) {
                c.close();
            }
        }
    }

    /// Closes the sessions of `initiator` with `isid` on `target` (session
    /// reinstatement) and waits until they are gone, their tasks ended.
    fn close_sessions_of(&self, target: &[u8], initiator: &[u8], isid: [u8; 6]) {
        /// How long the old session may take to end.
        const WAIT_ROUNDS: u32 = 30;
        let mut inner = self.inner.lock();
        for round in 0..=WAIT_ROUNDS {
            let mut open = false;
            for c in inner.conns.iter() {
                if c.is_session_of(target, initiator, isid) {
                    c.close();
                    open = true;
                }
            }
            if !open {
                return;
            }
            if round == WAIT_ROUNDS {
                pr_peer!(pr_warn, "iscsi: a reinstated session is still ending\n");
                return;
            }
            let _ = self
                .conn_gone
                .wait_interruptible_timeout(&mut inner, msecs_to_jiffies(1000));
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
    drv: Arc<DriverState>,
    conn: Arc<Conn>,
    info: Arc<SessionInfo>,
}

impl SessionHandle for IscsiSession {
    fn attributes(&self) -> Option<Arc<dyn SessionAttributes>> {
        let info: Arc<dyn SessionAttributes> = self.info.clone();
        Some(info)
    }

    /// Sends REPORTED LUNS DATA HAS CHANGED in an Async Message, from the
    /// driver's workqueue (the socket may block; the caller must not).
    fn luns_changed(&self, lun: u64) {
        let mut sense = [0u8; MAX_SENSE_LEN];
        let len = REPORTED_LUNS_DATA_CHANGED.encode(SenseFormat::Fixed, &mut sense);
        let conn = self.conn.clone();
        let inner = self.drv.inner.lock();
        let Some(wq) = inner.wq.as_ref() else {
            return;
        };
        let sent = wq.queue().try_spawn(GFP_KERNEL, move || {
            let data = sense.get(..len).unwrap_or(&[]);
            if let Err(e) = conn.send_scsi_event(encode_lun(lun), data) {
                pr_info!("iscsi: cannot send an Async Message: {:?}\n", e);
            }
        });
        if sent.is_err() {
            // The unit attention still reaches the initiator.
            pr_warn!("iscsi: no memory for an Async Message\n");
        }
    }
}

/// What `sessions/<initiator>/` shows of an iSCSI session: the negotiated
/// parameters and the connection's addresses.
pub(crate) struct SessionInfo {
    negotiated: login::Negotiated,
    initiator_address: ([u8; 64], usize),
    target_address: ([u8; 64], usize),
}

const SESSION_ATTRS: &[&CStr] = &[
    c_str!("sid"),
    c_str!("cid"),
    c_str!("initiator_address"),
    c_str!("target_address"),
    c_str!("HeaderDigest"),
    c_str!("DataDigest"),
    c_str!("MaxRecvDataSegmentLength"),
    c_str!("MaxXmitDataSegmentLength"),
    c_str!("MaxBurstLength"),
    c_str!("FirstBurstLength"),
    c_str!("InitialR2T"),
    c_str!("ImmediateData"),
    c_str!("MaxOutstandingR2T"),
];

impl SessionInfo {
    fn new(conn: &Conn, negotiated: login::Negotiated) -> Self {
        let mut peer = [0u8; 64];
        let mut local = [0u8; 64];
        let peer_len = conn.stream.peer_addr(&mut peer).unwrap_or(0);
        let local_len = conn.stream.local_addr(&mut local).unwrap_or(0);
        Self {
            negotiated,
            initiator_address: (peer, peer_len),
            target_address: (local, local_len),
        }
    }
}

impl SessionAttributes for SessionInfo {
    fn names(&self) -> &'static [&'static CStr] {
        SESSION_ATTRS
    }

    fn show(&self, index: usize, out: &mut SysfsBuf) {
        let n = &self.negotiated;
        let digest = |on: bool| if on { "CRC32C" } else { "None" };
        let yes_no = |on: bool| if on { "Yes" } else { "No" };
        fn address((a, len): &([u8; 64], usize)) -> &str {
            core::str::from_utf8(a.get(..*len).unwrap_or(&[])).unwrap_or("?")
        }
        let _ = match index {
            0 => {
                // SCST's session id: the ISID, then the TSIH.
                let mut sid = 0u64;
                for b in n.isid {
                    sid = (sid << 8) | u64::from(b);
                }
                writeln!(out, "{:#x}", (sid << 16) | u64::from(n.tsih))
            }
            1 => writeln!(out, "{}", n.cid),
            2 => writeln!(out, "{}", address(&self.initiator_address)),
            3 => writeln!(out, "{}", address(&self.target_address)),
            4 => writeln!(out, "{}", digest(n.header_digest)),
            5 => writeln!(out, "{}", digest(n.data_digest)),
            6 => writeln!(out, "{}", n.max_recv_data_segment_length),
            7 => writeln!(out, "{}", n.max_xmit_data_segment_length),
            8 => writeln!(out, "{}", n.max_burst_length),
            9 => writeln!(out, "{}", n.first_burst_length),
            10 => writeln!(out, "{}", yes_no(n.initial_r2t)),
            11 => writeln!(out, "{}", yes_no(n.immediate_data)),
            12 => writeln!(out, "{}", n.max_outstanding_r2t),
            _ => Ok(()),
        };
    }
}

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

/// The driver attribute naming a listening address.
const PORTAL: &str = "portal";
/// The target attribute naming the portals it may be reached through.
const ALLOWED_PORTAL: &str = "allowed_portal";
/// Longest `allowed_portal` pattern.
const MAX_PORTAL_PATTERN: usize = 64;

/// Files of `targets/iscsi/`: `enabled`, the discovery CHAP users, the
/// portals.
const ATTRS: &[&CStr] = &[
    c_str!("enabled"),
    c_str!("IncomingUser"),
    c_str!("OutgoingUser"),
    c_str!("portal"),
];

/// Files of each target: its parameters ([`Param::ALL`], in that order),
/// then its CHAP users.
const TARGET_ATTRS: &[&CStr] = &[
    c_str!("HeaderDigest"),
    c_str!("DataDigest"),
    c_str!("MaxRecvDataSegmentLength"),
    c_str!("MaxXmitDataSegmentLength"),
    c_str!("MaxBurstLength"),
    c_str!("FirstBurstLength"),
    c_str!("InitialR2T"),
    c_str!("ImmediateData"),
    c_str!("MaxOutstandingR2T"),
    c_str!("QueuedCommands"),
    c_str!("NopInInterval"),
    c_str!("NopInTimeout"),
    c_str!("RspTimeout"),
    c_str!("MaxSessions"),
    c_str!("IncomingUser"),
    c_str!("OutgoingUser"),
    c_str!("allowed_portal"),
];

/// The CHAP user kind shown by attribute file `name`, if it is one.
fn user_file(name: &CStr) -> Option<UserKind> {
    UserKind::from_name(name.to_str().ok()?)
}

impl IscsiDriver {
    /// `add_target_attribute`/`del_target_attribute`: a target's CHAP users
    /// and allowed portals.
    fn target_attribute<'a>(&self, mut line: Line<'a>, add: bool) -> MgmtOutcome<'a> {
        let target = line.name("target name")?;
        let attr = line.word("attribute name")?;
        if attr == ALLOWED_PORTAL {
            let pattern = line.word("portal pattern")?;
            line.end()?;
            return self.allowed_portal(target, pattern, add);
        }
        let kind = UserKind::from_name(attr).ok_or(MgmtError::UnknownParam(attr))?;
        let value = line.rest();
        let mut config = self.state.config.lock();
        let t = config
            .target_mut(target.as_bytes())
            .ok_or(MgmtError::NoSuchObject(target))?;
        t.chap = Arc::new(change_users(&t.chap, kind, attr, value, add)?, GFP_KERNEL)?;
        Ok(())
    }

    /// Adds or removes one of a target's `allowed_portal` patterns.
    fn allowed_portal<'a>(&self, target: &'a str, pattern: &'a str, add: bool) -> MgmtOutcome<'a> {
        if pattern.len() > MAX_PORTAL_PATTERN || !pattern.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MgmtError::BadValue {
                key: ALLOWED_PORTAL,
                value: pattern,
                expected: "an address pattern with * and ? (at most 64 characters)",
            }
            .into());
        }
        let mut config = self.state.config.lock();
        let t = config
            .target_mut(target.as_bytes())
            .ok_or(MgmtError::NoSuchObject(target))?;
        let known = t
            .allowed_portals
            .iter()
            .position(|p| &p[..] == pattern.as_bytes());
        match (add, known) {
            (true, Some(_)) => Err(MgmtError::AlreadyExists(pattern).into()),
            (false, None) => Err(MgmtError::NoSuchObject(pattern).into()),
            (true, None) => {
                let p = config::bytes(pattern.as_bytes())?;
                t.allowed_portals.push(p, GFP_KERNEL)?;
                Ok(())
            }
            (false, Some(i)) => {
                t.allowed_portals.swap_remove(i);
                Ok(())
            }
        }
    }

    /// `add_attribute`/`del_attribute`: the portals, and the discovery
    /// sessions' CHAP users.
    fn driver_attribute<'a>(&self, mut line: Line<'a>, add: bool) -> MgmtOutcome<'a> {
        let attr = line.word("attribute name")?;
        if attr == PORTAL {
            let value = line.word("portal address")?;
            line.end()?;
            return self.state.change_portal(value, add);
        }
        let kind = UserKind::from_name(attr).ok_or(MgmtError::UnknownParam(attr))?;
        let value = line.rest();
        let mut config = self.state.config.lock();
        let next = change_users(&config.discovery_chap, kind, attr, value, add)?;
        config.discovery_chap = Arc::new(next, GFP_KERNEL)?;
        Ok(())
    }
}

/// `chap` with a user added or removed, as a management line asked.
fn change_users<'a>(
    chap: &config::Chap,
    kind: UserKind,
    attr: &'a str,
    value: &'a str,
    add: bool,
) -> core::result::Result<config::Chap, crate::scst_core::MgmtFailure<'a>> {
    let (name, secret) = parse_user(value, !add).map_err(|_| MgmtError::BadValue {
        key: attr,
        value,
        expected: "a CHAP name and secret (at most 255 bytes each)",
    })?;
    if add {
        Ok(chap.with_user(kind, name, secret)?)
    } else {
        chap.without_user(kind, name)?
            .ok_or_else(|| MgmtError::NoSuchObject(value).into())
    }
}

impl TargetDriver for IscsiDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    fn mgmt_help(&self) -> &'static str {
        "Usage: echo \"add_target target_name\" >mgmt\n\
         \x20      echo \"del_target target_name\" >mgmt\n\
         \x20      echo \"add_target_attribute target_name <IncomingUser|OutgoingUser> name secret\" >mgmt\n\
         \x20      echo \"del_target_attribute target_name <IncomingUser|OutgoingUser> name\" >mgmt\n\
         \x20      echo \"add_target_attribute target_name allowed_portal pattern\" >mgmt\n\
         \x20      echo \"del_target_attribute target_name allowed_portal pattern\" >mgmt\n\
         \x20      echo \"add_attribute <IncomingUser|OutgoingUser> name secret\" >mgmt\n\
         \x20      echo \"del_attribute <IncomingUser|OutgoingUser> name\" >mgmt\n\
         \x20      echo \"add_attribute portal address[:port]\" >mgmt\n\
         \x20      echo \"del_attribute portal address[:port]\" >mgmt\n"
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
                let added = crate::scst_core::cstring(name)
                    .and_then(|n| self.state.config.lock().add_target(&n));
                if let Err(e) = added {
                    let _ = scst.del_target(registry, DRIVER, name);
                    return Err(e.into());
                }
                Ok(())
            }
            "del_target" => {
                let name = line.name("target name")?;
                line.end()?;
                scst.del_target(registry, DRIVER, name)?;
                self.state.config.lock().del_target(name.as_bytes());
                Ok(())
            }
            "add_target_attribute" => self.target_attribute(line, true),
            "del_target_attribute" => self.target_attribute(line, false),
            "add_attribute" => self.driver_attribute(line, true),
            "del_attribute" => self.driver_attribute(line, false),
            verb => Err(MgmtError::UnknownCommand(verb).into()),
        }
    }

    fn attributes(&self) -> &'static [&'static CStr] {
        ATTRS
    }

    fn attribute_is_private(&self, name: &CStr) -> bool {
        user_file(name).is_some()
    }

    fn show_attribute(&self, index: usize, out: &mut SysfsBuf) {
        if ATTRS.get(index).is_some_and(|n| n.to_str() == Ok(PORTAL)) {
            for p in self.state.config.lock().portals.iter() {
                let _ = writeln!(out, "{}", p);
            }
            return;
        }
        match ATTRS.get(index).and_then(|n| user_file(n)) {
            Some(kind) => self.state.config.lock().discovery_chap.show(kind, out),
            None => {
                let _ = writeln!(
                    out,
                    "{}",
                    u8::from(self.state.enabled.load(Ordering::Relaxed))
                );
            }
        }
    }

    fn store_attribute(&self, _scst: &Arc<Scst>, index: usize, value: &str) -> Result {
        if index != 0 {
            // CHAP users and portals change through `mgmt`.
            return Err(EACCES);
        }
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

    fn target_attributes(&self) -> &'static [&'static CStr] {
        TARGET_ATTRS
    }

    fn show_target_attribute(&self, target: &CStr, index: usize, out: &mut SysfsBuf) {
        let config = self.state.config.lock();
        let Some(t) = config.target(target.as_bytes()) else {
            return;
        };
        match (
            Param::ALL.get(index),
            TARGET_ATTRS.get(index).and_then(|n| user_file(n)),
        ) {
            (Some(&p), _) => {
                let _ = t.params.show(p, out);
                let _ = out.write_str("\n");
                key_mark(out, !t.params.is_default(p));
            }
            (None, Some(kind)) => t.chap.show(kind, out),
            (None, None) => {
                for p in t.allowed_portals.iter() {
                    let _ = writeln!(out, "{}", core::str::from_utf8(p).unwrap_or("?"));
                }
            }
        }
    }

    fn store_target_attribute<'a>(
        &self,
        target: &CStr,
        index: usize,
        value: &'a str,
    ) -> MgmtOutcome<'a> {
        let Some(&param) = Param::ALL.get(index) else {
            return Err(MgmtError::Refused(
                "CHAP users and allowed portals change through add_target_attribute and del_target_attribute",
            )
            .into());
        };
        let mut config = self.state.config.lock();
        let t = config
            .target_mut(target.as_bytes())
            .ok_or(MgmtError::Refused("the target is being removed"))?;
        t.params.set(param, value).map_err(|e| match e {
            params::ParamError::BadValue(expected) => MgmtError::BadValue {
                key: param.name(),
                value,
                expected,
            },
            params::ParamError::FirstBurstAboveMaxBurst => {
                MgmtError::Refused("FirstBurstLength may not exceed MaxBurstLength")
            }
        })?;
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
    let wq = OwnedQueue::wide(c_str!("scst_iscsi"))?;
    let config = Config::new()?;
    let core = scst.clone();
    let state = Arc::pin_init(
        pin_init!(DriverState {
            scst: core,
            inner <- new_mutex!(Inner {
                wq: Some(wq),
                portals: KVec::new(),
                conns: KVec::new(),
            }),
            conn_gone <- new_condvar!(),
            config <- new_mutex!(config),
            enabled: AtomicBool::new(false),
            next_tsih: AtomicU16::new(1),
            refusing: AtomicUsize::new(0),
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
