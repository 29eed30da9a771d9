// SPDX-License-Identifier: GPL-2.0

//! A command's way through the process: PARSE where due, a buffer
//! (cached, or the process's on ALLOC_MEM), EXEC, and ON_FREE_CMD.

use super::abi;
use super::*;
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::misc::PinnedUserBuf;
use crate::kernel_ext::sg::SgList;
use crate::scst_core::buffer::LendRefused;
use crate::scst_core::cmd::{Deferral, FinishDeferred, Outcome};
use crate::scst_core::device::{Completion, DataDirection, ExecCmd, Executed, RawStatus};
use crate::scst_core::sense::{self, Sense};
use crate::scst_core::session::status;
use core::sync::atomic::Ordering;
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    new_spinlock,
    prelude::*,
    sync::{Arc, SpinLock},
    time::{ktime_ms_delta, msecs_to_jiffies, Ktime},
};

/// A command's CDB: inline up to [`abi::MAX_CDB_SIZE`] bytes, so that the
/// usual command allocates nothing for it; longer ones (up to
/// [`MAX_CDB_LEN`]) go to the heap.
pub(super) struct Cdb {
    inline: [u8; abi::MAX_CDB_SIZE],
    len: usize,
    long: Option<KVec<u8>>,
}

impl Cdb {
    pub(super) fn new(cdb: &[u8]) -> Result<Self> {
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

    pub(super) fn as_slice(&self) -> &[u8] {
        match &self.long {
            Some(v) => v,
            None => self.inline.get(..self.len).unwrap_or(&[]),
        }
    }
}

/// Where EXEC's data is: the process's buffer at `pbuf` of `alloc_len`
/// bytes, of which the command moves `len`.
pub(super) struct ExecBuffer {
    pbuf: u64,
    alloc_len: usize,
    len: usize,
}

/// How often the watchdog looks for EXECs past their timeout.
const WATCH_MS: u32 = 1000;

/// An EXEC no worker waits for: what its end needs.
pub(super) struct Pending {
    deferral: Deferral,
    /// The process's buffer, when the data-in is copied from it.
    buf: Option<PinnedUserBuf>,
    pbuf: u64,
    /// Bytes the command moves.
    len: usize,
    direction: DataDirection,
    /// Its end is this device's to announce (see [`UserDev::exec`]).
    frees: bool,
    /// When it was queued, for the timeout.
    pub(super) since: Ktime,
}

/// A replied EXEC's data-in, copied into the command's buffer as it
/// resumes; the process's buffer is freed (or kept for reuse) after the
/// copy, or when this drops uncopied (task management aborted the command
/// meanwhile).
#[pin_data(PinnedDrop)]
struct CopyBack {
    dev: Arc<UserDev>,
    h: Option<u32>,
    /// Taken by the copy.
    #[pin]
    buf: SpinLock<Option<PinnedUserBuf>>,
    pbuf: u64,
    direction: DataDirection,
    /// Bytes of data-in the process gave.
    resp_len: usize,
    transfer_len: usize,
    raw: Option<RawStatus>,
}

impl FinishDeferred for CopyBack {
    fn finish(&self, data: &mut SgList<'_>) -> Result<Completion, Sense> {
        let mut buf = self
            .buf
            .lock()
            .take()
            .ok_or(sense::INTERNAL_TARGET_FAILURE)?;
        let mut done = Completion::data_in(
            data.copy_from_sg(&buf.sg(), self.resp_len),
            self.transfer_len,
        );
        done.raw = self.raw;
        let status = self.raw.map_or(status::GOOD, |r| r.status);
        self.dev.free_cmd(
            self.h,
            Some(buf),
            self.pbuf,
            self.direction,
            Some((done.data_in, status)),
        );
        Ok(done)
    }
}

#[pinned_drop]
impl PinnedDrop for CopyBack {
    fn drop(self: Pin<&mut Self>) {
        let buf = self.buf.lock().take();
        if buf.is_some() {
            // Never copied: the command was aborted.
            self.dev
                .free_cmd(self.h, buf, self.pbuf, self.direction, None);
        }
    }
}

/// How a PARSE ended a command.
pub(super) enum ParseEnd {
    /// With the process's status.
    Status(RawStatus),
    /// The process's data direction is not the initiator's.
    Mismatch,
    Failed(Failure),
}

impl ParseEnd {
    pub(super) fn completion(self) -> Result<Completion, Sense> {
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
    pub(super) fn refusal(self) -> LendRefused {
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

impl UserDev {
    /// EXEC: the command goes to the process (PARSE and a buffer first
    /// where due) and the worker waits for its reply.
    pub(super) fn execute_now(&self, cmd: &mut ExecCmd<'_, '_>) -> Result<Executed, Sense> {
        let len = cmd.data.len();
        let direction = cmd.direction;
        let Ok(cdb) = Cdb::new(cmd.cdb) else {
            return Ok(Executed::Done(busy()));
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
            return self.exec(&mut h, cmd, cdb, at, None, false);
        }
        let mut h = None;
        let mut len = len;
        if self.parse_due(&cdb) {
            match self.parse(&mut h, cmd.nexus, cmd.tag, &cdb, len, direction) {
                Ok(n) => len = n,
                Err(end) => {
                    let result = end.completion();
                    self.free_cmd(h, None, 0, direction, Some(ended_as(&result)));
                    return result.map(Executed::Done);
                }
            }
        }
        let mut buf = None;
        if len > 0 && direction != DataDirection::None {
            match self.buffer_for(&mut h, cmd.nexus, cmd.tag, &cdb, len, direction) {
                Ok(b) => buf = Some(b),
                Err(f) => return f.completion().map(Executed::Done),
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
        // The reply completes the command and frees its buffer (see
        // `Self::end_pending`).
        self.exec(&mut h, cmd, cdb, at, buf, true)
    }

    /// Whether the process checks this CDB (PARSE): every one with
    /// `parse_type` CALL; with EXCEPTION, the vendor-specific opcodes
    /// (C0h to FFh), the ones no standard parser knows.
    pub(super) fn parse_due(&self, cdb: &Cdb) -> bool {
        match self.inner.lock().opts.parse_type {
            abi::parse::CALL => true,
            abi::parse::EXCEPTION => cdb.as_slice().first().is_some_and(|&op| op >= 0xc0),
            _ => false,
        }
    }

    /// PARSE: the process checks the command, whose transport moves `len`
    /// bytes in `direction`. Returns the bytes EXEC moves (fewer when the
    /// process says the command moves fewer).
    pub(super) fn parse(
        &self,
        h: &mut Option<u32>,
        nexus: u64,
        tag: u64,
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
    pub(super) fn buffer_for(
        &self,
        h: &mut Option<u32>,
        nexus: u64,
        tag: u64,
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

    /// EXEC: hands the command to the process; the worker goes on, and
    /// the reply completes the command ([`Self::end_pending`]). `buf` is
    /// the process's buffer the data-in is copied from (the command's own
    /// buffer is the process's when it is `None`); `frees` says whether
    /// the command's end is this device's to announce (ON_FREE_CMD), not
    /// the transport's that borrowed the buffer.
    pub(super) fn exec(
        &self,
        h: &mut Option<u32>,
        cmd: &mut ExecCmd<'_, '_>,
        cdb: Cdb,
        at: ExecBuffer,
        buf: Option<PinnedUserBuf>,
        frees: bool,
    ) -> Result<Executed, Sense> {
        let ExecBuffer {
            pbuf,
            alloc_len,
            len,
        } = at;
        let direction = cmd.direction;
        let moves_data = len > 0 && direction != DataDirection::None;
        let msg = Msg::Exec {
            sess_h: cmd.nexus,
            tag: cmd.tag,
            cdb,
            bufflen: if moves_data { len } else { 0 },
            alloc_len,
            pbuf,
            direction: abi_direction(direction),
            timeout_s: self.timeout_s.load(Ordering::Relaxed),
        };
        let Some(deferral) = cmd.defer(Completion::NO_DATA, sense::INTERNAL_TARGET_FAILURE) else {
            // Every command the core executes can be deferred; one that
            // cannot would have nobody to complete it.
            if frees {
                self.free_cmd(*h, buf, pbuf, direction, None);
            }
            return Err(sense::INTERNAL_TARGET_FAILURE);
        };
        let pending = Pending {
            deferral,
            buf,
            pbuf,
            len,
            direction,
            frees,
            since: Ktime::ktime_get(),
        };
        if let Err((f, Some(pending))) = self.enqueue(h, msg, Some(pending)) {
            self.fail_pending(*h, pending, f);
        }
        Ok(Executed::Later)
    }

    /// Ends an EXEC no worker waits for that the process did not answer,
    /// for reason `f`; any process context, no lock held.
    pub(super) fn fail_pending(&self, h: Option<u32>, pending: Pending, f: Failure) {
        let Pending {
            deferral,
            buf,
            pbuf,
            direction,
            frees,
            ..
        } = pending;
        let result = f.completion();
        if frees {
            self.free_cmd(h, buf, pbuf, direction, Some(ended_as(&result)));
        }
        deferral.finish(match result {
            Ok(done) => Outcome::Done(done),
            Err(s) => Outcome::Failed(s),
        });
    }

    /// Ends an EXEC no worker waits for with the process's `answer`; any
    /// process context, no lock held.
    pub(super) fn end_pending(
        self: &Arc<Self>,
        h: u32,
        pending: Pending,
        answer: core::result::Result<Answer, Failure>,
    ) {
        let Pending {
            deferral,
            buf,
            pbuf,
            len,
            direction,
            frees,
            ..
        } = pending;
        let h = (h != 0).then_some(h);
        let done = match answer {
            Ok(Answer::Exec {
                status: st,
                resp_data_len,
                sense,
                sense_len,
            }) => {
                let transfer_len = match direction {
                    DataDirection::Read | DataDirection::Bidi => resp_data_len,
                    _ => len,
                };
                let mut done = Completion::data_in(resp_data_len.min(len), transfer_len);
                if st != status::GOOD {
                    done.raw = Some(raw_status(st, &sense[..sense_len]));
                }
                Ok(done)
            }
            Ok(_) => Err(sense::INTERNAL_TARGET_FAILURE),
            Err(f) => f.completion(),
        };
        let outcome = match (done, buf) {
            (Ok(done), Some(buf)) if done.data_in > 0 => {
                let copy = Arc::pin_init(
                    pin_init!(CopyBack {
                        dev: self.clone(),
                        h,
                        buf <- new_spinlock!(Some(buf)),
                        pbuf,
                        direction,
                        resp_len: done.data_in,
                        transfer_len: done.transfer_len,
                        raw: done.raw,
                    }),
                    GFP_KERNEL,
                );
                match copy {
                    Ok(copy) => Outcome::Finish(copy),
                    // The buffer dropped with the initializer: unpinned,
                    // and the process hears of it as a command that ended
                    // unexecuted.
                    Err(_) => {
                        self.notify(Msg::OnCachedMemFree { pbuf });
                        Outcome::Failed(sense::INTERNAL_TARGET_FAILURE)
                    }
                }
            }
            (result, buf) => {
                if frees {
                    self.free_cmd(h, buf, pbuf, direction, Some(ended_as(&result)));
                }
                match result {
                    Ok(done) => Outcome::Done(done),
                    Err(s) => Outcome::Failed(s),
                }
            }
        };
        deferral.finish(outcome);
    }

    /// Fails the EXECs the process has not answered within the device's
    /// timeout, until the device goes away; runs on a core worker of its
    /// own from registration on.
    pub(super) fn watch(&self) {
        loop {
            let limit_ms = i64::from(self.timeout_s.load(Ordering::Relaxed)) * 1000;
            let now = Ktime::ktime_get();
            let late = self.take_pending(|u| {
                u.pending
                    .as_ref()
                    .is_some_and(|p| ktime_ms_delta(now, p.since) >= limit_ms)
            });
            if let Some((h, pending)) = late {
                pr_err!(
                    "{}: no reply within {} s: command failed\n",
                    self.name_str(),
                    limit_ms / 1000
                );
                self.fail_pending(Some(h), pending, Failure::Timeout);
                continue;
            }
            let mut inner = self.inner.lock();
            if !inner.alive {
                return;
            }
            let _ = self
                .watched
                .wait_interruptible_timeout(&mut inner, msecs_to_jiffies(WATCH_MS));
        }
    }

    /// The command is over: keeps or unpins its buffer and tells the
    /// process (ON_FREE_CMD, or ON_CACHED_MEM_FREE when it hears of no
    /// ON_FREE_CMD and would otherwise leak the buffer). `ended` is the
    /// data-in length and status, `None` for a command that never ran.
    pub(super) fn free_cmd(
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
    pub(super) fn cached_buffer(
        &self,
        len: usize,
        direction: DataDirection,
    ) -> Option<PinnedUserBuf> {
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
    pub(super) fn release_buffer(
        &self,
        buf: Option<PinnedUserBuf>,
        direction: DataDirection,
    ) -> (bool, bool) {
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
    pub(super) fn flush_cache(&self) {
        loop {
            let buf = self.inner.lock().cache.pop();
            let Some(buf) = buf else { break };
            let pbuf = buf.addr() as u64;
            drop(buf);
            self.notify(Msg::OnCachedMemFree { pbuf });
        }
    }
}

pub(super) fn reuse_allowed(reuse: u8, direction: DataDirection) -> bool {
    match reuse {
        abi::mem_reuse::ALL => true,
        abi::mem_reuse::READ => direction == DataDirection::Read,
        abi::mem_reuse::WRITE => direction == DataDirection::Write,
        _ => false,
    }
}

/// The data-in length and status a command's result gives ON_FREE_CMD.
pub(super) fn ended_as(result: &Result<Completion, Sense>) -> (usize, u8) {
    match result {
        Ok(c) => (c.data_in, c.raw.map_or(status::GOOD, |r| r.status)),
        Err(_) => (0, status::CHECK_CONDITION),
    }
}

pub(super) fn busy() -> Completion {
    let mut c = Completion::NO_DATA;
    c.raw = Some(raw_status(status::BUSY, &[]));
    c
}
