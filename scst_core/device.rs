// SPDX-License-Identifier: GPL-2.0

//! Device handlers, the logical units they create, and the devices of the
//! core (`handlers/`, `devices/`).

use super::alua::PortView;
use super::buffer::{BufferRequest, LendRefused, Lending, LentId};
use super::cmd::{Defer, Deferral, ExecQueue, Scheduled};
use super::device_groups::{AluaConfig, AluaView};
use super::mgmt::{MgmtError, Params};
use super::reservation::DevReservations;
use super::sense::{Sense, SenseFormat};
use super::session::TgtDev;
use super::task_set::{Refusal, Slot, TaskAttr, TaskSet, Ticket};
use super::MgmtFailure;
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::sg::SgList;
use crate::kernel_ext::sysfs::{Dir, DirRef, File, Link, SysfsBuf, SysfsOps};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    fmt, new_mutex, new_spinlock,
    prelude::*,
    str::{CStr, CString},
    sync::{Arc, ArcBorrow, Mutex, SpinLock},
};

/// A device handler: a backend kind such as `vdisk_fileio`, listed under
/// `handlers/` and managed through `handlers/<name>/mgmt`.
pub(crate) trait DevHandler: Send + Sync + 'static {
    /// The handler's name, its directory under `handlers/`.
    fn name(&self) -> &str;

    /// SCSI peripheral device type of its devices (SPC-4 table 49).
    fn device_type(&self) -> u8;

    /// Usage text shown when `handlers/<name>/mgmt` is read.
    fn mgmt_help(&self) -> &'static str;

    /// Creates the logical unit of `add_device NAME params` (opening its
    /// backing storage); the core registers it.
    fn create<'a>(
        &self,
        name: &'a str,
        params: Params<'a>,
    ) -> Result<Arc<dyn LogicalUnit>, MgmtFailure<'a>>;
}

/// A device attribute a logical unit shows under `devices/<name>/`.
pub(crate) struct LuAttr {
    /// File name.
    pub(crate) name: &'static CStr,
    /// Whether writing it is allowed.
    pub(crate) writable: bool,
}

/// What a successful attribute write changed, for unit attentions.
pub(crate) enum AttrChange {
    /// The capacity changed: CAPACITY DATA HAS CHANGED.
    Capacity,
    /// Something else initiators see changed: every nexus gets this unit
    /// attention.
    Attention(Sense),
    /// Nothing initiators need to learn of.
    Nothing,
}

/// Which way a command's data goes, as its transport received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataDirection {
    /// No data.
    None,
    /// Data-out: initiator to target.
    Write,
    /// Data-in: target to initiator.
    Read,
    /// Both.
    Bidi,
}

/// An I_T_L nexus as a logical unit learns of it (SCST's "session" of a
/// user-space handler).
pub(crate) struct NexusInfo<'a> {
    /// Unique for the module's lifetime.
    pub(crate) id: u64,
    pub(crate) lun: u64,
    pub(crate) read_only: bool,
    pub(crate) initiator: &'a CStr,
    pub(crate) target: &'a CStr,
    /// The device's `threads_num` as the nexus starts: how many of its
    /// commands the core executes at once (a handler may size its own
    /// threads by it).
    pub(crate) threads_num: u32,
}

/// A status and sense a logical unit built itself (a user-space handler's
/// reply), instead of GOOD or a [`Sense`] the core encodes.
#[derive(Clone, Copy)]
pub(crate) struct RawStatus {
    pub(crate) status: u8,
    pub(crate) sense: [u8; super::sense::MAX_RAW_SENSE_LEN],
    pub(crate) sense_len: usize,
}

impl RawStatus {
    /// `status` without sense data.
    pub(crate) fn bare(status: u8) -> Self {
        Self {
            status,
            sense: [0; super::sense::MAX_RAW_SENSE_LEN],
            sense_len: 0,
        }
    }
}

/// A command as a logical unit executes it.
pub(crate) struct ExecCmd<'a, 'b> {
    /// The CDB.
    pub(crate) cdb: &'a [u8],
    /// The data buffer: data-out as received, data-in to fill.
    pub(crate) data: &'a mut SgList<'b>,
    /// Writes must be refused (read-only LUN or device).
    pub(crate) read_only: bool,
    /// Relative target port identifier of the target the command came to.
    pub(crate) rel_tgt_id: u16,
    /// ALUA as the command's I_T_L nexus sees it, when the device is in a
    /// device group (INQUIRY's TPGS and target port group designator).
    pub(crate) alua: Option<PortView>,
    /// The data direction the transport has.
    pub(crate) direction: DataDirection,
    /// [`NexusInfo::id`] of the command's I_T_L nexus.
    pub(crate) nexus: u64,
    /// `data` is the buffer this logical unit lent the command.
    pub(crate) lent: Option<LentId>,
    /// The command's tag on its nexus (what ABORT TASK names).
    pub(crate) tag: u64,
    /// The command, for a logical unit that completes it later.
    pub(super) defer: Option<&'a dyn Defer>,
    /// What [`Self::defer`] was told the command ends with.
    pub(super) deferred: Option<(Completion, Sense)>,
    /// The command runs in the context that submitted it, which must not
    /// block (see [`LogicalUnit::may_execute_nowait`]): where it would,
    /// the logical unit returns [`Executed::WouldBlock`], or, having
    /// deferred the command, ends the deferral with
    /// [`Deferral::would_block`].
    pub(crate) nowait: bool,
}

impl ExecCmd<'_, '_> {
    /// Lets the logical unit complete the command later, from any context:
    /// it ends with `done`, or with CHECK CONDITION and `failed`, as the
    /// returned [`Deferral`] is told. The logical unit then returns
    /// [`Executed::Later`]; the buffer stays the command's (and may be
    /// written to) until the deferral completes. `None` where the command
    /// cannot be deferred (it must then complete before `execute`
    /// returns).
    pub(crate) fn defer(&mut self, done: Completion, failed: Sense) -> Option<Deferral> {
        let deferral = self.defer.take()?.deferral()?;
        self.deferred = Some((done, failed));
        Some(deferral)
    }
}

/// A copy target as EXTENDED COPY finds and addresses it.
#[derive(Clone, Copy)]
pub(crate) struct CopyTargetInfo {
    /// The NAA designator of VPD page 83h.
    pub(crate) naa: [u8; 8],
    pub(crate) block_size: u32,
    pub(crate) blocks: u64,
}

/// How [`LogicalUnit::execute`] left a command.
pub(crate) enum Executed {
    /// It is over.
    Done(Completion),
    /// It completes later, through the [`Deferral`] of [`ExecCmd::defer`].
    Later,
    /// Only for an [`ExecCmd::nowait`] command: it would have to block.
    /// Nothing the initiator could tell was done (the data buffer may hold
    /// part of a read); the command executes again on a worker.
    WouldBlock,
}

impl From<Completion> for Executed {
    fn from(done: Completion) -> Self {
        Executed::Done(done)
    }
}

/// A task management function, as the logical units it affects hear of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TmFunction {
    /// ABORT TASK of the command with this tag.
    AbortTask(u64),
    /// ABORT TASK SET: the nexus' own commands.
    AbortTaskSet,
    /// CLEAR TASK SET: every nexus' commands.
    ClearTaskSet,
    LunReset,
    TargetReset,
}

/// Task management on one I_T_L nexus.
pub(crate) struct TaskMgmt {
    pub(crate) function: TmFunction,
    /// [`NexusInfo::id`].
    pub(crate) nexus: u64,
}

/// How a command the logical unit executed ended.
pub(crate) struct Completion {
    /// Bytes of data-in placed at the start of the buffer.
    pub(crate) data_in: usize,
    /// Bytes the CDB asked to move (the data-in the command had, or the
    /// data-out it takes), whatever the buffer held: a transport whose
    /// expected length differs reports the residual from it.
    pub(crate) transfer_len: usize,
    /// A unit attention for the device's other nexuses: the command
    /// changed what they see (MODE SELECT's parameters, a loaded medium).
    pub(crate) others_ua: Option<Sense>,
    /// A status other than GOOD, with its sense as built by the logical
    /// unit.
    pub(crate) raw: Option<RawStatus>,
}

impl Completion {
    /// A command that moved no data.
    pub(crate) const NO_DATA: Self = Self {
        data_in: 0,
        transfer_len: 0,
        others_ua: None,
        raw: None,
    };

    /// `placed` bytes of data-in out of the `wanted` the command had.
    pub(crate) fn data_in(placed: usize, wanted: usize) -> Self {
        Self {
            data_in: placed,
            transfer_len: wanted,
            others_ua: None,
            raw: None,
        }
    }
}

/// A logical unit: the device server of one device.
///
/// `execute` runs on a core worker, in process context, and may sleep
/// (backend I/O); a logical unit that only starts the I/O there defers the
/// command ([`ExecCmd::defer`]) and frees the worker. A command
/// [`LogicalUnit::may_execute_nowait`] accepts is first tried in the
/// context that submitted it, where it must not block.
pub(crate) trait LogicalUnit: Send + Sync + 'static {
    /// Executes one command; an `Err` becomes CHECK CONDITION with that sense.
    fn execute(&self, cmd: &mut ExecCmd<'_, '_>) -> Result<Executed, Sense>;

    /// Whether the command with this CDB may be tried in the context that
    /// submitted it (a driver's receive loop: process context that must
    /// not wait for a backend): [`Self::execute`] then runs with
    /// [`ExecCmd::nowait`] set and answers [`Executed::WouldBlock`] where
    /// it would block (a read the page cache does not hold). It may defer
    /// the command after starting I/O that does not block (bios submitted
    /// with `REQ_NOWAIT`), and end the deferral with
    /// [`Deferral::would_block`] if the I/O could not start after all: a
    /// worker then executes the command again. A command done or started
    /// there costs no context switch and needs no worker. Say yes only
    /// where blocking is the exception.
    fn may_execute_nowait(&self, _cdb: &[u8]) -> bool {
        false
    }

    /// The sense format initiators asked for (control mode page D_SENSE).
    fn sense_format(&self) -> SenseFormat;

    /// Commands another nexus' task management aborted end with TASK
    /// ABORTED status (control mode page TAS), rather than without a
    /// response.
    fn task_aborted_status(&self) -> bool {
        false
    }

    /// What REQUEST SENSE reports when no unit attention is pending: a
    /// condition the logical unit is in (SANITIZE IN PROGRESS), or `None`
    /// for NO SENSE.
    fn current_condition(&self) -> Option<Sense> {
        None
    }

    /// Capacity in bytes, for the log and `size`.
    fn size(&self) -> u64;

    /// What EXTENDED COPY needs of a block device it may copy from or to;
    /// `None`: not a copy target. The logical unit then executes the
    /// copy's READ (16) and WRITE (16) commands, on a core worker, with
    /// no [`ExecCmd::defer`].
    fn copy_target(&self) -> Option<CopyTargetInfo> {
        None
    }

    /// The handler-specific attributes under `devices/<name>/`.
    fn attributes(&self) -> &'static [LuAttr];

    /// Shows attribute `index` of [`Self::attributes`].
    fn show(&self, index: usize, out: &mut SysfsBuf);

    /// Writes attribute `index`.
    fn store<'a>(&self, index: usize, value: &'a str) -> Result<AttrChange, MgmtFailure<'a>>;

    /// A nexus to this logical unit was created (before its first command).
    fn nexus_attached(&self, _nexus: &NexusInfo<'_>) {}

    /// The nexus `id` is gone (after its last command).
    fn nexus_detached(&self, _id: u64) {}

    /// Task management is about to wait for the commands it affects: a
    /// logical unit that runs them elsewhere (a user-space handler) can
    /// end them sooner.
    fn task_mgmt_received(&self, _tm: &TaskMgmt) {}

    /// That task management is over; `done` when every command it waited
    /// for had finished.
    fn task_mgmt_done(&self, _tm: &TaskMgmt, _done: bool) {}

    /// Memory of its own for a command's data, which the transport then
    /// receives data-out into and sends data-in from (a user-space
    /// handler's buffer: no copy between the wire and the process).
    /// [`Lending::NotLent`] lets the transport use pages of its own; `Err`
    /// ends the command. Asked with [`BufferRequest::nowait`], it never
    /// sleeps.
    fn lend_buffer(
        self: ArcBorrow<'_, Self>,
        _req: &BufferRequest<'_>,
    ) -> Result<Lending, LendRefused> {
        Ok(Lending::NotLent)
    }
}

/// The human-readable name of a peripheral device type, as SCST's `type`
/// attributes print it.
pub(crate) fn device_type_name(device_type: u8) -> &'static str {
    match device_type {
        0x00 => "Direct-access device (e.g., magnetic disk)",
        0x01 => "Sequential-access device (e.g., magnetic tape)",
        0x03 => "Processor device",
        0x05 => "CD/DVD device",
        0x08 => "Media changer device (e.g., jukeboxes)",
        0x0c => "Storage array controller device (e.g., RAID)",
        0x0d => "Enclosure services device",
        _ => "Unknown device type",
    }
}

/// Commands a device accepts in its task set from all nexuses together
/// (SCST's per-device limit).
pub(crate) const MAX_DEV_COMMANDS: u32 = 256;

/// Default commands one I_T_L nexus may have in the task set
/// (`max_tgt_dev_commands`), as SCST's.
pub(crate) const DEFAULT_TGT_DEV_COMMANDS: u32 = 64;

/// Core workers a device runs commands on at once (`threads_num`), unless
/// its handler says otherwise.
pub(crate) const DEFAULT_THREADS_NUM: u32 = 8;

/// Most workers a device may have (`threads_num`).
pub(crate) const MAX_THREADS_NUM: u32 = 64;

/// `threads_pool_type` values, as SCST names them.
const THREADS_POOL_SHARED: &str = "shared";
const THREADS_POOL_PER_INITIATOR: &str = "per_initiator";

/// A scheduled command with the nexus it came from: under
/// `threads_pool_type` per_initiator, each nexus has `threads_num` workers
/// of its own.
pub(crate) struct Ready {
    pub(crate) cmd: Arc<dyn Scheduled>,
    pub(crate) nexus: Arc<TgtDev>,
}

/// The commands of a device's task set, and those of them that wait for
/// older ones (by task attribute), oldest first.
struct Tasks {
    set: TaskSet<KVec<Slot>>,
    /// Never grows past its capacity, reserved for every slot of `set`.
    waiting: KVec<(Ticket, Ready)>,
}

/// The commands of a device ready to execute and the workers running
/// them (each nexus counts its own in [`TgtDev::running`]).
struct Pool {
    running: u32,
    /// Oldest first; never grows past its capacity, reserved for every
    /// slot of the task set.
    ready: KVec<Ready>,
}

/// A device as the core and its sessions share it. Attribute reads never
/// touch the registry lock.
#[pin_data]
pub(crate) struct DeviceState {
    pub(crate) name: CString,
    pub(crate) handler_name: CString,
    pub(crate) device_type: u8,
    pub(crate) lu: Arc<dyn LogicalUnit>,
    /// Every I_T_L nexus of this device, for unit attentions.
    #[pin]
    pub(crate) tgt_devs: SpinLock<KVec<Arc<TgtDev>>>,
    /// The commands accepted and not ended, by arrival (ordering and
    /// queue depth).
    #[pin]
    tasks: SpinLock<Tasks>,
    /// Commands ready to execute; taken after `tasks` when both are held.
    #[pin]
    pool: SpinLock<Pool>,
    /// Workers that may execute this device's commands at once, or each
    /// nexus' commands with `per_initiator`.
    pub(crate) threads_num: AtomicU32,
    /// `threads_pool_type` per_initiator: an initiator's busy commands
    /// never hold up another's.
    per_initiator: AtomicBool,
    /// Bumped by each LUN reset, target reset or CLEAR TASK SET: every
    /// command admitted before is aborted.
    pub(crate) reset_epoch: AtomicU64,
    /// [`NexusInfo::id`] of the nexus whose task management bumped
    /// `reset_epoch` last.
    abort_origin: AtomicU64,
    exec: Arc<ExecQueue>,
    /// Commands one nexus may have in the task set.
    pub(crate) max_tgt_dev_commands: AtomicU32,
    /// Registrations and reservations (see `reservation.rs`).
    #[pin]
    pub(crate) pr: SpinLock<DevReservations>,
    /// A reservation is held: commands are checked against it.
    pub(crate) pr_held: AtomicBool,
    /// Serializes PERSISTENT RESERVE OUT service actions and the saving
    /// of their outcome.
    #[pin]
    pub(crate) pr_out: Mutex<()>,
    /// Where persistent reservations are kept when APTPL is set (SCST's
    /// `/var/lib/scst/pr/<device>`).
    pub(crate) pr_file: CString,
    /// The ALUA view of the device group the device is in, if any (see
    /// `device_groups.rs`); taken before `tgt_devs` when both are held.
    #[pin]
    pub(crate) alua: SpinLock<Option<Arc<AluaView>>>,
    /// SET TARGET PORT GROUPS is accepted (SCST's `expl_alua`).
    pub(crate) expl_alua: AtomicBool,
    /// The ALUA configuration, which SET TARGET PORT GROUPS changes.
    pub(crate) alua_config: Arc<AluaConfig>,
}

/// Where each device's persistent reservation file is (SCST's).
pub(crate) const PR_DIR: &str = "/var/lib/scst/pr";

impl DeviceState {
    /// A device's shared state around its logical unit.
    pub(crate) fn new(
        name: CString,
        handler_name: CString,
        device_type: u8,
        lu: Arc<dyn LogicalUnit>,
        exec: Arc<ExecQueue>,
        alua_config: Arc<AluaConfig>,
    ) -> Result<Arc<Self>> {
        let pr_file = CString::try_from_fmt(fmt!("{}/{}", PR_DIR, &*name))?;
        let n = MAX_DEV_COMMANDS as usize;
        let mut slots = KVec::new();
        slots.extend_with(n, Slot::FREE, GFP_KERNEL)?;
        let tasks = Tasks {
            set: TaskSet::new(slots),
            waiting: KVec::with_capacity(n, GFP_KERNEL)?,
        };
        let pool = Pool {
            running: 0,
            ready: KVec::with_capacity(n, GFP_KERNEL)?,
        };
        Arc::pin_init(
            pin_init!(Self {
                name,
                handler_name,
                device_type,
                lu,
                tgt_devs <- new_spinlock!(KVec::new()),
                tasks <- new_spinlock!(tasks),
                pool <- new_spinlock!(pool),
                threads_num: AtomicU32::new(DEFAULT_THREADS_NUM),
                per_initiator: AtomicBool::new(false),
                reset_epoch: AtomicU64::new(0),
                abort_origin: AtomicU64::new(0),
                exec,
                max_tgt_dev_commands: AtomicU32::new(DEFAULT_TGT_DEV_COMMANDS),
                pr <- new_spinlock!(DevReservations::new(KVec::new(), true)),
                pr_held: AtomicBool::new(false),
                pr_out <- new_mutex!(()),
                pr_file,
                alua <- new_spinlock!(None),
                expl_alua: AtomicBool::new(false),
                alua_config,
            }),
            GFP_KERNEL,
        )
    }

    /// Task management of the nexus `origin` aborts every command of the
    /// device admitted so far, whichever nexus it came from.
    pub(crate) fn abort_all(&self, origin: u64) {
        self.abort_origin.store(origin, Ordering::Relaxed);
        self.reset_epoch.fetch_add(1, Ordering::Release);
    }

    /// Nexus `id` is gone: its SPC-2 reservation ends.
    pub(crate) fn nexus_lost(&self, id: u64) {
        let mut pr = self.pr.lock();
        pr.nexus_lost(id);
        self.pr_held.store(pr.any_held(), Ordering::Release);
    }

    /// A LUN or target reset: the SPC-2 reservation ends.
    pub(crate) fn reservations_reset(&self) {
        let mut pr = self.pr.lock();
        pr.reset();
        self.pr_held.store(pr.any_held(), Ordering::Release);
    }

    /// Whether the last [`Self::abort_all`] came from nexus `id`.
    pub(crate) fn aborted_by_nexus(&self, id: u64) -> bool {
        self.abort_origin.load(Ordering::Relaxed) == id
    }

    /// The workqueue this device's commands execute on.
    pub(crate) fn exec_queue(&self) -> &Arc<ExecQueue> {
        &self.exec
    }

    /// Accepts a received command of `tgt_dev` into the task set (INIT),
    /// or says which status refuses it.
    pub(crate) fn admit(&self, tgt_dev: &TgtDev, attr: TaskAttr) -> Result<Ticket, Refusal> {
        let limit = self.max_tgt_dev_commands.load(Ordering::Relaxed);
        let mut tasks = self.tasks.lock();
        let ticket = tasks
            .set
            .admit(attr, tgt_dev.active.load(Ordering::Relaxed), limit)?;
        // Under the task set's lock: the count and the set agree.
        tgt_dev.active.fetch_add(1, Ordering::Relaxed);
        Ok(ticket)
    }

    /// Whether the command of `ticket` may start now, by task attribute
    /// (a command that may start keeps that right: only older commands
    /// hold one back).
    pub(crate) fn may_start_now(&self, ticket: Ticket) -> bool {
        self.tasks.lock().set.may_start(ticket)
    }

    /// TGT_PRE_EXEC: `cmd` (of `ticket`) executes as soon as its task
    /// attribute lets it; until then it waits in the task set, and the end
    /// of an older command starts it. Never sleeps.
    pub(crate) fn start_when_ready(&self, ready: Ready, ticket: Ticket) {
        let ready = {
            let mut tasks = self.tasks.lock();
            // Room for every slot is reserved, so the push does not
            // allocate; were it full anyway, the command would run rather
            // than be lost.
            if tasks.set.may_start(ticket) || tasks.waiting.len() >= tasks.waiting.capacity() {
                ready
            } else {
                let _ = tasks.waiting.push((ticket, ready), GFP_ATOMIC);
                return;
            }
        };
        self.schedule(ready);
    }

    /// Hands a command whose turn it is to a worker: a new one while the
    /// device (or, per_initiator, the command's nexus) has fewer than
    /// `threads_num`, else the ready queue, which the running workers take
    /// from.
    fn schedule(&self, ready: Ready) {
        let threads = self.threads_num.load(Ordering::Relaxed).max(1);
        let per_initiator = self.per_initiator.load(Ordering::Relaxed);
        let cmd = {
            let mut pool = self.pool.lock();
            let busy = if per_initiator {
                ready.nexus.running.load(Ordering::Relaxed) >= threads
            } else {
                pool.running >= threads
            };
            // Room for every slot is reserved, so the push does not
            // allocate; were it full anyway, one more worker would run it.
            if busy && pool.ready.len() < pool.ready.capacity() {
                let _ = pool.ready.push(ready, GFP_ATOMIC);
                return;
            }
            pool.running += 1;
            // Counted under the pool's lock, as every change of it.
            ready.nexus.running.fetch_add(1, Ordering::Relaxed);
            ready.cmd
        };
        self.exec.run(cmd);
    }

    /// The next ready command for a worker that finished one of
    /// `finished`'s, or `None` when it is to stop (nothing ready that the
    /// limits let run, or more workers run than `threads_num` now allows).
    pub(crate) fn next_ready(&self, finished: &TgtDev) -> Option<Ready> {
        let threads = self.threads_num.load(Ordering::Relaxed).max(1);
        let per_initiator = self.per_initiator.load(Ordering::Relaxed);
        let mut pool = self.pool.lock();
        let n = finished.running.load(Ordering::Relaxed);
        finished
            .running
            .store(n.saturating_sub(1), Ordering::Relaxed);
        let pick = if per_initiator {
            // The oldest command whose nexus has a worker to spare.
            pool.ready
                .iter()
                .position(|r| r.nexus.running.load(Ordering::Relaxed) < threads)
        } else if pool.running <= threads && !pool.ready.is_empty() {
            Some(0)
        } else {
            None
        };
        let ready = match pick {
            Some(i) => pool.ready.remove_ordered(i),
            None => {
                pool.running = pool.running.saturating_sub(1);
                if pool.running > 0 || pool.ready.is_empty() {
                    return None;
                }
                // The last worker never leaves work behind.
                pool.running = 1;
                pool.ready.remove_ordered(0)
            }
        }?;
        ready.nexus.running.fetch_add(1, Ordering::Relaxed);
        Some(ready)
    }

    /// FINISHED: ends `ticket`'s command in the task set and starts the
    /// commands that were waiting for it.
    pub(crate) fn end(&self, tgt_dev: &TgtDev, ticket: Ticket) {
        let wake = {
            let mut tasks = self.tasks.lock();
            tgt_dev.active.fetch_sub(1, Ordering::Relaxed);
            tasks.set.end(ticket)
        };
        if wake {
            self.start_waiting(|set, ticket, _| set.may_start(ticket));
        }
    }

    /// Starts, oldest first, the waiting commands `pick` chooses; one at a
    /// time, outside the lock, since starting one may run it.
    fn start_waiting(&self, pick: impl Fn(&TaskSet<KVec<Slot>>, Ticket, &dyn Scheduled) -> bool) {
        loop {
            let ready = {
                let mut tasks = self.tasks.lock();
                let Tasks { set, waiting } = &mut *tasks;
                let Some(i) = waiting.iter().position(|(t, r)| pick(set, *t, &*r.cmd)) else {
                    break;
                };
                waiting.remove_ordered(i).map(|(_, ready)| ready)
            };
            match ready {
                Some(ready) => self.schedule(ready),
                None => break,
            }
        }
    }

    /// Task management aborted commands: those waiting for older ones
    /// leave the task set's waiting list for a worker, which ends them
    /// without executing them.
    pub(crate) fn release_aborted(&self) {
        self.start_waiting(|_, _, cmd| cmd.aborted());
    }

    /// Commands in the task set (executing or waiting to), for
    /// `active_commands`-style counters and tests.
    pub(crate) fn commands_in_task_set(&self) -> usize {
        self.tasks.lock().set.len()
    }

    /// Queues a unit attention on every I_T_L nexus of the device but
    /// `except`.
    pub(crate) fn raise_ua(&self, sense: Sense, except: Option<&TgtDev>) {
        let tgt_devs = self.tgt_devs.lock();
        for t in tgt_devs.iter() {
            if except.is_some_and(|e| core::ptr::eq(e, &**t)) {
                continue;
            }
            t.queue_ua(sense);
        }
    }

    /// Queues a unit attention on every I_T_L nexus of the device but
    /// `except` that has commands in the task set.
    pub(crate) fn raise_ua_where_busy(&self, sense: Sense, except: &TgtDev) {
        let tgt_devs = self.tgt_devs.lock();
        for t in tgt_devs.iter() {
            if !core::ptr::eq(except, &**t) && t.active.load(Ordering::Relaxed) > 0 {
                t.queue_ua(sense);
            }
        }
    }

    /// Tracks a new nexus of this device.
    pub(crate) fn attach(&self, tgt_dev: Arc<TgtDev>) -> Result {
        // Under the view's lock, so that a change of the view reaches
        // every nexus, this one included.
        let view = self.alua.lock();
        tgt_dev
            .alua
            .store(self.alua_bits(view.as_deref(), &tgt_dev), Ordering::Relaxed);
        self.tgt_devs.lock().push(tgt_dev, GFP_ATOMIC)?;
        Ok(())
    }

    /// Stops tracking a nexus.
    pub(crate) fn detach(&self, tgt_dev: &TgtDev) {
        let removed = {
            let mut tgt_devs = self.tgt_devs.lock();
            let i = tgt_devs.iter().position(|t| core::ptr::eq(&**t, tgt_dev));
            i.and_then(|i| tgt_devs.swap_remove(i))
        };
        // Outside the lock: the last reference to a nexus tells its
        // logical unit (which may sleep or take its own locks).
        drop(removed);
    }
}

/// Marks the value just shown as part of the configuration when `key`.
pub(crate) fn key_mark(out: &mut SysfsBuf, key: bool) {
    if key {
        let _ = out.write_str(super::mgmt::KEY_MARK);
    }
}

impl DeviceState {
    /// The value of core attribute `name`, a number from 1 to `max`; the
    /// kernel log says why anything else is refused.
    fn ranged(&self, name: &str, text: &str, max: u32) -> Result<u32> {
        super::mgmt::parse_u64(text)
            .filter(|n| (1..=u64::from(max)).contains(n))
            .map(|n| n as u32)
            .ok_or_else(|| {
                pr_err!(
                    "device {}: {} {:?}: not a number from 1 to {}\n",
                    &*self.name,
                    name,
                    text,
                    max
                );
                EINVAL
            })
    }
}

/// The attribute files of `devices/<name>/`: the core's and the logical
/// unit's.
#[derive(Clone, Copy)]
pub(crate) enum DeviceAttr {
    Type,
    MaxTgtDevCommands,
    ThreadsNum,
    ThreadsPoolType,
    /// Commands in the task set now (executing or waiting to).
    ActiveCommands,
    /// Where persistent reservations are kept.
    PrFileName,
    /// SET TARGET PORT GROUPS is accepted.
    ExplAlua,
    Lu(usize),
}

impl SysfsOps for DeviceState {
    type Attr = DeviceAttr;

    fn show(&self, attr: DeviceAttr, out: &mut SysfsBuf) -> Result {
        match attr {
            DeviceAttr::Type => {
                let _ = writeln!(
                    out,
                    "{} - {}",
                    self.device_type,
                    device_type_name(self.device_type)
                );
            }
            DeviceAttr::MaxTgtDevCommands => {
                let n = self.max_tgt_dev_commands.load(Ordering::Relaxed);
                let _ = writeln!(out, "{}", n);
                key_mark(out, n != DEFAULT_TGT_DEV_COMMANDS);
            }
            DeviceAttr::ThreadsNum => {
                let n = self.threads_num.load(Ordering::Relaxed);
                let _ = writeln!(out, "{}", n);
                key_mark(out, n != DEFAULT_THREADS_NUM);
            }
            DeviceAttr::ThreadsPoolType => {
                let per_initiator = self.per_initiator.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{}",
                    if per_initiator {
                        THREADS_POOL_PER_INITIATOR
                    } else {
                        THREADS_POOL_SHARED
                    }
                );
                key_mark(out, per_initiator);
            }
            DeviceAttr::ActiveCommands => {
                let _ = writeln!(out, "{}", self.commands_in_task_set());
            }
            DeviceAttr::PrFileName => {
                let _ = writeln!(out, "{}", &*self.pr_file);
            }
            DeviceAttr::ExplAlua => {
                let v = self.expl_alua.load(Ordering::Relaxed);
                let _ = writeln!(out, "{}", u8::from(v));
                key_mark(out, v);
            }
            DeviceAttr::Lu(i) => self.lu.show(i, out),
        }
        Ok(())
    }

    fn store(&self, attr: DeviceAttr, input: &[u8]) -> Result {
        let text = core::str::from_utf8(input).map_err(|_| EINVAL)?.trim();
        let i = match attr {
            DeviceAttr::Lu(i) => i,
            DeviceAttr::MaxTgtDevCommands => {
                let n = self.ranged("max_tgt_dev_commands", text, MAX_DEV_COMMANDS)?;
                // Commands already accepted stay; new ones see the limit.
                self.max_tgt_dev_commands.store(n, Ordering::Relaxed);
                return Ok(());
            }
            DeviceAttr::ThreadsNum => {
                let n = self.ranged("threads_num", text, MAX_THREADS_NUM)?;
                // Running workers beyond the new number stop after their
                // command; more start as commands come.
                self.threads_num.store(n, Ordering::Relaxed);
                return Ok(());
            }
            DeviceAttr::ThreadsPoolType => {
                let per_initiator = match text {
                    THREADS_POOL_SHARED => false,
                    THREADS_POOL_PER_INITIATOR => true,
                    _ => {
                        pr_err!(
                            "device {}: threads_pool_type {:?}: not {} or {}\n",
                            &*self.name,
                            text,
                            THREADS_POOL_SHARED,
                            THREADS_POOL_PER_INITIATOR
                        );
                        return Err(EINVAL);
                    }
                };
                // Commands already queued run under the new rule as
                // workers take them.
                self.per_initiator.store(per_initiator, Ordering::Relaxed);
                return Ok(());
            }
            DeviceAttr::ExplAlua => {
                let v = match text {
                    "0" => false,
                    "1" => true,
                    _ => {
                        pr_err!("device {}: expl_alua {:?}: not 0 or 1\n", &*self.name, text);
                        return Err(EINVAL);
                    }
                };
                if self.expl_alua.swap(v, Ordering::Relaxed) != v {
                    self.alua_changed(super::sense::INQUIRY_DATA_CHANGED);
                }
                return Ok(());
            }
            DeviceAttr::Type | DeviceAttr::ActiveCommands | DeviceAttr::PrFileName => {
                return Err(EACCES)
            }
        };
        match self.lu.store(i, text) {
            Ok(AttrChange::Capacity) => {
                pr_info!(
                    "device {}: capacity now {} bytes\n",
                    &*self.name,
                    self.lu.size()
                );
                self.raise_ua(super::sense::CAPACITY_DATA_CHANGED, None);
                Ok(())
            }
            Ok(AttrChange::Attention(ua)) => {
                self.raise_ua(ua, None);
                Ok(())
            }
            Ok(AttrChange::Nothing) => Ok(()),
            Err(MgmtFailure::Invalid(e)) => {
                pr_err!("device {}: {:?}: {}\n", &*self.name, text, e);
                Err(match e {
                    MgmtError::Refused(_) => EBUSY,
                    _ => EINVAL,
                })
            }
            Err(MgmtFailure::System(e)) => Err(e),
        }
    }
}

/// A device and its sysfs presence. Fields drop in order: the files and
/// links go before the directory that holds them.
pub(crate) struct Device {
    pub(crate) state: Arc<DeviceState>,
    pub(crate) _files: KVec<File<DeviceState>>,
    pub(crate) _handler_link: Link,
    pub(crate) _link_in_handler: Link,
    pub(crate) exported: Dir,
    pub(crate) _dir: Dir,
}

impl Device {
    pub(crate) fn name_is(&self, name: &str) -> bool {
        self.state.name.as_bytes() == name.as_bytes()
    }

    /// `devices/<name>/`, where LUNs link to.
    pub(crate) fn dir_ref(&self) -> DirRef {
        self._dir.to_ref()
    }

    /// `devices/<name>/exported/`, where LUNs link back.
    pub(crate) fn exported_dir(&self) -> DirRef {
        self.exported.to_ref()
    }
}
