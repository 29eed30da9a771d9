// SPDX-License-Identifier: GPL-2.0

//! A command's data buffer, as a target driver that owns its buffers (iSCSI)
//! gets it from [`super::session::Command::data_buffer`]: memory the logical
//! unit lends (a user-space handler's pinned buffer), so that data moves
//! between the wire and the backend without a copy, or fresh pages.

use super::device::{DataDirection, RawStatus};
use super::sense::Sense;
use crate::kernel_ext::misc::PinnedUserBuf;
use crate::kernel_ext::pages::Pages;
use crate::kernel_ext::sg::SgList;
use kernel::{prelude::*, sync::Arc};

/// What a logical unit is asked to lend memory for.
pub(crate) struct BufferRequest<'a> {
    pub(crate) cdb: &'a [u8],
    /// Bytes of data the transport expects to move.
    pub(crate) len: usize,
    pub(crate) direction: DataDirection,
    /// [`super::device::NexusInfo::id`] of the command's I_T_L nexus.
    pub(crate) nexus: u64,
    /// The command's tag on that nexus.
    pub(crate) tag: u32,
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

/// Where a command's data lives.
enum Memory {
    Own(Pages),
    Lent { buf: LentBuffer, len: usize },
}

/// A command's data buffer of a fixed length.
pub(crate) struct CmdBuffer {
    memory: Memory,
    /// The logical unit ended the command while lending (its handler
    /// refused it, timed out or replied with garbage).
    pub(crate) refused: Option<LendRefused>,
}

impl CmdBuffer {
    /// `len` bytes of new pages (may sleep).
    pub(crate) fn own(len: usize) -> Result<Self> {
        Ok(Self {
            memory: Memory::Own(Pages::alloc(len)?),
            refused: None,
        })
    }

    /// The first `len` bytes of `buf`; `None` when it holds fewer.
    pub(crate) fn lent(buf: LentBuffer, len: usize) -> Option<Self> {
        if buf.id().capacity < len {
            return None;
        }
        Some(Self {
            memory: Memory::Lent { buf, len },
            refused: None,
        })
    }

    /// The buffer as a scatterlist of exactly its length.
    pub(crate) fn sg(&mut self) -> SgList<'_> {
        match &mut self.memory {
            Memory::Own(pages) => pages.sg(),
            Memory::Lent { buf, len } => match buf.buf.as_mut() {
                Some(b) => b.sg().limited(*len),
                None => SgList::empty(),
            },
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
            Memory::Lent { buf, .. } => Some(buf.id()),
        }
    }

    /// Tells the lender how the command ended.
    pub(crate) fn executed(&mut self, data_in: usize, status: u8) {
        if let Memory::Lent { buf, .. } = &mut self.memory {
            buf.ended = Some((data_in, status));
        }
    }
}
