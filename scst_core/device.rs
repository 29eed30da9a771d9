// SPDX-License-Identifier: GPL-2.0

//! Device handlers and the devices they create (`handlers/`, `devices/`).

use super::mgmt::{MgmtResult, Params};
use crate::kernel_ext::sysfs::{Dir, File, Link, SysfsBuf, SysfsOps};
use core::fmt::Write;
use kernel::{prelude::*, str::CString, sync::Arc};

/// A device handler: a backend kind such as `vdisk_nullio`, listed under
/// `handlers/` and managed through `handlers/<name>/mgmt`.
pub(crate) trait DevHandler: Send + Sync + 'static {
    /// The handler's name, its directory under `handlers/`.
    fn name(&self) -> &'static str;

    /// SCSI peripheral device type of its devices (SPC-4 table 49).
    fn device_type(&self) -> u8;

    /// Usage text shown when `handlers/<name>/mgmt` is read.
    fn mgmt_help(&self) -> &'static str;

    /// Validates the parameters of `add_device` and returns the new
    /// device's configuration.
    fn parse_add_device<'a>(&self, params: Params<'a>) -> MgmtResult<'a, DeviceConfig>;
}

/// The configuration of a device, as given to `add_device`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceConfig {
    /// Capacity in bytes, a multiple of `block_size`.
    pub(crate) size: u64,
    /// Logical block size in bytes.
    pub(crate) block_size: u32,
    /// Whether writes are refused with DATA PROTECT / WRITE PROTECTED.
    pub(crate) read_only: bool,
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

/// What a device's attribute files show; never touches the registry lock.
pub(crate) struct DeviceState {
    pub(crate) name: CString,
    pub(crate) handler_name: &'static str,
    pub(crate) device_type: u8,
    pub(crate) config: DeviceConfig,
}

/// The attribute files of `devices/<name>/`.
#[derive(Clone, Copy)]
pub(crate) enum DeviceAttr {
    Type,
    Size,
    SizeMb,
    BlockSize,
    ReadOnly,
}

impl SysfsOps for DeviceState {
    type Attr = DeviceAttr;

    fn show(&self, attr: DeviceAttr, out: &mut SysfsBuf) -> Result {
        let c = &self.config;
        let _ = match attr {
            DeviceAttr::Type => writeln!(
                out,
                "{} - {}",
                self.device_type,
                device_type_name(self.device_type)
            ),
            DeviceAttr::Size => writeln!(out, "{}", c.size),
            DeviceAttr::SizeMb => writeln!(out, "{}", c.size >> 20),
            DeviceAttr::BlockSize => writeln!(out, "{}", c.block_size),
            DeviceAttr::ReadOnly => writeln!(out, "{}", u8::from(c.read_only)),
        };
        Ok(())
    }
}

/// A device and its sysfs presence. Fields drop in order: the files and
/// links go before the directory that holds them.
pub(crate) struct Device {
    pub(crate) state: Arc<DeviceState>,
    pub(crate) _files: KVec<File<DeviceState>>,
    pub(crate) _handler_link: Link,
    pub(crate) _link_in_handler: Link,
    pub(crate) _exported: Dir,
    pub(crate) _dir: Dir,
}

impl Device {
    pub(crate) fn name_is(&self, name: &str) -> bool {
        self.state.name.as_bytes() == name.as_bytes()
    }
}
