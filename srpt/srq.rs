// SPDX-License-Identifier: GPL-2.0

//! A device's shared receive queue and the credits it backs.
//!
//! Each request an initiator sends takes a credit, and lands in a unit of
//! the queue. A request that finds the queue empty is refused with
//! receiver not ready, and then iWARP fails the connection (it has no
//! such retry), and rxe, in this kernel, does not recover either (each
//! such NAK was followed by the initiator reconnecting). So the queue
//! never promises more than it has: the credits of all the channels on it
//! add up to at most its units, and each login takes at most half of
//! those not yet promised (so that an initiator's further channels, and
//! other initiators, get some).

use super::login::srq_credits;
use crate::kernel_ext::rdma_channel::Srq;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::{prelude::*, sync::Arc};

/// A device's shared receive queue, and the units of it not promised to
/// a channel.
#[derive(Clone)]
pub(super) struct DeviceSrq {
    pub(super) queue: Srq,
    budget: Arc<Budget>,
}

struct Budget {
    free: AtomicU32,
}

impl DeviceSrq {
    pub(super) fn new(queue: Srq) -> Result<Self> {
        let budget = Arc::new(
            Budget {
                free: AtomicU32::new(queue.size()),
            },
            GFP_KERNEL,
        )?;
        Ok(Self { queue, budget })
    }

    /// Credits for a new channel that wants `want` (see
    /// [`srq_credits`]); none when too few units are left.
    pub(super) fn credits(&self, want: u32) -> Option<Credits> {
        let mut n = 0;
        self.budget
            .free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                n = srq_credits(free, want)?;
                Some(free - n)
            })
            .ok()?;
        Some(Credits {
            budget: self.budget.clone(),
            n,
        })
    }
}

/// Units of a device's shared receive queue promised to one channel, given
/// back when this drops (once the channel is destroyed: its requests in
/// flight have flushed back to the queue).
pub(super) struct Credits {
    budget: Arc<Budget>,
    n: u32,
}

impl Credits {
    pub(super) fn count(&self) -> u32 {
        self.n
    }
}

impl Drop for Credits {
    fn drop(&mut self) {
        self.budget.free.fetch_add(self.n, Ordering::AcqRel);
    }
}
