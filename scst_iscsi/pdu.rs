// SPDX-License-Identifier: GPL-2.0

//! iSCSI PDU framing (RFC 7143, section 11): the 48-byte Basic Header
//! Segment and the length of the PDU it announces, decoders of the
//! initiator PDUs, encoders of the target PDUs, sequence number arithmetic
//! and the CRC32C digest.
//!
//! Plain `core` Rust, no allocation: the receive path and the host tests
//! share it.

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// Length of a CRC32C digest.
pub const DIGEST_LEN: usize = 4;

/// Largest DataSegmentLength the 24-bit field can carry.
pub const MAX_DATA_SEGMENT_LEN: u32 = (1 << 24) - 1;

/// Opcodes an initiator sends (RFC 7143, 11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitiatorOpcode {
    /// NOP-Out
    NopOut = 0x00,
    /// SCSI Command
    ScsiCommand = 0x01,
    /// SCSI Task Management Function Request
    TaskMgmtRequest = 0x02,
    /// Login Request
    LoginRequest = 0x03,
    /// Text Request
    TextRequest = 0x04,
    /// SCSI Data-Out
    DataOut = 0x05,
    /// Logout Request
    LogoutRequest = 0x06,
    /// SNACK Request
    SnackRequest = 0x10,
}

impl InitiatorOpcode {
    /// Decodes the low six bits of byte 0.
    pub fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x00 => Self::NopOut,
            0x01 => Self::ScsiCommand,
            0x02 => Self::TaskMgmtRequest,
            0x03 => Self::LoginRequest,
            0x04 => Self::TextRequest,
            0x05 => Self::DataOut,
            0x06 => Self::LogoutRequest,
            0x10 => Self::SnackRequest,
            _ => return None,
        })
    }
}

/// Opcodes a target sends (RFC 7143, 11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOpcode {
    /// NOP-In
    NopIn = 0x20,
    /// SCSI Response
    ScsiResponse = 0x21,
    /// SCSI Task Management Function Response
    TaskMgmtResponse = 0x22,
    /// Login Response
    LoginResponse = 0x23,
    /// Text Response
    TextResponse = 0x24,
    /// SCSI Data-In
    DataIn = 0x25,
    /// Logout Response
    LogoutResponse = 0x26,
    /// Ready To Transfer
    R2t = 0x31,
    /// Asynchronous Message
    AsyncMessage = 0x32,
    /// Reject
    Reject = 0x3f,
}

/// Reasons of a Reject PDU (RFC 7143, 11.17.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Data (payload) digest error
    DataDigestError = 0x02,
    /// SNACK Reject
    SnackReject = 0x03,
    /// Protocol Error
    ProtocolError = 0x04,
    /// Command not supported
    CommandNotSupported = 0x05,
    /// Immediate command reject: too many immediate commands
    TooManyImmediateCommands = 0x06,
    /// Task in progress
    TaskInProgress = 0x07,
    /// Invalid data ack
    InvalidDataAck = 0x08,
    /// Invalid PDU field
    InvalidPduField = 0x09,
    /// Long op reject: cannot generate a Target Transfer Tag
    LongOpReject = 0x0a,
    /// Waiting for Logout
    WaitingForLogout = 0x0c,
}

/// Why a received header cannot be processed, and the Reject it earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BhsError {
    /// An opcode that initiators do not send.
    UnknownOpcode(u8),
    /// A data segment longer than this side's MaxRecvDataSegmentLength.
    DataSegmentTooLong {
        /// What the header announced.
        len: u32,
        /// The negotiated limit.
        max: u32,
    },
}

impl BhsError {
    /// The reason code of the Reject PDU to answer with.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            Self::UnknownOpcode(_) => RejectReason::CommandNotSupported,
            Self::DataSegmentTooLong { .. } => RejectReason::ProtocolError,
        }
    }
}

/// The fields common to every initiator PDU's Basic Header Segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bhs {
    /// The opcode.
    pub opcode: InitiatorOpcode,
    /// The I bit: an immediate command.
    pub immediate: bool,
    /// The F bit: the final PDU of a sequence.
    pub final_pdu: bool,
    /// Length of the Additional Header Segments, in bytes.
    pub ahs_len: usize,
    /// Length of the data segment, in bytes, without padding.
    pub data_segment_len: u32,
    /// Bytes 8-15: the LUN, or opcode-specific.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
}

impl Bhs {
    /// Decodes a received header, checking the data segment against
    /// `max_recv_data_segment_len`.
    pub fn parse(bytes: &[u8; BHS_LEN], max_recv_data_segment_len: u32) -> Result<Self, BhsError> {
        let bits = bytes[0] & 0x3f;
        let opcode = InitiatorOpcode::from_bits(bits).ok_or(BhsError::UnknownOpcode(bits))?;
        let data_segment_len = u32::from_be_bytes([0, bytes[5], bytes[6], bytes[7]]);
        if data_segment_len > max_recv_data_segment_len {
            return Err(BhsError::DataSegmentTooLong {
                len: data_segment_len,
                max: max_recv_data_segment_len,
            });
        }
        let [_, _, _, _, _, _, _, _, l0, l1, l2, l3, l4, l5, l6, l7, t0, t1, t2, t3, ..] = *bytes;
        Ok(Self {
            opcode,
            immediate: bytes[0] & 0x40 != 0,
            final_pdu: bytes[1] & 0x80 != 0,
            ahs_len: usize::from(bytes[4]) * 4,
            data_segment_len,
            lun: [l0, l1, l2, l3, l4, l5, l6, l7],
            itt: u32::from_be_bytes([t0, t1, t2, t3]),
        })
    }

    /// Bytes that follow the BHS on the wire: AHS, header digest, the data
    /// segment padded to 4 bytes, and the data digest (if there is data).
    pub fn bytes_after_bhs(&self, header_digest: bool, data_digest: bool) -> usize {
        let data = self.data_segment_len as usize;
        let mut len = self.ahs_len + padded(data);
        if header_digest {
            len += DIGEST_LEN;
        }
        if data_digest && data > 0 {
            len += DIGEST_LEN;
        }
        len
    }
}

/// `len` rounded up to the 4-byte boundary that data segments are padded to.
pub const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// Writes the 24-bit DataSegmentLength into bytes 5-7 of a header.
pub fn set_data_segment_len(bytes: &mut [u8; BHS_LEN], len: u32) -> Result<(), u32> {
    if len > MAX_DATA_SEGMENT_LEN {
        return Err(len);
    }
    let [_, a, b, c] = len.to_be_bytes();
    bytes[5] = a;
    bytes[6] = b;
    bytes[7] = c;
    Ok(())
}

// ---------------------------------------------------------------------------
// Field access. Offsets are literals; the const assertions turn a wrong one
// into a build error instead of a runtime panic or a silent short copy.

/// Reads the `N` bytes at offset `AT`.
fn field<const AT: usize, const N: usize>(bhs: &[u8; BHS_LEN]) -> [u8; N] {
    const { assert!(AT + N <= BHS_LEN) };
    let mut out = [0; N];
    for (dst, src) in out.iter_mut().zip(bhs.iter().skip(AT)) {
        *dst = *src;
    }
    out
}

/// Reads the big-endian 32-bit field at offset `AT`.
fn be32<const AT: usize>(bhs: &[u8; BHS_LEN]) -> u32 {
    u32::from_be_bytes(field::<AT, 4>(bhs))
}

/// Reads the big-endian 16-bit field at offset `AT`.
fn be16<const AT: usize>(bhs: &[u8; BHS_LEN]) -> u16 {
    u16::from_be_bytes(field::<AT, 2>(bhs))
}

/// Writes `value` at offset `AT`.
fn set_field<const AT: usize, const N: usize>(bhs: &mut [u8; BHS_LEN], value: [u8; N]) {
    const { assert!(AT + N <= BHS_LEN) };
    for (dst, src) in bhs.iter_mut().skip(AT).zip(value) {
        *dst = src;
    }
}

/// Writes a big-endian 32-bit field at offset `AT`.
fn set_be32<const AT: usize>(bhs: &mut [u8; BHS_LEN], value: u32) {
    set_field::<AT, 4>(bhs, value.to_be_bytes());
}

/// Writes a big-endian 16-bit field at offset `AT`.
fn set_be16<const AT: usize>(bhs: &mut [u8; BHS_LEN], value: u16) {
    set_field::<AT, 2>(bhs, value.to_be_bytes());
}

/// Byte 0 bit 6 of initiator PDUs: the I (immediate delivery) bit.
const IMMEDIATE_BIT: u8 = 0x40;
/// Byte 1 bit 7: the F (final) bit, or T (transit) in Login PDUs; also the
/// bit that is always 1 in PDUs with no such flag.
const FINAL_BIT: u8 = 0x80;
/// Byte 1 bit 6 of Text and Login PDUs: the C (continue) bit.
const CONTINUE_BIT: u8 = 0x40;

/// Value of the ITT, TTT and SNACK Tag fields that carry no tag.
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Starts a target header: all 48 bytes zeroed, then opcode, byte 1 flags
/// and the 24-bit DataSegmentLength (TotalAHSLength stays 0: targets here
/// send no AHS).
fn start_target_header(
    bhs: &mut [u8; BHS_LEN],
    opcode: TargetOpcode,
    flags: u8,
    data_segment_len: u32,
) {
    *bhs = [0; BHS_LEN];
    bhs[0] = opcode as u8;
    bhs[1] = flags;
    let [_, a, b, c] = (data_segment_len & MAX_DATA_SEGMENT_LEN).to_be_bytes();
    set_field::<5, 3>(bhs, [a, b, c]);
}

/// Writes StatSN, ExpCmdSN and MaxCmdSN (bytes 24-35), which most target
/// PDUs carry at the same offsets.
fn set_sequence_numbers(bhs: &mut [u8; BHS_LEN], stat_sn: u32, exp_cmd_sn: u32, max_cmd_sn: u32) {
    set_be32::<24>(bhs, stat_sn);
    set_be32::<28>(bhs, exp_cmd_sn);
    set_be32::<32>(bhs, max_cmd_sn);
}

/// `flag` if `on`, else 0.
const fn bit(on: bool, flag: u8) -> u8 {
    if on {
        flag
    } else {
        0
    }
}

// ---------------------------------------------------------------------------
// Initiator PDUs (decoders). They check nothing: the caller validates the
// fields against the session state and answers with a Reject if needed.

/// SCSI Command (RFC 7143, 11.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiCommandPdu {
    /// I bit.
    pub immediate: bool,
    /// F bit: no unsolicited Data-Out follows.
    pub final_pdu: bool,
    /// R bit: data is expected from the target.
    pub read: bool,
    /// W bit: data is expected from the initiator.
    pub write: bool,
    /// Task Attribute (3 bits).
    pub attr: u8,
    /// Logical Unit Number.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length.
    pub expected_data_transfer_length: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// The first 16 bytes of the CDB (longer ones continue in an AHS).
    pub cdb: [u8; 16],
}

impl ScsiCommandPdu {
    /// Decodes the header.
    pub fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        Self {
            immediate: bhs[0] & IMMEDIATE_BIT != 0,
            final_pdu: bhs[1] & FINAL_BIT != 0,
            read: bhs[1] & 0x40 != 0,
            write: bhs[1] & 0x20 != 0,
            attr: bhs[1] & 0x07,
            lun: field::<8, 8>(bhs),
            itt: be32::<16>(bhs),
            expected_data_transfer_length: be32::<20>(bhs),
            cmd_sn: be32::<24>(bhs),
            exp_stat_sn: be32::<28>(bhs),
            cdb: field::<32, 16>(bhs),
        }
    }
}

/// SCSI Data-Out (RFC 7143, 11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOutPdu {
    /// F bit: the last PDU of this sequence.
    pub final_pdu: bool,
    /// LUN (meaningful when answering an R2T).
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag of the R2T answered, or [`RESERVED_TAG`].
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset.
    pub buffer_offset: u32,
}

impl DataOutPdu {
    /// Decodes the header.
    pub fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        Self {
            final_pdu: bhs[1] & FINAL_BIT != 0,
            lun: field::<8, 8>(bhs),
            itt: be32::<16>(bhs),
            ttt: be32::<20>(bhs),
            exp_stat_sn: be32::<28>(bhs),
            data_sn: be32::<36>(bhs),
            buffer_offset: be32::<40>(bhs),
        }
    }
}

/// NOP-Out (RFC 7143, 11.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopOutPdu {
    /// I bit.
    pub immediate: bool,
    /// LUN.
    pub lun: [u8; 8],
    /// Initiator Task Tag; [`RESERVED_TAG`] when answering a NOP-In.
    pub itt: u32,
    /// Target Transfer Tag of the NOP-In answered, or [`RESERVED_TAG`].
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl NopOutPdu {
    /// Decodes the header.
    pub fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        Self {
            immediate: bhs[0] & IMMEDIATE_BIT != 0,
            lun: field::<8, 8>(bhs),
            itt: be32::<16>(bhs),
            ttt: be32::<20>(bhs),
            cmd_sn: be32::<24>(bhs),
            exp_stat_sn: be32::<28>(bhs),
        }
    }
}

/// Task management functions (RFC 7143, 11.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TmfFunction {
    /// ABORT TASK
    AbortTask = 1,
    /// ABORT TASK SET
    AbortTaskSet = 2,
    /// CLEAR ACA
    ClearAca = 3,
    /// CLEAR TASK SET
    ClearTaskSet = 4,
    /// LOGICAL UNIT RESET
    LogicalUnitReset = 5,
    /// TARGET WARM RESET
    TargetWarmReset = 6,
    /// TARGET COLD RESET
    TargetColdReset = 7,
    /// TASK REASSIGN
    TaskReassign = 8,
}

impl TmfFunction {
    /// Decodes the Function field; `None` for codes RFC 7143 does not define.
    pub fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::AbortTask,
            2 => Self::AbortTaskSet,
            3 => Self::ClearAca,
            4 => Self::ClearTaskSet,
            5 => Self::LogicalUnitReset,
            6 => Self::TargetWarmReset,
            7 => Self::TargetColdReset,
            8 => Self::TaskReassign,
            _ => return None,
        })
    }
}

/// Response codes of a Task Management Function Response (RFC 7143, 11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TmfResponse {
    /// Function complete
    Complete = 0,
    /// Task does not exist
    TaskDoesNotExist = 1,
    /// LUN does not exist
    LunDoesNotExist = 2,
    /// Task still allegiant
    TaskStillAllegiant = 3,
    /// Task allegiance reassignment not supported
    ReassignmentNotSupported = 4,
    /// Task management function not supported
    NotSupported = 5,
    /// Function authorization failed
    AuthorizationFailed = 6,
    /// Function rejected
    Rejected = 255,
}

impl TmfResponse {
    /// Decodes a response code; `None` for codes RFC 7143 does not define.
    pub fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Complete,
            1 => Self::TaskDoesNotExist,
            2 => Self::LunDoesNotExist,
            3 => Self::TaskStillAllegiant,
            4 => Self::ReassignmentNotSupported,
            5 => Self::NotSupported,
            6 => Self::AuthorizationFailed,
            255 => Self::Rejected,
            _ => return None,
        })
    }
}

/// SCSI Task Management Function Request (RFC 7143, 11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMgmtPdu {
    /// I bit.
    pub immediate: bool,
    /// Function (7 bits); see [`TmfFunction::from_u8`].
    pub function: u8,
    /// LUN.
    pub lun: [u8; 8],
    /// Initiator Task Tag of this request.
    pub itt: u32,
    /// ITT of the task to abort or reassign, or [`RESERVED_TAG`].
    pub referenced_task_tag: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// RefCmdSN: CmdSN of the referenced task.
    pub ref_cmd_sn: u32,
    /// ExpDataSN (TASK REASSIGN).
    pub exp_data_sn: u32,
}

impl TaskMgmtPdu {
    /// Decodes the header.
    pub fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        Self {
            immediate: bhs[0] & IMMEDIATE_BIT != 0,
            function: bhs[1] & 0x7f,
            lun: field::<8, 8>(bhs),
            itt: be32::<16>(bhs),
            referenced_task_tag: be32::<20>(bhs),
            cmd_sn: be32::<24>(bhs),
            exp_stat_sn: be32::<28>(bhs),
            ref_cmd_sn: be32::<32>(bhs),
            exp_data_sn: be32::<36>(bhs),
        }
    }
}

/// Logout Request (RFC 7143, 11.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutPdu {
    /// I bit.
    pub immediate: bool,
    /// Reason Code (7 bits): 0 session, 1 connection, 2 for recovery.
    pub reason: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// CID of the connection to close.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl LogoutPdu {
    /// Decodes the header.
    pub fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        Self {
            immediate: bhs[0] & IMMEDIATE_BIT != 0,
            reason: bhs[1] & 0x7f,
            itt: be32::<16>(bhs),
            cid: be16::<20>(bhs),
            cmd_sn: be32::<24>(bhs),
            exp_stat_sn: be32::<28>(bhs),
        }
    }
}

/// Text Request (RFC 7143, 11.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPdu {
    /// I bit.
    pub immediate: bool,
    /// F bit: the initiator's text is complete.
    pub final_pdu: bool,
    /// C bit: the text continues in the next PDU.
    pub cont: bool,
    /// LUN.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag of the response continued, or [`RESERVED_TAG`].
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl TextPdu {
    /// Decodes the header.
    pub fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        Self {
            immediate: bhs[0] & IMMEDIATE_BIT != 0,
            final_pdu: bhs[1] & FINAL_BIT != 0,
            cont: bhs[1] & CONTINUE_BIT != 0,
            lun: field::<8, 8>(bhs),
            itt: be32::<16>(bhs),
            ttt: be32::<20>(bhs),
            cmd_sn: be32::<24>(bhs),
            exp_stat_sn: be32::<28>(bhs),
        }
    }
}

/// Login Request (RFC 7143, 11.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginPdu {
    /// I bit (RFC 7143 requires it set).
    pub immediate: bool,
    /// T bit: the initiator is ready to go to stage `nsg`.
    pub transit: bool,
    /// C bit: the text continues in the next PDU.
    pub cont: bool,
    /// Current stage (2 bits).
    pub csg: u8,
    /// Next stage (2 bits); meaningful only with `transit`.
    pub nsg: u8,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// Initiator Session ID.
    pub isid: [u8; 6],
    /// Target Session Identifying Handle (0 for a new session).
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl LoginPdu {
    /// Decodes the header.
    pub fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        Self {
            immediate: bhs[0] & IMMEDIATE_BIT != 0,
            transit: bhs[1] & FINAL_BIT != 0,
            cont: bhs[1] & CONTINUE_BIT != 0,
            csg: (bhs[1] >> 2) & 0x03,
            nsg: bhs[1] & 0x03,
            version_max: bhs[2],
            version_min: bhs[3],
            isid: field::<8, 6>(bhs),
            tsih: be16::<14>(bhs),
            itt: be32::<16>(bhs),
            cid: be16::<20>(bhs),
            cmd_sn: be32::<24>(bhs),
            exp_stat_sn: be32::<28>(bhs),
        }
    }
}

/// SNACK Request (RFC 7143, 11.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnackPdu {
    /// Type (4 bits): 0 Data/R2T, 1 Status, 2 DataACK, 3 R-Data.
    pub snack_type: u8,
    /// LUN.
    pub lun: [u8; 8],
    /// Initiator Task Tag, or [`RESERVED_TAG`].
    pub itt: u32,
    /// Target Transfer Tag or SNACK Tag, or [`RESERVED_TAG`].
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// BegRun: first DataSN, R2TSN or StatSN requested.
    pub beg_run: u32,
    /// RunLength: how many; 0 for all from `beg_run` on.
    pub run_length: u32,
}

impl SnackPdu {
    /// Decodes the header.
    pub fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        Self {
            snack_type: bhs[1] & 0x0f,
            lun: field::<8, 8>(bhs),
            itt: be32::<16>(bhs),
            ttt: be32::<20>(bhs),
            exp_stat_sn: be32::<28>(bhs),
            beg_run: be32::<40>(bhs),
            run_length: be32::<44>(bhs),
        }
    }
}

// ---------------------------------------------------------------------------
// Target PDUs (encoders). Each writes all 48 bytes, reserved ones as 0.
// `data_segment_len` must not exceed MAX_DATA_SEGMENT_LEN (the peer's
// MaxRecvDataSegmentLength bounds it far below); only its low 24 bits are
// written.

/// The residual of a command (RFC 7143, 11.4.5): the O/U bits and the
/// count in its SCSI Response or final Data-In.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Residual {
    /// The command wanted to move more than the expected length.
    pub overflow: bool,
    /// Less than the expected length moved.
    pub underflow: bool,
    /// Bytes not transferred (underflow) or that did not fit (overflow).
    pub count: u32,
}

impl Residual {
    /// For an initiator's expected length `edtl` and the bytes the CDB
    /// asked to move (`None` when the command failed before moving data):
    /// the transfer is the smaller of the two, the residual the difference.
    pub fn of(edtl: u32, transfer_len: Option<usize>) -> Self {
        let Some(wanted) = transfer_len else {
            return Self::default();
        };
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        if wanted > edtl {
            Self {
                overflow: true,
                underflow: false,
                count: wanted - edtl,
            }
        } else if wanted < edtl {
            Self {
                overflow: false,
                underflow: true,
                count: edtl - wanted,
            }
        } else {
            Self::default()
        }
    }
}

/// SCSI Response (RFC 7143, 11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiResponse {
    /// o bit: bidirectional read residual overflow.
    pub bidi_overflow: bool,
    /// u bit: bidirectional read residual underflow.
    pub bidi_underflow: bool,
    /// O bit: residual overflow.
    pub overflow: bool,
    /// U bit: residual underflow.
    pub underflow: bool,
    /// Response: 0 command completed at target, 1 target failure.
    pub response: u8,
    /// SCSI status.
    pub status: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// ExpDataSN: Data-In PDUs sent for the command (R2Ts for writes).
    pub exp_data_sn: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Bidirectional Read Residual Count; written only with o or u.
    pub bidi_residual_count: u32,
    /// Residual Count; written only with O or U.
    pub residual_count: u32,
    /// Length of the sense data segment.
    pub data_segment_len: u32,
}

impl ScsiResponse {
    /// Writes the header (SNACK Tag 0).
    pub fn encode(&self, bhs: &mut [u8; BHS_LEN]) {
        let flags = FINAL_BIT
            | bit(self.bidi_overflow, 0x10)
            | bit(self.bidi_underflow, 0x08)
            | bit(self.overflow, 0x04)
            | bit(self.underflow, 0x02);
        start_target_header(
            bhs,
            TargetOpcode::ScsiResponse,
            flags,
            self.data_segment_len,
        );
        bhs[2] = self.response;
        bhs[3] = self.status;
        set_be32::<16>(bhs, self.itt);
        set_sequence_numbers(bhs, self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn);
        set_be32::<36>(bhs, self.exp_data_sn);
        if self.bidi_overflow || self.bidi_underflow {
            set_be32::<40>(bhs, self.bidi_residual_count);
        }
        if self.overflow || self.underflow {
            set_be32::<44>(bhs, self.residual_count);
        }
    }
}

/// SCSI Data-In (RFC 7143, 11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataIn {
    /// F bit: the last PDU of the sequence (forced on with `status_present`,
    /// as RFC 7143 requires).
    pub final_pdu: bool,
    /// A bit: the initiator must acknowledge (DataACK SNACK).
    pub ack: bool,
    /// O bit; written only with `status_present`.
    pub overflow: bool,
    /// U bit; written only with `status_present`.
    pub underflow: bool,
    /// S bit: this PDU carries the command's status (phase collapse).
    pub status_present: bool,
    /// SCSI status; written only with `status_present`.
    pub status: u8,
    /// LUN; written only with `ack` (reserved otherwise).
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag; written only with `ack`, else [`RESERVED_TAG`].
    pub ttt: u32,
    /// StatSN; written only with `status_present`.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset of this PDU's data.
    pub buffer_offset: u32,
    /// Residual Count; written only with `status_present` and O or U.
    pub residual_count: u32,
    /// Length of the data in this PDU.
    pub data_segment_len: u32,
}

impl DataIn {
    /// Writes the header.
    pub fn encode(&self, bhs: &mut [u8; BHS_LEN]) {
        let status = self.status_present;
        let flags = bit(self.final_pdu || status, FINAL_BIT)
            | bit(self.ack, 0x40)
            | bit(status && self.overflow, 0x04)
            | bit(status && self.underflow, 0x02)
            | bit(status, 0x01);
        start_target_header(bhs, TargetOpcode::DataIn, flags, self.data_segment_len);
        set_be32::<16>(bhs, self.itt);
        if self.ack {
            set_field::<8, 8>(bhs, self.lun);
            set_be32::<20>(bhs, self.ttt);
        } else {
            set_be32::<20>(bhs, RESERVED_TAG);
        }
        set_be32::<28>(bhs, self.exp_cmd_sn);
        set_be32::<32>(bhs, self.max_cmd_sn);
        set_be32::<36>(bhs, self.data_sn);
        set_be32::<40>(bhs, self.buffer_offset);
        if status {
            bhs[3] = self.status;
            set_be32::<24>(bhs, self.stat_sn);
            if self.overflow || self.underflow {
                set_be32::<44>(bhs, self.residual_count);
            }
        }
    }
}

/// Ready To Transfer (RFC 7143, 11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2t {
    /// LUN.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag the Data-Out PDUs will carry.
    pub ttt: u32,
    /// StatSN (the next one, not advanced by an R2T).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer Offset requested.
    pub buffer_offset: u32,
    /// Desired Data Transfer Length.
    pub desired_data_transfer_length: u32,
}

impl R2t {
    /// Writes the header (no data segment).
    pub fn encode(&self, bhs: &mut [u8; BHS_LEN]) {
        start_target_header(bhs, TargetOpcode::R2t, FINAL_BIT, 0);
        set_field::<8, 8>(bhs, self.lun);
        set_be32::<16>(bhs, self.itt);
        set_be32::<20>(bhs, self.ttt);
        set_sequence_numbers(bhs, self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn);
        set_be32::<36>(bhs, self.r2t_sn);
        set_be32::<40>(bhs, self.buffer_offset);
        set_be32::<44>(bhs, self.desired_data_transfer_length);
    }
}

/// NOP-In (RFC 7143, 11.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopIn {
    /// LUN.
    pub lun: [u8; 8],
    /// ITT of the NOP-Out answered, or [`RESERVED_TAG`] for a ping.
    pub itt: u32,
    /// Target Transfer Tag the initiator must echo, or [`RESERVED_TAG`].
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Length of the ping data.
    pub data_segment_len: u32,
}

impl NopIn {
    /// Writes the header.
    pub fn encode(&self, bhs: &mut [u8; BHS_LEN]) {
        start_target_header(bhs, TargetOpcode::NopIn, FINAL_BIT, self.data_segment_len);
        set_field::<8, 8>(bhs, self.lun);
        set_be32::<16>(bhs, self.itt);
        set_be32::<20>(bhs, self.ttt);
        set_sequence_numbers(bhs, self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn);
    }
}

/// Login Response (RFC 7143, 11.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginResponse {
    /// T bit: the target agrees to go to stage `nsg`.
    pub transit: bool,
    /// C bit: the text continues in the next PDU.
    pub cont: bool,
    /// Current stage (2 bits).
    pub csg: u8,
    /// Next stage (2 bits); written only with `transit`.
    pub nsg: u8,
    /// Version-max.
    pub version_max: u8,
    /// Version-active.
    pub version_active: u8,
    /// ISID of the request.
    pub isid: [u8; 6],
    /// TSIH (assigned on the final response of a leading login).
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Status-Class (0 success).
    pub status_class: u8,
    /// Status-Detail.
    pub status_detail: u8,
    /// Length of the text.
    pub data_segment_len: u32,
}

impl LoginResponse {
    /// Writes the header.
    pub fn encode(&self, bhs: &mut [u8; BHS_LEN]) {
        let nsg = if self.transit { self.nsg & 0x03 } else { 0 };
        let flags = bit(self.transit, FINAL_BIT)
            | bit(self.cont, CONTINUE_BIT)
            | (self.csg & 0x03) << 2
            | nsg;
        start_target_header(
            bhs,
            TargetOpcode::LoginResponse,
            flags,
            self.data_segment_len,
        );
        bhs[2] = self.version_max;
        bhs[3] = self.version_active;
        set_field::<8, 6>(bhs, self.isid);
        set_be16::<14>(bhs, self.tsih);
        set_be32::<16>(bhs, self.itt);
        set_sequence_numbers(bhs, self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn);
        bhs[36] = self.status_class;
        bhs[37] = self.status_detail;
    }
}

/// Text Response (RFC 7143, 11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextResponse {
    /// F bit: the target's text is complete (then `ttt` is [`RESERVED_TAG`]).
    pub final_pdu: bool,
    /// C bit: the text continues in the next PDU.
    pub cont: bool,
    /// LUN.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag the initiator must echo, or [`RESERVED_TAG`].
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Length of the text.
    pub data_segment_len: u32,
}

impl TextResponse {
    /// Writes the header.
    pub fn encode(&self, bhs: &mut [u8; BHS_LEN]) {
        let flags = bit(self.final_pdu, FINAL_BIT) | bit(self.cont, CONTINUE_BIT);
        start_target_header(
            bhs,
            TargetOpcode::TextResponse,
            flags,
            self.data_segment_len,
        );
        set_field::<8, 8>(bhs, self.lun);
        set_be32::<16>(bhs, self.itt);
        set_be32::<20>(bhs, self.ttt);
        set_sequence_numbers(bhs, self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn);
    }
}

/// Logout Response (RFC 7143, 11.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutResponse {
    /// Response: 0 closed, 1 CID not found, 2 recovery not supported,
    /// 3 cleanup failed.
    pub response: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Time2Wait, seconds.
    pub time2wait: u16,
    /// Time2Retain, seconds.
    pub time2retain: u16,
}

impl LogoutResponse {
    /// Writes the header (no data segment).
    pub fn encode(&self, bhs: &mut [u8; BHS_LEN]) {
        start_target_header(bhs, TargetOpcode::LogoutResponse, FINAL_BIT, 0);
        bhs[2] = self.response;
        set_be32::<16>(bhs, self.itt);
        set_sequence_numbers(bhs, self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn);
        set_be16::<40>(bhs, self.time2wait);
        set_be16::<42>(bhs, self.time2retain);
    }
}

/// SCSI Task Management Function Response (RFC 7143, 11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMgmtResponse {
    /// Response code; see [`TmfResponse`].
    pub response: u8,
    /// Initiator Task Tag of the request.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

impl TaskMgmtResponse {
    /// Writes the header (no data segment).
    pub fn encode(&self, bhs: &mut [u8; BHS_LEN]) {
        start_target_header(bhs, TargetOpcode::TaskMgmtResponse, FINAL_BIT, 0);
        bhs[2] = self.response;
        set_be32::<16>(bhs, self.itt);
        set_sequence_numbers(bhs, self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn);
    }
}

/// Reject (RFC 7143, 11.17); the data segment is the rejected header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// Reason.
    pub reason: RejectReason,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN or R2TSN (for a SNACK reject), else 0.
    pub data_sn_r2t_sn: u32,
    /// Length of the data segment (normally [`BHS_LEN`]).
    pub data_segment_len: u32,
}

impl Reject {
    /// Writes the header (ITT [`RESERVED_TAG`]).
    pub fn encode(&self, bhs: &mut [u8; BHS_LEN]) {
        start_target_header(bhs, TargetOpcode::Reject, FINAL_BIT, self.data_segment_len);
        bhs[2] = self.reason as u8;
        set_be32::<16>(bhs, RESERVED_TAG);
        set_sequence_numbers(bhs, self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn);
        set_be32::<36>(bhs, self.data_sn_r2t_sn);
    }
}

/// AsyncEvent 0: a SCSI asynchronous event; the data segment holds
/// SenseLength and sense data (RFC 7143, 11.9.1).
pub const ASYNC_EVENT_SCSI: u8 = 0;

/// Asynchronous Message (RFC 7143, 11.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncMessage {
    /// LUN (for SCSI asynchronous events), else zeros.
    pub lun: [u8; 8],
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// AsyncEvent.
    pub async_event: u8,
    /// AsyncVCode (vendor code for event 255).
    pub async_vcode: u8,
    /// Parameter1.
    pub parameter1: u16,
    /// Parameter2.
    pub parameter2: u16,
    /// Parameter3.
    pub parameter3: u16,
    /// Length of the sense or iSCSI event data.
    pub data_segment_len: u32,
}

impl AsyncMessage {
    /// Writes the header (ITT [`RESERVED_TAG`]).
    pub fn encode(&self, bhs: &mut [u8; BHS_LEN]) {
        start_target_header(
            bhs,
            TargetOpcode::AsyncMessage,
            FINAL_BIT,
            self.data_segment_len,
        );
        set_field::<8, 8>(bhs, self.lun);
        set_be32::<16>(bhs, RESERVED_TAG);
        set_sequence_numbers(bhs, self.stat_sn, self.exp_cmd_sn, self.max_cmd_sn);
        bhs[36] = self.async_event;
        bhs[37] = self.async_vcode;
        set_be16::<38>(bhs, self.parameter1);
        set_be16::<40>(bhs, self.parameter2);
        set_be16::<42>(bhs, self.parameter3);
    }
}

// ---------------------------------------------------------------------------
// Sequence numbers: 32-bit serial number arithmetic (RFC 1982), which
// RFC 7143 prescribes for CmdSN, StatSN, DataSN and R2TSN so that they may
// wrap. Numbers exactly 2^31 apart are unordered: every comparison is false.

/// `a` precedes `b`.
pub const fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

/// `a` precedes or equals `b`.
pub const fn sn_le(a: u32, b: u32) -> bool {
    a == b || sn_lt(a, b)
}

/// `a` follows `b`.
pub const fn sn_gt(a: u32, b: u32) -> bool {
    sn_lt(b, a)
}

/// `a` follows or equals `b`.
pub const fn sn_ge(a: u32, b: u32) -> bool {
    a == b || sn_gt(a, b)
}

/// `cmd_sn` lies in the command window [ExpCmdSN, MaxCmdSN] (RFC 7143,
/// 4.2.2.1); non-immediate commands outside it are dropped. The window is
/// empty when `max_cmd_sn` is `exp_cmd_sn - 1`.
pub const fn cmd_sn_in_window(cmd_sn: u32, exp_cmd_sn: u32, max_cmd_sn: u32) -> bool {
    sn_ge(cmd_sn, exp_cmd_sn) && sn_le(cmd_sn, max_cmd_sn)
}

// ---------------------------------------------------------------------------
// CRC32C (Castagnoli), the header and data digest of RFC 7143, 13.1.
// A byte-at-a-time reference implementation for the host tests and tools;
// the kernel side may use the kernel's accelerated crc32c() instead, which
// has the same (seed, data) semantics.

/// The reflected Castagnoli polynomial.
const CRC32C_POLY: u32 = 0x82f6_3b78;

/// The CRC of each byte value, reflected.
const CRC32C_TABLE: [u32; 256] = crc32c_table();

/// Builds [`CRC32C_TABLE`] at compile time.
const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut round = 0;
        while round < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC32C_POLY
            } else {
                crc >> 1
            };
            round += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// Continues a CRC32C over `data` from `seed`, with no inversion on entry
/// or exit (like the kernel's `crc32c()`), so it can be fed in pieces: start
/// with `!0` and invert the result, as [`iscsi_digest`] does.
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    data.iter().fold(seed, |crc, &byte| {
        CRC32C_TABLE[usize::from(crc as u8 ^ byte)] ^ (crc >> 8)
    })
}

/// The digest of `parts` taken as one byte string, in wire order (the
/// inverted CRC, least significant byte first).
pub fn iscsi_digest(parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let crc = parts.iter().fold(!0, |crc, part| crc32c(crc, part));
    (!crc).to_le_bytes()
}
