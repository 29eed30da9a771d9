// SPDX-License-Identifier: GPL-2.0

//! scst_local: a target driver whose initiator is the local SCSI stack.
//!
//! Every session is a Linux SCSI host: its LUNs appear as `/dev/sdX` and
//! `/dev/sgN`, with no network in between. The host's `queuecommand`
//! records the command and submits it to the core without sleeping (it may
//! be called in atomic context); the core's worker that executes it
//! completes it. The SCSI error handler's aborts and resets become task
//! management.
//!
//! `targets/scst_local/mgmt` takes SCST's lines:
//! `add_target NAME [session_name=SESS]`, `del_target NAME`,
//! `add_session TARGET SESS`, `del_session TARGET SESS`.

use crate::kernel_ext::scsi_host::{DataDirection, EhRequest, LocalHost, LocalHostOps, ScsiCmnd};
use crate::kernel_ext::sg::SgList;
use crate::kernel_ext::sysfs::DirRef;
use crate::scst_core::cmd::{Context, TgtCmd};
use crate::scst_core::device::DataDirection as CoreDirection;
use crate::scst_core::{
    cdb::{decode_lun, lun_from_linux, lun_to_linux, MAX_LUN},
    mgmt::{collect_params, Line, MgmtError},
    session::{Response, Session},
    target::{SessionHandle, TargetDriver},
    task_set::TaskAttr,
    MgmtOutcome, Registry, Scst,
};
use kernel::{alloc::flags::GFP_KERNEL, prelude::*, sync::Arc};

const DRIVER: &str = "scst_local";

/// Longest CDB the core takes; the host accepts what the midlayer
/// carries (its `max_cmd_len`), 32 bytes, variable-length CDBs included.
const MAX_CDB_LEN: usize = crate::scst_core::cmd::MAX_CDB_LEN;

struct LocalDriver;

/// A session's SCSI host, removed with the session (or after a rescan
/// still running then).
struct LocalSession {
    host: Arc<LocalHost>,
    session: Arc<Session>,
    scst: Arc<Scst>,
}

impl SessionHandle for LocalSession {
    fn sysfs_link(&self) -> Option<(&'static str, DirRef)> {
        Some(("host", self.host.sysfs_dir()?))
    }

    /// A LUN was added to the session or removed from it: the host
    /// rescans, as tcm_loop's does, so that added LUNs appear as devices
    /// and removed ones go. The rescan sends commands and waits for them,
    /// so it runs on the core's workqueue (the caller must not block).
    fn luns_changed(&self, _lun: u64) {
        let host = self.host.clone();
        let session = self.session.clone();
        let spawned = self.scst.spawn(move || {
            let mut luns = KVec::new();
            if session.lun_numbers(&mut luns).is_err() {
                pr_warn!("scst_local: no memory to rescan host{}\n", host.number());
                return;
            }
            for lun in luns.iter_mut() {
                *lun = lun_to_linux(*lun);
            }
            host.rescan(&luns);
        });
        if spawned.is_err() {
            // The unit attention still tells the initiator.
            pr_warn!(
                "scst_local: no memory to rescan host{}\n",
                self.host.number()
            );
        }
    }
}

/// Runs the host's commands on the session.
struct LocalOps {
    session: Arc<Session>,
}

/// A host command as the core holds it: the midlayer's scatterlist is its
/// buffer, with the data-out already in it.
struct LocalCmd {
    /// Taken when completed.
    cmd: Option<ScsiCmnd>,
    direction: DataDirection,
}

impl TgtCmd for LocalCmd {
    fn buffer(&mut self) -> SgList<'_> {
        match &mut self.cmd {
            Some(cmd) => cmd.data(),
            None => SgList::empty(),
        }
    }

    fn xmit_response(&mut self, response: Response) {
        let Some(mut cmd) = self.cmd.take() else {
            return;
        };
        let resid = match self.direction {
            DataDirection::FromDevice => cmd.data().len().saturating_sub(response.data_in),
            _ => 0,
        };
        cmd.complete(response.status, response.sense(), resid);
    }
}

impl LocalHostOps for LocalOps {
    fn queue_command(&self, cmd: ScsiCmnd) {
        let command = self.session.begin(
            lun_from_linux(cmd.lun()),
            cmd.tag().into(),
            // The midlayer sends every command SIMPLE.
            TaskAttr::Simple,
            cmd.cdb().first().copied().unwrap_or(0),
        );
        let mut cdb = [0u8; MAX_CDB_LEN];
        let len = cmd.cdb().len().min(MAX_CDB_LEN);
        cdb[..len].copy_from_slice(&cmd.cdb()[..len]);
        let direction = cmd.direction();
        let core_direction = match direction {
            DataDirection::None => CoreDirection::None,
            DataDirection::ToDevice => CoreDirection::Write,
            DataDirection::FromDevice => CoreDirection::Read,
        };
        let local = LocalCmd {
            cmd: Some(cmd),
            direction,
        };
        // `queuecommand` must not sleep: every command for a logical unit
        // goes to a worker.
        command.submit(&cdb[..len], core_direction, local, Context::Atomic);
    }

    fn error_handler(&self, request: EhRequest, tag: u32, lun: u64) -> bool {
        let ok = match request {
            // A command answered already is no longer the host's to abort.
            EhRequest::Abort => self.session.abort_task(tag.into()).unwrap_or(true),
            EhRequest::DeviceReset => match decode_lun(lun_from_linux(lun)) {
                Some(l) => self.session.lun_reset(l),
                None => true,
            },
            // The host's one target is the whole bus.
            EhRequest::TargetReset | EhRequest::BusReset | EhRequest::HostReset => {
                self.session.target_reset()
            }
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

fn make_host(scst: &Arc<Scst>, session: Arc<Session>) -> Result<Arc<dyn SessionHandle>> {
    let ops: Arc<dyn LocalHostOps> = Arc::new(
        LocalOps {
            session: session.clone(),
        },
        GFP_KERNEL,
    )?;
    let host = Arc::new(LocalHost::new(ops, (MAX_LUN + 1) as u32)?, GFP_KERNEL)?;
    pr_info!("scst_local: session is SCSI host{}\n", host.number());
    host.scan();
    Ok(Arc::new(
        LocalSession {
            host,
            session,
            scst: scst.clone(),
        },
        GFP_KERNEL,
    )?)
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
                    if let Err(e) = scst.add_session(registry, DRIVER, name, s, |session| {
                        make_host(scst, session)
                    }) {
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
                scst.add_session(registry, DRIVER, target, session, |s| make_host(scst, s))
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
