// SPDX-License-Identifier: GPL-2.0

//! What the pass-through handlers decide without a kernel: which handler
//! takes which device type, the H:C:I:L a device is named by, and how long
//! a command may take on the device before the midlayer gives up on it.

/// A pass-through handler, as SCST names and types them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handler {
    /// Its directory under `handlers/`.
    pub name: &'static str,
    /// The peripheral device type of the devices it takes (SPC-4 table 49).
    pub device_type: u8,
    /// A `_perf` variant: READ and WRITE never reach the device, and end
    /// at once (a measure of the target's own cost, as SCST's have it).
    pub perf: bool,
}

const fn handler(name: &'static str, device_type: u8, perf: bool) -> Handler {
    Handler {
        name,
        device_type,
        perf,
    }
}

/// Every pass-through handler.
pub const HANDLERS: [Handler; 10] = [
    handler("dev_disk", 0x00, false),
    handler("dev_disk_perf", 0x00, true),
    handler("dev_tape", 0x01, false),
    handler("dev_tape_perf", 0x01, true),
    handler("dev_processor", 0x03, false),
    handler("dev_cdrom", 0x05, false),
    handler("dev_modisk", 0x07, false),
    handler("dev_modisk_perf", 0x07, true),
    handler("dev_changer", 0x08, false),
    handler("dev_raid", 0x0c, false),
];

/// A SCSI device's address in the local SCSI stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hctl {
    pub host: u32,
    pub channel: u32,
    pub id: u32,
    pub lun: u64,
}

impl core::fmt::Display for Hctl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}:{}:{}", self.host, self.channel, self.id, self.lun)
    }
}

/// `H:C:I:L` in decimal, as `lsscsi` prints it and SCST's `add_device`
/// takes it; `None` for anything else.
pub fn parse_hctl(name: &str) -> Option<Hctl> {
    let mut parts = name.split(':');
    let mut next = || -> Option<&str> {
        let p = parts.next()?;
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then_some(p)
    };
    let host = next()?.parse().ok()?;
    let channel = next()?.parse().ok()?;
    let id = next()?.parse().ok()?;
    let lun = next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Hctl {
        host,
        channel,
        id,
        lun,
    })
}

/// Opcodes whose time depends on the medium, not on the command (SPC-4,
/// SBC-4, SSC-4, SMC-3).
mod op {
    pub const FORMAT_UNIT: u8 = 0x04;
    pub const REWIND: u8 = 0x01;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0a;
    pub const WRITE_FILEMARKS: u8 = 0x10;
    pub const SPACE: u8 = 0x11;
    pub const ERASE: u8 = 0x19;
    pub const LOAD_UNLOAD: u8 = 0x1b;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const LOCATE_10: u8 = 0x2b;
    pub const VERIFY_10: u8 = 0x2f;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const INITIALIZE_ELEMENT_STATUS: u8 = 0x07;
    pub const INITIALIZE_ELEMENT_STATUS_WITH_RANGE: u8 = 0x37;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const SANITIZE: u8 = 0x48;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8a;
    pub const VERIFY_16: u8 = 0x8f;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const LOCATE_16: u8 = 0x92;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const MOVE_MEDIUM: u8 = 0xa5;
    pub const EXCHANGE_MEDIUM: u8 = 0xa6;
    pub const READ_12: u8 = 0xa8;
    pub const WRITE_12: u8 = 0xaa;
    pub const VERIFY_12: u8 = 0xaf;
    pub const READ_ELEMENT_STATUS: u8 = 0xb8;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const WRITE_VERIFY_10: u8 = 0x2e;
    pub const WRITE_VERIFY_12: u8 = 0xae;
    pub const WRITE_VERIFY_16: u8 = 0x8e;
    pub const WRITE_LONG_10: u8 = 0x3f;
    pub const WRITE_BUFFER: u8 = 0x3b;
    pub const UNMAP: u8 = 0x42;
    pub const XDWRITEREAD_10: u8 = 0x53;
    pub const WRITE_ATOMIC_16: u8 = 0x9c;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const ORWRITE_16: u8 = 0x8b;
    pub const SERVICE_ACTION_OUT_16: u8 = 0x9f;
    pub const VARIABLE_LENGTH: u8 = 0x7f;
    pub const REASSIGN_BLOCKS: u8 = 0x07;
    pub const SET_CAPACITY: u8 = 0x0b;
}

/// Milliseconds a command may take on a device of `device_type` before
/// the midlayer aborts it. Disks answer most commands at once, and take
/// an hour to format; tapes and changers move media for minutes, and a
/// tape spaces or erases across a whole cartridge for hours (SCST gives
/// them as long).
pub fn timeout_ms(device_type: u8, opcode: u8) -> u32 {
    const MINUTE: u32 = 60_000;
    match device_type {
        0x01 => match opcode {
            op::ERASE
            | op::SPACE
            | op::LOCATE_10
            | op::LOCATE_16
            | op::REWIND
            | op::LOAD_UNLOAD
            | op::WRITE_FILEMARKS
            | op::FORMAT_UNIT => 14_400_000,
            op::READ_6 | op::WRITE_6 | op::READ_16 | op::WRITE_16 => 60 * MINUTE,
            _ => 30 * MINUTE,
        },
        0x08 => match opcode {
            op::INITIALIZE_ELEMENT_STATUS | op::INITIALIZE_ELEMENT_STATUS_WITH_RANGE => 60 * MINUTE,
            op::MOVE_MEDIUM | op::EXCHANGE_MEDIUM | op::READ_ELEMENT_STATUS => 30 * MINUTE,
            _ => 10 * MINUTE,
        },
        _ => match opcode {
            op::FORMAT_UNIT | op::SANITIZE => 60 * MINUTE,
            op::VERIFY_10
            | op::VERIFY_12
            | op::VERIFY_16
            | op::WRITE_SAME_10
            | op::WRITE_SAME_16
            | op::SYNCHRONIZE_CACHE_10
            | op::SYNCHRONIZE_CACHE_16 => 10 * MINUTE,
            _ => MINUTE,
        },
    }
}

/// Whether `opcode` is a block READ or WRITE, which a `_perf` handler
/// ends at once; `Some(true)` for a write.
pub fn perf_rw(opcode: u8) -> Option<bool> {
    match opcode {
        op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16 => Some(false),
        op::WRITE_6 | op::WRITE_10 | op::WRITE_12 | op::WRITE_16 => Some(true),
        _ => None,
    }
}

/// Whether a command of `opcode` to a device of `device_type` changes
/// the medium, which a read-only LUN refuses (DATA PROTECT) before it
/// reaches the device. Commands a device type reads differently (0x07 is
/// REASSIGN BLOCKS on a disk and INITIALIZE ELEMENT STATUS on a changer)
/// are taken by type.
pub fn writes_medium(device_type: u8, opcode: u8) -> bool {
    let common = matches!(
        opcode,
        op::WRITE_6
            | op::WRITE_10
            | op::WRITE_12
            | op::WRITE_16
            | op::FORMAT_UNIT
            | op::WRITE_BUFFER
    );
    common
        || match device_type {
            0x01 => matches!(opcode, op::WRITE_FILEMARKS | op::ERASE | op::SET_CAPACITY),
            0x08 => false,
            _ => matches!(
                opcode,
                op::WRITE_VERIFY_10
                    | op::WRITE_VERIFY_12
                    | op::WRITE_VERIFY_16
                    | op::WRITE_LONG_10
                    | op::WRITE_SAME_10
                    | op::WRITE_SAME_16
                    | op::UNMAP
                    | op::XDWRITEREAD_10
                    | op::WRITE_ATOMIC_16
                    | op::COMPARE_AND_WRITE
                    | op::ORWRITE_16
                    | op::SANITIZE
                    | op::REASSIGN_BLOCKS
                    // WRITE LONG (16) and WRITE SAME (32), and the like.
                    | op::SERVICE_ACTION_OUT_16
                    | op::VARIABLE_LENGTH
            ),
        }
}

/// Whether `opcode` is MODE SELECT, whose success the other initiators
/// hear of (MODE PARAMETERS CHANGED).
pub fn is_mode_select(opcode: u8) -> bool {
    matches!(opcode, op::MODE_SELECT_6 | op::MODE_SELECT_10)
}

/// Where MODE SENSE's data of `opcode` carries the device-specific
/// parameter of a device of `device_type` whose WP bit (0x80) says write
/// protected (SBC-4 and SSC-4; optical memory as SBC): set for a
/// read-only LUN so that the initiator knows. `None`: not MODE SENSE, or
/// a type without that bit.
pub fn write_protect_byte(device_type: u8, opcode: u8) -> Option<usize> {
    if !matches!(device_type, 0x00 | 0x01 | 0x07) {
        return None;
    }
    match opcode {
        op::MODE_SENSE_6 => Some(2),
        op::MODE_SENSE_10 => Some(3),
        _ => None,
    }
}
