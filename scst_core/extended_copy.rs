// SPDX-License-Identifier: GPL-2.0

//! The copy manager: EXTENDED COPY (LID1) and RECEIVE COPY RESULTS for
//! logical units that can be copy targets (`LogicalUnit::copy_target`).
//! `xcopy.rs` decodes the lists; here each CSCD descriptor is matched
//! with a LUN of the command's own session by its NAA designator (so a
//! copy reaches the devices of that target the initiator may see), and
//! the blocks move through the logical units' own READ (16) and WRITE
//! (16), one bounded chunk at a time, on the core worker that runs the
//! command.
//!
//! Each copy target's I_T_L nexus is the session's: its ALUA state,
//! reservations and read-only flag apply to the copy's reads and writes
//! as they would to the initiator's own.

use super::alua::PortView;
use super::buffer::parameter_list;
use super::cdb::{Cdb, Out};
use super::device::{CopyTargetInfo, DataDirection, ExecCmd, Executed};
use super::sense::{self, key, Sense};
use super::session::{status, Response, TgtDev};
use super::xcopy::{self, CopyList, CopyStatus, Segment};
use crate::kernel_ext::pages::Pages;
use crate::kernel_ext::sg::SgList;
use core::sync::atomic::Ordering;
use kernel::sync::Arc;

/// Bytes moved per READ/WRITE pair.
const CHUNK_BYTES: usize = 1 << 20;

/// Copies whose results a nexus holds for RECEIVE COPY RESULTS.
pub(crate) const HELD_RESULTS: usize = 4;

/// The copy commands, as the core answers them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum CopyCommand {
    /// EXTENDED COPY (LID1): runs on a worker.
    Copy,
    /// RECEIVE COPY RESULTS: answered at once.
    Results,
}

/// Whether `cdb` is a copy command the core answers for `tgt_dev`'s
/// logical unit.
pub(super) fn copy_command(tgt_dev: &TgtDev, cdb: Cdb<'_>) -> Option<CopyCommand> {
    let command = match (cdb.opcode(), cdb.u8(1) & 0x1f) {
        (xcopy::op::EXTENDED_COPY, xcopy::op::SA_LID1) => CopyCommand::Copy,
        (xcopy::op::RECEIVE_COPY_RESULTS, _) => CopyCommand::Results,
        _ => return None,
    };
    tgt_dev.dev.lu.copy_target().map(|_| command)
}

/// RECEIVE COPY RESULTS: COPY STATUS of a held list, or the operating
/// parameters.
pub(super) fn receive_copy_results(
    tgt_dev: &TgtDev,
    cdb: Cdb<'_>,
    out: &mut Out<'_>,
) -> core::result::Result<(), Sense> {
    match cdb.u8(1) & 0x1f {
        xcopy::op::SA_OPERATING_PARAMETERS => {
            xcopy::operating_parameters(out);
            Ok(())
        }
        xcopy::op::SA_COPY_STATUS => {
            // Reported once: the status of a finished copy is discarded
            // when retrieved (SPC-3 7.17.2).
            let list_id = cdb.u8(2);
            let status = tgt_dev
                .copy_results
                .lock()
                .iter_mut()
                .find(|s| s.is_some_and(|s| s.list_id == list_id))
                .and_then(Option::take)
                .ok_or(Sense::invalid_cdb_field(2, None))?;
            xcopy::copy_status(&status, out);
            Ok(())
        }
        _ => Err(Sense::invalid_cdb_field(1, Some(4))),
    }
}

/// A resolved copy target: the session's nexus to it and its geometry.
struct Target {
    tgt_dev: Arc<TgtDev>,
    info: CopyTargetInfo,
}

/// EXTENDED COPY (LID1) of `tgt_dev`'s command, on a worker; `luns` are
/// the session's nexuses, where copy targets are looked for.
pub(super) fn extended_copy(
    tgt_dev: &Arc<TgtDev>,
    luns: &[Arc<TgtDev>],
    tag: u64,
    cdb: Cdb<'_>,
    data: &mut SgList<'_>,
    direction: DataDirection,
    aborted: &dyn Fn() -> bool,
) -> Response {
    let format = tgt_dev.dev.lu.sense_format();
    let check = |s: Sense| Response::check_condition(s, format);
    let list_len = cdb.be32(10) as usize;
    let params = match parameter_list(data, direction, list_len, xcopy::MAX_PARAMETER_LIST_LEN) {
        Ok(p) if p.len() == list_len => p,
        Ok(_) => return check(sense::PARAMETER_LIST_LENGTH_ERROR),
        Err(s) => return check(s),
    };
    let list = match xcopy::parse(&params) {
        Ok(list) => list,
        Err(s) => return check(s),
    };
    if list.segment_count() == 0 {
        return Response::status(status::GOOD);
    }
    let mut done = CopyStatus {
        list_id: list.list_id,
        failed: false,
        segments_done: 0,
        bytes: 0,
    };
    let outcome = run(&list, luns, tag, aborted, &mut done);
    if list.held {
        done.failed = outcome.is_err();
        hold(tgt_dev, done);
    }
    match outcome {
        Ok(()) => Response::status(status::GOOD),
        Err(Failure::Conflict) => Response::status(status::RESERVATION_CONFLICT),
        Err(Failure::Check(s)) => check(s),
    }
}

/// Keeps `done` for RECEIVE COPY RESULTS, replacing an older copy of the
/// same list identifier, else the oldest.
fn hold(tgt_dev: &TgtDev, done: CopyStatus) {
    let mut held = tgt_dev.copy_results.lock();
    let slot = held
        .iter()
        .position(|s| s.is_some_and(|s| s.list_id == done.list_id))
        .unwrap_or(HELD_RESULTS - 1);
    held[..=slot].rotate_right(1);
    held[0] = Some(done);
}

enum Failure {
    Conflict,
    Check(Sense),
}

/// COPY ABORTED with the additional sense of what stopped the copy.
fn copy_aborted(cause: Sense) -> Failure {
    Failure::Check(Sense::new(key::COPY_ABORTED, cause.asc, cause.ascq))
}

fn run(
    list: &CopyList<'_>,
    luns: &[Arc<TgtDev>],
    tag: u64,
    aborted: &dyn Fn() -> bool,
    done: &mut CopyStatus,
) -> core::result::Result<(), Failure> {
    let resolve = |index: u16| -> core::result::Result<Target, Failure> {
        let wanted = list
            .target(index)
            .ok_or(Failure::Check(xcopy::TARGET_NOT_REACHABLE))?;
        let naa = wanted
            .naa()
            .ok_or(Failure::Check(xcopy::TARGET_NOT_REACHABLE))?;
        luns.iter()
            .find_map(|t| {
                let info = t.dev.lu.copy_target()?;
                (info.naa[..] == *naa).then(|| Target {
                    tgt_dev: t.clone(),
                    info,
                })
            })
            .filter(|t| wanted.block_len == 0 || wanted.block_len == t.info.block_size)
            .ok_or(Failure::Check(xcopy::TARGET_NOT_REACHABLE))
    };
    let mut buffer =
        Pages::alloc(CHUNK_BYTES).map_err(|_| Failure::Check(sense::INTERNAL_TARGET_FAILURE))?;
    for segment in list.segments() {
        let source = resolve(segment.source)?;
        let destination = resolve(segment.destination)?;
        copy_segment(
            &segment,
            &source,
            &destination,
            &mut buffer,
            tag,
            aborted,
            done,
        )?;
        done.segments_done += 1;
    }
    Ok(())
}

fn copy_segment(
    segment: &Segment,
    source: &Target,
    destination: &Target,
    buffer: &mut Pages,
    tag: u64,
    aborted: &dyn Fn() -> bool,
    done: &mut CopyStatus,
) -> core::result::Result<(), Failure> {
    let bs = source.info.block_size;
    let blocks = u64::from(segment.blocks);
    // Only equal block sizes; every block must exist on both sides.
    let fits = |lba: u64, t: &Target| {
        lba.checked_add(blocks)
            .is_some_and(|end| end <= t.info.blocks)
    };
    if destination.info.block_size != bs
        || !fits(segment.source_lba, source)
        || !fits(segment.destination_lba, destination)
    {
        return Err(copy_aborted(sense::NO_SENSE));
    }
    let per_chunk = (CHUNK_BYTES / bs as usize).max(1) as u64;
    let mut at = 0u64;
    while at < blocks {
        // Task management (or a PREEMPT AND ABORT) stops a long copy
        // between chunks; its response is then the abort's.
        if aborted() {
            return Err(Failure::Check(sense::COMMAND_ABORTED));
        }
        let n = (blocks - at).min(per_chunk);
        let len = (n * u64::from(bs)) as usize;
        io(source, 0x88, segment.source_lba + at, n, buffer, len, tag)?;
        io(
            destination,
            0x8a,
            segment.destination_lba + at,
            n,
            buffer,
            len,
            tag,
        )?;
        done.bytes += len as u64;
        at += n;
    }
    Ok(())
}

/// READ (16) or WRITE (16) of `n` blocks at `lba` through `target`'s
/// nexus, into or from the first `len` bytes of `buffer`.
fn io(
    target: &Target,
    opcode: u8,
    lba: u64,
    n: u64,
    buffer: &mut Pages,
    len: usize,
    tag: u64,
) -> core::result::Result<(), Failure> {
    let t = &target.tgt_dev;
    let mut cdb = [0u8; 16];
    cdb[0] = opcode;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[10..14].copy_from_slice(&(n as u32).to_be_bytes());
    let alua = PortView::decode(t.alua.load(Ordering::Relaxed));
    if let Some(s) = alua
        .and_then(|v| v.port)
        .and_then(|(_, state)| state.refusal(Cdb(&cdb)))
    {
        return Err(copy_aborted(s));
    }
    if t.dev.pr_held.load(Ordering::Acquire)
        && t.dev
            .pr
            .lock()
            .check(Cdb(&cdb), &super::reservation::nexus_of(t), t.id())
    {
        return Err(Failure::Conflict);
    }
    let mut sg = buffer.sg().limited(len);
    let mut cmd = ExecCmd {
        cdb: &cdb,
        data: &mut sg,
        read_only: t.read_only,
        rel_tgt_id: t.target.rel_tgt_id.load(Ordering::Relaxed),
        alua,
        direction: if opcode == 0x88 {
            DataDirection::Read
        } else {
            DataDirection::Write
        },
        nexus: t.id(),
        lent: None,
        tag,
        defer: None,
        deferred: None,
        nowait: false,
    };
    match t.dev.lu.execute(&mut cmd) {
        Ok(Executed::Done(c)) => match c.raw {
            None => Ok(()),
            Some(raw) => Err(copy_aborted(
                sense::decode(raw.sense.get(..raw.sense_len).unwrap_or(&[]))
                    .map_or(sense::INTERNAL_TARGET_FAILURE, |(k, asc, ascq)| {
                        Sense::new(k, asc, ascq)
                    }),
            )),
        },
        Ok(Executed::Later | Executed::WouldBlock) => {
            Err(copy_aborted(sense::INTERNAL_TARGET_FAILURE))
        }
        Err(s) => Err(copy_aborted(s)),
    }
}
