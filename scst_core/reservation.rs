// SPDX-License-Identifier: GPL-2.0

//! Reservations as the core applies them to every device: PERSISTENT
//! RESERVE IN/OUT, RESERVE/RELEASE (6) and (10), and RESERVATION CONFLICT
//! for the commands a reservation held by another I_T nexus refuses. The
//! rules are `pr.rs`'s; this file gives them each command's I_T nexus and
//! carries out what they decide (unit attentions, PREEMPT AND ABORT).
//!
//! # Contexts and locks
//!
//! A device's reservation state sits under a spinlock, taken for every
//! command only while a reservation is held (`DeviceState::pr_held`), so
//! the check may run in a receive loop. PERSISTENT RESERVE OUT runs on a
//! core worker: PREEMPT AND ABORT waits there for the preempted nexuses'
//! executing commands, and a state with APTPL set is saved there. Lock order: the reservation lock, then the
//! device's nexus list, then a nexus' unit attention queue.

use super::buffer::parameter_list;
use super::cdb::{Cdb, Out};
use super::device::{DataDirection, DeviceState};
use super::pr::{self, Nexus, NoRoom, Notice, Refused, Registrant, RegistrantStore, SliceWriter};
use super::sense::{self, SenseFormat};
use super::session::{status, Response, TgtDev};
use crate::kernel_ext::file::{BackingFile, OpenOptions};
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::misc::sleep_ms;
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::sg::SgList;
use core::sync::atomic::Ordering;
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    fmt,
    prelude::*,
    str::{CStr, CString},
    sync::Arc,
};

/// A device's reservation state.
pub(crate) type DevReservations = pr::Reservations<KVec<Registrant>>;

impl RegistrantStore for KVec<Registrant> {
    fn all(&self) -> &[Registrant] {
        self.as_slice()
    }

    fn all_mut(&mut self) -> &mut [Registrant] {
        self.as_mut_slice()
    }

    fn add(&mut self, r: Registrant) -> core::result::Result<(), NoRoom> {
        // Under the reservation spinlock.
        self.push(r, GFP_ATOMIC).map_err(|_| NoRoom)
    }

    fn remove_at(&mut self, i: usize) {
        let _ = self.remove_ordered(i);
    }
}

/// Longest PERSISTENT RESERVE OUT parameter list taken: the basic list
/// and TransportIDs for SPEC_I_PT.
const MAX_PROUT_PARAMETERS: usize = 64 * 1024;

/// Longest PERSISTENT RESERVE IN parameter data built (the allocation
/// length is 16 bits).
const MAX_PRIN_DATA: usize = 64 * 1024;

/// How long PREEMPT AND ABORT waits for the preempted nexuses' executing
/// commands, and how often it looks.
const ABORT_WAIT_MS: u32 = 30_000;
const ABORT_POLL_MS: u32 = 10;

/// What the core does with a command before its logical unit sees it.
pub(super) enum Intercept {
    /// The core answered it.
    Answer(Response),
    /// It must run on a worker (PERSISTENT RESERVE OUT).
    WouldBlock,
    /// The logical unit executes it.
    Pass,
}

/// The I_T nexus of `tgt_dev`'s commands, as reservations know it.
pub(super) fn nexus_of(tgt_dev: &TgtDev) -> Nexus<'_> {
    Nexus {
        port: &tgt_dev.port,
        rel_tgt_id: tgt_dev.target.rel_tgt_id.load(Ordering::Relaxed),
    }
}

fn refused(r: Refused, format: SenseFormat) -> Response {
    match r {
        Refused::Conflict => Response::status(status::RESERVATION_CONFLICT),
        Refused::Check(s) => Response::check_condition(s, format),
    }
}

/// Reservation handling of a command of `tgt_dev`, in EXEC (a worker, or
/// the submitting context when `nowait`).
pub(super) fn intercept(
    tgt_dev: &Arc<TgtDev>,
    cdb_bytes: &[u8],
    data: &mut SgList<'_>,
    direction: DataDirection,
    nowait: bool,
) -> Intercept {
    let cdb = Cdb(cdb_bytes);
    let dev = &tgt_dev.dev;
    let id = tgt_dev.id();
    let nexus = nexus_of(tgt_dev);
    let format = || dev.lu.sense_format();
    match cdb.opcode() {
        pr::op::PERSISTENT_RESERVE_IN => Intercept::Answer(persistent_reserve_in(dev, cdb, data)),
        pr::op::PERSISTENT_RESERVE_OUT if nowait => Intercept::WouldBlock,
        pr::op::PERSISTENT_RESERVE_OUT => {
            Intercept::Answer(persistent_reserve_out(tgt_dev, cdb, data, direction))
        }
        pr::op::RESERVE_6 | pr::op::RESERVE_10 => {
            let mut state = dev.pr.lock();
            let r = state.reserve_spc2(cdb, id);
            dev.pr_held.store(state.any_held(), Ordering::Release);
            Intercept::Answer(match r {
                Ok(()) => Response::status(status::GOOD),
                Err(e) => refused(e, format()),
            })
        }
        pr::op::RELEASE_6 | pr::op::RELEASE_10 => {
            let mut state = dev.pr.lock();
            let r = state.release_spc2(cdb, &nexus, id);
            dev.pr_held.store(state.any_held(), Ordering::Release);
            Intercept::Answer(match r {
                Ok(()) => Response::status(status::GOOD),
                Err(e) => refused(e, format()),
            })
        }
        _ if dev.pr_held.load(Ordering::Acquire) && dev.pr.lock().check(cdb, &nexus, id) => {
            Intercept::Answer(Response::status(status::RESERVATION_CONFLICT))
        }
        _ => Intercept::Pass,
    }
}

/// PERSISTENT RESERVE IN: built under the reservation lock into a buffer
/// taken before it, as long as the allocation length asks.
fn persistent_reserve_in(dev: &DeviceState, cdb: Cdb<'_>, data: &mut SgList<'_>) -> Response {
    let format = dev.lu.sense_format();
    let alloc_len = usize::from(cdb.be16(7)).min(MAX_PRIN_DATA);
    let mut buf = KVec::new();
    // Possibly in the submitting context, which may be atomic.
    if buf.extend_with(alloc_len, 0u8, GFP_ATOMIC).is_err() {
        return Response::check_condition(sense::INTERNAL_TARGET_FAILURE, format);
    }
    let mut out = Out::new(&mut buf);
    let built = dev.pr.lock().persistent_reserve_in(cdb, &mut out);
    if let Err(s) = built {
        return Response::check_condition(s, format);
    }
    let n = out.len().min(alloc_len);
    let copied = data.copy_from_slice(0, buf.get(..n).unwrap_or(&[]));
    Response::data_in(copied, n)
}

/// PERSISTENT RESERVE OUT, on a worker. Service actions run one at a
/// time per device, on a copy of its state: with APTPL set the copy is
/// saved first, and taken only once saved, so that a state the initiator
/// was told about is the one that survives power loss, and a failed save
/// changes nothing. Unit attentions and aborts follow the taking.
fn persistent_reserve_out(
    tgt_dev: &Arc<TgtDev>,
    cdb: Cdb<'_>,
    data: &mut SgList<'_>,
    direction: DataDirection,
) -> Response {
    let dev = &tgt_dev.dev;
    let format = dev.lu.sense_format();
    let failure = || Response::check_condition(sense::INTERNAL_TARGET_FAILURE, format);
    // What arrived of the list: the rules refuse a short one.
    let params = match parameter_list(data, direction, cdb.be32(5) as usize, MAX_PROUT_PARAMETERS) {
        Ok(p) => p,
        Err(s) => return Response::check_condition(s, format),
    };
    let params = params.as_slice();

    let _serialized = dev.pr_out.lock();
    let Ok(mut copy) = copy_of(dev) else {
        return failure();
    };
    let was_persistent = copy.aptpl;
    let nexus = nexus_of(tgt_dev);
    let mut notices: KVec<(Registrant, Notice)> = KVec::new();
    let mut lost_notices = false;
    let outcome = copy.persistent_reserve_out(cdb, params, &nexus, &mut |reg, notice| {
        lost_notices |= notices.push((*reg, notice), GFP_KERNEL).is_err();
    });
    let done = match outcome {
        Ok(done) => done,
        Err(e) => return refused(e, format),
    };
    if done.changed && (was_persistent || copy.aptpl) {
        if let Err(e) = save(dev, &copy) {
            pr_peer!(
                pr_err,
                "{}: cannot save persistent reservations to {}: {}; the command changed nothing\n",
                &*dev.name,
                &*dev.pr_file,
                errno_text(e)
            );
            return failure();
        }
    }
    {
        let mut state = dev.pr.lock();
        state.take_persistent(&mut copy);
        dev.pr_held.store(state.any_held(), Ordering::Release);
    }
    if lost_notices {
        pr_peer!(
            pr_warn,
            "{}: out of memory: unit attentions or aborts of a PERSISTENT RESERVE OUT lost\n",
            &*dev.name
        );
    }
    carry_out(tgt_dev, &notices);
    Response::status(status::GOOD)
}

/// The name of an error's errno, for the log.
fn errno_text(e: Error) -> &'static str {
    super::mgmt::errno_name(e.to_errno()).unwrap_or("error")
}

/// A copy of `dev`'s reservation state, with room for a few more
/// registrations (more are allocated as needed, outside any lock).
fn copy_of(dev: &DeviceState) -> Result<DevReservations> {
    let n = dev.pr.lock().registrants().len();
    let mut copy = DevReservations::new(KVec::with_capacity(n + 4, GFP_KERNEL)?, true);
    let state = dev.pr.lock();
    if state.registrants().len() > n + 4 {
        // Only PERSISTENT RESERVE OUT adds registrations, and the caller
        // holds its lock.
        return Err(EAGAIN);
    }
    state.copy_to(&mut copy).map_err(|_| ENOMEM)?;
    Ok(copy)
}

/// Delivers the unit attentions and aborts a service action decided, to
/// the I_T_L nexuses of each registration named (the sender's excepted).
fn carry_out(tgt_dev: &Arc<TgtDev>, notices: &[(Registrant, Notice)]) {
    let dev = &tgt_dev.dev;
    let mut fenced: KVec<Arc<TgtDev>> = KVec::new();
    let mut unfenced = false;
    {
        let tgt_devs = dev.tgt_devs.lock();
        for (reg, notice) in notices {
            for t in tgt_devs.iter() {
                if Arc::ptr_eq(t, tgt_dev) || !reg.is_of(&nexus_of(t)) {
                    continue;
                }
                match notice {
                    Notice::Ua(s) => t.queue_ua(*s),
                    Notice::Abort => {
                        unfenced |= fenced.push(t.clone(), GFP_ATOMIC).is_err();
                    }
                }
            }
        }
    }
    if unfenced {
        pr_peer!(
            pr_warn,
            "{}: PREEMPT AND ABORT: out of memory, some preempted commands not aborted\n",
            &*dev.name
        );
    }
    if !fenced.is_empty() {
        abort_and_wait(dev, &fenced);
    }
}

/// Writes `state` to the device's reservation file: first to its backup
/// (`<file>.1`), then to the file itself, each synced, so that one of
/// them is whole whenever power fails.
fn save(dev: &DeviceState, state: &DevReservations) -> Result {
    let mut buf = KVec::new();
    buf.extend_with(state.saved_len_bound(), 0u8, GFP_KERNEL)?;
    let mut w = SliceWriter::new(&mut buf);
    state.save(&mut w).map_err(|_| ENOSPC)?;
    let text = w.written();
    let backup = CString::try_from_fmt(fmt!("{}.1", &*dev.pr_file))?;
    for path in [&*backup, &*dev.pr_file] {
        let file = BackingFile::create(path)?;
        let n = file.write_at(text, 0)?;
        if n != text.len() {
            return Err(EIO);
        }
        file.sync_range(0, text.len() as u64)?;
    }
    Ok(())
}

/// Largest reservation file read.
const MAX_SAVED_LEN: usize = 1 << 20;

/// Restores `dev`'s persistent reservations from its reservation file, or
/// from the backup if the file is damaged, when they were saved with
/// APTPL set (a new device, before it has any nexus).
pub(crate) fn load_saved(dev: &DeviceState) {
    let backup = match CString::try_from_fmt(fmt!("{}.1", &*dev.pr_file)) {
        Ok(b) => b,
        Err(_) => return,
    };
    for path in [&*dev.pr_file, &*backup] {
        let (buf, n) = match read_file(path) {
            Ok(t) => t,
            // No file: nothing was saved.
            Err(e) if e == ENOENT => continue,
            Err(e) => {
                pr_warn!("{}: cannot read {}: {}\n", &*dev.name, path, errno_text(e));
                continue;
            }
        };
        let text = buf.get(..n).unwrap_or(&[]);
        let mut state = dev.pr.lock();
        match state.load(text) {
            Ok(restored) => {
                let n = state.registrants().len();
                drop(state);
                if restored {
                    pr_info!(
                        "{}: restored {} persistent reservation registrations from {}\n",
                        &*dev.name,
                        n,
                        path
                    );
                }
                return;
            }
            Err(e) => {
                drop(state);
                pr_warn!("{}: {} not taken: {:?}\n", &*dev.name, path, e);
            }
        }
    }
}

/// The contents of file `path` and their length.
fn read_file(path: &CStr) -> Result<(KVec<u8>, usize)> {
    let file = BackingFile::open(
        path,
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )?;
    let len = usize::try_from(file.size()).map_err(|_| EFBIG)?;
    if len > MAX_SAVED_LEN {
        return Err(EFBIG);
    }
    let mut text = KVec::new();
    text.extend_with(len, 0u8, GFP_KERNEL)?;
    let n = file.read_at(&mut text, 0)?;
    Ok((text, n))
}

/// PREEMPT AND ABORT's fence: the preempted nexuses' commands that have
/// not executed never will (they end as aborted by another nexus, with
/// TASK ABORTED where TAS is set, else unanswered, with COMMANDS CLEARED
/// BY ANOTHER INITIATOR queued); those executing are waited for, so
/// that nothing of theirs lands after the PREEMPT AND ABORT completes.
/// What they send next conflicts with the reservation, or, where the
/// reservation leaves them access, runs as any registrant's would.
fn abort_and_wait(dev: &DeviceState, fenced: &[Arc<TgtDev>]) {
    let tas = dev.lu.task_aborted_status();
    for t in fenced {
        // Without TAS their commands end unanswered: the nexuses hear why,
        // as from CLEAR TASK SET (SPC-4 5.13.11.2.6, SAM-5 7.3).
        if !tas && t.active.load(Ordering::Relaxed) > 0 {
            t.queue_ua(sense::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
        }
        t.abort_epoch.fetch_add(1, Ordering::Release);
    }
    dev.release_aborted();
    let mut waited = 0;
    while fenced
        .iter()
        .any(|t| t.executing.load(Ordering::Acquire) != 0)
    {
        if waited >= ABORT_WAIT_MS {
            pr_peer!(
                pr_warn,
                "{}: PREEMPT AND ABORT: preempted commands still executing after {} ms\n",
                &*dev.name,
                ABORT_WAIT_MS
            );
            return;
        }
        sleep_ms(ABORT_POLL_MS);
        waited += ABORT_POLL_MS;
    }
}
