// SPDX-License-Identifier: GPL-2.0

//! Removal for the `KVec` of 6.12, which can only grow.

use core::ptr;
use kernel::alloc::{Allocator, Vec};

/// Shrinking operations on a kernel vector.
pub(crate) trait VecExt<T> {
    /// Removes and returns the last element.
    fn pop(&mut self) -> Option<T>;

    /// Removes element `index`, replacing it with the last (order is not
    /// kept); `None` if out of range.
    fn swap_remove(&mut self, index: usize) -> Option<T>;

    /// Removes element `index`, keeping the order of the others; `None`
    /// if out of range.
    fn remove_ordered(&mut self, index: usize) -> Option<T>;

    /// Drops every element, last first.
    fn clear(&mut self);
}

impl<T, A: Allocator> VecExt<T> for Vec<T, A> {
    fn pop(&mut self) -> Option<T> {
        let len = self.len();
        if len == 0 {
            return None;
        }
        // SAFETY: `len - 1 < len`, so the element is initialized. Shrinking
        // the length first hands its ownership to us: the vector will not
        // drop or read it again, and we read it exactly once.
        unsafe {
            self.set_len(len - 1);
            Some(ptr::read(self.as_ptr().add(len - 1)))
        }
    }

    fn swap_remove(&mut self, index: usize) -> Option<T> {
        let len = self.len();
        if index >= len {
            return None;
        }
        self.as_mut_slice().swap(index, len - 1);
        self.pop()
    }

    fn remove_ordered(&mut self, index: usize) -> Option<T> {
        if index >= self.len() {
            return None;
        }
        self.as_mut_slice().get_mut(index..)?.rotate_left(1);
        self.pop()
    }

    fn clear(&mut self) {
        while self.pop().is_some() {}
    }
}
