// SPDX-License-Identifier: GPL-2.0

//! SANITIZE for vdisk devices: OVERWRITE and BLOCK ERASE run as a sanitize
//! operation of the device's own, on a workqueue of its own, past the
//! command that started it (SBC-4 4.11).
//!
//! While one runs, every command but INQUIRY, REPORT LUNS and REQUEST
//! SENSE ends with SANITIZE IN PROGRESS. Task management and the loss of
//! the initiator's nexus end the SANITIZE command (it was aborted), never
//! the operation: SBC-4 has it survive resets. Only deleting the device
//! (or unloading the module) stops it, between two chunks, so no wait is
//! unbounded. An operation that fails leaves the medium in sanitize
//! failure mode until a sanitize completes or EXIT FAILURE MODE.

use super::sbc::SanitizeState;
use crate::kernel_ext::{file::BackingFile, wq::OwnedQueue};
use crate::scst_core::{
    cmd::Deferral,
    sense::{self, Sense},
};
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{
    alloc::flags::GFP_KERNEL,
    c_str, new_spinlock, new_work,
    prelude::*,
    sync::{Arc, SpinLock},
    workqueue::{impl_has_work, Work, WorkItem},
};

/// Bytes written at once by an OVERWRITE pass: between two chunks the
/// operation looks for a stop and for its command's abort.
const CHUNK: usize = 256 * 1024;

/// What one sanitize operation does.
pub(super) enum Job {
    /// Passes of `block` (a logical block of the repeated pattern) over the
    /// whole medium, inverted every other pass with `invert`.
    Overwrite {
        block: KVec<u8>,
        invert: bool,
        passes: u8,
    },
    /// Deallocate every block.
    BlockErase,
}

struct State {
    phase: SanitizeState,
    /// The SANITIZE command without IMMED, which ends with the operation.
    waiter: Option<Deferral>,
}

#[pin_data]
struct Shared {
    #[pin]
    state: SpinLock<State>,
    /// The device is going away: the operation stops at the next chunk.
    stop: AtomicBool,
}

impl Shared {
    /// The operation is over (or never started): the device is in
    /// `phase`, and the waiting command, if any, ends as `ok` says.
    fn finish(&self, phase: SanitizeState, ok: bool) {
        let waiter = {
            let mut s = self.state.lock();
            s.phase = phase;
            s.waiter.take()
        };
        if let Some(w) = waiter {
            w.complete(ok);
        }
    }

    /// Ends the waiting command, if task management aborted it.
    fn release_aborted_waiter(&self) {
        let mut s = self.state.lock();
        if s.waiter.as_ref().is_some_and(|w| w.aborted()) {
            if let Some(w) = s.waiter.take() {
                drop(s);
                w.complete(false);
            }
        }
    }
}

/// One sanitize operation, as its work runs it. A work type of its own:
/// lockdep tells its runs apart from every other work's (the device's
/// deletion waits for it with the registry lock held, which the operation
/// never takes).
#[pin_data]
struct Operation {
    #[pin]
    work: Work<Operation>,
    shared: Arc<Shared>,
    /// Taken by the run.
    #[pin]
    job: SpinLock<Option<Job>>,
    file: Option<Arc<BackingFile>>,
    size: u64,
}

impl_has_work! {
    impl HasWork<Self> for Operation { self.work }
}

impl WorkItem for Operation {
    type Pointer = Arc<Operation>;

    fn run(this: Arc<Operation>) {
        let job = this.job.lock().take();
        let shared = &this.shared;
        let ok = job.is_some_and(|job| run(shared, job, this.file.as_deref(), this.size));
        if !ok && !shared.stop.load(Ordering::Relaxed) {
            pr_err!("scst: a sanitize operation failed: the medium is in failure mode\n");
        }
        let phase = if ok {
            SanitizeState::Idle
        } else {
            SanitizeState::Failed
        };
        shared.finish(phase, ok);
    }
}

/// A device's sanitize operations.
pub(super) struct Sanitizer {
    shared: Arc<Shared>,
    /// Dropped after `shared.stop` is set (see `Drop`): destroying it
    /// waits for a running operation, which then stops at once.
    queue: OwnedQueue,
}

impl Sanitizer {
    pub(super) fn new() -> Result<Self> {
        let shared = Arc::pin_init(
            pin_init!(Shared {
                state <- new_spinlock!(State {
                    phase: SanitizeState::Idle,
                    waiter: None,
                }),
                stop: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )?;
        Ok(Self {
            shared,
            queue: OwnedQueue::new(c_str!("scst_sanitize"))?,
        })
    }

    /// Where the device's sanitize operation is, for the commands that
    /// arrive.
    pub(super) fn state(&self) -> SanitizeState {
        self.shared.state.lock().phase
    }

    /// EXIT FAILURE MODE: the medium is usable again (what the failed
    /// operation left on it stays).
    pub(super) fn exit_failure_mode(&self) -> Result<(), Sense> {
        let mut s = self.shared.state.lock();
        match s.phase {
            SanitizeState::Failed => {
                s.phase = SanitizeState::Idle;
                Ok(())
            }
            SanitizeState::InProgress => Err(sense::SANITIZE_IN_PROGRESS),
            SanitizeState::Idle => Err(Sense::invalid_cdb_field(1, Some(4))),
        }
    }

    /// Starts `job` over `size` bytes of `file` (`None`: nullio, which has
    /// nothing to erase). `waiter`, the SANITIZE command without IMMED,
    /// ends with the operation; with IMMED it is `None`.
    pub(super) fn start(
        &self,
        job: Job,
        file: Option<Arc<BackingFile>>,
        size: u64,
        waiter: Option<Deferral>,
    ) -> Result<(), Sense> {
        {
            let mut s = self.shared.state.lock();
            if s.phase == SanitizeState::InProgress {
                drop(s);
                if let Some(w) = waiter {
                    w.complete(false);
                }
                return Err(sense::SANITIZE_IN_PROGRESS);
            }
            s.phase = SanitizeState::InProgress;
            s.waiter = waiter;
        }
        let operation = Arc::pin_init(
            pin_init!(Operation {
                work <- new_work!("scst::vdisk::sanitize"),
                shared: self.shared.clone(),
                job <- new_spinlock!(Some(job)),
                file,
                size,
            }),
            GFP_KERNEL,
        );
        let spawned = match operation {
            Ok(op) => self.queue.queue().enqueue(op).map_err(|_| ()),
            Err(_) => Err(()),
        };
        if spawned.is_err() {
            self.shared.finish(SanitizeState::Idle, false);
            return Err(sense::INTERNAL_TARGET_FAILURE);
        }
        Ok(())
    }
}

impl Drop for Sanitizer {
    fn drop(&mut self) {
        // Before `queue` drops and waits for the operation.
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `job`; whether it completed.
fn run(shared: &Shared, job: Job, file: Option<&BackingFile>, size: u64) -> bool {
    let Some(file) = file else {
        return true;
    };
    match job {
        Job::BlockErase => file.punch_hole(0, size).is_ok() && file.sync_range(0, u64::MAX).is_ok(),
        Job::Overwrite {
            block,
            invert,
            passes,
        } => {
            let Some(chunk) = chunk_of(&block, false) else {
                return false;
            };
            let inverted = if invert { chunk_of(&block, true) } else { None };
            for pass in 0..passes {
                let data = match (&inverted, pass % 2) {
                    (Some(inv), 1) => inv,
                    _ => &chunk,
                };
                let mut pos = 0u64;
                while pos < size {
                    if shared.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    shared.release_aborted_waiter();
                    let n = data.len().min((size - pos) as usize);
                    match data.get(..n).map(|d| file.write_at(d, pos)) {
                        Some(Ok(w)) if w > 0 => pos += w as u64,
                        _ => return false,
                    }
                }
            }
            file.sync_range(0, u64::MAX).is_ok()
        }
    }
}

/// [`CHUNK`] bytes of `block` repeated (each byte inverted with `invert`).
fn chunk_of(block: &[u8], invert: bool) -> Option<KVec<u8>> {
    let mut chunk = KVec::with_capacity(CHUNK, GFP_KERNEL).ok()?;
    while chunk.len() + block.len() <= CHUNK {
        for &b in block {
            chunk.push(if invert { !b } else { b }, GFP_KERNEL).ok()?;
        }
    }
    (!chunk.is_empty()).then_some(chunk)
}
