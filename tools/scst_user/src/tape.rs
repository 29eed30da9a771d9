// SPDX-License-Identifier: GPL-2.0

//! A sequential-access (SSC) tape drive whose cartridge is a file: the
//! virtual tape library use of `/dev/scst_user`.
//!
//! The cartridge file is a 32-byte header (magic, capacity) followed by
//! records, each a 16-byte header (kind, payload length) and its payload:
//! data blocks and filemarks in tape order. End of data is the end of the
//! file: writing anywhere truncates what followed, as on a real tape.
//! The capacity counts the bytes of records; the early warning zone is
//! its last `early_warning` bytes.

use crate::scsi::{
    be16, be32, cdb_len_of, fixed_sense, inquiry, invalid_field, invalid_opcode, mode_data, put,
    Identity, ModeSense, Outcome, BLANK_CHECK, ILLEGAL_REQUEST, MEDIUM_ERROR, NOT_READY, NO_SENSE,
    SAM_5, SPC_4, SSC_3, UNIT_ATTENTION, VOLUME_OVERFLOW,
};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

const MAGIC: &[u8; 16] = b"SCST-RS TAPE v1\0";
const FILE_HEADER: u64 = 32;
const RECORD_HEADER: u64 = 16;
const KIND_DATA: u32 = 0x4b4c_4244; // "DBLK"
const KIND_FILEMARK: u32 = 0x4b4d_4646; // "FFMK"

/// Largest block READ BLOCK LIMITS reports (and WRITE accepts).
pub const MAX_BLOCK: u32 = 1 << 20;

// Sense byte 2 flags.
const FILEMARK: u8 = 0x80;
const EOM: u8 = 0x40;
const ILI: u8 = 0x20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    /// File offset of the record's header.
    offset: u64,
    /// Payload bytes (0 for a filemark).
    len: u32,
    filemark: bool,
}

impl Record {
    fn end(&self) -> u64 {
        self.offset + RECORD_HEADER + u64::from(self.len)
    }
}

struct State {
    file: File,
    /// Every record on the cartridge, in order.
    records: Vec<Record>,
    /// The logical object the next READ or WRITE meets (records.len() at
    /// end of data).
    pos: usize,
    /// 0: variable-block mode.
    block_size: u32,
    loaded: bool,
    /// NOT READY TO READY CHANGE owed after a LOAD.
    medium_changed: bool,
}

/// A tape drive with its cartridge loaded from a file.
pub struct Tape {
    state: Mutex<State>,
    capacity: u64,
    early_warning: u64,
    serial: String,
}

/// What a move over records stopped at.
enum Stop {
    Done,
    Filemark,
    EndOfData,
    BeginningOfPartition,
}

/// INQUIRY of a tape drive with serial number `serial`, whether it holds
/// a cartridge or not.
pub fn drive_inquiry(cdb: &[u8], data: &mut [u8], serial: &str) -> Outcome {
    inquiry(
        cdb,
        data,
        &Identity {
            dev_type: 0x01,
            removable: true,
            product: "VIRTUAL TAPE",
            serial,
            versions: &[SAM_5, SPC_4, SSC_3],
            vpd: &[],
        },
    )
}

impl Tape {
    /// Opens the cartridge in `file`, formatting it if it is empty with
    /// `capacity` bytes; a partly written last record is dropped. The
    /// early warning zone defaults to a sixteenth of the capacity, at most
    /// 16 MiB.
    pub fn open(
        file: File,
        capacity: u64,
        early_warning: Option<u64>,
        serial: String,
    ) -> io::Result<Self> {
        let len = file.metadata()?.len();
        let capacity = if len == 0 {
            let mut h = [0u8; FILE_HEADER as usize];
            h[..16].copy_from_slice(MAGIC);
            h[16..24].copy_from_slice(&capacity.to_le_bytes());
            file.write_all_at(&h, 0)?;
            capacity
        } else {
            let mut h = [0u8; FILE_HEADER as usize];
            file.read_exact_at(&mut h, 0)?;
            if &h[..16] != MAGIC {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a scst-rs tape cartridge",
                ));
            }
            u64::from_le_bytes(h[16..24].try_into().unwrap_or_default())
        };
        let early_warning = early_warning.unwrap_or((capacity / 16).min(16 << 20));
        if early_warning >= capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the early warning zone must be smaller than the capacity",
            ));
        }
        let len = file.metadata()?.len();
        let mut records = Vec::new();
        let mut at = FILE_HEADER;
        while at + RECORD_HEADER <= len {
            let mut h = [0u8; RECORD_HEADER as usize];
            file.read_exact_at(&mut h, at)?;
            let kind = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let rec_len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let r = Record {
                offset: at,
                len: rec_len,
                filemark: kind == KIND_FILEMARK,
            };
            if !(kind == KIND_DATA || kind == KIND_FILEMARK && rec_len == 0) || r.end() > len {
                break;
            }
            records.push(r);
            at = r.end();
        }
        if at != len {
            file.set_len(at)?;
        }
        Ok(Self {
            state: Mutex::new(State {
                file,
                records,
                pos: 0,
                block_size: 0,
                loaded: true,
                medium_changed: false,
            }),
            capacity,
            early_warning,
            serial,
        })
    }

    /// Executes one command.
    pub fn exec(&self, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let op = cdb.first().copied().unwrap_or(0);
        if cdb.len() < cdb_len_of(op) {
            return invalid_field();
        }
        let Ok(mut st) = self.state.lock() else {
            return Outcome::check(MEDIUM_ERROR, 0x44, 0x00);
        };
        if op == 0x12 {
            return drive_inquiry(cdb, data, &self.serial);
        }
        if st.medium_changed {
            st.medium_changed = false;
            return Outcome::check(UNIT_ATTENTION, 0x28, 0x00);
        }
        match op {
            0x05 => {
                // READ BLOCK LIMITS: any size from 1 byte to MAX_BLOCK.
                let mut d = [0u8; 6];
                d[1..4].copy_from_slice(&MAX_BLOCK.to_be_bytes()[1..]);
                d[4..6].copy_from_slice(&1u16.to_be_bytes());
                return Outcome::good(put(data, &d, 6));
            }
            0x1a | 0x5a => return self.mode_sense(&st, cdb, data),
            0x15 | 0x55 => return self.mode_select(&mut st, cdb, data),
            0x1b => return Self::load_unload(&mut st, cdb),
            // PREVENT ALLOW MEDIUM REMOVAL: nothing to lock.
            0x1e => return Outcome::good(0),
            _ => {}
        }
        if !st.loaded {
            return Outcome::check(NOT_READY, 0x3a, 0x00);
        }
        match op {
            0x00 => Outcome::good(0),
            0x01 => {
                st.pos = 0;
                Outcome::good(0)
            }
            0x08 => self.read(&mut st, cdb, data),
            0x0a => self.write(&mut st, cdb, data),
            0x10 => self.write_filemarks(&mut st, cdb),
            0x11 => Self::space(&mut st, cdb),
            0x19 => {
                // ERASE: from here to the end.
                let pos = st.pos;
                match st.truncate_at(pos) {
                    Ok(()) => Outcome::good(0),
                    Err(_) => Outcome::check(MEDIUM_ERROR, 0x0c, 0x00),
                }
            }
            0x2b => Self::locate(&mut st, cdb),
            0x34 => self.read_position(&st, cdb, data),
            _ => invalid_opcode(),
        }
    }

    fn used(&self, st: &State) -> u64 {
        st.records
            .last()
            .map_or(0, |r| r.end() - FILE_HEADER)
            .min(self.capacity)
    }

    fn in_early_warning(&self, st: &State) -> bool {
        self.used(st) > self.capacity - self.early_warning
    }

    fn read(&self, st: &mut State, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let fixed = cdb[1] & 1 != 0;
        let sili = cdb[1] & 2 != 0;
        let count = be32(&[0, cdb[2], cdb[3], cdb[4]], 0) as u32;
        if fixed && (sili || st.block_size == 0) {
            return invalid_field();
        }
        if count == 0 {
            return Outcome::good(0);
        }
        if !fixed {
            let want = count as usize;
            if want > data.len() {
                return invalid_field();
            }
            let Some(r) = st.records.get(st.pos).copied() else {
                return blank_check(count);
            };
            st.pos += 1;
            if r.filemark {
                return Outcome::check_with(fixed_sense(NO_SENSE, 0, 1, Some(count), FILEMARK));
            }
            let n = want.min(r.len as usize);
            if st
                .file
                .read_exact_at(&mut data[..n], r.offset + RECORD_HEADER)
                .is_err()
            {
                return Outcome::check(MEDIUM_ERROR, 0x11, 0x00);
            }
            let len = r.len as usize;
            if len == want || len < want && sili {
                return Outcome::good(n);
            }
            // Incorrect length: the residue, negative when the block was
            // longer than asked for.
            let residue = (want as i64 - len as i64) as i32 as u32;
            let mut out = Outcome::check_with(fixed_sense(NO_SENSE, 0, 0, Some(residue), ILI));
            out.data_in = n;
            return out;
        }
        let bs = st.block_size as usize;
        if count as usize * bs > data.len() {
            return invalid_field();
        }
        for i in 0..count as usize {
            let Some(r) = st.records.get(st.pos).copied() else {
                let mut out = blank_check(count - i as u32);
                out.data_in = i * bs;
                return out;
            };
            st.pos += 1;
            if r.filemark {
                let mut out = Outcome::check_with(fixed_sense(
                    NO_SENSE,
                    0,
                    1,
                    Some(count - i as u32),
                    FILEMARK,
                ));
                out.data_in = i * bs;
                return out;
            }
            let n = bs.min(r.len as usize);
            let buf = &mut data[i * bs..i * bs + n];
            if st
                .file
                .read_exact_at(buf, r.offset + RECORD_HEADER)
                .is_err()
            {
                return Outcome::check(MEDIUM_ERROR, 0x11, 0x00);
            }
            if r.len as usize != bs {
                let mut out =
                    Outcome::check_with(fixed_sense(NO_SENSE, 0, 0, Some(count - i as u32), ILI));
                out.data_in = i * bs + n;
                return out;
            }
        }
        Outcome::good(count as usize * bs)
    }

    fn write(&self, st: &mut State, cdb: &[u8], data: &[u8]) -> Outcome {
        let fixed = cdb[1] & 1 != 0;
        let count = be32(&[0, cdb[2], cdb[3], cdb[4]], 0) as u32;
        if fixed && st.block_size == 0 {
            return invalid_field();
        }
        if count == 0 {
            return Outcome::good(0);
        }
        let (blocks, bs) = if fixed {
            (count as usize, st.block_size as usize)
        } else {
            if count > MAX_BLOCK {
                return invalid_field();
            }
            (1, count as usize)
        };
        if blocks * bs > data.len() {
            return invalid_field();
        }
        let pos = st.pos;
        if st.truncate_at(pos).is_err() {
            return Outcome::check(MEDIUM_ERROR, 0x0c, 0x00);
        }
        for i in 0..blocks {
            let need = RECORD_HEADER + bs as u64;
            if self.used(st) + need > self.capacity {
                // Physical end of medium: what did not fit is not written.
                let left = if fixed { (blocks - i) as u32 } else { count };
                return Outcome::check_with(fixed_sense(VOLUME_OVERFLOW, 0, 2, Some(left), EOM));
            }
            if st.append(KIND_DATA, &data[i * bs..(i + 1) * bs]).is_err() {
                return Outcome::check(MEDIUM_ERROR, 0x0c, 0x00);
            }
        }
        if self.in_early_warning(st) {
            // Everything was written; the initiator should wrap up.
            return Outcome::check_with(fixed_sense(NO_SENSE, 0, 2, Some(0), EOM));
        }
        Outcome::good(0)
    }

    fn write_filemarks(&self, st: &mut State, cdb: &[u8]) -> Outcome {
        if cdb[1] & 2 != 0 {
            // Setmarks are not supported.
            return invalid_field();
        }
        let count = be32(&[0, cdb[2], cdb[3], cdb[4]], 0) as u32;
        if count > 0 {
            let pos = st.pos;
            if st.truncate_at(pos).is_err() {
                return Outcome::check(MEDIUM_ERROR, 0x0c, 0x00);
            }
            for i in 0..count {
                if self.used(st) + RECORD_HEADER > self.capacity {
                    return Outcome::check_with(fixed_sense(
                        VOLUME_OVERFLOW,
                        0,
                        2,
                        Some(count - i),
                        EOM,
                    ));
                }
                if st.append(KIND_FILEMARK, &[]).is_err() {
                    return Outcome::check(MEDIUM_ERROR, 0x0c, 0x00);
                }
            }
        }
        // A filemark flushes the drive's buffer: the cartridge is on disk.
        if st.file.sync_data().is_err() {
            return Outcome::check(MEDIUM_ERROR, 0x0c, 0x00);
        }
        if count > 0 && self.in_early_warning(st) {
            return Outcome::check_with(fixed_sense(NO_SENSE, 0, 2, Some(0), EOM));
        }
        Outcome::good(0)
    }

    fn space(st: &mut State, cdb: &[u8]) -> Outcome {
        let code = cdb[1] & 0x0f;
        // A 24-bit two's complement count.
        let raw = be32(&[0, cdb[2], cdb[3], cdb[4]], 0) as i32;
        let count = (raw << 8) >> 8;
        match code {
            0 | 1 => {
                let filemarks = code == 1;
                let (moved, stop) = st.space(count, filemarks);
                let left = count.unsigned_abs() - moved;
                match stop {
                    Stop::Done => Outcome::good(0),
                    Stop::Filemark => {
                        Outcome::check_with(fixed_sense(NO_SENSE, 0, 1, Some(left), FILEMARK))
                    }
                    Stop::EndOfData => blank_check(left),
                    Stop::BeginningOfPartition => {
                        Outcome::check_with(fixed_sense(NO_SENSE, 0, 4, Some(left), EOM))
                    }
                }
            }
            3 => {
                st.pos = st.records.len();
                Outcome::good(0)
            }
            _ => invalid_field(),
        }
    }

    fn locate(st: &mut State, cdb: &[u8]) -> Outcome {
        // CP with a partition other than 0: there is one partition.
        if cdb[1] & 2 != 0 && cdb[8] != 0 {
            return invalid_field();
        }
        let target = be32(cdb, 3) as usize;
        if target > st.records.len() {
            st.pos = st.records.len();
            return blank_check(0);
        }
        st.pos = target;
        Outcome::good(0)
    }

    fn read_position(&self, st: &State, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let bop = st.pos == 0;
        let eop = st.pos == st.records.len() && self.in_early_warning(st);
        let flags = (u8::from(bop) << 7) | (u8::from(eop) << 6);
        match cdb[1] & 0x1f {
            0 | 1 => {
                let mut d = [0u8; 20];
                d[0] = flags;
                d[4..8].copy_from_slice(&(st.pos as u32).to_be_bytes());
                d[8..12].copy_from_slice(&(st.pos as u32).to_be_bytes());
                Outcome::good(put(data, &d, 20))
            }
            6 => {
                let mut d = [0u8; 32];
                d[0] = flags;
                d[8..16].copy_from_slice(&(st.pos as u64).to_be_bytes());
                let files = st.records[..st.pos].iter().filter(|r| r.filemark).count();
                d[16..24].copy_from_slice(&(files as u64).to_be_bytes());
                Outcome::good(put(data, &d, 32))
            }
            _ => invalid_field(),
        }
    }

    fn load_unload(st: &mut State, cdb: &[u8]) -> Outcome {
        let load = cdb[4] & 1 != 0;
        let eot = cdb[4] & 4 != 0;
        if load && eot {
            return invalid_field();
        }
        st.pos = 0;
        if load && !st.loaded {
            st.medium_changed = true;
        }
        st.loaded = load;
        Outcome::good(0)
    }

    fn mode_sense(&self, st: &State, cdb: &[u8], data: &mut [u8]) -> Outcome {
        let ModeSense {
            ten,
            dbd,
            page,
            changeable,
            alloc,
        } = match ModeSense::parse(cdb) {
            Ok(m) => m,
            Err(refused) => return refused,
        };
        let mut pages = Vec::new();
        if page == 0x0f || page == 0x3f {
            // Data compression: not capable.
            let mut p = [0u8; 16];
            p[0] = 0x0f;
            p[1] = 14;
            pages.extend_from_slice(&p);
        }
        if page == 0x10 || page == 0x3f {
            // Device configuration: nothing to change.
            let mut p = [0u8; 16];
            p[0] = 0x10;
            p[1] = 14;
            pages.extend_from_slice(&p);
        }
        if pages.is_empty() && page != 0 {
            return invalid_field();
        }
        let mut bd = Vec::new();
        if !dbd {
            bd = vec![0u8; 8];
            let bs = if changeable { 0xff_ffff } else { st.block_size };
            bd[5..8].copy_from_slice(&bs.to_be_bytes()[1..]);
        }
        // Buffered mode 1: WRITE completes once the data is in the page cache.
        // Both pages are all zeros: as changeable masks, nothing changes.
        let device_specific = if changeable { 0 } else { 0x10 };
        let d = mode_data(ten, device_specific, &bd, &pages);
        Outcome::good(put(data, &d, alloc))
    }

    fn mode_select(&self, st: &mut State, cdb: &[u8], data: &[u8]) -> Outcome {
        let ten = cdb[0] == 0x55;
        let len = if ten {
            be16(cdb, 7) as usize
        } else {
            usize::from(cdb[4])
        };
        if cdb[1] & 1 != 0 {
            // Saved pages are not supported.
            return invalid_field();
        }
        let header = if ten { 8 } else { 4 };
        if len == 0 {
            return Outcome::good(0);
        }
        if len < header || len > data.len() {
            return param_list_invalid();
        }
        let p = &data[..len];
        let bd_len = if ten {
            be16(p, 6) as usize
        } else {
            usize::from(p[3])
        };
        if !(bd_len == 0 || bd_len == 8) || header + bd_len > len {
            return param_list_invalid();
        }
        let mut new_bs = st.block_size;
        if bd_len == 8 {
            let bd = &p[header..header + 8];
            let bs = be32(&[0, bd[5], bd[6], bd[7]], 0) as u32;
            if bs > MAX_BLOCK {
                return param_list_invalid();
            }
            new_bs = bs;
        }
        // Pages: only the two this drive reports, and nothing in them changes.
        let mut at = header + bd_len;
        while at < len {
            if at + 2 > len {
                return param_list_invalid();
            }
            let code = p[at] & 0x3f;
            let plen = usize::from(p[at + 1]);
            if !matches!(code, 0x0f | 0x10) || plen != 14 || at + 2 + plen > len {
                return param_list_invalid();
            }
            if p[at + 2..at + 2 + plen].iter().any(|&b| b != 0) {
                return param_list_invalid();
            }
            at += 2 + plen;
        }
        st.block_size = new_bs;
        Outcome::good(0)
    }
}

impl State {
    /// Drops every record from `pos` on (the tape's new end of data).
    fn truncate_at(&mut self, pos: usize) -> io::Result<()> {
        if pos >= self.records.len() {
            return Ok(());
        }
        self.file.set_len(self.records[pos].offset)?;
        self.records.truncate(pos);
        Ok(())
    }

    /// Appends a record at end of data (which must be the position).
    fn append(&mut self, kind: u32, payload: &[u8]) -> io::Result<()> {
        let offset = self.records.last().map_or(FILE_HEADER, |r| r.end());
        let mut header = [0u8; RECORD_HEADER as usize];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        // The payload goes straight from the command's buffer; a crash
        // between the two writes leaves a torn record, dropped on open.
        self.file.write_all_at(&header, offset)?;
        self.file.write_all_at(payload, offset + RECORD_HEADER)?;
        self.records.push(Record {
            offset,
            len: payload.len() as u32,
            filemark: kind == KIND_FILEMARK,
        });
        self.pos = self.records.len();
        Ok(())
    }

    /// Moves over `count` blocks or filemarks (backward when negative);
    /// how many were passed and why it stopped.
    fn space(&mut self, count: i32, filemarks: bool) -> (u32, Stop) {
        let mut moved = 0u32;
        let want = count.unsigned_abs();
        while moved < want {
            if count > 0 {
                let Some(r) = self.records.get(self.pos) else {
                    return (moved, Stop::EndOfData);
                };
                self.pos += 1;
                if r.filemark && !filemarks {
                    // Stopped just past the filemark.
                    return (moved, Stop::Filemark);
                }
                if r.filemark == filemarks {
                    moved += 1;
                }
            } else {
                if self.pos == 0 {
                    return (moved, Stop::BeginningOfPartition);
                }
                let r = self.records[self.pos - 1];
                self.pos -= 1;
                if r.filemark && !filemarks {
                    // Stopped on the beginning side of the filemark.
                    return (moved, Stop::Filemark);
                }
                if r.filemark == filemarks {
                    moved += 1;
                }
            }
        }
        (moved, Stop::Done)
    }
}

fn blank_check(left: u32) -> Outcome {
    Outcome::check_with(fixed_sense(BLANK_CHECK, 0, 5, Some(left), 0))
}

fn param_list_invalid() -> Outcome {
    Outcome::check(ILLEGAL_REQUEST, 0x26, 0x00)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::{CHECK_CONDITION, GOOD};
    use std::fs::OpenOptions;

    fn cartridge(name: &str, capacity: u64, ew: u64) -> (Tape, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("scst-rs-tape-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        (
            Tape::open(f, capacity, Some(ew), "T1".into()).unwrap(),
            path,
        )
    }

    fn reopen(path: &std::path::Path) -> Tape {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        Tape::open(f, 0, None, "T1".into()).unwrap()
    }

    fn cmd6(op: u8, b1: u8, count: u32) -> [u8; 6] {
        let c = count.to_be_bytes();
        [op, b1, c[1], c[2], c[3], 0]
    }

    fn key(o: &Outcome) -> (u8, u8, u8, u8, u32) {
        let s = &o.sense;
        (
            s[2] & 0x0f,
            s[2] & 0xe0,
            s[12],
            s[13],
            u32::from_be_bytes([s[3], s[4], s[5], s[6]]),
        )
    }

    fn write_var(t: &Tape, bytes: &[u8]) -> Outcome {
        let mut d = bytes.to_vec();
        t.exec(&cmd6(0x0a, 0, bytes.len() as u32), &mut d)
    }

    fn read_var(t: &Tape, n: usize) -> (Outcome, Vec<u8>) {
        let mut d = vec![0u8; n];
        let o = t.exec(&cmd6(0x08, 0, n as u32), &mut d);
        d.truncate(o.data_in);
        (o, d)
    }

    #[test]
    fn two_files_survive_a_reopen_and_filemarks_stop_reads() {
        let (t, path) = cartridge("files", 1 << 20, 1 << 12);
        assert_eq!(write_var(&t, b"alpha").status, GOOD);
        assert_eq!(write_var(&t, b"beta!!").status, GOOD);
        assert_eq!(t.exec(&cmd6(0x10, 0, 1), &mut []).status, GOOD);
        assert_eq!(write_var(&t, b"gamma").status, GOOD);
        assert_eq!(t.exec(&cmd6(0x10, 0, 1), &mut []).status, GOOD);
        drop(t);
        let t = reopen(&path);
        let (o, d) = read_var(&t, 100);
        // Shorter block than asked: ILI with the residue, data delivered.
        assert_eq!(o.status, CHECK_CONDITION);
        assert_eq!(key(&o), (NO_SENSE, ILI, 0, 0, 95));
        assert_eq!(d, b"alpha");
        let (o, d) = read_var(&t, 6);
        assert_eq!((o.status, d.as_slice()), (GOOD, &b"beta!!"[..]));
        let (o, _) = read_var(&t, 6);
        assert_eq!(key(&o), (NO_SENSE, FILEMARK, 0, 1, 6));
        let (o, d) = read_var(&t, 5);
        assert_eq!((o.status, d.as_slice()), (GOOD, &b"gamma"[..]));
        let (o, _) = read_var(&t, 5);
        assert_eq!(key(&o), (NO_SENSE, FILEMARK, 0, 1, 5));
        let (o, _) = read_var(&t, 5);
        assert_eq!(key(&o), (BLANK_CHECK, 0, 0, 5, 5));
        // A longer block than asked: negative residue, position past it.
        assert_eq!(t.exec(&cmd6(0x01, 0, 0), &mut []).status, GOOD);
        let (o, d) = read_var(&t, 2);
        assert_eq!(key(&o).4, (-3i32) as u32);
        assert_eq!(d, b"al");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn space_forward_and_back_over_filemarks_and_blocks() {
        let (t, path) = cartridge("space", 1 << 20, 1 << 12);
        for f in 0..3u8 {
            for b in 0..4u8 {
                assert_eq!(write_var(&t, &[f, b]).status, GOOD);
            }
            assert_eq!(t.exec(&cmd6(0x10, 0, 1), &mut []).status, GOOD);
        }
        t.exec(&cmd6(0x01, 0, 0), &mut []);
        // fsf 2: at the first block of file 2.
        assert_eq!(t.exec(&cmd6(0x11, 1, 2), &mut []).status, GOOD);
        assert_eq!(read_var(&t, 2).1, [2, 0]);
        // Blocks forward across a filemark stop past it.
        let o = t.exec(&cmd6(0x11, 0, 10), &mut []);
        assert_eq!(key(&o), (NO_SENSE, FILEMARK, 0, 1, 7));
        // End of data, then more filemarks: BLANK CHECK with what is left.
        let o = t.exec(&cmd6(0x11, 1, 2), &mut []);
        assert_eq!(key(&o), (BLANK_CHECK, 0, 0, 5, 2));
        // bsf 1 from EOD: before the last filemark.
        let minus1 = 0x00ff_ffff;
        assert_eq!(t.exec(&cmd6(0x11, 1, minus1), &mut []).status, GOOD);
        let (o, _) = read_var(&t, 2);
        assert_eq!(key(&o).1, FILEMARK);
        // Blocks backward across a filemark stop before it (in file 1).
        let minus3 = 0x00ff_fffd;
        assert_eq!(t.exec(&cmd6(0x11, 1, minus1), &mut []).status, GOOD);
        assert_eq!(t.exec(&cmd6(0x11, 0, minus3), &mut []).status, GOOD);
        let o = t.exec(&cmd6(0x11, 0, minus3), &mut []);
        assert_eq!(key(&o), (NO_SENSE, FILEMARK, 0, 1, 2));
        let (o, _) = read_var(&t, 2);
        assert_eq!(key(&o).1, FILEMARK);
        // Back over a block from the beginning: BOP stops it.
        t.exec(&cmd6(0x01, 0, 0), &mut []);
        let o = t.exec(&cmd6(0x11, 0, minus1), &mut []);
        assert_eq!(key(&o), (NO_SENSE, EOM, 0, 4, 1));
        // SPACE to end of data, then READ POSITION: 15 objects.
        assert_eq!(t.exec(&cmd6(0x11, 3, 0), &mut []).status, GOOD);
        let mut d = [0u8; 20];
        let o = t.exec(&[0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut d);
        assert_eq!(o.status, GOOD);
        assert_eq!(u32::from_be_bytes([d[4], d[5], d[6], d[7]]), 15);
        assert_eq!(d[0] & 0x80, 0);
        // LOCATE to object 5 (the first block of file 1).
        assert_eq!(
            t.exec(&[0x2b, 0, 0, 0, 0, 0, 5, 0, 0, 0], &mut []).status,
            GOOD
        );
        assert_eq!(read_var(&t, 2).1, [1, 0]);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn writing_in_the_middle_truncates_the_rest() {
        let (t, path) = cartridge("trunc", 1 << 20, 1 << 12);
        for b in 0..5u8 {
            write_var(&t, &[b; 3]);
        }
        t.exec(&cmd6(0x01, 0, 0), &mut []);
        t.exec(&cmd6(0x11, 0, 2), &mut []);
        assert_eq!(t.exec(&cmd6(0x10, 0, 1), &mut []).status, GOOD);
        drop(t);
        let t = reopen(&path);
        t.exec(&cmd6(0x11, 3, 0), &mut []);
        let mut d = [0u8; 20];
        t.exec(&[0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut d);
        assert_eq!(d[7], 3);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn fixed_blocks_follow_mode_select() {
        let (t, path) = cartridge("fixed", 1 << 20, 1 << 12);
        // Fixed mode needs a block size first.
        assert_eq!(
            key(&t.exec(&cmd6(0x0a, 1, 2), &mut [0; 1024])).0,
            ILLEGAL_REQUEST
        );
        let mut sel = [0u8, 0, 0x10, 8, 0, 0, 0, 0, 0, 0, 2, 0];
        assert_eq!(t.exec(&[0x15, 0x10, 0, 0, 12, 0], &mut sel).status, GOOD);
        let mut ms = [0u8; 12];
        t.exec(&[0x1a, 0, 0, 0, 12, 0], &mut ms);
        assert_eq!((ms[3], ms[10], ms[11]), (8, 2, 0));
        // MODE SENSE(10), all pages: 8 + 8 + two 16-byte pages.
        let mut ms10 = [0u8; 255];
        let o = t.exec(&[0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 255, 0], &mut ms10);
        assert_eq!(o.data_in, 48);
        assert_eq!((ms10[1], ms10[3], ms10[7], ms10[14]), (46, 0x10, 8, 2));
        assert_eq!((ms10[16], ms10[32]), (0x0f, 0x10));
        let mut data: Vec<u8> = (0..1536u32).map(|i| i as u8).collect();
        assert_eq!(t.exec(&cmd6(0x0a, 1, 3), &mut data).status, GOOD);
        t.exec(&cmd6(0x10, 0, 1), &mut []);
        t.exec(&cmd6(0x01, 0, 0), &mut []);
        let mut back = vec![0u8; 512 * 5];
        let o = t.exec(&cmd6(0x08, 1, 5), &mut back);
        // Three blocks, then the filemark with two blocks not read.
        assert_eq!(key(&o), (NO_SENSE, FILEMARK, 0, 1, 2));
        assert_eq!(o.data_in, 1536);
        assert_eq!(&back[..1536], &data[..]);
        // A block size the drive cannot do, and a page it does not have.
        let mut bad = [0u8, 0, 0, 8, 0, 0, 0, 0, 0, 0x20, 0, 0];
        assert_eq!(key(&t.exec(&[0x15, 0x10, 0, 0, 12, 0], &mut bad)).2, 0x26);
        let mut page = [0u8; 4 + 8 + 4];
        page[3] = 8;
        page[12] = 0x02;
        page[13] = 2;
        assert_eq!(key(&t.exec(&[0x15, 0x10, 0, 0, 16, 0], &mut page)).2, 0x26);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn early_warning_then_volume_overflow() {
        // 64 KiB of medium, the last 16 KiB of it the early warning zone.
        let (t, path) = cartridge("eom", 64 << 10, 16 << 10);
        let block = vec![7u8; 8 << 10];
        let mut written = 0;
        let last = loop {
            let o = write_var(&t, &block);
            if o.status != GOOD {
                break o;
            }
            written += 1;
        };
        // The write that entered the zone was done, and said so.
        assert_eq!(key(&last), (NO_SENSE, EOM, 0, 2, 0));
        written += 1;
        let mut overflow = None;
        for _ in 0..10 {
            let o = write_var(&t, &block);
            if key(&o).0 == VOLUME_OVERFLOW {
                overflow = Some(o);
                break;
            }
            assert_eq!(key(&o), (NO_SENSE, EOM, 0, 2, 0));
            written += 1;
        }
        let o = overflow.expect("the medium ends");
        assert_eq!(key(&o), (VOLUME_OVERFLOW, EOM, 0, 2, 8 << 10));
        // Every block that was reported written reads back.
        t.exec(&cmd6(0x01, 0, 0), &mut []);
        for _ in 0..written {
            let (o, d) = read_var(&t, 8 << 10);
            assert_eq!(o.status, GOOD);
            assert_eq!(d, block);
        }
        assert_eq!(key(&read_var(&t, 8 << 10).0).0, BLANK_CHECK);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn unload_makes_it_not_ready_and_load_reports_the_change() {
        let (t, path) = cartridge("load", 1 << 20, 1 << 12);
        write_var(&t, b"x");
        assert_eq!(t.exec(&[0x1b, 0, 0, 0, 0, 0], &mut []).status, GOOD);
        assert_eq!(key(&t.exec(&[0, 0, 0, 0, 0, 0], &mut [])).2, 0x3a);
        assert_eq!(t.exec(&[0x1b, 0, 0, 0, 1, 0], &mut []).status, GOOD);
        assert_eq!(key(&t.exec(&[0, 0, 0, 0, 0, 0], &mut [])).0, UNIT_ATTENTION);
        assert_eq!(t.exec(&[0, 0, 0, 0, 0, 0], &mut []).status, GOOD);
        // Loaded at the beginning.
        let mut d = [0u8; 20];
        t.exec(&[0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut d);
        assert_eq!(d[0] & 0x80, 0x80);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_torn_last_record_is_dropped() {
        let (t, path) = cartridge("torn", 1 << 20, 1 << 12);
        write_var(&t, b"whole");
        write_var(&t, b"torn-record");
        drop(t);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 4)
            .unwrap();
        let t = reopen(&path);
        assert_eq!(read_var(&t, 5).1, b"whole");
        assert_eq!(key(&read_var(&t, 5).0).0, BLANK_CHECK);
        let _ = std::fs::remove_file(path);
    }
}
