// SPDX-License-Identifier: GPL-2.0

//! SCSI helpers of the reference handlers: outcomes, sense data, and the
//! block commands (SBC) of a file-backed disk.

use std::fs::File;
use std::os::unix::fs::FileExt;

pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;

/// How a command ended.
pub struct Outcome {
    pub status: u8,
    pub data_in: usize,
    pub sense: Vec<u8>,
}

impl Outcome {
    pub fn good(data_in: usize) -> Self {
        Self {
            status: GOOD,
            data_in,
            sense: Vec::new(),
        }
    }

    /// CHECK CONDITION with fixed-format sense.
    pub fn check(key: u8, asc: u8, ascq: u8) -> Self {
        Self::check_with(fixed_sense(key, asc, ascq, None, 0))
    }

    pub fn check_with(sense: Vec<u8>) -> Self {
        Self {
            status: CHECK_CONDITION,
            data_in: 0,
            sense,
        }
    }
}

/// Fixed-format sense (70h); `info` sets VALID and INFORMATION, `flags`
/// the FILEMARK/EOM/ILI bits of byte 2.
pub fn fixed_sense(key: u8, asc: u8, ascq: u8, info: Option<u32>, flags: u8) -> Vec<u8> {
    let mut s = vec![0u8; 18];
    s[0] = 0x70 | if info.is_some() { 0x80 } else { 0 };
    s[2] = (key & 0x0f) | flags;
    if let Some(i) = info {
        s[3..7].copy_from_slice(&i.to_be_bytes());
    }
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    s
}

pub const ILLEGAL_REQUEST: u8 = 0x5;
pub const MEDIUM_ERROR: u8 = 0x3;
pub const NO_SENSE: u8 = 0x0;
pub const NOT_READY: u8 = 0x2;
pub const UNIT_ATTENTION: u8 = 0x6;
pub const BLANK_CHECK: u8 = 0x8;
pub const VOLUME_OVERFLOW: u8 = 0xd;

pub fn invalid_opcode() -> Outcome {
    Outcome::check(ILLEGAL_REQUEST, 0x20, 0x00)
}
pub fn invalid_field() -> Outcome {
    Outcome::check(ILLEGAL_REQUEST, 0x24, 0x00)
}
pub fn lba_out_of_range() -> Outcome {
    Outcome::check(ILLEGAL_REQUEST, 0x21, 0x00)
}

/// Copies `src` to the start of `data`, at most `alloc` bytes; the count.
pub fn put(data: &mut [u8], src: &[u8], alloc: usize) -> usize {
    let n = src.len().min(alloc).min(data.len());
    data[..n].copy_from_slice(&src[..n]);
    n
}

pub fn be16(b: &[u8], i: usize) -> u64 {
    u64::from(u16::from_be_bytes([b[i], b[i + 1]]))
}
pub fn be32(b: &[u8], i: usize) -> u64 {
    u64::from(u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]))
}
pub fn be64(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_be_bytes(a)
}

/// Standard INQUIRY data of `dev_type`, and the VPD pages every device has.
pub fn inquiry(
    cdb: &[u8],
    data: &mut [u8],
    dev_type: u8,
    removable: bool,
    product: &str,
    serial: &str,
) -> Outcome {
    if cdb.len() < 6 {
        return invalid_field();
    }
    let alloc = be16(cdb, 3) as usize;
    let evpd = cdb[1] & 1 != 0;
    if !evpd {
        if cdb[2] != 0 {
            return invalid_field();
        }
        let mut d = vec![0u8; 36];
        d[0] = dev_type;
        d[1] = if removable { 0x80 } else { 0 };
        d[2] = 0x06; // SPC-4
        d[3] = 0x02;
        d[4] = 31;
        d[7] = 0x02; // CMDQUE
        d[8..16].copy_from_slice(b"SCST_RS ");
        let product = format!("{product:<16}");
        d[16..32].copy_from_slice(&product.as_bytes()[..16]);
        d[32..36].copy_from_slice(b"0100");
        return Outcome::good(put(data, &d, alloc));
    }
    let page = cdb[2];
    let body: Vec<u8> = match page {
        0x00 => vec![0x00, 0x80, 0x83],
        0x80 => serial.as_bytes().to_vec(),
        0x83 => {
            // One T10 vendor ID designator made of the serial.
            let mut id = b"SCST_RS ".to_vec();
            id.extend_from_slice(serial.as_bytes());
            let mut v = vec![0x02, 0x01, 0x00, id.len() as u8];
            v.extend_from_slice(&id);
            v
        }
        _ => return invalid_field(),
    };
    let mut d = vec![dev_type, page, 0, body.len() as u8];
    d.extend_from_slice(&body);
    Outcome::good(put(data, &d, alloc))
}

/// A disk kept in a file.
pub struct Disk {
    pub file: File,
    pub block_size: u64,
    pub blocks: u64,
    pub serial: String,
}

impl Disk {
    pub fn exec(&self, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let op = cdb.first().copied().unwrap_or(0);
        let need = match op >> 5 {
            0 => 6,
            1 | 2 => 10,
            4 => 16,
            5 => 12,
            _ => 6,
        };
        if cdb.len() < need {
            return invalid_field();
        }
        match op {
            0x00 => Outcome::good(0), // TEST UNIT READY
            0x12 => inquiry(cdb, data, 0x00, false, "USER DISK", &self.serial),
            0x25 => {
                // READ CAPACITY(10)
                let last = (self.blocks - 1).min(0xffff_ffff) as u32;
                let mut d = [0u8; 8];
                d[..4].copy_from_slice(&last.to_be_bytes());
                d[4..].copy_from_slice(&(self.block_size as u32).to_be_bytes());
                Outcome::good(put(data, &d, 8))
            }
            0x9e if cdb[1] & 0x1f == 0x10 => {
                // READ CAPACITY(16)
                let mut d = [0u8; 32];
                d[..8].copy_from_slice(&(self.blocks - 1).to_be_bytes());
                d[8..12].copy_from_slice(&(self.block_size as u32).to_be_bytes());
                Outcome::good(put(data, &d, be32(cdb, 10) as usize))
            }
            0x1a | 0x5a => self.mode_sense(cdb, data),
            0x1b | 0x35 | 0x91 | 0x2f | 0xaf | 0x8f => {
                // START STOP UNIT, SYNCHRONIZE CACHE, VERIFY (no data check)
                if matches!(op, 0x35 | 0x91) && self.file.sync_data().is_err() {
                    return Outcome::check(MEDIUM_ERROR, 0x0c, 0x00);
                }
                Outcome::good(0)
            }
            0x08 | 0x0a | 0x28 | 0x2a | 0x88 | 0x8a | 0xa8 | 0xaa => self.rw(cdb, data),
            _ => invalid_opcode(),
        }
    }

    fn rw(&self, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let op = cdb[0];
        let (lba, blocks) = match op {
            0x08 | 0x0a => {
                let n = u64::from(cdb[4]);
                (
                    ((u64::from(cdb[1]) & 0x1f) << 16) | be16(cdb, 2),
                    if n == 0 { 256 } else { n },
                )
            }
            0x28 | 0x2a => (be32(cdb, 2), be16(cdb, 7)),
            0xa8 | 0xaa => (be32(cdb, 2), be32(cdb, 6)),
            _ => (be64(cdb, 2), be32(cdb, 10)),
        };
        if lba.checked_add(blocks).is_none_or(|end| end > self.blocks) {
            return lba_out_of_range();
        }
        let len = (blocks * self.block_size) as usize;
        if len > data.len() {
            return invalid_field();
        }
        let pos = lba * self.block_size;
        let write = matches!(op, 0x0a | 0x2a | 0x8a | 0xaa);
        let r = if write {
            self.file.write_all_at(&data[..len], pos)
        } else {
            self.file.read_exact_at(&mut data[..len], pos)
        };
        match r {
            Ok(()) => Outcome::good(if write { 0 } else { len }),
            Err(_) if write => Outcome::check(MEDIUM_ERROR, 0x0c, 0x00),
            Err(_) => Outcome::check(MEDIUM_ERROR, 0x11, 0x00),
        }
    }

    fn mode_sense(&self, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let ten = cdb[0] == 0x5a;
        let page = cdb[2] & 0x3f;
        let dbd = cdb[1] & 0x08 != 0;
        let alloc = if ten {
            be16(cdb, 7) as usize
        } else {
            usize::from(cdb[4])
        };
        let mut pages = Vec::new();
        if page == 0x08 || page == 0x3f {
            // Caching: write cache off (writes go to the file).
            let mut p = vec![0u8; 20];
            p[0] = 0x08;
            p[1] = 18;
            pages.extend_from_slice(&p);
        }
        if page == 0x0a || page == 0x3f {
            let mut p = vec![0u8; 12];
            p[0] = 0x0a;
            p[1] = 10;
            pages.extend_from_slice(&p);
        }
        if pages.is_empty() {
            return invalid_field();
        }
        let mut bd = Vec::new();
        if !dbd {
            bd = vec![0u8; 8];
            bd[..4].copy_from_slice(&(self.blocks.min(0xffff_ffff) as u32).to_be_bytes());
            bd[5..8].copy_from_slice(&(self.block_size as u32).to_be_bytes()[1..]);
        }
        let mut d = Vec::new();
        if ten {
            let len = 6 + bd.len() + pages.len();
            d.extend_from_slice(&(len as u16).to_be_bytes());
            d.extend_from_slice(&[0, 0, 0, 0]);
            d.extend_from_slice(&(bd.len() as u16).to_be_bytes());
        } else {
            d.extend_from_slice(&[(3 + bd.len() + pages.len()) as u8, 0, 0, bd.len() as u8]);
        }
        d.extend_from_slice(&bd);
        d.extend_from_slice(&pages);
        Outcome::good(put(data, &d, alloc))
    }
}
