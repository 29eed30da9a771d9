// SPDX-License-Identifier: GPL-2.0

//! scst_local: a target driver whose initiator is the local SCSI stack.
//!
//! Every session is a Linux SCSI host: its LUNs appear as `/dev/sdX` and
//! `/dev/sgN`, with no network in between. The host's `queuecommand` runs
//! the command through the core right there (it may block), or, when it is
//! called inside `submit_bio()`, on a worker of the system workqueue; the
//! SCSI error handler's aborts and resets become task management.
//!
//! `targets/scst_local/mgmt` takes SCST's lines:
//! `add_target NAME [session_name=SESS]`, `del_target NAME`,
//! `add_session TARGET SESS`, `del_session TARGET SESS`.

use crate::kernel_ext::scsi_host::{DataDirection, EhRequest, LocalHost, LocalHostOps, ScsiCmnd};
use crate::kernel_ext::sysfs::DirRef;
use crate::scst_core::device::DataDirection as CoreDirection;
use crate::scst_core::{
    cdb::{decode_lun, lun_from_linux, MAX_LUN},
    mgmt::{collect_params, Line, MgmtError},
    session::{Command, Session},
    target::{SessionHandle, TargetDriver},
    task_set::TaskAttr,
    MgmtOutcome, Registry, Scst,
};
use kernel::{
    alloc::flags::{GFP_ATOMIC, GFP_KERNEL},
    prelude::*,
    sync::Arc,
    workqueue,
};

const DRIVER: &str = "scst_local";

/// Longest CDB the host accepts (its `max_cmd_len`).
const MAX_CDB_LEN: usize = 16;

struct LocalDriver;

/// A session's SCSI host, removed with the session.
struct LocalSession {
    host: LocalHost,
}

impl SessionHandle for LocalSession {
    fn sysfs_link(&self) -> Option<(&'static str, DirRef)> {
        Some(("host", self.host.sysfs_dir()?))
    }
}

/// Runs the host's commands on the session.
struct LocalOps {
    session: Arc<Session>,
}

/// Runs a recorded command and completes it.
fn run(command: Command, mut cmd: ScsiCmnd) {
    let mut cdb = [0u8; MAX_CDB_LEN];
    let len = cmd.cdb().len().min(MAX_CDB_LEN);
    cdb[..len].copy_from_slice(&cmd.cdb()[..len]);
    let direction = cmd.direction();
    let (response, buffer_len) = {
        let mut data = cmd.data();
        let core_direction = match direction {
            DataDirection::None => CoreDirection::None,
            DataDirection::ToDevice => CoreDirection::Write,
            DataDirection::FromDevice => CoreDirection::Read,
        };
        let r = command.execute(&cdb[..len], &mut data, core_direction);
        (r, data.len())
    };
    let resid = match direction {
        DataDirection::FromDevice => buffer_len.saturating_sub(response.data_in),
        _ => 0,
    };
    cmd.complete(response.status, response.sense(), resid);
    // FINISHED only after completion: `command` drops here.
    drop(command);
}

impl LocalHostOps for LocalOps {
    fn queue_command(&self, cmd: ScsiCmnd) {
        let command = self.session.begin(
            lun_from_linux(cmd.lun()),
            cmd.tag(),
            // The midlayer sends every command SIMPLE.
            TaskAttr::Simple,
        );
        if !cmd.in_bio_submission() {
            // The usual case (kblockd, SG_IO, plug flush): execute in the
            // caller's context, no switch.
            run(command, cmd);
            return;
        }
        // Inside submit_bio() the backend's own bios would wait behind the
        // caller's: hand the command to a worker. If that fails, dropping
        // the closure fails the command (DID_ERROR, retried by the
        // midlayer) and ends its in-flight record.
        let _ = workqueue::system().try_spawn(GFP_ATOMIC, move || run(command, cmd));
    }

    fn error_handler(&self, request: EhRequest, tag: u32, lun: u64) -> bool {
        let ok = match request {
            EhRequest::Abort => self.session.abort_task(tag),
            EhRequest::DeviceReset => match decode_lun(lun_from_linux(lun)) {
                Some(l) => self.session.lun_reset(l),
                None => true,
            },
            EhRequest::TargetReset | EhRequest::HostReset => self.session.target_reset(),
        };
        pr_info!(
            "scst_local: {:?} (tag {:#x}, LUN {}) for {}: {}\n",
            request,
            tag,
            lun,
            &*self.session.initiator,
            if ok { "done" } else { "failed" }
        );
        ok
    }
}

fn make_host(session: Arc<Session>) -> Result<Arc<dyn SessionHandle>> {
    let ops: Arc<dyn LocalHostOps> = Arc::new(LocalOps { session }, GFP_KERNEL)?;
    let host = LocalHost::new(ops, (MAX_LUN + 1) as u32)?;
    pr_info!("scst_local: session is SCSI host{}\n", host.number());
    host.scan();
    Ok(Arc::new(LocalSession { host }, GFP_KERNEL)?)
}

impl TargetDriver for LocalDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    fn mgmt_help(&self) -> &'static str {
        "Usage: echo \"add_target target_name [session_name=sess_name]\" >mgmt\n\
         \x20      echo \"del_target target_name\" >mgmt\n\
         \x20      echo \"add_session target_name session_name\" >mgmt\n\
         \x20      echo \"del_session target_name session_name\" >mgmt\n"
    }

    fn mgmt<'a>(
        &self,
        scst: &Arc<Scst>,
        registry: &mut Registry,
        mut line: Line<'a>,
    ) -> MgmtOutcome<'a> {
        match line.verb() {
            "add_target" => {
                let name = line.name("target name")?;
                let mut values = [None; 1];
                collect_params(line.params(), &["session_name"], &mut values)?;
                if let Some(s) = values[0] {
                    crate::scst_core::mgmt::check_name(s)?;
                }
                scst.add_target(registry, DRIVER, name)?;
                if let Some(s) = values[0] {
                    if let Err(e) = scst.add_session(registry, DRIVER, name, s, make_host) {
                        let _ = scst.del_target(registry, DRIVER, name);
                        return Err(e);
                    }
                }
                Ok(())
            }
            "del_target" => {
                let name = line.name("target name")?;
                line.end()?;
                scst.del_target(registry, DRIVER, name)
            }
            "add_session" => {
                let target = line.name("target name")?;
                let session = line.name("session name")?;
                line.end()?;
                scst.add_session(registry, DRIVER, target, session, make_host)
            }
            "del_session" => {
                let target = line.name("target name")?;
                let session = line.name("session name")?;
                line.end()?;
                scst.del_session(registry, DRIVER, target, session)
            }
            verb => Err(MgmtError::UnknownCommand(verb).into()),
        }
    }
}

/// Registers scst_local with the core.
pub(crate) fn register(scst: &Arc<Scst>) -> Result {
    scst.register_target_driver(Arc::new(LocalDriver, GFP_KERNEL)?)
}
