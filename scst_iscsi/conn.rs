// SPDX-License-Identifier: GPL-2.0

//! One iSCSI connection: its receive loop (login phase, then the full
//! feature phase) and everything it sends.
//!
//! The receive loop runs on the driver's workqueue and executes SCSI
//! commands itself as soon as their data is in (no context switch per
//! command): a command's data lands in its own pages straight from the
//! socket, and Data-In leaves from those pages by reference. A write whose
//! data is not all in waits in the connection's pending list while the loop
//! goes on receiving (its R2Ts are answered by Data-Out PDUs of this very
//! connection). MaxConnections is 1 and ErrorRecoveryLevel 0: any protocol
//! error or lost connection ends the session, completing or dropping its
//! commands.

use super::login::{Negotiated, TextNegotiation, TextOutcome, TextRequest};
use super::login_phase::Catalog;
use super::params::TargetParams;
use super::pdu::{self, *};
use super::text::IscsiName;
use super::DriverState;
use crate::kernel_ext::crypto;
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::{PageSend, TcpStream};
use crate::kernel_ext::sg::SgList;
use crate::scst_core::buffer::{CmdBuffer, LendRefused, LentId};
use crate::scst_core::cmd::TgtCmd;
use crate::scst_core::device::DataDirection;
use crate::scst_core::sense::{self, SenseFormat};
use crate::scst_core::session::{status, Command, Response, Session};
use crate::scst_core::task_set::TaskAttr;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use kernel::{
    alloc::flags::GFP_KERNEL,
    new_mutex,
    prelude::*,
    sync::Arc,
    sync::Mutex,
    time::{ktime_ms_delta, Ktime},
};

/// Text negotiation buffers (request and response halves).
const TEXT_STORAGE: usize = 2 * 65536;

/// Largest data buffer a single command may ask for.
const MAX_COMMAND_DATA: u32 = 32 << 20;

/// The sending half of a connection, shared with whoever sends on it.
#[pin_data]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// Serialises PDUs on the wire and numbers the responses.
    #[pin]
    tx: Mutex<TxState>,
    /// Who the connection's session is for (set once it has one).
    #[pin]
    identity: Mutex<Option<Identity>>,
    pub(crate) closing: AtomicBool,
    /// ExpCmdSN as the receive loop last advanced it, and the window size:
    /// for PDUs sent from elsewhere (Async Messages).
    exp_cmd_sn: AtomicU32,
    queued_commands: AtomicU32,
    /// SCSI commands that took a place in the window (not immediate) and
    /// have not finished: each keeps MaxCmdSN one lower.
    outstanding: AtomicU32,
    /// The MaxCmdSN last computed: it never goes back (RFC 7143 4.2.2.1).
    max_cmd_sn: AtomicU32,
    /// MaxXmitDataSegmentLength, for Data-In sent by the core's workers.
    max_xmit_data_segment_length: AtomicU32,
}

struct TxState {
    stat_sn: u32,
    header_digest: bool,
    data_digest: bool,
    /// StatSN and digests are those of the full feature phase.
    full_feature: bool,
}

/// The I_T nexus of a normal session, for reinstatement by ISID.
#[derive(Clone, Copy)]
pub(crate) struct Identity {
    pub(crate) tsih: u16,
    pub(crate) target: IscsiName,
    pub(crate) initiator: IscsiName,
    pub(crate) isid: [u8; 6],
}

/// The data segment that carries sense data in a SCSI Response or an
/// Async Message: SenseLength, then the sense bytes (RFC 7143 11.4.7);
/// empty when there is no sense.
struct SenseSegment {
    bytes: [u8; 2 + sense::MAX_SENSE_LEN],
    len: usize,
}

impl SenseSegment {
    fn new(sense: &[u8]) -> Self {
        let mut bytes = [0u8; 2 + sense::MAX_SENSE_LEN];
        let n = sense.len().min(sense::MAX_SENSE_LEN);
        let len = if n == 0 { 0 } else { 2 + n };
        let (head, body) = bytes.split_at_mut(2);
        head.copy_from_slice(&(n as u16).to_be_bytes());
        if let (Some(to), Some(from)) = (body.get_mut(..n), sense.get(..n)) {
            to.copy_from_slice(from);
        }
        Self { bytes, len }
    }

    fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                stream,
                tx <- new_mutex!(TxState {
                    stat_sn: 0,
                    header_digest: false,
                    data_digest: false,
                    full_feature: false,
                }),
                identity <- new_mutex!(None),
                closing: AtomicBool::new(false),
                exp_cmd_sn: AtomicU32::new(0),
                queued_commands: AtomicU32::new(1),
                outstanding: AtomicU32::new(0),
                max_cmd_sn: AtomicU32::new(0),
                max_xmit_data_segment_length: AtomicU32::new(8192),
            }),
            GFP_KERNEL,
        )
    }

    /// Records who the connection's session is for.
    pub(crate) fn set_identity(&self, identity: Identity) {
        *self.identity.lock() = Some(identity);
    }

    /// Whether the connection carries the session with `tsih`.
    pub(crate) fn has_tsih(&self, tsih: u16) -> bool {
        self.identity
            .lock()
            .as_ref()
            .is_some_and(|i| i.tsih == tsih)
    }

    /// Whether the connection carries the session of `initiator` with
    /// `isid` on `target`.
    pub(crate) fn is_session_of(&self, target: &[u8], initiator: &[u8], isid: [u8; 6]) -> bool {
        self.identity.lock().as_ref().is_some_and(|i| {
            i.isid == isid
                && i.target.as_bytes() == target
                && i.initiator.as_bytes().eq_ignore_ascii_case(initiator)
        })
    }

    /// Sends a SCSI asynchronous event (Async Message, AsyncEvent 0) for
    /// `lun` carrying `sense`; nothing before the full feature phase or
    /// once the connection is closing (the unit attention still waits).
    pub(crate) fn send_scsi_event(&self, lun: [u8; 8], sense: &[u8]) -> Result {
        if self.closing.load(Ordering::Relaxed) {
            return Ok(());
        }
        let segment = SenseSegment::new(sense);
        let (exp, max) = self.sn_window();
        let mut tx = self.tx.lock();
        if !tx.full_feature {
            return Ok(());
        }
        let mut bhs = [0u8; BHS_LEN];
        AsyncMessage {
            lun,
            stat_sn: tx.stat_sn,
            exp_cmd_sn: exp,
            max_cmd_sn: max,
            async_event: ASYNC_EVENT_SCSI,
            async_vcode: 0,
            parameter1: 0,
            parameter2: 0,
            parameter3: 0,
            data_segment_len: segment.bytes().len() as u32,
        }
        .encode(&mut bhs);
        tx.stat_sn = tx.stat_sn.wrapping_add(1);
        self.send_locked(&tx, &mut bhs, segment.bytes(), false)
    }

    /// ExpCmdSN and MaxCmdSN for a PDU sent now: the window is
    /// QueuedCommands wide, less the commands still outstanding, and its
    /// end never moves back.
    pub(crate) fn sn_window(&self) -> (u32, u32) {
        let exp = self.exp_cmd_sn.load(Ordering::Relaxed);
        let queued = self.queued_commands.load(Ordering::Relaxed).max(1);
        let outstanding = self.outstanding.load(Ordering::Relaxed).min(queued);
        let mut max = exp.wrapping_add(queued - outstanding).wrapping_sub(1);
        let last = self.max_cmd_sn.load(Ordering::Relaxed);
        if sn_lt(max, last) {
            max = last;
        } else {
            self.max_cmd_sn.store(max, Ordering::Relaxed);
        }
        (exp, max)
    }

    /// Closes the connection; the receive loop ends and cleans up.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.stream.shutdown();
    }
}

/// The command window as the receive loop advances it (MaxCmdSN comes
/// from [`Conn::sn_window`]).
struct Window {
    exp_cmd_sn: u32,
}

/// A write command waiting for its Data-Out.
struct PendingWrite {
    /// When it arrived or last received data (RspTimeout).
    since: Ktime,
    /// DataSN the next Data-Out of the current sequence carries.
    data_sn: u32,
    pdu: ScsiCommandPdu,
    command: Command,
    buf: CmdBuffer,
    slot: WindowSlot,
    /// Bytes received so far (the initiator sends each offset once).
    received: u32,
    /// Unsolicited Data-Out still to come (the command's F bit was 0).
    unsolicited: bool,
    /// Target Transfer Tag of the outstanding R2T, if any.
    ttt: Option<u32>,
    /// End of the range requested by the outstanding R2T.
    r2t_end: u32,
    /// Next R2TSN.
    r2t_sn: u32,
    /// Offset the next R2T asks from.
    next_offset: u32,
}

/// The receive loop's state in full feature phase.
pub(crate) struct Ffp<'a> {
    pub(crate) conn: &'a Arc<Conn>,
    pub(crate) drv: &'a Arc<DriverState>,
    /// `None` in a discovery session.
    pub(crate) session: Option<Arc<Session>>,
    /// The session's negotiated parameters.
    pub(crate) params: Negotiated,
    /// Text Request negotiation (SendTargets), with its own buffers.
    text: TextNegotiation<KVec<u8>>,
    window: Window,
    pending: KVec<PendingWrite>,
    next_ttt: u32,
    /// Data segments of non-SCSI PDUs.
    scratch: KVec<u8>,
    /// NopInInterval, NopInTimeout and RspTimeout, in milliseconds.
    nop_in_interval_ms: u32,
    nop_in_timeout_ms: u32,
    rsp_timeout_ms: u32,
    /// When the outstanding NOP-In ping went out.
    ping_sent: Option<Ktime>,
    /// The stream is corked: requests were waiting when the last one was
    /// read, so their responses go out together.
    corked: bool,
}

/// Why the receive loop ends.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The initiator logged out (the response is sent).
    Logout,
    /// The connection failed or a protocol error closed it.
    Failed(Error),
    /// The initiator went silent (NopInTimeout, RspTimeout).
    TimedOut,
}

impl From<Error> for Ending {
    fn from(e: Error) -> Self {
        Ending::Failed(e)
    }
}

impl From<kernel::alloc::AllocError> for Ending {
    fn from(_: kernel::alloc::AllocError) -> Self {
        Ending::Failed(ENOMEM)
    }
}

/// Pads a data segment to 4 bytes.
const PAD: [u8; 3] = [0; 3];

/// The iSCSI digest (wire order) of `data` followed by `pad`.
fn digest_of(data: &[u8], pad: &[u8]) -> [u8; DIGEST_LEN] {
    (!crypto::crc32c(crypto::crc32c(!0, data), pad)).to_le_bytes()
}

/// The iSCSI digest of `len` bytes of `sg` from `skip`, then `pad`.
fn digest_of_sg(sg: &SgList<'_>, skip: usize, len: usize, pad: &[u8]) -> Result<[u8; DIGEST_LEN]> {
    let crc = crypto::crc32c_sg(!0, sg, skip, len)?;
    Ok((!crypto::crc32c(crc, pad)).to_le_bytes())
}

/// Reads a data digest and compares it with `crc` (the segment's CRC32C
/// before the final inversion).
fn digest_matches(conn: &Conn, crc: u32) -> Result<bool> {
    let mut got = [0u8; DIGEST_LEN];
    conn.stream.read_exact(&mut got)?;
    Ok(got == (!crc).to_le_bytes())
}

/// Receives `len` bytes of a data segment straight into `sg` at `offset`,
/// then its padding and, with `data_digest`, its digest; `false` when the
/// digest does not match.
fn receive_segment(
    conn: &Conn,
    data_digest: bool,
    sg: &mut SgList<'_>,
    offset: u32,
    len: u32,
) -> Result<bool> {
    let (offset, len) = (offset as usize, len as usize);
    conn.stream.read_into(sg, offset, len)?;
    let mut pad = [0u8; 3];
    let pad = pad.get_mut(..padded(len) - len).unwrap_or(&mut []);
    conn.stream.read_exact(pad)?;
    if !data_digest || len == 0 {
        return Ok(true);
    }
    let crc = crypto::crc32c(crypto::crc32c_sg(!0, sg, offset, len)?, pad);
    digest_matches(conn, crc)
}

impl Conn {
    /// Sends one PDU with a data segment from `data`, digests as
    /// negotiated, under the send lock the caller holds.
    fn send_locked(
        &self,
        tx: &TxState,
        bhs: &mut [u8; BHS_LEN],
        data: &[u8],
        more: bool,
    ) -> Result {
        let _ = set_data_segment_len(bhs, data.len() as u32);
        let pad = PAD.get(..padded(data.len()) - data.len()).unwrap_or(&[]);
        // Each digest is a CRC pass: only when negotiated.
        let header_digest = tx.header_digest.then(|| digest_of(&bhs[..], &[]));
        let data_digest = (tx.data_digest && !data.is_empty()).then(|| digest_of(data, pad));
        let hd = header_digest.as_ref().map_or(&[][..], |d| &d[..]);
        let dd = data_digest.as_ref().map_or(&[][..], |d| &d[..]);
        self.stream.write_all(&[&bhs[..], hd, data, pad, dd], more)
    }

    /// Sends one PDU (login phase: no digests yet).
    pub(crate) fn send(&self, bhs: &mut [u8; BHS_LEN], data: &[u8], more: bool) -> Result {
        let tx = self.tx.lock();
        self.send_locked(&tx, bhs, data, more)
    }

    /// Numbers a response (StatSN) under the send lock and sends it.
    fn send_numbered(
        &self,
        encode: impl FnOnce(u32, &mut [u8; BHS_LEN]),
        data: &[u8],
        advance: bool,
    ) -> Result {
        let mut tx = self.tx.lock();
        let mut bhs = [0u8; BHS_LEN];
        encode(tx.stat_sn, &mut bhs);
        if advance {
            tx.stat_sn = tx.stat_sn.wrapping_add(1);
        }
        self.send_locked(&tx, &mut bhs, data, false)
    }

    /// Enters the full feature phase: the StatSN it continues from and the
    /// digests every later PDU carries.
    pub(crate) fn start_full_feature(&self, stat_sn: u32, n: &Negotiated) {
        let mut tx = self.tx.lock();
        tx.stat_sn = stat_sn;
        tx.header_digest = n.header_digest;
        tx.data_digest = n.data_digest;
        tx.full_feature = true;
    }
}

impl<'a> Ffp<'a> {
    pub(crate) fn new(
        conn: &'a Arc<Conn>,
        drv: &'a Arc<DriverState>,
        session: Option<Arc<Session>>,
        params: Negotiated,
        target: &TargetParams,
        exp_cmd_sn: u32,
    ) -> Result<Self> {
        let mut text_storage = KVec::new();
        text_storage.extend_with(TEXT_STORAGE, 0u8, GFP_KERNEL)?;
        let text = TextNegotiation::new(text_storage, &params, params.max_xmit_data_segment_length);
        let mut scratch = KVec::new();
        scratch.extend_with(
            pdu::padded(params.max_recv_data_segment_length as usize),
            0u8,
            GFP_KERNEL,
        )?;
        let queued_commands = target.queued_commands.max(1);
        conn.exp_cmd_sn.store(exp_cmd_sn, Ordering::Relaxed);
        conn.queued_commands
            .store(queued_commands, Ordering::Relaxed);
        conn.max_cmd_sn.store(
            exp_cmd_sn.wrapping_add(queued_commands).wrapping_sub(1),
            Ordering::Relaxed,
        );
        conn.max_xmit_data_segment_length
            .store(params.max_xmit_data_segment_length, Ordering::Relaxed);
        Ok(Self {
            conn,
            drv,
            session,
            params,
            text,
            window: Window { exp_cmd_sn },
            pending: KVec::new(),
            next_ttt: 1,
            scratch,
            nop_in_interval_ms: target.nop_in_interval.saturating_mul(1000),
            nop_in_timeout_ms: target.nop_in_timeout.saturating_mul(1000),
            rsp_timeout_ms: target.rsp_timeout.saturating_mul(1000),
            ping_sent: None,
            corked: false,
        })
    }

    /// Receives and handles PDUs until logout or failure.
    pub(crate) fn run(&mut self) -> Ending {
        loop {
            if let Err(e) = self.one_pdu() {
                return e;
            }
        }
    }

    /// Waits for the next PDU's header, pinging an idle initiator with
    /// NOP-In and closing the connection when a ping or a write's Data-Out
    /// is overdue.
    fn read_header(&mut self, hdr: &mut [u8; BHS_LEN]) -> core::result::Result<(), Ending> {
        let stream = &self.conn.stream;
        // Nothing waiting: send what the cork holds before blocking.
        if self.corked && !stream.rx_pending() {
            stream.set_cork(false);
            self.corked = false;
        }
        loop {
            let mut idle_ms = match self.ping_sent {
                Some(_) => self.nop_in_timeout_ms,
                None => self.nop_in_interval_ms,
            };
            if !self.pending.is_empty() && self.rsp_timeout_ms > 0 {
                idle_ms = match idle_ms {
                    0 => self.rsp_timeout_ms,
                    ms => ms.min(self.rsp_timeout_ms),
                };
            }
            match self.conn.stream.read_idle(hdr, idle_ms) {
                Ok(()) => {
                    self.ping_sent = None;
                    // More requests behind this one: batch the responses.
                    if !self.corked && self.conn.stream.rx_pending() {
                        self.conn.stream.set_cork(true);
                        self.corked = true;
                    }
                    return Ok(());
                }
                Err(e) if e == EAGAIN => self.on_idle()?,
                Err(e) => return Err(Ending::Failed(e)),
            }
        }
    }

    /// Nothing arrived for a while: ping, or give up on the connection.
    fn on_idle(&mut self) -> core::result::Result<(), Ending> {
        let now = Ktime::ktime_get();
        let overdue = |since: Ktime, ms: u32| ms > 0 && ktime_ms_delta(now, since) >= i64::from(ms);
        if self
            .pending
            .iter()
            .any(|w| overdue(w.since, self.rsp_timeout_ms))
        {
            pr_warn!("iscsi: no Data-Out within RspTimeout: closing the connection\n");
            return Err(Ending::TimedOut);
        }
        match self.ping_sent {
            Some(sent) if overdue(sent, self.nop_in_timeout_ms) => {
                pr_warn!(
                    "iscsi: no answer to NOP-In within NopInTimeout: closing the connection\n"
                );
                Err(Ending::TimedOut)
            }
            Some(_) => Ok(()),
            None if self.nop_in_interval_ms > 0 => {
                let ttt = self.new_ttt();
                let (exp, max) = self.conn.sn_window();
                // A ping: StatSN is the next one, not advanced.
                self.conn.send_numbered(
                    |stat_sn, b| {
                        NopIn {
                            lun: [0; 8],
                            itt: RESERVED_TAG,
                            ttt,
                            stat_sn,
                            exp_cmd_sn: exp,
                            max_cmd_sn: max,
                            data_segment_len: 0,
                        }
                        .encode(b)
                    },
                    &[],
                    false,
                )?;
                self.ping_sent = Some(now);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A new Target Transfer Tag (never the reserved one).
    fn new_ttt(&mut self) -> u32 {
        let ttt = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        ttt
    }

    /// Bytes of data digest after a data segment of `len` bytes.
    fn data_digest_len(&self, len: usize) -> usize {
        if self.params.data_digest && len > 0 {
            DIGEST_LEN
        } else {
            0
        }
    }

    /// Answers a data digest error: ERL 0 rejects the PDU and ends the
    /// session.
    fn data_digest_error(&self, hdr: &[u8; BHS_LEN]) -> Ending {
        pr_warn!("iscsi: data digest error: closing the connection\n");
        let _ = self.reject(RejectReason::DataDigestError, hdr);
        Ending::Failed(EIO)
    }

    /// Skips a data segment of `len` bytes with its padding and digest.
    fn skip_segment(&mut self, len: u32) -> Result {
        let len = len as usize;
        self.skip(padded(len) + self.data_digest_len(len))
    }

    fn one_pdu(&mut self) -> core::result::Result<(), Ending> {
        let mut hdr = [0u8; BHS_LEN];
        self.read_header(&mut hdr)?;
        let ahs_len = usize::from(hdr[4]) * 4;
        let mut ahs = [0u8; 255 * 4];
        let ahs = ahs.get_mut(..ahs_len).ok_or(Ending::Failed(EINVAL))?;
        self.conn.stream.read_exact(ahs)?;
        if self.params.header_digest {
            let mut got = [0u8; DIGEST_LEN];
            self.conn.stream.read_exact(&mut got)?;
            if got != digest_of(&hdr, ahs) {
                // The header cannot be trusted, not even its length: ERL 0
                // ends the connection.
                pr_warn!("iscsi: header digest error: closing the connection\n");
                return Err(Ending::Failed(EIO));
            }
        }
        let bhs = match Bhs::parse(&hdr, self.params.max_recv_data_segment_length) {
            Ok(b) => b,
            Err(e) => {
                // Unknown opcode: the data segment length still frames the
                // PDU, so skip it and answer with a Reject.
                if let BhsError::UnknownOpcode(_) = e {
                    let len = u32::from_be_bytes([0, hdr[5], hdr[6], hdr[7]]);
                    if len <= self.params.max_recv_data_segment_length {
                        self.skip_segment(len)?;
                        self.reject(e.reject_reason(), &hdr)?;
                        return Ok(());
                    }
                }
                let _ = self.reject(e.reject_reason(), &hdr);
                return Err(Ending::Failed(EINVAL));
            }
        };
        if bhs.ahs_len > 0 {
            // No AHS is supported (no extended CDBs, no bidirectional).
            self.skip_segment(bhs.data_segment_len)?;
            self.reject(RejectReason::CommandNotSupported, &hdr)?;
            return Ok(());
        }
        match bhs.opcode {
            InitiatorOpcode::ScsiCommand => self.scsi_command(&hdr, &bhs),
            InitiatorOpcode::DataOut => self.data_out(&hdr, &bhs),
            InitiatorOpcode::NopOut => self.nop_out(&hdr, &bhs),
            InitiatorOpcode::TaskMgmtRequest => self.task_mgmt(&hdr, &bhs),
            InitiatorOpcode::LogoutRequest => self.logout(&hdr, &bhs),
            InitiatorOpcode::TextRequest => self.text(&hdr, &bhs),
            InitiatorOpcode::LoginRequest | InitiatorOpcode::SnackRequest => {
                // A login in full feature phase is a protocol error; SNACK
                // needs ErrorRecoveryLevel > 0.
                self.skip_segment(bhs.data_segment_len)?;
                let reason = if bhs.opcode == InitiatorOpcode::LoginRequest {
                    RejectReason::ProtocolError
                } else {
                    RejectReason::CommandNotSupported
                };
                self.reject(reason, &hdr)?;
                Ok(())
            }
        }
    }

    /// Reads and discards `len` bytes.
    fn skip(&mut self, mut len: usize) -> Result {
        while len > 0 {
            let n = len.min(self.scratch.len()).max(1);
            let buf = self.scratch.get_mut(..n).ok_or(EINVAL)?;
            self.conn.stream.read_exact(buf)?;
            len -= n;
        }
        Ok(())
    }

    /// Reads a data segment (with its padding, and checks its digest)
    /// into the scratch buffer.
    fn read_data(&mut self, len: u32, hdr: &[u8; BHS_LEN]) -> core::result::Result<usize, Ending> {
        let len = len as usize;
        let digest = self.data_digest_len(len) > 0;
        let buf = self.scratch.get_mut(..padded(len)).ok_or(EINVAL)?;
        self.conn.stream.read_exact(buf)?;
        if digest {
            let crc = crypto::crc32c(!0, buf);
            if !digest_matches(self.conn, crc)? {
                return Err(self.data_digest_error(hdr));
            }
        }
        Ok(len)
    }

    /// Receives `len` bytes of a data segment straight into `sg` at
    /// `offset`, then its padding and digest.
    fn read_segment_into(
        &mut self,
        sg: &mut SgList<'_>,
        offset: u32,
        len: u32,
        hdr: &[u8; BHS_LEN],
    ) -> core::result::Result<(), Ending> {
        if receive_segment(self.conn, self.params.data_digest, sg, offset, len)? {
            Ok(())
        } else {
            Err(self.data_digest_error(hdr))
        }
    }

    fn reject(&self, reason: RejectReason, hdr: &[u8; BHS_LEN]) -> Result {
        let (exp, max) = self.conn.sn_window();
        self.conn.send_numbered(
            |stat_sn, bhs| {
                Reject {
                    reason,
                    stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    data_sn_r2t_sn: 0,
                    data_segment_len: BHS_LEN as u32,
                }
                .encode(bhs)
            },
            hdr,
            true,
        )
    }

    /// Applies CmdSN rules to a non-immediate command: in order it
    /// advances ExpCmdSN; outside the window it is dropped.
    fn accept_cmd_sn(&mut self, cmd_sn: u32, immediate: bool) -> bool {
        if immediate {
            return true;
        }
        let (exp, max) = self.conn.sn_window();
        if !cmd_sn_in_window(cmd_sn, exp, max) {
            pr_warn!(
                "iscsi: CmdSN {} outside [{}, {}]: dropped\n",
                cmd_sn,
                exp,
                max
            );
            return false;
        }
        if cmd_sn == self.window.exp_cmd_sn {
            self.window.exp_cmd_sn = self.window.exp_cmd_sn.wrapping_add(1);
            self.conn
                .exp_cmd_sn
                .store(self.window.exp_cmd_sn, Ordering::Relaxed);
        }
        true
    }

    fn scsi_command(&mut self, hdr: &[u8; BHS_LEN], bhs: &Bhs) -> core::result::Result<(), Ending> {
        let cmd = ScsiCommandPdu::parse(hdr);
        let Some(session) = self.session.clone() else {
            // Discovery sessions carry no SCSI commands.
            self.skip_segment(bhs.data_segment_len)?;
            self.reject(RejectReason::ProtocolError, hdr)?;
            return Err(Ending::Failed(EINVAL));
        };
        // The window place is taken before ExpCmdSN moves past the command,
        // so that MaxCmdSN never runs ahead of what is free.
        let slot = WindowSlot::take(self.conn, cmd.immediate);
        if !self.accept_cmd_sn(cmd.cmd_sn, cmd.immediate) {
            drop(slot);
            self.skip_segment(bhs.data_segment_len)?;
            return Ok(());
        }
        let edtl = cmd.expected_data_transfer_length;
        let immediate_len = bhs.data_segment_len;
        let bad_data = immediate_len > 0
            && (!cmd.write
                || !self.params.immediate_data
                || immediate_len > edtl
                || immediate_len > self.params.first_burst_length);
        if edtl > MAX_COMMAND_DATA || bad_data || (cmd.read && cmd.write) {
            self.skip_segment(immediate_len)?;
            self.reject(RejectReason::ProtocolError, hdr)?;
            return Err(Ending::Failed(EINVAL));
        }
        let attr = TaskAttr::from_wire(cmd.attr).unwrap_or(TaskAttr::Simple);
        let mut command = session.begin(cmd.lun, cmd.itt, attr);
        let direction = direction_of(&cmd);
        // The data's own buffer before any of it arrives: a user-space
        // handler's memory receives data-out straight from the socket.
        let mut buf = command.data_buffer(&cmd.cdb, edtl as usize, direction)?;
        if immediate_len > 0 {
            let mut sg = buf.sg();
            self.read_segment_into(&mut sg, 0, immediate_len, hdr)?;
        }
        if !cmd.write || immediate_len >= edtl {
            self.execute(cmd, command, buf, slot);
            return Ok(());
        }
        command.awaiting_data();
        let mut w = PendingWrite {
            since: Ktime::ktime_get(),
            data_sn: 0,
            pdu: cmd,
            command,
            buf,
            slot,
            received: immediate_len,
            unsolicited: !cmd.final_pdu,
            ttt: None,
            r2t_end: 0,
            r2t_sn: 0,
            next_offset: if cmd.final_pdu {
                immediate_len
            } else {
                // Unsolicited data fills up to FirstBurstLength.
                edtl.min(self.params.first_burst_length)
            },
        };
        if !w.unsolicited {
            self.send_r2t(&mut w)?;
        }
        self.pending.push(w, GFP_KERNEL)?;
        Ok(())
    }

    fn send_r2t(&mut self, w: &mut PendingWrite) -> Result {
        let edtl = w.pdu.expected_data_transfer_length;
        let len = (edtl - w.next_offset).min(self.params.max_burst_length);
        let ttt = self.new_ttt();
        let r2t = R2t {
            lun: w.pdu.lun,
            itt: w.pdu.itt,
            ttt,
            stat_sn: 0,
            exp_cmd_sn: self.conn.sn_window().0,
            max_cmd_sn: self.conn.sn_window().1,
            r2t_sn: w.r2t_sn,
            buffer_offset: w.next_offset,
            desired_data_transfer_length: len,
        };
        w.ttt = Some(ttt);
        // Each R2T's sequence numbers its Data-Out from 0.
        w.data_sn = 0;
        w.r2t_sn = w.r2t_sn.wrapping_add(1);
        w.r2t_end = w.next_offset + len;
        w.next_offset += len;
        self.conn.send_numbered(
            |stat_sn, bhs| R2t { stat_sn, ..r2t }.encode(bhs),
            &[],
            false,
        )
    }

    fn data_out(&mut self, hdr: &[u8; BHS_LEN], bhs: &Bhs) -> core::result::Result<(), Ending> {
        let d = DataOutPdu::parse(hdr);
        let len = bhs.data_segment_len;
        let Some(i) = self.pending.iter().position(|w| w.pdu.itt == d.itt) else {
            // Data for a task that ended (e.g. aborted): discard it.
            self.skip_segment(len)?;
            return Ok(());
        };
        let ok = {
            let w = &self.pending[i];
            let end = d.buffer_offset.checked_add(len);
            let matches_ttt = if d.ttt == RESERVED_TAG {
                w.unsolicited
            } else {
                w.ttt == Some(d.ttt)
            };
            matches_ttt && end.is_some_and(|e| e <= w.pdu.expected_data_transfer_length)
        };
        if !ok {
            self.skip_segment(len)?;
            self.reject(RejectReason::ProtocolError, hdr)?;
            return Err(Ending::Failed(EINVAL));
        }
        if self.pending[i].data_sn != d.data_sn {
            // ERL 0 cannot recover a lost or reordered Data-Out: the task
            // ends with CHECK CONDITION, the rest of its data is discarded
            // as any ended task's, and the connection goes on.
            pr_warn!(
                "iscsi: Data-Out DataSN {} where {} was due\n",
                d.data_sn,
                self.pending[i].data_sn
            );
            self.skip_segment(len)?;
            let w = self.pending.swap_remove(i).ok_or(Ending::Failed(EINVAL))?;
            let mut data = [0u8; sense::MAX_SENSE_LEN];
            let len = sense::DATA_PHASE_ERROR.encode(SenseFormat::Fixed, &mut data);
            let failed = data.get(..len).unwrap_or(&[]);
            self.conn.send_status(
                w.pdu.itt,
                status::CHECK_CONDITION,
                failed,
                Residual::default(),
                0,
            )?;
            // FINISHED once the status is out.
            drop(w);
            return Ok(());
        }
        let (conn, data_digest) = (self.conn, self.params.data_digest);
        let w = &mut self.pending[i];
        let digest_ok = {
            let mut sg = w.buf.sg();
            receive_segment(conn, data_digest, &mut sg, d.buffer_offset, len)?
        };
        w.received += len;
        w.data_sn = w.data_sn.wrapping_add(1);
        w.since = Ktime::ktime_get();
        if !digest_ok {
            return Err(self.data_digest_error(hdr));
        }
        if !d.final_pdu {
            return Ok(());
        }
        let mut w = self.pending.swap_remove(i).ok_or(Ending::Failed(EINVAL))?;
        if d.ttt == RESERVED_TAG {
            w.unsolicited = false;
        } else {
            w.ttt = None;
        }
        let edtl = w.pdu.expected_data_transfer_length;
        if w.unsolicited || w.ttt.is_some() {
            self.pending.push(w, GFP_KERNEL)?;
            return Ok(());
        }
        if w.next_offset < edtl {
            self.send_r2t(&mut w)?;
            self.pending.push(w, GFP_KERNEL)?;
            return Ok(());
        }
        self.execute(w.pdu, w.command, w.buf, w.slot);
        Ok(())
    }

    /// TGT_PRE_EXEC: hands a command whose data is in to the core, which
    /// executes it on a worker and answers through [`IscsiCmd`]; the loop
    /// goes on receiving at once.
    fn execute(&self, pdu: ScsiCommandPdu, command: Command, buf: CmdBuffer, slot: WindowSlot) {
        let cmd = IscsiCmd {
            conn: self.conn.clone(),
            pdu,
            buf,
            _slot: slot,
        };
        command.submit(&pdu.cdb, direction_of(&pdu), cmd);
    }

    fn nop_out(&mut self, hdr: &[u8; BHS_LEN], bhs: &Bhs) -> core::result::Result<(), Ending> {
        let n = NopOutPdu::parse(hdr);
        let len = self.read_data(bhs.data_segment_len, hdr)?;
        if n.itt == RESERVED_TAG {
            // The answer to a NOP-In ping of ours, or a no-op: no reply.
            return Ok(());
        }
        if !self.accept_cmd_sn(n.cmd_sn, n.immediate) {
            return Ok(());
        }
        let (exp, max) = self.conn.sn_window();
        let data = self.scratch.get(..len).unwrap_or(&[]);
        self.conn.send_numbered(
            |stat_sn, b| {
                NopIn {
                    lun: n.lun,
                    itt: n.itt,
                    ttt: RESERVED_TAG,
                    stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    data_segment_len: len as u32,
                }
                .encode(b)
            },
            data,
            true,
        )?;
        Ok(())
    }

    fn logout(&mut self, hdr: &[u8; BHS_LEN], bhs: &Bhs) -> core::result::Result<(), Ending> {
        let l = LogoutPdu::parse(hdr);
        self.skip_segment(bhs.data_segment_len)?;
        let _ = self.accept_cmd_sn(l.cmd_sn, l.immediate);
        // Reasons: 0 close the session, 1 close this connection (the only
        // one), 2 remove the connection for recovery (ERL 2: not supported).
        let response = if l.reason == 2 { 2 } else { 0 };
        let (exp, max) = self.conn.sn_window();
        self.conn.send_numbered(
            |stat_sn, b| {
                LogoutResponse {
                    response,
                    itt: l.itt,
                    stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    time2wait: 0,
                    time2retain: 0,
                }
                .encode(b)
            },
            &[],
            true,
        )?;
        if response == 0 {
            return Err(Ending::Logout);
        }
        Ok(())
    }

    fn text(&mut self, hdr: &[u8; BHS_LEN], bhs: &Bhs) -> core::result::Result<(), Ending> {
        let t = TextPdu::parse(hdr);
        let len = self.read_data(bhs.data_segment_len, hdr)?;
        if !self.accept_cmd_sn(t.cmd_sn, t.immediate) {
            return Ok(());
        }
        let mut out = KVec::new();
        out.extend_with(
            self.params.max_xmit_data_segment_length as usize,
            0u8,
            GFP_KERNEL,
        )?;
        let mut ip = [0u8; 64];
        let ip_len = self.conn.stream.local_ip(&mut ip)?;
        let mut addr = [0u8; 64];
        let addr_len = self.conn.stream.local_addr(&mut addr)?;
        let catalog = Catalog {
            drv: self.drv,
            local_ip: ip.get(..ip_len).unwrap_or(&[]),
            local_addr: addr.get(..addr_len).unwrap_or(&[]),
        };
        let request = self.scratch.get(..len).unwrap_or(&[]);
        let step = self
            .text
            .step(&TextRequest::from_bhs(hdr), request, &catalog, &mut out);
        if let TextOutcome::Reject(reason) = step.outcome {
            self.reject(reason, hdr)?;
            return Ok(());
        }
        if let Some(m) = step.max_xmit_data_segment_length {
            self.params.max_xmit_data_segment_length = m;
            self.conn
                .max_xmit_data_segment_length
                .store(m, Ordering::Relaxed);
        }
        let (exp, max) = self.conn.sn_window();
        self.conn.send_numbered(
            |stat_sn, b| {
                TextResponse {
                    final_pdu: step.final_pdu,
                    cont: step.cont,
                    lun: t.lun,
                    itt: t.itt,
                    ttt: step.ttt,
                    stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    data_segment_len: step.data_len as u32,
                }
                .encode(b)
            },
            out.get(..step.data_len).unwrap_or(&[]),
            true,
        )?;
        Ok(())
    }

    /// Task management: what only the loop knows (writes waiting for
    /// their data, the window) is settled here; waiting for commands that
    /// execute runs on the driver's workqueue, which answers, so that the
    /// loop goes on receiving (the Data-Out an older command needs, say).
    fn task_mgmt(&mut self, hdr: &[u8; BHS_LEN], bhs: &Bhs) -> core::result::Result<(), Ending> {
        let t = TaskMgmtPdu::parse(hdr);
        self.skip_segment(bhs.data_segment_len)?;
        let (exp, max) = self.conn.sn_window();
        let _ = self.accept_cmd_sn(t.cmd_sn, t.immediate);
        let lun = crate::scst_core::cdb::decode_lun(t.lun);
        let function = TmfFunction::from_u8(t.function);
        let lun_raw = t.lun;
        let job = match (function, &self.session) {
            (_, None) => TmJob::Answer(TmfResponse::Rejected),
            (Some(TmfFunction::AbortTask), Some(s)) => {
                let tag = t.referenced_task_tag;
                if let Some(i) = self.pending.iter().position(|w| w.pdu.itt == tag) {
                    // Waiting for data: it never ran; it ends here, unanswered.
                    drop(self.pending.swap_remove(i));
                    TmJob::Answer(TmfResponse::Complete)
                } else if s.has_in_flight(tag) {
                    TmJob::AbortTask(tag)
                } else if cmd_sn_in_window(t.ref_cmd_sn, exp, max) && sn_lt(t.ref_cmd_sn, t.cmd_sn)
                {
                    // Never arrived (RFC 7143 11.5.1): a RefCmdSN still in
                    // the window and before this request's counts as
                    // received, and aborted.
                    TmJob::Answer(TmfResponse::Complete)
                } else {
                    // Answered already, or never sent.
                    TmJob::Answer(TmfResponse::TaskDoesNotExist)
                }
            }
            (
                Some(
                    f @ (TmfFunction::AbortTaskSet
                    | TmfFunction::ClearTaskSet
                    | TmfFunction::LogicalUnitReset),
                ),
                Some(_),
            ) => {
                self.drop_pending(|w| w.pdu.lun == lun_raw);
                match (lun, f) {
                    (None, _) => TmJob::Answer(TmfResponse::LunDoesNotExist),
                    (Some(l), TmfFunction::LogicalUnitReset) => TmJob::LunReset(l),
                    (Some(l), _) => TmJob::AbortTaskSet(l),
                }
            }
            (Some(TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset), Some(_)) => {
                self.drop_pending(|_| true);
                TmJob::TargetReset
            }
            (Some(TmfFunction::TaskReassign), Some(_)) => {
                TmJob::Answer(TmfResponse::ReassignmentNotSupported)
            }
            (Some(TmfFunction::ClearAca), Some(_)) | (None, Some(_)) => {
                TmJob::Answer(TmfResponse::NotSupported)
            }
        };
        if let TmJob::Answer(response) = job {
            self.conn.send_tm_response(t.itt, response)?;
            return Ok(());
        }
        let Some(session) = self.session.clone() else {
            return Ok(());
        };
        let cold = function == Some(TmfFunction::TargetColdReset);
        let (conn, itt) = (self.conn.clone(), t.itt);
        let run = move || {
            let response = job.run(&session);
            // A cold reset also drops the connection (RFC 7143 11.5.1).
            if conn.send_tm_response(itt, response).is_err()
                || (cold && response == TmfResponse::Complete)
            {
                conn.close();
            }
        };
        let inner = self.drv.inner.lock();
        match inner.wq.as_ref() {
            Some(wq) => wq.queue().try_spawn(GFP_KERNEL, run)?,
            // The driver is stopping: wait here.
            None => {
                drop(inner);
                run();
            }
        }
        Ok(())
    }

    fn drop_pending(&mut self, pred: impl Fn(&PendingWrite) -> bool) {
        while let Some(i) = self.pending.iter().position(&pred) {
            drop(self.pending.swap_remove(i));
        }
    }
}

impl Drop for Ffp<'_> {
    fn drop(&mut self) {
        // Commands still waiting for data end with the connection (ERL 0).
        self.pending.clear();
    }
}

/// A window place a non-immediate SCSI command holds until it finishes
/// (MaxCmdSN opens again then).
pub(crate) struct WindowSlot {
    conn: Option<Arc<Conn>>,
}

impl WindowSlot {
    /// Takes a place (before ExpCmdSN advances past the command).
    fn take(conn: &Arc<Conn>, immediate: bool) -> Self {
        if immediate {
            return Self { conn: None };
        }
        conn.outstanding.fetch_add(1, Ordering::Relaxed);
        Self {
            conn: Some(conn.clone()),
        }
    }
}

impl Drop for WindowSlot {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A SCSI command of this connection as the core holds it, from its
/// submission to its response.
struct IscsiCmd {
    conn: Arc<Conn>,
    pdu: ScsiCommandPdu,
    buf: CmdBuffer,
    _slot: WindowSlot,
}

impl TgtCmd for IscsiCmd {
    fn buffer(&mut self) -> SgList<'_> {
        self.buf.sg()
    }

    fn lent(&self) -> Option<LentId> {
        self.buf.lent_id()
    }

    fn refused(&self) -> Option<LendRefused> {
        self.buf.refused
    }

    /// Runs on a core worker: Data-In, then the status (in the last
    /// Data-In when GOOD, else in a SCSI Response after the data).
    fn xmit_response(&mut self, response: &Response) {
        self.buf.executed(response.data_in, response.status);
        if let Err(e) = self.conn.send_response(&self.pdu, &mut self.buf, response) {
            if !self.conn.closing.load(Ordering::Relaxed) {
                pr_info!("iscsi: cannot send a response: {:?}\n", e);
            }
            // The receive loop sees the failed socket and ends the session.
            self.conn.stream.shutdown();
        }
    }
}

impl Conn {
    /// Sends the data-in and the status of a command.
    fn send_response(
        &self,
        cmd: &ScsiCommandPdu,
        buf: &mut CmdBuffer,
        response: &Response,
    ) -> Result {
        let edtl = cmd.expected_data_transfer_length;
        let (exp, max) = self.sn_window();
        let good = response.status == 0;
        let residual = Residual::of(edtl, response.transfer_len);
        let mut data_in_pdus = 0u32;
        // Data-In carries the status only when it is GOOD: sense data (a
        // tape's FILEMARK or ILI with a partial block) follows in a SCSI
        // Response after the data.
        if cmd.read && response.data_in > 0 {
            let total = (response.data_in as u32).min(edtl);
            let chunk = self
                .max_xmit_data_segment_length
                .load(Ordering::Relaxed)
                .max(512);
            let how = PageSend {
                more: false,
                by_reference: buf.stable(),
            };
            let sg = buf.sg();
            let mut offset = 0u32;
            let mut data_sn = 0u32;
            while offset < total {
                let len = (total - offset).min(chunk);
                let last = offset + len == total;
                // The last Data-In carries a GOOD status and the residual.
                let with_status = last && good;
                let pad = padded(len as usize) - len as usize;
                let mut tx = self.tx.lock();
                let mut bhs = [0u8; BHS_LEN];
                DataIn {
                    final_pdu: last,
                    ack: false,
                    overflow: with_status && residual.overflow,
                    underflow: with_status && residual.underflow,
                    status_present: with_status,
                    status: response.status,
                    lun: cmd.lun,
                    itt: cmd.itt,
                    ttt: RESERVED_TAG,
                    stat_sn: tx.stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    data_sn,
                    buffer_offset: offset,
                    residual_count: if with_status { residual.count } else { 0 },
                    data_segment_len: len,
                }
                .encode(&mut bhs);
                if with_status {
                    tx.stat_sn = tx.stat_sn.wrapping_add(1);
                }
                // BHS and header digest; padding and data digest.
                let mut head = [0u8; BHS_LEN + DIGEST_LEN];
                head[..BHS_LEN].copy_from_slice(&bhs);
                let mut head_len = BHS_LEN;
                if tx.header_digest {
                    head[BHS_LEN..].copy_from_slice(&digest_of(&bhs, &[]));
                    head_len += DIGEST_LEN;
                }
                let mut tail = [0u8; 3 + DIGEST_LEN];
                let mut tail_len = pad;
                if tx.data_digest {
                    let d = digest_of_sg(
                        &sg,
                        offset as usize,
                        len as usize,
                        PAD.get(..pad).unwrap_or(&[]),
                    )?;
                    tail[pad..pad + DIGEST_LEN].copy_from_slice(&d);
                    tail_len += DIGEST_LEN;
                }
                self.stream.write_pages(
                    &head[..head_len],
                    &sg,
                    offset as usize,
                    len as usize,
                    &tail[..tail_len],
                    how,
                )?;
                drop(tx);
                offset += len;
                data_sn += 1;
            }
            if good {
                return Ok(());
            }
            data_in_pdus = data_sn;
        }
        self.send_status(
            cmd.itt,
            response.status,
            response.sense(),
            residual,
            data_in_pdus,
        )
    }

    /// Sends the SCSI Response of task `itt`: `status`, the sense data
    /// (if any) as its data segment, and the residual.
    /// `data_in_pdus` is how many Data-In PDUs went before it (ExpDataSN).
    pub(crate) fn send_status(
        &self,
        itt: u32,
        status: u8,
        sense: &[u8],
        residual: Residual,
        data_in_pdus: u32,
    ) -> Result {
        let segment = SenseSegment::new(sense);
        let (exp, max) = self.sn_window();
        self.send_numbered(
            |stat_sn, bhs| {
                ScsiResponse {
                    bidi_overflow: false,
                    bidi_underflow: false,
                    overflow: residual.overflow,
                    underflow: residual.underflow,
                    response: 0,
                    status,
                    itt,
                    exp_data_sn: data_in_pdus,
                    stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    bidi_residual_count: 0,
                    residual_count: residual.count,
                    data_segment_len: segment.bytes().len() as u32,
                }
                .encode(bhs)
            },
            segment.bytes(),
            true,
        )
    }
}

impl Conn {
    /// Sends a Task Management Function Response.
    fn send_tm_response(&self, itt: u32, response: TmfResponse) -> Result {
        let (exp, max) = self.sn_window();
        self.send_numbered(
            |stat_sn, b| {
                TaskMgmtResponse {
                    response: response as u8,
                    itt,
                    stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                }
                .encode(b)
            },
            &[],
            true,
        )
    }
}

/// A task management function as the receive loop hands it on.
#[derive(Clone, Copy)]
enum TmJob {
    /// Settled in the loop: answer at once.
    Answer(TmfResponse),
    /// ABORT TASK of a command in flight: wait for it.
    AbortTask(u32),
    AbortTaskSet(u64),
    LunReset(u64),
    TargetReset,
}

impl TmJob {
    /// Carries the function out on `session` (waiting, bounded, for the
    /// commands it covers) and says how it went.
    fn run(self, session: &Session) -> TmfResponse {
        let done = match self {
            TmJob::Answer(r) => return r,
            TmJob::AbortTask(tag) => session.abort_task(tag),
            TmJob::AbortTaskSet(lun) => session.abort_task_set(lun),
            TmJob::LunReset(lun) => session.lun_reset(lun),
            TmJob::TargetReset => session.target_reset(),
        };
        if done {
            TmfResponse::Complete
        } else {
            TmfResponse::Rejected
        }
    }
}

/// Serves a connection from login to close.
pub(crate) fn serve(drv: &Arc<DriverState>, conn: &Arc<Conn>) {
    let login = match super::login_phase::run(drv, conn) {
        Ok(l) => l,
        Err(e) => {
            pr_info!("iscsi: login failed: {:?}\n", e);
            return;
        }
    };
    conn.start_full_feature(login.stat_sn, &login.negotiated);
    let session = login.session.clone();
    match Ffp::new(
        conn,
        drv,
        login.session,
        login.negotiated,
        &login.params,
        login.exp_cmd_sn,
    ) {
        Ok(mut ffp) => {
            if let Ending::Failed(e) = ffp.run() {
                if !conn.closing.load(Ordering::Relaxed) {
                    pr_info!("iscsi: connection ended: {:?}\n", e);
                }
            }
        }
        Err(e) => pr_err!("iscsi: {:?}\n", e),
    }
    if let Some(s) = session {
        drv.scst
            .with_registry(|r| crate::scst_core::Scst::remove_session(r, super::DRIVER, &s));
    }
}

/// The data direction of a SCSI Command's R and W bits.
fn direction_of(cmd: &ScsiCommandPdu) -> DataDirection {
    match (cmd.read, cmd.write) {
        (false, false) => DataDirection::None,
        (false, true) => DataDirection::Write,
        (true, false) => DataDirection::Read,
        (true, true) => DataDirection::Bidi,
    }
}
