// SPDX-License-Identifier: GPL-2.0

//! scst_user: `/dev/scst_user`, the gateway through which a user-space
//! process serves a SCSI device, with the ioctl ABI of SCST's
//! `scst_user.h` (see `abi` and `Documentation/scst_user.rst`).
//!
//! A process opens the device and registers one SCSI device on the file
//! (REGISTER_DEVICE); it appears as `handlers/<name>/<name>` and
//! `devices/<name>` and is exported like any other. Its commands run in the
//! core's context as usual: `UserDev::execute` posts them to the file's
//! queue and sleeps until the process replies, so in steady state the
//! process makes one system call per command (REPLY_AND_GET_CMD carries the
//! previous reply and fetches the next command).
//!
//! Data moves through the process's own buffers, pinned in the kernel: the
//! process allocates one on ALLOC_MEM, and with `memory_reuse_type` the
//! kernel keeps it pinned for later commands (returning it with
//! ON_CACHED_MEM_FREE). A transport that asks for the command's buffer
//! first (iSCSI) gets the pinned pages themselves (`LogicalUnit::lend_buffer`):
//! no copy. Otherwise (scst_local, whose buffer is the initiator's) data-out
//! is copied into the pinned pages before EXEC, data-in back after the reply.
//!
//! With `parse_type` CALL or EXCEPTION a command first goes to the process
//! as PARSE. Task management reaches it as TASK_MGMT_RECEIVED/DONE.
//!
//! The kernel is master: a reply is checked before anything uses it, a
//! command waits for at most `timeout` seconds, and closing the file (a
//! process that exits or is killed) fails every waiting command, unpins
//! every buffer and removes the device.

#[allow(unreachable_pub, dead_code)]
pub(crate) mod abi;

use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::misc::{
    sleep_ms, MiscDevice, MiscFile, MiscOpen, PinnedUserBuf, PollQueue, POLL_ERR, POLL_IN,
};
use crate::kernel_ext::sysfs::SysfsBuf;
use crate::scst_core::buffer::{BufferRequest, LendRefused, Lender, LentBuffer};
use crate::scst_core::device::{
    AttrChange, Completion, DataDirection, DevHandler, ExecCmd, Executed, LogicalUnit, LuAttr,
    NexusInfo, RawStatus, TaskMgmt, TmFunction,
};
use crate::scst_core::mgmt::{MgmtError, Params};
use crate::scst_core::sense::{self, Sense, SenseFormat, MAX_RAW_SENSE_LEN};
use crate::scst_core::session::status;
use crate::scst_core::{cstring, MgmtFailure, Scst};
use abi::{DevDesc, Options, Reply, ToUser};
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    c_str, new_condvar, new_mutex, new_spinlock,
    prelude::*,
    str::CString,
    sync::{Arc, ArcBorrow, CondVar, Mutex, SpinLock},
    time::{ktime_ms_delta, msecs_to_jiffies, Ktime},
    uaccess::UserSlice,
};

/// Page size of the buffers the kernel asks for.
const PAGE_SIZE: usize = 4096;

/// Commands and notifications a device may have outstanding at once;
/// beyond it commands get BUSY.
const MAX_UCMDS: usize = 1024;

/// Buffers the kernel keeps pinned for reuse, per device.
const MAX_CACHED_BUFFERS: usize = 128;

/// Default of `devices/<name>/timeout`: how long a command waits for the
/// process before it fails.
const DEFAULT_TIMEOUT_S: u32 = 60;

/// Longest CDB kept for a command (GET_EXTENDED_CDB returns its tail).
const MAX_CDB_LEN: usize = 260;

/// A command's CDB: inline up to [`abi::MAX_CDB_SIZE`] bytes, so that the
/// usual command allocates nothing for it; longer ones (up to
/// [`MAX_CDB_LEN`]) go to the heap.
struct Cdb {
    inline: [u8; abi::MAX_CDB_SIZE],
    len: usize,
    long: Option<KVec<u8>>,
}

impl Cdb {
    fn new(cdb: &[u8]) -> Result<Self> {
        let cdb = cdb.get(..cdb.len().min(MAX_CDB_LEN)).unwrap_or(&[]);
        let mut this = Self {
            inline: [0; abi::MAX_CDB_SIZE],
            len: cdb.len(),
            long: None,
        };
        match this.inline.get_mut(..cdb.len()) {
            Some(dst) => dst.copy_from_slice(cdb),
            None => {
                let mut v = KVec::new();
                v.extend_from_slice(cdb, GFP_KERNEL)?;
                this.long = Some(v);
            }
        }
        Ok(this)
    }

    fn as_slice(&self) -> &[u8] {
        match &self.long {
            Some(v) => v,
            None => self.inline.get(..self.len).unwrap_or(&[]),
        }
    }
}

/// The misc device; dropping it removes `/dev/scst_user`.
pub(crate) struct ScstUser {
    _misc: MiscDevice,
}

/// Creates `/dev/scst_user`.
pub(crate) fn register(scst: &Arc<Scst>) -> Result<ScstUser> {
    let opener = Arc::new(Opener { scst: scst.clone() }, GFP_KERNEL)?;
    Ok(ScstUser {
        _misc: MiscDevice::register(c_str!("scst_user"), opener)?,
    })
}

struct Opener {
    scst: Arc<Scst>,
}

impl MiscOpen for Opener {
    fn open(&self) -> Result<Arc<dyn MiscFile>> {
        let pollq = Arc::new(PollQueue::new()?, GFP_KERNEL)?;
        let file = Arc::pin_init(
            pin_init!(UserFile {
                scst: self.scst.clone(),
                pollq,
                dev <- new_mutex!(None),
            }),
            GFP_KERNEL,
        )?;
        Ok(file)
    }
}

/// One open file: at most one registered device.
#[pin_data]
struct UserFile {
    scst: Arc<Scst>,
    pollq: Arc<PollQueue>,
    #[pin]
    dev: Mutex<Option<Arc<UserDev>>>,
}

/// A message as queued: what [`ToUser`] encodes, with owned data.
enum Msg {
    Attach {
        sess_h: u64,
        lun: u64,
        read_only: bool,
        threads_num: u16,
        initiator: CString,
        target: CString,
    },
    Detach {
        sess_h: u64,
    },
    Parse {
        sess_h: u64,
        /// The command's tag on its nexus (for ABORT TASK).
        tag: u32,
        cdb: Cdb,
        bufflen: usize,
        direction: u8,
        timeout_s: u32,
    },
    AllocMem {
        sess_h: u64,
        tag: u32,
        cdb: Cdb,
        alloc_len: usize,
        direction: u8,
    },
    Exec {
        sess_h: u64,
        tag: u32,
        cdb: Cdb,
        bufflen: usize,
        alloc_len: usize,
        pbuf: u64,
        direction: u8,
        timeout_s: u32,
    },
    OnFree {
        pbuf: u64,
        resp_data_len: usize,
        buffer_cached: bool,
        aborted: bool,
        status: u8,
    },
    OnCachedMemFree {
        pbuf: u64,
    },
    TaskMgmt {
        done: bool,
        sess_h: u64,
        function: u32,
        cmd_h_to_abort: u32,
    },
}

impl Msg {
    fn to_user(&self) -> ToUser<'_> {
        match self {
            Self::Attach {
                sess_h,
                lun,
                read_only,
                threads_num,
                initiator,
                target,
            } => ToUser::Sess {
                detach: false,
                sess_h: *sess_h,
                lun: *lun,
                read_only: *read_only,
                threads_num: *threads_num,
                initiator: initiator.as_bytes(),
                target: target.as_bytes(),
            },
            Self::Detach { sess_h } => ToUser::Sess {
                detach: true,
                sess_h: *sess_h,
                lun: 0,
                read_only: false,
                threads_num: 0,
                initiator: &[],
                target: &[],
            },
            Self::Parse {
                sess_h,
                cdb,
                bufflen,
                direction,
                timeout_s,
                ..
            } => ToUser::Parse(abi::Parse {
                sess_h: *sess_h,
                cdb: cdb.as_slice(),
                lba: abi::disk_lba(cdb.as_slice()),
                bufflen: *bufflen as i32,
                timeout: *timeout_s as i32,
                queue_type: abi::queue::SIMPLE,
                data_direction: *direction,
            }),
            Self::AllocMem {
                sess_h,
                cdb,
                alloc_len,
                direction,
                ..
            } => ToUser::AllocMem {
                sess_h: *sess_h,
                cdb: cdb.as_slice(),
                alloc_len: *alloc_len as i32,
                queue_type: abi::queue::SIMPLE,
                data_direction: *direction,
                sn: 0,
            },
            Self::Exec {
                sess_h,
                cdb,
                bufflen,
                alloc_len,
                pbuf,
                direction,
                timeout_s,
                ..
            } => ToUser::Exec(abi::Exec {
                sess_h: *sess_h,
                cdb: cdb.as_slice(),
                lba: abi::disk_lba(cdb.as_slice()),
                data_len: *bufflen as i64,
                bufflen: *bufflen as i32,
                alloc_len: *alloc_len as i32,
                pbuf: *pbuf,
                queue_type: abi::queue::SIMPLE,
                data_direction: *direction,
                timeout: *timeout_s as i32,
                sn: 0,
            }),
            Self::OnFree {
                pbuf,
                resp_data_len,
                buffer_cached,
                aborted,
                status,
            } => ToUser::OnFree {
                pbuf: *pbuf,
                resp_data_len: *resp_data_len as i32,
                buffer_cached: *buffer_cached,
                aborted: *aborted,
                status: *status,
            },
            Self::OnCachedMemFree { pbuf } => ToUser::OnCachedMemFree { pbuf: *pbuf },
            Self::TaskMgmt {
                done,
                sess_h,
                function,
                cmd_h_to_abort,
            } => ToUser::TaskMgmt {
                done: *done,
                sess_h: *sess_h,
                function: *function,
                cmd_h_to_abort: *cmd_h_to_abort,
            },
        }
    }

    /// Whether a command sleeps until the reply (the others are
    /// notifications whose replies only release them).
    fn has_waiter(&self) -> bool {
        matches!(
            self,
            Self::Parse { .. } | Self::AllocMem { .. } | Self::Exec { .. }
        )
    }

    fn cdb(&self) -> Option<&[u8]> {
        match self {
            Self::Parse { cdb, .. } | Self::AllocMem { cdb, .. } | Self::Exec { cdb, .. } => {
                Some(cdb.as_slice())
            }
            _ => None,
        }
    }
}

/// What a checked reply gives the waiting command.
enum Answer {
    /// ALLOC_MEM: the process's buffer, pinned.
    Buffer(PinnedUserBuf),
    /// ALLOC_MEM with a null buffer: the process has no memory now.
    NoMemory,
    /// PARSE: the command's data length and direction, or the status it
    /// ends with.
    Parsed(core::result::Result<(usize, u8), RawStatus>),
    /// EXEC.
    Exec {
        status: u8,
        resp_data_len: usize,
        sense: [u8; MAX_RAW_SENSE_LEN],
        sense_len: usize,
    },
}

enum State {
    /// Waiting for a process to fetch it.
    Queued,
    /// Fetched; the reply is due.
    Delivered,
    /// A reply is being checked (outside the lock: pinning sleeps).
    Replying,
    /// Replied; the waiter takes the answer.
    Answered(Answer),
    /// The reply was malformed.
    Refused,
    /// Task management aborted it before the process fetched it.
    Aborted,
}

struct UCmd {
    h: u32,
    msg: Msg,
    state: State,
}

/// Why a command got no answer.
enum Failure {
    /// The process closed the device.
    Gone,
    /// No reply within the timeout.
    Timeout,
    /// Too many commands outstanding, or no memory for one.
    Busy,
    /// The reply was malformed.
    Refused,
    /// Task management aborted it before the process saw it.
    Aborted,
}

impl Failure {
    /// How a command that got no answer ends.
    fn completion(self) -> Result<Completion, Sense> {
        match self {
            Self::Busy => Ok(busy()),
            Self::Aborted => Err(sense::COMMAND_ABORTED),
            Self::Gone | Self::Timeout | Self::Refused => Err(sense::INTERNAL_TARGET_FAILURE),
        }
    }
}

/// Where EXEC's data is: the process's buffer at `pbuf` of `alloc_len`
/// bytes, of which the command moves `len`.
struct ExecBuffer {
    pbuf: u64,
    alloc_len: usize,
    len: usize,
}

/// How a PARSE ended a command.
enum ParseEnd {
    /// With the process's status.
    Status(RawStatus),
    /// The process's data direction is not the initiator's.
    Mismatch,
    Failed(Failure),
}

impl ParseEnd {
    fn completion(self) -> Result<Completion, Sense> {
        match self {
            Self::Status(raw) => {
                let mut done = Completion::NO_DATA;
                done.raw = Some(raw);
                Ok(done)
            }
            Self::Mismatch => Err(sense::INVALID_MESSAGE),
            Self::Failed(f) => f.completion(),
        }
    }

    /// The same, for a command that has not reached its logical unit yet.
    fn refusal(self) -> LendRefused {
        match self.completion() {
            Ok(c) => c
                .raw
                .map_or(LendRefused::Sense(sense::INTERNAL_TARGET_FAILURE), |raw| {
                    LendRefused::Status(raw)
                }),
            Err(s) => LendRefused::Sense(s),
        }
    }
}

struct Inner {
    /// False once the file is closed or the device unregistered.
    alive: bool,
    opts: Options,
    /// Handles to deliver, oldest first.
    queue: KVec<u32>,
    ucmds: KVec<UCmd>,
    /// Buffers kept pinned for reuse.
    cache: KVec<PinnedUserBuf>,
}

impl Inner {
    fn find(&mut self, h: u32) -> Option<&mut UCmd> {
        self.ucmds.iter_mut().find(|u| u.h == h)
    }

    /// Takes entry `i` of the queue, keeping the others in order.
    fn dequeue_at(&mut self, i: usize) -> Option<u32> {
        if i >= self.queue.len() {
            return None;
        }
        self.queue.as_mut_slice().get_mut(i..)?.rotate_left(1);
        self.queue.pop()
    }

    fn remove(&mut self, h: u32) -> Option<UCmd> {
        let i = self.ucmds.iter().position(|u| u.h == h)?;
        if let Some(q) = self.queue.iter().position(|&x| x == h) {
            self.dequeue_at(q);
        }
        self.ucmds.swap_remove(i)
    }
}

/// A device served by a process: its handler and logical unit.
#[pin_data]
struct UserDev {
    name: CString,
    dev_type: u8,
    block_size: u32,
    timeout_s: AtomicU32,
    /// The last handle given (`cmd_h`; 0 is never one).
    last_handle: AtomicU32,
    pollq: Arc<PollQueue>,
    #[pin]
    inner: SpinLock<Inner>,
    /// Commands waiting for replies sleep here.
    #[pin]
    replied: CondVar,
    /// Processes waiting for commands sleep here.
    #[pin]
    ready: CondVar,
    /// Commands whose data the transport moved in the process's buffer.
    zero_copy_commands: AtomicU64,
    /// Commands whose data was copied between the transport's buffer and
    /// the process's (scst_local: the initiator's pages are the transport's).
    copied_commands: AtomicU64,
}

static USER_ATTRS: [LuAttr; 4] = [
    LuAttr {
        name: c_str!("timeout"),
        writable: true,
    },
    LuAttr {
        name: c_str!("block_size"),
        writable: false,
    },
    LuAttr {
        name: c_str!("zero_copy_commands"),
        writable: false,
    },
    LuAttr {
        name: c_str!("copied_commands"),
        writable: false,
    },
];

impl UserDev {
    /// EXEC: the command goes to the process (PARSE and a buffer first
    /// where due) and the worker waits for its reply.
    fn execute_now(&self, cmd: &mut ExecCmd<'_, '_>) -> Result<Completion, Sense> {
        let len = cmd.data.len();
        let direction = cmd.direction;
        let Ok(cdb) = Cdb::new(cmd.cdb) else {
            return Ok(busy());
        };
        if let Some(id) = cmd.lent {
            // The data-out is in the process's buffer already and the
            // data-in goes out from it: it returns to the process when the
            // transport is done (`Lender::give_back`). PARSE, if due, was
            // sent when it was lent.
            self.zero_copy_commands.fetch_add(1, Ordering::Relaxed);
            let mut h = id.key;
            let at = ExecBuffer {
                pbuf: id.addr,
                alloc_len: id.capacity,
                len: id.limit.min(len),
            };
            return self.exec(&mut h, cmd, cdb, at, None);
        }
        let mut h = None;
        let mut len = len;
        if self.parse_due(&cdb) {
            match self.parse(&mut h, cmd.nexus, cmd.tag, &cdb, len, direction) {
                Ok(n) => len = n,
                Err(end) => {
                    let result = end.completion();
                    self.free_cmd(h, None, 0, direction, Some(ended_as(&result)));
                    return result;
                }
            }
        }
        let mut buf = None;
        if len > 0 && direction != DataDirection::None {
            match self.buffer_for(&mut h, cmd.nexus, cmd.tag, &cdb, len, direction) {
                Ok(b) => buf = Some(b),
                Err(f) => return f.completion(),
            }
        }
        if buf.is_some() {
            self.copied_commands.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(b), DataDirection::Write | DataDirection::Bidi) = (buf.as_mut(), direction) {
            b.sg().copy_from_sg(cmd.data, len);
        }
        let (pbuf, alloc_len) = buf.as_ref().map_or((0, 0), |b| (b.addr() as u64, b.len()));
        let at = ExecBuffer {
            pbuf,
            alloc_len,
            len,
        };
        let result = self.exec(&mut h, cmd, cdb, at, buf.as_mut());
        self.free_cmd(h, buf, pbuf, direction, Some(ended_as(&result)));
        result
    }

    fn name_str(&self) -> &str {
        self.name.to_str().unwrap_or("?")
    }

    /// Queues `msg` for the process under the handle `*h`: the command's
    /// (its PARSE, ALLOC_MEM, EXEC and ON_FREE_CMD share one, as in SCST),
    /// or a new one when `*h` is `None`, which is then set.
    fn post(&self, h: &mut Option<u32>, msg: Msg) -> core::result::Result<u32, Failure> {
        let h = {
            let mut inner = self.inner.lock();
            if !inner.alive {
                return Err(Failure::Gone);
            }
            if inner.ucmds.len() >= MAX_UCMDS {
                return Err(Failure::Busy);
            }
            let h = *h.get_or_insert_with(|| self.new_handle());
            inner.queue.push(h, GFP_ATOMIC).map_err(|_| Failure::Busy)?;
            if inner
                .ucmds
                .push(
                    UCmd {
                        h,
                        msg,
                        state: State::Queued,
                    },
                    GFP_ATOMIC,
                )
                .is_err()
            {
                inner.queue.pop();
                return Err(Failure::Busy);
            }
            h
        };
        self.ready.notify_one();
        self.pollq.wake();
        Ok(h)
    }

    /// Posts a notification that nothing waits for, under a new handle.
    fn notify(&self, msg: Msg) {
        self.notify_as(&mut None, msg);
    }

    /// Posts a notification under the handle `*h` (see [`Self::post`]).
    fn notify_as(&self, h: &mut Option<u32>, msg: Msg) {
        // A closed file needs no notification: its buffers are unpinned.
        if let Err(Failure::Busy) = self.post(h, msg) {
            pr_warn!(
                "{}: a notification to the handler was lost\n",
                self.name_str()
            );
        }
    }

    /// Posts `msg` and sleeps until the process answers it, the timeout
    /// passes or the process goes away.
    /// `*h` is the command's handle (see [`Self::post`]).
    fn call(&self, h: &mut Option<u32>, msg: Msg) -> core::result::Result<Answer, Failure> {
        let h = self.post(h, msg)?;
        let start = Ktime::ktime_get();
        let limit_ms = i64::from(self.timeout_s.load(Ordering::Relaxed)) * 1000;
        let mut inner = self.inner.lock();
        loop {
            let done = matches!(
                inner.find(h).map(|u| &u.state),
                Some(State::Answered(_) | State::Refused | State::Aborted) | None
            );
            if done {
                return match inner.remove(h).map(|u| u.state) {
                    Some(State::Answered(a)) => Ok(a),
                    Some(State::Aborted) => Err(Failure::Aborted),
                    Some(_) => Err(Failure::Refused),
                    None => Err(Failure::Gone),
                };
            }
            if !inner.alive {
                inner.remove(h);
                return Err(Failure::Gone);
            }
            let left = limit_ms - ktime_ms_delta(Ktime::ktime_get(), start);
            if left <= 0 {
                inner.remove(h);
                drop(inner);
                pr_err!(
                    "{}: no reply within {} s: command failed\n",
                    self.name_str(),
                    limit_ms / 1000
                );
                return Err(Failure::Timeout);
            }
            let slice = msecs_to_jiffies(left.min(1000) as u32);
            if let kernel::sync::CondVarTimeoutResult::Signal { .. } =
                self.replied.wait_interruptible_timeout(&mut inner, slice)
            {
                // The submitter (e.g. a process doing SG_IO) has a signal
                // pending: the command still runs to its end, so wait
                // without sleeping interruptibly.
                drop(inner);
                sleep_ms(5);
                inner = self.inner.lock();
            }
        }
    }

    /// A new handle (for a command, a notification or a preallocated
    /// buffer); never 0.
    fn new_handle(&self) -> u32 {
        loop {
            let h = self
                .last_handle
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            if h != 0 {
                return h;
            }
        }
    }

    /// Whether the process checks this CDB (PARSE): every one with
    /// `parse_type` CALL; with EXCEPTION, the vendor-specific opcodes
    /// (C0h to FFh), the ones no standard parser knows.
    fn parse_due(&self, cdb: &Cdb) -> bool {
        match self.inner.lock().opts.parse_type {
            abi::parse::CALL => true,
            abi::parse::EXCEPTION => cdb.as_slice().first().is_some_and(|&op| op >= 0xc0),
            _ => false,
        }
    }

    /// PARSE: the process checks the command, whose transport moves `len`
    /// bytes in `direction`. Returns the bytes EXEC moves (fewer when the
    /// process says the command moves fewer).
    fn parse(
        &self,
        h: &mut Option<u32>,
        nexus: u64,
        tag: u32,
        cdb: &Cdb,
        len: usize,
        direction: DataDirection,
    ) -> core::result::Result<usize, ParseEnd> {
        let copy = Cdb::new(cdb.as_slice()).map_err(|_| ParseEnd::Failed(Failure::Busy))?;
        let wire = abi_direction(direction);
        let answer = self
            .call(
                h,
                Msg::Parse {
                    sess_h: nexus,
                    tag,
                    cdb: copy,
                    bufflen: len,
                    direction: wire,
                    timeout_s: self.timeout_s.load(Ordering::Relaxed),
                },
            )
            .map_err(ParseEnd::Failed)?;
        match answer {
            Answer::Parsed(Ok((_, d))) if d != wire => {
                pr_warn!(
                    "{}: PARSE gives data direction {} where the initiator's is {}\n",
                    self.name_str(),
                    d,
                    wire
                );
                Err(ParseEnd::Mismatch)
            }
            Answer::Parsed(Ok((bufflen, d))) => Ok(if d == abi::dir::NONE {
                0
            } else {
                len.min(bufflen)
            }),
            Answer::Parsed(Err(raw)) => Err(ParseEnd::Status(raw)),
            _ => Err(ParseEnd::Failed(Failure::Refused)),
        }
    }

    /// A pinned buffer of at least `len` bytes for a command: a cached
    /// one, or the one the process allocates on ALLOC_MEM. `Busy` when the
    /// process has none to give now.
    fn buffer_for(
        &self,
        h: &mut Option<u32>,
        nexus: u64,
        tag: u32,
        cdb: &Cdb,
        len: usize,
        direction: DataDirection,
    ) -> core::result::Result<PinnedUserBuf, Failure> {
        if let Some(b) = self.cached_buffer(len, direction) {
            return Ok(b);
        }
        let cdb = Cdb::new(cdb.as_slice()).map_err(|_| Failure::Busy)?;
        match self.call(
            h,
            Msg::AllocMem {
                sess_h: nexus,
                tag,
                cdb,
                alloc_len: len.div_ceil(PAGE_SIZE) * PAGE_SIZE,
                direction: abi_direction(direction),
            },
        )? {
            Answer::Buffer(b) => Ok(b),
            Answer::NoMemory => Err(Failure::Busy),
            _ => Err(Failure::Refused),
        }
    }

    /// EXEC: hands the command to the process and waits for its reply.
    /// With `copy_back`, the data-in is copied from that buffer into the
    /// command's; otherwise the command's buffer is the process's.
    fn exec(
        &self,
        h: &mut Option<u32>,
        cmd: &mut ExecCmd<'_, '_>,
        cdb: Cdb,
        at: ExecBuffer,
        copy_back: Option<&mut PinnedUserBuf>,
    ) -> Result<Completion, Sense> {
        let ExecBuffer {
            pbuf,
            alloc_len,
            len,
        } = at;
        let direction = cmd.direction;
        let moves_data = len > 0 && direction != DataDirection::None;
        let answer = self.call(
            h,
            Msg::Exec {
                sess_h: cmd.nexus,
                tag: cmd.tag,
                cdb,
                bufflen: if moves_data { len } else { 0 },
                alloc_len,
                pbuf,
                direction: abi_direction(direction),
                timeout_s: self.timeout_s.load(Ordering::Relaxed),
            },
        );
        match answer {
            Ok(Answer::Exec {
                status: st,
                resp_data_len,
                sense,
                sense_len,
            }) => {
                let placed = match copy_back {
                    Some(b) if resp_data_len > 0 => cmd.data.copy_from_sg(&b.sg(), resp_data_len),
                    Some(_) => 0,
                    None => resp_data_len.min(len),
                };
                let transfer_len = match direction {
                    DataDirection::Read | DataDirection::Bidi => resp_data_len,
                    _ => len,
                };
                let mut done = Completion::data_in(placed, transfer_len);
                if st != status::GOOD {
                    done.raw = Some(raw_status(st, &sense[..sense_len]));
                }
                Ok(done)
            }
            Ok(_) => Err(sense::INTERNAL_TARGET_FAILURE),
            Err(f) => f.completion(),
        }
    }

    /// The command is over: keeps or unpins its buffer and tells the
    /// process (ON_FREE_CMD, or ON_CACHED_MEM_FREE when it hears of no
    /// ON_FREE_CMD and would otherwise leak the buffer). `ended` is the
    /// data-in length and status, `None` for a command that never ran.
    fn free_cmd(
        &self,
        mut h: Option<u32>,
        buf: Option<PinnedUserBuf>,
        pbuf: u64,
        direction: DataDirection,
        ended: Option<(usize, u8)>,
    ) {
        let (cached, on_free) = self.release_buffer(buf, direction);
        if !on_free && pbuf != 0 && !cached {
            self.notify(Msg::OnCachedMemFree { pbuf });
        }
        if on_free {
            let (resp_data_len, status) = ended.unwrap_or((0, status::GOOD));
            self.notify_as(
                &mut h,
                Msg::OnFree {
                    pbuf,
                    resp_data_len,
                    buffer_cached: cached,
                    aborted: ended.is_none(),
                    status,
                },
            );
        }
    }

    /// A cached buffer of at least `len` bytes that `direction` may reuse.
    fn cached_buffer(&self, len: usize, direction: DataDirection) -> Option<PinnedUserBuf> {
        let mut inner = self.inner.lock();
        if !reuse_allowed(inner.opts.memory_reuse_type, direction) {
            return None;
        }
        let i = inner.cache.iter().position(|b| b.len() >= len)?;
        inner.cache.swap_remove(i)
    }

    /// Ends a command's use of `buf`: keeps it for reuse when the options
    /// allow. Returns whether it did, and whether the process wants
    /// ON_FREE_CMD (one lock for both).
    fn release_buffer(&self, buf: Option<PinnedUserBuf>, direction: DataDirection) -> (bool, bool) {
        let mut inner = self.inner.lock();
        let on_free = inner.opts.on_free_cmd_type == abi::on_free::CALL;
        let Some(buf) = buf else {
            return (false, on_free);
        };
        // The cache's capacity is reserved: pushing never allocates (nor
        // drops the buffer under the lock).
        if inner.alive
            && reuse_allowed(inner.opts.memory_reuse_type, direction)
            && inner.cache.len() < MAX_CACHED_BUFFERS.min(inner.cache.capacity())
        {
            return (inner.cache.push(buf, GFP_ATOMIC).is_ok(), on_free);
        }
        drop(inner);
        // Unpinning sleeps: outside the lock.
        drop(buf);
        (false, on_free)
    }

    /// Unpins every cached buffer and tells the process.
    fn flush_cache(&self) {
        loop {
            let buf = self.inner.lock().cache.pop();
            let Some(buf) = buf else { break };
            let pbuf = buf.addr() as u64;
            drop(buf);
            self.notify(Msg::OnCachedMemFree { pbuf });
        }
    }

    /// The process is gone: fail what waits, forget what is queued.
    fn kill(&self) {
        let cache = {
            let mut inner = self.inner.lock();
            inner.alive = false;
            inner.queue.clear();
            let mut i = 0;
            while i < inner.ucmds.len() {
                if inner.ucmds[i].msg.has_waiter() {
                    i += 1;
                } else {
                    inner.ucmds.swap_remove(i);
                }
            }
            core::mem::replace(&mut inner.cache, KVec::new())
        };
        drop(cache);
        self.replied.notify_all();
        self.ready.notify_all();
        self.pollq.wake();
    }

    /// Hands the oldest queued message to the process, encoded in `out`.
    fn next(&self, out: &mut [u8; abi::GET_CMD_SIZE], nonblock: bool) -> Result<u32> {
        let mut inner = self.inner.lock();
        loop {
            if !inner.alive {
                return Err(ENODEV);
            }
            if let Some(h) = inner.dequeue_at(0) {
                let Some(u) = inner.find(h) else { continue };
                if !matches!(u.state, State::Queued) {
                    // Aborted: its waiter removes it.
                    continue;
                }
                u.state = State::Delivered;
                u.msg.to_user().encode(h, out);
                return Ok(h);
            }
            if nonblock {
                return Err(EAGAIN);
            }
            if self.ready.wait_interruptible(&mut inner) {
                return Err(ERESTARTSYS);
            }
        }
    }

    /// Puts back a message the process could not receive (a bad address).
    fn requeue(&self, h: u32) {
        let mut inner = self.inner.lock();
        if let Some(u) = inner.find(h) {
            u.state = State::Queued;
            if inner.queue.push(h, GFP_ATOMIC).is_ok() {
                inner.queue.as_mut_slice().rotate_right(1);
            }
        }
    }

    /// Checks and applies one reply from the process.
    fn reply(&self, r: &Reply) -> Result {
        // What the reply is to, claimed so that no other thread takes it.
        enum Due {
            Parse(usize),
            Alloc(usize),
            Exec { buffer: usize, reads: bool },
        }
        let due = {
            let mut inner = self.inner.lock();
            let u = inner.find(r.cmd_h).ok_or_else(|| {
                pr_err!(
                    "{}: reply to unknown command {}\n",
                    self.name_str(),
                    r.cmd_h
                );
                EINVAL
            })?;
            if !matches!(u.state, State::Delivered) || u.msg.to_user().subcode() != r.subcode {
                let waits = u.msg.has_waiter() && matches!(u.state, State::Delivered);
                if waits {
                    u.state = State::Refused;
                }
                drop(inner);
                if waits {
                    self.replied.notify_all();
                }
                pr_err!(
                    "{}: reply to command {} has subcode {:#x}, not the one sent\n",
                    self.name_str(),
                    r.cmd_h,
                    r.subcode
                );
                return Err(EINVAL);
            }
            match &u.msg {
                Msg::Parse { cdb, .. } => {
                    let n = cdb.as_slice().len();
                    u.state = State::Replying;
                    Due::Parse(n)
                }
                Msg::AllocMem { alloc_len, .. } => {
                    let n = *alloc_len;
                    u.state = State::Replying;
                    Due::Alloc(n)
                }
                Msg::Exec {
                    bufflen, direction, ..
                } => {
                    let due = Due::Exec {
                        buffer: *bufflen,
                        reads: *direction & abi::dir::READ != 0,
                    };
                    u.state = State::Replying;
                    due
                }
                Msg::Attach { .. } if r.result() != 0 => {
                    pr_warn!(
                        "{}: handler refused a session ({})\n",
                        self.name_str(),
                        r.result()
                    );
                    inner.remove(r.cmd_h);
                    return Ok(());
                }
                _ => {
                    inner.remove(r.cmd_h);
                    return Ok(());
                }
            }
        };
        let answer = match due {
            Due::Parse(cdb_len) => self.check_parse(r, cdb_len),
            Due::Alloc(len) => self.check_alloc(r, len),
            Due::Exec { buffer, reads } => self.check_exec(r, buffer, reads),
        };
        let ok = answer.is_ok();
        let unclaimed = {
            let mut inner = self.inner.lock();
            match inner.find(r.cmd_h) {
                Some(u) => {
                    u.state = match answer {
                        Ok(a) => State::Answered(a),
                        Err(()) => State::Refused,
                    };
                    None
                }
                // The command timed out meanwhile.
                None => Some(answer),
            }
        };
        // A pinned buffer nobody took unpins here, outside the lock.
        drop(unclaimed);
        self.replied.notify_all();
        if ok {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }

    fn check_alloc(&self, r: &Reply, len: usize) -> core::result::Result<Answer, ()> {
        let pbuf = r.alloc_pbuf();
        if pbuf == 0 {
            return Ok(Answer::NoMemory);
        }
        if pbuf as usize % PAGE_SIZE != 0 {
            pr_err!(
                "{}: ALLOC_MEM reply: buffer {:#x} is not page aligned\n",
                self.name_str(),
                pbuf
            );
            return Err(());
        }
        PinnedUserBuf::pin(pbuf as usize, len)
            .map(Answer::Buffer)
            .map_err(|e| {
                pr_err!(
                    "{}: ALLOC_MEM reply: cannot pin {} bytes at {:#x} ({})\n",
                    self.name_str(),
                    len,
                    pbuf,
                    e.to_errno()
                );
            })
    }

    fn check_exec(
        &self,
        r: &Reply,
        buffer: usize,
        reads: bool,
    ) -> core::result::Result<Answer, ()> {
        let e = r.exec();
        let name = self.name_str();
        if e.reply_type != abi::reply_type::COMPLETED && e.reply_type != abi::reply_type::BACKGROUND
        {
            pr_err!("{}: EXEC reply type {} not supported\n", name, e.reply_type);
            return Err(());
        }
        if !abi::valid_status(e.status) {
            pr_err!("{}: EXEC reply: invalid status {:#x}\n", name, e.status);
            return Err(());
        }
        let resp = usize::try_from(e.resp_data_len).map_err(|_| ())?;
        if resp > 0 && (!reads || resp > buffer) {
            pr_err!(
                "{}: EXEC reply: {} bytes of data-in for a buffer of {}{}\n",
                name,
                resp,
                buffer,
                if reads { "" } else { " with no data-in" }
            );
            return Err(());
        }
        let raw = self.read_status(e.status, e.sense_len, e.psense_buffer, "EXEC")?;
        Ok(Answer::Exec {
            status: e.status,
            resp_data_len: resp,
            sense: raw.sense,
            sense_len: raw.sense_len,
        })
    }

    fn check_parse(&self, r: &Reply, cdb_len: usize) -> core::result::Result<Answer, ()> {
        let p = r.parse();
        if p.status != status::GOOD {
            if !abi::valid_status(p.status) {
                pr_err!(
                    "{}: PARSE reply: invalid status {:#x}\n",
                    self.name_str(),
                    p.status
                );
                return Err(());
            }
            let raw = self.read_status(p.status, p.sense_len, p.psense_buffer, "PARSE")?;
            return Ok(Answer::Parsed(Err(raw)));
        }
        if !p.is_valid(cdb_len) {
            pr_err!(
                "{}: PARSE reply: invalid values (direction {}, bufflen {}, op_flags {:#x})\n",
                self.name_str(),
                p.data_direction,
                p.bufflen,
                p.op_flags
            );
            return Err(());
        }
        Ok(Answer::Parsed(Ok((
            usize::try_from(p.bufflen).map_err(|_| ())?,
            p.data_direction,
        ))))
    }

    /// A reply's status with, for CHECK CONDITION, `len` bytes of sense
    /// read from the process at `addr`.
    fn read_status(
        &self,
        st: u8,
        len: u8,
        addr: u64,
        what: &str,
    ) -> core::result::Result<RawStatus, ()> {
        let mut sense = [0u8; MAX_RAW_SENSE_LEN];
        let mut sense_len = 0;
        if st == status::CHECK_CONDITION {
            sense_len = usize::from(len).min(MAX_RAW_SENSE_LEN);
            UserSlice::new(addr as usize, sense_len)
                .reader()
                .read_slice(&mut sense[..sense_len])
                .map_err(|_| {
                    pr_err!(
                        "{}: {} reply: sense buffer not readable\n",
                        self.name_str(),
                        what
                    );
                })?;
        }
        Ok(raw_status(st, &sense[..sense_len]))
    }
}

/// The ABI's code of a task management function, and the tag an ABORT
/// TASK names.
fn tm_function(f: TmFunction) -> (u32, Option<u32>) {
    match f {
        TmFunction::AbortTask(tag) => (abi::tm_fn::ABORT_TASK, Some(tag)),
        TmFunction::AbortTaskSet => (abi::tm_fn::ABORT_TASK_SET, None),
        TmFunction::ClearTaskSet => (abi::tm_fn::CLEAR_TASK_SET, None),
        TmFunction::LunReset => (abi::tm_fn::LUN_RESET, None),
        TmFunction::TargetReset => (abi::tm_fn::TARGET_RESET, None),
    }
}

fn reuse_allowed(reuse: u8, direction: DataDirection) -> bool {
    match reuse {
        abi::mem_reuse::ALL => true,
        abi::mem_reuse::READ => direction == DataDirection::Read,
        abi::mem_reuse::WRITE => direction == DataDirection::Write,
        _ => false,
    }
}

fn abi_direction(d: DataDirection) -> u8 {
    match d {
        DataDirection::None => abi::dir::NONE,
        DataDirection::Write => abi::dir::WRITE,
        DataDirection::Read => abi::dir::READ,
        DataDirection::Bidi => abi::dir::BIDI,
    }
}

fn raw_status(status: u8, sense: &[u8]) -> RawStatus {
    let mut raw = RawStatus {
        status,
        sense: [0; MAX_RAW_SENSE_LEN],
        sense_len: sense.len().min(MAX_RAW_SENSE_LEN),
    };
    raw.sense[..raw.sense_len].copy_from_slice(&sense[..raw.sense_len]);
    raw
}

impl DevHandler for UserDev {
    fn name(&self) -> &str {
        self.name_str()
    }

    fn device_type(&self) -> u8 {
        self.dev_type
    }

    fn mgmt_help(&self) -> &'static str {
        "This handler's device is registered and removed by its process through /dev/scst_user.\n"
    }

    fn create<'a>(
        &self,
        _name: &'a str,
        _params: Params<'a>,
    ) -> Result<Arc<dyn LogicalUnit>, MgmtFailure<'a>> {
        Err(MgmtError::Refused(
            "devices of a user-space handler are registered through /dev/scst_user",
        )
        .into())
    }
}

impl Lender for UserDev {
    fn give_back(
        &self,
        buf: PinnedUserBuf,
        direction: DataDirection,
        ended: Option<(usize, u8)>,
        key: Option<u32>,
    ) {
        let pbuf = buf.addr() as u64;
        self.free_cmd(key, Some(buf), pbuf, direction, ended);
    }
}

impl LogicalUnit for UserDev {
    fn execute(&self, cmd: &mut ExecCmd<'_, '_>) -> Result<Executed, Sense> {
        self.execute_now(cmd).map(Executed::Done)
    }

    fn task_mgmt_received(&self, tm: &TaskMgmt) {
        let (function, tag) = tm_function(tm.function);
        let mut cmd_h_to_abort = 0;
        let mut aborted = false;
        {
            let mut inner = self.inner.lock();
            for u in inner.ucmds.iter_mut() {
                let (Msg::Parse { sess_h, tag: t, .. }
                | Msg::AllocMem { sess_h, tag: t, .. }
                | Msg::Exec { sess_h, tag: t, .. }) = &u.msg
                else {
                    continue;
                };
                if *sess_h != tm.nexus || tag.is_some_and(|tag| tag != *t) {
                    continue;
                }
                match u.state {
                    // The process never sees it.
                    State::Queued => {
                        u.state = State::Aborted;
                        aborted = true;
                    }
                    State::Delivered | State::Replying if tag.is_some() => cmd_h_to_abort = u.h,
                    _ => {}
                }
            }
        }
        if aborted {
            self.replied.notify_all();
        }
        // The process may end the command it has sooner; the core waits for
        // its reply (or its timeout) either way.
        self.notify(Msg::TaskMgmt {
            done: false,
            sess_h: tm.nexus,
            function,
            cmd_h_to_abort,
        });
    }

    fn task_mgmt_done(&self, tm: &TaskMgmt, _done: bool) {
        let (function, _) = tm_function(tm.function);
        self.notify(Msg::TaskMgmt {
            done: true,
            sess_h: tm.nexus,
            function,
            cmd_h_to_abort: 0,
        });
    }

    fn lend_buffer(
        self: ArcBorrow<'_, Self>,
        req: &BufferRequest<'_>,
    ) -> Result<Option<LentBuffer>, LendRefused> {
        let Ok(cdb) = Cdb::new(req.cdb) else {
            return Ok(None);
        };
        // One handle for the command's PARSE, ALLOC_MEM, EXEC and
        // ON_FREE_CMD, kept with the buffer.
        let mut h = Some(self.new_handle());
        let mut limit = req.len;
        let parsed = self.parse_due(&cdb);
        if parsed {
            match self.parse(&mut h, req.nexus, req.tag, &cdb, req.len, req.direction) {
                Ok(n) => limit = n,
                Err(end) => return Err(end.refusal()),
            }
        }
        // The transport receives all the initiator sends: the buffer holds
        // its length, whatever EXEC moves.
        let buf = match self.buffer_for(&mut h, req.nexus, req.tag, &cdb, req.len, req.direction) {
            Ok(b) => b,
            // Without PARSE, EXEC answers BUSY (or the process frees memory
            // meanwhile); after it, the command ends now.
            Err(Failure::Busy) if !parsed => return Ok(None),
            Err(f) => return Err(ParseEnd::Failed(f).refusal()),
        };
        let lender: Arc<dyn Lender> = Arc::<Self>::from(self);
        Ok(Some(LentBuffer::new(buf, lender, req.direction, h, limit)))
    }

    fn task_aborted_status(&self) -> bool {
        self.inner.lock().opts.tas != 0
    }

    fn sense_format(&self) -> SenseFormat {
        if self.inner.lock().opts.d_sense != 0 {
            SenseFormat::Descriptor
        } else {
            SenseFormat::Fixed
        }
    }

    fn size(&self) -> u64 {
        // Only the process knows its capacity.
        0
    }

    fn attributes(&self) -> &'static [LuAttr] {
        &USER_ATTRS
    }

    fn show(&self, index: usize, out: &mut SysfsBuf) {
        let _ = match index {
            0 => writeln!(out, "{}", self.timeout_s.load(Ordering::Relaxed)),
            1 => writeln!(out, "{}", self.block_size),
            2 => writeln!(out, "{}", self.zero_copy_commands.load(Ordering::Relaxed)),
            _ => writeln!(out, "{}", self.copied_commands.load(Ordering::Relaxed)),
        };
    }

    fn store<'a>(&self, index: usize, value: &'a str) -> Result<AttrChange, MgmtFailure<'a>> {
        if index != 0 {
            return Err(MgmtError::Refused("read-only attribute").into());
        }
        let secs = crate::scst_core::mgmt::parse_u64(value)
            .filter(|s| (1..=3600).contains(s))
            .ok_or(MgmtError::BadValue {
                key: "timeout",
                value,
                expected: "seconds from 1 to 3600",
            })?;
        self.timeout_s.store(secs as u32, Ordering::Relaxed);
        Ok(AttrChange::Nothing)
    }

    fn nexus_attached(&self, nexus: &NexusInfo<'_>) {
        let (Ok(initiator), Ok(target)) = (
            CString::try_from(nexus.initiator),
            CString::try_from(nexus.target),
        ) else {
            return;
        };
        self.notify(Msg::Attach {
            sess_h: nexus.id,
            lun: nexus.lun,
            read_only: nexus.read_only,
            threads_num: u16::try_from(nexus.threads_num).unwrap_or(u16::MAX),
            initiator,
            target,
        });
    }

    fn nexus_detached(&self, id: u64) {
        if !self.inner.lock().alive {
            return;
        }
        self.notify(Msg::Detach { sess_h: id });
    }
}

/// A wait interrupted after replies were applied must not restart: the
/// call would apply them again. It fails with `EINTR` instead, and the
/// process calls again without them.
fn replied_once(e: Error, replied: bool) -> Error {
    if replied && e == ERESTARTSYS {
        EINTR
    } else {
        e
    }
}

/// The data-in length and status a command's result gives ON_FREE_CMD.
fn ended_as(result: &Result<Completion, Sense>) -> (usize, u8) {
    match result {
        Ok(c) => (c.data_in, c.raw.map_or(status::GOOD, |r| r.status)),
        Err(_) => (0, status::CHECK_CONDITION),
    }
}

fn busy() -> Completion {
    let mut c = Completion::NO_DATA;
    c.raw = Some(raw_status(status::BUSY, &[]));
    c
}

impl UserFile {
    fn device(&self) -> Result<Arc<UserDev>> {
        self.dev.lock().clone().ok_or(ENODEV)
    }

    fn read_user<const N: usize>(addr: usize) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        UserSlice::new(addr, N).reader().read_slice(&mut b)?;
        Ok(b)
    }

    fn write_user(addr: usize, data: &[u8]) -> Result {
        UserSlice::new(addr, data.len()).writer().write_slice(data)
    }

    /// A NUL-terminated string of at most 63 characters at `addr`.
    fn read_user_str(addr: usize) -> Result<KVec<u8>> {
        let raw: [u8; 64] = Self::read_user(addr)?;
        let len = raw.iter().position(|&c| c == 0).ok_or(EINVAL)?;
        let mut v = KVec::new();
        v.extend_from_slice(&raw[..len], GFP_KERNEL)?;
        Ok(v)
    }

    fn register_device(&self, arg: usize) -> Result<i64> {
        let raw: [u8; abi::DEV_DESC_SIZE] = Self::read_user(arg)?;
        let desc = DevDesc::decode(&raw);
        let mut slot = self.dev.lock();
        if slot.is_some() {
            pr_err!("scst_user: this file already has a device\n");
            return Err(EBUSY);
        }
        let version = Self::read_user_str(desc.version_str as usize)?;
        if !version.starts_with(abi::VERSION_PREFIX) {
            pr_err!(
                "scst_user: handler interface version {:?} is not SCST 3's\n",
                core::str::from_utf8(&version).unwrap_or("<binary>")
            );
            return Err(EINVAL);
        }
        let license = Self::read_user_str(desc.license_str as usize)?;
        if !abi::LICENSES.iter().any(|l| **l == *license) {
            pr_err!("scst_user: handler license is not GPL-compatible\n");
            return Err(EPERM);
        }
        let name = desc.name().ok_or_else(|| {
            pr_err!("scst_user: invalid device name\n");
            EINVAL
        })?;
        if let Err(field) = desc.opt.validate() {
            pr_err!("scst_user: {}: invalid option {}\n", name, field);
            return Err(EINVAL);
        }
        let disk_like = matches!(desc.dev_type, 0x00 | 0x05 | 0x07 | 0x0e);
        if disk_like
            && !(desc.block_size.is_power_of_two() && (512..=1 << 20).contains(&desc.block_size))
        {
            pr_err!(
                "scst_user: {}: block size {} is not a power of two from 512\n",
                name,
                desc.block_size
            );
            return Err(EINVAL);
        }
        let mut queue = KVec::new();
        queue.reserve(256, GFP_KERNEL)?;
        let mut ucmds = KVec::new();
        ucmds.reserve(256, GFP_KERNEL)?;
        let mut cache = KVec::new();
        cache.reserve(MAX_CACHED_BUFFERS, GFP_KERNEL)?;
        let dev_name = cstring(name)?;
        let dev = Arc::pin_init(
            pin_init!(UserDev {
                name: dev_name,
                dev_type: desc.dev_type,
                block_size: desc.block_size,
                timeout_s: AtomicU32::new(DEFAULT_TIMEOUT_S),
                last_handle: AtomicU32::new(0),
                zero_copy_commands: AtomicU64::new(0),
                copied_commands: AtomicU64::new(0),
                pollq: self.pollq.clone(),
                inner <- new_spinlock!(Inner {
                    alive: true,
                    opts: desc.opt,
                    queue,
                    ucmds,
                    cache,
                }),
                replied <- new_condvar!(),
                ready <- new_condvar!(),
            }),
            GFP_KERNEL,
        )?;
        self.scst
            .add_handler_device(dev.clone(), dev.clone())
            .inspect_err(|e| {
                pr_err!(
                    "scst_user: cannot register device {} ({})\n",
                    name,
                    e.to_errno()
                )
            })?;
        pr_info!(
            "scst_user: device {} (type {}) registered by its handler\n",
            name,
            desc.dev_type
        );
        *slot = Some(dev);
        Ok(0)
    }

    fn unregister(&self, dev: Arc<UserDev>) {
        dev.kill();
        self.scst.remove_handler_device(dev.name_str());
        pr_info!("scst_user: device {} unregistered\n", dev.name_str());
    }

    fn reply_and_get(&self, arg: usize, nonblock: bool) -> Result<i64> {
        let dev = self.device()?;
        let head: [u8; 16] = Self::read_user(arg)?;
        let preply = abi::u64_at(&head, abi::UNION_OFFSET);
        if preply != 0 {
            let raw: [u8; abi::REPLY_CMD_SIZE] = Self::read_user(preply as usize)?;
            dev.reply(&Reply::decode(&raw))?;
        }
        let mut out = [0u8; abi::GET_CMD_SIZE];
        let h = dev
            .next(&mut out, nonblock)
            .map_err(|e| replied_once(e, preply != 0))?;
        if let Err(e) = Self::write_user(arg, &out) {
            dev.requeue(h);
            return Err(e);
        }
        Ok(0)
    }

    fn reply_and_get_multi(&self, arg: usize, nonblock: bool) -> Result<i64> {
        let dev = self.device()?;
        let raw: [u8; abi::GET_MULTI_SIZE] = Self::read_user(arg)?;
        let mut head = abi::GetMulti::decode(&raw);
        let mut outcome = Ok(0);
        head.replies_done = 0;
        for i in 0..head.replies_cnt.max(0) as usize {
            let at = head.preplies as usize + i * abi::REPLY_CMD_SIZE;
            let r = Self::read_user::<{ abi::REPLY_CMD_SIZE }>(at)
                .and_then(|raw| dev.reply(&Reply::decode(&raw)));
            if let Err(e) = r {
                outcome = Err(e);
                break;
            }
            head.replies_done += 1;
        }
        let wanted = if outcome.is_ok() {
            head.cmds_cnt.max(0) as usize
        } else {
            0
        };
        let mut got = 0usize;
        let mut out = [0u8; abi::GET_CMD_SIZE];
        while got < wanted {
            // Only the first fetch may sleep.
            let h = match dev.next(&mut out, nonblock || got > 0) {
                Ok(h) => h,
                Err(e) => {
                    if got == 0 {
                        outcome = Err(replied_once(e, head.replies_done > 0));
                    }
                    break;
                }
            };
            let at = arg + abi::GET_MULTI_SIZE + got * abi::GET_CMD_SIZE;
            if let Err(e) = Self::write_user(at, &out) {
                dev.requeue(h);
                if got == 0 {
                    outcome = Err(e);
                }
                break;
            }
            got += 1;
        }
        head.cmds_cnt = got as i16;
        let mut raw = [0u8; abi::GET_MULTI_SIZE];
        head.encode(&mut raw);
        Self::write_user(arg, &raw)?;
        outcome
    }

    fn get_extended_cdb(&self, arg: usize) -> Result<i64> {
        let dev = self.device()?;
        let raw: [u8; abi::GET_EXT_CDB_SIZE] = Self::read_user(arg)?;
        let h = abi::u32_at(&raw, 0);
        let to = abi::u64_at(&raw, 8) as usize;
        let mut tail = [0u8; MAX_CDB_LEN - abi::MAX_CDB_SIZE];
        let n = {
            let mut inner = dev.inner.lock();
            let u = inner.find(h).ok_or(EINVAL)?;
            let cdb = u.msg.cdb().ok_or(EINVAL)?;
            let rest = cdb.get(abi::MAX_CDB_SIZE..).ok_or(EINVAL)?;
            tail[..rest.len()].copy_from_slice(rest);
            rest.len()
        };
        Self::write_user(to, &tail[..n])?;
        Ok(0)
    }

    fn prealloc_buffer(&self, arg: usize) -> Result<i64> {
        let dev = self.device()?;
        let raw: [u8; abi::PREALLOC_SIZE] = Self::read_user(arg)?;
        let pbuf = abi::u64_at(&raw, 0) as usize;
        let len = abi::u32_at(&raw, 8) as usize;
        if pbuf == 0 || pbuf % PAGE_SIZE != 0 || len == 0 {
            return Err(EINVAL);
        }
        let buf = PinnedUserBuf::pin(pbuf, len)?;
        {
            let mut inner = dev.inner.lock();
            if inner.cache.len() >= MAX_CACHED_BUFFERS.min(inner.cache.capacity()) {
                drop(inner);
                drop(buf);
                return Err(EBUSY);
            }
            inner.cache.push(buf, GFP_ATOMIC)?;
        };
        let h = dev.new_handle();
        let mut out = [0u8; abi::PREALLOC_SIZE];
        out[..4].copy_from_slice(&h.to_ne_bytes());
        Self::write_user(arg, &out)?;
        Ok(0)
    }
}

impl MiscFile for UserFile {
    fn ioctl(&self, cmd: u32, arg: usize, nonblock: bool) -> Result<i64> {
        use abi::ioctl::*;
        match cmd {
            REGISTER_DEVICE => self.register_device(arg),
            UNREGISTER_DEVICE => {
                let dev = self.dev.lock().take().ok_or(ENODEV)?;
                self.unregister(dev);
                Ok(0)
            }
            SET_OPTIONS => {
                let raw: [u8; abi::OPT_SIZE] = Self::read_user(arg)?;
                let opts = Options::decode(&raw);
                let dev = self.device()?;
                opts.validate().map_err(|field| {
                    pr_err!("{}: invalid option {}\n", dev.name_str(), field);
                    EINVAL
                })?;
                dev.inner.lock().opts = opts;
                Ok(0)
            }
            GET_OPTIONS => {
                let dev = self.device()?;
                let mut raw = [0u8; abi::OPT_SIZE];
                let opts = dev.inner.lock().opts;
                opts.encode(&mut raw);
                Self::write_user(arg, &raw)?;
                Ok(0)
            }
            REPLY_AND_GET_CMD => self.reply_and_get(arg, nonblock),
            REPLY_AND_GET_MULTI => self.reply_and_get_multi(arg, nonblock),
            REPLY_CMD => {
                let dev = self.device()?;
                let raw: [u8; abi::REPLY_CMD_SIZE] = Self::read_user(arg)?;
                dev.reply(&Reply::decode(&raw))?;
                Ok(0)
            }
            FLUSH_CACHE => {
                self.device()?.flush_cache();
                Ok(0)
            }
            DEVICE_CAPACITY_CHANGED => {
                let dev = self.device()?;
                self.scst
                    .raise_device_ua(dev.name_str(), sense::CAPACITY_DATA_CHANGED);
                Ok(0)
            }
            GET_EXTENDED_CDB => self.get_extended_cdb(arg),
            PREALLOC_BUFFER => self.prealloc_buffer(arg),
            _ => Err(ENOTTY),
        }
    }

    fn poll(&self) -> (u32, Option<&PollQueue>) {
        let mask = match self.dev.lock().as_ref() {
            None => POLL_ERR,
            Some(dev) => {
                let inner = dev.inner.lock();
                if !inner.alive {
                    POLL_ERR
                } else if inner.queue.is_empty() {
                    0
                } else {
                    POLL_IN
                }
            }
        };
        (mask, Some(&*self.pollq))
    }

    fn release(&self) {
        let dev = self.dev.lock().take();
        if let Some(dev) = dev {
            self.unregister(dev);
        }
    }
}
