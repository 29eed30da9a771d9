// SPDX-License-Identifier: GPL-2.0

//! iSCSI PDU framing (RFC 7143, section 11): the 48-byte Basic Header
//! Segment and the length of the PDU it announces.
//!
//! Plain `core` Rust: the receive path and the host tests share it.

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
