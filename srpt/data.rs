// SPDX-License-Identifier: GPL-2.0

//! Where an SRP command's data goes: the remote regions its descriptors
//! name, each placed in the command's buffer at the offset the data before
//! it fills, or the immediate data its unit carries; and the residuals of
//! what moved against what the initiator offered.
//!
//! Plain `core` Rust: the channel turns each [`Segment`] into one RDMA
//! READ or WRITE context; the host tests check the rules.

use crate::srpt::iu::{indirect_desc, Command, Data, DirectBuf, IMMEDIATE_DESC_LEN};

/// Why a command's descriptors cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    /// Part of the indirect table is only in the initiator's memory
    /// (fetching it would take an RDMA READ before the command; SCST's
    /// and LIO's ib_srpt refuse it as well).
    ExternalTable,
    /// More regions than a command may carry here.
    TooManyRegions,
    /// The regions' lengths do not add up to the total the table states.
    LengthMismatch,
    /// Immediate data on a channel whose login did not grant it.
    ImmediateNotGranted,
    /// The immediate data descriptor ends past the offset where the data
    /// begins.
    ImmediateOverlapsDescriptor,
    /// The immediate data runs past the unit that arrived.
    ImmediateBeyondUnit,
}

/// One remote region and where its bytes sit in the command's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u32,
    pub region: DirectBuf,
}

/// The segments of a command, in order.
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    iu: &'a [u8],
    source: Source,
    immediate: Option<&'a [u8]>,
    next: usize,
    offset: u32,
}

#[derive(Debug, Clone, Copy)]
enum Source {
    /// No remote region: no data, or the data is in the unit.
    None,
    Direct(DirectBuf),
    Indirect {
        at: usize,
        count: usize,
    },
}

impl<'a> Segments<'a> {
    /// How many segments there are.
    pub fn regions(&self) -> usize {
        match self.source {
            Source::None => 0,
            Source::Direct(_) => 1,
            Source::Indirect { count, .. } => count,
        }
    }

    /// The data-out the unit itself carries (immediate data): it needs
    /// no RDMA READ.
    pub fn immediate(&self) -> Option<&'a [u8]> {
        self.immediate
    }
}

impl Iterator for Segments<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        let region = match self.source {
            Source::None => return None,
            Source::Direct(d) if self.next == 0 => d,
            Source::Direct(_) => return None,
            Source::Indirect { at, count } if self.next < count => {
                indirect_desc(self.iu, at, self.next)?
            }
            Source::Indirect { .. } => return None,
        };
        self.next += 1;
        let segment = Segment {
            offset: self.offset,
            region,
        };
        self.offset = self.offset.saturating_add(region.len);
        Some(segment)
    }
}

/// The segments of `cmd`, decoded from unit `iu`, with at most
/// `max_regions` regions; and the bytes they offer in all.
/// `immediate_offset` is where immediate data begins in a unit, if the
/// channel's login granted it.
pub fn segments<'a>(
    cmd: &Command<'_>,
    iu: &'a [u8],
    max_regions: usize,
    immediate_offset: Option<usize>,
) -> Result<(Segments<'a>, u32), DataError> {
    let mut immediate = None;
    let (source, total) = match cmd.data {
        Data::None => (Source::None, 0),
        Data::Direct(d) => (Source::Direct(d), d.len),
        Data::Indirect {
            offset,
            count,
            table_count,
            total,
        } => {
            if count != table_count {
                return Err(DataError::ExternalTable);
            }
            if count > max_regions {
                return Err(DataError::TooManyRegions);
            }
            let mut sum = 0u64;
            for i in 0..count {
                let d = indirect_desc(iu, offset, i).ok_or(DataError::ExternalTable)?;
                sum += u64::from(d.len);
            }
            if sum != u64::from(total) {
                return Err(DataError::LengthMismatch);
            }
            (Source::Indirect { at: offset, count }, total)
        }
        Data::Immediate { desc, len } => {
            let at = immediate_offset.ok_or(DataError::ImmediateNotGranted)?;
            if desc + IMMEDIATE_DESC_LEN > at {
                return Err(DataError::ImmediateOverlapsDescriptor);
            }
            let data = usize::try_from(len)
                .ok()
                .and_then(|len| iu.get(at..at.checked_add(len)?))
                .ok_or(DataError::ImmediateBeyondUnit)?;
            immediate = Some(data);
            (Source::None, len)
        }
    };
    Ok((
        Segments {
            iu,
            source,
            immediate,
            next: 0,
            offset: 0,
        },
        total,
    ))
}

/// What moves of a transfer the target would make of `wanted` bytes
/// (the logical unit's data-in, or the data-out its CDB asks for) when
/// the initiator offered `offered`: the bytes moved, and the residual as
/// SRP_RSP reports it (positive: fewer than offered, underflow; negative:
/// more were wanted than offered, overflow, and only `offered` move).
pub fn transfer(wanted: u64, offered: u32) -> (u32, i64) {
    let offered64 = u64::from(offered);
    if wanted <= offered64 {
        // `wanted` fits in u32 here.
        (wanted as u32, (offered64 - wanted) as i64)
    } else {
        let over = i64::try_from(wanted - offered64).unwrap_or(i64::MAX);
        (offered, -over)
    }
}
