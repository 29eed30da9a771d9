// SPDX-License-Identifier: GPL-2.0

//! scst_user: `/dev/scst_user`, the gateway through which a user-space
//! process serves a SCSI device, with the ioctl ABI of SCST's
//! `scst_user.h` (see `abi` and `Documentation/scst_user.rst`).
//!
//! A process opens the device and registers one SCSI device on the file
//! (REGISTER_DEVICE); it appears as `handlers/<name>/<name>` and
//! `devices/<name>` and is exported like any other. `UserDev::execute`
//! posts a command's EXEC to the file's queue and defers it: the core's
//! worker goes on, so the process may have any number of commands at once
//! (up to [`MAX_UCMDS`]), and its reply completes the command. In steady
//! state the process makes one system call per command (REPLY_AND_GET_CMD
//! carries the previous reply and fetches the next command). PARSE and
//! ALLOC_MEM, which the command needs before it can go on, are waited for.
//!
//! Data moves through the process's own buffers, pinned in the kernel: the
//! process allocates one on ALLOC_MEM, and with `memory_reuse_type` the
//! kernel keeps it pinned for later commands (returning it with
//! ON_CACHED_MEM_FREE). A transport that asks for the command's buffer
//! first (iSCSI) gets the pinned pages themselves (`LogicalUnit::lend_buffer`):
//! no copy. Otherwise (scst_local, whose buffer is the initiator's) data-out
//! is copied into the pinned pages before EXEC, data-in back after the reply.
//!
//! With `parse_type` CALL or EXCEPTION a command first goes to the process
//! as PARSE. Task management reaches it as TASK_MGMT_RECEIVED/DONE.
//!
//! The kernel is master: a reply is checked before anything uses it, a
//! command waits for at most `timeout` seconds (a watchdog per device fails
//! the EXECs past it), and closing the file (a process that exits or is
//! killed) fails every waiting command, unpins every buffer and removes the
//! device.

#[allow(unreachable_pub, dead_code)]
pub(crate) mod abi;

/// This architecture's ioctl number encoding, for [`abi`].
mod ioc_encoding {
    use kernel::bindings;
    pub(super) const NRSHIFT: u32 = bindings::_IOC_NRSHIFT;
    pub(super) const TYPESHIFT: u32 = bindings::_IOC_TYPESHIFT;
    pub(super) const SIZESHIFT: u32 = bindings::_IOC_SIZESHIFT;
    pub(super) const DIRSHIFT: u32 = bindings::_IOC_DIRSHIFT;
    pub(super) const WRITE: u32 = bindings::_IOC_WRITE;
    pub(super) const READ: u32 = bindings::_IOC_READ;
}

mod dev;
mod exchange;
mod exec;
mod file;

use crate::kernel_ext::misc::MiscDevice;
use crate::scst_core::Scst;
use dev::*;
use exchange::*;
use exec::*;
use file::*;
use kernel::{alloc::flags::GFP_KERNEL, c_str, prelude::*, sync::Arc};

/// Page size of the buffers the kernel asks for: this kernel's pages,
/// which the handler's buffers are pinned in.
use kernel::page::PAGE_SIZE;

/// Commands and notifications a device may have outstanding at once;
/// beyond it commands get BUSY.
const MAX_UCMDS: usize = 1024;

/// Buffers the kernel keeps pinned for reuse, per device.
const MAX_CACHED_BUFFERS: usize = 128;

/// Default of `devices/<name>/timeout`: how long a command waits for the
/// process before it fails.
const DEFAULT_TIMEOUT_S: u32 = 60;

/// Longest CDB kept for a command (GET_EXTENDED_CDB returns its tail).
const MAX_CDB_LEN: usize = 260;

/// The misc device; dropping it removes `/dev/scst_user`.
pub(crate) struct ScstUser {
    _misc: MiscDevice,
}

/// Creates `/dev/scst_user`.
pub(crate) fn register(scst: &Arc<Scst>) -> Result<ScstUser> {
    let opener = Arc::new(Opener { scst: scst.clone() }, GFP_KERNEL)?;
    Ok(ScstUser {
        _misc: MiscDevice::register(c_str!("scst_user"), opener)?,
    })
}
