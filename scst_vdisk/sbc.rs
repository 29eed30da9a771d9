// SPDX-License-Identifier: GPL-2.0

//! Direct-access (SBC-3) command decoding and emulation for the vdisk
//! handlers: the command table, CDB validation, and the data the device
//! server returns for INQUIRY, MODE SENSE, READ CAPACITY and the like.
//! Commands that touch storage decode to an [`Action`] that the backend
//! carries out.
//!
//! Plain `core` Rust, shared with the host test crate.

use crate::scst_core::cdb::{Cdb, Out};
use crate::scst_core::sense::{self, Sense};
use crate::scst_core::xcopy;

/// What a device reports about itself, and its geometry.
pub struct DiskInfo<'a> {
    /// T10 vendor identification (8 bytes, space padded).
    pub vendor: &'a [u8],
    /// Product identification (16 bytes): the device name.
    pub product: &'a [u8],
    /// Product revision level (4 bytes).
    pub revision: &'a [u8],
    /// T10 vendor-specific identifier in VPD page 83h.
    pub t10_dev_id: &'a [u8],
    /// Unit serial number (VPD page 80h).
    pub usn: &'a [u8],
    /// NAA designator (VPD page 83h): locally assigned (NAA 3), eight bytes.
    pub naa_id: [u8; 8],
    /// Relative target port identifier of the port the command came in on.
    pub rel_tgt_id: u16,
    /// Standard INQUIRY's TPGS field: 0 without ALUA, 1 implicit only, 3
    /// implicit and explicit (SET TARGET PORT GROUPS).
    pub tpgs: u8,
    /// The target port group of that port (VPD page 83h), if it is in one.
    pub target_port_group: Option<u16>,
    /// Number of logical blocks.
    pub blocks: u64,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// Writes are refused (WRITE PROTECTED).
    pub read_only: bool,
    /// UNMAP and WRITE SAME with UNMAP deallocate (logical block
    /// provisioning management).
    pub thin: bool,
    /// Reported as rotating media (VPD page B1h).
    pub rotational: bool,
    /// Logical blocks per physical block, as a power of two (READ
    /// CAPACITY (16), and the block limits' granularities).
    pub lbppb_exp: u8,
    /// The medium is removable (INQUIRY's RMB): START STOP UNIT ejects and
    /// loads it, PREVENT ALLOW MEDIUM REMOVAL keeps it in.
    pub removable: bool,
    /// A medium is loaded: without one, only the commands that need no
    /// medium run, the rest end with MEDIUM NOT PRESENT.
    pub medium: bool,
    /// The backend writes atomically: WRITE ATOMIC (16) is supported
    /// within these limits (block limits VPD page).
    pub atomic: Option<AtomicLimits>,
    /// Where a sanitize operation is.
    pub sanitize: SanitizeState,
}

/// A sanitize operation's state, as commands see it (SBC-4 4.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanitizeState {
    /// None runs; the last one, if any, completed.
    Idle,
    /// One runs: only INQUIRY, REPORT LUNS and REQUEST SENSE are served.
    InProgress,
    /// The last one failed: the medium is in sanitize failure mode until
    /// a sanitize completes or EXIT FAILURE MODE.
    Failed,
}

/// SANITIZE's service actions (SBC-4 5.30).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanitizeOp {
    /// OVERWRITE with the parameter list's pattern.
    Overwrite {
        /// Parameter list length.
        param_len: u16,
    },
    /// BLOCK ERASE: every block deallocated (thin LUNs).
    BlockErase,
    /// EXIT FAILURE MODE: the medium usable again after a failed sanitize.
    ExitFailureMode,
}

/// An OVERWRITE parameter list (SBC-4 5.30.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overwrite<'a> {
    /// The pattern inverted between passes.
    pub invert: bool,
    /// Passes over the medium (1 to 31).
    pub passes: u8,
    /// The initialization pattern, repeated over each block.
    pub pattern: &'a [u8],
}

/// Checks an OVERWRITE parameter list against `block_size`.
pub fn parse_overwrite(params: &[u8], block_size: u32) -> Result<Overwrite<'_>, Sense> {
    let p = Cdb(params);
    if params.len() < 5 {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let passes = p.u8(0) & 0x1f;
    // TEST (bits 6-5) is vendor-specific for testing; only 00b is taken.
    if p.u8(0) & 0x60 != 0 {
        return Err(Sense::invalid_param_field(0, Some(6)));
    }
    if passes == 0 {
        return Err(Sense::invalid_param_field(0, Some(4)));
    }
    if p.u8(1) != 0 {
        return Err(Sense::invalid_param_field(1, None));
    }
    let len = usize::from(p.be16(2));
    if len == 0 || len > block_size as usize || params.len() != 4 + len {
        return Err(Sense::invalid_param_field(2, None));
    }
    Ok(Overwrite {
        invert: p.u8(0) & 0x80 != 0,
        passes,
        pattern: params.get(4..).unwrap_or(&[]),
    })
}

/// What WRITE ATOMIC (16) takes, in logical blocks (SBC-4 4.29). No
/// ATOMIC BOUNDARY: the device writes every atomic write as one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtomicLimits {
    /// MAXIMUM ATOMIC TRANSFER LENGTH.
    pub max_blocks: u32,
    /// ATOMIC ALIGNMENT: the LBA is a multiple of it.
    pub alignment: u32,
    /// ATOMIC TRANSFER LENGTH GRANULARITY: the length is a multiple of it.
    pub granularity: u32,
}

/// Mode parameters that MODE SELECT may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeState {
    /// Write cache enabled (caching page): when clear, every write is
    /// written through to stable storage.
    pub wce: bool,
    /// Descriptor-format sense data (control page D_SENSE).
    pub d_sense: bool,
    /// Commands aborted by another I_T nexus end with TASK ABORTED status
    /// (control page TAS); clear, they end without a response.
    pub tas: bool,
    /// Software write protect (control page SWP): writes are refused
    /// until it is cleared.
    pub swp: bool,
}

/// Most blocks one READ or WRITE may move (block limits VPD page).
pub const MAX_TRANSFER_BLOCKS: u32 = 1 << 16;
/// Most blocks one COMPARE AND WRITE may compare and write (block limits
/// VPD page; the field is one byte).
pub const MAX_COMPARE_AND_WRITE_BLOCKS: u32 = 255;
/// Most blocks one WRITE SAME may cover.
pub const MAX_WRITE_SAME_BLOCKS: u32 = 1 << 22;
/// Most LBAs one UNMAP may deallocate.
pub const MAX_UNMAP_LBAS: u32 = 1 << 20;
/// Most block descriptors in one UNMAP parameter list.
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;

/// What the backend has to do after the CDB was validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing more: GOOD status, no data.
    Done,
    /// The response is in the output buffer; send at most this many bytes.
    DataIn(usize),
    /// Read blocks to the initiator.
    Read {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
    /// Write blocks from the initiator.
    Write {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// Force unit access: on stable storage before GOOD.
        fua: bool,
    },
    /// Check that blocks are readable, or (with `compare`) equal to the
    /// data-out buffer (`same`: one block compared against each).
    Verify {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// BYTCHK: compare with data-out.
        compare: bool,
        /// BYTCHK 11b: the data-out buffer is one block.
        same: bool,
    },
    /// Write the volatile cache of this range to stable storage.
    SyncCache {
        /// First block.
        lba: u64,
        /// Number of blocks, 0 for "to the end".
        blocks: u64,
    },
    /// Write one block's data (or zeroes) to a range, or deallocate it.
    WriteSame {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// UNMAP: deallocate where the data is zeroes.
        unmap: bool,
        /// NDOB: no data-out buffer, the block is zeroes.
        no_data: bool,
    },
    /// Deallocate the ranges of the parameter list (see [`parse_unmap`]).
    Unmap {
        /// Parameter list length.
        param_len: u32,
    },
    /// Apply mode parameters (see [`mode_select`]).
    ModeSelect {
        /// Parameter list length.
        param_len: u32,
        /// MODE SELECT(10) header.
        ten: bool,
    },
    /// Compare blocks with the first half of the data-out; if equal, write
    /// the second half over them. The core runs it as an ORDERED command,
    /// alone on the device, which makes it atomic.
    CompareAndWrite {
        /// First block.
        lba: u64,
        /// Number of blocks compared, then written.
        blocks: u32,
        /// Force unit access for the write.
        fua: bool,
    },
    /// OR the data-out into blocks: each byte written is the medium's OR
    /// the initiator's. ORDERED too, so that nothing writes in between.
    OrWrite {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// Force unit access for the write.
        fua: bool,
    },
    /// Report the provisioning status from `lba` (see [`lba_status`]).
    GetLbaStatus {
        /// Starting LBA.
        lba: u64,
        /// Allocation length.
        alloc_len: u32,
    },
    /// WRITE ATOMIC (16): write blocks from the initiator all at once or
    /// not at all (within [`DiskInfo::atomic`]).
    AtomicWrite {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// Force unit access: on stable storage before GOOD.
        fua: bool,
    },
    /// SANITIZE: the operation runs on its own, past this command (see
    /// [`SanitizeOp`]); `immed`: GOOD as soon as it started.
    Sanitize {
        /// What it does.
        op: SanitizeOp,
        /// IMMED.
        immed: bool,
    },
    /// PREVENT ALLOW MEDIUM REMOVAL on a removable medium: this I_T nexus
    /// prevents removal, or no longer does.
    PreventRemoval(bool),
    /// START STOP UNIT with LOEJ on a removable medium: load it (`true`)
    /// or eject it, unless an I_T nexus prevents removal.
    LoadEject(bool),
}

impl Action {
    /// Bytes the initiator sends for this action (data-out), if any.
    pub fn data_out_len(&self, block_size: u32) -> usize {
        let bs = block_size as usize;
        match *self {
            Action::Write { blocks, .. } | Action::AtomicWrite { blocks, .. } => {
                blocks as usize * bs
            }
            Action::Verify {
                compare: true,
                same: false,
                blocks,
                ..
            } => blocks as usize * bs,
            Action::Verify {
                compare: true,
                same: true,
                ..
            } => bs,
            Action::WriteSame { no_data: false, .. } => bs,
            Action::CompareAndWrite { blocks, .. } => 2 * blocks as usize * bs,
            Action::OrWrite { blocks, .. } => blocks as usize * bs,
            Action::Unmap { param_len } | Action::ModeSelect { param_len, .. } => {
                param_len as usize
            }
            Action::Sanitize {
                op: SanitizeOp::Overwrite { param_len },
                ..
            } => usize::from(param_len),
            _ => 0,
        }
    }

    /// Whether the action changes the medium (refused when read-only).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Action::Write { .. }
                | Action::AtomicWrite { .. }
                | Action::WriteSame { .. }
                | Action::Unmap { .. }
                | Action::CompareAndWrite { .. }
                | Action::OrWrite { .. }
                | Action::Sanitize { .. }
        )
    }
}

/// One supported command: its operation code, service action and CDB usage
/// map (SPC-4 6.35.3), which is also its validation mask.
pub struct OpInfo {
    /// Operation code.
    pub opcode: u8,
    /// Service action, for opcodes that have them.
    pub service_action: Option<u16>,
    /// CDB usage data: byte 0 is the opcode, each other byte the bits the
    /// device server looks at.
    pub usage: &'static [u8],
}

const fn op(opcode: u8, usage: &'static [u8]) -> OpInfo {
    OpInfo {
        opcode,
        service_action: None,
        usage,
    }
}

const fn op_sa(opcode: u8, sa: u16, usage: &'static [u8]) -> OpInfo {
    OpInfo {
        opcode,
        service_action: Some(sa),
        usage,
    }
}

/// Operation codes (SBC-3, SPC-4).
pub mod opcode {
    #![allow(missing_docs)]
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const FORMAT_UNIT: u8 = 0x04;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0a;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const START_STOP_UNIT: u8 = 0x1b;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1e;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const WRITE_VERIFY_10: u8 = 0x2e;
    pub const VERIFY_10: u8 = 0x2f;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5e;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5f;
    pub const READ_16: u8 = 0x88;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8a;
    pub const ORWRITE_16: u8 = 0x8b;
    pub const WRITE_VERIFY_16: u8 = 0x8e;
    pub const VERIFY_16: u8 = 0x8f;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const WRITE_ATOMIC_16: u8 = 0x9c;
    pub const SANITIZE: u8 = 0x48;
    pub const VARIABLE_LENGTH: u8 = 0x7f;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const MAINTENANCE_IN: u8 = 0xa3;
    pub const READ_12: u8 = 0xa8;
    pub const WRITE_12: u8 = 0xaa;
    pub const WRITE_VERIFY_12: u8 = 0xae;
    pub const VERIFY_12: u8 = 0xaf;
    pub const READ_DEFECT_DATA_12: u8 = 0xb7;
    pub const SAI_READ_CAPACITY_16: u16 = 0x10;
    pub const SAI_GET_LBA_STATUS: u16 = 0x12;
    pub const MI_REPORT_SUPPORTED_OPCODES: u16 = 0x0c;
    pub const MI_REPORT_SUPPORTED_TMFS: u16 = 0x0d;
    pub const VL_WRITE_SAME_32: u16 = 0x000d;
    pub const SA_SANITIZE_OVERWRITE: u16 = 0x01;
    pub const SA_SANITIZE_BLOCK_ERASE: u16 = 0x02;
    pub const SA_SANITIZE_EXIT_FAILURE_MODE: u16 = 0x1f;
}

use opcode::*;

/// PERSISTENT RESERVE IN with service action `sa`.
const fn prin(sa: u8) -> OpInfo {
    op_sa(
        PERSISTENT_RESERVE_IN,
        sa as u16,
        match sa {
            0 => &[0x5e, 0x00, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
            1 => &[0x5e, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
            2 => &[0x5e, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
            _ => &[0x5e, 0x03, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
        },
    )
}

/// PERSISTENT RESERVE OUT with service action `sa` (scope and type, and
/// the parameter list length).
const fn prout(sa: u8) -> OpInfo {
    op_sa(
        PERSISTENT_RESERVE_OUT,
        sa as u16,
        match sa {
            0 => &[0x5f, 0x00, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
            1 => &[0x5f, 0x01, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
            2 => &[0x5f, 0x02, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
            3 => &[0x5f, 0x03, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
            4 => &[0x5f, 0x04, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
            5 => &[0x5f, 0x05, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
            6 => &[0x5f, 0x06, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
            _ => &[0x5f, 0x07, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
        },
    )
}

/// The commands a vdisk device supports, in opcode order.
pub static OPS: [OpInfo; 65] = [
    op(TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, 0]),
    op(REQUEST_SENSE, &[0x03, 0x01, 0, 0, 0xff, 0]),
    op(FORMAT_UNIT, &[0x04, 0, 0, 0, 0, 0]),
    op(READ_6, &[0x08, 0x1f, 0xff, 0xff, 0xff, 0]),
    op(WRITE_6, &[0x0a, 0x1f, 0xff, 0xff, 0xff, 0]),
    op(INQUIRY, &[0x12, 0x01, 0xff, 0xff, 0xff, 0]),
    op(MODE_SELECT_6, &[0x15, 0x11, 0, 0, 0xff, 0]),
    // RESERVE, RELEASE and the persistent reservation commands are the
    // core's (scst_core/reservation.rs), listed here as the device's.
    op(RESERVE_6, &[0x16, 0, 0, 0, 0, 0]),
    op(RELEASE_6, &[0x17, 0, 0, 0, 0, 0]),
    op(MODE_SENSE_6, &[0x1a, 0x08, 0xff, 0xff, 0xff, 0]),
    op(START_STOP_UNIT, &[0x1b, 0x01, 0, 0x0f, 0xf7, 0]),
    op(PREVENT_ALLOW_MEDIUM_REMOVAL, &[0x1e, 0, 0, 0, 0x03, 0]),
    op(
        READ_CAPACITY_10,
        &[0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0],
    ),
    op(
        READ_10,
        &[0x28, 0x1e, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0],
    ),
    op(
        WRITE_10,
        &[0x2a, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0],
    ),
    op(
        WRITE_VERIFY_10,
        &[0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0],
    ),
    op(
        VERIFY_10,
        &[0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0],
    ),
    op(
        PRE_FETCH_10,
        &[0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0],
    ),
    op(
        SYNCHRONIZE_CACHE_10,
        &[0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0],
    ),
    op(
        READ_DEFECT_DATA_10,
        &[0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    op(
        WRITE_SAME_10,
        &[0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0],
    ),
    op(UNMAP, &[0x42, 0, 0, 0, 0, 0, 0x3f, 0xff, 0xff, 0]),
    op(MODE_SELECT_10, &[0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0]),
    op(RESERVE_10, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    op(RELEASE_10, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    op(
        MODE_SENSE_10,
        &[0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0],
    ),
    prin(0x00),
    prin(0x01),
    prin(0x02),
    prin(0x03),
    prout(0x00),
    prout(0x01),
    prout(0x02),
    prout(0x03),
    prout(0x04),
    prout(0x05),
    prout(0x06),
    prout(0x07),
    // The core's copy manager answers these for every vdisk device.
    op_sa(
        xcopy::op::EXTENDED_COPY,
        xcopy::op::SA_LID1 as u16,
        &[
            0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op_sa(
        xcopy::op::RECEIVE_COPY_RESULTS,
        xcopy::op::SA_COPY_STATUS as u16,
        &[
            0x84, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op_sa(
        xcopy::op::RECEIVE_COPY_RESULTS,
        xcopy::op::SA_OPERATING_PARAMETERS as u16,
        &[
            0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op(
        READ_16,
        &[
            0x88, 0x1e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x3f, 0,
        ],
    ),
    op(
        COMPARE_AND_WRITE,
        &[
            0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x3f, 0,
        ],
    ),
    op(
        WRITE_16,
        &[
            0x8a, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x3f, 0,
        ],
    ),
    op(
        ORWRITE_16,
        &[
            0x8b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x1f, 0,
        ],
    ),
    op(
        WRITE_VERIFY_16,
        &[
            0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x3f, 0,
        ],
    ),
    op(
        VERIFY_16,
        &[
            0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x3f, 0,
        ],
    ),
    op(
        PRE_FETCH_16,
        &[
            0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x3f, 0,
        ],
    ),
    op(
        SYNCHRONIZE_CACHE_16,
        &[
            0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x3f, 0,
        ],
    ),
    op(
        WRITE_SAME_16,
        &[
            0x93, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x3f, 0,
        ],
    ),
    // WRITE SAME (32): UNMAP and NDOB; WRPROTECT and ANCHOR must be zero,
    // and the protection information tags (bytes 20-27) are ignored, as
    // nothing is formatted with protection information.
    op_sa(
        VARIABLE_LENGTH,
        VL_WRITE_SAME_32,
        &[
            0x7f, 0, 0, 0, 0, 0, 0x3f, 0x18, 0x00, 0x0d, 0x09, 0, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff,
        ],
    ),
    // SANITIZE: IMMED and AUSE with each service action; CRYPTOGRAPHIC
    // ERASE is not among them (nothing here is encrypted).
    op_sa(
        SANITIZE,
        SA_SANITIZE_OVERWRITE,
        &[0x48, 0xa1, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    op_sa(
        SANITIZE,
        SA_SANITIZE_BLOCK_ERASE,
        &[0x48, 0xa2, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    op_sa(
        SANITIZE,
        SA_SANITIZE_EXIT_FAILURE_MODE,
        &[0x48, 0xbf, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    ),
    // WRPROTECT, and ATOMIC BOUNDARY (bytes 10-11), must be zero.
    op(
        WRITE_ATOMIC_16,
        &[
            0x9c, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0x3f, 0,
        ],
    ),
    op_sa(
        SERVICE_ACTION_IN_16,
        SAI_READ_CAPACITY_16,
        &[
            0x9e, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x01, 0,
        ],
    ),
    op_sa(
        SERVICE_ACTION_IN_16,
        SAI_GET_LBA_STATUS,
        &[
            0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
            0,
        ],
    ),
    op(
        REPORT_LUNS,
        &[0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    ),
    op_sa(
        MAINTENANCE_IN,
        MI_REPORT_SUPPORTED_OPCODES,
        &[
            0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
    op_sa(
        MAINTENANCE_IN,
        MI_REPORT_SUPPORTED_TMFS,
        &[0xa3, 0x0d, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0],
    ),
    op(
        READ_12,
        &[
            0xa8, 0x1e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0,
        ],
    ),
    op(
        WRITE_12,
        &[
            0xaa, 0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0,
        ],
    ),
    op(
        WRITE_VERIFY_12,
        &[
            0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0,
        ],
    ),
    op(
        VERIFY_12,
        &[
            0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0,
        ],
    ),
    op(
        READ_DEFECT_DATA_12,
        &[
            0xb7, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ],
    ),
];

/// Looks up the table entry of a CDB, with INVALID COMMAND OPERATION CODE or
/// an INVALID FIELD for an unknown service action.
pub fn lookup(cdb: Cdb<'_>) -> Result<&'static OpInfo, Sense> {
    let opcode = cdb.opcode();
    let mut has_sa = false;
    for info in OPS.iter().filter(|i| i.opcode == opcode) {
        match info.service_action {
            None => return Ok(info),
            Some(sa) => {
                has_sa = true;
                if service_action(cdb) == sa {
                    return Ok(info);
                }
            }
        }
    }
    match (has_sa, opcode) {
        (true, VARIABLE_LENGTH) => Err(Sense::invalid_cdb_field(8, None)),
        (true, _) => Err(Sense::invalid_cdb_field(1, Some(4))),
        _ => Err(sense::INVALID_OPCODE),
    }
}

/// The service action of a CDB whose operation code has them: bytes 8-9
/// of a variable-length CDB, else the low five bits of byte 1.
fn service_action(cdb: Cdb<'_>) -> u16 {
    if cdb.opcode() == VARIABLE_LENGTH {
        cdb.be16(8)
    } else {
        u16::from(cdb.u8(1) & 0x1f)
    }
}

/// Checks that `blocks` blocks from `lba` lie on the medium.
fn check_range(disk: &DiskInfo<'_>, lba: u64, blocks: u64) -> Result<(), Sense> {
    match lba.checked_add(blocks) {
        Some(end) if end <= disk.blocks => Ok(()),
        _ => Err(sense::LBA_OUT_OF_RANGE),
    }
}

/// LBA and transfer length of a READ/WRITE/VERIFY-family CDB.
fn lba_and_len(cdb: Cdb<'_>) -> (u64, u32) {
    match cdb.0.len() {
        6 => {
            let lba = cdb.be(1, 3) & 0x1f_ffff;
            let len = match cdb.u8(4) {
                0 => 256,
                n => u32::from(n),
            };
            (lba, len)
        }
        10 => (u64::from(cdb.be32(2)), u32::from(cdb.be16(7))),
        12 => (u64::from(cdb.be32(2)), cdb.be32(6)),
        _ => (cdb.be64(2), cdb.be32(10)),
    }
}

/// Offset of the transfer length field, for field pointers.
fn len_field(cdb: Cdb<'_>) -> u16 {
    match cdb.0.len() {
        6 => 4,
        10 => 7,
        12 => 6,
        _ => 10,
    }
}

/// Validates `cdb` and either emulates the command into `out` or says what
/// the backend must do. REQUEST SENSE and REPORT LUNS are the core's and
/// never reach here.
pub fn parse(
    cdb: Cdb<'_>,
    disk: &DiskInfo<'_>,
    mode: &ModeState,
    out: &mut Out<'_>,
) -> Result<Action, Sense> {
    let info = lookup(cdb)?;
    // Only the CDB's own length counts: trailing bytes are not part of it.
    let cdb = Cdb(cdb
        .0
        .get(..info.usage.len())
        .ok_or(Sense::invalid_cdb_field(0, None))?);
    cdb.check_usage(info.usage)?;
    if !disk.medium && needs_medium(info.opcode) {
        return Err(sense::MEDIUM_NOT_PRESENT);
    }
    match disk.sanitize {
        // SBC-4 4.11.2: INQUIRY, REPORT LUNS and REQUEST SENSE (the last
        // two the core's) are all that run meanwhile.
        SanitizeState::InProgress if info.opcode != INQUIRY => {
            return Err(sense::SANITIZE_IN_PROGRESS)
        }
        SanitizeState::Failed if needs_medium(info.opcode) && info.opcode != SANITIZE => {
            return Err(sense::SANITIZE_COMMAND_FAILED)
        }
        _ => {}
    }
    let action = match (info.opcode, info.service_action) {
        (TEST_UNIT_READY, _) => Action::Done,
        // PREVENT field 01b prevents, 00b allows; 1xb are obsolete (SBC-4
        // 5.11) and taken by their low bit, as SCST does.
        (PREVENT_ALLOW_MEDIUM_REMOVAL, _) if disk.removable => {
            Action::PreventRemoval(cdb.u8(4) & 0x01 != 0)
        }
        (PREVENT_ALLOW_MEDIUM_REMOVAL, _) => Action::Done,
        // LOEJ: load (START) or eject; without it, or on a fixed medium,
        // there is nothing to start or stop. A POWER CONDITION other than
        // 0h has START and LOEJ ignored (SBC-4 5.31).
        (START_STOP_UNIT, _) if disk.removable && cdb.u8(4) & 0xf2 == 0x02 => {
            Action::LoadEject(cdb.u8(4) & 0x01 != 0)
        }
        (START_STOP_UNIT, _) => Action::Done,
        (FORMAT_UNIT, _) => {
            if disk.read_only {
                return Err(sense::WRITE_PROTECTED);
            }
            Action::Done
        }
        (INQUIRY, _) => {
            inquiry(cdb, disk, mode, out)?;
            Action::DataIn(usize::from(cdb.be16(3)))
        }
        (MODE_SENSE_6, _) | (MODE_SENSE_10, _) => {
            mode_sense(cdb, disk, mode, out)?;
            let alloc = if info.opcode == MODE_SENSE_6 {
                usize::from(cdb.u8(4))
            } else {
                usize::from(cdb.be16(7))
            };
            Action::DataIn(alloc)
        }
        (MODE_SELECT_6, _) | (MODE_SELECT_10, _) => {
            let ten = info.opcode == MODE_SELECT_10;
            if cdb.u8(1) & 0x01 != 0 {
                return Err(Sense::invalid_cdb_field(1, Some(0)));
            }
            let param_len = if ten {
                u32::from(cdb.be16(7))
            } else {
                u32::from(cdb.u8(4))
            };
            if param_len > 0 && cdb.u8(1) & 0x10 == 0 {
                return Err(Sense::invalid_cdb_field(1, Some(4)));
            }
            if param_len == 0 {
                Action::Done
            } else {
                Action::ModeSelect { param_len, ten }
            }
        }
        (READ_CAPACITY_10, _) => {
            if cdb.u8(8) & 1 == 0 && cdb.be32(2) != 0 {
                return Err(Sense::invalid_cdb_field(2, None));
            }
            let last = disk.blocks.saturating_sub(1);
            out.be32(u32::try_from(last).unwrap_or(u32::MAX));
            out.be32(disk.block_size);
            Action::DataIn(8)
        }
        (SERVICE_ACTION_IN_16, Some(SAI_READ_CAPACITY_16)) => {
            out.be64(disk.blocks.saturating_sub(1));
            out.be32(disk.block_size);
            out.u8(0); // no protection information
            out.u8(disk.lbppb_exp & 0x0f);
            let lbp = if disk.thin { 0x80 | 0x40 } else { 0 };
            out.be16(lbp << 8);
            out.zeroes(16);
            Action::DataIn(cdb.be32(10) as usize)
        }
        (SERVICE_ACTION_IN_16, _) => {
            let lba = cdb.be64(2);
            if lba >= disk.blocks {
                return Err(sense::LBA_OUT_OF_RANGE);
            }
            Action::GetLbaStatus {
                lba,
                alloc_len: cdb.be32(10),
            }
        }
        (MAINTENANCE_IN, Some(MI_REPORT_SUPPORTED_OPCODES)) => {
            report_supported_opcodes(cdb, disk, out)?;
            Action::DataIn(cdb.be32(6) as usize)
        }
        (MAINTENANCE_IN, _) => {
            let extended = cdb.u8(2) & 0x80 != 0;
            // ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LUN RESET,
            // TARGET RESET; I_T NEXUS RESET.
            out.u8(0x80 | 0x40 | 0x10 | 0x08 | 0x02);
            out.u8(0x01);
            if extended {
                out.u8(0);
                out.u8(0x0c);
                out.zeroes(12);
            } else {
                out.zeroes(2);
            }
            Action::DataIn(cdb.be32(6) as usize)
        }
        (READ_6, _) | (READ_10, _) | (READ_12, _) | (READ_16, _) => {
            let (lba, blocks) = lba_and_len(cdb);
            check_transfer(cdb, disk, lba, blocks)?;
            Action::Read { lba, blocks }
        }
        (WRITE_6, _) | (WRITE_10, _) | (WRITE_12, _) | (WRITE_16, _) => {
            let (lba, blocks) = lba_and_len(cdb);
            check_transfer(cdb, disk, lba, blocks)?;
            let fua = cdb.0.len() > 6 && cdb.u8(1) & 0x08 != 0;
            Action::Write {
                lba,
                blocks,
                fua: fua || !mode.wce,
            }
        }
        (SANITIZE, Some(sa)) => {
            let immed = cdb.u8(1) & 0x80 != 0;
            let param_len = cdb.be16(7);
            let op = match sa {
                SA_SANITIZE_OVERWRITE => {
                    if !(5..=4 + disk.block_size).contains(&u32::from(param_len)) {
                        return Err(Sense::invalid_cdb_field(7, None));
                    }
                    SanitizeOp::Overwrite { param_len }
                }
                // Deallocating every block is what a thin LUN can do.
                SA_SANITIZE_BLOCK_ERASE if disk.thin => SanitizeOp::BlockErase,
                SA_SANITIZE_EXIT_FAILURE_MODE if disk.sanitize == SanitizeState::Failed => {
                    SanitizeOp::ExitFailureMode
                }
                _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
            };
            if op != (SanitizeOp::Overwrite { param_len }) && param_len != 0 {
                return Err(Sense::invalid_cdb_field(7, None));
            }
            Action::Sanitize { op, immed }
        }
        (WRITE_ATOMIC_16, _) => {
            let limits = disk.atomic.ok_or(sense::INVALID_OPCODE)?;
            let lba = cdb.be64(2);
            let blocks = u32::from(cdb.be16(12));
            // Out of range first: libiscsi's BeyondEol writes past the end
            // with lengths beyond the atomic limits.
            check_range(disk, lba, u64::from(blocks))?;
            if blocks > limits.max_blocks || blocks % limits.granularity.max(1) != 0 {
                return Err(Sense::invalid_cdb_field(12, None));
            }
            if lba % u64::from(limits.alignment.max(1)) != 0 {
                return Err(Sense::invalid_cdb_field(2, None));
            }
            if blocks == 0 {
                Action::Done
            } else {
                Action::AtomicWrite {
                    lba,
                    blocks,
                    fua: cdb.u8(1) & 0x08 != 0 || !mode.wce,
                }
            }
        }
        (WRITE_VERIFY_10, _) | (WRITE_VERIFY_12, _) | (WRITE_VERIFY_16, _) => {
            let (lba, blocks) = lba_and_len(cdb);
            check_transfer(cdb, disk, lba, blocks)?;
            // The data is verified once it is on stable storage.
            Action::Write {
                lba,
                blocks,
                fua: true,
            }
        }
        (VERIFY_10, _) | (VERIFY_12, _) | (VERIFY_16, _) => {
            let (lba, blocks) = lba_and_len(cdb);
            check_transfer(cdb, disk, lba, blocks)?;
            let (compare, same) = match (cdb.u8(1) >> 1) & 0x3 {
                0b00 => (false, false),
                0b01 => (true, false),
                0b11 => (true, true),
                _ => return Err(Sense::invalid_cdb_field(1, Some(2))),
            };
            Action::Verify {
                lba,
                blocks,
                compare,
                same,
            }
        }
        (READ_DEFECT_DATA_10, _) | (READ_DEFECT_DATA_12, _) => {
            // A virtual disk has no defects: an empty list, in the format
            // and of the kinds asked for (PLISTV, GLISTV as REQ_PLIST,
            // REQ_GLIST; SBC-4 5.14, 5.15).
            let ten = info.opcode == READ_DEFECT_DATA_10;
            let flags = cdb.u8(if ten { 2 } else { 1 }) & 0x1f;
            out.u8(0);
            out.u8(flags);
            if ten {
                out.be16(0); // defect list length
                Action::DataIn(usize::from(cdb.be16(7)))
            } else {
                out.be16(0); // generation code: not reported
                out.be32(0); // defect list length
                Action::DataIn(cdb.be32(6) as usize)
            }
        }
        (PRE_FETCH_10, _) | (PRE_FETCH_16, _) => {
            // Validated, and answered GOOD: SBC-4 5.10's answer when the
            // cache takes none of the range (nothing is read ahead).
            let (lba, blocks) = lba_and_len(cdb);
            check_range(disk, lba, u64::from(blocks))?;
            if blocks == 0 && lba >= disk.blocks {
                return Err(sense::LBA_OUT_OF_RANGE);
            }
            Action::Done
        }
        (COMPARE_AND_WRITE, _) => {
            let lba = cdb.be64(2);
            let blocks = u32::from(cdb.u8(13));
            if blocks > MAX_COMPARE_AND_WRITE_BLOCKS {
                return Err(Sense::invalid_cdb_field(13, None));
            }
            check_range(disk, lba, u64::from(blocks))?;
            // Zero blocks compare and write nothing, and are no error, but
            // the executor still checks the initiator sent no data-out.
            Action::CompareAndWrite {
                lba,
                blocks,
                fua: cdb.u8(1) & 0x08 != 0 || !mode.wce,
            }
        }
        (ORWRITE_16, _) => {
            let (lba, blocks) = lba_and_len(cdb);
            check_transfer(cdb, disk, lba, blocks)?;
            if blocks == 0 {
                Action::Done
            } else {
                Action::OrWrite {
                    lba,
                    blocks,
                    fua: cdb.u8(1) & 0x08 != 0 || !mode.wce,
                }
            }
        }
        (SYNCHRONIZE_CACHE_10, _) | (SYNCHRONIZE_CACHE_16, _) => {
            let (lba, blocks) = lba_and_len(cdb);
            check_range(disk, lba, u64::from(blocks))?;
            Action::SyncCache {
                lba,
                blocks: u64::from(blocks),
            }
        }
        (WRITE_SAME_10, _) | (WRITE_SAME_16, _) | (VARIABLE_LENGTH, Some(VL_WRITE_SAME_32)) => {
            let long = info.opcode == VARIABLE_LENGTH;
            if long && cdb.u8(7) != 0x18 {
                return Err(Sense::invalid_cdb_field(7, None));
            }
            let (lba, blocks) = if long {
                (cdb.be64(12), cdb.be32(28))
            } else {
                lba_and_len(cdb)
            };
            let (flags, len_at) = if long {
                (cdb.u8(10), 28)
            } else {
                (cdb.u8(1), len_field(cdb))
            };
            // WSNZ is clear in the block limits page: zero blocks means
            // up to the last logical block (SBC-4 5.50), within the
            // maximum WRITE SAME length like any other count.
            let blocks = if blocks == 0 {
                if lba >= disk.blocks {
                    return Err(sense::LBA_OUT_OF_RANGE);
                }
                u32::try_from(disk.blocks - lba).unwrap_or(u32::MAX)
            } else {
                blocks
            };
            if blocks == 0 || blocks > MAX_WRITE_SAME_BLOCKS {
                return Err(Sense::invalid_cdb_field(len_at, None));
            }
            let unmap = flags & 0x08 != 0;
            // A fully provisioned LUN reports LBPWS and LBPWS10 zero: it
            // refuses to unmap rather than writing zeroes in silence (as
            // SCST does; libiscsi's UnmapVPD checks the two agree).
            if unmap && !disk.thin {
                return Err(Sense::invalid_cdb_field(if long { 10 } else { 1 }, Some(3)));
            }
            check_range(disk, lba, u64::from(blocks))?;
            let no_data = info.opcode != WRITE_SAME_10 && flags & 0x01 != 0;
            Action::WriteSame {
                lba,
                blocks,
                unmap,
                no_data,
            }
        }
        (UNMAP, _) => {
            if !disk.thin {
                return Err(sense::INVALID_OPCODE);
            }
            let param_len = u32::from(cdb.be16(7));
            match param_len {
                0 => Action::Done,
                1..=7 => return Err(sense::PARAMETER_LIST_LENGTH_ERROR),
                _ => Action::Unmap { param_len },
            }
        }
        _ => return Err(sense::INVALID_OPCODE),
    };
    if disk.read_only && action.writes() {
        return Err(sense::WRITE_PROTECTED);
    }
    if mode.swp && action.writes() {
        return Err(sense::SOFTWARE_WRITE_PROTECTED);
    }
    Ok(action)
}

/// Whether a command with `opcode` needs the medium: without one, it ends
/// with MEDIUM NOT PRESENT. What the device server answers from its own
/// state (INQUIRY, mode pages, supported operation codes) and what loads
/// the medium or keeps it in runs without one.
fn needs_medium(opcode: u8) -> bool {
    !matches!(
        opcode,
        INQUIRY
            | MODE_SENSE_6
            | MODE_SENSE_10
            | MODE_SELECT_6
            | MODE_SELECT_10
            | START_STOP_UNIT
            | PREVENT_ALLOW_MEDIUM_REMOVAL
            | MAINTENANCE_IN
    )
}

fn check_transfer(cdb: Cdb<'_>, disk: &DiskInfo<'_>, lba: u64, blocks: u32) -> Result<(), Sense> {
    check_range(disk, lba, u64::from(blocks))?;
    if blocks > MAX_TRANSFER_BLOCKS {
        return Err(Sense::invalid_cdb_field(len_field(cdb), None));
    }
    Ok(())
}

/// VPD pages in the order page 00h lists them.
const VPD_PAGES: [u8; 8] = [0x00, 0x80, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2];

/// Standard INQUIRY data and the VPD pages (SPC-4 6.6, 7.8; SBC-3 6.5).
fn inquiry(
    cdb: Cdb<'_>,
    disk: &DiskInfo<'_>,
    mode: &ModeState,
    out: &mut Out<'_>,
) -> Result<(), Sense> {
    let evpd = cdb.u8(1) & 0x01 != 0;
    let page = cdb.u8(2);
    if !evpd {
        if page != 0 {
            return Err(Sense::invalid_cdb_field(2, None));
        }
        out.u8(0x00); // connected direct-access device
        out.u8(if disk.removable { 0x80 } else { 0x00 }); // RMB
        out.u8(0x06); // SPC-4
        out.u8(0x10 | 0x02); // HISUP, response data format 2
        out.u8(91); // additional length: 96 bytes in all
                    // TPGS; 3PC: the core's copy manager takes EXTENDED COPY.
        out.u8((disk.tpgs & 0x3) << 4 | 0x08);
        out.u8(0x00);
        out.u8(0x02); // CMDQUE
        out.ascii(disk.vendor, 8);
        out.ascii(disk.product, 16);
        out.ascii(disk.revision, 4);
        out.zeroes(22);
        // Version descriptors: SAM-5, SPC-4, SBC-3.
        for v in [0x00a0u16, 0x0460, 0x04c0] {
            out.be16(v);
        }
        out.zeroes(96 - 64);
        return Ok(());
    }
    out.u8(0x00);
    out.u8(page);
    out.be16(0); // page length, set below
    match page {
        0x00 => out.put(&VPD_PAGES),
        0x80 => out.put(disk.usn),
        0x83 => {
            // T10 vendor ID based: vendor + device id (ASCII).
            out.put(&[0x02, 0x01, 0x00]);
            out.u8((8 + disk.t10_dev_id.len()) as u8);
            out.ascii(disk.vendor, 8);
            out.put(disk.t10_dev_id);
            // NAA (binary).
            out.put(&[0x01, 0x03, 0x00, 0x08]);
            out.put(&disk.naa_id);
            // Relative target port identifier, associated with the port.
            out.put(&[0x01, 0x14, 0x00, 0x04, 0x00, 0x00]);
            out.be16(disk.rel_tgt_id);
            // Target port group, associated with the port.
            if let Some(group) = disk.target_port_group {
                out.put(&[0x01, 0x15, 0x00, 0x04, 0x00, 0x00]);
                out.be16(group);
            }
        }
        0x86 => {
            out.u8(0x00);
            out.u8(0x07); // HEADSUP, ORDSUP, SIMPSUP
            out.u8(u8::from(mode.wce)); // V_SUP
            out.zeroes(57);
        }
        0xb0 => {
            out.u8(0x00); // WSNZ clear: WRITE SAME takes 0 blocks
            out.u8(MAX_COMPARE_AND_WRITE_BLOCKS as u8);
            // Optimal transfer length granularity: a physical block.
            out.be16(1 << disk.lbppb_exp.min(15));
            out.be32(MAX_TRANSFER_BLOCKS);
            out.be32((1 << 20) / disk.block_size.max(1)); // optimal: 1 MiB
            out.be32(0);
            if disk.thin {
                out.be32(MAX_UNMAP_LBAS);
                out.be32(MAX_UNMAP_DESCRIPTORS);
            } else {
                out.be32(0);
                out.be32(0);
            }
            out.be32(1 << disk.lbppb_exp.min(31)); // optimal unmap granularity
            out.be32(0);
            out.be64(u64::from(MAX_WRITE_SAME_BLOCKS));
            let atomic = disk.atomic.unwrap_or(AtomicLimits {
                max_blocks: 0,
                alignment: 0,
                granularity: 0,
            });
            out.be32(atomic.max_blocks);
            out.be32(atomic.alignment);
            out.be32(atomic.granularity);
            out.zeroes(8); // no atomic boundary
        }
        0xb1 => {
            out.be16(if disk.rotational { 0 } else { 1 });
            out.u8(0);
            // WABEREQ 01b: after a BLOCK ERASE (thin LUNs) blocks read
            // back GOOD, as zeroes.
            out.u8(if disk.thin { 0x40 } else { 0 });
            out.zeroes(56);
        }
        0x8f => xcopy::third_party_copy_vpd(out),
        0xb2 => {
            out.u8(0); // threshold exponent
                       // LBPU, LBPWS, LBPWS10, LBPRZ
            out.u8(if disk.thin {
                0x80 | 0x40 | 0x20 | 0x04
            } else {
                0
            });
            out.u8(if disk.thin { 0x02 } else { 0x00 }); // thin provisioned
            out.u8(0);
        }
        _ => return Err(Sense::invalid_cdb_field(2, None)),
    }
    let len = out.len() - 4;
    out.set_be16(2, len as u16);
    Ok(())
}

/// Mode pages: code, current bytes of the page after its two-byte header,
/// and the changeable mask.
fn mode_page(code: u8, mode: &ModeState, changeable: bool, default: bool) -> Option<[u8; 18]> {
    let mut p = [0u8; 18];
    let state = if default {
        ModeState {
            wce: true,
            d_sense: false,
            tas: false,
            swp: false,
        }
    } else {
        *mode
    };
    match code {
        0x01 | 0x02 | 0x1c => {}
        0x08 => {
            if changeable || state.wce {
                p[0] = 0x04; // WCE
            }
        }
        0x0a => {
            if changeable || state.d_sense {
                p[0] = 0x04; // D_SENSE
            }
            if changeable || state.swp {
                p[2] = 0x08; // SWP
            }
            if changeable || state.tas {
                p[3] = 0x40; // TAS
            }
            if !changeable {
                p[1] = 0x10; // unrestricted reordering allowed
                p[6] = 0xff; // busy timeout: unlimited
                p[7] = 0xff;
            }
        }
        _ => return None,
    }
    Some(p)
}

/// Length of a mode page after its two-byte header.
fn mode_page_len(code: u8) -> usize {
    match code {
        0x02 => 0x0e,
        0x08 => 0x12,
        _ => 0x0a,
    }
}

/// Mode pages returned for page code 3Fh, in ascending order.
const MODE_PAGES: [u8; 5] = [0x01, 0x02, 0x08, 0x0a, 0x1c];

/// MODE SENSE(6/10) (SPC-4 6.11, 6.12).
fn mode_sense(
    cdb: Cdb<'_>,
    disk: &DiskInfo<'_>,
    mode: &ModeState,
    out: &mut Out<'_>,
) -> Result<(), Sense> {
    let ten = cdb.opcode() == MODE_SENSE_10;
    let dbd = cdb.u8(1) & 0x08 != 0;
    let llbaa = ten && cdb.u8(1) & 0x10 != 0;
    let pc = cdb.u8(2) >> 6;
    let page = cdb.u8(2) & 0x3f;
    let subpage = cdb.u8(3);
    if pc == 3 {
        return Err(sense::SAVING_PARAMS_UNSUPPORTED);
    }
    let pages: &[u8] = if page == 0x3f {
        if subpage != 0 && subpage != 0xff {
            return Err(Sense::invalid_cdb_field(3, None));
        }
        &MODE_PAGES
    } else {
        if subpage != 0 {
            return Err(Sense::invalid_cdb_field(3, None));
        }
        match MODE_PAGES.iter().position(|&p| p == page) {
            Some(i) => MODE_PAGES.get(i..=i).unwrap_or(&[]),
            None => return Err(Sense::invalid_cdb_field(2, Some(5))),
        }
    };
    // DPOFUA; WP, by the LUN's configuration or SWP.
    let device_specific = 0x10 | if disk.read_only || mode.swp { 0x80 } else { 0 };
    let bd_len: usize = if dbd {
        0
    } else if llbaa {
        16
    } else {
        8
    };
    if ten {
        out.be16(0);
        out.u8(0);
        out.u8(device_specific);
        out.u8(u8::from(llbaa));
        out.u8(0);
        out.be16(bd_len as u16);
    } else {
        out.u8(0);
        out.u8(0);
        out.u8(device_specific);
        out.u8(bd_len as u8);
    }
    match bd_len {
        8 => {
            out.be32(u32::try_from(disk.blocks).unwrap_or(u32::MAX));
            out.be32(disk.block_size & 0xff_ffff);
        }
        16 => {
            out.be64(disk.blocks);
            out.be32(0);
            out.be32(disk.block_size);
        }
        _ => {}
    }
    for &code in pages {
        let body = mode_page(code, mode, pc == 1, pc == 2).unwrap_or([0; 18]);
        let len = mode_page_len(code);
        out.u8(code);
        out.u8(len as u8);
        out.put(body.get(..len).unwrap_or(&[]));
    }
    let total = out.len();
    if ten {
        out.set_be16(0, (total - 2) as u16);
    } else {
        out.set_u8(0, (total - 1).min(255) as u8);
    }
    Ok(())
}

/// Applies MODE SELECT parameter data: only the changeable bits (WCE,
/// D_SENSE) may differ from the current values; returns the new state.
pub fn mode_select(
    params: &[u8],
    ten: bool,
    disk: &DiskInfo<'_>,
    mode: &ModeState,
) -> Result<ModeState, Sense> {
    let header = if ten { 8 } else { 4 };
    let p = Cdb(params);
    if params.len() < header {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let bd_len = if ten {
        usize::from(p.be16(6))
    } else {
        usize::from(p.u8(3))
    };
    let long = ten && p.u8(4) & 0x01 != 0;
    match (bd_len, long) {
        (0, _) | (8, false) | (16, true) => {}
        _ => return Err(Sense::invalid_param_field(if ten { 6 } else { 3 }, None)),
    }
    if params.len() < header + bd_len {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    if bd_len > 0 {
        let (blocks, size_at, size) = if long {
            (p.be64(header), header + 12, p.be32(header + 12))
        } else {
            (
                u64::from(p.be32(header)),
                header + 5,
                p.be32(header + 4) & 0xff_ffff,
            )
        };
        if size != disk.block_size {
            return Err(Sense::invalid_param_field(size_at as u16, None));
        }
        if blocks != 0 && blocks != disk.blocks.min(if long { u64::MAX } else { 0xffff_ffff }) {
            return Err(Sense::invalid_param_field(header as u16, None));
        }
    }
    let mut new = *mode;
    let mut at = header + bd_len;
    while at < params.len() {
        let code = p.u8(at);
        if code & 0x40 != 0 {
            // Subpage format: no subpages are supported.
            return Err(Sense::invalid_param_field(at as u16, Some(6)));
        }
        let code = code & 0x3f;
        let Some(current) = mode_page(code, mode, false, false) else {
            return Err(Sense::invalid_param_field(at as u16, Some(5)));
        };
        let changeable = mode_page(code, mode, true, false).unwrap_or([0; 18]);
        let len = mode_page_len(code);
        if usize::from(p.u8(at + 1)) != len {
            return Err(Sense::invalid_param_field((at + 1) as u16, None));
        }
        let body = params
            .get(at + 2..at + 2 + len)
            .ok_or(sense::PARAMETER_LIST_LENGTH_ERROR)?;
        for (i, ((&given, &cur), &mask)) in body.iter().zip(&current).zip(&changeable).enumerate() {
            if (given ^ cur) & !mask != 0 {
                return Err(Sense::invalid_param_field((at + 2 + i) as u16, None));
            }
        }
        match code {
            0x08 => new.wce = body.first().is_some_and(|b| b & 0x04 != 0),
            0x0a => {
                new.d_sense = body.first().is_some_and(|b| b & 0x04 != 0);
                new.swp = body.get(2).is_some_and(|b| b & 0x08 != 0);
                new.tas = body.get(3).is_some_and(|b| b & 0x40 != 0);
            }
            _ => {}
        }
        at += 2 + len;
    }
    Ok(new)
}

/// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
fn report_supported_opcodes(
    cdb: Cdb<'_>,
    disk: &DiskInfo<'_>,
    out: &mut Out<'_>,
) -> Result<(), Sense> {
    // Only what this device supports.
    let ops = || {
        OPS.iter().filter(|i| match (i.opcode, i.service_action) {
            (WRITE_ATOMIC_16, _) => disk.atomic.is_some(),
            (SANITIZE, Some(SA_SANITIZE_BLOCK_ERASE)) => disk.thin,
            _ => true,
        })
    };
    let rctd = cdb.u8(2) & 0x80 != 0;
    let options = cdb.u8(2) & 0x07;
    let opcode = cdb.u8(3);
    let sa = cdb.be16(4);
    let timeouts = |out: &mut Out<'_>| {
        out.be16(0x0a);
        out.zeroes(10);
    };
    if options == 0 {
        out.be32(0);
        for info in ops() {
            out.u8(info.opcode);
            out.u8(0);
            out.be16(info.service_action.unwrap_or(0));
            out.u8(0);
            out.u8(if rctd { 0x02 } else { 0 } | u8::from(info.service_action.is_some()));
            out.be16(info.usage.len() as u16);
            if rctd {
                timeouts(out);
            }
        }
        let len = out.len() - 4;
        out.set_be32(0, len as u32);
        return Ok(());
    }
    let has_sa = ops().any(|i| i.opcode == opcode && i.service_action.is_some());
    let found = match options {
        1 if has_sa => return Err(Sense::invalid_cdb_field(2, Some(2))),
        1 => ops().find(|i| i.opcode == opcode),
        2 if !has_sa => return Err(Sense::invalid_cdb_field(2, Some(2))),
        2 => ops().find(|i| i.opcode == opcode && i.service_action == Some(sa)),
        3 => ops().find(|i| {
            i.opcode == opcode && (i.service_action.is_none() || i.service_action == Some(sa))
        }),
        _ => return Err(Sense::invalid_cdb_field(2, Some(2))),
    };
    out.u8(0);
    match found {
        Some(info) => {
            out.u8(if rctd { 0x80 } else { 0 } | 0x03);
            out.be16(info.usage.len() as u16);
            out.put(info.usage);
            if rctd {
                timeouts(out);
            }
        }
        None => {
            out.u8(0x01);
            out.be16(0);
        }
    }
    Ok(())
}

/// GET LBA STATUS parameter data (SBC-3 5.6) with one descriptor: `blocks`
/// blocks from `lba`, mapped or deallocated.
pub fn lba_status(lba: u64, blocks: u32, deallocated: bool, out: &mut Out<'_>) {
    out.be32(20);
    out.zeroes(4);
    out.be64(lba);
    out.be32(blocks);
    out.u8(u8::from(deallocated));
    out.zeroes(3);
}

/// One range of an UNMAP parameter list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmapRange {
    /// First block.
    pub lba: u64,
    /// Number of blocks.
    pub blocks: u32,
}

/// Validates an UNMAP parameter list (SBC-3 5.28) and returns its block
/// descriptors, in order.
pub fn parse_unmap<'p>(
    params: &'p [u8],
    disk: &DiskInfo<'_>,
) -> Result<impl Iterator<Item = UnmapRange> + 'p, Sense> {
    let p = Cdb(params);
    if params.len() < 8 {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let desc_len = usize::from(p.be16(2));
    if usize::from(p.be16(0)) < 6 || desc_len % 16 != 0 || 8 + desc_len > params.len() {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    if desc_len / 16 > MAX_UNMAP_DESCRIPTORS as usize {
        return Err(sense::INVALID_FIELD_IN_PARAMETER_LIST);
    }
    let descs = params.get(8..8 + desc_len).unwrap_or(&[]);
    let mut total = 0u64;
    for d in descs.chunks_exact(16) {
        let d = Cdb(d);
        check_range(disk, d.be64(0), u64::from(d.be32(8)))?;
        total += u64::from(d.be32(8));
    }
    if total > u64::from(MAX_UNMAP_LBAS) {
        return Err(sense::INVALID_FIELD_IN_PARAMETER_LIST);
    }
    Ok(descs.chunks_exact(16).map(|d| {
        let d = Cdb(d);
        UnmapRange {
            lba: d.be64(0),
            blocks: d.be32(8),
        }
    }))
}
