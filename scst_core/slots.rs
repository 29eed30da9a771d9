// SPDX-License-Identifier: GPL-2.0

//! A small unordered collection with removal, for the object registries.
//!
//! The `KVec` of 6.12 can only grow, so removed entries leave a free slot
//! that the next insertion reuses. Registries hold tens of objects and are
//! touched only by management commands, so linear scans are fine.

use kernel::{alloc::flags::GFP_KERNEL, alloc::KVec, prelude::*};

pub(crate) struct Slots<T> {
    slots: KVec<Option<T>>,
}

impl<T> Slots<T> {
    pub(crate) const fn new() -> Self {
        Self { slots: KVec::new() }
    }

    /// Stores `value` in a free slot, growing only when none is free.
    pub(crate) fn insert(&mut self, value: T) -> Result {
        if let Some(slot) = self.slots.as_mut_slice().iter_mut().find(|s| s.is_none()) {
            *slot = Some(value);
            return Ok(());
        }
        self.slots.push(Some(value), GFP_KERNEL)?;
        Ok(())
    }

    /// The first entry for which `pred` holds.
    pub(crate) fn find(&self, pred: impl Fn(&T) -> bool) -> Option<&T> {
        self.iter().find(|v| pred(v))
    }

    /// Removes and returns the first entry for which `pred` holds.
    pub(crate) fn remove(&mut self, pred: impl Fn(&T) -> bool) -> Option<T> {
        self.slots
            .as_mut_slice()
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(&pred))
            .and_then(Option::take)
    }

    /// Removes and returns any entry, for tearing everything down.
    pub(crate) fn take_any(&mut self) -> Option<T> {
        self.slots.as_mut_slice().iter_mut().find_map(Option::take)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.as_slice().iter().flatten()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.as_mut_slice().iter_mut().flatten()
    }
}
