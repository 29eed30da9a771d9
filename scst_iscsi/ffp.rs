// SPDX-License-Identifier: GPL-2.0

//! The receive loop of an iSCSI connection in full feature phase.
//!
//! It only receives: a command's data lands in its own pages straight from
//! the socket, and once it is all in the command goes to the core, which
//! executes it on its own workers and hands the response to the
//! connection's sender (`reply.rs`). A write whose data is not all in waits
//! in the connection's pending list while the loop goes on receiving (its
//! R2Ts are answered by Data-Out PDUs of this very connection). Task
//! management that waits for commands runs on the driver's workqueue.
//! MaxConnections is 1 and ErrorRecoveryLevel 0: any protocol error or lost
//! connection ends the session, completing or dropping its commands.

use super::conn::{digest_of, Conn, Numbers};
use super::login::{Negotiated, TextNegotiation, TextOutcome, TextRequest};
use super::login_phase::Catalog;
use super::params::TargetParams;
use super::pdu::{self, *};
use super::reply::{IscsiCmd, Reply, WindowSlot};
use super::DriverState;
use crate::kernel_ext::crypto;
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::sg::SgList;
use crate::scst_core::buffer::CmdBuffer;
use crate::scst_core::cmd::Context;
use crate::scst_core::device::DataDirection;
use crate::scst_core::sense::{self, SenseFormat};
use crate::scst_core::session::{status, Command, Session};
use crate::scst_core::task_set::TaskAttr;
use core::sync::atomic::Ordering;
use kernel::{
    alloc::flags::GFP_KERNEL,
    prelude::*,
    sync::Arc,
    time::{ktime_ms_delta, Ktime},
};

/// Text negotiation buffers (request and response halves).
const TEXT_STORAGE: usize = 2 * 65536;

/// Largest data buffer a single command may ask for.
const MAX_COMMAND_DATA: u32 = 32 << 20;

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

/// Longest additional header segment a PDU may carry (255 words).
const MAX_AHS_LEN: usize = 255 * 4;

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
    /// A PDU's additional header segments (at most 255 words): kept here,
    /// off the receive loop's stack, which commands' paths run below.
    ahs: KVec<u8>,
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
        let mut ahs = KVec::new();
        ahs.extend_with(MAX_AHS_LEN, 0u8, GFP_KERNEL)?;
        let queued_commands = target.queued_commands.max(1);
        // A PDU that stops arriving halfway is as overdue as a write's
        // Data-Out: the connection closes after RspTimeout (0: never).
        conn.stream
            .set_stall_limit(target.rsp_timeout.saturating_mul(1000));
        conn.open_window(
            exp_cmd_sn,
            queued_commands,
            params.max_xmit_data_segment_length,
        );
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
            ahs,
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
            pr_peer!(
                pr_warn,
                "iscsi: no Data-Out within RspTimeout: closing the connection\n"
            );
            return Err(Ending::TimedOut);
        }
        match self.ping_sent {
            Some(sent) if overdue(sent, self.nop_in_timeout_ms) => {
                pr_peer!(
                    pr_warn,
                    "iscsi: no answer to NOP-In within NopInTimeout: closing the connection\n"
                );
                Err(Ending::TimedOut)
            }
            Some(_) => Ok(()),
            None if self.nop_in_interval_ms > 0 => {
                let ttt = self.new_ttt();
                // A ping: StatSN is the next one, not advanced.
                self.conn.send_numbered(
                    |Numbers { stat_sn, exp, max }, b| {
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
        pr_peer!(
            pr_warn,
            "iscsi: data digest error: closing the connection\n"
        );
        let _ = self.reject(RejectReason::DataDigestError, hdr);
        Ending::Failed(EIO)
    }

    /// Skips a data segment of `len` bytes with its padding and digest.
    fn skip_segment(&mut self, len: u32) -> Result {
        let len = len as usize;
        self.skip(padded(len) + self.data_digest_len(len))
    }

    /// Receives and handles one PDU. Not inlined into the loop, whose
    /// frame then stays small.
    #[inline(never)]
    fn one_pdu(&mut self) -> core::result::Result<(), Ending> {
        let mut hdr = [0u8; BHS_LEN];
        self.read_header(&mut hdr)?;
        let ahs_len = usize::from(hdr[4]) * 4;
        let ahs = self.ahs.get_mut(..ahs_len).ok_or(Ending::Failed(EINVAL))?;
        self.conn.stream.read_exact(ahs)?;
        if self.params.header_digest {
            let mut got = [0u8; DIGEST_LEN];
            self.conn.stream.read_exact(&mut got)?;
            if got != digest_of(&hdr, ahs) {
                // The header cannot be trusted, not even its length: ERL 0
                // ends the connection.
                pr_peer!(
                    pr_warn,
                    "iscsi: header digest error: closing the connection\n"
                );
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
        self.conn.send_numbered(
            |Numbers { stat_sn, exp, max }, bhs| {
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
            pr_peer!(
                pr_warn,
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
                .store(self.window.exp_cmd_sn, Ordering::Release);
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
        let mut command = session.begin(cmd.lun, cmd.itt.into(), attr, cmd.cdb[0]);
        let direction = direction_of(&cmd);
        // The data's own buffer before any of it arrives: a user-space
        // handler's memory receives data-out straight from the socket,
        // when the handler has it ready (else pages of ours stage the
        // data-out: this loop never waits for a handler).
        let mut buf = command.data_buffer(&cmd.cdb, edtl as usize, direction, true)?;
        if !buf.wants_data_out() {
            // Answered without executing (refused, no such LUN, past the
            // session's data budget): its data-out is neither stored nor
            // asked for. Unsolicited Data-Out behind it finds no task and
            // is discarded; the initiator sends none after the response.
            self.skip_segment(immediate_len)?;
            self.submit(cmd, command, buf, slot);
            return Ok(());
        }
        if immediate_len > 0 {
            let mut sg = buf.sg();
            self.read_segment_into(&mut sg, 0, immediate_len, hdr)?;
        }
        if !cmd.write || immediate_len >= edtl {
            self.submit(cmd, command, buf, slot);
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
            exp_cmd_sn: 0,
            max_cmd_sn: 0,
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
            |Numbers { stat_sn, exp, max }, bhs| {
                R2t {
                    stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    ..r2t
                }
                .encode(bhs)
            },
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
            pr_peer!(
                pr_warn,
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
        self.submit(w.pdu, w.command, w.buf, w.slot);
        Ok(())
    }

    /// TGT_PRE_EXEC: hands a command whose data is in to the core, which
    /// executes it (here, if that cannot block: a read the page cache
    /// holds; else on a worker) and answers through [`IscsiCmd`]; the loop
    /// goes on receiving meanwhile.
    fn submit(&self, pdu: ScsiCommandPdu, command: Command, buf: CmdBuffer, slot: WindowSlot) {
        let cmd = IscsiCmd {
            conn: self.conn.clone(),
            drv: self.drv.clone(),
            pdu,
            body: Some((buf, slot)),
        };
        command.submit(&pdu.cdb, direction_of(&pdu), cmd, Context::Direct);
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
        let data = self.scratch.get(..len).unwrap_or(&[]);
        self.conn.send_numbered(
            |Numbers { stat_sn, exp, max }, b| {
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
        self.conn.send_numbered(
            |Numbers { stat_sn, exp, max }, b| {
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
        self.conn.send_numbered(
            |Numbers { stat_sn, exp, max }, b| {
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
                } else if s.has_in_flight(tag.into()) {
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
                    (Some(l), TmfFunction::ClearTaskSet) => TmJob::ClearTaskSet(l),
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
        let (conn, drv, itt) = (self.conn.clone(), self.drv.clone(), t.itt);
        let run = move || {
            let response = job.run(&session);
            // After the responses of the commands it waited for.
            let reply = Reply::TaskMgmt {
                itt,
                response,
                then_close: cold && response == TmfResponse::Complete,
            };
            conn.queue_reply(&drv, reply);
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

/// A task management function as the receive loop hands it on.
#[derive(Clone, Copy)]
enum TmJob {
    /// Settled in the loop: answer at once.
    Answer(TmfResponse),
    /// ABORT TASK of a command in flight: wait for it.
    AbortTask(u32),
    AbortTaskSet(u64),
    ClearTaskSet(u64),
    LunReset(u64),
    TargetReset,
}

impl TmJob {
    /// Carries the function out on `session` (waiting, bounded, for the
    /// commands it covers) and says how it went.
    fn run(self, session: &Session) -> TmfResponse {
        let done = match self {
            TmJob::Answer(r) => return r,
            TmJob::AbortTask(tag) => match session.abort_task(tag.into()) {
                Some(done) => done,
                // Its response went out first.
                None => return TmfResponse::TaskDoesNotExist,
            },
            TmJob::AbortTaskSet(lun) => session.abort_task_set(lun),
            TmJob::ClearTaskSet(lun) => session.clear_task_set(lun),
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
    let Some((ffp, session)) = logged_in(drv, conn) else {
        return;
    };
    if let Some(mut ffp) = ffp {
        if let Ending::Failed(e) = ffp.run() {
            if !conn.closing.load(Ordering::Relaxed) {
                pr_peer!(pr_info, "iscsi: connection ended: {:?}\n", e);
            }
        }
    }
    // Commands still executing find the connection closed: their
    // responses fail at once (and quietly) rather than wait on a peer that
    // is gone.
    conn.close();
    if let Some(s) = session {
        drv.scst
            .with_registry(|r| crate::scst_core::Scst::remove_session(r, super::DRIVER, &s));
    }
}

/// A connection past its login: its full feature phase (if it could be
/// set up) and its session, to remove at the end.
type LoggedIn<'a> = (Option<KBox<Ffp<'a>>>, Option<Arc<Session>>);

/// The login phase, then the full feature phase's state, on the heap
/// (`None` for it if that failed): the receive loop runs commands that
/// cannot block (see [`crate::scst_core::cmd::Context::Direct`]) on top of
/// its own frames, which must stay small. Not inlined: the login's values
/// live in its frame, which is gone by then. `None` if the login failed.
#[inline(never)]
fn logged_in<'a>(drv: &'a Arc<DriverState>, conn: &'a Arc<Conn>) -> Option<LoggedIn<'a>> {
    let login = match super::login_phase::run(drv, conn) {
        Ok(l) => l,
        Err(e) => {
            pr_peer!(pr_info, "iscsi: login failed: {:?}\n", e);
            return None;
        }
    };
    conn.start_full_feature(login.stat_sn, &login.negotiated);
    let session = login.session.clone();
    let ffp = Ffp::new(
        conn,
        drv,
        login.session,
        login.negotiated,
        &login.params,
        login.exp_cmd_sn,
    )
    .and_then(|f| Ok(KBox::new(f, GFP_KERNEL)?));
    match ffp {
        Ok(f) => Some((Some(f), session)),
        Err(e) => {
            pr_peer!(pr_err, "iscsi: {:?}\n", e);
            Some((None, session))
        }
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
