// SPDX-License-Identifier: GPL-2.0

//! The life cycle of a SCSI command, top to bottom.
//!
//! A command is an object with a [`State`]. Each step that may wait hands
//! the command on and returns; whoever resumes it (a core worker, the end
//! of an older command) runs the next step, in whatever context that is.
//! No step runs a backend in the context that received the command.
//!
//! | state | what happens | context |
//! | --- | --- | --- |
//! | INIT | [`super::session::Session::begin`]: LUN decoded, I_T_L nexus found, command recorded in flight and admitted to its device's task set in arrival order, or refused (TASK SET FULL, BUSY) | the driver's receive context; never sleeps, never allocates |
//! | PARSE, PREPARE_SPACE | [`super::session::Command::data_buffer`]: the buffer the data goes to (memory the logical unit lends, or new pages); a driver whose initiator owns the buffer (scst_local) skips it | the driver's receive context (process context: it may allocate) |
//! | RDY_TO_XFER, DATA_WAIT | the driver fetches the data-out into the buffer (iSCSI: immediate data, R2T and Data-Out in its receive loop, which goes on receiving other PDUs meanwhile) | the driver's own |
//! | TGT_PRE_EXEC | [`super::session::Command::submit`]: a refused command and one for an absent LUN are answered at once (nothing of a backend runs); an admitted one starts when its task attribute lets it, else it parks in its device's task set and the end of an older command starts it | the submitting context, or that of the older command's end; never sleeps |
//! | EXEC | the logical unit runs the command on its buffer ([`super::device::LogicalUnit::execute`], may block) | a core worker, at most `threads_num` per device at once |
//! | DEV_DONE, PRE_XMIT_RESP | the logical unit's status and sense become the response; MODE SELECT raises MODE PARAMETERS CHANGED on the other nexuses | the same worker |
//! | XMIT_RESP | [`TgtCmd::xmit_response`]: the driver sends data-in and status, or queues them with the buffer for its own sender | the same worker (or the submitting context for a command answered at once) |
//! | FINISHED | the command leaves the task set (older-command waiters start) and the in-flight set (task management waiting for it wakes) | where XMIT_RESP ran |
//!
//! A worker that finishes a command takes the device's next ready command
//! itself, so a busy device costs no context switch per command.
//!
//! Locks: a device's task-set lock, then its pool lock; neither is held
//! while a backend or a driver runs.

use super::buffer::{LendRefused, LentId};
use super::device::{DataDirection, DeviceState};
use super::session::{Command, Response};
use crate::kernel_ext::sg::SgList;
use crate::kernel_ext::wq::OwnedQueue;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    c_str, new_spinlock,
    prelude::*,
    sync::{Arc, SpinLock},
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

    /// The logical unit already ended the command while lending it memory.
    fn refused(&self) -> Option<LendRefused> {
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
}

impl<T: TgtCmd> Body<T> {
    /// EXEC to FINISHED on a worker: an aborted command ends without
    /// executing.
    fn run(mut self) {
        if self.command.is_aborted() {
            self.command.state = State::Finished;
            self.tgt.aborted();
            return;
        }
        let response = self.exec();
        self.respond(response);
    }

    /// EXEC, DEV_DONE, PRE_XMIT_RESP: runs the command (the core's own
    /// answer, or its logical unit's) and returns the response.
    fn exec(&mut self) -> Response {
        if self.command.state != State::TgtPreExec {
            // Executed once; a second run would answer twice.
            pr_err!(
                "scst: command in state {:?} executed again\n",
                self.command.state
            );
            return Response::status(super::session::status::BUSY);
        }
        self.command.state = State::Exec;
        let lent = self.tgt.lent();
        let response = match (self.tgt.refused(), &self.command.tgt_dev) {
            (Some(LendRefused::Sense(s)), Some(t)) => {
                Response::check_condition(s, t.dev.lu.sense_format())
            }
            (Some(LendRefused::Status(raw)), Some(_)) => Response::from_raw(raw),
            _ => {
                let cdb = self.cdb.get(..self.cdb_len).unwrap_or(&[]);
                let mut data = self.tgt.buffer();
                self.command.dispatch(cdb, &mut data, self.direction, lent)
            }
        };
        // The logical unit's unit attentions (MODE PARAMETERS CHANGED)
        // are raised in dispatch, before the response leaves.
        self.command.state = State::DevDone;
        response
    }

    /// XMIT_RESP, then FINISHED when the body drops: the INIT record ends
    /// the command in the task set and the in-flight set.
    fn respond(mut self, response: Response) {
        self.command.state = State::XmitResp;
        self.tgt.xmit_response(response);
        self.command.state = State::Finished;
    }
}

/// A command between TGT_PRE_EXEC and FINISHED whose execution is
/// scheduled: in its device's task set waiting for older commands, in its
/// device's ready queue, or on a core worker.
#[pin_data]
pub(crate) struct Cmd<T> {
    /// Taken by the context that runs the command.
    #[pin]
    body: SpinLock<Option<Body<T>>>,
    #[pin]
    work: Work<Cmd<T>>,
}

impl_has_work! {
    impl{T} HasWork<Self> for Cmd<T> { self.work }
}

/// A scheduled command of any target driver, as its device queues it.
pub(crate) trait Scheduled: Send + Sync {
    /// EXEC to FINISHED.
    fn execute(&self);

    /// Task management aborted it (see [`Command::is_aborted`]).
    fn aborted(&self) -> bool;

    /// The device the command executes on.
    fn device(&self) -> Option<Arc<DeviceState>>;

    /// Queues the command's own work on `queue`.
    fn start_worker(self: Arc<Self>, queue: &Queue);

    /// Runs the command's worker right here.
    fn run_worker(self: Arc<Self>);
}

impl<T: TgtCmd> Scheduled for Cmd<T> {
    fn execute(&self) {
        // Taken in a statement of its own: the lock is released before the
        // command runs.
        let body = self.body.lock().take();
        if let Some(body) = body {
            body.run();
        }
    }

    fn aborted(&self) -> bool {
        self.body
            .lock()
            .as_ref()
            .is_some_and(|b| b.command.is_aborted())
    }

    fn device(&self) -> Option<Arc<DeviceState>> {
        let body = self.body.lock();
        let t = body.as_ref()?.command.tgt_dev.as_ref()?;
        Some(t.dev.clone())
    }

    fn start_worker(self: Arc<Self>, queue: &Queue) {
        // A command is scheduled once, so its work is never queued already.
        let _ = queue.enqueue(self);
    }

    fn run_worker(self: Arc<Self>) {
        <Self as WorkItem>::run(self);
    }
}

impl<T: TgtCmd> WorkItem for Cmd<T> {
    type Pointer = Arc<Cmd<T>>;

    /// A core worker: runs the command, then the device's other ready
    /// commands, while there are any.
    fn run(this: Arc<Cmd<T>>) {
        let Some(dev) = this.device() else {
            return;
        };
        let mut next: Option<Arc<dyn Scheduled>> = Some(this);
        while let Some(cmd) = next {
            cmd.execute();
            next = dev.next_ready();
        }
    }
}

impl Command {
    /// TGT_PRE_EXEC: hands the command, its CDB and the driver's side to
    /// the core, which executes it and calls
    /// [`TgtCmd::xmit_response`]. Never sleeps: a driver may call it from
    /// its receive context, atomic or not.
    pub(crate) fn submit<T: TgtCmd>(mut self, cdb: &[u8], direction: DataDirection, tgt: T) {
        self.state = State::TgtPreExec;
        let mut body = Body {
            command: self,
            cdb: [0; MAX_CDB_LEN],
            cdb_len: cdb.len().min(MAX_CDB_LEN),
            direction,
            tgt,
        };
        let n = body.cdb_len;
        body.cdb[..n].copy_from_slice(&cdb[..n]);
        let (dev, ticket) = match (&body.command.tgt_dev, body.command.admission) {
            (Some(t), Some(Ok(ticket))) if body.tgt.refused().is_none() => (t.dev.clone(), ticket),
            // Refused, for an absent LUN, or ended while lending: the core
            // answers at once; nothing of a backend runs.
            _ => {
                let response = body.exec();
                body.respond(response);
                return;
            }
        };
        let cmd = Arc::pin_init(
            pin_init!(Cmd {
                body <- new_spinlock!(None),
                work <- new_work!("scst::Cmd::work"),
            }),
            GFP_ATOMIC,
        );
        match cmd {
            Ok(cmd) => {
                *cmd.body.lock() = Some(body);
                dev.start_when_ready(cmd, ticket);
            }
            Err(_) => body.respond(Response::status(super::session::status::BUSY)),
        }
    }
}

/// The workqueue core workers run on.
pub(crate) struct ExecQueue {
    wq: OwnedQueue,
    /// Set at module unload, once every driver has stopped.
    closed: AtomicBool,
}

impl ExecQueue {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(
            Self {
                wq: OwnedQueue::new(c_str!("scst_cmd"))?,
                closed: AtomicBool::new(false),
            },
            GFP_KERNEL,
        )?)
    }

    /// Starts a worker for `cmd` (and its device's ready commands after
    /// it).
    pub(crate) fn run(&self, cmd: Arc<dyn Scheduled>) {
        if self.closed.load(Ordering::Acquire) {
            // Only a worker of this queue finishing a command can start
            // another once it is closed: run it right there.
            cmd.run_worker();
        } else {
            cmd.start_worker(self.wq.queue());
        }
    }

    /// Waits for every command in execution; called at module unload
    /// after the drivers stopped, so that no command outlives the module.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wq.drain();
    }
}
