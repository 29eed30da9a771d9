// SPDX-License-Identifier: GPL-2.0

//! Pass-through handlers (`dev_disk`, `dev_tape`, `dev_changer`, ...):
//! a SCSI device of the local SCSI stack, named by its H:C:I:L, exported
//! to every initiator. Commands go to the device as passthrough requests
//! over the command's own pages, from a core worker, and complete from
//! the request's end_io; the device's own status, sense and residual go
//! back to the initiator. What one device cannot do for many initiators
//! the core does: reservations, and the device's unit attentions fanned
//! out to the other nexuses.

// Shared with the host test crate, where its items are public API.
#[allow(unreachable_pub)]
pub(crate) mod rules;

use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::net::pr_peer;
use crate::kernel_ext::scsi_pt::{PtDone, PtRequest, ScsiDevice, SdevRemoved, SdevWatch};
use crate::kernel_ext::sg::SgList;
use crate::kernel_ext::sysfs::SysfsBuf;
use crate::kernel_ext::wq::OwnedQueue;
use crate::scst_core::{
    cmd::{Deferral, FinishDeferred},
    device::{
        device_type_name, AttrChange, Completion, DataDirection, DevHandler, ExecCmd, Executed,
        LogicalUnit, LuAttr, RawStatus, TaskMgmt, TmFunction,
    },
    mgmt::{MgmtError, Params},
    sense::{self, Sense, SenseFormat},
    MgmtFailure, Scst,
};
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    c_str, fmt, new_spinlock,
    prelude::*,
    str::CString,
    sync::{Arc, SpinLock},
};
use rules::{Handler, Hctl, HANDLERS};

/// Status bytes (SAM-5).
const GOOD: u8 = 0x00;
const CHECK_CONDITION: u8 = 0x02;

/// Host bytes (`DID_*`) that say the device is gone.
const DID_NO_CONNECT: u8 = 0x01;
const DID_BAD_TARGET: u8 = 0x04;

/// The midlayer does not retry a pass-through command: the initiator
/// sees the device's own answer and decides.
const RETRIES: i32 = 0;

/// The pass-through handlers' watch on the local SCSI stack: a device
/// whose SCSI device leaves it (hot-unplug, `delete`) is removed as
/// `del_device` would, so its LUNs go and initiators learn of it. Dropped
/// before the core.
pub(crate) struct Passthrough {
    _watch: SdevWatch<Watcher>,
}

/// Registers every pass-through handler, and starts the watch.
pub(crate) fn register(scst: &Arc<Scst>) -> Result<Passthrough> {
    for handler in HANDLERS {
        scst.register_handler(Arc::new(PtHandler { handler }, GFP_KERNEL)?)?;
    }
    let watcher = Watcher {
        scst: scst.clone(),
        queue: OwnedQueue::new(c_str!("scst_pt_gone"))?,
    };
    Ok(Passthrough {
        _watch: SdevWatch::start(Arc::new(watcher, GFP_KERNEL)?)?,
    })
}

/// Removes the devices whose SCSI device left. The removal runs on a
/// queue of its own: the watch is called inside the SCSI device's removal,
/// and removing an exported device changes LUN tables, which removes
/// devices of scst_local's hosts in turn. Its works end before it drops.
struct Watcher {
    scst: Arc<Scst>,
    queue: OwnedQueue,
}

impl SdevRemoved for Watcher {
    fn removed(&self, host: u32, channel: u32, id: u32, lun: u64) {
        let hctl = Hctl {
            host,
            channel,
            id,
            lun,
        };
        let Ok(name) = CString::try_from_fmt(fmt!("{}", hctl)) else {
            pr_warn!("SCSI device {} left; its device stays (no memory)\n", hctl);
            return;
        };
        let scst = self.scst.clone();
        let spawned = self.queue.queue().try_spawn(GFP_KERNEL, move || {
            let Ok(name) = name.to_str() else {
                return;
            };
            if scst.remove_device_of(name, |h| HANDLERS.iter().any(|p| p.name == h)) {
                pr_info!("SCSI device {} left: its device is removed\n", name);
            }
        });
        if spawned.is_err() {
            pr_warn!("SCSI device {} left; its device stays (no memory)\n", hctl);
        }
    }
}

struct PtHandler {
    handler: Handler,
}

impl DevHandler for PtHandler {
    fn name(&self) -> &'static str {
        self.handler.name
    }

    fn device_type(&self) -> u8 {
        self.handler.device_type
    }

    fn mgmt_help(&self) -> &'static str {
        "Usage: echo \"add_device H:C:I:L\" >mgmt\n\
         \x20      echo \"del_device H:C:I:L\" >mgmt\n"
    }

    fn create<'a>(
        &self,
        name: &'a str,
        params: Params<'a>,
    ) -> Result<Arc<dyn LogicalUnit>, MgmtFailure<'a>> {
        if let Some(p) = params.into_iter().next() {
            let p = p?;
            return Err(MgmtError::UnknownParam(p.key).into());
        }
        let hctl = rules::parse_hctl(name).ok_or(MgmtError::BadName(name))?;
        let sdev = ScsiDevice::get(hctl.host, hctl.channel, hctl.id, hctl.lun)
            .ok_or(MgmtError::NoSuchObject(name))?;
        let found = sdev.device_type();
        if found != self.handler.device_type {
            pr_info!(
                "{}: {} is a {} (type {:#x}), not a {}\n",
                self.handler.name,
                hctl,
                device_type_name(found),
                found,
                device_type_name(self.handler.device_type)
            );
            return Err(MgmtError::Refused("the SCSI device is not of the handler's type").into());
        }
        pr_info!(
            "{}: exporting SCSI device {} ({})\n",
            self.handler.name,
            hctl,
            device_type_name(found)
        );
        let in_flight = Arc::pin_init(
            pin_init!(InFlight {
                sent <- new_spinlock!(KVec::new()),
            }),
            GFP_KERNEL,
        )?;
        Ok(Arc::new(
            PtDevice {
                sdev,
                hctl,
                handler: self.handler,
                in_flight,
            },
            GFP_KERNEL,
        )?)
    }
}

/// A SCSI device exported through a pass-through handler.
struct PtDevice {
    sdev: ScsiDevice,
    hctl: Hctl,
    handler: Handler,
    in_flight: Arc<InFlight>,
}

/// The device's requests in flight, which task management aborts at the
/// device. Process context only: a command's request joins as it is
/// sent, from a core worker, and leaves as the command's outcome drops,
/// on the worker that resumed it.
#[pin_data]
struct InFlight {
    #[pin]
    sent: SpinLock<KVec<Sent>>,
}

/// A request sent for the command of `tag` on nexus `nexus`.
struct Sent {
    nexus: u64,
    tag: u64,
    req: PtRequest,
}

impl PtDevice {
    /// A `_perf` handler's READ or WRITE: ended at once, the device never
    /// told. A read returns zeros, never what the pages held before.
    fn perf(&self, cmd: &mut ExecCmd<'_, '_>, write: bool) -> Executed {
        let len = cmd.data.len();
        if !write {
            cmd.data.zero(0, len);
            return Completion::data_in(len, len).into();
        }
        Completion {
            transfer_len: len,
            ..Completion::NO_DATA
        }
        .into()
    }
}

impl LogicalUnit for PtDevice {
    fn execute(&self, cmd: &mut ExecCmd<'_, '_>) -> Result<Executed, Sense> {
        let opcode = cmd.cdb.first().copied().unwrap_or(0);
        if self.handler.perf {
            if let Some(write) = rules::perf_rw(opcode) {
                return Ok(self.perf(cmd, write));
            }
        }
        if cmd.read_only && rules::writes_medium(self.handler.device_type, opcode) {
            return Err(sense::WRITE_PROTECTED);
        }
        let write = cmd.direction == DataDirection::Write;
        let len = cmd.data.len();
        let timeout = rules::timeout_ms(self.handler.device_type, opcode);
        let req =
            PtRequest::new(&self.sdev, cmd.cdb, write, len, timeout, RETRIES).map_err(|e| {
                log_not_sent(self, e);
                if self.sdev.online() {
                    sense::INTERNAL_TARGET_FAILURE
                } else {
                    sense::LUN_NOT_SUPPORTED
                }
            })?;
        // Known to task management before it can reach the device; what
        // finds no room is not aborted at the device, only waited for.
        let _ = self.in_flight.sent.lock().push(
            Sent {
                nexus: cmd.nexus,
                tag: cmd.tag,
                req: req.clone(),
            },
            GFP_ATOMIC,
        );
        let finish = Arc::new(
            PtFinish {
                in_flight: self.in_flight.clone(),
                req,
                write,
                len,
                mode_select: rules::is_mode_select(opcode),
                write_protect: rules::write_protect_byte(self.handler.device_type, opcode)
                    .filter(|_| cmd.read_only),
            },
            GFP_KERNEL,
        )
        .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
        // A failure until the device answers: a request that never
        // started, or whose deferral is dropped, fails the command.
        let deferral = cmd
            .defer(Completion::NO_DATA, sense::INTERNAL_TARGET_FAILURE)
            .ok_or(sense::INTERNAL_TARGET_FAILURE)?;
        deferral.will_finish(finish.clone());
        let ended = KBox::new(Ended { deferral }, GFP_KERNEL)
            .map_err(|_| sense::INTERNAL_TARGET_FAILURE)?;
        match finish.req.start(cmd.data, ended) {
            Ok(()) => Ok(Executed::Later),
            Err((e, ended)) => {
                log_not_sent(self, e);
                // Dropped, the deferral fails the command: its finish step
                // finds a request that never ended.
                drop(ended);
                Ok(Executed::Later)
            }
        }
    }

    fn sense_format(&self) -> SenseFormat {
        SenseFormat::Fixed
    }

    /// The commands the function waits for are aborted at the device
    /// too, so that the wait ends as soon as the device lets go (an abort
    /// through the SCSI error handler, which escalates to a device reset
    /// where the abort fails). Those are the requesting nexus' own: the
    /// core waits for no other's executing commands, and an abort would
    /// end them with an error of the device rather than as SAM has them.
    fn task_mgmt_received(&self, tm: &TaskMgmt) {
        for s in self.in_flight.sent.lock().iter() {
            let hit = s.nexus == tm.nexus
                && match tm.function {
                    TmFunction::AbortTask(tag) => s.tag == tag,
                    TmFunction::AbortTaskSet
                    | TmFunction::ClearTaskSet
                    | TmFunction::LunReset
                    | TmFunction::TargetReset => true,
                };
            if hit {
                s.req.abort();
            }
        }
    }

    fn size(&self) -> u64 {
        self.sdev.bytes()
    }

    fn attributes(&self) -> &'static [LuAttr] {
        &[]
    }

    fn show(&self, _index: usize, _out: &mut SysfsBuf) {}

    fn store<'a>(&self, _index: usize, _value: &'a str) -> Result<AttrChange, MgmtFailure<'a>> {
        Err(MgmtError::Refused("no such attribute").into())
    }
}

/// Says why a command did not reach the device; initiators can cause it,
/// so within the peers' rate limit.
fn log_not_sent(dev: &PtDevice, e: Error) {
    pr_peer!(
        pr_warn,
        "{}: SCSI device {}: command not sent ({:?})\n",
        dev.handler.name,
        dev.hctl,
        e
    );
}

/// Hears the device's completion, in whatever context it runs.
struct Ended {
    deferral: Deferral,
}

impl PtDone for Ended {
    fn ended(self: KBox<Self>) {
        KBox::into_inner(self).deferral.complete(true);
    }
}

/// A command sent to the device, read back on the worker that resumes it.
struct PtFinish {
    in_flight: Arc<InFlight>,
    req: PtRequest,
    write: bool,
    len: usize,
    /// MODE SELECT: when it succeeds, the other nexuses hear of it.
    mode_select: bool,
    /// MODE SENSE to a read-only LUN: the byte of its data whose WP bit
    /// the LUN sets, whatever the device said.
    write_protect: Option<usize>,
}

impl FinishDeferred for PtFinish {
    fn finish(&self, data: &mut SgList<'_>) -> Result<Completion, Sense> {
        let Some(outcome) = self.req.outcome() else {
            return Err(sense::INTERNAL_TARGET_FAILURE);
        };
        match outcome.host_byte() {
            0 => {}
            // Removed, or its host gone: the logical unit is no more.
            DID_NO_CONNECT | DID_BAD_TARGET => return Err(sense::LUN_NOT_SUPPORTED),
            // Timed out, reset, or failed on the way: not the device's
            // answer.
            _ => return Err(sense::INTERNAL_TARGET_FAILURE),
        }
        let moved = self.len.saturating_sub(outcome.resid as usize);
        let data_in = if self.write {
            0
        } else {
            // A read that went through a copy lands in the command's
            // pages now; one that did not is there already.
            self.req.copy_in(data, moved);
            moved
        };
        let status = outcome.status();
        if let Some(at) = self.write_protect.filter(|&at| at < data_in) {
            let mut byte = [0u8];
            if data.copy_to_slice(at, &mut byte) == 1 {
                data.copy_from_slice(at, &[byte[0] | 0x80]);
            }
        }
        if status == GOOD {
            return Ok(Completion {
                others_ua: self.mode_select.then_some(sense::MODE_PARAMETERS_CHANGED),
                ..Completion::data_in(data_in, moved)
            });
        }
        let mut raw = RawStatus::bare(status);
        let n = outcome.sense().len().min(raw.sense.len());
        raw.sense[..n].copy_from_slice(&outcome.sense()[..n]);
        raw.sense_len = n;
        // The device's own unit attention concerns every initiator, not
        // only the one whose command found it.
        let others_ua = match sense::decode(outcome.sense()) {
            Some((sense::key::UNIT_ATTENTION, asc, ascq)) if status == CHECK_CONDITION => {
                Some(Sense::new(sense::key::UNIT_ATTENTION, asc, ascq))
            }
            _ => None,
        };
        Ok(Completion {
            data_in,
            transfer_len: moved,
            others_ua,
            raw: Some(raw),
        })
    }
}

impl Drop for PtFinish {
    /// The command's outcome is taken (or it was aborted): its request
    /// leaves the device's list.
    fn drop(&mut self) {
        let mut sent = self.in_flight.sent.lock();
        if let Some(i) = sent.iter().position(|s| s.req.is(&self.req)) {
            sent.swap_remove(i);
        }
    }
}
