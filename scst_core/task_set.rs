// SPDX-License-Identifier: GPL-2.0

//! The task set of a logical unit (SAM-5 8.6 and 5.3): which received
//! command may start, by task attribute, and whether a new one fits.
//!
//! Pure logic over caller-provided slot storage, so that the kernel (a
//! `KVec` under the device's lock) and host tests share it.
//!
//! - SIMPLE starts once every older HEAD OF QUEUE and ORDERED command has
//!   ended; ORDERED (and ACA, which this target treats alike: it supports no
//!   ACA condition) once every older command has ended; HEAD OF QUEUE at once.
//! - A command that finds the device's task set, or its own I_T_L nexus'
//!   share of it, full is refused: TASK SET FULL when the nexus has commands
//!   in the task set (their completion frees room), BUSY when it has none.

use core::ops::DerefMut;

/// Task attribute of a command (SAM-5 8.6).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TaskAttr {
    Simple,
    Ordered,
    HeadOfQueue,
    Aca,
}

impl TaskAttr {
    /// Decodes the 3-bit ATTR field that iSCSI and SRP carry (untagged is
    /// run as SIMPLE; reserved values are `None`).
    pub fn from_wire(code: u8) -> Option<Self> {
        match code {
            0 | 1 => Some(Self::Simple),
            2 => Some(Self::Ordered),
            3 => Some(Self::HeadOfQueue),
            4 => Some(Self::Aca),
            _ => None,
        }
    }
}

/// COMPARE AND WRITE and ORWRITE(16), which the task set makes atomic.
const COMPARE_AND_WRITE: u8 = 0x89;
const ORWRITE_16: u8 = 0x8b;

impl TaskAttr {
    /// The attribute a command of `opcode` runs with: COMPARE AND WRITE
    /// (and ORWRITE, a read-modify-write too) runs ORDERED, whatever it
    /// was sent with (HEAD OF QUEUE included:
    /// the data comes first), so that no other command of the device runs
    /// between its compare and its write (SBC-4 5.3 requires it atomic
    /// against every other write to its range). The one exception left is
    /// a HEAD OF QUEUE write sent meanwhile, which starts at once by
    /// definition.
    pub fn for_opcode(self, opcode: u8) -> Self {
        match opcode {
            COMPARE_AND_WRITE | ORWRITE_16 => TaskAttr::Ordered,
            _ => self,
        }
    }
}

/// Why a command was not accepted into the task set.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Refusal {
    /// TASK SET FULL status: the nexus has commands in the task set.
    TaskSetFull,
    /// BUSY status: the nexus has none, yet there is no room.
    Busy,
}

/// A command's place in the task set, from admission to end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ticket {
    slot: u16,
    seq: u64,
}

/// One entry of the task set's storage.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// Arrival order of the command in it; 0 when free.
    seq: u64,
    attr: TaskAttr,
    /// Next free slot (free list), `NO_SLOT` at the end.
    next_free: u16,
}

const NO_SLOT: u16 = u16::MAX;

/// Largest storage a task set uses (slot indices are `u16`).
pub const MAX_SLOTS: usize = NO_SLOT as usize;

impl Slot {
    /// A free slot, to fill the storage with before [`TaskSet::new`].
    pub const FREE: Slot = Slot {
        seq: 0,
        attr: TaskAttr::Simple,
        next_free: NO_SLOT,
    };
}

/// The commands of one logical unit that are accepted and not yet ended.
///
/// # Invariants
///
/// `free` heads a list through `next_free` of exactly the slots with
/// `seq == 0`; `used` counts the others; `not_simple` counts the used slots
/// whose attribute is not SIMPLE.
pub struct TaskSet<S> {
    slots: S,
    free: u16,
    used: usize,
    not_simple: usize,
    next_seq: u64,
}

impl<S: DerefMut<Target = [Slot]>> TaskSet<S> {
    /// A task set holding at most `slots.len()` (capped at [`MAX_SLOTS`])
    /// commands.
    pub fn new(mut slots: S) -> Self {
        let s = &mut *slots;
        let n = s.len().min(MAX_SLOTS);
        for (i, slot) in s.iter_mut().enumerate().take(n) {
            *slot = Slot::FREE;
            slot.next_free = if i + 1 < n { (i + 1) as u16 } else { NO_SLOT };
        }
        Self {
            slots,
            free: if n > 0 { 0 } else { NO_SLOT },
            used: 0,
            not_simple: 0,
            next_seq: 1,
        }
    }

    /// Commands in the task set.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether the task set is empty.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Accepts a newly received command of a nexus that has `nexus_active`
    /// commands in the task set and may have `nexus_limit`.
    pub fn admit(
        &mut self,
        attr: TaskAttr,
        nexus_active: u32,
        nexus_limit: u32,
    ) -> Result<Ticket, Refusal> {
        let refusal = if nexus_active > 0 {
            Refusal::TaskSetFull
        } else {
            Refusal::Busy
        };
        if nexus_active >= nexus_limit || self.free == NO_SLOT {
            return Err(refusal);
        }
        let index = self.free;
        let seq = self.next_seq;
        let slot = self.slots.get_mut(usize::from(index)).ok_or(refusal)?;
        self.free = slot.next_free;
        *slot = Slot {
            seq,
            attr,
            next_free: NO_SLOT,
        };
        self.next_seq += 1;
        self.used += 1;
        if attr != TaskAttr::Simple {
            self.not_simple += 1;
        }
        Ok(Ticket { slot: index, seq })
    }

    /// Whether the command of `ticket` may start now.
    pub fn may_start(&self, ticket: Ticket) -> bool {
        let Some(own) = self.slot_of(ticket) else {
            return true;
        };
        match own.attr {
            TaskAttr::HeadOfQueue => true,
            // The common case: only SIMPLE commands about, nothing to scan.
            TaskAttr::Simple if self.not_simple == 0 => true,
            TaskAttr::Simple => !self
                .slots
                .iter()
                .any(|s| s.seq != 0 && s.seq < ticket.seq && s.attr != TaskAttr::Simple),
            _ => !self.slots.iter().any(|s| s.seq != 0 && s.seq < ticket.seq),
        }
    }

    /// Ends the command of `ticket`, freeing its slot. Returns whether a
    /// command waiting to start may now be able to (a waiter exists only
    /// behind a non-SIMPLE command, or as one).
    pub fn end(&mut self, ticket: Ticket) -> bool {
        let free = self.free;
        let Some(slot) = self.slots.get_mut(usize::from(ticket.slot)) else {
            return false;
        };
        if slot.seq != ticket.seq {
            return false;
        }
        let was_simple = slot.attr == TaskAttr::Simple;
        *slot = Slot::FREE;
        slot.next_free = free;
        self.free = ticket.slot;
        self.used -= 1;
        if !was_simple {
            self.not_simple -= 1;
        }
        // Only an ORDERED/ACA waiter waits behind a SIMPLE command.
        !was_simple || self.not_simple > 0
    }

    fn slot_of(&self, ticket: Ticket) -> Option<&Slot> {
        self.slots
            .get(usize::from(ticket.slot))
            .filter(|s| s.seq == ticket.seq)
    }
}
