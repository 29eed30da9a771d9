// SPDX-License-Identifier: GPL-2.0

//! The responses of an iSCSI connection: the core's side of a command
//! (`IscsiCmd`), the window place it holds, and the connection's sender,
//! which sends queued responses in order so that no core worker waits for
//! the network.

use super::conn::{digest_of, digest_of_sg, Conn, Numbers, SenseSegment, PAD};
use super::pdu::*;
use super::DriverState;
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::net::PageSend;
use crate::kernel_ext::sg::SgList;
use crate::scst_core::buffer::{CmdBuffer, LentId};
use crate::scst_core::cmd::TgtCmd;
use crate::scst_core::session::Response;
use core::sync::atomic::Ordering;
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    prelude::*,
    sync::Arc,
};

/// The responses of a connection on their way to the wire.
pub(super) struct Outgoing {
    items: KVec<Reply>,
    /// A sender runs (or is queued) and sends until `items` is empty.
    sending: bool,
}

/// A response the connection's sender sends. Most are command replies,
/// so boxing those (an allocation per response) would not save memory.
#[allow(clippy::large_enum_variant)]
pub(super) enum Reply {
    /// Data-In and status of a command; its window place opens as they
    /// are sent.
    Command {
        pdu: ScsiCommandPdu,
        buf: CmdBuffer,
        response: Response,
        slot: WindowSlot,
    },
    /// A task management response; `then_close` for a cold reset, which
    /// drops the connection once answered (RFC 7143 11.5.1).
    TaskMgmt {
        itt: u32,
        response: TmfResponse,
        then_close: bool,
    },
}

/// A window place a non-immediate SCSI command holds until it finishes
/// (MaxCmdSN opens again then).
pub(super) struct WindowSlot {
    conn: Option<Arc<Conn>>,
}

impl WindowSlot {
    /// Takes a place (before ExpCmdSN advances past the command).
    pub(super) fn take(conn: &Arc<Conn>, immediate: bool) -> Self {
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
pub(super) struct IscsiCmd {
    pub(super) conn: Arc<Conn>,
    pub(super) drv: Arc<DriverState>,
    pub(super) pdu: ScsiCommandPdu,
    /// Taken by the response.
    pub(super) body: Option<(CmdBuffer, WindowSlot)>,
}

impl TgtCmd for IscsiCmd {
    fn buffer(&mut self) -> SgList<'_> {
        match &mut self.body {
            Some((buf, _)) => buf.sg(),
            None => SgList::empty(),
        }
    }

    fn lent(&self) -> Option<LentId> {
        self.body.as_ref().and_then(|(buf, _)| buf.lent_id())
    }

    fn staged_buffer(&mut self) -> Option<&mut CmdBuffer> {
        self.body
            .as_mut()
            .map(|(buf, _)| buf)
            .filter(|buf| buf.staged().is_some())
    }

    /// Hands the response to the connection's sender: a core worker never
    /// waits for the network (an initiator that stops reading stalls only
    /// its own connection). The buffer goes with it and is freed, or given
    /// back to its lender, once sent.
    fn xmit_response(&mut self, response: Response) {
        let Some((mut buf, slot)) = self.body.take() else {
            return;
        };
        buf.executed(response.data_in, response.status);
        self.conn.queue_reply(
            &self.drv,
            Reply::Command {
                pdu: self.pdu,
                buf,
                response,
                slot,
            },
        );
    }
}

impl Conn {
    /// Queues `reply` for the connection's sender, starting one on the
    /// driver's workqueue when none runs. Responses leave in the order
    /// they are queued: a command's before the answer to the task
    /// management that waited for it.
    pub(super) fn queue_reply(self: &Arc<Self>, drv: &Arc<DriverState>, reply: Reply) {
        let start = {
            let mut out = self.outgoing.lock();
            if out.items.len() == out.items.capacity() && out.items.reserve(1, GFP_ATOMIC).is_err()
            {
                // No memory to keep the order of responses: the
                // connection fails (ErrorRecoveryLevel 0).
                drop(out);
                pr_peer!(
                    pr_warn,
                    "iscsi: no memory for a response: closing the connection\n"
                );
                self.close();
                return;
            }
            // Room is there: the push does not allocate.
            let _ = out.items.push(reply, GFP_ATOMIC);
            !core::mem::replace(&mut out.sending, true)
        };
        if !start {
            return;
        }
        let conn = self.clone();
        let spawned = {
            let inner = drv.inner.lock();
            match inner.wq.as_ref() {
                Some(wq) => wq
                    .queue()
                    .try_spawn(GFP_KERNEL, move || conn.drain_replies())
                    .is_ok(),
                None => false,
            }
        };
        if !spawned {
            self.drain_replies();
        }
    }

    /// The sender: sends queued replies until none is left.
    fn drain_replies(&self) {
        loop {
            let reply = {
                let mut out = self.outgoing.lock();
                match out.items.remove_ordered(0) {
                    Some(r) => r,
                    None => {
                        out.sending = false;
                        return;
                    }
                }
            };
            self.send_reply(reply);
        }
    }

    fn send_reply(&self, reply: Reply) {
        let sent = match reply {
            Reply::Command {
                pdu,
                mut buf,
                response,
                slot,
            } => {
                // Its window place opens as its status leaves, so that the
                // status carries the MaxCmdSN that admits the next command:
                // an initiator that keeps the window full (QueuedCommands
                // commands outstanding) need not wait for a later PDU.
                drop(slot);
                self.send_response(&pdu, &mut buf, &response)
            }
            Reply::TaskMgmt {
                itt,
                response,
                then_close,
            } => {
                let sent = self.send_tm_response(itt, response);
                if then_close {
                    self.close();
                }
                sent
            }
        };
        if sent.is_err() {
            // The receive loop sees the closed socket and ends the
            // session; what is still queued fails at once.
            self.close();
        }
    }

    /// Sends the data-in and the status of a command.
    fn send_response(
        &self,
        cmd: &ScsiCommandPdu,
        buf: &mut CmdBuffer,
        response: &Response,
    ) -> Result {
        let edtl = cmd.expected_data_transfer_length;
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
                let Numbers { stat_sn, exp, max } = self.numbers(&mut tx);
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
                    stat_sn,
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
    pub(super) fn send_status(
        &self,
        itt: u32,
        status: u8,
        sense: &[u8],
        residual: Residual,
        data_in_pdus: u32,
    ) -> Result {
        let segment = SenseSegment::new(sense);
        self.send_numbered(
            |Numbers { stat_sn, exp, max }, bhs| {
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
    pub(super) fn send_tm_response(&self, itt: u32, response: TmfResponse) -> Result {
        self.send_numbered(
            |Numbers { stat_sn, exp, max }, b| {
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

impl Outgoing {
    pub(super) fn new() -> Self {
        Self {
            items: KVec::new(),
            sending: false,
        }
    }
}
