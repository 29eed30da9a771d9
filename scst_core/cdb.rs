// SPDX-License-Identifier: GPL-2.0

//! CDB access, LUN addressing (SAM-5 4.7) and the response writer shared by
//! the core and the device handlers' command emulation.
//!
//! Plain `core` Rust, shared with the host test crate. Nothing here panics on
//! input: fields outside the CDB read as zero and the CDB length is checked
//! against the command's table entry before any field is used.

use crate::scst_core::sense::{self, Sense};

/// Operation codes the core itself handles, for every device type.
pub mod op {
    /// TEST UNIT READY.
    pub const TEST_UNIT_READY: u8 = 0x00;
    /// REQUEST SENSE.
    pub const REQUEST_SENSE: u8 = 0x03;
    /// INQUIRY.
    pub const INQUIRY: u8 = 0x12;
    /// REPORT LUNS.
    pub const REPORT_LUNS: u8 = 0xa0;
}

/// The well-known logical unit REPORT LUNS (SPC-4 8.2), as a 64-bit LUN.
pub const REPORT_LUNS_WLUN: u64 = 0xc101_0000_0000_0000;

/// Read-only view of a CDB with big-endian field readers.
#[derive(Clone, Copy)]
pub struct Cdb<'a>(pub &'a [u8]);

impl<'a> Cdb<'a> {
    /// The operation code.
    pub fn opcode(&self) -> u8 {
        self.u8(0)
    }

    /// Byte `i`, or zero past the end.
    pub fn u8(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }

    /// The big-endian field of `n` (at most 8) bytes at `i`.
    pub fn be(&self, i: usize, n: usize) -> u64 {
        (i..i + n).fold(0u64, |v, j| (v << 8) | u64::from(self.u8(j)))
    }

    /// Two-byte big-endian field.
    pub fn be16(&self, i: usize) -> u16 {
        self.be(i, 2) as u16
    }

    /// Four-byte big-endian field.
    pub fn be32(&self, i: usize) -> u32 {
        self.be(i, 4) as u32
    }

    /// Eight-byte big-endian field.
    pub fn be64(&self, i: usize) -> u64 {
        self.be(i, 8)
    }

    /// Length of the CDB the operation code's group implies (SPC-4 4.2.5.1),
    /// `None` for vendor-specific and variable-length groups.
    pub fn group_len(opcode: u8) -> Option<usize> {
        match opcode >> 5 {
            0 => Some(6),
            1 | 2 => Some(10),
            4 => Some(16),
            5 => Some(12),
            _ => None,
        }
    }

    /// NACA set in the CONTROL byte: a normal ACA condition asked for,
    /// which this target does not establish (INQUIRY's NORMACA is clear),
    /// so the command ends with INVALID FIELD IN CDB pointing at the bit
    /// (SAM-5 5.10, SPC-4 7.2.1). Vendor-specific and reserved groups are
    /// not looked at.
    pub fn naca_refusal(&self) -> Option<Sense> {
        let opcode = self.opcode();
        let control = match Self::group_len(opcode) {
            Some(n) => n - 1,
            // Variable-length CDBs have their CONTROL byte second.
            None if opcode == 0x7f => 1,
            None => return None,
        };
        (self.u8(control) & 0x04 != 0).then(|| Sense::invalid_cdb_field(control as u16, Some(2)))
    }

    /// Checks every bit the usage map does not allow is clear; a set bit
    /// gives INVALID FIELD IN CDB pointing at it (SPC-4 4.2.5.2 reserved
    /// fields). `usage[0]` is the operation code.
    pub fn check_usage(&self, usage: &[u8]) -> Result<(), Sense> {
        if self.0.len() < usage.len() {
            return Err(Sense::invalid_cdb_field(0, None));
        }
        for (i, (&byte, &allowed)) in self.0.iter().zip(usage).enumerate().skip(1) {
            let stray = byte & !allowed;
            if stray != 0 {
                let bit = 7 - stray.leading_zeros() as u8;
                return Err(Sense::invalid_cdb_field(i as u16, Some(bit)));
            }
        }
        Ok(())
    }
}

/// Writes a response into a caller's buffer, counting the full length even
/// where it no longer fits: the initiator's allocation length decides how
/// much is sent, the full length goes into length fields.
pub struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Out<'a> {
    /// A writer over `buf`, which is zeroed.
    pub fn new(buf: &'a mut [u8]) -> Self {
        buf.fill(0);
        Self { buf, len: 0 }
    }

    /// Bytes written so far, including those that did not fit.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes.
    pub fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
            }
            self.len += 1;
        }
    }

    /// Appends `n` zero bytes.
    pub fn zeroes(&mut self, n: usize) {
        // The buffer was zeroed; only the length moves.
        self.len += n;
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    /// Appends a big-endian u16.
    pub fn be16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    /// Appends a big-endian u32.
    pub fn be32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    /// Appends a big-endian u64.
    pub fn be64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }

    /// Appends `text` padded with spaces (or cut) to `width` bytes.
    pub fn ascii(&mut self, text: &[u8], width: usize) {
        for i in 0..width {
            self.u8(text.get(i).copied().unwrap_or(b' '));
        }
    }

    /// Overwrites the byte at `at` (already written).
    pub fn set_u8(&mut self, at: usize, v: u8) {
        if let Some(slot) = self.buf.get_mut(at) {
            *slot = v;
        }
    }

    /// Overwrites the big-endian u16 at `at`.
    pub fn set_be16(&mut self, at: usize, v: u16) {
        for (i, b) in v.to_be_bytes().into_iter().enumerate() {
            self.set_u8(at + i, b);
        }
    }

    /// Overwrites the big-endian u32 at `at`.
    pub fn set_be32(&mut self, at: usize, v: u32) {
        for (i, b) in v.to_be_bytes().into_iter().enumerate() {
            self.set_u8(at + i, b);
        }
    }
}

/// Decodes an 8-byte LUN in the peripheral (00b) or flat (01b) addressing
/// methods of SAM-5 to the LUN number, or returns it whole (as a 64-bit
/// value) for well-known LUNs; `None` for addressing this target never
/// reports (multi-level, extended).
pub fn decode_lun(lun: [u8; 8]) -> Option<u64> {
    let rest_zero = lun[2..].iter().all(|&b| b == 0);
    match lun[0] >> 6 {
        0b00 if lun[0] == 0 && rest_zero => Some(u64::from(lun[1])),
        0b01 if rest_zero => Some((u64::from(lun[0] & 0x3f) << 8) | u64::from(lun[1])),
        0b11 if lun[0] == 0xc1 => Some(u64::from_be_bytes(lun)),
        _ => None,
    }
}

/// Encodes a LUN number (below 16384) as REPORT LUNS lists it: peripheral
/// addressing below 256, flat addressing above.
pub fn encode_lun(lun: u64) -> [u8; 8] {
    let mut out = [0u8; 8];
    if lun < 256 {
        out[1] = lun as u8;
    } else {
        out[0] = 0x40 | ((lun >> 8) & 0x3f) as u8;
        out[1] = lun as u8;
    }
    out
}

/// The 8-byte LUN of Linux's integer LUN (`int_to_scsilun`): two bytes per
/// level, first level first.
pub fn lun_from_linux(lun: u64) -> [u8; 8] {
    let mut out = [0u8; 8];
    for level in 0..4 {
        let v = (lun >> (16 * level)) as u16;
        out[2 * level..2 * level + 2].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// The Linux SCSI midlayer's number for LUN `lun` as [`encode_lun`]
/// addresses it (`scsilun_to_int`): the inverse of [`lun_from_linux`].
pub fn lun_to_linux(lun: u64) -> u64 {
    let b = encode_lun(lun);
    let mut out = 0u64;
    for level in 0..4 {
        let v = u16::from_be_bytes([b[2 * level], b[2 * level + 1]]);
        out |= u64::from(v) << (16 * level);
    }
    out
}

/// Largest LUN number this target assigns (flat addressing).
pub const MAX_LUN: u64 = 16383;

/// Writes REPORT LUNS parameter data for `luns` under SELECT REPORT `select`
/// (SPC-4 6.33): 00h/02h list the LUNs (02h adds the well-known LUN), 01h
/// only the well-known LUN, 10h/11h/12h as 00h/01h/02h for the
/// administrative LU the target does not have.
pub fn report_luns(
    cdb: Cdb<'_>,
    luns: impl Iterator<Item = u64> + Clone,
    out: &mut Out<'_>,
) -> Result<(), Sense> {
    let select = cdb.u8(2);
    if cdb.be32(6) < 16 {
        // SPC-4: an allocation length below 16 is an error.
        return Err(Sense::invalid_cdb_field(6, None));
    }
    let (normal, wlun) = match select {
        0x00 | 0x10 => (true, false),
        0x01 | 0x11 => (false, true),
        0x02 | 0x12 => (true, true),
        _ => return Err(Sense::invalid_cdb_field(2, None)),
    };
    let count = if normal { luns.clone().count() } else { 0 } + usize::from(wlun);
    out.be32((count * 8) as u32);
    out.zeroes(4);
    if normal {
        for lun in luns {
            out.put(&encode_lun(lun));
        }
    }
    if wlun {
        out.be64(REPORT_LUNS_WLUN);
    }
    Ok(())
}

/// Whether an opcode may run while a unit attention is pending (SAM-5 5.14:
/// INQUIRY, REPORT LUNS and REQUEST SENSE neither report nor clear it).
pub fn passes_unit_attention(opcode: u8) -> bool {
    matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE)
}

/// REQUEST SENSE (SPC-4 6.39) parameter data: `pending` (a unit attention or
/// deferred error, if any) or NO SENSE, in the format the DESC bit asks.
pub fn request_sense(cdb: Cdb<'_>, pending: Option<Sense>, out: &mut Out<'_>) {
    let format = if cdb.u8(1) & 1 != 0 {
        sense::SenseFormat::Descriptor
    } else {
        sense::SenseFormat::Fixed
    };
    let mut buf = [0u8; sense::MAX_SENSE_LEN];
    let n = pending.unwrap_or(sense::NO_SENSE).encode(format, &mut buf);
    out.put(buf.get(..n).unwrap_or(&[]));
}
