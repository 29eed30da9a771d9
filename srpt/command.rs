// SPDX-License-Identifier: GPL-2.0

//! An SRP command's way through a channel: decoded, recorded in the
//! session, its data-out copied from its unit (immediate data) or fetched
//! with RDMA READs, submitted to the core, and answered with its data-in
//! as RDMA WRITEs chained before SRP_RSP; and the task management
//! functions of SRP_TSK_MGMT.

use super::channel::{Held, SrpChannel, Tally};
use super::{data, iu};
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::rdma_channel::{Channel, PostError, Xfer};
use crate::kernel_ext::sg::SgList;
use crate::scst_core::{
    buffer::{CmdBuffer, LentId},
    cdb::decode_lun,
    cmd::{Context, TgtCmd, MAX_CDB_LEN},
    device::DataDirection,
    sense::{self, Sense, SenseFormat},
    session::{status, Command, Response},
    task_set::TaskAttr,
};
use kernel::{alloc::flags::GFP_KERNEL, prelude::*, sync::Arc};

/// The most data a command may move: what iSCSI takes too. Past it, a
/// command is refused rather than given that much memory.
const MAX_COMMAND_DATA: u32 = 32 << 20;

/// The most remote regions a command may name: more than a request unit
/// of `srp_max_req_size` carries.
const MAX_REGIONS: usize = 1024;

/// ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT (SPC-4): a
/// request whose descriptors this target cannot serve.
const INVALID_FIELD_IN_IU: Sense = Sense::new(sense::key::ILLEGAL_REQUEST, 0x0e, 0x03);

/// The longest SRP_RSP: the fixed part, response data, and sense.
pub(super) const RSP_MAX: usize = iu::RSP_LEN + 4 + crate::scst_core::sense::MAX_RAW_SENSE_LEN;

/// What of a command's request outlives its receive unit.
pub(super) struct CmdInfo {
    tag: [u8; 8],
    cdb: [u8; MAX_CDB_LEN],
    cdb_len: usize,
    direction: iu::Direction,
    /// The bytes the descriptors offer, and where they are.
    offered: u32,
    regions: Regions,
}

/// A command's remote regions: most name one (a direct descriptor, or
/// the one region an initiator registered), kept in place so that such a
/// command allocates no list.
#[derive(Default)]
enum Regions {
    #[default]
    None,
    One(data::Segment),
    Many(KVec<data::Segment>),
}

impl Regions {
    fn as_slice(&self) -> &[data::Segment] {
        match self {
            Self::None => &[],
            Self::One(s) => core::slice::from_ref(s),
            Self::Many(v) => v,
        }
    }
}

impl CmdInfo {
    fn cdb(&self) -> &[u8] {
        self.cdb.get(..self.cdb_len).unwrap_or(&[])
    }

    fn core_direction(&self) -> DataDirection {
        match self.direction {
            iu::Direction::None => DataDirection::None,
            iu::Direction::Out => DataDirection::Write,
            iu::Direction::In => DataDirection::Read,
        }
    }
}

/// SRP's task attribute codes (SRP-2, table 20: 0 SIMPLE, 1 HEAD OF
/// QUEUE, 2 ORDERED, 4 ACA; reserved values run as SIMPLE).
fn task_attr(code: u8) -> TaskAttr {
    match code {
        1 => TaskAttr::HeadOfQueue,
        2 => TaskAttr::Ordered,
        4 => TaskAttr::Aca,
        _ => TaskAttr::Simple,
    }
}

/// An SRP_CMD in send unit `slot` of `srp`: decoded and started.
pub(super) fn start(srp: &Arc<SrpChannel>, ch: Channel, slot: u32, bytes: &[u8]) {
    let cmd = match iu::Command::parse(bytes) {
        Ok(cmd) => cmd,
        Err(e) => {
            pr_peer!(
                pr_info,
                "ib_srpt: {}: malformed SRP_CMD ({:?})\n",
                &*srp.session().initiator,
                e
            );
            let tag = iu::tag_of(bytes).unwrap_or([0; 8]);
            let r = Response::check_condition(INVALID_FIELD_IN_IU, SenseFormat::Fixed);
            return answer(srp, &ch, slot, tag, r);
        }
    };
    let refused = |why: &dyn core::fmt::Debug| {
        pr_peer!(
            pr_info,
            "ib_srpt: {}: SRP_CMD refused ({:?})\n",
            &*srp.session().initiator,
            why
        );
        Response::check_condition(INVALID_FIELD_IN_IU, SenseFormat::Fixed)
    };
    let (mut segments, offered) =
        match data::segments(&cmd, bytes, MAX_REGIONS, srp.terms.immediate_offset) {
            Ok(s) => s,
            Err(e) => return answer(srp, &ch, slot, cmd.tag, refused(&e)),
        };
    if offered > MAX_COMMAND_DATA {
        return answer(srp, &ch, slot, cmd.tag, refused(&offered));
    }
    // Borrowed from the receive unit, which is posted again when this
    // returns: copied into the command's buffer below.
    let immediate = segments.immediate();
    let regions = match segments.regions() {
        0 | 1 => segments.next().map_or(Regions::None, Regions::One),
        n => {
            let mut v = KVec::new();
            if v.reserve(n, GFP_KERNEL).is_err() {
                return answer(srp, &ch, slot, cmd.tag, Response::status(status::BUSY));
            }
            for s in segments {
                // Reserved: no allocation.
                let _ = v.push(s, GFP_KERNEL);
            }
            Regions::Many(v)
        }
    };
    let mut info = CmdInfo {
        tag: cmd.tag,
        cdb: [0; MAX_CDB_LEN],
        cdb_len: cmd.cdb.len().min(MAX_CDB_LEN),
        direction: cmd.direction,
        offered,
        regions,
    };
    let n = info.cdb_len;
    info.cdb[..n].copy_from_slice(&cmd.cdb[..n]);
    let opcode = info.cdb.first().copied().unwrap_or(0);
    let mut command = srp.session().begin(
        cmd.lun,
        u64::from_be_bytes(cmd.tag),
        task_attr(cmd.task_attr),
        opcode,
    );
    let direction = info.core_direction();
    // Taken where nothing waits for a logical unit: a user-space
    // handler's memory when it has it ready, else pages of ours.
    let mut buf = match command.data_buffer(info.cdb(), offered as usize, direction, true) {
        Ok(buf) => buf,
        Err(_) => {
            drop(command);
            return answer(srp, &ch, slot, info.tag, Response::status(status::BUSY));
        }
    };
    if let Some(data) = immediate {
        // One copy of at most a unit's size, on this CPU, where an RDMA
        // READ would cost a round trip and a completion. (ib_srpt lends
        // the receive unit itself instead, and holds it until the
        // command ends; here a unit is posted again at once.)
        if buf.wants_data_out() && buf.sg().copy_from_slice(0, data) != data.len() {
            drop(command);
            return answer(srp, &ch, slot, info.tag, Response::status(status::BUSY));
        }
        return submit(srp, ch, slot, command, buf, info);
    }
    if info.direction == iu::Direction::Out && offered > 0 && buf.wants_data_out() {
        command.awaiting_data();
        let tally = Tally::new(srp, Held::DataOut);
        srp.fetch(
            &ch,
            slot,
            PendingWrite {
                command,
                buf,
                info,
                _tally: tally,
            },
        );
        return;
    }
    submit(srp, ch, slot, command, buf, info);
}

fn submit(
    srp: &Arc<SrpChannel>,
    ch: Channel,
    slot: u32,
    command: Command,
    buf: CmdBuffer,
    info: CmdInfo,
) {
    let direction = info.core_direction();
    let mut cdb = [0u8; MAX_CDB_LEN];
    let n = info.cdb_len;
    cdb[..n].copy_from_slice(&info.cdb[..n]);
    let cmd = SrpCmd {
        srp: srp.clone(),
        ch,
        slot: Some(slot),
        info,
        buf: Some(buf),
        _tally: Tally::new(srp, Held::InCore),
    };
    // A completion's workqueue: what its logical unit can do without
    // blocking runs right here, the rest on a core worker.
    command.submit(&cdb[..n], direction, cmd, Context::Direct);
}

/// Answers a request the core never saw.
fn answer(srp: &Arc<SrpChannel>, ch: &Channel, slot: u32, tag: [u8; 8], r: Response) {
    let rsp = iu::Response {
        tag,
        status: r.status,
        sense: r.sense(),
        ..Default::default()
    };
    srp.respond(ch, slot, rsp, None);
}

/// Says why a post failed, for a channel that is not closing.
pub(super) fn log_post_failure(what: &str, e: PostError) {
    if let PostError::Failed(e) = e {
        pr_peer!(pr_warn, "ib_srpt: {} not posted ({:?})\n", what, e);
    }
}

/// A command whose data-out is being fetched.
pub(super) struct PendingWrite {
    command: Command,
    buf: CmdBuffer,
    info: CmdInfo,
    _tally: Tally,
}

impl PendingWrite {
    /// The RDMA READs of its data-out, into its buffer.
    pub(super) fn xfer(
        &mut self,
        ch: &Channel,
        slot: u32,
    ) -> core::result::Result<Xfer, PostError> {
        let to = (self.info.regions.as_slice(), self.info.offered);
        transfer(ch, slot, &mut self.buf, to, false)
    }

    /// Its data-out arrived: to the core.
    pub(super) fn submit(self, srp: &Arc<SrpChannel>, ch: Channel, slot: u32) {
        submit(srp, ch, slot, self.command, self.buf, self.info);
    }
}

/// The transfer of the first `len` bytes of `buf` to or from `regions`
/// (`(regions, len)`), for the command of send unit `slot`.
fn transfer(
    ch: &Channel,
    slot: u32,
    buf: &mut CmdBuffer,
    (regions, len): (&[data::Segment], u32),
    write: bool,
) -> core::result::Result<Xfer, PostError> {
    let sg = &mut buf.sg();
    let n = regions
        .iter()
        .filter(|s| s.offset < len && s.region.len > 0)
        .count();
    let mut x = ch.xfer(slot, n as u32, write).map_err(PostError::Failed)?;
    for s in regions {
        if s.offset >= len || s.region.len == 0 {
            continue;
        }
        let l = s.region.len.min(len - s.offset);
        x.add(sg, s.offset, l, s.region.va, s.region.key)
            .map_err(|e| {
                if e == EAGAIN {
                    PostError::Full
                } else {
                    PostError::Failed(e)
                }
            })?;
    }
    Ok(x)
}

/// A command's data-in: its buffer, and where it goes.
pub(super) struct DataIn {
    pub(super) buf: CmdBuffer,
    regions: Regions,
    len: u32,
}

impl DataIn {
    /// The RDMA WRITEs of the data-in.
    pub(super) fn xfer(
        &mut self,
        ch: &Channel,
        slot: u32,
    ) -> core::result::Result<Xfer, PostError> {
        transfer(
            ch,
            slot,
            &mut self.buf,
            (self.regions.as_slice(), self.len),
            true,
        )
    }
}

/// A response parked until the send queue has room: the SRP_RSP as
/// encoded, and the data-in before it.
pub(super) struct PendingResponse {
    rsp: [u8; RSP_MAX],
    len: usize,
    data: Option<DataIn>,
}

impl PendingResponse {
    /// `encoded`, the SRP_RSP (at most [`RSP_MAX`] bytes), after `data`.
    pub(super) fn new(encoded: &[u8], data: Option<DataIn>) -> Self {
        let mut rsp = [0u8; RSP_MAX];
        let len = encoded.len().min(RSP_MAX);
        rsp[..len].copy_from_slice(&encoded[..len]);
        Self { rsp, len, data }
    }

    /// The SRP_RSP's bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        self.rsp.get(..self.len).unwrap_or(&[])
    }

    /// The RDMA WRITEs of its data-in, if it has any.
    pub(super) fn xfer(
        &mut self,
        ch: &Channel,
        slot: u32,
    ) -> core::result::Result<Option<Xfer>, PostError> {
        self.data.as_mut().map(|d| d.xfer(ch, slot)).transpose()
    }

    /// Its buffer, which must outlive the data-in's RDMA WRITEs.
    pub(super) fn take_buffer(&mut self) -> Option<CmdBuffer> {
        self.data.take().map(|d| d.buf)
    }
}

/// An SRP command as the core holds it, from its submission to its
/// response. Its send unit goes back when it drops without one.
pub(super) struct SrpCmd {
    srp: Arc<SrpChannel>,
    ch: Channel,
    slot: Option<u32>,
    info: CmdInfo,
    buf: Option<CmdBuffer>,
    _tally: Tally,
}

impl TgtCmd for SrpCmd {
    fn buffer(&mut self) -> SgList<'_> {
        match &mut self.buf {
            Some(buf) => buf.sg(),
            None => SgList::empty(),
        }
    }

    fn lent(&self) -> Option<LentId> {
        self.buf.as_ref().and_then(|b| b.lent_id())
    }

    fn staged_buffer(&mut self) -> Option<&mut CmdBuffer> {
        self.buf.as_mut().filter(|b| b.staged().is_some())
    }

    /// Sends the data-in and SRP_RSP: posted at once where the send queue
    /// has room (no thread between the core and the wire), else queued in
    /// the channel until a completion makes room.
    fn xmit_response(&mut self, response: Response) {
        let (Some(slot), Some(mut buf)) = (self.slot.take(), self.buf.take()) else {
            return;
        };
        buf.executed(response.data_in, response.status);
        let offered = self.info.offered;
        let residual = match response.transfer_len {
            Some(wanted) => data::transfer(wanted as u64, offered).1,
            None => 0,
        };
        let (data_in_residual, data_out_residual) = match self.info.direction {
            iu::Direction::In => (residual, 0),
            iu::Direction::Out => (0, residual),
            iu::Direction::None => (0, 0),
        };
        let len = (response.data_in as u64).min(u64::from(offered)) as u32;
        let data = if self.info.direction == iu::Direction::In && len > 0 {
            Some(DataIn {
                buf,
                regions: core::mem::take(&mut self.info.regions),
                len,
            })
        } else {
            None
        };
        let rsp = iu::Response {
            tag: self.info.tag,
            req_lim_delta: 0,
            status: response.status,
            data_in_residual,
            data_out_residual,
            sense: response.sense(),
            response_data: &[],
        };
        self.srp.respond(&self.ch, slot, rsp, data);
    }
}

impl Drop for SrpCmd {
    /// Ended without a response (aborted, or its channel closed).
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.srp.release_slot(slot, true);
        }
    }
}

/// SRP_TSK_MGMT, on the driver's workqueue: the function's outcome as
/// SRP-2 codes it, in an SRP_RSP with response data.
pub(super) fn task_mgmt(srp: &Arc<SrpChannel>, ch: &Channel, slot: u32, tm: &iu::TaskMgmt) {
    use iu::{tsk, tsk_response};
    let session = srp.session();
    let lun = decode_lun(tm.lun);
    let done = |ok: bool| {
        if ok {
            tsk_response::COMPLETE
        } else {
            tsk_response::FAILED
        }
    };
    let code = match (tm.function, lun) {
        // A task that is gone, or whose response is on its way, needs no
        // abort (SAM-5: FUNCTION COMPLETE).
        (tsk::ABORT_TASK, _) => match session.abort_task(u64::from_be_bytes(tm.task_tag)) {
            None | Some(true) => tsk_response::COMPLETE,
            Some(false) => tsk_response::FAILED,
        },
        (tsk::ABORT_TASK_SET, Some(l)) => done(session.abort_task_set(l)),
        (tsk::CLEAR_TASK_SET, Some(l)) => done(session.clear_task_set(l)),
        (tsk::LUN_RESET, Some(l)) => done(session.lun_reset(l)),
        (tsk::ABORT_TASK_SET | tsk::CLEAR_TASK_SET | tsk::LUN_RESET, None) => {
            tsk_response::INVALID_IU
        }
        // No ACA is ever established (NACA is refused), and the rest are
        // not SRP functions.
        _ => tsk_response::NOT_SUPPORTED,
    };
    pr_peer!(
        pr_info,
        "ib_srpt: {}: task management function {:#x}: response {}\n",
        &*session.initiator,
        tm.function,
        code
    );
    let rsp = iu::Response {
        tag: tm.tag,
        response_data: &[0, 0, 0, code],
        ..Default::default()
    };
    srp.respond(ch, slot, rsp, None);
}
