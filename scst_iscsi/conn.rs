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
use super::pdu::{self, *};
use super::{DriverState, QUEUED_COMMANDS};
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::TcpStream;
use crate::kernel_ext::pages::Pages;
use crate::scst_core::session::{Command, Session};
use crate::scst_core::task_set::TaskAttr;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{alloc::flags::GFP_KERNEL, new_mutex, prelude::*, sync::Arc, sync::Mutex};

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
    closing: AtomicBool,
}

struct TxState {
    stat_sn: u32,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                stream,
                tx <- new_mutex!(TxState { stat_sn: 0 }),
                closing: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )
    }

    /// Closes the connection; the receive loop ends and cleans up.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.stream.shutdown();
    }
}

/// The command window and digest settings of a session in full feature
/// phase.
struct Window {
    exp_cmd_sn: u32,
    queued_commands: u32,
}

impl Window {
    fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn
            .wrapping_add(self.queued_commands)
            .wrapping_sub(1)
    }
}

/// A write command waiting for its Data-Out.
struct PendingWrite {
    pdu: ScsiCommandPdu,
    command: Command,
    pages: Pages,
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
}

/// Why the receive loop ends.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The initiator logged out (the response is sent).
    Logout,
    /// The connection failed or a protocol error closed it.
    Failed(Error),
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

impl Conn {
    /// Sends one PDU with a data segment from `data`.
    pub(crate) fn send(&self, bhs: &mut [u8; BHS_LEN], data: &[u8], more: bool) -> Result {
        let _ = set_data_segment_len(bhs, data.len() as u32);
        let pad = PAD.get(..padded(data.len()) - data.len()).unwrap_or(&[]);
        self.stream.write_all(&[&bhs[..], data, pad], more)
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
        self.send(&mut bhs, data, false)
    }

    /// Sets the StatSN the full feature phase continues from.
    pub(crate) fn set_stat_sn(&self, stat_sn: u32) {
        self.tx.lock().stat_sn = stat_sn;
    }
}

impl<'a> Ffp<'a> {
    pub(crate) fn new(
        conn: &'a Arc<Conn>,
        drv: &'a Arc<DriverState>,
        session: Option<Arc<Session>>,
        params: Negotiated,
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
        Ok(Self {
            conn,
            drv,
            session,
            params,
            text,
            window: Window {
                exp_cmd_sn,
                queued_commands: QUEUED_COMMANDS,
            },
            pending: KVec::new(),
            next_ttt: 1,
            scratch,
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

    fn one_pdu(&mut self) -> core::result::Result<(), Ending> {
        let mut hdr = [0u8; BHS_LEN];
        self.conn.stream.read_exact(&mut hdr)?;
        let bhs = match Bhs::parse(&hdr, self.params.max_recv_data_segment_length) {
            Ok(b) => b,
            Err(e) => {
                // Unknown opcode: the data segment length still frames the
                // PDU, so skip it and answer with a Reject.
                if let BhsError::UnknownOpcode(_) = e {
                    let len = u32::from_be_bytes([0, hdr[5], hdr[6], hdr[7]]);
                    let ahs = usize::from(hdr[4]) * 4;
                    if len <= self.params.max_recv_data_segment_length {
                        self.skip(ahs + padded(len as usize))?;
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
            self.skip(bhs.ahs_len + padded(bhs.data_segment_len as usize))?;
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
                self.skip(padded(bhs.data_segment_len as usize))?;
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

    /// Reads a data segment (with its padding) into the scratch buffer.
    fn read_data(&mut self, len: u32) -> Result<usize> {
        let len = len as usize;
        let buf = self.scratch.get_mut(..padded(len)).ok_or(EINVAL)?;
        self.conn.stream.read_exact(buf)?;
        Ok(len)
    }

    fn reject(&self, reason: RejectReason, hdr: &[u8; BHS_LEN]) -> Result {
        let (exp, max) = (self.window.exp_cmd_sn, self.window.max_cmd_sn());
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
        if !cmd_sn_in_window(cmd_sn, self.window.exp_cmd_sn, self.window.max_cmd_sn()) {
            pr_warn!(
                "iscsi: CmdSN {} outside [{}, {}]: dropped\n",
                cmd_sn,
                self.window.exp_cmd_sn,
                self.window.max_cmd_sn()
            );
            return false;
        }
        if cmd_sn == self.window.exp_cmd_sn {
            self.window.exp_cmd_sn = self.window.exp_cmd_sn.wrapping_add(1);
        }
        true
    }

    fn scsi_command(&mut self, hdr: &[u8; BHS_LEN], bhs: &Bhs) -> core::result::Result<(), Ending> {
        let cmd = ScsiCommandPdu::parse(hdr);
        let Some(session) = self.session.clone() else {
            // Discovery sessions carry no SCSI commands.
            self.skip(padded(bhs.data_segment_len as usize))?;
            self.reject(RejectReason::ProtocolError, hdr)?;
            return Err(Ending::Failed(EINVAL));
        };
        if !self.accept_cmd_sn(cmd.cmd_sn, cmd.immediate) {
            self.skip(padded(bhs.data_segment_len as usize))?;
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
            self.skip(padded(immediate_len as usize))?;
            self.reject(RejectReason::ProtocolError, hdr)?;
            return Err(Ending::Failed(EINVAL));
        }
        let attr = TaskAttr::from_wire(cmd.attr).unwrap_or(TaskAttr::Simple);
        let command = session.begin(cmd.lun, cmd.itt, attr);
        let mut pages = Pages::alloc(edtl as usize)?;
        if immediate_len > 0 {
            let mut sg = pages.sg();
            self.conn
                .stream
                .read_into(&mut sg, 0, immediate_len as usize)?;
            let pad = padded(immediate_len as usize) - immediate_len as usize;
            self.skip(pad)?;
        }
        if !cmd.write || immediate_len >= edtl {
            return Ok(self.execute(cmd, command, pages)?);
        }
        let mut w = PendingWrite {
            pdu: cmd,
            command,
            pages,
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
        let ttt = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        let r2t = R2t {
            lun: w.pdu.lun,
            itt: w.pdu.itt,
            ttt,
            stat_sn: 0,
            exp_cmd_sn: self.window.exp_cmd_sn,
            max_cmd_sn: self.window.max_cmd_sn(),
            r2t_sn: w.r2t_sn,
            buffer_offset: w.next_offset,
            desired_data_transfer_length: len,
        };
        w.ttt = Some(ttt);
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
            self.skip(padded(len as usize))?;
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
            self.skip(padded(len as usize))?;
            self.reject(RejectReason::ProtocolError, hdr)?;
            return Err(Ending::Failed(EINVAL));
        }
        {
            let w = &mut self.pending[i];
            let mut sg = w.pages.sg();
            self.conn
                .stream
                .read_into(&mut sg, d.buffer_offset as usize, len as usize)?;
            w.received += len;
        }
        self.skip(padded(len as usize) - len as usize)?;
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
        Ok(self.execute(w.pdu, w.command, w.pages)?)
    }

    /// EXEC to XMIT: runs the command on its pages and sends the result.
    fn execute(&mut self, cmd: ScsiCommandPdu, command: Command, mut pages: Pages) -> Result {
        let edtl = cmd.expected_data_transfer_length;
        let response = {
            let mut sg = pages.sg();
            command.execute(&cmd.cdb, &mut sg)
        };
        let exp = self.window.exp_cmd_sn;
        let max = self.window.max_cmd_sn();
        let good = response.status == 0;
        if cmd.read && good && response.data_in > 0 {
            let total = (response.data_in as u32).min(edtl);
            let residual = edtl - total;
            let chunk = self.params.max_xmit_data_segment_length.max(512);
            let sg = pages.sg();
            let mut offset = 0u32;
            let mut data_sn = 0u32;
            while offset < total {
                let len = (total - offset).min(chunk);
                let last = offset + len == total;
                let pad = padded(len as usize) - len as usize;
                let mut tx = self.conn.tx.lock();
                let mut bhs = [0u8; BHS_LEN];
                DataIn {
                    final_pdu: last,
                    ack: false,
                    overflow: false,
                    underflow: last && residual > 0,
                    status_present: last,
                    status: response.status,
                    lun: cmd.lun,
                    itt: cmd.itt,
                    ttt: RESERVED_TAG,
                    stat_sn: tx.stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    data_sn,
                    buffer_offset: offset,
                    residual_count: residual,
                    data_segment_len: len,
                }
                .encode(&mut bhs);
                if last {
                    tx.stat_sn = tx.stat_sn.wrapping_add(1);
                }
                self.conn.stream.write_pages(
                    &bhs,
                    &sg,
                    offset as usize,
                    len as usize,
                    PAD.get(..pad).unwrap_or(&[]),
                    false,
                )?;
                drop(tx);
                offset += len;
                data_sn += 1;
            }
            drop(command);
            return Ok(());
        }
        let sense = response.sense();
        let mut data = [0u8; 2 + crate::scst_core::sense::MAX_SENSE_LEN];
        let data_len = if sense.is_empty() {
            0
        } else {
            let [hi, lo] = (sense.len() as u16).to_be_bytes();
            data[0] = hi;
            data[1] = lo;
            if let Some(d) = data.get_mut(2..2 + sense.len()) {
                d.copy_from_slice(sense);
            }
            2 + sense.len()
        };
        let (underflow, residual) = if cmd.read && good {
            (edtl > 0, edtl)
        } else {
            (false, 0)
        };
        let status = response.status;
        self.conn.send_numbered(
            |stat_sn, bhs| {
                ScsiResponse {
                    bidi_overflow: false,
                    bidi_underflow: false,
                    overflow: false,
                    underflow,
                    response: 0,
                    status,
                    itt: cmd.itt,
                    exp_data_sn: 0,
                    stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                    bidi_residual_count: 0,
                    residual_count: residual,
                    data_segment_len: data_len as u32,
                }
                .encode(bhs)
            },
            data.get(..data_len).unwrap_or(&[]),
            true,
        )?;
        // FINISHED only once the status is out.
        drop(command);
        Ok(())
    }

    fn nop_out(&mut self, hdr: &[u8; BHS_LEN], bhs: &Bhs) -> core::result::Result<(), Ending> {
        let n = NopOutPdu::parse(hdr);
        let len = self.read_data(bhs.data_segment_len)?;
        if n.itt == RESERVED_TAG {
            // The answer to a NOP-In ping of ours, or a no-op: no reply.
            return Ok(());
        }
        if !self.accept_cmd_sn(n.cmd_sn, n.immediate) {
            return Ok(());
        }
        let (exp, max) = (self.window.exp_cmd_sn, self.window.max_cmd_sn());
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
        self.skip(padded(bhs.data_segment_len as usize))?;
        let _ = self.accept_cmd_sn(l.cmd_sn, l.immediate);
        // Reasons: 0 close the session, 1 close this connection (the only
        // one), 2 remove the connection for recovery (ERL 2: not supported).
        let response = if l.reason == 2 { 2 } else { 0 };
        let (exp, max) = (self.window.exp_cmd_sn, self.window.max_cmd_sn());
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
        let len = self.read_data(bhs.data_segment_len)?;
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
        let catalog = Catalog {
            drv: self.drv,
            local_ip: ip.get(..ip_len).unwrap_or(&[]),
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
        }
        let (exp, max) = (self.window.exp_cmd_sn, self.window.max_cmd_sn());
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

    fn task_mgmt(&mut self, hdr: &[u8; BHS_LEN], bhs: &Bhs) -> core::result::Result<(), Ending> {
        let t = TaskMgmtPdu::parse(hdr);
        self.skip(padded(bhs.data_segment_len as usize))?;
        let _ = self.accept_cmd_sn(t.cmd_sn, t.immediate);
        let lun = crate::scst_core::cdb::decode_lun(t.lun);
        let session = self.session.clone();
        let response = match (TmfFunction::from_u8(t.function), &session) {
            (_, None) => TmfResponse::Rejected,
            (Some(TmfFunction::AbortTask), Some(s)) => {
                let tag = t.referenced_task_tag;
                if let Some(i) = self.pending.iter().position(|w| w.pdu.itt == tag) {
                    // Waiting for data: it never ran; it ends here, unanswered.
                    drop(self.pending.swap_remove(i));
                    TmfResponse::Complete
                } else if s.abort_task(tag) {
                    // Executed inline, so it has completed already, or it
                    // never arrived.
                    if sn_lt(t.ref_cmd_sn, self.window.exp_cmd_sn) {
                        TmfResponse::Complete
                    } else {
                        TmfResponse::TaskDoesNotExist
                    }
                } else {
                    TmfResponse::Rejected
                }
            }
            (Some(TmfFunction::AbortTaskSet | TmfFunction::ClearTaskSet), Some(s)) => {
                let lun_raw = t.lun;
                self.drop_pending(|w| w.pdu.lun == lun_raw);
                match lun {
                    Some(l) if s.abort_task_set(l) => TmfResponse::Complete,
                    Some(_) => TmfResponse::Rejected,
                    None => TmfResponse::LunDoesNotExist,
                }
            }
            (Some(TmfFunction::LogicalUnitReset), Some(s)) => {
                let lun_raw = t.lun;
                self.drop_pending(|w| w.pdu.lun == lun_raw);
                match lun {
                    Some(l) if s.lun_reset(l) => TmfResponse::Complete,
                    Some(_) => TmfResponse::Rejected,
                    None => TmfResponse::LunDoesNotExist,
                }
            }
            (Some(TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset), Some(s)) => {
                self.drop_pending(|_| true);
                if s.target_reset() {
                    TmfResponse::Complete
                } else {
                    TmfResponse::Rejected
                }
            }
            (Some(TmfFunction::TaskReassign), Some(_)) => TmfResponse::ReassignmentNotSupported,
            (Some(TmfFunction::ClearAca), Some(_)) | (None, Some(_)) => TmfResponse::NotSupported,
        };
        let (exp, max) = (self.window.exp_cmd_sn, self.window.max_cmd_sn());
        self.conn.send_numbered(
            |stat_sn, b| {
                TaskMgmtResponse {
                    response: response as u8,
                    itt: t.itt,
                    stat_sn,
                    exp_cmd_sn: exp,
                    max_cmd_sn: max,
                }
                .encode(b)
            },
            &[],
            true,
        )?;
        if TmfFunction::from_u8(t.function) == Some(TmfFunction::TargetColdReset)
            && response == TmfResponse::Complete
        {
            // A cold reset also drops the connection (RFC 7143 11.5.1).
            return Err(Ending::Failed(EIO));
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

/// Serves a connection from login to close.
pub(crate) fn serve(drv: &Arc<DriverState>, conn: &Arc<Conn>) {
    let login = match super::login_phase::run(drv, conn) {
        Ok(l) => l,
        Err(e) => {
            pr_info!("iscsi: login failed: {:?}\n", e);
            return;
        }
    };
    conn.set_stat_sn(login.stat_sn);
    let session = login.session.clone();
    match Ffp::new(conn, drv, login.session, login.negotiated, login.exp_cmd_sn) {
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
