// SPDX-License-Identifier: GPL-2.0

//! scst_vdisk: virtual disk device handlers.
//!
//! `vdisk_nullio` devices have a size and a block size but no storage: reads
//! return zeroes and writes are dropped, which makes them the baseline for
//! measuring the rest of the stack. The file and block device backends
//! (`vdisk_fileio`, `vdisk_blockio`) follow with the SCSI command path.

// Shared with the host test crate, where its items are public API.
#[allow(unreachable_pub)]
pub(crate) mod geometry;

use crate::scst_core::{
    device::{DevHandler, DeviceConfig},
    mgmt::{collect_params, parse_bool, parse_ranged, parse_size, MgmtError, MgmtResult, Params},
    Scst,
};
use kernel::{alloc::flags::GFP_KERNEL, prelude::*, sync::Arc};

/// Size of a nullio device when `add_device` names none: 1 TiB, large enough
/// for any benchmark, costing nothing.
const NULLIO_DEFAULT_SIZE: u64 = 1 << 40;

/// The `vdisk_nullio` handler.
struct NullioHandler;

const NULLIO_KEYS: [&str; 4] = ["size", "size_mb", "blocksize", "read_only"];

impl DevHandler for NullioHandler {
    fn name(&self) -> &'static str {
        "vdisk_nullio"
    }

    fn device_type(&self) -> u8 {
        0
    }

    fn mgmt_help(&self) -> &'static str {
        "Usage: echo \"add_device device_name [parameters]\" >mgmt\n\
         \x20      echo \"del_device device_name\" >mgmt\n\
         \n\
         The following parameters available: size, size_mb, blocksize, read_only\n\
         \x20 size=BYTES[K|M|G|T]  capacity (default 1T)\n\
         \x20 size_mb=MIB          capacity in MiB\n\
         \x20 blocksize=512|1024|2048|4096 (default 512)\n\
         \x20 read_only=0|1        (default 0)\n"
    }

    fn parse_add_device<'a>(&self, params: Params<'a>) -> MgmtResult<'a, DeviceConfig> {
        let mut values = [None; NULLIO_KEYS.len()];
        collect_params(params, &NULLIO_KEYS, &mut values)?;
        let [size, size_mb, block_size, read_only] = values;
        let block_size = block_size.map_or(Ok(512), geometry::parse_block_size)?;
        let (size_text, size) = match (size, size_mb) {
            (Some(_), Some(_)) => return Err(MgmtError::Conflict("size", "size_mb")),
            (Some(v), None) => (v, parse_size("size", v)?),
            (None, Some(v)) => (v, parse_ranged("size_mb", v, 1, u64::MAX >> 20)? << 20),
            (None, None) => ("", NULLIO_DEFAULT_SIZE),
        };
        geometry::check(size_text, size, block_size)?;
        let read_only = match read_only {
            Some(v) => parse_bool("read_only", v)?,
            None => false,
        };
        Ok(DeviceConfig {
            size,
            block_size,
            read_only,
        })
    }
}

/// Registers the vdisk handlers with the core.
pub(crate) fn register(scst: &Arc<Scst>) -> Result {
    scst.register_handler(Arc::new(NullioHandler, GFP_KERNEL)?)
}
