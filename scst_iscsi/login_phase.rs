// SPDX-License-Identifier: GPL-2.0

//! The login phase of a connection in the kernel: reads Login Requests,
//! lets the negotiation (`login.rs`) answer them, looks targets up in the
//! core and opens the session when the login completes.

use super::chap::{ChapAlgorithm, ChapCrypto, CryptoError};
use super::config::Chap;
use super::conn::{Conn, Identity};
use super::login::{
    ChapCredentials, Login, LoginRequest, LoginTargets, Negotiated, Outcome, SessionType, Status,
    TargetLookup, TargetSettings, LOGIN_DATA_MAX,
};
use super::params::TargetParams;
use super::pdu::{padded, Bhs, InitiatorOpcode, LoginResponse, BHS_LEN};
use super::text::{SendTargetsWriter, TargetCatalog};
use super::{DriverState, IscsiSession, SessionInfo, DRIVER};
use crate::kernel_ext::crypto;
use crate::kernel_ext::net::{pr_peer, TcpStream};
use crate::scst_core::{pr::TransportId, session::Session, target::SessionHandle, Scst};
use core::cell::OnceCell;
use core::sync::atomic::Ordering;
use kernel::{alloc::flags::GFP_KERNEL, c_str, prelude::*, sync::Arc};

/// Portal group tag of every portal (one portal group).
pub(crate) const PORTAL_GROUP_TAG: u16 = 1;

/// How long a connection in the login phase may send nothing before it
/// is closed (LIO allows 15 s for a whole login): a peer that connects
/// and stays silent holds a connection slot and a worker only that long.
const LOGIN_IDLE_MS: u32 = 15_000;

/// How long a connection the driver refuses may take to send its first
/// Login Request, to be answered rather than just closed.
const REFUSE_WAIT_MS: u32 = 2_000;

/// Answers the first Login Request of a connection the driver cannot serve
/// (too many open) with "out of resources" (0x0302), so that the initiator
/// learns why and retries later, as RFC 7143 has a target refuse; the
/// caller closes the connection. A peer that sends no Login Request
/// within `REFUSE_WAIT_MS` is just closed.
pub(crate) fn refuse(stream: &TcpStream) {
    stream.set_stall_limit(REFUSE_WAIT_MS);
    let mut hdr = [0u8; BHS_LEN];
    if stream.read_idle(&mut hdr, REFUSE_WAIT_MS).is_err() {
        return;
    }
    match Bhs::parse(&hdr, LOGIN_DATA_MAX as u32) {
        Ok(bhs) if bhs.opcode == InitiatorOpcode::LoginRequest => {}
        _ => return,
    }
    let req = LoginRequest::parse(&hdr);
    let status = Status::OUT_OF_RESOURCES;
    let mut out = [0u8; BHS_LEN];
    LoginResponse {
        transit: false,
        cont: false,
        csg: req.csg,
        nsg: 0,
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih: 0,
        itt: req.itt,
        stat_sn: 0,
        exp_cmd_sn: req.cmd_sn,
        max_cmd_sn: req.cmd_sn,
        status_class: status.class,
        status_detail: status.detail,
        data_segment_len: 0,
    }
    .encode(&mut out);
    let _ = stream.write_all(&[&out], false);
}

/// Text storage of a login (request and response halves).
const LOGIN_STORAGE: usize = 2 * 65536;

/// What a completed login leaves for the full feature phase.
pub(crate) struct LoggedIn {
    /// `None` for a discovery session.
    pub(crate) session: Option<Arc<Session>>,
    pub(crate) negotiated: Negotiated,
    /// The target's parameters at login (for discovery: the defaults).
    pub(crate) params: TargetParams,
    pub(crate) exp_cmd_sn: u32,
    pub(crate) stat_sn: u32,
}

/// The kernel crypto API for CHAP.
struct KernelCrypto;

impl ChapCrypto for KernelCrypto {
    fn digest(
        &mut self,
        alg: ChapAlgorithm,
        parts: &[&[u8]],
        out: &mut [u8],
    ) -> core::result::Result<(), CryptoError> {
        let name = match alg {
            ChapAlgorithm::Md5 => c_str!("md5"),
            ChapAlgorithm::Sha1 => c_str!("sha1"),
            ChapAlgorithm::Sha256 => c_str!("sha256"),
        };
        match crypto::digest(name, parts, out) {
            Ok(n) if n == out.len() => Ok(()),
            _ => Err(CryptoError),
        }
    }

    fn random(&mut self, out: &mut [u8]) {
        crypto::random_bytes(out);
    }
}

/// Targets as the core and the driver's configuration have them.
struct CoreTargets<'a> {
    drv: &'a DriverState,
    /// The address the initiator reached ("a.b.c.d", "[v6]").
    local_ip: &'a [u8],
    /// The parameters of the target the login names (set by `lookup`).
    params: OnceCell<TargetParams>,
    /// The CHAP users of that target, or of discovery.
    chap: OnceCell<Arc<Chap>>,
}

impl CoreTargets<'_> {
    fn settings(&self, params: TargetParams, chap: Arc<Chap>) -> TargetLookup {
        let required = chap.required();
        let _ = self.params.set(params);
        let _ = self.chap.set(chap);
        TargetLookup::Found(TargetSettings {
            chap_required: required,
            ..params.settings
        })
    }
}

impl LoginTargets for CoreTargets<'_> {
    fn lookup(&self, target: &[u8], _initiator: &[u8]) -> TargetLookup {
        let state = self
            .drv
            .scst
            .with_registry(|r| Scst::target_state(r, DRIVER, target));
        let found = self
            .drv
            .config
            .lock()
            .target(target)
            .filter(|t| t.reachable_at(self.local_ip))
            .map(|t| (t.params, t.chap.clone()));
        match (state, found) {
            // A target not allowed on this portal is not there (SCST's
            // allowed_portal).
            (None, _) | (_, None) => TargetLookup::NotFound,
            (Some(s), _) if !s.enabled.load(Ordering::Relaxed) => TargetLookup::Disabled,
            // Access control is by LUN mapping (ini_groups), as in SCST: an
            // initiator outside every group sees the default LUNs.
            (Some(_), Some((params, chap))) => self.settings(params, chap),
        }
    }

    fn discovery(&self, _initiator: &[u8]) -> TargetLookup {
        let chap = self.drv.config.lock().discovery_chap.clone();
        self.settings(TargetParams::default(), chap)
    }

    fn chap_secret(&self, _target: Option<&[u8]>, user: &[u8]) -> Option<&[u8]> {
        self.chap.get()?.secret(user)
    }

    fn chap_target_credentials(&self, _target: Option<&[u8]>) -> Option<ChapCredentials<'_>> {
        self.chap.get()?.target_credentials()
    }
}

/// SendTargets: the enabled targets allowed on the portal the initiator
/// reached, at that portal's address.
pub(crate) struct Catalog<'a> {
    pub(crate) drv: &'a DriverState,
    /// The address the initiator reached ("a.b.c.d", "[v6]").
    pub(crate) local_ip: &'a [u8],
    /// The same with its port ("a.b.c.d:port", "[v6]:port").
    pub(crate) local_addr: &'a [u8],
}

impl TargetCatalog for Catalog<'_> {
    fn send_targets(&self, _initiator: &[u8], w: &mut SendTargetsWriter<'_, '_>) {
        let addr = core::str::from_utf8(self.local_addr).unwrap_or("");
        self.drv.scst.with_registry(|r| {
            let config = self.drv.config.lock();
            Scst::for_each_target(r, DRIVER, |name, state| {
                let reachable = config
                    .target(name.as_bytes())
                    .is_some_and(|t| t.reachable_at(self.local_ip));
                if reachable && state.enabled.load(Ordering::Relaxed) {
                    w.target(name.as_bytes());
                    w.address_fmt(format_args!("{},{}", addr, PORTAL_GROUP_TAG));
                }
            })
        });
    }
}

/// Runs the login phase; on success the session exists in the core. Not
/// inlined into the connection's work: its large frame is gone before the
/// full feature phase, whose commands run deep below it.
#[inline(never)]
pub(crate) fn run(drv: &Arc<DriverState>, conn: &Arc<Conn>) -> Result<LoggedIn> {
    let mut storage = KVec::new();
    storage.extend_with(LOGIN_STORAGE, 0u8, GFP_KERNEL)?;
    let mut login = Login::new(storage, PORTAL_GROUP_TAG);
    let mut data = KVec::new();
    data.extend_with(padded(LOGIN_DATA_MAX), 0u8, GFP_KERNEL)?;
    let mut out = KVec::new();
    out.extend_with(LOGIN_DATA_MAX, 0u8, GFP_KERNEL)?;
    let mut local_ip = [0u8; 64];
    let local_ip_len = conn.stream.local_ip(&mut local_ip)?;
    let targets = CoreTargets {
        drv,
        local_ip: local_ip.get(..local_ip_len).unwrap_or(&[]),
        params: OnceCell::new(),
        chap: OnceCell::new(),
    };
    let mut crypto = KernelCrypto;
    // Nor may it stop in the middle of a PDU for longer.
    conn.stream.set_stall_limit(LOGIN_IDLE_MS);
    loop {
        let mut hdr = [0u8; BHS_LEN];
        conn.stream.read_idle(&mut hdr, LOGIN_IDLE_MS)?;
        let bhs = Bhs::parse(&hdr, LOGIN_DATA_MAX as u32).map_err(|_| EINVAL)?;
        if bhs.opcode != InitiatorOpcode::LoginRequest || bhs.ahs_len != 0 {
            // Only Login Requests before the full feature phase.
            return Err(EINVAL);
        }
        let len = bhs.data_segment_len as usize;
        let buf = data.get_mut(..padded(len)).ok_or(EINVAL)?;
        conn.stream.read_idle(buf, LOGIN_IDLE_MS)?;
        let req = LoginRequest::parse(&hdr);
        let step = login.step(
            &req,
            data.get(..len).unwrap_or(&[]),
            &targets,
            &mut crypto,
            &mut out,
        );
        // Login responses carry the StatSN the initiator expects; the full
        // feature phase continues after the last one.
        let stat_sn = req.exp_stat_sn;
        let params = targets.params.get().copied().unwrap_or_default();
        let queued_commands = params.queued_commands.max(1);
        let exp_cmd_sn = req.cmd_sn;
        let mut status = step.status;
        let mut tsih = req.tsih;
        if tsih != 0 && status.class == 0 {
            // Adding or reinstating a connection of a session: with one
            // connection per session and ErrorRecoveryLevel 0 a session
            // never outlives its connection, so there is none to join (an
            // old one still open is closed; its tasks end).
            drv.close_session_tsih(tsih);
            pr_peer!(
                pr_info,
                "iscsi: login to session TSIH {}: no such session\n",
                tsih
            );
            status = Status {
                class: 2,
                detail: 0x0a,
            };
        }
        let mut session = None;
        let mut negotiated = None;
        if step.outcome == Outcome::FullFeature {
            let n = *login.negotiated().ok_or(EINVAL)?;
            if tsih == 0 {
                tsih = drv.new_tsih();
            }
            let n = Negotiated { tsih, ..n };
            if n.session_type == SessionType::Normal {
                match open_session(drv, conn, &n, &params) {
                    Ok(s) => session = Some(s),
                    Err(e) => {
                        if e != EBUSY {
                            pr_peer!(pr_err, "iscsi: cannot open a session: {:?}\n", e);
                        }
                        status = Status::OUT_OF_RESOURCES;
                    }
                }
            }
            negotiated = Some(n);
        }
        let failed = status.class != 0;
        let data_len = if failed { 0 } else { step.data_len };
        let mut hdr_out = [0u8; BHS_LEN];
        LoginResponse {
            transit: step.transit && !failed,
            cont: step.cont && !failed,
            csg: step.csg,
            nsg: step.nsg,
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: if failed { 0 } else { tsih },
            itt: req.itt,
            stat_sn,
            exp_cmd_sn,
            max_cmd_sn: exp_cmd_sn.wrapping_add(queued_commands - 1),
            status_class: status.class,
            status_detail: status.detail,
            data_segment_len: data_len as u32,
        }
        .encode(&mut hdr_out);
        conn.send(&mut hdr_out, out.get(..data_len).unwrap_or(&[]), false)?;
        if failed || step.outcome == Outcome::Failed {
            if let Some(s) = session {
                drv.scst
                    .with_registry(|r| Scst::remove_session(r, DRIVER, &s));
            }
            pr_peer!(
                pr_info,
                "iscsi: login refused with status {:#04x}{:02x}\n",
                status.class,
                status.detail
            );
            return Err(EACCES);
        }
        if let Some(n) = negotiated {
            return Ok(LoggedIn {
                session,
                negotiated: n,
                params,
                exp_cmd_sn,
                stat_sn: stat_sn.wrapping_add(1),
            });
        }
    }
}

/// Opens the core session of a completed normal login.
fn open_session(
    drv: &Arc<DriverState>,
    conn: &Arc<Conn>,
    n: &Negotiated,
    params: &TargetParams,
) -> Result<Arc<Session>> {
    let target = core::str::from_utf8(n.target_name.as_bytes()).map_err(|_| EINVAL)?;
    let initiator = core::str::from_utf8(n.initiator_name.as_bytes()).map_err(|_| EINVAL)?;
    // Session reinstatement (RFC 7143 6.3.5): a new session with the ISID
    // of an open one replaces it; its connection closes and its tasks end.
    drv.close_sessions_of(
        n.target_name.as_bytes(),
        n.initiator_name.as_bytes(),
        n.isid,
    );
    let c = conn.clone();
    drv.scst.clone().with_registry(|r| {
        let open = Scst::session_count(r, DRIVER, target.as_bytes());
        if params.max_sessions != 0 && open >= params.max_sessions as usize {
            pr_peer!(
                pr_info,
                "iscsi: {} refused: target {} has MaxSessions {} open\n",
                initiator,
                target,
                params.max_sessions
            );
            return Err(EBUSY);
        }
        // The initiator port is the name and the ISID (RFC 7143 10.12.5).
        let port = TransportId::iscsi(initiator.as_bytes(), Some(n.isid))
            .unwrap_or_else(|| TransportId::named(initiator.as_bytes()));
        drv.scst
            .add_network_session(r, DRIVER, target, initiator, port, move |_| {
                let info = Arc::new(SessionInfo::new(&c, *n), GFP_KERNEL)?;
                c.set_identity(Identity {
                    tsih: n.tsih,
                    target: n.target_name,
                    initiator: n.initiator_name,
                    isid: n.isid,
                });
                let handle: Arc<dyn SessionHandle> = Arc::new(
                    IscsiSession {
                        drv: drv.clone(),
                        conn: c,
                        info,
                    },
                    GFP_KERNEL,
                )?;
                Ok(handle)
            })
    })
}
