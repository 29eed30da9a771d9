// SPDX-License-Identifier: GPL-2.0

//! The life cycle of a SCSI command, top to bottom.
//!
//! A command is an object with a [`State`]. Each step that may wait hands
//! the command on and returns; whoever resumes it (a core worker, the end
//! of an older command) runs the next step, in whatever context that is.
//! No step waits for a backend in the context that received the command:
//! there, a logical unit runs only what cannot block (see [`Context`]).
//!
//! | state | what happens | context |
//! | --- | --- | --- |
//! | INIT | [`super::session::Session::begin`]: LUN decoded, I_T_L nexus found, command recorded in flight and admitted to its device's task set in arrival order, or refused (TASK SET FULL, BUSY) | the driver's receive context; never sleeps, never allocates |
//! | PARSE, PREPARE_SPACE | [`super::session::Command::data_buffer`]: the buffer the data goes to (memory the logical unit lends, or new pages); a driver whose initiator owns the buffer (scst_local) skips it. A logical unit that would wait to lend (a user-space handler's PARSE or ALLOC_MEM) lends on the worker before EXEC instead ([`super::session::Command::lend_staged`]), and the data-out waits in new pages meanwhile | the driver's receive context (process context: it may allocate, never waits for a logical unit); the late lending, a core worker |
//! | RDY_TO_XFER, DATA_WAIT | the driver fetches the data-out into the buffer (iSCSI: immediate data, R2T and Data-Out in its receive loop, which goes on receiving other PDUs meanwhile) | the driver's own |
//! | TGT_PRE_EXEC | [`super::session::Command::submit`]: a refused command and one for an absent LUN are answered at once (nothing of a backend runs); an admitted one starts when its task attribute lets it, else it parks in its device's task set and the end of an older command starts it | the submitting context, or that of the older command's end; never sleeps |
//! | EXEC | the logical unit runs the command on its buffer ([`super::device::LogicalUnit::execute`], may block), or starts it and defers it ([`super::device::ExecCmd::defer`]): the worker goes on, and the [`Deferral`] brings the command back | a core worker, at most `threads_num` per device at once (per nexus with `threads_pool_type` per_initiator); first, for a command that may start and that its logical unit can try without blocking (a page-cache read, nullio, blockio's `REQ_NOWAIT` bios, which defer it), the submitting context of a [`Context::Direct`] driver, which hands it to a worker only if it would block |
//! | DEV_DONE, PRE_XMIT_RESP | the logical unit's status and sense become the response; MODE SELECT raises MODE PARAMETERS CHANGED on the other nexuses | the same worker; for a deferred command, whichever of its worker and its completion ends the deferral last (the completion, which may run in hard interrupt context, queues the command's work) |
//! | XMIT_RESP | [`TgtCmd::xmit_response`]: the driver sends data-in and status, or queues them with the buffer for its own sender; a command task management aborted meanwhile has none | the same worker (or the submitting context for a command answered at once) |
//! | FINISHED | the command leaves the task set (older-command waiters start) and the in-flight set (task management waiting for it wakes) | where XMIT_RESP ran |
//!
//! A worker that finishes a command takes the device's next ready command
//! itself, so a busy device costs no context switch per command.
//!
//! Locks: a device's task-set lock, then its pool lock; neither is held
//! while a backend or a driver runs.

use super::buffer::{CmdBuffer, LendRefused, LentId};
use super::device::{Completion, DataDirection, Ready};
use super::sense::Sense;
use super::session::{response_of, Command, Dispatched, Response, TgtDev};
use super::task_set::Ticket;
use crate::kernel_ext::sg::SgList;
use crate::kernel_ext::wq::OwnedQueue;
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT},
    c_str, new_spinlock,
    prelude::*,
    sync::{Arc, SpinLock},
    time::{ktime_ms_delta, Ktime},
    workqueue::{impl_has_work, new_work, Queue, Work, WorkItem},
};

/// Where a command is in its life cycle: SCST's states, less those that
/// are not separate steps here (PARSE is part of EXEC: the core decides
/// what it answers itself as it dispatches; RDY_TO_XFER is the driver's
/// own, inside DATA_WAIT; XMIT_WAIT needs a driver whose send completes
/// later, which none is yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Recorded in flight and admitted (or refused).
    Init,
    /// Its buffer is taken.
    PrepareSpace,
    /// The driver is receiving its data-out.
    DataWait,
    /// Submitted: waiting for its turn by task attribute, or for a worker.
    TgtPreExec,
    /// Executing.
    Exec,
    /// Executed: the response is built and the unit attentions of its
    /// outcome raised (DEV_DONE and PRE_XMIT_RESP in one).
    DevDone,
    /// The driver is sending the response.
    XmitResp,
    /// Done; ending in the task set and the in-flight set.
    Finished,
}

/// Longest CDB a command carries.
pub(crate) const MAX_CDB_LEN: usize = 32;

/// A target driver's side of one command, from submission to FINISHED.
pub(crate) trait TgtCmd: Send + 'static {
    /// The command's data buffer: the data-out as received, room for the
    /// data-in.
    fn buffer(&mut self) -> SgList<'_>;

    /// The buffer is memory the command's logical unit lent it.
    fn lent(&self) -> Option<LentId> {
        None
    }

    /// The buffer, while it only stages the data-out until the logical
    /// unit lends its own on the worker (PREPARE_SPACE late: see
    /// [`Command::lend_staged`]).
    fn staged_buffer(&mut self) -> Option<&mut CmdBuffer> {
        None
    }

    /// Task management aborted the command before it executed: it ends
    /// without a response (the task management response covers it; other
    /// initiators' commands end silently, as TAS 0 has it). The driver's
    /// side is dropped after this.
    fn aborted(&mut self) {}

    /// XMIT_RESP: sends the data-in and the status of `response`. The
    /// command is FINISHED when this returns: the core is done with the
    /// buffer, and a driver that sends later (iSCSI's sender) takes the
    /// buffer along. Runs on a core worker, or, for a command
    /// the core answers at once, in the context that submitted it (which
    /// may be atomic for a driver that submits from one).
    fn xmit_response(&mut self, response: Response);
}

/// A submitted command's state and what it carries.
struct Body<T> {
    /// The INIT record, with the command's state; dropping it is FINISHED.
    command: Command,
    cdb: [u8; MAX_CDB_LEN],
    cdb_len: usize,
    direction: DataDirection,
    tgt: T,
    /// A deferred command's outcomes: the completion if its logical unit
    /// succeeds, the sense if it fails.
    deferred: Option<(Completion, Sense)>,
    /// It was executed where it may not block (see [`Body::try_now`]), so
    /// that its logical unit may still find it would have.
    tried_nowait: bool,
}

/// How a deferred command ends when its logical unit learns the outcome
/// only at the end (a user-space handler's reply), rather than choosing
/// between the two it gave [`super::device::ExecCmd::defer`].
pub(crate) enum Outcome {
    Done(Completion),
    Failed(Sense),
    /// Still to place in the command's buffer: runs on the worker that
    /// resumes the command (see [`FinishDeferred`]).
    Finish(Arc<dyn FinishDeferred>),
}

/// The last step of a deferred command whose data-in its logical unit
/// holds elsewhere (a user-space handler's own buffer).
pub(crate) trait FinishDeferred: Send + Sync {
    /// Places the data-in in `data`, the command's buffer, and returns
    /// how the command ended. Called at most once, on a core worker
    /// (process context) as the command resumes; not at all for a
    /// command task management aborted meanwhile, which is dropped
    /// instead.
    fn finish(&self, data: &mut SgList<'_>) -> Result<Completion, Sense>;
}

/// What became of a command tried in the submitting context.
enum Tried<T> {
    /// Not run there: it goes to a worker.
    NotRun,
    /// Answered there (XMIT_RESP, or ended aborted): FINISHED as it drops.
    Answered,
    /// Its logical unit deferred it: the body waits in this command.
    Deferred(Arc<Cmd<T>>),
}

/// What EXEC left of a command.
enum AfterExec {
    /// DEV_DONE is over: the response.
    Now(Response),
    /// Its logical unit completes it later.
    Later,
    /// Tried where it may not block, it would have: back to TGT_PRE_EXEC,
    /// for a worker.
    WouldBlock,
}

/// The context a target driver submits a command from, which decides
/// what of the command may run there (SCST's `SCST_CONTEXT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Context {
    /// Process context that may do work which does not block (a receive
    /// loop): a command its logical unit can execute without blocking
    /// ([`super::device::LogicalUnit::may_execute_nowait`], a read the page
    /// cache holds) runs to XMIT_RESP right there, with no context switch;
    /// the others go to a worker. SCST's `SCST_CONTEXT_DIRECT`, less the
    /// blocking.
    Direct,
    /// A context that must not sleep (scst_local's `queuecommand`): only
    /// what the core answers itself runs there; every command for a
    /// logical unit goes to a worker.
    Atomic,
}

impl<T: TgtCmd> Body<T> {
    /// EXEC on a worker: an aborted command ends without executing; one
    /// its logical unit deferred waits in `cmd` for the deferral.
    fn run(mut self, cmd: &Arc<Cmd<T>>) {
        if self.command.abort_response().is_none() {
            if let Some(buf) = self.tgt.staged_buffer() {
                let cdb = self.cdb.get(..self.cdb_len).unwrap_or(&[]);
                self.command.lend_staged(cdb, self.direction, buf);
            }
        }
        if let Some(response) = self.command.abort_response() {
            self.end_aborted(response);
            return;
        }
        // Here it may block: a logical unit cannot find it would have.
        self.tried_nowait = false;
        match self.exec(Some(cmd), false) {
            AfterExec::Now(response) => self.respond(response),
            // Not tried without blocking here: cannot happen.
            AfterExec::WouldBlock => self.respond(Response::status(super::session::status::BUSY)),
            AfterExec::Later => {
                if cmd.park(self) {
                    // Completed already: DEV_DONE right here.
                    cmd.resume();
                }
            }
        }
    }

    /// EXEC in the submitting context (see [`Context::Direct`]): the
    /// command runs to XMIT_RESP here unless it would block, and then
    /// stays as it was, for a worker. Not inlined: its frames (and the
    /// logical unit's below them) are on the stack of the receive loop
    /// only while it runs.
    ///
    /// A logical unit may also start the command there and defer it (a
    /// block device's bios submitted with `REQ_NOWAIT`): the command then
    /// waits for its completion as one a worker deferred (see
    /// [`Self::deferred_here`]), and the worker is spared altogether.
    /// Should the completion say the device would have blocked, a worker
    /// executes the command again.
    #[inline(never)]
    fn try_now(&mut self, queue: &Arc<ExecQueue>) -> Tried<T> {
        if self.tgt.staged_buffer().is_some() {
            // Its logical unit lends memory only where it may wait.
            return Tried::NotRun;
        }
        let defer = DeferLater {
            cmd: core::cell::Cell::new(None),
            queue,
        };
        self.tried_nowait = true;
        match self.command.abort_response() {
            Some(aborted) => self.end_aborted(aborted),
            None => match self.exec(Some(&defer), true) {
                AfterExec::WouldBlock => return Tried::NotRun,
                AfterExec::Now(response) => self.respond(response),
                AfterExec::Later => {
                    return match defer.cmd.take() {
                        Some(cmd) => Tried::Deferred(cmd),
                        // A deferral always comes with its command.
                        None => Tried::Answered,
                    };
                }
            },
        }
        Tried::Answered
    }

    /// A command [`Self::try_now`] deferred waits in `cmd` for its
    /// completion, or ends now if that came already: right here, as if
    /// done at once, or on a worker if the logical unit would have
    /// blocked.
    fn deferred_here(self, cmd: Arc<Cmd<T>>, queue: &Arc<ExecQueue>) {
        if cmd.park(self) {
            if cmd.ended.load(Ordering::Acquire) == ENDED_WOULD_BLOCK {
                queue.resume(cmd);
            } else {
                cmd.resume();
            }
        }
    }

    /// EXEC, then DEV_DONE and PRE_XMIT_RESP of a command that completed
    /// there: runs the command (the core's own answer, or its logical
    /// unit's) and returns the response. `nowait`, it must not block and
    /// may come back untouched (see [`Context::Direct`]).
    fn exec(&mut self, defer: Option<&dyn Defer>, nowait: bool) -> AfterExec {
        if self.command.state != State::TgtPreExec {
            // Executed once; a second run would answer twice.
            pr_err!(
                "scst: command in state {:?} executed again\n",
                self.command.state
            );
            return AfterExec::Now(Response::status(super::session::status::BUSY));
        }
        self.command.set_state(State::Exec);
        let lent = self.tgt.lent();
        let response = match (&self.command.refused, &self.command.tgt_dev) {
            (Some(LendRefused::Sense(s)), Some(t)) => {
                Response::check_condition(*s, t.dev.lu.sense_format())
            }
            (Some(LendRefused::Status(raw)), Some(_)) => Response::from_raw(*raw),
            _ => {
                let cdb = self.cdb.get(..self.cdb_len).unwrap_or(&[]);
                let mut data = self.tgt.buffer();
                match self
                    .command
                    .dispatch(cdb, &mut data, self.direction, lent, defer, nowait)
                {
                    Dispatched::Now(r) => r,
                    Dispatched::Later { done, failed } => {
                        self.deferred = Some((done, failed));
                        return AfterExec::Later;
                    }
                    Dispatched::WouldBlock => {
                        self.command.set_state(State::TgtPreExec);
                        return AfterExec::WouldBlock;
                    }
                }
            }
        };
        // The logical unit's unit attentions (MODE PARAMETERS CHANGED)
        // are raised in dispatch, before the response leaves.
        self.command.set_state(State::DevDone);
        AfterExec::Now(response)
    }

    /// DEV_DONE and PRE_XMIT_RESP of a deferred command, whose logical
    /// unit said it `succeeded` or not, or gave the `late` outcome.
    fn completed(mut self, succeeded: bool, late: Option<Outcome>) {
        let chosen = self.deferred.take().map(|(done, failed)| match late {
            Some(Outcome::Done(done)) => Ok(done),
            Some(Outcome::Failed(failed)) => Err(failed),
            Some(Outcome::Finish(finish)) => {
                if self.command.is_aborted() {
                    // No response: the data-in is not wanted.
                    Err(failed)
                } else {
                    finish.finish(&mut self.tgt.buffer())
                }
            }
            None if succeeded => Ok(done),
            None => Err(failed),
        });
        let response = match (chosen, &self.command.tgt_dev) {
            (Some(outcome), Some(t)) => response_of(t, outcome),
            // Only a logical unit defers, and it gave both outcomes.
            _ => Response::status(super::session::status::BUSY),
        };
        self.command.set_state(State::DevDone);
        self.respond(response);
    }

    /// XMIT_RESP, then FINISHED when the body drops (its owner drops it
    /// next): the INIT record ends the command in the task set and the
    /// in-flight set. A command task management aborted while it executed
    /// ends as one aborted before.
    fn respond(&mut self, response: Response) {
        match self.command.abort_response() {
            Some(aborted) => self.end_aborted(aborted),
            None if self.command.commit_response() => self.send(response),
            // ABORT TASK marked it between the two looks.
            None => self.end_aborted(None),
        }
    }

    /// XMIT_RESP to FINISHED.
    fn send(&mut self, response: Response) {
        self.command.set_state(State::XmitResp);
        self.tgt.xmit_response(response);
        self.command.set_state(State::Finished);
    }

    /// An aborted command ends: with `response` (TASK ABORTED, for another
    /// nexus' abort under TAS), or without one.
    fn end_aborted(&mut self, response: Option<Response>) {
        match response {
            Some(r) => self.send(r),
            None => {
                self.command.set_state(State::Finished);
                self.tgt.aborted();
            }
        }
    }
}

/// A command between TGT_PRE_EXEC and FINISHED whose execution is
/// scheduled: in its device's task set waiting for older commands, in its
/// device's ready queue, on a core worker, or executing in its logical
/// unit after the worker left it (deferred).
#[pin_data]
pub(crate) struct Cmd<T> {
    /// Taken by the context that runs the command.
    #[pin]
    body: SpinLock<Option<Body<T>>>,
    #[pin]
    work: Work<Cmd<T>>,
    /// Parties yet to end a deferral (see [`Body::run`]).
    resume_refs: AtomicU32,
    /// How the deferral ended: one of the `ENDED_*` values.
    ended: AtomicU8,
    /// The deferral's outcome, given at its end ([`Deferral::finish`]).
    #[pin]
    late: SpinLock<Option<Outcome>>,
    /// Where a deferred command resumes; counts the command as live.
    exec: Live,
}

impl_has_work! {
    impl{T} HasWork<Self> for Cmd<T> { self.work }
}

/// How a deferral ended ([`Cmd::ended`]).
const ENDED_FAILED: u8 = 0;
const ENDED_SUCCEEDED: u8 = 1;
/// The logical unit started the command where it may not block and found
/// it would have to ([`Deferral::would_block`]): it runs again on a worker.
const ENDED_WOULD_BLOCK: u8 = 2;

impl<T: TgtCmd> Cmd<T> {
    /// A command with no body yet, live on `queue` until it is dropped.
    fn new(queue: &Arc<ExecQueue>, flags: kernel::alloc::Flags) -> Result<Arc<Self>> {
        let live = Live::new(queue);
        Arc::pin_init(
            pin_init!(Cmd {
                body <- new_spinlock!(None),
                work <- new_work!("scst::Cmd::work"),
                resume_refs: AtomicU32::new(2),
                ended: AtomicU8::new(ENDED_FAILED),
                late <- new_spinlock!(None),
                exec: live,
            }),
            flags,
        )
    }

    /// Puts the body of a command its logical unit deferred back in the
    /// command, ending the executing context's part of the deferral.
    /// Returns whether the logical unit's part ended already, so that the
    /// caller resumes the command itself.
    fn park(&self, body: Body<T>) -> bool {
        *self.body.lock() = Some(body);
        self.resume_refs.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// DEV_DONE to FINISHED of a deferred command, once both its worker
    /// and its logical unit are done with the deferral; or, for one that
    /// would have blocked, EXEC again. Process context that may block: a
    /// core worker (see [`Body::try_now`] for the receive loop's part).
    fn resume(self: &Arc<Self>) {
        let body = self.body.lock().take();
        let late = self.late.lock().take();
        let Some(mut body) = body else {
            return;
        };
        match self.ended.load(Ordering::Acquire) {
            ENDED_WOULD_BLOCK if body.tried_nowait => {
                // Nothing of it reached the initiator: back to
                // TGT_PRE_EXEC, and EXEC on this worker, free to block.
                body.deferred = None;
                body.command.set_state(State::TgtPreExec);
                body.run(self);
            }
            ENDED_WOULD_BLOCK => {
                // Only a command tried without blocking may say so; were
                // another to, it would fail rather than run again forever.
                pr_err!("scst: a command free to block would have blocked\n");
                body.completed(false, None);
            }
            ended => body.completed(ended == ENDED_SUCCEEDED, late),
        }
    }
}

/// A scheduled command of any target driver, as its device queues it.
pub(crate) trait Scheduled: Send + Sync {
    /// EXEC (to FINISHED unless its logical unit defers it).
    fn execute(self: Arc<Self>);

    /// Task management aborted it (see [`Command::is_aborted`]).
    fn aborted(&self) -> bool;

    /// The I_T_L nexus the command came from (and its device).
    fn nexus(&self) -> Option<Arc<TgtDev>>;

    /// Queues the command's own work on `queue`.
    fn start_worker(self: Arc<Self>, queue: &Queue);
}

impl<T: TgtCmd> Scheduled for Cmd<T> {
    fn execute(self: Arc<Self>) {
        // Taken in a statement of its own: the lock is released before the
        // command runs.
        let body = self.body.lock().take();
        if let Some(body) = body {
            body.run(&self);
        }
    }

    fn aborted(&self) -> bool {
        self.body
            .lock()
            .as_ref()
            .is_some_and(|b| b.command.is_aborted())
    }

    fn nexus(&self) -> Option<Arc<TgtDev>> {
        let body = self.body.lock();
        body.as_ref()?.command.tgt_dev.clone()
    }

    fn start_worker(self: Arc<Self>, queue: &Queue) {
        // A command's work is queued once to start it and once more to
        // resume it after a deferral, never while queued.
        let _ = queue.enqueue(self);
    }
}

/// Makes the [`Deferral`] of a command whose logical unit defers it; only
/// then is the command's reference taken.
pub(crate) trait Defer {
    /// `None` where the command cannot be deferred after all (no memory
    /// for it where allocation may not wait).
    fn deferral(&self) -> Option<Deferral>;
}

impl<T: TgtCmd> Defer for Arc<Cmd<T>> {
    fn deferral(&self) -> Option<Deferral> {
        // Two parties end a deferral: the context that executed the
        // command, once the body is back in the command (see `Body::run`),
        // and the logical unit's completion.
        self.resume_refs.store(2, Ordering::Relaxed);
        Some(Deferral {
            cmd: Some(self.clone()),
        })
    }
}

/// The [`Defer`] of a command tried in the submitting context: its
/// [`Cmd`] is made only if its logical unit defers it, so that a command
/// done there at once (nullio, a page-cache read) allocates none.
struct DeferLater<'a, T> {
    cmd: core::cell::Cell<Option<Arc<Cmd<T>>>>,
    queue: &'a Arc<ExecQueue>,
}

impl<T: TgtCmd> Defer for DeferLater<'_, T> {
    fn deferral(&self) -> Option<Deferral> {
        // The submitting context may not wait for memory.
        let cmd = Cmd::new(self.queue, GFP_NOWAIT).ok()?;
        let deferral = cmd.deferral();
        self.cmd.set(Some(cmd));
        deferral
    }
}

/// A command whose logical unit completes it later.
pub(crate) trait Resumable: Send + Sync {
    /// The logical unit is done with the command, which `ended` as one of
    /// the `ENDED_*` values; any context, hard interrupt included. Never
    /// sleeps.
    fn deferral_done(self: Arc<Self>, ended: u8);

    /// Records how the command ends, before [`Self::deferral_done`];
    /// process context (its lock is not taken with interrupts disabled).
    fn set_outcome(&self, outcome: Outcome);

    /// Task management aborted the command meanwhile.
    fn aborted(&self) -> bool;
}

impl<T: TgtCmd> Resumable for Cmd<T> {
    fn deferral_done(self: Arc<Self>, ended: u8) {
        self.ended.store(ended, Ordering::Release);
        if self.resume_refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The worker left it: a worker resumes it (the work is idle:
            // it ran to start the command, or never did).
            let queue = self.exec.0.clone();
            queue.resume(self);
        }
    }

    fn set_outcome(&self, outcome: Outcome) {
        *self.late.lock() = Some(outcome);
    }

    fn aborted(&self) -> bool {
        Scheduled::aborted(self)
    }
}

/// How a logical unit completes a command it deferred
/// ([`super::device::ExecCmd::defer`]). Dropping it unused fails the
/// command, so no deferred command is ever left waiting.
pub(crate) struct Deferral {
    cmd: Option<Arc<dyn Resumable>>,
}

impl Deferral {
    /// Whether task management (or the end of its session) aborted the
    /// command since it was deferred: a logical unit whose work goes on
    /// without it (a sanitize) ends it early. Process context.
    pub(crate) fn aborted(&self) -> bool {
        self.cmd.as_ref().is_some_and(|c| c.aborted())
    }

    /// The command ends as its logical unit said it would on success or
    /// on failure. Any context, hard interrupt included; never sleeps.
    pub(crate) fn complete(mut self, succeeded: bool) {
        if let Some(cmd) = self.cmd.take() {
            cmd.deferral_done(if succeeded {
                ENDED_SUCCEEDED
            } else {
                ENDED_FAILED
            });
        }
    }

    /// The logical unit, asked to execute the command without blocking
    /// ([`super::device::ExecCmd::nowait`]), started it and found it
    /// would have to block (a block device with no request free): nothing
    /// it did is visible to the initiator, and the command executes again,
    /// from the start, on a core worker. Any context, hard interrupt
    /// included; never sleeps.
    pub(crate) fn would_block(mut self) {
        if let Some(cmd) = self.cmd.take() {
            cmd.deferral_done(ENDED_WOULD_BLOCK);
        }
    }

    /// Once the logical unit completes the command ([`Self::complete`],
    /// whichever way), `finish` says how it ended, on the worker that
    /// resumes it; it replaces both outcomes given when it deferred. For
    /// a completion that runs where it cannot build the outcome (a
    /// pass-through request's end_io). Process context only.
    pub(crate) fn will_finish(&self, finish: Arc<dyn FinishDeferred>) {
        if let Some(cmd) = &self.cmd {
            cmd.set_outcome(Outcome::Finish(finish));
        }
    }

    /// The command ends with `outcome`, which replaces both the logical
    /// unit gave when it deferred. Process context only: unlike
    /// [`Self::complete`], it takes a lock.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        if let Some(cmd) = self.cmd.take() {
            cmd.set_outcome(outcome);
            cmd.deferral_done(ENDED_SUCCEEDED);
        }
    }
}

impl Drop for Deferral {
    fn drop(&mut self) {
        if let Some(cmd) = self.cmd.take() {
            cmd.deferral_done(ENDED_FAILED);
        }
    }
}

impl<T: TgtCmd> WorkItem for Cmd<T> {
    type Pointer = Arc<Cmd<T>>;

    /// A core worker: runs the command, then the device's other ready
    /// commands, while there are any; or resumes a deferred command
    /// (outside the device's count of workers).
    fn run(this: Arc<Cmd<T>>) {
        if this.resume_refs.load(Ordering::Acquire) == 0 {
            this.resume();
            return;
        }
        let Some(nexus) = this.nexus() else {
            return;
        };
        let dev = nexus.dev.clone();
        let mut next = Some(Ready { cmd: this, nexus });
        while let Some(Ready { cmd, nexus }) = next {
            cmd.execute();
            next = dev.next_ready(&nexus);
        }
    }
}

impl Command {
    /// TGT_PRE_EXEC: hands the command, its CDB and the driver's side to
    /// the core, which executes it and calls
    /// [`TgtCmd::xmit_response`]. Never blocks: a driver calls it from
    /// its receive context, which `context` says may or may not sleep.
    pub(crate) fn submit<T: TgtCmd>(
        mut self,
        cdb: &[u8],
        direction: DataDirection,
        tgt: T,
        context: Context,
    ) {
        self.set_state(State::TgtPreExec);
        // Made where it stays until it ends or moves to a worker: a body
        // is a large value, and each move copies it.
        let mut body = Body {
            command: self,
            cdb: [0; MAX_CDB_LEN],
            cdb_len: cdb.len().min(MAX_CDB_LEN),
            direction,
            tgt,
            deferred: None,
            tried_nowait: false,
        };
        let n = body.cdb_len;
        body.cdb[..n].copy_from_slice(&cdb[..n]);
        let (nexus, ticket) = match (&body.command.tgt_dev, body.command.admission) {
            (Some(t), Some(Ok(ticket))) if body.command.refused.is_none() => (t.clone(), ticket),
            // Refused, for an absent LUN, or ended while lending: the core
            // answers at once; nothing of a backend runs.
            _ => return body.answer_at_once(),
        };
        if context == Context::Direct && nexus.dev.may_start_now(ticket) {
            let queue = nexus.dev.exec_queue();
            match body.try_now(queue) {
                // FINISHED as it drops, here.
                Tried::Answered => return,
                Tried::Deferred(cmd) => return body.deferred_here(cmd, queue),
                Tried::NotRun => {}
            }
        }
        body.schedule(nexus, ticket);
    }
}

impl<T: TgtCmd> Body<T> {
    /// EXEC to FINISHED of a command no logical unit executes. Not
    /// inlined, as [`Self::try_now`].
    #[inline(never)]
    fn answer_at_once(&mut self) {
        if let AfterExec::Now(response) = self.exec(None, false) {
            self.respond(response);
        }
    }

    /// TGT_PRE_EXEC for a worker: the command waits in its device's task
    /// set for its turn, then for a worker. Not inlined, as
    /// [`Self::try_now`].
    #[inline(never)]
    fn schedule(mut self, nexus: Arc<TgtDev>, ticket: Ticket) {
        let dev = nexus.dev.clone();
        match Cmd::new(dev.exec_queue(), GFP_ATOMIC) {
            Ok(cmd) => {
                *cmd.body.lock() = Some(self);
                dev.start_when_ready(Ready { cmd, nexus }, ticket);
            }
            Err(_) => self.respond(Response::status(super::session::status::BUSY)),
        }
    }
}

/// The workqueue core workers run on.
pub(crate) struct ExecQueue {
    wq: OwnedQueue,
    /// Commands submitted and not yet FINISHED (see [`Live`]).
    live: AtomicUsize,
}

/// Counts a command as live on its [`ExecQueue`] while it exists.
struct Live(Arc<ExecQueue>);

impl Live {
    fn new(queue: &Arc<ExecQueue>) -> Self {
        queue.live.fetch_add(1, Ordering::Relaxed);
        Self(queue.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Release);
    }
}

/// How often module unload looks again for commands still executing, when
/// it first says it waits for them, and how often it says so again.
const CLOSE_POLL_MS: u32 = 10;
const CLOSE_FIRST_REPORT_MS: i64 = 1_000;
const CLOSE_REPORT_MS: i64 = 10_000;

impl ExecQueue {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(
            Self {
                wq: OwnedQueue::new(c_str!("scst_cmd"))?,
                live: AtomicUsize::new(0),
            },
            GFP_KERNEL,
        )?)
    }

    /// Starts a worker for `cmd` (and its device's ready commands after
    /// it).
    pub(crate) fn run(&self, cmd: Arc<dyn Scheduled>) {
        cmd.start_worker(self.wq.queue());
    }

    /// Runs `f` on the core's workqueue: a logical unit's watchdog, which
    /// must return once its unit is gone (module unload waits for it).
    pub(crate) fn spawn(&self, f: impl FnOnce() + Send + 'static) -> Result {
        Ok(self.wq.queue().try_spawn(GFP_KERNEL, f)?)
    }

    /// Resumes a deferred command on a worker; any context.
    fn resume<T: TgtCmd>(&self, cmd: Arc<Cmd<T>>) {
        // Idle, so never refused: see `Scheduled::start_worker`.
        let _ = self.wq.queue().enqueue(cmd);
    }

    /// Waits for every command to finish; called at module unload after
    /// the drivers stopped, so that no command outlives the module.
    /// Commands their logical units complete later (a bio in flight)
    /// come back to the queue, so the queue drains only once none is left:
    /// a block device ends or times out its I/O, a user-space handler's
    /// command times out. A bio cannot be taken back from its device, and
    /// its end runs this module's code: for a device that holds its I/O
    /// indefinitely (a suspended device-mapper device, a multipath device
    /// queueing with no path) unload waits until the device ends it,
    /// saying so in the log.
    pub(crate) fn close(&self) {
        let start = Ktime::ktime_get();
        let mut next_report = CLOSE_FIRST_REPORT_MS;
        loop {
            let live = self.live.load(Ordering::Acquire);
            if live == 0 {
                break;
            }
            let waited = ktime_ms_delta(Ktime::ktime_get(), start);
            if waited >= next_report {
                pr_info!(
                    "unload waits for {} commands whose backing I/O has not ended\n",
                    live
                );
                next_report = waited + CLOSE_REPORT_MS;
            }
            crate::kernel_ext::misc::sleep_ms(CLOSE_POLL_MS);
        }
        self.wq.drain();
    }
}
