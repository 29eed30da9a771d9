// SPDX-License-Identifier: GPL-2.0

//! The SCSI host of scst_local: a Linux `Scsi_Host` whose commands and error
//! handling go to a [`LocalHostOps`] implementation.
//!
//! The midlayer may call `queuecommand` in atomic context (the host template
//! in `scsi_host_helpers.c` does not set `queuecommand_may_block`):
//! [`LocalHostOps::queue_command`] must not sleep. A command may be completed
//! from any context.

use super::{bindings, sg::SgList, sysfs::DirRef};
use core::ptr::NonNull;
use kernel::{error::from_err_ptr, prelude::*, sync::Arc};

/// Direction of a command's data transfer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum DataDirection {
    /// No data.
    None,
    /// Initiator to target.
    ToDevice,
    /// Target to initiator.
    FromDevice,
}

/// Which error-handling step the midlayer asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum EhRequest {
    /// Abort one command.
    Abort,
    /// LUN reset.
    DeviceReset,
    /// Target reset.
    TargetReset,
    /// Bus reset: every target on the command's channel.
    BusReset,
    /// Host reset: everything on the host.
    HostReset,
}

/// What a scst_local session does with its host's commands.
pub(crate) trait LocalHostOps: Send + Sync + 'static {
    /// Takes a command, in a context that may be atomic (it must not
    /// sleep); it is completed when `cmd` is (or, if dropped without
    /// completion, failed with `DID_ERROR`), from any context.
    fn queue_command(&self, cmd: ScsiCmnd);

    /// Carries out an error-handling request for the command with `tag` on
    /// the LUN (Linux's integer LUN); returns whether it succeeded. The
    /// midlayer takes the commands back only once they are completed, so a
    /// request that returns early only makes it try the next one.
    fn error_handler(&self, request: EhRequest, tag: u32, lun: u64) -> bool;
}

/// A command the midlayer passed to `queuecommand`.
///
/// # Invariants
///
/// `cmd` is a live `scsi_cmnd` owned by this driver until completed, which
/// happens exactly once (in `complete` or `drop`). The midlayer does not
/// finish or reuse it before: the host's error handlers in
/// `scsi_host_helpers.c` tell it SUCCESS only once the driver holds none of
/// the commands they cover (tracked there, from `queuecommand` to
/// completion, whatever [`LocalHostOps::error_handler`] answers), and host
/// reset, after which the midlayer finishes every command, waits for all.
pub(crate) struct ScsiCmnd {
    cmd: NonNull<bindings::scsi_cmnd>,
    completed: bool,
}

// SAFETY: a command may be executed and completed from any thread.
unsafe impl Send for ScsiCmnd {}

impl ScsiCmnd {
    /// The CDB.
    pub(crate) fn cdb(&self) -> &[u8] {
        let mut len = 0u32;
        // SAFETY: `cmd` is live by the type invariants.
        let p = unsafe { bindings::scst_rs_cmd_cdb(self.cmd.as_ptr(), &mut len) };
        if p.is_null() {
            return &[];
        }
        // SAFETY: the midlayer's CDB buffer holds `cmd_len` bytes and lives
        // until completion, which cannot happen while `&self` is borrowed.
        unsafe { core::slice::from_raw_parts(p, len as usize) }
    }

    /// Linux's integer LUN of the target device.
    pub(crate) fn lun(&self) -> u64 {
        // SAFETY: `cmd` is live by the type invariants.
        unsafe { bindings::scst_rs_cmd_lun(self.cmd.as_ptr()) }
    }

    /// The block layer's unique tag: names the command to error handling.
    pub(crate) fn tag(&self) -> u32 {
        // SAFETY: `cmd` is live by the type invariants.
        unsafe { bindings::scst_rs_cmd_tag(self.cmd.as_ptr()) }
    }

    /// Data direction.
    pub(crate) fn direction(&self) -> DataDirection {
        // SAFETY: `cmd` is live by the type invariants.
        match unsafe { bindings::scst_rs_cmd_direction(self.cmd.as_ptr()) } {
            1 => DataDirection::ToDevice,
            2 => DataDirection::FromDevice,
            _ => DataDirection::None,
        }
    }

    /// The command's data buffer.
    pub(crate) fn data(&mut self) -> SgList<'_> {
        let (mut nents, mut len) = (0u32, 0u32);
        // SAFETY: `cmd` is live by the type invariants.
        let sgl = unsafe { bindings::scst_rs_cmd_sg(self.cmd.as_ptr(), &mut nents, &mut len) };
        // SAFETY: the midlayer's scatterlist describes `scsi_bufflen` bytes
        // and stays valid until completion, which cannot happen while the
        // list borrows `self` mutably.
        unsafe { SgList::from_raw(sgl, nents, len as usize) }
    }

    /// Completes the command with a SCSI status, sense data and the number
    /// of bytes not transferred.
    pub(crate) fn complete(mut self, status: u8, sense: &[u8], resid: usize) {
        self.completed = true;
        // SAFETY: `cmd` is live and not yet completed (type invariants);
        // `sense` is valid for its length.
        unsafe {
            bindings::scst_rs_cmd_done(
                self.cmd.as_ptr(),
                status,
                sense.as_ptr(),
                sense.len() as u32,
                resid.min(u32::MAX as usize) as u32,
                false,
            )
        };
    }
}

impl Drop for ScsiCmnd {
    fn drop(&mut self) {
        if !self.completed {
            // SAFETY: `cmd` is live and not yet completed.
            unsafe {
                bindings::scst_rs_cmd_done(self.cmd.as_ptr(), 0, core::ptr::null(), 0, 0, true)
            };
        }
    }
}

/// A registered SCSI host; removed (after its devices) when dropped.
///
/// # Invariants
///
/// `shost` is a host added by `scst_rs_local_host_add` with `ops` as its
/// private pointer; `ops` came from `KBox::into_raw` and is freed only after
/// the host is removed.
pub(crate) struct LocalHost {
    shost: NonNull<bindings::Scsi_Host>,
    ops: *mut Arc<dyn LocalHostOps>,
}

// SAFETY: the host is used only through thread-safe midlayer calls; the ops
// object is `Send + Sync`.
unsafe impl Send for LocalHost {}
// SAFETY: as above.
unsafe impl Sync for LocalHost {}

impl LocalHost {
    /// Adds a host whose commands go to `ops`.
    pub(crate) fn new(ops: Arc<dyn LocalHostOps>, max_lun: u32) -> Result<Self> {
        let ops = KBox::into_raw(KBox::new(ops, GFP_KERNEL)?);
        // SAFETY: `ops` is a valid pointer that the host keeps until removal.
        let shost =
            match from_err_ptr(unsafe { bindings::scst_rs_local_host_add(ops.cast(), max_lun) }) {
                Ok(p) => p,
                Err(e) => {
                    // SAFETY: the host was not created: `ops` is still ours.
                    drop(unsafe { KBox::from_raw(ops) });
                    return Err(e);
                }
            };
        let shost = NonNull::new(shost).ok_or(ENOMEM)?;
        // INVARIANT: added with `ops`.
        Ok(Self { shost, ops })
    }

    /// Scans the host for LUNs (synchronously).
    pub(crate) fn scan(&self) {
        // SAFETY: the host is live by the type invariants.
        unsafe { bindings::scst_rs_local_host_scan(self.shost.as_ptr()) }
    }

    /// Brings the host's devices in line with `luns`, its target's LUNs as
    /// Linux numbers them: devices of LUNs not among them are removed, and
    /// a scan (REPORT LUNS) adds the new ones. Process context; sleeps (it
    /// sends the host's own commands and waits for them).
    pub(crate) fn rescan(&self, luns: &[u64]) {
        // SAFETY: the host is live by the type invariants; `luns` is valid
        // for reads of `luns.len()` entries during the call.
        unsafe {
            bindings::scst_rs_local_host_rescan(self.shost.as_ptr(), luns.as_ptr(), luns.len())
        }
    }

    /// The host number (`hostN`).
    pub(crate) fn number(&self) -> u32 {
        // SAFETY: the host is live by the type invariants.
        unsafe { bindings::scst_rs_local_host_no(self.shost.as_ptr()) }
    }

    /// The host's sysfs directory, for links.
    pub(crate) fn sysfs_dir(&self) -> Option<DirRef> {
        // SAFETY: the host is live; its device kobject lives with it.
        let kobj = NonNull::new(unsafe { bindings::scst_rs_local_host_kobj(self.shost.as_ptr()) })?;
        // SAFETY: the kobject is live for as long as the host.
        Some(unsafe { DirRef::from_foreign(kobj) })
    }
}

impl Drop for LocalHost {
    fn drop(&mut self) {
        // SAFETY: the host is live; removal waits for its commands and
        // devices, and no callback uses `ops` after it.
        unsafe { bindings::scst_rs_local_host_remove(self.shost.as_ptr()) };
        // SAFETY: `ops` came from `KBox::into_raw` and the host that used it
        // is gone.
        drop(unsafe { KBox::from_raw(self.ops) });
    }
}

/// # Safety
///
/// Called by the host template with the host's private `ops` pointer and a
/// command the midlayer hands over.
#[no_mangle]
unsafe extern "C" fn scst_rs_local_queuecommand(
    ops: *mut core::ffi::c_void,
    cmd: *mut bindings::scsi_cmnd,
) -> i32 {
    let Some(cmd) = NonNull::new(cmd) else {
        return 0;
    };
    // SAFETY: `ops` is the `Arc` the host was created with and outlives it.
    let ops = unsafe { &*ops.cast::<Arc<dyn LocalHostOps>>() };
    // INVARIANT: the midlayer passes ownership of the command until it is
    // completed; completion happens exactly once through `ScsiCmnd`.
    ops.queue_command(ScsiCmnd {
        cmd,
        completed: false,
    });
    0
}

/// Whether the session carried out the error handler's request, `kind` as
/// `scsi_host_helpers.c` numbers them: 0 abort, 1 device, 2 target, 3 host,
/// 4 bus reset. What the midlayer is told is decided in `scsi_host_helpers.c`, from the commands
/// the driver still holds.
///
/// # Safety
///
/// Called by the host template's error handlers with the host's private
/// `ops` pointer and the command that triggered error handling.
#[no_mangle]
unsafe extern "C" fn scst_rs_local_eh(
    ops: *mut core::ffi::c_void,
    cmd: *mut bindings::scsi_cmnd,
    kind: i32,
) -> bool {
    // SAFETY: `ops` is the `Arc` the host was created with and outlives it.
    let ops = unsafe { &*ops.cast::<Arc<dyn LocalHostOps>>() };
    // SAFETY: error handling owns `cmd` for the duration of the call.
    let (tag, lun) = unsafe {
        (
            bindings::scst_rs_cmd_tag(cmd),
            bindings::scst_rs_cmd_lun(cmd),
        )
    };
    let request = match kind {
        0 => EhRequest::Abort,
        1 => EhRequest::DeviceReset,
        2 => EhRequest::TargetReset,
        4 => EhRequest::BusReset,
        _ => EhRequest::HostReset,
    };
    ops.error_handler(request, tag, lun)
}
