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
pub const MISCOMPARE: u8 = 0xe;

pub fn invalid_opcode() -> Outcome {
    Outcome::check(ILLEGAL_REQUEST, 0x20, 0x00)
}
pub fn invalid_field() -> Outcome {
    Outcome::check(ILLEGAL_REQUEST, 0x24, 0x00)
}
pub fn lba_out_of_range() -> Outcome {
    Outcome::check(ILLEGAL_REQUEST, 0x21, 0x00)
}

/// The length of a CDB by its opcode's group (6 for the reserved groups).
pub fn cdb_len_of(op: u8) -> usize {
    match op >> 5 {
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 6,
    }
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

/// Version descriptors (SPC-4 7.7.3.2).
pub const SAM_5: u16 = 0x00a0;
pub const SPC_4: u16 = 0x0460;
pub const SBC_3: u16 = 0x04c0;
pub const SSC_3: u16 = 0x0400;

/// What INQUIRY reports of a device.
pub struct Identity<'a> {
    pub dev_type: u8,
    pub removable: bool,
    pub product: &'a str,
    pub serial: &'a str,
    /// Up to eight version descriptors.
    pub versions: &'a [u16],
    /// Device-specific VPD pages: (page code, page body).
    pub vpd: &'a [(u8, &'a [u8])],
}

/// Standard INQUIRY data, and the VPD pages every device has (00h, 80h,
/// 83h) plus the device's own.
pub fn inquiry(cdb: &[u8], data: &mut [u8], id: &Identity<'_>) -> Outcome {
    if cdb.len() < 6 {
        return invalid_field();
    }
    let alloc = be16(cdb, 3) as usize;
    let evpd = cdb[1] & 1 != 0;
    if !evpd {
        if cdb[2] != 0 {
            return invalid_field();
        }
        let mut d = vec![0u8; 74];
        d[0] = id.dev_type;
        d[1] = if id.removable { 0x80 } else { 0 };
        d[2] = 0x06; // SPC-4
        d[3] = 0x02;
        d[4] = 74 - 5;
        d[7] = 0x02; // CMDQUE
        d[8..16].copy_from_slice(b"SCST_RS ");
        let product = format!("{:<16}", id.product);
        d[16..32].copy_from_slice(&product.as_bytes()[..16]);
        d[32..36].copy_from_slice(b"0100");
        for (i, v) in id.versions.iter().take(8).enumerate() {
            d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
        }
        return Outcome::good(put(data, &d, alloc));
    }
    let page = cdb[2];
    let body: Vec<u8> = match page {
        0x00 => {
            let mut v = vec![0x00, 0x80, 0x83];
            v.extend(id.vpd.iter().map(|(code, _)| *code));
            v
        }
        0x80 => id.serial.as_bytes().to_vec(),
        0x83 => {
            // One T10 vendor ID designator made of the serial.
            let mut ident = b"SCST_RS ".to_vec();
            ident.extend_from_slice(id.serial.as_bytes());
            let mut v = vec![0x02, 0x01, 0x00, ident.len() as u8];
            v.extend_from_slice(&ident);
            v
        }
        _ => match id.vpd.iter().find(|(code, _)| *code == page) {
            Some((_, body)) => body.to_vec(),
            None => return invalid_field(),
        },
    };
    let mut d = vec![id.dev_type, page];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(&body);
    Outcome::good(put(data, &d, alloc))
}

/// MODE SENSE(6) or (10) data: the header, the block descriptor and the
/// pages.
pub fn mode_data(ten: bool, device_specific: u8, bd: &[u8], pages: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    if ten {
        let len = 6 + bd.len() + pages.len();
        d.extend_from_slice(&(len as u16).to_be_bytes());
        d.extend_from_slice(&[0, device_specific, 0, 0]);
        d.extend_from_slice(&(bd.len() as u16).to_be_bytes());
    } else {
        let len = 3 + bd.len() + pages.len();
        d.extend_from_slice(&[len as u8, 0, device_specific, bd.len() as u8]);
    }
    d.extend_from_slice(bd);
    d.extend_from_slice(pages);
    d
}

/// A serial number made of a device name (the same name, the same serial).
pub fn serial_of(name: &str) -> String {
    let hash = name
        .bytes()
        .fold(0u32, |h, c| h.wrapping_mul(31).wrapping_add(u32::from(c)));
    format!("{hash:08x}")
}

/// MODE SENSE device-specific parameter: DPO and FUA are supported.
const DPOFUA: u8 = 0x10;

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
        if cdb.len() < cdb_len_of(op) {
            return invalid_field();
        }
        match op {
            0x00 => Outcome::good(0), // TEST UNIT READY
            0x12 => {
                // Block Limits (SBC-3 6.6.4): nothing limited, no UNMAP.
                let block_limits = [0u8; 0x3c];
                inquiry(
                    cdb,
                    data,
                    &Identity {
                        dev_type: 0x00,
                        removable: false,
                        product: "USER DISK",
                        serial: &self.serial,
                        versions: &[SAM_5, SPC_4, SBC_3],
                        vpd: &[(0xb0, &block_limits)],
                    },
                )
            }
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
            0x1b | 0x35 | 0x91 => {
                // START STOP UNIT, SYNCHRONIZE CACHE
                if matches!(op, 0x35 | 0x91) && self.file.sync_data().is_err() {
                    return Outcome::check(MEDIUM_ERROR, 0x0c, 0x00);
                }
                Outcome::good(0)
            }
            0x2f | 0xaf | 0x8f => self.verify(cdb, data),
            0x08 | 0x0a | 0x28 | 0x2a | 0x88 | 0x8a | 0xa8 | 0xaa => self.rw(cdb, data),
            _ => invalid_opcode(),
        }
    }

    /// PARSE: READ and WRITE move the blocks their CDB names, commands of
    /// the vendor-specific range (C0h to FFh) do not exist here, and the
    /// others move what the initiator says.
    pub fn parse(&self, cdb: &[u8], direction: u8, len: u32) -> Result<(u8, u32), Outcome> {
        let blocks = match cdb.first().copied().unwrap_or(0) {
            0xc0..=0xff => return Err(invalid_opcode()),
            0x08 | 0x0a if cdb.len() >= 6 => match cdb[4] {
                0 => 256,
                n => u64::from(n),
            },
            0x28 | 0x2a if cdb.len() >= 10 => be16(cdb, 7),
            0xa8 | 0xaa if cdb.len() >= 12 => be32(cdb, 6),
            0x88 | 0x8a if cdb.len() >= 16 => be32(cdb, 10),
            _ => return Ok((direction, len)),
        };
        let bytes = blocks
            .saturating_mul(self.block_size)
            .min(u64::from(u32::MAX >> 1));
        Ok((direction, bytes as u32))
    }

    fn rw(&self, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let op = cdb[0];
        // RDPROTECT/WRPROTECT: the disk has no protection information.
        if !matches!(op, 0x08 | 0x0a) && cdb[1] >> 5 != 0 {
            return invalid_field();
        }
        // FUA on a write: on the file before GOOD (DPO is only a hint).
        let fua = !matches!(op, 0x08 | 0x0a) && cdb[1] & 0x08 != 0;
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
        let r = match r {
            Ok(()) if write && fua => self.file.sync_data(),
            r => r,
        };
        match r {
            Ok(()) => Outcome::good(if write { 0 } else { len }),
            Err(_) if write => Outcome::check(MEDIUM_ERROR, 0x0c, 0x00),
            Err(_) => Outcome::check(MEDIUM_ERROR, 0x11, 0x00),
        }
    }

    /// VERIFY(10/12/16): BYTCHK 0 reads the blocks, 1 compares them with
    /// the data-out, 3 compares each with the one block sent.
    fn verify(&self, cdb: &[u8], data: &[u8]) -> Outcome {
        let (lba, blocks) = match cdb[0] {
            0x2f => (be32(cdb, 2), be16(cdb, 7)),
            0xaf => (be32(cdb, 2), be32(cdb, 6)),
            _ => (be64(cdb, 2), be32(cdb, 10)),
        };
        if cdb[1] >> 5 != 0 {
            // VRPROTECT: no protection information.
            return invalid_field();
        }
        let bytchk = (cdb[1] >> 1) & 3;
        if bytchk == 2 {
            return invalid_field();
        }
        if lba.checked_add(blocks).is_none_or(|end| end > self.blocks) {
            return lba_out_of_range();
        }
        let bs = self.block_size as usize;
        let sent = match bytchk {
            0 => 0,
            1 => blocks as usize * bs,
            _ => bs,
        };
        if blocks > 0 && sent > data.len() {
            return invalid_field();
        }
        let mut block = vec![0u8; bs];
        for i in 0..blocks {
            if self
                .file
                .read_exact_at(&mut block, (lba + i) * self.block_size)
                .is_err()
            {
                return Outcome::check(MEDIUM_ERROR, 0x11, 0x00);
            }
            let expect = match bytchk {
                0 => continue,
                1 => &data[i as usize * bs..(i as usize + 1) * bs],
                _ => &data[..bs],
            };
            if let Some(at) = block.iter().zip(expect).position(|(a, b)| a != b) {
                // MISCOMPARE DURING VERIFY OPERATION, at this byte offset.
                let offset = i as usize * bs + at;
                return Outcome::check_with(fixed_sense(
                    MISCOMPARE,
                    0x1d,
                    0x00,
                    Some(offset as u32),
                    0,
                ));
            }
        }
        Outcome::good(0)
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
        let d = mode_data(ten, DPOFUA, &bd, &pages);
        Outcome::good(put(data, &d, alloc))
    }
}

/// A size on a handler's command line: bytes, or with a K, M or G suffix;
/// `None` if it does not parse or overflows.
pub fn parse_size(v: &str) -> Option<u64> {
    let (num, mult) = match v.chars().last() {
        Some('K' | 'k') => (&v[..v.len() - 1], 1 << 10),
        Some('M' | 'm') => (&v[..v.len() - 1], 1 << 20),
        Some('G' | 'g') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult))
}

/// What a MODE SENSE(6) or (10) CDB asks for.
pub struct ModeSense {
    pub ten: bool,
    /// DBD: no block descriptors.
    pub dbd: bool,
    pub page: u8,
    /// PC 01b: the changeable values' masks.
    pub changeable: bool,
    pub alloc: usize,
}

impl ModeSense {
    /// The CDB's fields; saved values (PC 11b) are refused with SAVING
    /// PARAMETERS NOT SUPPORTED.
    pub fn parse(cdb: &[u8]) -> Result<Self, Outcome> {
        let ten = cdb[0] == 0x5a;
        if cdb[2] >> 6 == 3 {
            return Err(Outcome::check(ILLEGAL_REQUEST, 0x39, 0x00));
        }
        Ok(Self {
            ten,
            dbd: cdb[1] & 0x08 != 0,
            page: cdb[2] & 0x3f,
            changeable: cdb[2] >> 6 == 1,
            alloc: if ten {
                be16(cdb, 7) as usize
            } else {
                usize::from(cdb[4])
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn disk(name: &str) -> (Disk, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("scst-rs-disk-{}-{name}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(64 * 512).unwrap();
        let d = Disk {
            file,
            block_size: 512,
            blocks: 64,
            serial: "D1".into(),
        };
        (d, path)
    }

    #[test]
    fn parse_sizes_reads_and_writes_from_the_cdb() {
        let (d, path) = disk("parse");
        // READ(10) of 2 blocks, whatever the initiator expects.
        let r10 = [0x28, 0, 0, 0, 0, 4, 0, 0, 2, 0];
        assert_eq!(d.parse(&r10, 2, 4096).ok(), Some((2, 1024)));
        // WRITE(6) with 0 blocks means 256.
        let w6 = [0x0a, 0, 0, 1, 0, 0];
        assert_eq!(d.parse(&w6, 1, 512).ok(), Some((1, 256 * 512)));
        // Others keep the initiator's values; vendor opcodes end here.
        assert_eq!(d.parse(&[0x12, 0, 0, 0, 36, 0], 2, 36).ok(), Some((2, 36)));
        let vendor = d.parse(&[0xc1, 0, 0, 0, 0, 0], 4, 0).err().unwrap();
        assert_eq!(
            (vendor.status, vendor.sense[2], vendor.sense[12]),
            (2, 5, 0x20)
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn verify_compares_and_reports_the_first_mismatching_byte() {
        let (d, path) = disk("verify");
        let mut block: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
        let write10 = [0x2a, 0, 0, 0, 0, 4, 0, 0, 2, 0];
        assert_eq!(d.exec(&write10, &mut block).status, GOOD);
        // BYTCHK 1: equal.
        let verify10 = [0x2f, 0x02, 0, 0, 0, 4, 0, 0, 2, 0];
        assert_eq!(d.exec(&verify10, &mut block.clone()).status, GOOD);
        let mut bad = block.clone();
        bad[700] ^= 1;
        let o = d.exec(&verify10, &mut bad);
        assert_eq!((o.sense[2], o.sense[12]), (MISCOMPARE, 0x1d));
        assert_eq!(
            u32::from_be_bytes([o.sense[3], o.sense[4], o.sense[5], o.sense[6]]),
            700
        );
        // Zero blocks past the end, VRPROTECT, BYTCHK 10b.
        let o = d.exec(&[0x2f, 0, 0, 0, 0, 65, 0, 0, 0, 0], &mut []);
        assert_eq!(o.sense[12], 0x21);
        let o = d.exec(&[0x2f, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], &mut []);
        assert_eq!(o.sense[12], 0x24);
        let o = d.exec(&[0x2f, 0x04, 0, 0, 0, 0, 0, 0, 1, 0], &mut [0; 512]);
        assert_eq!(o.sense[12], 0x24);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn protection_fields_are_refused_and_fua_is_accepted() {
        let (d, path) = disk("protect");
        let mut buf = vec![0u8; 512];
        for op in [0x28u8, 0x2a] {
            let o = d.exec(&[op, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], &mut buf);
            assert_eq!((o.status, o.sense[12]), (CHECK_CONDITION, 0x24));
            let o = d.exec(&[op, 0x18, 0, 0, 0, 0, 0, 0, 1, 0], &mut buf);
            assert_eq!(o.status, GOOD);
        }
        // MODE SENSE says DPO and FUA are supported.
        let mut ms = [0u8; 64];
        d.exec(&[0x1a, 0, 0x3f, 0, 64, 0], &mut ms);
        assert_eq!(ms[2] & 0x10, 0x10);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn inquiry_claims_sbc3_and_has_block_limits() {
        let (d, path) = disk("inq");
        let mut inq = [0u8; 96];
        let o = d.exec(&[0x12, 0, 0, 0, 96, 0], &mut inq);
        assert_eq!(o.data_in, 74);
        assert!(inq[58..74].chunks(2).any(|v| v == SBC_3.to_be_bytes()));
        let mut pages = [0u8; 16];
        d.exec(&[0x12, 1, 0, 0, 16, 0], &mut pages);
        assert_eq!(&pages[4..8], &[0x00, 0x80, 0x83, 0xb0]);
        let mut bl = [0u8; 255];
        let o = d.exec(&[0x12, 1, 0xb0, 0, 255, 0], &mut bl);
        assert_eq!((o.data_in, bl[1], bl[3]), (64, 0xb0, 0x3c));
        let _ = std::fs::remove_file(path);
    }
}
