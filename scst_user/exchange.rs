// SPDX-License-Identifier: GPL-2.0

//! The exchange with the process: messages queued for it (commands and
//! notifications), fetched with REPLY_AND_GET_CMD, and its replies,
//! checked before anything uses them.

use super::abi::{self, Options, Reply, ToUser};
use super::*;
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::misc::{sleep_ms, PinnedUserBuf};
use crate::scst_core::device::{Completion, DataDirection, RawStatus};
use crate::scst_core::sense::{self, Sense, MAX_RAW_SENSE_LEN};
use crate::scst_core::session::status;
use core::sync::atomic::Ordering;
use kernel::{
    alloc::flags::GFP_ATOMIC,
    prelude::*,
    str::CString,
    time::{ktime_ms_delta, msecs_to_jiffies, Ktime},
    uaccess::UserSlice,
};

/// A message as queued: what [`ToUser`] encodes, with owned data.
pub(super) enum Msg {
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
        tag: u64,
        cdb: Cdb,
        bufflen: usize,
        direction: u8,
        timeout_s: u32,
    },
    AllocMem {
        sess_h: u64,
        tag: u64,
        cdb: Cdb,
        alloc_len: usize,
        direction: u8,
    },
    Exec {
        sess_h: u64,
        tag: u64,
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
    pub(super) fn to_user(&self) -> ToUser<'_> {
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
    pub(super) fn has_waiter(&self) -> bool {
        matches!(
            self,
            Self::Parse { .. } | Self::AllocMem { .. } | Self::Exec { .. }
        )
    }

    pub(super) fn cdb(&self) -> Option<&[u8]> {
        match self {
            Self::Parse { cdb, .. } | Self::AllocMem { cdb, .. } | Self::Exec { cdb, .. } => {
                Some(cdb.as_slice())
            }
            _ => None,
        }
    }
}

/// What a checked reply gives the waiting command.
pub(super) enum Answer {
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

pub(super) enum State {
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

pub(super) struct UCmd {
    pub(super) h: u32,
    pub(super) msg: Msg,
    pub(super) state: State,
    /// An EXEC that no worker waits for: its reply, its timeout or the
    /// process's end completes it.
    pub(super) pending: Option<Pending>,
}

impl UCmd {
    /// Whether a worker sleeps until the reply (see [`UserDev::call`]).
    fn waited_for(&self) -> bool {
        self.msg.has_waiter() && self.pending.is_none()
    }
}

/// Why a command got no answer.
pub(super) enum Failure {
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
    pub(super) fn completion(self) -> Result<Completion, Sense> {
        match self {
            Self::Busy => Ok(busy()),
            Self::Aborted => Err(sense::COMMAND_ABORTED),
            Self::Gone | Self::Timeout | Self::Refused => Err(sense::INTERNAL_TARGET_FAILURE),
        }
    }
}

pub(super) struct Inner {
    /// False once the file is closed or the device unregistered.
    pub(super) alive: bool,
    pub(super) opts: Options,
    /// Handles to deliver, oldest first.
    pub(super) queue: KVec<u32>,
    pub(super) ucmds: KVec<UCmd>,
    /// Buffers kept pinned for reuse.
    pub(super) cache: KVec<PinnedUserBuf>,
}

impl Inner {
    pub(super) fn find(&mut self, h: u32) -> Option<&mut UCmd> {
        self.ucmds.iter_mut().find(|u| u.h == h)
    }

    /// Takes entry `i` of the queue, keeping the others in order.
    pub(super) fn dequeue_at(&mut self, i: usize) -> Option<u32> {
        if i >= self.queue.len() {
            return None;
        }
        self.queue.as_mut_slice().get_mut(i..)?.rotate_left(1);
        self.queue.pop()
    }

    pub(super) fn remove(&mut self, h: u32) -> Option<UCmd> {
        let i = self.ucmds.iter().position(|u| u.h == h)?;
        if let Some(q) = self.queue.iter().position(|&x| x == h) {
            self.dequeue_at(q);
        }
        self.ucmds.swap_remove(i)
    }
}

impl UserDev {
    pub(super) fn name_str(&self) -> &str {
        self.name.to_str().unwrap_or("?")
    }

    /// Queues `msg` for the process under the handle `*h`: the command's
    /// (its PARSE, ALLOC_MEM, EXEC and ON_FREE_CMD share one, as in SCST),
    /// or a new one when `*h` is `None`, which is then set.
    pub(super) fn post(&self, h: &mut Option<u32>, msg: Msg) -> core::result::Result<u32, Failure> {
        self.enqueue(h, msg, None).map_err(|(f, _)| f)
    }

    /// [`Self::post`], for an EXEC that `pending` completes; a refused one
    /// gives `pending` back.
    pub(super) fn enqueue(
        &self,
        h: &mut Option<u32>,
        msg: Msg,
        pending: Option<Pending>,
    ) -> core::result::Result<u32, (Failure, Option<Pending>)> {
        let h = {
            let mut inner = self.inner.lock();
            if !inner.alive {
                return Err((Failure::Gone, pending));
            }
            if inner.ucmds.len() >= MAX_UCMDS
                || inner.queue.reserve(1, GFP_ATOMIC).is_err()
                || inner.ucmds.reserve(1, GFP_ATOMIC).is_err()
            {
                return Err((Failure::Busy, pending));
            }
            let h = *h.get_or_insert_with(|| self.new_handle());
            // Room is reserved: neither push fails (nor drops `pending`
            // under the lock).
            let _ = inner.queue.push(h, GFP_ATOMIC);
            let _ = inner.ucmds.push(
                UCmd {
                    h,
                    msg,
                    state: State::Queued,
                    pending,
                },
                GFP_ATOMIC,
            );
            h
        };
        self.ready.notify_one();
        self.pollq.wake();
        Ok(h)
    }

    /// Takes out the first EXEC no worker waits for that `expired` says
    /// must end now (it is not being replied to).
    pub(super) fn take_pending(
        &self,
        mut expired: impl FnMut(&UCmd) -> bool,
    ) -> Option<(u32, Pending)> {
        let mut inner = self.inner.lock();
        let h = inner
            .ucmds
            .iter()
            .find(|u| {
                u.pending.is_some()
                    && matches!(u.state, State::Queued | State::Delivered)
                    && expired(u)
            })?
            .h;
        let pending = inner.remove(h)?.pending?;
        Some((h, pending))
    }

    /// Posts a notification that nothing waits for, under a new handle.
    pub(super) fn notify(&self, msg: Msg) {
        self.notify_as(&mut None, msg);
    }

    /// Posts a notification under the handle `*h` (see [`Self::post`]).
    pub(super) fn notify_as(&self, h: &mut Option<u32>, msg: Msg) {
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
    pub(super) fn call(
        &self,
        h: &mut Option<u32>,
        msg: Msg,
    ) -> core::result::Result<Answer, Failure> {
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
    pub(super) fn new_handle(&self) -> u32 {
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

    /// The process is gone: fail what waits, forget what is queued.
    pub(super) fn kill(&self) {
        let cache = {
            let mut inner = self.inner.lock();
            inner.alive = false;
            inner.queue.clear();
            let mut i = 0;
            while i < inner.ucmds.len() {
                if inner.ucmds[i].waited_for() || inner.ucmds[i].pending.is_some() {
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
        self.watched.notify_all();
        self.pollq.wake();
        // One at a time: ending one unpins its buffer, outside the lock. A
        // reply being checked ends its own.
        while let Some((h, pending)) = self.take_pending(|_| true) {
            self.fail_pending(Some(h), pending, Failure::Gone);
        }
    }

    /// Hands the oldest queued message to the process, encoded in `out`.
    pub(super) fn next(&self, out: &mut [u8; abi::GET_CMD_SIZE], nonblock: bool) -> Result<u32> {
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
    pub(super) fn requeue(&self, h: u32) {
        let mut inner = self.inner.lock();
        if let Some(u) = inner.find(h) {
            u.state = State::Queued;
            if inner.queue.push(h, GFP_ATOMIC).is_ok() {
                inner.queue.as_mut_slice().rotate_right(1);
            }
        }
    }

    /// Checks and applies one reply from the process.
    pub(super) fn reply(self: &Arc<Self>, r: &Reply) -> Result {
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
                let waits = u.waited_for() && matches!(u.state, State::Delivered);
                if waits {
                    u.state = State::Refused;
                }
                let refused = match u.state {
                    State::Delivered => inner.remove(r.cmd_h).and_then(|u| u.pending),
                    _ => None,
                };
                drop(inner);
                if waits {
                    self.replied.notify_all();
                }
                if let Some(pending) = refused {
                    self.fail_pending(Some(r.cmd_h), pending, Failure::Refused);
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
        let (unclaimed, pending) = {
            let mut inner = self.inner.lock();
            match inner.find(r.cmd_h) {
                Some(u) if u.pending.is_some() => (Some(answer), inner.remove(r.cmd_h)),
                Some(u) => {
                    u.state = match answer {
                        Ok(a) => State::Answered(a),
                        Err(()) => State::Refused,
                    };
                    (None, None)
                }
                // The command timed out meanwhile.
                None => (Some(answer), None),
            }
        };
        match (pending.and_then(|u| u.pending), unclaimed) {
            (Some(pending), Some(answer)) => {
                self.end_pending(r.cmd_h, pending, answer.map_err(|()| Failure::Refused));
            }
            // A pinned buffer nobody took unpins here, outside the lock.
            (_, unclaimed) => {
                drop(unclaimed);
                self.replied.notify_all();
            }
        }
        if ok {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }

    pub(super) fn check_alloc(&self, r: &Reply, len: usize) -> core::result::Result<Answer, ()> {
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

    pub(super) fn check_exec(
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

    pub(super) fn check_parse(
        &self,
        r: &Reply,
        cdb_len: usize,
    ) -> core::result::Result<Answer, ()> {
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
    pub(super) fn read_status(
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

pub(super) fn abi_direction(d: DataDirection) -> u8 {
    match d {
        DataDirection::None => abi::dir::NONE,
        DataDirection::Write => abi::dir::WRITE,
        DataDirection::Read => abi::dir::READ,
        DataDirection::Bidi => abi::dir::BIDI,
    }
}

pub(super) fn raw_status(status: u8, sense: &[u8]) -> RawStatus {
    let mut raw = RawStatus {
        status,
        sense: [0; MAX_RAW_SENSE_LEN],
        sense_len: sense.len().min(MAX_RAW_SENSE_LEN),
    };
    raw.sense[..raw.sense_len].copy_from_slice(&sense[..raw.sense_len]);
    raw
}
