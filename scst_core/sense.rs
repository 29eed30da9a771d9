// SPDX-License-Identifier: GPL-2.0

//! SCSI sense data (SPC-4 4.5): the conditions the target reports and their
//! encoding in fixed (70h) or descriptor (72h) format.
//!
//! Plain `core` Rust, shared with the host test crate.

/// Sense keys (SPC-4 table 48).
pub mod key {
    /// No sense key: used for informational sense.
    pub const NO_SENSE: u8 = 0x0;
    /// The logical unit is not accessible.
    pub const NOT_READY: u8 = 0x2;
    /// Unrecovered media error.
    pub const MEDIUM_ERROR: u8 = 0x3;
    /// Failure the target cannot attribute to the command.
    pub const HARDWARE_ERROR: u8 = 0x4;
    /// Something in the CDB or the parameter data is wrong.
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    /// A condition the initiator must learn about before its next command.
    pub const UNIT_ATTENTION: u8 = 0x6;
    /// Write to a write-protected medium.
    pub const DATA_PROTECT: u8 = 0x7;
    /// EXTENDED COPY stopped on an error of a copy target.
    pub const COPY_ABORTED: u8 = 0xa;
    /// The command was aborted by the target.
    pub const ABORTED_COMMAND: u8 = 0xb;
    /// VERIFY with BYTCHK found different data.
    pub const MISCOMPARE: u8 = 0xe;
}

/// Sense data format chosen by the D_SENSE bit of the control mode page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenseFormat {
    /// Response code 70h.
    Fixed,
    /// Response code 72h.
    Descriptor,
}

/// Where an INVALID FIELD error points (the sense-key specific field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPointer {
    /// The field is in the CDB (C/D = 1) rather than the parameter data.
    pub in_cdb: bool,
    /// Byte offset of the field.
    pub byte: u16,
    /// Bit of the field's most significant bit, when it is not byte-aligned.
    pub bit: Option<u8>,
}

/// One sense condition: key, additional sense code and qualifier, and the
/// optional INFORMATION and field-pointer fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// INFORMATION field (e.g. the first bad LBA).
    pub info: Option<u64>,
    /// Sense-key specific field pointer (ILLEGAL REQUEST only).
    pub field: Option<FieldPointer>,
}

/// Longest sense this module builds: descriptor header, information and
/// sense-key specific descriptors.
pub const MAX_SENSE_LEN: usize = 8 + 12 + 8;

/// Longest sense a logical unit may build itself (SCSI_SENSE_BUFFERSIZE).
pub const MAX_RAW_SENSE_LEN: usize = 96;

/// Length of fixed-format sense as built here (additional length 10).
pub const FIXED_SENSE_LEN: usize = 18;

impl Sense {
    /// A condition with no information or field pointer.
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Self {
            key,
            asc,
            ascq,
            info: None,
            field: None,
        }
    }

    /// The same condition with the INFORMATION field set.
    pub const fn with_info(mut self, info: u64) -> Self {
        self.info = Some(info);
        self
    }

    /// INVALID FIELD IN CDB pointing at `byte` (and `bit`, when given).
    pub const fn invalid_cdb_field(byte: u16, bit: Option<u8>) -> Self {
        let mut s = INVALID_FIELD_IN_CDB;
        s.field = Some(FieldPointer {
            in_cdb: true,
            byte,
            bit,
        });
        s
    }

    /// INVALID FIELD IN PARAMETER LIST pointing at `byte` (and `bit`).
    pub const fn invalid_param_field(byte: u16, bit: Option<u8>) -> Self {
        let mut s = INVALID_FIELD_IN_PARAMETER_LIST;
        s.field = Some(FieldPointer {
            in_cdb: false,
            byte,
            bit,
        });
        s
    }

    /// The three bytes of the sense-key specific field, if any.
    fn sense_key_specific(&self) -> Option<[u8; 3]> {
        let f = self.field?;
        let mut b0 = 0x80; // SKSV
        if f.in_cdb {
            b0 |= 0x40;
        }
        if let Some(bit) = f.bit {
            b0 |= 0x08 | (bit & 0x7);
        }
        let [hi, lo] = f.byte.to_be_bytes();
        Some([b0, hi, lo])
    }

    /// Encodes the sense into `out` and returns its length. `out` must hold
    /// [`MAX_SENSE_LEN`] bytes; a shorter buffer gets a truncated sense.
    pub fn encode(&self, format: SenseFormat, out: &mut [u8]) -> usize {
        let mut buf = [0u8; MAX_SENSE_LEN];
        let len = match format {
            SenseFormat::Fixed => {
                buf[0] = 0x70;
                buf[2] = self.key & 0xf;
                // INFORMATION is four bytes here; VALID only when it fits.
                if let Some(info) = self.info {
                    if let Ok(info) = u32::try_from(info) {
                        buf[0] |= 0x80;
                        buf[3..7].copy_from_slice(&info.to_be_bytes());
                    }
                }
                buf[7] = (FIXED_SENSE_LEN - 8) as u8;
                buf[12] = self.asc;
                buf[13] = self.ascq;
                if let Some(sks) = self.sense_key_specific() {
                    buf[15..18].copy_from_slice(&sks);
                }
                FIXED_SENSE_LEN
            }
            SenseFormat::Descriptor => {
                buf[0] = 0x72;
                buf[1] = self.key & 0xf;
                buf[2] = self.asc;
                buf[3] = self.ascq;
                let mut len = 8;
                if let Some(info) = self.info {
                    buf[len] = 0x00;
                    buf[len + 1] = 0x0a;
                    buf[len + 2] = 0x80;
                    buf[len + 4..len + 12].copy_from_slice(&info.to_be_bytes());
                    len += 12;
                }
                if let Some(sks) = self.sense_key_specific() {
                    buf[len] = 0x02;
                    buf[len + 1] = 0x06;
                    buf[len + 4..len + 7].copy_from_slice(&sks);
                    len += 8;
                }
                buf[7] = (len - 8) as u8;
                len
            }
        };
        let n = len.min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        n
    }
}

/// Decodes key, ASC and ASCQ from sense data of either format.
pub fn decode(sense: &[u8]) -> Option<(u8, u8, u8)> {
    match sense.first()? & 0x7f {
        0x70 | 0x71 => Some((*sense.get(2)? & 0xf, *sense.get(12)?, *sense.get(13)?)),
        0x72 | 0x73 => Some((*sense.get(1)? & 0xf, *sense.get(2)?, *sense.get(3)?)),
        _ => None,
    }
}

/// NO SENSE: no additional sense information.
pub const NO_SENSE: Sense = Sense::new(key::NO_SENSE, 0x00, 0x00);
/// LOGICAL UNIT NOT SUPPORTED.
pub const LUN_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
/// INVALID COMMAND OPERATION CODE.
pub const INVALID_OPCODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
/// INVALID FIELD IN CDB (see [`Sense::invalid_cdb_field`]).
pub const INVALID_FIELD_IN_CDB: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
/// INVALID FIELD IN PARAMETER LIST.
pub const INVALID_FIELD_IN_PARAMETER_LIST: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x00);
/// PARAMETER LIST LENGTH ERROR.
pub const PARAMETER_LIST_LENGTH_ERROR: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x1a, 0x00);
/// LOGICAL BLOCK ADDRESS OUT OF RANGE.
pub const LBA_OUT_OF_RANGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
/// SAVING PARAMETERS NOT SUPPORTED.
pub const SAVING_PARAMS_UNSUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
/// WRITE PROTECTED.
pub const WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x00);
/// UNRECOVERED READ ERROR.
pub const READ_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x00);
/// WRITE ERROR.
pub const WRITE_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x0c, 0x00);
/// SPACE ALLOCATION FAILED WRITE PROTECT: no room to store the data
/// (SBC-4 4.7.3.7).
pub const SPACE_ALLOCATION_FAILED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x07);
/// MISCOMPARE DURING VERIFY OPERATION.
pub const MISCOMPARE_DURING_VERIFY: Sense = Sense::new(key::MISCOMPARE, 0x1d, 0x00);
/// DATA PHASE ERROR: the transport delivered the data out of sequence.
pub const DATA_PHASE_ERROR: Sense = Sense::new(key::ABORTED_COMMAND, 0x4b, 0x00);
/// INVALID MESSAGE ERROR: the initiator's data direction is not the one
/// the command has.
pub const INVALID_MESSAGE: Sense = Sense::new(key::ABORTED_COMMAND, 0x49, 0x00);
/// ABORTED COMMAND with no additional sense: task management ended it.
pub const COMMAND_ABORTED: Sense = Sense::new(key::ABORTED_COMMAND, 0x00, 0x00);
/// INTERNAL TARGET FAILURE.
pub const INTERNAL_TARGET_FAILURE: Sense = Sense::new(key::HARDWARE_ERROR, 0x44, 0x00);
/// COMMANDS CLEARED BY ANOTHER INITIATOR (SPC-4: TAS set, task aborted).
pub const COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: Sense =
    Sense::new(key::UNIT_ATTENTION, 0x2f, 0x00);
/// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
pub const RESET_OCCURRED: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x00);
/// POWER ON OCCURRED: a new I_T nexus.
pub const POWER_ON_OCCURRED: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x01);
/// BUS DEVICE RESET FUNCTION OCCURRED: LUN RESET.
pub const DEVICE_RESET_OCCURRED: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x03);
/// I_T NEXUS LOSS OCCURRED.
pub const NEXUS_LOSS_OCCURRED: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x07);
/// MODE PARAMETERS CHANGED.
pub const MODE_PARAMETERS_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x01);
/// CAPACITY DATA HAS CHANGED.
pub const CAPACITY_DATA_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x09);
/// REPORTED LUNS DATA HAS CHANGED.
pub const REPORTED_LUNS_DATA_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x3f, 0x0e);
/// INQUIRY DATA HAS CHANGED.
pub const INQUIRY_DATA_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x3f, 0x03);
/// LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS.
pub const SANITIZE_IN_PROGRESS: Sense = Sense::new(key::NOT_READY, 0x04, 0x1b);
/// SANITIZE COMMAND FAILED: the medium is in sanitize failure mode.
pub const SANITIZE_COMMAND_FAILED: Sense = Sense::new(key::MEDIUM_ERROR, 0x31, 0x03);
/// LOGICAL UNIT SOFTWARE WRITE PROTECTED (control mode page SWP).
pub const SOFTWARE_WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x02);
/// MEDIUM NOT PRESENT: a removable medium was ejected.
pub const MEDIUM_NOT_PRESENT: Sense = Sense::new(key::NOT_READY, 0x3a, 0x00);
/// MEDIUM REMOVAL PREVENTED: an I_T nexus keeps the medium in.
pub const MEDIUM_REMOVAL_PREVENTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x53, 0x02);
/// NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED: a medium was loaded.
pub const MEDIUM_MAY_HAVE_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x28, 0x00);
/// LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED (stopped unit).
pub const NOT_READY_STOPPED: Sense = Sense::new(key::NOT_READY, 0x04, 0x02);
/// ASYMMETRIC ACCESS STATE CHANGED: a target port group changed state.
pub const ASYMMETRIC_ACCESS_STATE_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x2a, 0x06);
/// LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION.
pub const ALUA_TRANSITIONING: Sense = Sense::new(key::NOT_READY, 0x04, 0x0a);
/// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE.
pub const ALUA_STANDBY: Sense = Sense::new(key::NOT_READY, 0x04, 0x0b);
/// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE.
pub const ALUA_UNAVAILABLE: Sense = Sense::new(key::NOT_READY, 0x04, 0x0c);
/// LOGICAL UNIT NOT READY, OFFLINE.
pub const ALUA_OFFLINE: Sense = Sense::new(key::NOT_READY, 0x04, 0x12);
