// SPDX-License-Identifier: GPL-2.0

//! Whether a login is accepted, and on what terms (SRP-2, 6.2; the checks
//! and grants of SCST's ib_srpt).
//!
//! Plain `core` Rust: the connection manager's handler decides with it, the
//! host tests check it.

use crate::srpt::iu::{
    buf_fmt, reject, LoginRequest, LoginResponse, CMD_LEN, IMMED_REQUESTED, LOGIN_RSP_IMMED_SUPP,
    LOGIN_RSP_MULTICHAN_MAINTAINED, LOGIN_RSP_MULTICHAN_NO_CHAN, LOGIN_RSP_MULTICHAN_TERMINATED,
    MULTICHAN_MULTI, MULTICHAN_SINGLE,
};

/// The smallest request unit an initiator may announce: an SRP_LOGIN_REQ
/// must fit.
pub const MIN_IT_IU_LEN: u32 = 64;

/// What the target allows, from its parameters and its device.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `srp_max_req_size`: the largest request unit received.
    pub max_req_size: u32,
    /// The target port's identifier halves (`id_ext`, `ioc_guid`):
    /// `srpt_service_guid`, or the device's node GUID.
    pub service_guid: u64,
    /// Receive units posted per channel: the requests an initiator may
    /// have outstanding.
    pub rq_size: u32,
}

/// The terms of an accepted login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub response: LoginResponse,
    /// The initiator's other channels to this target port end (it asked
    /// for a single channel).
    pub terminate_others: bool,
    /// Where immediate data begins in an SRP_CMD, if it was granted.
    pub immediate_offset: Option<u16>,
}

/// Judges `req`, arriving while the same initiator port has
/// `other_channels` to this target port: the grant, or the reject reason.
pub fn judge(req: &LoginRequest, limits: &Limits, other_channels: bool) -> Result<Grant, u32> {
    if req.req_it_iu_len < MIN_IT_IU_LEN || req.req_it_iu_len > limits.max_req_size {
        return Err(reject::REQ_IT_IU_LENGTH_TOO_LARGE);
    }
    let supported = buf_fmt::DIRECT | buf_fmt::INDIRECT;
    if req.req_buf_fmt & supported == 0 {
        return Err(reject::UNSUPPORTED_DESCRIPTOR_FMT);
    }
    let guid = limits.service_guid.to_be_bytes();
    if req.target_port_id[..8] != guid || req.target_port_id[8..] != guid {
        return Err(reject::UNABLE_ASSOCIATE_CHANNEL);
    }
    let (rsp_flags, terminate_others) = match req.multichannel() {
        _ if !other_channels => (LOGIN_RSP_MULTICHAN_NO_CHAN, false),
        MULTICHAN_SINGLE => (LOGIN_RSP_MULTICHAN_TERMINATED, true),
        MULTICHAN_MULTI => (LOGIN_RSP_MULTICHAN_MAINTAINED, false),
        // Reserved values (SRP-2, table 9).
        _ => return Err(reject::UNABLE_ESTABLISH_CHANNEL),
    };
    // Immediate data saves a write of up to a unit's size the round trip
    // of an RDMA READ. Granted, as ib_srpt grants it, where the data
    // begins after an SRP_CMD's fixed part, and where a unit the target
    // takes has room for some of it.
    let offset = req.imm_data_offset;
    let immediate_offset = (req.req_flags & IMMED_REQUESTED != 0
        && usize::from(offset) >= CMD_LEN
        && u32::from(offset) < limits.max_req_size)
        .then_some(offset);
    let immed_flag = match immediate_offset {
        Some(_) => LOGIN_RSP_IMMED_SUPP,
        None => 0,
    };
    Ok(Grant {
        response: LoginResponse {
            tag: req.tag,
            req_lim_delta: limits.rq_size,
            // As ib_srpt grants: requests up to its limit, responses up to
            // the initiator's own unit size (it sends no more than
            // `max_rsp_size` of them).
            max_it_iu_len: limits.max_req_size,
            max_ti_iu_len: req.req_it_iu_len,
            buf_fmt: supported,
            rsp_flags: rsp_flags | immed_flag,
        },
        terminate_others,
        immediate_offset,
    })
}

/// Writes `byte` as two lowercase hex digits at `out[0..2]`.
fn put_hex(out: &mut [u8], byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out[0] = HEX[usize::from(byte >> 4)];
    out[1] = HEX[usize::from(byte & 0xf)];
}

/// A channel's initiator port identifier as sessions are named after it:
/// `0x` and its 16 bytes in hex, as ib_srpt's ACLs name initiators.
pub fn initiator_name(port_id: &[u8; 16]) -> [u8; 34] {
    let mut name = [0u8; 34];
    name[0] = b'0';
    name[1] = b'x';
    for (i, &b) in port_id.iter().enumerate() {
        put_hex(&mut name[2 + 2 * i..], b);
    }
    name
}

/// A target's name: its port's GID as SCST prints it (`%pI6`, eight
/// groups of four hex digits).
pub fn target_name(gid: &[u8; 16]) -> [u8; 39] {
    let mut name = [b':'; 39];
    for (i, &b) in gid.iter().enumerate() {
        // Two bytes to a group, and a colon after each group.
        put_hex(&mut name[i / 2 * 5 + i % 2 * 2..], b);
    }
    name
}

/// The fewest credits a channel on a shared receive queue is worth: one
/// for a command, one for task management (ib_srp keeps that one back).
pub const LEAST_SRQ_CREDITS: u32 = 2;

/// The credits a new channel on a shared receive queue gets, of the `free`
/// units no channel was promised yet, when it wants `want` (its own
/// ring's size): at most half of them, so that the initiator's further
/// channels and other initiators get some, but never fewer than the least
/// while that many are left; `None` once fewer are.
pub fn srq_credits(free: u32, want: u32) -> Option<u32> {
    let n = (free / 2).max(LEAST_SRQ_CREDITS.min(free)).min(want);
    (n >= LEAST_SRQ_CREDITS).then_some(n)
}
