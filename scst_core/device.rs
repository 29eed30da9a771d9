// SPDX-License-Identifier: GPL-2.0

//! Device handlers, the logical units they create, and the devices of the
//! core (`handlers/`, `devices/`).

use super::mgmt::{MgmtError, Params};
use super::sense::{Sense, SenseFormat};
use super::session::TgtDev;
use super::MgmtFailure;
use crate::kernel_ext::kvec_ext::VecExt;
use crate::kernel_ext::sg::SgList;
use crate::kernel_ext::sysfs::{Dir, DirRef, File, Link, SysfsBuf, SysfsOps};
use core::fmt::Write;
use kernel::{
    alloc::flags::GFP_ATOMIC,
    prelude::*,
    str::{CStr, CString},
    sync::{Arc, SpinLock},
};

/// A device handler: a backend kind such as `vdisk_fileio`, listed under
/// `handlers/` and managed through `handlers/<name>/mgmt`.
pub(crate) trait DevHandler: Send + Sync + 'static {
    /// The handler's name, its directory under `handlers/`.
    fn name(&self) -> &'static str;

    /// SCSI peripheral device type of its devices (SPC-4 table 49).
    fn device_type(&self) -> u8;

    /// Usage text shown when `handlers/<name>/mgmt` is read.
    fn mgmt_help(&self) -> &'static str;

    /// Creates the logical unit of `add_device NAME params` (opening its
    /// backing storage); the core registers it.
    fn create<'a>(
        &self,
        name: &'a str,
        params: Params<'a>,
    ) -> Result<Arc<dyn LogicalUnit>, MgmtFailure<'a>>;
}

/// A device attribute a logical unit shows under `devices/<name>/`.
pub(crate) struct LuAttr {
    /// File name.
    pub(crate) name: &'static CStr,
    /// Whether writing it is allowed.
    pub(crate) writable: bool,
}

/// What a successful attribute write changed, for unit attentions.
pub(crate) enum AttrChange {
    /// The capacity changed: CAPACITY DATA HAS CHANGED.
    Capacity,
}

/// A command as a logical unit executes it.
pub(crate) struct ExecCmd<'a, 'b> {
    /// The CDB.
    pub(crate) cdb: &'a [u8],
    /// The data buffer: data-out as received, data-in to fill.
    pub(crate) data: &'a mut SgList<'b>,
    /// Writes must be refused (read-only LUN or device).
    pub(crate) read_only: bool,
    /// Relative target port identifier of the target the command came to.
    pub(crate) rel_tgt_id: u16,
}

/// How a command the logical unit executed ended.
pub(crate) struct Completion {
    /// Bytes of data-in placed at the start of the buffer.
    pub(crate) data_in: usize,
    /// MODE SELECT changed parameters: other nexuses get a unit attention.
    pub(crate) mode_changed: bool,
}

/// A logical unit: the device server of one device.
///
/// `execute` runs in process context and may sleep (backend I/O).
pub(crate) trait LogicalUnit: Send + Sync + 'static {
    /// Executes one command; an `Err` becomes CHECK CONDITION with that sense.
    fn execute(&self, cmd: &mut ExecCmd<'_, '_>) -> Result<Completion, Sense>;

    /// The sense format initiators asked for (control mode page D_SENSE).
    fn sense_format(&self) -> SenseFormat;

    /// Capacity in bytes, for the log and `size`.
    fn size(&self) -> u64;

    /// The handler-specific attributes under `devices/<name>/`.
    fn attributes(&self) -> &'static [LuAttr];

    /// Shows attribute `index` of [`Self::attributes`].
    fn show(&self, index: usize, out: &mut SysfsBuf);

    /// Writes attribute `index`.
    fn store<'a>(&self, index: usize, value: &'a str) -> Result<AttrChange, MgmtFailure<'a>>;
}

/// The human-readable name of a peripheral device type, as SCST's `type`
/// attributes print it.
pub(crate) fn device_type_name(device_type: u8) -> &'static str {
    match device_type {
        0x00 => "Direct-access device (e.g., magnetic disk)",
        0x01 => "Sequential-access device (e.g., magnetic tape)",
        0x03 => "Processor device",
        0x05 => "CD/DVD device",
        0x08 => "Media changer device (e.g., jukeboxes)",
        0x0c => "Storage array controller device (e.g., RAID)",
        0x0d => "Enclosure services device",
        _ => "Unknown device type",
    }
}

/// A device as the core and its sessions share it. Attribute reads never
/// touch the registry lock.
#[pin_data]
pub(crate) struct DeviceState {
    pub(crate) name: CString,
    pub(crate) handler_name: &'static str,
    pub(crate) device_type: u8,
    pub(crate) lu: Arc<dyn LogicalUnit>,
    /// Every I_T_L nexus of this device, for unit attentions.
    #[pin]
    pub(crate) tgt_devs: SpinLock<KVec<Arc<TgtDev>>>,
}

impl DeviceState {
    /// Queues a unit attention on every I_T_L nexus of the device but
    /// `except`.
    pub(crate) fn raise_ua(&self, sense: Sense, except: Option<&TgtDev>) {
        let tgt_devs = self.tgt_devs.lock();
        for t in tgt_devs.iter() {
            if except.is_some_and(|e| core::ptr::eq(e, &**t)) {
                continue;
            }
            t.queue_ua(sense);
        }
    }

    /// Tracks a new nexus of this device.
    pub(crate) fn attach(&self, tgt_dev: Arc<TgtDev>) -> Result {
        self.tgt_devs.lock().push(tgt_dev, GFP_ATOMIC)?;
        Ok(())
    }

    /// Stops tracking a nexus.
    pub(crate) fn detach(&self, tgt_dev: &TgtDev) {
        let mut tgt_devs = self.tgt_devs.lock();
        if let Some(i) = tgt_devs.iter().position(|t| core::ptr::eq(&**t, tgt_dev)) {
            drop(tgt_devs.swap_remove(i));
        }
    }
}

/// The attribute files of `devices/<name>/`: `type` and the logical unit's.
#[derive(Clone, Copy)]
pub(crate) enum DeviceAttr {
    Type,
    Lu(usize),
}

impl SysfsOps for DeviceState {
    type Attr = DeviceAttr;

    fn show(&self, attr: DeviceAttr, out: &mut SysfsBuf) -> Result {
        match attr {
            DeviceAttr::Type => {
                let _ = writeln!(
                    out,
                    "{} - {}",
                    self.device_type,
                    device_type_name(self.device_type)
                );
            }
            DeviceAttr::Lu(i) => self.lu.show(i, out),
        }
        Ok(())
    }

    fn store(&self, attr: DeviceAttr, input: &[u8]) -> Result {
        let DeviceAttr::Lu(i) = attr else {
            return Err(EACCES);
        };
        let text = core::str::from_utf8(input).map_err(|_| EINVAL)?.trim();
        match self.lu.store(i, text) {
            Ok(AttrChange::Capacity) => {
                pr_info!(
                    "device {}: capacity now {} bytes\n",
                    &*self.name,
                    self.lu.size()
                );
                self.raise_ua(super::sense::CAPACITY_DATA_CHANGED, None);
                Ok(())
            }
            Err(MgmtFailure::Invalid(e)) => {
                pr_err!("device {}: {:?}: {}\n", &*self.name, text, e);
                Err(match e {
                    MgmtError::Refused(_) => EBUSY,
                    _ => EINVAL,
                })
            }
            Err(MgmtFailure::System(e)) => Err(e),
        }
    }
}

/// A device and its sysfs presence. Fields drop in order: the files and
/// links go before the directory that holds them.
pub(crate) struct Device {
    pub(crate) state: Arc<DeviceState>,
    pub(crate) _files: KVec<File<DeviceState>>,
    pub(crate) _handler_link: Link,
    pub(crate) _link_in_handler: Link,
    pub(crate) exported: Dir,
    pub(crate) _dir: Dir,
}

impl Device {
    pub(crate) fn name_is(&self, name: &str) -> bool {
        self.state.name.as_bytes() == name.as_bytes()
    }

    /// `devices/<name>/`, where LUNs link to.
    pub(crate) fn dir_ref(&self) -> DirRef {
        self._dir.to_ref()
    }

    /// `devices/<name>/exported/`, where LUNs link back.
    pub(crate) fn exported_dir(&self) -> DirRef {
        self.exported.to_ref()
    }
}
