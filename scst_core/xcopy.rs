// SPDX-License-Identifier: GPL-2.0

//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18): the
//! parameter list decoded and checked whole, the copy manager's
//! operating parameters, copy status data and the Third-party Copy VPD
//! page. Pure logic, shared with the host tests; `extended_copy.rs`
//! finds the copy targets and moves the blocks.
//!
//! What is offered: identification CSCD descriptors (E4h) naming a
//! logical unit by its NAA designator, and block device to block device
//! segment descriptors (02h) -- what VMware's VAAI, Windows' ODX-less
//! copy offload, `sg_xcopy` and `ddpt` send.

use crate::scst_core::cdb::{Cdb, Out};
use crate::scst_core::sense::{self, key, Sense};

/// Operation codes and service actions.
pub mod op {
    pub const EXTENDED_COPY: u8 = 0x83;
    pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
    /// EXTENDED COPY (LID1).
    pub const SA_LID1: u8 = 0x00;
    /// RECEIVE COPY RESULTS: COPY STATUS.
    pub const SA_COPY_STATUS: u8 = 0x00;
    /// RECEIVE COPY RESULTS: OPERATING PARAMETERS.
    pub const SA_OPERATING_PARAMETERS: u8 = 0x03;
}

/// CSCD descriptors one list may hold.
pub const MAX_TARGETS: usize = 8;
/// Segment descriptors one list may hold.
pub const MAX_SEGMENTS: usize = 64;
/// Longest CSCD and segment descriptor lists together, in bytes.
pub const MAX_DESCRIPTOR_LIST_LEN: usize = 4096;
/// Most bytes one segment may copy (a block to block segment counts at
/// most 65535 blocks).
pub const MAX_SEGMENT_BYTES: u32 = 256 << 20;
/// Longest parameter list taken.
pub const MAX_PARAMETER_LIST_LEN: usize = HEADER_LEN + MAX_DESCRIPTOR_LIST_LEN;

const HEADER_LEN: usize = 16;
const TARGET_LEN: usize = 32;
/// Identification descriptor CSCD descriptor.
pub const IDENTIFICATION_TARGET: u8 = 0xe4;
/// Block device to block device segment descriptor.
pub const BLOCK_TO_BLOCK: u8 = 0x02;
/// A block to block segment descriptor's length (DESCRIPTOR LENGTH 18h
/// and its first four bytes).
const SEGMENT_LEN: usize = 4 + 0x18;
/// LIST ID USAGE: the copy manager holds the results for RECEIVE COPY
/// RESULTS.
const LIST_ID_HELD: u8 = 0b00;
/// LIST ID USAGE: the list identifier names nothing and must be 0.
const LIST_ID_NONE: u8 = 0b11;

/// TOO MANY TARGET DESCRIPTORS.
pub const TOO_MANY_TARGETS: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x06);
/// UNSUPPORTED TARGET DESCRIPTOR TYPE CODE.
pub const UNSUPPORTED_TARGET: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x07);
/// TOO MANY SEGMENT DESCRIPTORS.
pub const TOO_MANY_SEGMENTS: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x08);
/// UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE.
pub const UNSUPPORTED_SEGMENT: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x09);
/// COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE.
pub const TARGET_NOT_REACHABLE: Sense = Sense::new(key::COPY_ABORTED, 0x0d, 0x02);

/// A copy target (CSCD): a logical unit named by a designator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyTarget {
    /// DESIGNATOR TYPE (SPC-4 7.8.6.1); only NAA (3h) names a logical
    /// unit here.
    pub designator_type: u8,
    /// ASSOCIATION: 0 for a logical unit.
    pub association: u8,
    pub designator: [u8; 20],
    pub designator_len: usize,
    /// DISK BLOCK LENGTH the initiator expects.
    pub block_len: u32,
}

impl CopyTarget {
    /// The NAA designator naming a logical unit, if that is what this is.
    pub fn naa(&self) -> Option<&[u8]> {
        (self.designator_type == 3 && self.association == 0)
            .then(|| self.designator.get(..self.designator_len))
            .flatten()
    }
}

/// A block device to block device segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// CSCD descriptor indexes.
    pub source: u16,
    pub destination: u16,
    /// Blocks to copy (of the destination's size when DC is set, of the
    /// source's otherwise; this copy manager takes equal sizes only).
    pub blocks: u16,
    pub source_lba: u64,
    pub destination_lba: u64,
}

/// A checked EXTENDED COPY parameter list. Its descriptors are decoded
/// from the list's own bytes when asked for, so that nothing of the
/// size of a list is kept on the (kernel) stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyList<'a> {
    pub list_id: u8,
    /// The results are held for RECEIVE COPY RESULTS.
    pub held: bool,
    targets: &'a [u8],
    segments: &'a [u8],
}

impl<'a> CopyList<'a> {
    /// CSCD descriptor `index`, if the list has it.
    pub fn target(&self, index: u16) -> Option<CopyTarget> {
        let at = usize::from(index) * TARGET_LEN;
        let d = Cdb(self.targets.get(at..at + TARGET_LEN)?);
        let designator_len = usize::from(d.u8(7)).min(20);
        let mut designator = [0u8; 20];
        if let (Some(to), Some(from)) = (
            designator.get_mut(..designator_len),
            d.0.get(8..8 + designator_len),
        ) {
            to.copy_from_slice(from);
        }
        Some(CopyTarget {
            designator_type: d.u8(5) & 0x0f,
            association: (d.u8(5) >> 4) & 0x3,
            designator,
            designator_len,
            block_len: d.be32(28) & 0x00ff_ffff,
        })
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + 'a {
        self.segments.chunks_exact(SEGMENT_LEN).map(|d| {
            let d = Cdb(d);
            Segment {
                source: d.be16(4),
                destination: d.be16(6),
                blocks: d.be16(10),
                source_lba: d.be64(12),
                destination_lba: d.be64(20),
            }
        })
    }

    /// How many segments the list has.
    pub fn segment_count(&self) -> usize {
        self.segments.len() / SEGMENT_LEN
    }
}

/// Checks an EXTENDED COPY (LID1) parameter list: `params` is what the
/// initiator sent (PARAMETER LIST LENGTH bytes). An empty list copies
/// nothing and is not an error (SPC-4 6.4.1).
pub fn parse(params: &[u8]) -> Result<CopyList<'_>, Sense> {
    let mut list = CopyList {
        list_id: 0,
        held: false,
        targets: &[],
        segments: &[],
    };
    if params.is_empty() {
        return Ok(list);
    }
    if params.len() < HEADER_LEN {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    let p = Cdb(params);
    list.list_id = p.u8(0);
    let usage = (p.u8(1) >> 3) & 0x3;
    match usage {
        LIST_ID_HELD => list.held = true,
        0b10 => {}
        LIST_ID_NONE if list.list_id == 0 => {}
        LIST_ID_NONE => return Err(Sense::invalid_param_field(0, None)),
        _ => return Err(Sense::invalid_param_field(1, Some(4))),
    }
    let targets_len = usize::from(p.be16(2));
    let segments_len = p.be32(8) as usize;
    let inline_len = p.be32(12) as usize;
    if targets_len + segments_len > MAX_DESCRIPTOR_LIST_LEN
        || HEADER_LEN + targets_len + segments_len + inline_len > params.len()
        || targets_len % TARGET_LEN != 0
    {
        return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
    }
    if targets_len / TARGET_LEN > MAX_TARGETS {
        return Err(TOO_MANY_TARGETS);
    }
    let targets = params
        .get(HEADER_LEN..HEADER_LEN + targets_len)
        .ok_or(sense::PARAMETER_LIST_LENGTH_ERROR)?;
    for d in targets.chunks_exact(TARGET_LEN) {
        // Only identification descriptors of block devices (peripheral
        // device type 0); LU ID TYPE is ignored and NUL obsolete (SPC-4).
        let d = Cdb(d);
        if d.u8(0) != IDENTIFICATION_TARGET || d.u8(1) & 0x1f != 0 {
            return Err(UNSUPPORTED_TARGET);
        }
    }
    let start = HEADER_LEN + targets_len;
    let segments = params
        .get(start..start + segments_len)
        .ok_or(sense::PARAMETER_LIST_LENGTH_ERROR)?;
    let mut at = 0;
    let mut count = 0;
    while at < segments.len() {
        let d = Cdb(segments.get(at..).unwrap_or(&[]));
        if segments.len() - at < 4 {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        let len = 4 + usize::from(d.be16(2));
        if at + len > segments.len() {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR);
        }
        if count == MAX_SEGMENTS {
            return Err(TOO_MANY_SEGMENTS);
        }
        if d.u8(0) != BLOCK_TO_BLOCK || len != SEGMENT_LEN {
            return Err(UNSUPPORTED_SEGMENT);
        }
        count += 1;
        at += len;
    }
    list.targets = targets;
    list.segments = segments;
    Ok(list)
}

/// RECEIVE COPY RESULTS, OPERATING PARAMETERS (SPC-4 6.18.4).
pub fn operating_parameters(out: &mut Out<'_>) {
    let implemented = [BLOCK_TO_BLOCK, IDENTIFICATION_TARGET];
    out.be32((44 + implemented.len() - 4) as u32);
    out.u8(0x01); // SNLID: lists held and not held are both supported
    out.zeroes(3);
    out.be16(MAX_TARGETS as u16);
    out.be16(MAX_SEGMENTS as u16);
    out.be32(MAX_DESCRIPTOR_LIST_LEN as u32);
    out.be32(MAX_SEGMENT_BYTES);
    out.be32(0); // no inline data
    out.be32(0); // no held data
    out.be32(0); // no stream devices
    out.zeroes(2);
    out.be16(1); // total concurrent copies
    out.u8(1); // maximum concurrent copies
    out.u8(9); // data segment granularity: 512 bytes
    out.u8(0);
    out.u8(0);
    out.zeroes(3);
    out.u8(implemented.len() as u8);
    out.put(&implemented);
}

/// How a held copy ended, for COPY STATUS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyStatus {
    pub list_id: u8,
    pub failed: bool,
    pub segments_done: u16,
    /// Bytes written to destinations.
    pub bytes: u64,
}

/// RECEIVE COPY RESULTS, COPY STATUS of a finished copy (SPC-4 6.18.2).
pub fn copy_status(status: &CopyStatus, out: &mut Out<'_>) {
    out.be32(8);
    out.u8(u8::from(status.failed)); // 00h done, 01h done with errors
    out.be16(status.segments_done);
    // Transfer count in KiB past 4 GiB of bytes.
    if let Ok(bytes) = u32::try_from(status.bytes) {
        out.u8(0x00);
        out.be32(bytes);
    } else {
        out.u8(0x01);
        out.be32(u32::try_from(status.bytes >> 10).unwrap_or(u32::MAX));
    }
}

/// The Third-party Copy VPD page's descriptors (SPC-4 7.8.17), after
/// the page header: the commands supported, the parameter limits and
/// the descriptor types.
pub fn third_party_copy_vpd(out: &mut Out<'_>) {
    // Supported Commands: EXTENDED COPY (LID1), RECEIVE COPY RESULTS
    // (COPY STATUS, OPERATING PARAMETERS). 1 + 3 + 4 bytes, padded to 12.
    out.be16(0x0001);
    out.be16(12);
    out.u8(7);
    out.put(&[op::EXTENDED_COPY, 1, op::SA_LID1]);
    out.put(&[
        op::RECEIVE_COPY_RESULTS,
        2,
        op::SA_COPY_STATUS,
        op::SA_OPERATING_PARAMETERS,
    ]);
    out.zeroes(4);
    // Parameter Data.
    out.be16(0x0004);
    out.be16(0x1c);
    out.zeroes(4);
    out.be16(MAX_TARGETS as u16);
    out.be16(MAX_SEGMENTS as u16);
    out.be32(MAX_DESCRIPTOR_LIST_LEN as u32);
    out.be32(0); // inline data
    out.zeroes(12);
    // Supported Descriptors.
    out.be16(0x0008);
    out.be16(4);
    out.u8(2);
    out.put(&[BLOCK_TO_BLOCK, IDENTIFICATION_TARGET]);
    out.u8(0);
    // Supported CSCD Descriptor IDs: none.
    out.be16(0x000c);
    out.be16(4);
    out.zeroes(4);
}
