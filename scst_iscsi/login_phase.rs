// SPDX-License-Identifier: GPL-2.0

//! The login phase of a connection in the kernel: reads Login Requests,
//! lets the negotiation (`login.rs`) answer them, looks targets up in the
//! core and opens the session when the login completes.

use super::chap::{ChapAlgorithm, ChapCrypto, CryptoError};
use super::conn::Conn;
use super::login::{
    ChapCredentials, Login, LoginRequest, LoginTargets, Negotiated, Outcome, SessionType, Status,
    TargetLookup, TargetSettings, LOGIN_DATA_MAX,
};
use super::pdu::{padded, Bhs, InitiatorOpcode, LoginResponse, BHS_LEN};
use super::text::{SendTargetsWriter, TargetCatalog};
use super::{DriverState, IscsiSession, DRIVER, QUEUED_COMMANDS};
use crate::kernel_ext::crypto;
use crate::scst_core::{session::Session, target::SessionHandle, Scst};
use core::sync::atomic::Ordering;
use kernel::{alloc::flags::GFP_KERNEL, c_str, prelude::*, sync::Arc};

/// Portal group tag of every portal (one portal group).
pub(crate) const PORTAL_GROUP_TAG: u16 = 1;

/// Text storage of a login (request and response halves).
const LOGIN_STORAGE: usize = 2 * 65536;

/// What a completed login leaves for the full feature phase.
pub(crate) struct LoggedIn {
    /// `None` for a discovery session.
    pub(crate) session: Option<Arc<Session>>,
    pub(crate) negotiated: Negotiated,
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

/// What every target offers and limits (per-target attributes follow):
/// SCST's defaults but for the segment sizes.
fn target_settings() -> TargetSettings {
    TargetSettings {
        max_recv_data_segment_length: 256 << 10,
        max_xmit_data_segment_length: 256 << 10,
        max_burst_length: 1 << 20,
        first_burst_length: 65536,
        initial_r2t: false,
        immediate_data: true,
        // One R2T at a time is what the receive loop issues.
        max_outstanding_r2t: 1,
        ..TargetSettings::default()
    }
}

/// Targets as the core has them.
struct CoreTargets<'a> {
    drv: &'a DriverState,
}

impl LoginTargets for CoreTargets<'_> {
    fn lookup(&self, target: &[u8], _initiator: &[u8]) -> TargetLookup {
        let state = self
            .drv
            .scst
            .with_registry(|r| Scst::target_state(r, DRIVER, target));
        match state {
            None => TargetLookup::NotFound,
            Some(s) if !s.enabled.load(Ordering::Relaxed) => TargetLookup::Disabled,
            // Access control is by LUN mapping (ini_groups), as in SCST: an
            // initiator outside every group sees the default LUNs.
            Some(_) => TargetLookup::Found(target_settings()),
        }
    }

    fn discovery(&self, _initiator: &[u8]) -> TargetLookup {
        TargetLookup::Found(target_settings())
    }

    fn chap_secret(&self, _target: Option<&[u8]>, _user: &[u8]) -> Option<&[u8]> {
        None
    }

    fn chap_target_credentials(&self, _target: Option<&[u8]>) -> Option<ChapCredentials<'_>> {
        None
    }
}

/// SendTargets: the enabled targets, at the address the initiator reached.
pub(crate) struct Catalog<'a> {
    pub(crate) drv: &'a DriverState,
    pub(crate) local_ip: &'a [u8],
}

impl TargetCatalog for Catalog<'_> {
    fn send_targets(&self, _initiator: &[u8], w: &mut SendTargetsWriter<'_, '_>) {
        let ip = core::str::from_utf8(self.local_ip).unwrap_or("");
        self.drv.scst.with_registry(|r| {
            Scst::for_each_target(r, DRIVER, |name, state| {
                if state.enabled.load(Ordering::Relaxed) {
                    w.target(name.as_bytes());
                    w.address_fmt(format_args!(
                        "{}:{},{}",
                        ip,
                        super::ISCSI_PORT,
                        PORTAL_GROUP_TAG
                    ));
                }
            })
        });
    }
}

/// Runs the login phase; on success the session exists in the core.
pub(crate) fn run(drv: &Arc<DriverState>, conn: &Arc<Conn>) -> Result<LoggedIn> {
    let mut storage = KVec::new();
    storage.extend_with(LOGIN_STORAGE, 0u8, GFP_KERNEL)?;
    let mut login = Login::new(storage, PORTAL_GROUP_TAG);
    let mut data = KVec::new();
    data.extend_with(padded(LOGIN_DATA_MAX), 0u8, GFP_KERNEL)?;
    let mut out = KVec::new();
    out.extend_with(LOGIN_DATA_MAX, 0u8, GFP_KERNEL)?;
    let targets = CoreTargets { drv };
    let mut crypto = KernelCrypto;
    loop {
        let mut hdr = [0u8; BHS_LEN];
        conn.stream.read_exact(&mut hdr)?;
        let bhs = Bhs::parse(&hdr, LOGIN_DATA_MAX as u32).map_err(|_| EINVAL)?;
        if bhs.opcode != InitiatorOpcode::LoginRequest || bhs.ahs_len != 0 {
            // Only Login Requests before the full feature phase.
            return Err(EINVAL);
        }
        let len = bhs.data_segment_len as usize;
        let buf = data.get_mut(..padded(len)).ok_or(EINVAL)?;
        conn.stream.read_exact(buf)?;
        let req = LoginRequest::from_bhs(&hdr);
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
        let exp_cmd_sn = req.cmd_sn;
        let mut status = step.status;
        let mut tsih = req.tsih;
        let mut session = None;
        let mut negotiated = None;
        if step.outcome == Outcome::FullFeature {
            let n = *login.negotiated().ok_or(EINVAL)?;
            if tsih == 0 {
                tsih = drv.new_tsih();
            }
            if n.session_type == SessionType::Normal {
                match open_session(drv, conn, &n) {
                    Ok(s) => session = Some(s),
                    Err(e) => {
                        pr_err!("iscsi: cannot open a session: {:?}\n", e);
                        // Target error: out of resources.
                        status = Status {
                            class: 3,
                            detail: 2,
                        };
                    }
                }
            }
            negotiated = Some(Negotiated { tsih, ..n });
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
            max_cmd_sn: exp_cmd_sn.wrapping_add(QUEUED_COMMANDS - 1),
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
            pr_info!(
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
                exp_cmd_sn,
                stat_sn: stat_sn.wrapping_add(1),
            });
        }
    }
}

/// Opens the core session of a completed normal login.
fn open_session(drv: &Arc<DriverState>, conn: &Arc<Conn>, n: &Negotiated) -> Result<Arc<Session>> {
    let target = core::str::from_utf8(n.target_name.as_bytes()).map_err(|_| EINVAL)?;
    let initiator = core::str::from_utf8(n.initiator_name.as_bytes()).map_err(|_| EINVAL)?;
    let c = conn.clone();
    drv.scst.clone().with_registry(|r| {
        drv.scst
            .add_network_session(r, DRIVER, target, initiator, move |_| {
                let handle: Arc<dyn SessionHandle> =
                    Arc::new(IscsiSession { conn: c }, GFP_KERNEL)?;
                Ok(handle)
            })
    })
}
