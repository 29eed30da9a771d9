// SPDX-License-Identifier: GPL-2.0

//! A device served by a process, as the core sees it: its handler, its
//! logical unit, its attributes and task management.

use super::abi;
use super::*;
use crate::kernel_ext::misc::{PinnedUserBuf, PollQueue};
use crate::kernel_ext::sysfs::SysfsBuf;
use crate::scst_core::buffer::{BufferRequest, LendRefused, Lender, Lending, LentBuffer};
use crate::scst_core::device::{
    AttrChange, DataDirection, DevHandler, ExecCmd, Executed, LogicalUnit, LuAttr, NexusInfo,
    TaskMgmt, TmFunction,
};
use crate::scst_core::mgmt::{MgmtError, Params};
use crate::scst_core::sense::{Sense, SenseFormat};
use crate::scst_core::MgmtFailure;
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::{
    c_str,
    prelude::*,
    str::CString,
    sync::{Arc, ArcBorrow, CondVar, SpinLock},
};

/// A device served by a process: its handler and logical unit.
#[pin_data]
pub(super) struct UserDev {
    pub(super) name: CString,
    pub(super) dev_type: u8,
    pub(super) block_size: u32,
    pub(super) timeout_s: AtomicU32,
    /// The last handle given (`cmd_h`; 0 is never one).
    pub(super) last_handle: AtomicU32,
    pub(super) pollq: Arc<PollQueue>,
    #[pin]
    pub(super) inner: SpinLock<Inner>,
    /// Commands waiting for replies sleep here.
    #[pin]
    pub(super) replied: CondVar,
    /// Processes waiting for commands sleep here.
    #[pin]
    pub(super) ready: CondVar,
    /// The watchdog sleeps here between its looks for late EXECs.
    #[pin]
    pub(super) watched: CondVar,
    /// Commands whose data the transport moved in the process's buffer.
    pub(super) zero_copy_commands: AtomicU64,
    /// Commands whose data was copied between the transport's buffer and
    /// the process's (scst_local: the initiator's pages are the transport's).
    pub(super) copied_commands: AtomicU64,
}

pub(super) static USER_ATTRS: [LuAttr; 4] = [
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

/// The ABI's code of a task management function, and the tag an ABORT
/// TASK names.
pub(super) fn tm_function(f: TmFunction) -> (u32, Option<u64>) {
    match f {
        TmFunction::AbortTask(tag) => (abi::tm_fn::ABORT_TASK, Some(tag)),
        TmFunction::AbortTaskSet => (abi::tm_fn::ABORT_TASK_SET, None),
        TmFunction::ClearTaskSet => (abi::tm_fn::CLEAR_TASK_SET, None),
        TmFunction::LunReset => (abi::tm_fn::LUN_RESET, None),
        TmFunction::TargetReset => (abi::tm_fn::TARGET_RESET, None),
    }
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
        self.execute_now(cmd)
    }

    fn task_mgmt_received(&self, tm: &TaskMgmt) {
        let (function, tag) = tm_function(tm.function);
        // A command of the nexus (and tag) the function names.
        let named = |u: &UCmd| {
            let (Msg::Parse { sess_h, tag: t, .. }
            | Msg::AllocMem { sess_h, tag: t, .. }
            | Msg::Exec { sess_h, tag: t, .. }) = &u.msg
            else {
                return false;
            };
            *sess_h == tm.nexus && tag.map_or(true, |tag| tag == *t)
        };
        let mut cmd_h_to_abort = 0;
        let mut aborted = false;
        let mut aborted_pending = false;
        {
            let mut inner = self.inner.lock();
            for u in inner.ucmds.iter_mut().filter(|u| named(u)) {
                match u.state {
                    // The process never sees it.
                    State::Queued if u.pending.is_some() => aborted_pending = true,
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
        while let Some((h, pending)) = aborted_pending
            .then(|| self.take_pending(|u| matches!(u.state, State::Queued) && named(u)))
            .flatten()
        {
            self.fail_pending(Some(h), pending, Failure::Aborted);
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
    ) -> Result<Lending, LendRefused> {
        let Ok(cdb) = Cdb::new(req.cdb) else {
            return Ok(Lending::NotLent);
        };
        let parsed = self.parse_due(&cdb);
        // A receive loop must not wait for the process: PARSE, and an
        // ALLOC_MEM where no buffer is cached, are round trips to it.
        let cached = match (req.nowait, parsed) {
            (true, true) => return Ok(Lending::WouldBlock),
            (true, false) => match self.cached_buffer(req.len, req.direction) {
                Some(b) => Some(b),
                None => return Ok(Lending::WouldBlock),
            },
            (false, _) => None,
        };
        // One handle for the command's PARSE, ALLOC_MEM, EXEC and
        // ON_FREE_CMD, kept with the buffer.
        let mut h = Some(self.new_handle());
        let mut limit = req.len;
        if parsed {
            match self.parse(&mut h, req.nexus, req.tag, &cdb, req.len, req.direction) {
                Ok(n) => limit = n,
                Err(end) => return Err(end.refusal()),
            }
        }
        // The transport receives all the initiator sends: the buffer holds
        // its length, whatever EXEC moves.
        let buf = match cached {
            Some(b) => b,
            None => match self.buffer_for(&mut h, req.nexus, req.tag, &cdb, req.len, req.direction)
            {
                Ok(b) => b,
                // Without PARSE, EXEC answers BUSY (or the process frees
                // memory meanwhile); after it, the command ends now.
                Err(Failure::Busy) if !parsed => return Ok(Lending::NotLent),
                Err(f) => return Err(ParseEnd::Failed(f).refusal()),
            },
        };
        let lender: Arc<dyn Lender> = Arc::<Self>::from(self);
        Ok(Lending::Lent(LentBuffer::new(
            buf,
            lender,
            req.direction,
            h,
            limit,
        )))
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
