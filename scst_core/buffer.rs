// SPDX-License-Identifier: GPL-2.0

//! A command's data buffer, as a target driver that owns its buffers (iSCSI)
//! gets it from [`super::session::Command::data_buffer`]: memory the logical
//! unit lends (a user-space handler's pinned buffer), so that data moves
//! between the wire and the backend without a copy, or fresh pages.

use super::device::{DataDirection, RawStatus};
use super::sense::{self, Sense};
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::misc::PinnedUserBuf;
use crate::kernel_ext::pages::Pages;
use crate::kernel_ext::sg::SgList;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::{alloc::flags::GFP_KERNEL, prelude::*, sync::Arc};

/// Bytes of the target's own pages the commands of one session may hold at
/// once. Writes that wait for their data-out hold their buffers until it
/// comes (up to the transport's response timeout), so without a bound one
/// initiator could pin gigabytes; past it, a command is answered TASK SET
/// FULL (BUSY when the session holds nothing: a command larger than the
/// bound, which no transport here lets through), which initiators retry
/// once their older commands end. 128 MiB is 32 commands of 4 MiB.
pub(crate) const MAX_SESSION_DATA: usize = 128 << 20;

/// The target's own pages a session's commands hold, against
/// [`MAX_SESSION_DATA`].
pub(crate) struct DataBudget {
    used: AtomicUsize,
}

impl DataBudget {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Ok(Arc::new(
            Self {
                used: AtomicUsize::new(0),
            },
            GFP_KERNEL,
        )?)
    }

    /// Takes `len` bytes of the budget until the returned charge drops;
    /// `Err(holds)` when that would pass the bound (`holds`: the session
    /// holds some already).
    pub(crate) fn charge(self: &Arc<Self>, len: usize) -> core::result::Result<Charge, bool> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let new = match used.checked_add(len) {
                Some(n) if n <= MAX_SESSION_DATA => n,
                _ => return Err(used > 0),
            };
            match self
                .used
                .compare_exchange_weak(used, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok(Charge {
                        budget: self.clone(),
                        len,
                    })
                }
                Err(now) => used = now,
            }
        }
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Part of a [`DataBudget`], given back when it drops.
pub(crate) struct Charge {
    budget: Arc<DataBudget>,
    len: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.len, Ordering::Release);
    }
}

/// What a logical unit is asked to lend memory for.
pub(crate) struct BufferRequest<'a> {
    pub(crate) cdb: &'a [u8],
    /// Bytes of data the transport expects to move.
    pub(crate) len: usize,
    pub(crate) direction: DataDirection,
    /// [`super::device::NexusInfo::id`] of the command's I_T_L nexus.
    pub(crate) nexus: u64,
    /// The command's tag on that nexus.
    pub(crate) tag: u64,
    /// The caller may not sleep for the memory: it receives (a transport's
    /// receive loop), and the logical unit answers
    /// [`Lending::WouldBlock`] rather than wait for its handler.
    pub(crate) nowait: bool,
}

/// What a logical unit gives a command to hold its data.
pub(crate) enum Lending {
    /// Its own memory.
    Lent(LentBuffer),
    /// Nothing: the transport uses pages of its own.
    NotLent,
    /// Asked not to wait, it would have (a user-space handler's PARSE or
    /// ALLOC_MEM round trip): ask again where waiting is allowed.
    WouldBlock,
}

/// How a logical unit recognises its own lent buffer when it executes the
/// command ([`super::device::ExecCmd::lent`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct LentId {
    /// The buffer's address in its process.
    pub(crate) addr: u64,
    /// Bytes it holds, at least the request's length.
    pub(crate) capacity: usize,
    /// The logical unit's handle for the command, if it gave it one.
    pub(crate) key: Option<u32>,
    /// Bytes the logical unit moves at most (it may have learnt, lending,
    /// that the command moves fewer than the transport's length).
    pub(crate) limit: usize,
}

/// Why a logical unit ended a command while lending it memory.
#[derive(Clone, Copy)]
pub(crate) enum LendRefused {
    /// CHECK CONDITION with this sense.
    Sense(Sense),
    /// A status (and sense) the logical unit built.
    Status(RawStatus),
}

/// A logical unit that lends process memory to commands.
pub(crate) trait Lender: Send + Sync {
    /// The command that had `buf` ended (`ended` is its data-in length and
    /// status, `None` when it never ran) and the transport is done with
    /// the data.
    fn give_back(
        &self,
        buf: PinnedUserBuf,
        direction: DataDirection,
        ended: Option<(usize, u8)>,
        key: Option<u32>,
    );
}

/// Pinned process memory lent to one command; dropping it gives it back.
pub(crate) struct LentBuffer {
    /// Taken when it drops.
    buf: Option<PinnedUserBuf>,
    lender: Arc<dyn Lender>,
    direction: DataDirection,
    ended: Option<(usize, u8)>,
    key: Option<u32>,
    limit: usize,
}

impl LentBuffer {
    /// `buf`, lent by `lender` for a command moving data in `direction`,
    /// `limit` bytes at most; `key` is the lender's handle for it.
    pub(crate) fn new(
        buf: PinnedUserBuf,
        lender: Arc<dyn Lender>,
        direction: DataDirection,
        key: Option<u32>,
        limit: usize,
    ) -> Self {
        Self {
            buf: Some(buf),
            lender,
            direction,
            ended: None,
            key,
            limit,
        }
    }

    fn id(&self) -> LentId {
        let (addr, capacity) = self
            .buf
            .as_ref()
            .map_or((0, 0), |b| (b.addr() as u64, b.len()));
        LentId {
            addr,
            capacity,
            key: self.key,
            limit: self.limit,
        }
    }
}

impl Drop for LentBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.lender
                .give_back(buf, self.direction, self.ended, self.key);
        }
    }
}

/// Where a command's data lives. Lent memory is described out of line:
/// a buffer moves with its command, and most are the target's own pages.
enum Memory {
    Own(Pages),
    Lent(KBox<Lent>),
}

/// The first `len` bytes of a lent buffer.
struct Lent {
    buf: LentBuffer,
    len: usize,
}

/// A command's data buffer of a fixed length.
pub(crate) struct CmdBuffer {
    memory: Memory,
    /// The command is answered without executing (not admitted, or its
    /// logical unit or the session's data budget refused it, for which
    /// see [`super::session::Command`]): the driver need not receive its
    /// data-out.
    answered: bool,
    /// The session's budget this buffer's pages take, given back with them.
    _charge: Option<Charge>,
    /// Pages that only stage the command's data-out (none for other
    /// directions) until its logical unit lends memory for its `len` bytes
    /// where that may wait (see [`super::session::Command::lend_staged`]).
    staged: Option<usize>,
}

impl CmdBuffer {
    /// `len` bytes of new pages (may sleep), counted in `charge`.
    pub(super) fn own(len: usize, charge: Option<Charge>) -> Result<Self> {
        Ok(Self {
            memory: Memory::Own(Pages::alloc(len)?),
            answered: false,
            _charge: charge,
            staged: None,
        })
    }

    /// Marks pages as staging a command of `len` bytes whose logical unit
    /// lends its buffer later; not one answered already.
    pub(super) fn stage(mut self, len: usize) -> Self {
        if !self.answered {
            self.staged = Some(len);
        }
        self
    }

    /// The staged pages serve as the command's buffer after all.
    pub(crate) fn unstage(&mut self) {
        self.staged = None;
    }

    /// The command is answered rather than executed.
    pub(crate) fn refuse(&mut self) {
        self.staged = None;
        self.answered = true;
    }

    /// The command's length, while its buffer is still to be lent.
    pub(crate) fn staged(&self) -> Option<usize> {
        self.staged
    }

    /// The buffer of a command answered without executing (refused, or
    /// by the core): `len` bytes for a data-in the core builds, no room
    /// for data-out.
    pub(super) fn answered(len: usize) -> Result<Self> {
        let mut b = Self::own(len, None)?;
        b.answered = true;
        Ok(b)
    }

    /// The first `len` bytes of `buf`; `None` when it holds fewer (or
    /// there is no memory to describe it), and it goes back to its
    /// lender.
    pub(crate) fn lent(buf: LentBuffer, len: usize) -> Option<Self> {
        if buf.id().capacity < len {
            return None;
        }
        let lent = KBox::new(Lent { buf, len }, GFP_KERNEL).ok()?;
        Some(Self {
            memory: Memory::Lent(lent),
            answered: false,
            _charge: None,
            staged: None,
        })
    }

    /// Whether the command takes its data-out: one answered without
    /// executing does not, and its driver skips the data rather than ask
    /// for it (no R2T) or store it.
    pub(crate) fn wants_data_out(&self) -> bool {
        !self.answered
    }

    /// The buffer as a scatterlist of exactly its length.
    pub(crate) fn sg(&mut self) -> SgList<'_> {
        match &mut self.memory {
            Memory::Own(pages) => pages.sg(),
            Memory::Lent(lent) => {
                let len = lent.len;
                match lent.buf.buf.as_mut() {
                    Some(b) => b.sg().limited(len),
                    None => SgList::empty(),
                }
            }
        }
    }

    /// Whether its pages keep their content while anyone references them,
    /// so that TCP may send them by reference: lent memory goes back to
    /// its owner, who rewrites it, as soon as the command ends, while a
    /// retransmission may still read it.
    pub(crate) fn stable(&self) -> bool {
        matches!(self.memory, Memory::Own(_))
    }

    /// The lent buffer's identity, if it is lent.
    pub(crate) fn lent_id(&self) -> Option<LentId> {
        match &self.memory {
            Memory::Own(_) => None,
            Memory::Lent(lent) => Some(lent.buf.id()),
        }
    }

    /// Tells the lender how the command ended.
    pub(crate) fn executed(&mut self, data_in: usize, status: u8) {
        if let Memory::Lent(lent) = &mut self.memory {
            lent.buf.ended = Some((data_in, status));
        }
    }
}

/// A copy of the parameter list of a data-out command: the first
/// `list_len` bytes of its buffer (fewer when fewer arrived, none for a
/// command without data-out). A list longer than `max` is refused with
/// PARAMETER LIST LENGTH ERROR. May sleep (a core worker's commands).
pub(crate) fn parameter_list(
    data: &SgList<'_>,
    direction: DataDirection,
    list_len: usize,
    max: usize,
) -> core::result::Result<KVec<u8>, Sense> {
    if list_len > max {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let got = if direction == DataDirection::Write {
        list_len.min(data.len())
    } else {
        0
    };
    let mut params = KVec::new();
    params
        .extend_with(got, 0u8, GFP_KERNEL)
        .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
    // All of it, unless the buffer is shorter than it said.
    let got = data.copy_to_slice(0, &mut params);
    while params.len() > got {
        params.pop();
    }
    Ok(params)
}
