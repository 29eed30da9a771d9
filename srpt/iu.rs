// SPDX-License-Identifier: GPL-2.0

//! SRP information units (T10 SRP-2 and its RDMA/CM login layout): the
//! decoders of what an initiator sends (SRP_LOGIN_REQ, SRP_CMD with its
//! data descriptors, SRP_TSK_MGMT, SRP_I_LOGOUT, SRP_CRED_RSP) and the
//! encoders of what the target sends (SRP_LOGIN_RSP, SRP_LOGIN_REJ,
//! SRP_RSP, SRP_T_LOGOUT).
//!
//! Plain `core` Rust, no allocation: the receive completions and the host
//! tests share it. Multi-byte fields are big-endian; the tags are opaque
//! (echoed as received). The layouts are those of the kernel's
//! `include/scsi/srp.h`, which follows the standard.

// The core's big-endian field reader (named for CDBs; any bytes will do:
// every length is checked before a field is read).
use crate::scst_core::cdb::Cdb;

/// Information unit types (SRP-2, 5.1).
pub mod opcode {
    pub const LOGIN_REQ: u8 = 0x00;
    pub const TSK_MGMT: u8 = 0x01;
    pub const CMD: u8 = 0x02;
    pub const I_LOGOUT: u8 = 0x03;
    pub const LOGIN_RSP: u8 = 0xc0;
    pub const RSP: u8 = 0xc1;
    pub const LOGIN_REJ: u8 = 0xc2;
    pub const T_LOGOUT: u8 = 0x80;
    pub const CRED_REQ: u8 = 0x81;
    pub const AER_REQ: u8 = 0x82;
    pub const CRED_RSP: u8 = 0x41;
    pub const AER_RSP: u8 = 0x42;
}

/// Data buffer descriptor formats a login announces (bits of
/// `REQ_BUF_FMT`/`SUP_BUF_FMT`).
pub mod buf_fmt {
    pub const DIRECT: u16 = 1 << 1;
    pub const INDIRECT: u16 = 1 << 2;
}

/// Why a login is rejected (SRP-2, table 13).
pub mod reject {
    pub const UNABLE_ESTABLISH_CHANNEL: u32 = 0x0001_0000;
    pub const INSUFFICIENT_RESOURCES: u32 = 0x0001_0001;
    pub const REQ_IT_IU_LENGTH_TOO_LARGE: u32 = 0x0001_0002;
    pub const UNABLE_ASSOCIATE_CHANNEL: u32 = 0x0001_0003;
    pub const UNSUPPORTED_DESCRIPTOR_FMT: u32 = 0x0001_0004;
    pub const MULTI_CHANNEL_UNSUPPORTED: u32 = 0x0001_0005;
    pub const CHANNEL_LIMIT_REACHED: u32 = 0x0001_0006;
}

/// Task management functions (SRP-2, table 22).
pub mod tsk {
    pub const ABORT_TASK: u8 = 0x01;
    pub const ABORT_TASK_SET: u8 = 0x02;
    pub const CLEAR_TASK_SET: u8 = 0x04;
    pub const LUN_RESET: u8 = 0x08;
    pub const CLEAR_ACA: u8 = 0x40;
}

/// Task management response codes, in an SRP_RSP's response data (SRP-2,
/// table 24).
pub mod tsk_response {
    pub const COMPLETE: u8 = 0x00;
    pub const INVALID_IU: u8 = 0x02;
    pub const NOT_SUPPORTED: u8 = 0x04;
    pub const FAILED: u8 = 0x05;
}

/// Lengths of the fixed parts of the units.
pub const LOGIN_REQ_LEN: usize = 64;
/// The RDMA/CM login request (the CM's private data, SRP over iWARP/RoCE).
pub const LOGIN_REQ_RDMA_LEN: usize = 56;
pub const LOGIN_RSP_LEN: usize = 52;
pub const LOGIN_REJ_LEN: usize = 32;
pub const CMD_LEN: usize = 48;
pub const TSK_MGMT_LEN: usize = 48;
pub const RSP_LEN: usize = 36;
pub const T_LOGOUT_LEN: usize = 16;
pub const I_LOGOUT_LEN: usize = 16;
pub const CRED_RSP_LEN: usize = 16;
/// A memory descriptor: virtual address, key, length.
pub const DIRECT_DESC_LEN: usize = 16;
/// An indirect table header: the table's descriptor, then the total length.
pub const INDIRECT_HDR_LEN: usize = 20;
/// An immediate data descriptor: the data's length.
pub const IMMEDIATE_DESC_LEN: usize = 4;

/// The `REQ_FLAGS` multi-channel action (low two bits).
pub const MULTICHAN_MASK: u8 = 0x3;
pub const MULTICHAN_SINGLE: u8 = 0;
pub const MULTICHAN_MULTI: u8 = 1;
/// `REQ_FLAGS`: the initiator would send immediate data (SRP-2).
pub const IMMED_REQUESTED: u8 = 0x80;

/// `RSP_FLAGS` of a login response: what became of the initiator's other
/// channels.
pub const LOGIN_RSP_MULTICHAN_NO_CHAN: u8 = 0x0;
pub const LOGIN_RSP_MULTICHAN_TERMINATED: u8 = 0x1;
pub const LOGIN_RSP_MULTICHAN_MAINTAINED: u8 = 0x2;
/// `RSP_FLAGS`: the target takes immediate data, at the offset the
/// initiator asked for (SRP-2).
pub const LOGIN_RSP_IMMED_SUPP: u8 = 0x80;

fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut v = [0u8; N];
    v.copy_from_slice(&b[at..at + N]);
    v
}

/// What is wrong with a unit an initiator sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IuError {
    /// Shorter than its type's fixed part, or than its descriptors.
    TooShort,
    /// Not the type the decoder was asked for.
    WrongOpcode(u8),
    /// A data descriptor format that does not exist.
    BadDescriptorFormat(u8),
    /// Data-out and data-in descriptors at once (bidirectional commands
    /// are not offered).
    Bidirectional,
    /// Descriptor counts that disagree with the format or the unit's length.
    BadDescriptorCount,
}

/// A login request, from either layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRequest {
    pub tag: [u8; 8],
    /// Largest unit the initiator will send.
    pub req_it_iu_len: u32,
    /// Descriptor formats it will use ([`buf_fmt`]).
    pub req_buf_fmt: u16,
    pub req_flags: u8,
    pub imm_data_offset: u16,
    pub initiator_port_id: [u8; 16],
    pub target_port_id: [u8; 16],
}

impl LoginRequest {
    /// Decodes SRP_LOGIN_REQ as an IB CM request carries it.
    pub fn parse(b: &[u8]) -> Result<Self, IuError> {
        if b.len() < LOGIN_REQ_LEN {
            return Err(IuError::TooShort);
        }
        if b[0] != opcode::LOGIN_REQ {
            return Err(IuError::WrongOpcode(b[0]));
        }
        Ok(Self {
            tag: array(b, 8),
            req_it_iu_len: Cdb(b).be32(16),
            req_buf_fmt: Cdb(b).be16(24),
            req_flags: b[26],
            imm_data_offset: Cdb(b).be16(28),
            initiator_port_id: array(b, 32),
            target_port_id: array(b, 48),
        })
    }

    /// Decodes the RDMA/CM layout (`struct srp_login_req_rdma`): the same
    /// fields, reordered to fit the CM's private data.
    pub fn parse_rdma_cm(b: &[u8]) -> Result<Self, IuError> {
        if b.len() < LOGIN_REQ_RDMA_LEN {
            return Err(IuError::TooShort);
        }
        if b[11] != opcode::LOGIN_REQ {
            return Err(IuError::WrongOpcode(b[11]));
        }
        Ok(Self {
            tag: array(b, 0),
            req_buf_fmt: Cdb(b).be16(8),
            req_flags: b[10],
            req_it_iu_len: Cdb(b).be32(12),
            initiator_port_id: array(b, 16),
            target_port_id: array(b, 32),
            imm_data_offset: Cdb(b).be16(48),
        })
    }

    /// The multi-channel action the initiator asks for.
    pub fn multichannel(&self) -> u8 {
        self.req_flags & MULTICHAN_MASK
    }
}

/// What a target grants in SRP_LOGIN_RSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginResponse {
    pub tag: [u8; 8],
    /// Requests the initiator may have outstanding.
    pub req_lim_delta: u32,
    pub max_it_iu_len: u32,
    pub max_ti_iu_len: u32,
    pub buf_fmt: u16,
    pub rsp_flags: u8,
}

impl LoginResponse {
    pub fn encode(&self) -> [u8; LOGIN_RSP_LEN] {
        let mut b = [0u8; LOGIN_RSP_LEN];
        b[0] = opcode::LOGIN_RSP;
        b[4..8].copy_from_slice(&self.req_lim_delta.to_be_bytes());
        b[8..16].copy_from_slice(&self.tag);
        b[16..20].copy_from_slice(&self.max_it_iu_len.to_be_bytes());
        b[20..24].copy_from_slice(&self.max_ti_iu_len.to_be_bytes());
        b[24..26].copy_from_slice(&self.buf_fmt.to_be_bytes());
        b[26] = self.rsp_flags;
        b
    }
}

/// SRP_LOGIN_REJ with `reason` ([`reject`]) and the formats the target
/// supports.
pub fn login_reject(tag: [u8; 8], reason: u32, supported_fmt: u16) -> [u8; LOGIN_REJ_LEN] {
    let mut b = [0u8; LOGIN_REJ_LEN];
    b[0] = opcode::LOGIN_REJ;
    b[4..8].copy_from_slice(&reason.to_be_bytes());
    b[8..16].copy_from_slice(&tag);
    b[24..26].copy_from_slice(&supported_fmt.to_be_bytes());
    b
}

/// A remote memory region: where the data goes to or comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectBuf {
    pub va: u64,
    pub key: u32,
    pub len: u32,
}

impl DirectBuf {
    fn parse(b: &[u8], at: usize) -> Self {
        Self {
            va: Cdb(b).be64(at),
            key: Cdb(b).be32(at + 8),
            len: Cdb(b).be32(at + 12),
        }
    }
}

/// Data descriptor formats of an SRP_CMD (SRP-2, table 18).
pub mod desc_fmt {
    pub const NONE: u8 = 0;
    pub const DIRECT: u8 = 1;
    pub const INDIRECT: u8 = 2;
    /// Immediate data (SRP-2): only where the login granted it.
    pub const IMMEDIATE: u8 = 3;
}

/// Which way a command's data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    None,
    /// Data-out: the target reads it from the initiator.
    Out,
    /// Data-in: the target writes it to the initiator.
    In,
}

/// A command's data descriptors, as they sit in its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    None,
    /// One region.
    Direct(DirectBuf),
    /// A list of regions: `count` descriptors at `offset` of the unit (the
    /// part of the table the initiator copied into it), `total` bytes in
    /// all, and `table_count` descriptors in the whole table (more than
    /// `count` means the rest is only in the initiator's memory).
    Indirect {
        offset: usize,
        count: usize,
        table_count: usize,
        total: u32,
    },
    /// `len` bytes of data-out in the unit itself, at the offset the
    /// login agreed on; its descriptor is at `desc` of the unit.
    Immediate {
        desc: usize,
        len: u32,
    },
}

/// A decoded SRP_CMD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    pub tag: [u8; 8],
    pub lun: [u8; 8],
    /// SAM task attribute: 0 simple, 1 head of queue, 2 ordered, 4 ACA.
    pub task_attr: u8,
    /// The CDB: 16 bytes and the additional ones.
    pub cdb: &'a [u8],
    pub direction: Direction,
    pub data: Data,
    /// Asks for no response on success (SOLNT) or failure (UCSOLNT).
    pub sol_not: u8,
}

impl<'a> Command<'a> {
    /// Decodes an SRP_CMD of `b.len()` bytes (what the receive completion
    /// said arrived).
    pub fn parse(b: &'a [u8]) -> Result<Self, IuError> {
        if b.len() < CMD_LEN {
            return Err(IuError::TooShort);
        }
        if b[0] != opcode::CMD {
            return Err(IuError::WrongOpcode(b[0]));
        }
        // ADDITIONAL CDB LENGTH counts 4-byte words in bits 7..2: masked,
        // the byte is the length in bytes.
        let cdb_end = CMD_LEN + usize::from(b[31] & !3);
        if b.len() < cdb_end {
            return Err(IuError::TooShort);
        }
        let out_fmt = b[5] >> 4;
        let in_fmt = b[5] & 0xf;
        let (direction, fmt, count) = match (out_fmt, in_fmt) {
            (desc_fmt::NONE, desc_fmt::NONE) => (Direction::None, desc_fmt::NONE, 0),
            (f, desc_fmt::NONE) => (Direction::Out, f, usize::from(b[6])),
            (desc_fmt::NONE, f) => (Direction::In, f, usize::from(b[7])),
            _ => return Err(IuError::Bidirectional),
        };
        let at = cdb_end;
        let data = match fmt {
            desc_fmt::NONE => Data::None,
            desc_fmt::DIRECT => {
                if b.len() < at + DIRECT_DESC_LEN {
                    return Err(IuError::TooShort);
                }
                Data::Direct(DirectBuf::parse(b, at))
            }
            desc_fmt::INDIRECT => {
                if b.len() < at + INDIRECT_HDR_LEN {
                    return Err(IuError::TooShort);
                }
                let table = DirectBuf::parse(b, at);
                let total = Cdb(b).be32(at + DIRECT_DESC_LEN);
                let table_len = table.len as usize;
                let table_count = table_len / DIRECT_DESC_LEN;
                // (A whole number of 16-byte descriptors.)
                if table_len & (DIRECT_DESC_LEN - 1) != 0 || count > table_count {
                    return Err(IuError::BadDescriptorCount);
                }
                let offset = at + INDIRECT_HDR_LEN;
                if b.len() < offset + count * DIRECT_DESC_LEN {
                    return Err(IuError::TooShort);
                }
                Data::Indirect {
                    offset,
                    count,
                    table_count,
                    total,
                }
            }
            desc_fmt::IMMEDIATE if direction == Direction::Out => {
                if b.len() < at + IMMEDIATE_DESC_LEN {
                    return Err(IuError::TooShort);
                }
                // The data sits at the offset the login agreed on, which
                // only the channel knows.
                Data::Immediate {
                    desc: at,
                    len: Cdb(b).be32(at),
                }
            }
            f => return Err(IuError::BadDescriptorFormat(f)),
        };
        Ok(Self {
            tag: array(b, 8),
            lun: array(b, 20),
            task_attr: b[29] & 0x7,
            cdb: &b[32..cdb_end],
            direction,
            data,
            sol_not: b[1],
        })
    }

    /// The bytes the initiator expects to move, as its descriptors say.
    pub fn data_len(&self) -> u32 {
        match self.data {
            Data::None => 0,
            Data::Direct(d) => d.len,
            Data::Indirect { total, .. } => total,
            Data::Immediate { len, .. } => len,
        }
    }
}

/// The `i`th descriptor of an indirect list inside unit `b`.
pub fn indirect_desc(b: &[u8], offset: usize, i: usize) -> Option<DirectBuf> {
    let at = offset.checked_add(i.checked_mul(DIRECT_DESC_LEN)?)?;
    if b.len() < at.checked_add(DIRECT_DESC_LEN)? {
        return None;
    }
    Some(DirectBuf::parse(b, at))
}

/// A decoded SRP_TSK_MGMT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMgmt {
    pub tag: [u8; 8],
    pub lun: [u8; 8],
    /// One of [`tsk`].
    pub function: u8,
    /// ABORT TASK's target: the tag of the command to abort.
    pub task_tag: [u8; 8],
    pub sol_not: u8,
}

impl TaskMgmt {
    pub fn parse(b: &[u8]) -> Result<Self, IuError> {
        if b.len() < TSK_MGMT_LEN {
            return Err(IuError::TooShort);
        }
        if b[0] != opcode::TSK_MGMT {
            return Err(IuError::WrongOpcode(b[0]));
        }
        Ok(Self {
            tag: array(b, 8),
            lun: array(b, 20),
            function: b[30],
            task_tag: array(b, 32),
            sol_not: b[1],
        })
    }
}

/// The tag of an SRP_I_LOGOUT or SRP_CRED_RSP (both carry only a tag).
pub fn tag_of(b: &[u8]) -> Option<[u8; 8]> {
    if b.len() < 16 {
        return None;
    }
    Some(array(b, 8))
}

/// What an SRP_RSP reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Response<'a> {
    pub tag: [u8; 8],
    pub req_lim_delta: u32,
    pub status: u8,
    /// Bytes of data-in the command was short of what the initiator asked
    /// (positive) or would have sent beyond it (negative).
    pub data_in_residual: i64,
    pub data_out_residual: i64,
    pub sense: &'a [u8],
    /// Response data (task management: 4 bytes, the code in the last).
    pub response_data: &'a [u8],
}

/// Flags of an SRP_RSP (SRP-2, table 25).
pub mod rsp_flag {
    pub const RSPVALID: u8 = 1 << 0;
    pub const SNSVALID: u8 = 1 << 1;
    pub const DOOVER: u8 = 1 << 2;
    pub const DOUNDER: u8 = 1 << 3;
    pub const DIOVER: u8 = 1 << 4;
    pub const DIUNDER: u8 = 1 << 5;
}

impl Response<'_> {
    /// The unit's length: its fixed part, the response data and the sense,
    /// cut to `max_len` (the initiator's largest target-to-initiator
    /// unit; the sense is what gives way).
    pub fn len(&self, max_len: usize) -> usize {
        let fixed = RSP_LEN + self.response_data.len();
        fixed + self.sense.len().min(max_len.saturating_sub(fixed))
    }

    /// Writes the unit into `out` and returns its length; `out`'s length
    /// is the largest unit the initiator takes.
    pub fn encode(&self, out: &mut [u8]) -> usize {
        let resp = self.response_data.len();
        if out.len() < RSP_LEN + resp {
            return 0;
        }
        let len = self.len(out.len());
        let sense = len - RSP_LEN - resp;
        let (di_flag, di) = residual(self.data_in_residual, rsp_flag::DIUNDER, rsp_flag::DIOVER);
        let (do_flag, dout) = residual(self.data_out_residual, rsp_flag::DOUNDER, rsp_flag::DOOVER);
        let mut flags = di_flag | do_flag;
        if resp > 0 {
            flags |= rsp_flag::RSPVALID;
        }
        if sense > 0 {
            flags |= rsp_flag::SNSVALID;
        }
        out[..RSP_LEN].fill(0);
        out[0] = opcode::RSP;
        out[4..8].copy_from_slice(&self.req_lim_delta.to_be_bytes());
        out[8..16].copy_from_slice(&self.tag);
        out[18] = flags;
        out[19] = self.status;
        out[20..24].copy_from_slice(&dout.to_be_bytes());
        out[24..28].copy_from_slice(&di.to_be_bytes());
        out[28..32].copy_from_slice(&(sense as u32).to_be_bytes());
        out[32..36].copy_from_slice(&(resp as u32).to_be_bytes());
        // Response data first, then sense (SRP-2, 6.9).
        out[RSP_LEN..RSP_LEN + resp].copy_from_slice(self.response_data);
        out[RSP_LEN + resp..len].copy_from_slice(&self.sense[..sense]);
        len
    }
}

/// A residual as its under/overflow flag and count.
fn residual(r: i64, under: u8, over: u8) -> (u8, u32) {
    let count = u32::try_from(r.unsigned_abs()).unwrap_or(u32::MAX);
    match r {
        0 => (0, 0),
        r if r > 0 => (under, count),
        _ => (over, count),
    }
}

/// SRP_T_LOGOUT: the target ends the channel for `reason`.
pub fn target_logout(reason: u32) -> [u8; T_LOGOUT_LEN] {
    let mut b = [0u8; T_LOGOUT_LEN];
    b[0] = opcode::T_LOGOUT;
    b[4..8].copy_from_slice(&reason.to_be_bytes());
    b
}
