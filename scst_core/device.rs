// SPDX-License-Identifier: GPL-2.0

//! Device handlers, the logical units they create, and the devices of the
//! core (`handlers/`, `devices/`).

use super::buffer::{BufferRequest, LendRefused, LentBuffer, LentId};
use super::mgmt::{MgmtError, Params};
use super::sense::{Sense, SenseFormat};
use super::session::TgtDev;
use super::task_set::{Refusal, Slot, TaskAttr, TaskSet, Ticket};
use super::MgmtFailure;
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::sg::SgList;
use crate::kernel_ext::sysfs::{Dir, DirRef, File, Link, SysfsBuf, SysfsOps};
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    new_condvar, new_spinlock,
    prelude::*,
    str::{CStr, CString},
    sync::{Arc, ArcBorrow, CondVar, SpinLock},
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
}

/// A status and sense a logical unit built itself (a user-space handler's
/// reply), instead of GOOD or a [`Sense`] the core encodes.
#[derive(Clone, Copy)]
pub(crate) struct RawStatus {
    pub(crate) status: u8,
    pub(crate) sense: [u8; super::sense::MAX_RAW_SENSE_LEN],
    pub(crate) sense_len: usize,
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
    /// The data direction the transport has.
    pub(crate) direction: DataDirection,
    /// [`NexusInfo::id`] of the command's I_T_L nexus.
    pub(crate) nexus: u64,
    /// `data` is the buffer this logical unit lent the command.
    pub(crate) lent: Option<LentId>,
    /// The command's tag on its nexus (what ABORT TASK names).
    pub(crate) tag: u32,
}

/// A task management function, as the logical units it affects hear of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TmFunction {
    /// ABORT TASK of the command with this tag.
    AbortTask(u32),
    /// ABORT TASK SET or CLEAR TASK SET.
    AbortTaskSet,
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
    /// MODE SELECT changed parameters: other nexuses get a unit attention.
    pub(crate) mode_changed: bool,
    /// A status other than GOOD, with its sense as built by the logical
    /// unit.
    pub(crate) raw: Option<RawStatus>,
}

impl Completion {
    /// A command that moved no data.
    pub(crate) const NO_DATA: Self = Self {
        data_in: 0,
        transfer_len: 0,
        mode_changed: false,
        raw: None,
    };

    /// `placed` bytes of data-in out of the `wanted` the command had.
    pub(crate) fn data_in(placed: usize, wanted: usize) -> Self {
        Self {
            data_in: placed,
            transfer_len: wanted,
            mode_changed: false,
            raw: None,
        }
    }
}

/// A logical unit: the device server of one device.
///
/// `execute` runs in process context and may sleep (backend I/O).
pub(crate) trait LogicalUnit: Send + Sync + 'static {
    /// Executes one command; an `Err` becomes CHECK CONDITION with that sense.
    fn execute(&self, cmd: &mut ExecCmd<'_, '_>) -> Result<Completion, Sense>;

    /// The sense format initiators asked for (control mode page D_SENSE).
    fn sense_format(&self) -> SenseFormat;

    /// Capacity in bytes, for the log and `size`.
    fn size(&self) -> u64;

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
    /// handler's buffer: no copy between the wire and the process). `None`
    /// lets the transport use pages of its own; `Err` ends the command.
    fn lend_buffer(
        self: ArcBorrow<'_, Self>,
        _req: &BufferRequest<'_>,
    ) -> Result<Option<LentBuffer>, LendRefused> {
        Ok(None)
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
    task_set: SpinLock<TaskSet<KVec<Slot>>>,
    /// Commands waiting for older ones (by task attribute) sleep here.
    #[pin]
    task_set_changed: CondVar,
    /// Commands one nexus may have in the task set.
    pub(crate) max_tgt_dev_commands: AtomicU32,
}

impl DeviceState {
    /// A device's shared state around its logical unit.
    pub(crate) fn new(
        name: CString,
        handler_name: CString,
        device_type: u8,
        lu: Arc<dyn LogicalUnit>,
    ) -> Result<Arc<Self>> {
        let mut slots = KVec::new();
        slots.extend_with(MAX_DEV_COMMANDS as usize, Slot::FREE, GFP_KERNEL)?;
        let task_set = TaskSet::new(slots);
        Arc::pin_init(
            pin_init!(Self {
                name,
                handler_name,
                device_type,
                lu,
                tgt_devs <- new_spinlock!(KVec::new()),
                task_set <- new_spinlock!(task_set),
                task_set_changed <- new_condvar!(),
                max_tgt_dev_commands: AtomicU32::new(DEFAULT_TGT_DEV_COMMANDS),
            }),
            GFP_KERNEL,
        )
    }

    /// Accepts a received command of `tgt_dev` into the task set (INIT),
    /// or says which status refuses it.
    pub(crate) fn admit(&self, tgt_dev: &TgtDev, attr: TaskAttr) -> Result<Ticket, Refusal> {
        let limit = self.max_tgt_dev_commands.load(Ordering::Relaxed);
        let mut ts = self.task_set.lock();
        let ticket = ts.admit(attr, tgt_dev.active.load(Ordering::Relaxed), limit)?;
        // Under the task set's lock: the count and the set agree.
        tgt_dev.active.fetch_add(1, Ordering::Relaxed);
        Ok(ticket)
    }

    /// Sleeps until the task attributes of older commands let `ticket`'s
    /// command start. Older commands run in other contexts and end on
    /// their own, so the wait is bounded by their execution.
    pub(crate) fn wait_to_start(&self, ticket: Ticket) {
        let mut ts = self.task_set.lock();
        while !ts.may_start(ticket) {
            self.task_set_changed.wait(&mut ts);
        }
    }

    /// Ends `ticket`'s command (FINISHED); waiters re-check.
    pub(crate) fn end(&self, tgt_dev: &TgtDev, ticket: Ticket) {
        let wake = {
            let mut ts = self.task_set.lock();
            tgt_dev.active.fetch_sub(1, Ordering::Relaxed);
            ts.end(ticket)
        };
        if wake {
            self.task_set_changed.notify_all();
        }
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

    /// Tracks a new nexus of this device.
    pub(crate) fn attach(&self, tgt_dev: Arc<TgtDev>) -> Result {
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

/// The attribute files of `devices/<name>/`: the core's and the logical
/// unit's.
#[derive(Clone, Copy)]
pub(crate) enum DeviceAttr {
    Type,
    MaxTgtDevCommands,
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
                let _ = writeln!(out, "{}", self.max_tgt_dev_commands.load(Ordering::Relaxed));
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
                let n = super::mgmt::parse_u64(text)
                    .filter(|n| (1..=u64::from(MAX_DEV_COMMANDS)).contains(n))
                    .ok_or_else(|| {
                        pr_err!(
                            "device {}: max_tgt_dev_commands {:?}: not a number from 1 to {}\n",
                            &*self.name,
                            text,
                            MAX_DEV_COMMANDS
                        );
                        EINVAL
                    })?;
                // Commands already accepted stay; new ones see the limit.
                self.max_tgt_dev_commands.store(n as u32, Ordering::Relaxed);
                return Ok(());
            }
            DeviceAttr::Type => return Err(EACCES),
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
