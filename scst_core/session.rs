// SPDX-License-Identifier: GPL-2.0

//! Sessions (I_T nexuses), their LUN views (I_T_L nexuses, `TgtDev`), unit
//! attentions, and the life cycle of a SCSI command.
//!
//! # Commands
//!
//! A target driver records a received command with [`Session::begin`]
//! (INIT), may ask for its buffer with [`Command::data_buffer`], and hands
//! it to the core with [`Command::submit`]; `cmd.rs` has the whole life
//! cycle. What the core itself answers (REPORT LUNS, REQUEST SENSE, unit
//! attentions, absent LUNs) is decided here, in [`Command::dispatch`].

use super::alua::PortView;
use super::buffer::{BufferRequest, CmdBuffer, DataBudget, LendRefused, Lending, LentId};
use super::cdb::{self, Cdb, Out};
use super::cmd::{Defer, State};
use super::device::{
    Completion, DataDirection, DeviceState, ExecCmd, Executed, NexusInfo, RawStatus, TaskMgmt,
    TmFunction,
};
use super::device_groups::{self, AluaCheck};
use super::extended_copy::{self, CopyCommand, HELD_RESULTS};
use super::pr::TransportId;
use super::reservation::{self, Intercept};
use super::sense::{self, Sense, SenseFormat, MAX_RAW_SENSE_LEN};
use super::task_set::{Refusal, TaskAttr, Ticket};
use super::xcopy::CopyStatus;
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::sg::SgList;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    new_condvar, new_spinlock,
    prelude::*,
    str::CString,
    sync::{Arc, CondVar, SpinLock},
    time::msecs_to_jiffies,
};

/// SCSI status codes (SAM-5 table 33).
pub(crate) mod status {
    /// GOOD.
    pub(crate) const GOOD: u8 = 0x00;
    /// CHECK CONDITION.
    pub(crate) const CHECK_CONDITION: u8 = 0x02;
    /// BUSY.
    pub(crate) const BUSY: u8 = 0x08;
    /// RESERVATION CONFLICT.
    pub(crate) const RESERVATION_CONFLICT: u8 = 0x18;
    /// TASK SET FULL.
    pub(crate) const TASK_SET_FULL: u8 = 0x28;
    /// TASK ABORTED.
    pub(crate) const TASK_ABORTED: u8 = 0x40;
}

/// Unit attentions queued on one I_T_L nexus, oldest first.
pub(crate) struct UaQueue {
    items: [Option<Sense>; UA_QUEUE_LEN],
}

/// Unit attentions kept per nexus; further ones of the same kind merge.
const UA_QUEUE_LEN: usize = 8;

impl UaQueue {
    const fn new() -> Self {
        Self {
            items: [None; UA_QUEUE_LEN],
        }
    }

    fn push(&mut self, ua: Sense) {
        if self
            .items
            .iter()
            .flatten()
            .any(|s| s.asc == ua.asc && s.ascq == ua.ascq)
        {
            return;
        }
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(ua);
        } else if let Some(last) = self.items.last_mut() {
            // Full: a reset-class condition supersedes the newest one.
            *last = Some(ua);
        }
    }

    fn pop(&mut self) -> Option<Sense> {
        // Every command looks: most find none, and nothing to shift.
        let first = self.items[0].take()?;
        self.items.rotate_left(1);
        Some(first)
    }

    fn clear(&mut self) {
        self.items = [None; UA_QUEUE_LEN];
    }
}

/// An I_T_L nexus: a LUN as one session sees it.
#[pin_data]
pub(crate) struct TgtDev {
    pub(crate) lun: u64,
    pub(crate) read_only: bool,
    pub(crate) dev: Arc<DeviceState>,
    /// [`NexusInfo::id`]; the logical unit hears of the nexus' end when
    /// this drops.
    attached: Attached,
    #[pin]
    ua: SpinLock<UaQueue>,
    /// Commands of this nexus in the device's task set (changed under
    /// the task set's lock).
    pub(crate) active: AtomicU32,
    /// Workers executing this nexus' commands (changed under the device's
    /// pool lock).
    pub(crate) running: AtomicU32,
    /// The session's initiator port (for reservations).
    pub(crate) port: TransportId,
    /// The target the session is on (its relative target port id).
    pub(crate) target: Arc<TargetState>,
    /// Commands of this nexus in EXEC, from the moment they start until
    /// their logical unit is done with them (deferred ones included).
    pub(crate) executing: AtomicU32,
    /// Bumped when PREEMPT AND ABORT fences this nexus: every command it
    /// admitted before is aborted.
    pub(crate) abort_epoch: AtomicU64,
    /// ALUA as this nexus sees it, a packed [`PortView`] (0: its device
    /// is in no device group); set by the device under its view's lock.
    pub(crate) alua: AtomicU32,
    /// Results of this nexus' EXTENDED COPY lists held for RECEIVE COPY
    /// RESULTS, newest first.
    #[pin]
    pub(crate) copy_results: SpinLock<[Option<CopyStatus>; HELD_RESULTS]>,
}

/// Numbers the I_T_L nexuses of the module's lifetime.
static NEXT_NEXUS_ID: AtomicU64 = AtomicU64::new(1);

/// Tells a logical unit that one of its nexuses ended.
struct Attached {
    id: u64,
    dev: Arc<DeviceState>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        // I_T nexus loss ends its SPC-2 reservation.
        self.dev.nexus_lost(self.id);
        self.dev.lu.nexus_detached(self.id);
    }
}

impl TgtDev {
    fn new(
        lun: u64,
        read_only: bool,
        dev: Arc<DeviceState>,
        session: &Session,
    ) -> Result<Arc<Self>> {
        let id = NEXT_NEXUS_ID.fetch_add(1, Ordering::Relaxed);
        dev.lu.nexus_attached(&NexusInfo {
            id,
            lun,
            read_only,
            initiator: &session.initiator,
            target: &session.target.name,
            threads_num: dev.threads_num.load(Ordering::Relaxed),
        });
        let attached = Attached {
            id,
            dev: dev.clone(),
        };
        Arc::pin_init(
            pin_init!(Self {
                lun,
                read_only,
                dev,
                attached,
                ua <- new_spinlock!(UaQueue::new()),
                active: AtomicU32::new(0),
                running: AtomicU32::new(0),
                port: session.port,
                target: session.target.clone(),
                executing: AtomicU32::new(0),
                abort_epoch: AtomicU64::new(0),
                alua: AtomicU32::new(0),
                copy_results <- new_spinlock!([None; HELD_RESULTS]),
            }),
            GFP_KERNEL,
        )
    }

    /// Queues a unit attention for this nexus.
    pub(crate) fn queue_ua(&self, ua: Sense) {
        self.ua.lock().push(ua);
    }

    fn take_ua(&self) -> Option<Sense> {
        self.ua.lock().pop()
    }

    /// The core's number for this nexus ([`NexusInfo::id`]).
    pub(crate) fn id(&self) -> u64 {
        self.attached.id
    }
}

/// The target-wide settings a session reads on every command.
pub(crate) struct TargetState {
    /// The target's name, for handlers that want to know the I_T nexus.
    pub(crate) name: CString,
    pub(crate) rel_tgt_id: AtomicU16,
    pub(crate) enabled: AtomicBool,
}

/// One LUN a session is to see: number, device, read-only flag.
pub(crate) struct LunView {
    pub(crate) lun: u64,
    pub(crate) dev: Arc<DeviceState>,
    pub(crate) read_only: bool,
}

/// A command in flight on a session.
#[derive(Clone, Copy)]
struct InFlightEntry {
    /// Its tag (what ABORT TASK names).
    tag: u64,
    /// Its LUN, `u64::MAX` for an undecodable one.
    lun: u64,
    /// Task management aborted it: it is not to execute.
    aborted: bool,
    /// Its response is on its way (XMIT_RESP): too late to abort, and
    /// ABORT TASK finds no task to abort (RFC 7143 11.6.1: the initiator
    /// gets the response and TASK DOES NOT EXIST, never both the response
    /// and FUNCTION COMPLETE).
    responding: bool,
}

/// Commands in flight on a session.
struct InFlight {
    commands: KVec<InFlightEntry>,
    /// Task management functions waiting for commands to finish: a
    /// command that finishes wakes them only if there are any.
    quiescing: usize,
}

/// The outcome of a command, for the target driver to send.
pub(crate) struct Response {
    pub(crate) status: u8,
    pub(crate) sense: [u8; MAX_RAW_SENSE_LEN],
    pub(crate) sense_len: usize,
    /// Bytes of data-in at the start of the buffer.
    pub(crate) data_in: usize,
    /// Bytes the CDB asked to move, when the command got that far (see
    /// [`Completion::transfer_len`]).
    pub(crate) transfer_len: Option<usize>,
}

impl Response {
    /// GOOD with `data_in` bytes of data-in, of `transfer_len` the
    /// command asked for.
    pub(crate) fn data_in(data_in: usize, transfer_len: usize) -> Self {
        Self::good(data_in, transfer_len)
    }

    fn good(data_in: usize, transfer_len: usize) -> Self {
        Self {
            status: status::GOOD,
            sense: [0; MAX_RAW_SENSE_LEN],
            sense_len: 0,
            data_in,
            transfer_len: Some(transfer_len),
        }
    }

    /// The status and sense a logical unit built.
    pub(crate) fn from_raw(raw: RawStatus) -> Self {
        Self::status(status::GOOD).with_raw(raw)
    }

    /// Takes the status and sense a logical unit built.
    fn with_raw(mut self, raw: RawStatus) -> Self {
        self.status = raw.status;
        self.sense_len = raw.sense_len.min(self.sense.len());
        self.sense[..self.sense_len].copy_from_slice(&raw.sense[..self.sense_len]);
        self
    }

    /// A status without data or sense.
    pub(crate) fn status(status: u8) -> Self {
        let mut r = Self::good(0, 0);
        r.transfer_len = None;
        r.status = status;
        r
    }

    /// CHECK CONDITION with `sense`.
    pub(crate) fn check_condition(sense: Sense, format: SenseFormat) -> Self {
        let mut r = Self::status(status::GOOD);
        r.status = status::CHECK_CONDITION;
        r.sense_len = sense.encode(format, &mut r.sense);
        r
    }

    /// The sense bytes.
    pub(crate) fn sense(&self) -> &[u8] {
        self.sense.get(..self.sense_len).unwrap_or(&[])
    }
}

/// A command between INIT and FINISHED, as recorded: dropping it is
/// FINISHED (see `cmd.rs`).
pub(crate) struct Command {
    session: Arc<Session>,
    tag: u64,
    lun: Option<u64>,
    /// The in-flight set holds the command (it was not full).
    tracked: bool,
    /// Where the command is (see `cmd.rs`).
    pub(super) state: State,
    /// The session's abort generation at INIT: while it stays, no task
    /// management of the session aborted anything since.
    abort_gen: u64,
    /// Its device's abort epoch at INIT: a LUN reset, target reset or
    /// CLEAR TASK SET since aborts it.
    dev_epoch: u64,
    /// Its nexus' abort epoch at INIT: a PREEMPT AND ABORT of another
    /// nexus since aborts it.
    nexus_epoch: u64,
    /// The I_T_L nexus, when the LUN exists.
    pub(super) tgt_dev: Option<Arc<TgtDev>>,
    /// The command's place in the device's task set, or why it got none.
    pub(super) admission: Option<core::result::Result<Ticket, Refusal>>,
    /// Its logical unit ended it while lending it memory (its handler
    /// refused it, timed out or replied with garbage), or the session's
    /// data budget refused it: the answer, instead of executing. Kept
    /// here rather than with the buffer, which moves more.
    pub(super) refused: Option<LendRefused>,
}

impl Command {
    /// Moves the command to `next`, counting it in its nexus' executing
    /// commands while in EXEC.
    pub(super) fn set_state(&mut self, next: State) {
        let was = self.state == State::Exec;
        let is = next == State::Exec;
        if was != is {
            if let Some(t) = &self.tgt_dev {
                if is {
                    t.executing.fetch_add(1, Ordering::AcqRel);
                } else {
                    t.executing.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        self.state = next;
    }

    /// The buffer for the command's `len` bytes of data, for a target
    /// driver that receives data-out into it and sends data-in from it:
    /// memory the logical unit lends (no copy to and from its backend), or
    /// new pages. May allocate; `nowait` (a receive loop), it never waits
    /// for the logical unit: where lending would (a user-space handler's
    /// PARSE or ALLOC_MEM), the pages only stage the data-out, and the
    /// logical unit lends on the worker that executes the command
    /// ([`Self::lend_staged`]).
    pub(crate) fn data_buffer(
        &mut self,
        cdb: &[u8],
        len: usize,
        direction: DataDirection,
        nowait: bool,
    ) -> Result<CmdBuffer> {
        self.state = State::PrepareSpace;
        let lender = match (&self.tgt_dev, self.admission) {
            (Some(t), Some(Ok(_))) if len > 0 && direction != DataDirection::None => t,
            (Some(_), Some(Ok(_))) => return self.own_buffer(len),
            // Refused, or for an absent LUN: the core answers, with at most
            // its own data-in, and takes no data-out. Nothing of the
            // initiator's length is allocated before it is admitted.
            _ => {
                let data_in = match direction {
                    DataDirection::Read => len.min(CORE_DATA_IN_MAX),
                    _ => 0,
                };
                return CmdBuffer::answered(data_in);
            }
        };
        let req = BufferRequest {
            cdb,
            len,
            direction,
            nexus: lender.attached.id,
            tag: self.tag,
            nowait,
        };
        match lender.dev.lu.as_arc_borrow().lend_buffer(&req) {
            Ok(Lending::Lent(buf)) => match CmdBuffer::lent(buf, len) {
                Some(lent) => Ok(lent),
                None => self.own_buffer(len),
            },
            Ok(Lending::NotLent) => self.own_buffer(len),
            Ok(Lending::WouldBlock) => {
                let data_out = match direction {
                    DataDirection::Write => len,
                    _ => 0,
                };
                Ok(self.own_buffer(data_out)?.stage(len))
            }
            Err(s) => {
                self.refused = Some(s);
                CmdBuffer::answered(0)
            }
        }
    }

    /// PREPARE_SPACE, late: the logical unit lends the memory it would not
    /// lend without waiting (see [`Self::data_buffer`]), and the data-out
    /// staged meanwhile is copied into it. A core worker (process context,
    /// may sleep), before EXEC; nothing to do for a buffer not staged.
    pub(crate) fn lend_staged(
        &mut self,
        cdb: &[u8],
        direction: DataDirection,
        buf: &mut CmdBuffer,
    ) {
        let Some(len) = buf.staged() else {
            return;
        };
        let state = self.state;
        let new = self.data_buffer(cdb, len, direction, false);
        self.state = state;
        let write = direction == DataDirection::Write;
        match new {
            // Not lent after all: the staged pages hold the data-out.
            Ok(new) if write && new.lent_id().is_none() && self.refused.is_none() => buf.unstage(),
            Ok(mut new) => {
                if write && new.wants_data_out() {
                    let src = buf.sg();
                    new.sg().copy_from_sg(&src, len);
                }
                *buf = new;
            }
            Err(_) if write => buf.unstage(),
            // No room for the data-in.
            Err(_) => {
                buf.refuse();
                self.refused = Some(LendRefused::Status(RawStatus::bare(status::BUSY)));
            }
        }
    }

    /// `len` bytes of new pages, within the session's data budget; past
    /// it, a buffer of a command answered TASK SET FULL (or BUSY).
    fn own_buffer(&mut self, len: usize) -> Result<CmdBuffer> {
        match self.session.data.charge(len) {
            Ok(charge) => CmdBuffer::own(len, Some(charge)),
            Err(holds) => {
                let status = if holds {
                    self.session.task_set_full.fetch_add(1, Ordering::Relaxed);
                    status::TASK_SET_FULL
                } else {
                    self.session.busy.fetch_add(1, Ordering::Relaxed);
                    status::BUSY
                };
                pr_peer!(
                    pr_info,
                    "scst: {}: {} bytes of command data held: a command of {} answered {:#x}\n",
                    &*self.session.initiator,
                    self.session.data.used(),
                    len,
                    status
                );
                self.refused = Some(LendRefused::Status(RawStatus::bare(status)));
                CmdBuffer::answered(0)
            }
        }
    }

    /// DATA_WAIT: the driver is receiving the data-out.
    pub(crate) fn awaiting_data(&mut self) {
        self.state = State::DataWait;
    }

    /// Whether task management aborted the command since INIT (checked
    /// before it executes, and before its response: an aborted command
    /// that was executing runs to its end, then has none).
    pub(super) fn is_aborted(&self) -> bool {
        self.aborted_by().is_some()
    }

    /// Which nexus' task management aborted the command, if any did.
    pub(super) fn aborted_by(&self) -> Option<AbortedBy> {
        if let Some(t) = &self.tgt_dev {
            if t.abort_epoch.load(Ordering::Acquire) != self.nexus_epoch {
                return Some(AbortedBy::AnotherNexus);
            }
            if t.dev.reset_epoch.load(Ordering::Acquire) != self.dev_epoch {
                return Some(if t.dev.aborted_by_nexus(t.attached.id) {
                    AbortedBy::ItsNexus
                } else {
                    AbortedBy::AnotherNexus
                });
            }
        }
        if !self.tracked || self.session.abort_gen.load(Ordering::Acquire) == self.abort_gen {
            return None;
        }
        let lun = self.lun.unwrap_or(u64::MAX);
        self.session
            .in_flight
            .lock()
            .commands
            .iter()
            .any(|e| e.tag == self.tag && e.lun == lun && e.aborted)
            .then_some(AbortedBy::ItsNexus)
    }

    /// Commits the command to its response unless task management aborted
    /// it first; from here on ABORT TASK leaves it alone. Whether it may
    /// respond.
    pub(super) fn commit_response(&self) -> bool {
        if !self.tracked {
            return true;
        }
        let lun = self.lun.unwrap_or(u64::MAX);
        let mut f = self.session.in_flight.lock();
        match f
            .commands
            .iter_mut()
            .find(|e| e.tag == self.tag && e.lun == lun)
        {
            Some(e) if e.aborted => false,
            Some(e) => {
                e.responding = true;
                true
            }
            None => true,
        }
    }

    /// How an aborted command ends: without a response, or, aborted by
    /// another nexus while its logical unit's control page has TAS set,
    /// with TASK ABORTED status. `None` for a command not aborted.
    pub(super) fn abort_response(&self) -> Option<Option<Response>> {
        let by = self.aborted_by()?;
        let tas = self
            .tgt_dev
            .as_ref()
            .is_some_and(|t| t.dev.lu.task_aborted_status());
        Some((by == AbortedBy::AnotherNexus && tas).then(|| Response::status(status::TASK_ABORTED)))
    }

    /// EXEC: the core's answer or the logical unit's, on `data`. Runs
    /// where the command is executed: a core worker, or the submitting
    /// context for commands that reach no logical unit and, `nowait`,
    /// for those that may not block there.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dispatch(
        &self,
        cdb: &[u8],
        data: &mut SgList<'_>,
        direction: DataDirection,
        lent: Option<LentId>,
        defer: Option<&dyn Defer>,
        nowait: bool,
    ) -> Dispatched {
        let refused = match self.admission {
            Some(Err(Refusal::TaskSetFull)) => Some(status::TASK_SET_FULL),
            Some(Err(Refusal::Busy)) => Some(status::BUSY),
            _ if !self.tracked => Some(status::BUSY),
            _ => None,
        };
        if let Some(s) = refused {
            return Dispatched::Now(Response::status(s));
        }
        self.session.dispatch(
            self.tgt_dev.as_ref(),
            self.tag,
            cdb,
            data,
            direction,
            lent,
            defer,
            nowait,
            &|| self.is_aborted(),
        )
    }
}

/// Whose task management aborted a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AbortedBy {
    /// The command's own I_T nexus.
    ItsNexus,
    /// Another initiator's (CLEAR TASK SET, LUN RESET, TARGET RESET).
    AnotherNexus,
}

/// What dispatching a command to its logical unit gave.
pub(super) enum Dispatched {
    /// The response.
    Now(Response),
    /// The logical unit completes the command later: it ends with `done`,
    /// or with CHECK CONDITION and `failed`.
    Later { done: Completion, failed: Sense },
    /// Tried without blocking, the command would block: it goes to a
    /// worker, as if it had not been tried.
    WouldBlock,
}

/// DEV_DONE: the response to a command `tgt_dev`'s logical unit executed;
/// a command that changed what the device's other nexuses see tells them.
pub(super) fn response_of(tgt_dev: &TgtDev, result: Result<Completion, Sense>) -> Response {
    match result {
        Ok(done) => {
            if let Some(ua) = done.others_ua {
                tgt_dev.dev.raise_ua(ua, Some(tgt_dev));
            }
            let r = Response::good(done.data_in, done.transfer_len);
            match done.raw {
                Some(raw) => r.with_raw(raw),
                None => r,
            }
        }
        Err(s) => Response::check_condition(s, tgt_dev.dev.lu.sense_format()),
    }
}

impl Drop for Command {
    /// FINISHED: out of the task set and the in-flight set; commands and
    /// task management waiting for it wake.
    fn drop(&mut self) {
        self.set_state(State::Finished);
        if let (Some(t), Some(Ok(ticket))) = (&self.tgt_dev, self.admission) {
            t.dev.end(t, ticket);
        }
        if self.tracked {
            let mut f = self.session.in_flight.lock();
            let lun = self.lun.unwrap_or(u64::MAX);
            if let Some(i) = f
                .commands
                .iter()
                .position(|e| e.tag == self.tag && e.lun == lun)
            {
                f.commands.swap_remove(i);
            }
            // Seen under the lock a waiter registers under before it
            // sleeps: none is missed.
            let quiescing = f.quiescing > 0;
            drop(f);
            if quiescing {
                self.session.quiesced.notify_all();
            }
        }
    }
}

/// Longest data-in the core builds itself (REPORT LUNS, and INQUIRY and
/// REQUEST SENSE for an absent LUN).
const CORE_DATA_IN_MAX: usize = 4096;

/// Commands a session may have in flight: beyond any driver's window
/// (iSCSI's largest QueuedCommands is 2048) with room for immediate ones.
const MAX_SESSION_COMMANDS: usize = 2048 + 256;

/// How long task management waits for commands to finish before failing.
const QUIESCE_TIMEOUT_MS: u32 = 30_000;
/// How often the wait re-checks (a notification may race with the check).
const QUIESCE_POLL_MS: u32 = 100;

/// An I_T nexus.
#[pin_data]
pub(crate) struct Session {
    pub(crate) initiator: CString,
    /// The initiator port, as reservations identify it.
    pub(crate) port: TransportId,
    pub(crate) target: Arc<TargetState>,
    #[pin]
    luns: SpinLock<KVec<Arc<TgtDev>>>,
    #[pin]
    in_flight: SpinLock<InFlight>,
    #[pin]
    quiesced: CondVar,
    pub(crate) commands: AtomicU64,
    /// Bumped each time task management marks commands aborted.
    abort_gen: AtomicU64,
    /// Commands refused with TASK SET FULL.
    pub(crate) task_set_full: AtomicU64,
    /// Commands refused with BUSY.
    pub(crate) busy: AtomicU64,
    /// The target's own pages its commands' buffers hold.
    data: Arc<DataBudget>,
}

impl Session {
    /// A session of `initiator` on a target, with no LUNs yet.
    pub(crate) fn new(
        initiator: &str,
        port: TransportId,
        target: Arc<TargetState>,
    ) -> Result<Arc<Self>> {
        // Reserved so that the command path never allocates; a command
        // past it is refused with BUSY, never lost to task management.
        let commands = KVec::with_capacity(MAX_SESSION_COMMANDS, GFP_KERNEL)?;
        let initiator = super::cstring(initiator)?;
        let data = DataBudget::new()?;
        Arc::pin_init(
            pin_init!(Self {
                initiator,
                port,
                target,
                luns <- new_spinlock!(KVec::new()),
                in_flight <- new_spinlock!(InFlight {
                    commands,
                    quiescing: 0,
                }),
                quiesced <- new_condvar!(),
                commands: AtomicU64::new(0),
                abort_gen: AtomicU64::new(0),
                task_set_full: AtomicU64::new(0),
                busy: AtomicU64::new(0),
                data,
            }),
            GFP_KERNEL,
        )
    }

    /// Replaces the session's LUNs with `views`. Nexuses that stay keep
    /// their unit attentions; when the set changes, every nexus gets
    /// REPORTED LUNS DATA HAS CHANGED (a LUN number may now name another
    /// device). `first` marks a new I_T nexus, whose
    /// LUNs all get POWER ON, RESET OR BUS DEVICE RESET OCCURRED. Returns
    /// one of the LUNs that got REPORTED LUNS DATA HAS CHANGED, if any did.
    pub(crate) fn set_luns(&self, views: &[LunView], first: bool) -> Result<Option<u64>> {
        let current = self.snapshot()?;
        let mut next = KVec::with_capacity(views.len(), GFP_KERNEL)?;
        let mut created: KVec<Arc<TgtDev>> = KVec::new();
        for v in views {
            let kept = current.iter().find(|t| {
                t.lun == v.lun && t.read_only == v.read_only && Arc::ptr_eq(&t.dev, &v.dev)
            });
            match kept {
                Some(t) => next.push(t.clone(), GFP_KERNEL)?,
                None => {
                    let t = TgtDev::new(v.lun, v.read_only, v.dev.clone(), self)?;
                    if first {
                        t.queue_ua(sense::RESET_OCCURRED);
                    }
                    created.push(t.clone(), GFP_KERNEL)?;
                    next.push(t, GFP_KERNEL)?;
                }
            }
        }
        for (i, t) in created.iter().enumerate() {
            if let Err(e) = t.dev.attach(t.clone()) {
                for undo in created.iter().take(i) {
                    undo.dev.detach(undo);
                }
                return Err(e);
            }
        }
        let changed = !created.is_empty() || next.len() != current.len();
        let old = core::mem::replace(&mut *self.luns.lock(), next);
        drop(old);
        let now = self.snapshot()?;
        for o in current.iter() {
            if !now.iter().any(|t| Arc::ptr_eq(o, t)) {
                o.dev.detach(o);
            }
        }
        if changed && !first {
            for t in now.iter() {
                t.queue_ua(sense::REPORTED_LUNS_DATA_CHANGED);
            }
            return Ok(now.first().map(|t| t.lun));
        }
        Ok(None)
    }

    /// The session's nexuses, as counted references.
    fn snapshot(&self) -> Result<KVec<Arc<TgtDev>>> {
        let luns = self.luns.lock();
        let mut v = KVec::with_capacity(luns.len(), GFP_ATOMIC)?;
        for t in luns.iter() {
            v.push(t.clone(), GFP_ATOMIC)?;
        }
        Ok(v)
    }

    /// Drops every LUN (session teardown).
    pub(crate) fn clear_luns(&self) {
        let old = core::mem::replace(&mut *self.luns.lock(), KVec::new());
        for t in old.iter() {
            t.dev.detach(t);
        }
    }

    /// The LUN numbers the session sees, ascending.
    pub(crate) fn lun_numbers(&self, out: &mut KVec<u64>) -> Result {
        out.clear();
        for t in self.luns.lock().iter() {
            out.push(t.lun, GFP_ATOMIC)?;
        }
        // Insertion sort: a few LUNs, and no panicking library sort in
        // module code.
        let v = out.as_mut_slice();
        for i in 1..v.len() {
            let mut j = i;
            while j > 0 && v[j - 1] > v[j] {
                v.swap(j - 1, j);
                j -= 1;
            }
        }
        Ok(())
    }

    fn find(&self, lun: u64) -> Option<Arc<TgtDev>> {
        self.luns.lock().iter().find(|t| t.lun == lun).cloned()
    }

    /// INIT: records a received command as in flight, from now until the
    /// returned [`Command`] is dropped (after XMIT), so that task
    /// management waits for it even while it is queued for execution, and
    /// places it in its device's task set in arrival order (`attr`, or what
    /// its operation code `opcode` needs, decides what it waits for; a full
    /// task set refuses it).
    pub(crate) fn begin(
        self: &Arc<Self>,
        lun: [u8; 8],
        tag: u64,
        attr: TaskAttr,
        opcode: u8,
    ) -> Command {
        let attr = attr.for_opcode(opcode);
        self.commands.fetch_add(1, Ordering::Relaxed);
        let lun = cdb::decode_lun(lun);
        let tracked = {
            let mut f = self.in_flight.lock();
            // Reserved in `new`: with room left the push does not allocate.
            f.commands.len() < f.commands.capacity()
                && f.commands
                    .push(
                        InFlightEntry {
                            tag,
                            lun: lun.unwrap_or(u64::MAX),
                            aborted: false,
                            responding: false,
                        },
                        GFP_ATOMIC,
                    )
                    .is_ok()
        };
        if !tracked {
            self.busy.fetch_add(1, Ordering::Relaxed);
        }
        let abort_gen = self.abort_gen.load(Ordering::Acquire);
        let tgt_dev = lun.and_then(|l| self.find(l));
        let dev_epoch = tgt_dev
            .as_ref()
            .map_or(0, |t| t.dev.reset_epoch.load(Ordering::Acquire));
        let nexus_epoch = tgt_dev
            .as_ref()
            .map_or(0, |t| t.abort_epoch.load(Ordering::Acquire));
        let admission = match &tgt_dev {
            Some(t) if tracked => Some(t.dev.admit(t, attr)),
            _ => None,
        };
        match admission {
            Some(Err(Refusal::TaskSetFull)) => {
                self.task_set_full.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(Refusal::Busy)) => {
                self.busy.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        Command {
            session: self.clone(),
            tag,
            lun,
            tracked,
            state: State::Init,
            abort_gen,
            dev_epoch,
            nexus_epoch,
            tgt_dev,
            admission,
            refused: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &self,
        tgt_dev: Option<&Arc<TgtDev>>,
        tag: u64,
        cdb_bytes: &[u8],
        data: &mut SgList<'_>,
        direction: DataDirection,
        lent: Option<LentId>,
        defer: Option<&dyn Defer>,
        nowait: bool,
        aborted: &dyn Fn() -> bool,
    ) -> Dispatched {
        let Some(tgt_dev) = tgt_dev else {
            // The core answers every command for an absent LUN.
            let r = self.dispatch_core(None, cdb_bytes, data);
            return Dispatched::Now(r.unwrap_or_else(|| {
                Response::check_condition(sense::LUN_NOT_SUPPORTED, SenseFormat::Fixed)
            }));
        };
        // What the core answers itself never blocks; having declined, it
        // changed nothing (a unit attention is taken only to report it).
        if let Some(r) = self.dispatch_core(Some(tgt_dev), cdb_bytes, data) {
            return Dispatched::Now(r);
        }
        let alua = PortView::decode(tgt_dev.alua.load(Ordering::Relaxed));
        if let Some(view) = alua {
            let format = || tgt_dev.dev.lu.sense_format();
            let cdb = Cdb(cdb_bytes);
            match device_groups::check(tgt_dev, view, cdb, data, direction, nowait, format) {
                AluaCheck::Answer(r) => return Dispatched::Now(r),
                AluaCheck::WouldBlock => return Dispatched::WouldBlock,
                AluaCheck::Report => {
                    let alloc_len = cdb.be32(6) as usize;
                    return Dispatched::Now(self.core_data_in(
                        data,
                        format(),
                        |out| {
                            device_groups::report(tgt_dev, cdb, out)
                                .unwrap_or(Err(sense::INVALID_OPCODE))
                        },
                        alloc_len,
                    ));
                }
                AluaCheck::Pass => {}
            }
        }
        match reservation::intercept(tgt_dev, cdb_bytes, data, direction, nowait) {
            Intercept::Answer(r) => return Dispatched::Now(r),
            Intercept::WouldBlock => return Dispatched::WouldBlock,
            Intercept::Pass => {}
        }
        match extended_copy::copy_command(tgt_dev, Cdb(cdb_bytes)) {
            Some(CopyCommand::Results) => {
                let cdb = Cdb(cdb_bytes);
                return Dispatched::Now(self.core_data_in(
                    data,
                    tgt_dev.dev.lu.sense_format(),
                    |out| extended_copy::receive_copy_results(tgt_dev, cdb, out),
                    cdb.be32(10) as usize,
                ));
            }
            Some(CopyCommand::Copy) if nowait => return Dispatched::WouldBlock,
            Some(CopyCommand::Copy) => {
                let Ok(luns) = self.snapshot() else {
                    return Dispatched::Now(response_of(
                        tgt_dev,
                        Err(sense::INTERNAL_TARGET_FAILURE),
                    ));
                };
                return Dispatched::Now(extended_copy::extended_copy(
                    tgt_dev,
                    &luns,
                    tag,
                    Cdb(cdb_bytes),
                    data,
                    direction,
                    aborted,
                ));
            }
            None => {}
        }
        if nowait && !tgt_dev.dev.lu.may_execute_nowait(cdb_bytes) {
            return Dispatched::WouldBlock;
        }
        let mut cmd = ExecCmd {
            cdb: cdb_bytes,
            data,
            read_only: tgt_dev.read_only,
            rel_tgt_id: self.target.rel_tgt_id.load(Ordering::Relaxed),
            alua,
            direction,
            nexus: tgt_dev.attached.id,
            lent,
            tag,
            defer,
            deferred: None,
            nowait,
        };
        let result = tgt_dev.dev.lu.execute(&mut cmd);
        match (cmd.deferred.take(), result) {
            // Deferred: the deferral's outcome is the command's, whatever
            // the logical unit returned.
            (Some((done, failed)), _) => Dispatched::Later { done, failed },
            (None, Ok(Executed::Done(done))) => Dispatched::Now(response_of(tgt_dev, Ok(done))),
            (None, Ok(Executed::Later)) => {
                pr_err!(
                    "scst: {}: a command returned as deferred was not\n",
                    &*tgt_dev.dev.name
                );
                Dispatched::Now(response_of(tgt_dev, Err(sense::INTERNAL_TARGET_FAILURE)))
            }
            (None, Ok(Executed::WouldBlock)) if nowait => Dispatched::WouldBlock,
            (None, Ok(Executed::WouldBlock)) => {
                pr_err!(
                    "scst: {}: a command that was free to block would have\n",
                    &*tgt_dev.dev.name
                );
                Dispatched::Now(response_of(tgt_dev, Err(sense::INTERNAL_TARGET_FAILURE)))
            }
            (None, Err(s)) => Dispatched::Now(response_of(tgt_dev, Err(s))),
        }
    }

    /// The commands the core answers itself: everything for an absent
    /// LUN, REPORT LUNS, REQUEST SENSE, and a pending unit attention.
    /// `None` hands the command to the logical unit.
    fn dispatch_core(
        &self,
        tgt_dev: Option<&Arc<TgtDev>>,
        cdb_bytes: &[u8],
        data: &mut SgList<'_>,
    ) -> Option<Response> {
        let cdb = Cdb(cdb_bytes);
        let opcode = cdb.opcode();

        // The sense format is looked up only where a command fails: the
        // logical unit's mode lock stays off the good path.
        let format_of =
            |t: Option<&Arc<TgtDev>>| t.map_or(SenseFormat::Fixed, |t| t.dev.lu.sense_format());
        if cdb_bytes.is_empty() || Cdb::group_len(opcode).is_some_and(|n| cdb_bytes.len() < n) {
            return Some(Response::check_condition(
                Sense::invalid_cdb_field(0, None),
                format_of(tgt_dev),
            ));
        }
        // No auto contingent allegiance: NACA is refused for every device
        // and command, the core's own included.
        if let Some(refused) = cdb.naca_refusal() {
            return Some(Response::check_condition(refused, format_of(tgt_dev)));
        }
        if opcode == cdb::op::REPORT_LUNS {
            return Some(self.core_data_in(
                data,
                format_of(tgt_dev),
                |out| {
                    let mut luns = KVec::new();
                    self.lun_numbers(&mut luns)
                        .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
                    if let Some(t) = tgt_dev {
                        // REPORT LUNS clears this nexus' REPORTED LUNS DATA HAS
                        // CHANGED (SPC-4 6.33).
                        let mut q = t.ua.lock();
                        if q.items[0].is_some_and(|s| s == sense::REPORTED_LUNS_DATA_CHANGED) {
                            q.pop();
                        }
                    }
                    cdb::report_luns(cdb, luns.iter().copied(), out)
                },
                cdb.be32(6) as usize,
            ));
        }
        let Some(tgt_dev) = tgt_dev else {
            return Some(match opcode {
                cdb::op::INQUIRY => self.core_data_in(
                    data,
                    SenseFormat::Fixed,
                    |out| {
                        if cdb.u8(1) & 1 != 0 {
                            return Err(sense::LUN_NOT_SUPPORTED);
                        }
                        // Peripheral qualifier 011b: no logical unit here.
                        out.u8(0x7f);
                        out.put(&[0, 0x06, 0x12, 31, 0, 0, 0]);
                        out.zeroes(28);
                        Ok(())
                    },
                    usize::from(cdb.be16(3)),
                ),
                cdb::op::REQUEST_SENSE => self.core_data_in(
                    data,
                    SenseFormat::Fixed,
                    |out| {
                        cdb::request_sense(cdb, Some(sense::LUN_NOT_SUPPORTED), out);
                        Ok(())
                    },
                    usize::from(cdb.u8(4)),
                ),
                _ => Response::check_condition(sense::LUN_NOT_SUPPORTED, SenseFormat::Fixed),
            });
        };
        if opcode == cdb::op::REQUEST_SENSE {
            if cdb.u8(1) & !1 != 0 {
                return Some(Response::check_condition(
                    Sense::invalid_cdb_field(1, None),
                    tgt_dev.dev.lu.sense_format(),
                ));
            }
            let pending = tgt_dev
                .take_ua()
                .or_else(|| tgt_dev.dev.lu.current_condition());
            return Some(self.core_data_in(
                data,
                tgt_dev.dev.lu.sense_format(),
                |out| {
                    cdb::request_sense(cdb, pending, out);
                    Ok(())
                },
                usize::from(cdb.u8(4)),
            ));
        }
        if !cdb::passes_unit_attention(opcode) {
            if let Some(ua) = tgt_dev.take_ua() {
                return Some(Response::check_condition(ua, tgt_dev.dev.lu.sense_format()));
            }
        }
        None
    }

    /// Runs a core-emulated data-in command: `build` writes the full
    /// response, of which `alloc_len` bytes at most go to the initiator.
    fn core_data_in(
        &self,
        data: &mut SgList<'_>,
        format: SenseFormat,
        build: impl FnOnce(&mut Out<'_>) -> core::result::Result<(), Sense>,
        alloc_len: usize,
    ) -> Response {
        let mut buf = KVec::new();
        // Possibly in the submitting context, which may be atomic.
        if buf.extend_with(CORE_DATA_IN_MAX, 0u8, GFP_ATOMIC).is_err() {
            return Response::check_condition(sense::INTERNAL_TARGET_FAILURE, format);
        }
        let mut out = Out::new(&mut buf);
        if let Err(s) = build(&mut out) {
            return Response::check_condition(s, format);
        }
        let n = out.len().min(alloc_len).min(buf.len());
        let copied = data.copy_from_slice(0, buf.get(..n).unwrap_or(&[]));
        Response::good(copied, n)
    }

    /// Waits until no command matching `pred` is in flight, up to the
    /// quiesce timeout; returns whether they all finished.
    fn quiesce(&self, pred: impl Fn(u64, u64) -> bool) -> bool {
        let mut waited = 0u32;
        let mut f = self.in_flight.lock();
        f.quiescing += 1;
        let finished = loop {
            if !f.commands.iter().any(|e| pred(e.tag, e.lun)) {
                break true;
            }
            if waited >= QUIESCE_TIMEOUT_MS {
                break false;
            }
            // Task management runs in a kernel thread: no signals to wake it.
            let _ = self
                .quiesced
                .wait_interruptible_timeout(&mut f, msecs_to_jiffies(QUIESCE_POLL_MS));
            waited += QUIESCE_POLL_MS;
        };
        f.quiescing -= 1;
        finished
    }

    /// Task management `function` on the nexuses `affected`: `mark` marks
    /// the commands it ends, then their logical units hear of it, then
    /// the commands are waited for (up to the quiesce timeout) and the
    /// logical units hear how it ended. The mark comes first so that a
    /// logical unit that answers a command the moment it hears of the
    /// function (a scst_user handler does) cannot get its response out
    /// ahead of the mark: such a command ends without one, as SAM has it.
    fn manage(
        &self,
        affected: &[Arc<TgtDev>],
        function: TmFunction,
        mark: impl FnOnce(),
        wait: impl Fn(u64, u64) -> bool,
    ) -> bool {
        let tm = |t: &TgtDev| TaskMgmt {
            function,
            nexus: t.attached.id,
        };
        mark();
        for t in affected {
            t.dev.lu.task_mgmt_received(&tm(t));
        }
        let done = self.quiesce(wait);
        for t in affected {
            t.dev.lu.task_mgmt_done(&tm(t), done);
        }
        done
    }

    /// Whether a command with `tag` is in flight.
    pub(crate) fn has_in_flight(&self, tag: u64) -> bool {
        self.in_flight.lock().commands.iter().any(|e| e.tag == tag)
    }

    /// Marks the commands matching `pred` aborted: those that have not
    /// started executing never will (see [`Command::is_aborted`]); those
    /// waiting for older commands in `affected`'s task sets leave them at
    /// once.
    /// Returns how many are marked (those responding already are not).
    fn mark_aborted(&self, affected: &[Arc<TgtDev>], pred: impl Fn(u64, u64) -> bool) -> usize {
        let mut marked = 0;
        {
            let mut f = self.in_flight.lock();
            for e in f.commands.iter_mut() {
                if pred(e.tag, e.lun) && !e.responding {
                    e.aborted = true;
                    marked += 1;
                }
            }
            self.abort_gen.fetch_add(1, Ordering::Release);
        }
        for t in affected {
            t.dev.release_aborted();
        }
        marked
    }

    /// ABORT TASK: `None` when no command with `tag` may still be
    /// aborted (none is in flight, or its response is on its way); else
    /// whether the command is finished, without a response, when this
    /// returns.
    pub(crate) fn abort_task(&self, tag: u64) -> Option<bool> {
        let lun = {
            let f = self.in_flight.lock();
            f.commands
                .iter()
                .find(|e| e.tag == tag && !e.responding)
                .map(|e| e.lun)?
        };
        let affected = self.find(lun);
        let mut aborted = false;
        let done = self.manage(
            affected.as_slice(),
            TmFunction::AbortTask(tag),
            || aborted = self.mark_aborted(affected.as_slice(), |t, l| t == tag && l == lun) > 0,
            |t, l| t == tag && l == lun,
        );
        // It committed to its response between the look and the mark.
        if !aborted {
            return None;
        }
        Some(done)
    }

    /// ABORT TASK SET from this nexus: this session's commands to the LUN
    /// that have not started never will, those executing end without a
    /// response; waits for them.
    pub(crate) fn abort_task_set(&self, lun: u64) -> bool {
        let affected = self.find(lun);
        self.manage(
            affected.as_slice(),
            TmFunction::AbortTaskSet,
            || {
                self.mark_aborted(affected.as_slice(), |_, l| l == lun);
            },
            |_, l| l == lun,
        )
    }

    /// CLEAR TASK SET from this nexus: every initiator's commands to the
    /// device are aborted (the task set is shared). The others' end with
    /// TASK ABORTED where the logical unit has TAS set; otherwise silently,
    /// and their nexuses get COMMANDS CLEARED BY ANOTHER INITIATOR. Waits
    /// for this session's.
    pub(crate) fn clear_task_set(&self, lun: u64) -> bool {
        let affected = self.find(lun);
        self.manage(
            affected.as_slice(),
            TmFunction::ClearTaskSet,
            || {
                for t in affected.iter() {
                    if !t.dev.lu.task_aborted_status() {
                        t.dev
                            .raise_ua_where_busy(sense::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR, t);
                    }
                    t.dev.abort_all(t.attached.id);
                }
                self.mark_aborted(affected.as_slice(), |_, l| l == lun);
            },
            |_, l| l == lun,
        )
    }

    /// LUN RESET: every initiator's commands to the device are aborted
    /// (the others' end as CLEAR TASK SET has them, without the unit
    /// attention); waits for this session's, then raises BUS DEVICE RESET
    /// FUNCTION OCCURRED on every nexus.
    pub(crate) fn lun_reset(&self, lun: u64) -> bool {
        let affected = self.find(lun);
        if !self.manage(
            affected.as_slice(),
            TmFunction::LunReset,
            || {
                for t in affected.iter() {
                    t.dev.abort_all(t.attached.id);
                }
                self.mark_aborted(affected.as_slice(), |_, l| l == lun);
            },
            |_, l| l == lun,
        ) {
            return false;
        }
        // Looked up again: the LUN may have been replaced meanwhile. The
        // reset ends an SPC-2 reservation.
        if let Some(t) = self.find(lun) {
            t.dev.reservations_reset();
            t.dev.raise_ua(sense::DEVICE_RESET_OCCURRED, None);
        }
        true
    }

    /// TARGET RESET as seen from this session: the commands of its LUNs'
    /// devices that have not started never will; waits for its executing
    /// ones, then every LUN reports the reset.
    pub(crate) fn target_reset(&self) -> bool {
        let Ok(luns) = self.snapshot() else {
            return false;
        };
        if !self.manage(
            &luns,
            TmFunction::TargetReset,
            || {
                for t in luns.iter() {
                    t.dev.abort_all(t.attached.id);
                }
                self.mark_aborted(&luns, |_, _| true);
            },
            |_, _| true,
        ) {
            return false;
        }
        for t in luns.iter() {
            t.ua.lock().clear();
            t.dev.reservations_reset();
            t.dev.raise_ua(sense::RESET_OCCURRED, None);
        }
        true
    }

    /// Commands currently in flight.
    pub(crate) fn active_commands(&self) -> usize {
        self.in_flight.lock().commands.len()
    }
}
