// SPDX-License-Identifier: GPL-2.0
//! The benchmark's ceiling: the least an iSCSI target can do on the loopback
//! path. It logs an initiator in (accepting what it proposes), answers the
//! SCSI commands an initiator needs to attach a disk, and serves READs from a
//! buffer of zeros and WRITEs into nothing. No storage, no task set, no unit
//! attentions, no sysfs: what is left is the request/response pattern itself
//! (TCP, PDU framing, the initiator's own cost), which every target pays.
//!
//! One thread per connection; responses are batched and written when the
//! initiator has nothing more buffered, the way a good target coalesces.
//!
//! Usage: iscsi-ceiling [ADDR:PORT] [TARGET-IQN]

use std::collections::HashMap;
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

const BHS_LEN: usize = 48;
const BLOCK_SIZE: u32 = 512;
/// 256 MiB, the size of the other targets' LUNs.
const BLOCKS: u64 = (256 << 20) / BLOCK_SIZE as u64;
/// What this responder declares it can receive in one PDU.
const OUR_MAX_RECV: usize = 262_144;
/// The command window it grants.
const WINDOW: u32 = 128;
const RESERVED_TAG: u32 = 0xffff_ffff;

/// What READs return, written straight from here into the socket.
static ZEROS: [u8; 262_144] = [0; 262_144];

/// The batch of PDUs waiting to be written: headers and small payloads
/// copied into `bytes`, and runs of zeros that only the socket copies.
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    /// (length of `bytes` when the run was queued, run length)
    zero_runs: Vec<(usize, usize)>,
    pending: usize,
}

impl Output {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        self.pending += data.len();
    }

    fn push_zeros(&mut self, len: usize) {
        self.zero_runs.push((self.bytes.len(), len));
        self.pending += len;
    }

    fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Large enough to write now (and few enough slices for one writev).
    fn is_full(&self) -> bool {
        self.pending >= 4 << 20 || self.zero_runs.len() >= 256
    }

    fn flush(&mut self, w: &mut impl Write) -> io::Result<()> {
        let mut slices = Vec::with_capacity(2 * self.zero_runs.len() + 1);
        let mut at = 0;
        for &(end, len) in &self.zero_runs {
            if end > at {
                slices.push(IoSlice::new(&self.bytes[at..end]));
            }
            let mut left = len;
            while left > 0 {
                let n = left.min(ZEROS.len());
                slices.push(IoSlice::new(&ZEROS[..n]));
                left -= n;
            }
            at = end;
        }
        if at < self.bytes.len() {
            slices.push(IoSlice::new(&self.bytes[at..]));
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = w.write_vectored(rest)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        self.bytes.clear();
        self.zero_runs.clear();
        self.pending = 0;
        Ok(())
    }
}

mod op {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_CMD: u8 = 0x01;
    pub const TMF_REQ: u8 = 0x02;
    pub const LOGIN_REQ: u8 = 0x03;
    pub const TEXT_REQ: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQ: u8 = 0x06;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RSP: u8 = 0x21;
    pub const TMF_RSP: u8 = 0x22;
    pub const LOGIN_RSP: u8 = 0x23;
    pub const TEXT_RSP: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RSP: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const REJECT: u8 = 0x3f;
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// The zeros that pad a data segment of `len` bytes to a multiple of 4.
fn padding(len: usize) -> &'static [u8] {
    &[0u8; 3][..(4 - len % 4) % 4]
}

fn be_n(b: &[u8]) -> u64 {
    b.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

struct Pdu {
    bhs: [u8; BHS_LEN],
    data: Vec<u8>,
}

impl Pdu {
    fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    fn immediate(&self) -> bool {
        self.bhs[0] & 0x40 != 0
    }
    fn flags(&self) -> u8 {
        self.bhs[1]
    }
    fn itt(&self) -> u32 {
        be32(&self.bhs, 16)
    }
    fn cmd_sn(&self) -> u32 {
        be32(&self.bhs, 24)
    }
}

/// A WRITE waiting for its data.
struct PendingWrite {
    lun: [u8; 8],
    cdb: [u8; 16],
    expected: u32,
    received: u32,
    /// End of the data asked for so far (unsolicited, then R2Ts).
    requested: u32,
    r2t_sn: u32,
}

struct Session {
    stat_sn: u32,
    exp_cmd_sn: u32,
    /// What the initiator declared it can receive in one PDU.
    their_max_recv: usize,
    first_burst: u32,
    max_burst: u32,
    initial_r2t: bool,
    immediate_data: bool,
    discovery: bool,
    logged_in: bool,
    tpgt_sent: bool,
    next_ttt: u32,
    writes: HashMap<u32, PendingWrite>,
    out: Output,
    target: String,
    portal: String,
}

fn read_pdu(r: &mut impl Read) -> io::Result<Option<Pdu>> {
    let mut bhs = [0u8; BHS_LEN];
    match r.read_exact(&mut bhs) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let ahs = usize::from(bhs[4]) * 4;
    let dsl = (be32(&bhs, 4) & 0x00ff_ffff) as usize;
    if ahs > 0 {
        io::copy(&mut r.by_ref().take(ahs as u64), &mut io::sink())?;
    }
    let mut data = vec![0u8; dsl.div_ceil(4) * 4];
    r.read_exact(&mut data)?;
    data.truncate(dsl);
    Ok(Some(Pdu { bhs, data }))
}

impl Session {
    fn new(target: String, portal: String) -> Self {
        Session {
            stat_sn: 1,
            exp_cmd_sn: 0,
            their_max_recv: 8192,
            first_burst: 65536,
            max_burst: 262_144,
            initial_r2t: true,
            immediate_data: true,
            discovery: false,
            logged_in: false,
            tpgt_sent: false,
            next_ttt: 1,
            writes: HashMap::new(),
            out: Output::default(),
            target,
            portal,
        }
    }

    /// Appends a PDU to the output batch, filling the sequence numbers
    /// every target PDU carries at 24..36 (StatSN only when `stat`).
    fn emit(&mut self, bhs: [u8; BHS_LEN], data: &[u8], stat: bool) {
        self.emit_header(bhs, data.len(), stat);
        self.out.push(data);
        self.out.push(padding(data.len()));
    }

    /// Like `emit`, with `len` zeros as the data segment.
    fn emit_zeros(&mut self, bhs: [u8; BHS_LEN], len: usize, stat: bool) {
        self.emit_header(bhs, len, stat);
        self.out.push_zeros(len);
        self.out.push(padding(len));
    }

    fn emit_header(&mut self, mut bhs: [u8; BHS_LEN], len: usize, stat: bool) {
        bhs[4] = 0;
        let dsl = u32::try_from(len).unwrap_or(0) & 0x00ff_ffff;
        put32(&mut bhs, 4, dsl);
        if stat {
            put32(&mut bhs, 24, self.stat_sn);
            self.stat_sn = self.stat_sn.wrapping_add(1);
        }
        put32(&mut bhs, 28, self.exp_cmd_sn);
        put32(&mut bhs, 32, self.exp_cmd_sn.wrapping_add(WINDOW - 1));
        self.out.push(&bhs);
    }

    fn header(opcode: u8, flags: u8, itt: u32) -> [u8; BHS_LEN] {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = opcode;
        bhs[1] = flags;
        put32(&mut bhs, 16, itt);
        bhs
    }

    fn advance_cmd_sn(&mut self, pdu: &Pdu) {
        if !pdu.immediate() {
            self.exp_cmd_sn = pdu.cmd_sn().wrapping_add(1);
        }
    }

    /// Returns false when the connection is to be closed.
    fn handle(&mut self, pdu: Pdu) -> bool {
        if !self.logged_in && pdu.opcode() != op::LOGIN_REQ {
            return false;
        }
        match pdu.opcode() {
            op::LOGIN_REQ => self.login(&pdu),
            op::SCSI_CMD => {
                self.advance_cmd_sn(&pdu);
                self.scsi_command(pdu);
                true
            }
            op::DATA_OUT => {
                self.data_out(&pdu);
                true
            }
            op::NOP_OUT => {
                self.advance_cmd_sn(&pdu);
                if pdu.itt() != RESERVED_TAG {
                    let mut bhs = Self::header(op::NOP_IN, 0x80, pdu.itt());
                    bhs[8..16].copy_from_slice(&pdu.bhs[8..16]);
                    put32(&mut bhs, 20, RESERVED_TAG);
                    self.emit(bhs, &pdu.data, true);
                }
                true
            }
            op::TEXT_REQ => {
                self.advance_cmd_sn(&pdu);
                let mut answer = Vec::new();
                if String::from_utf8_lossy(&pdu.data).contains("SendTargets=") {
                    answer.extend_from_slice(format!("TargetName={}\0", self.target).as_bytes());
                    answer
                        .extend_from_slice(format!("TargetAddress={},1\0", self.portal).as_bytes());
                }
                let mut bhs = Self::header(op::TEXT_RSP, 0x80, pdu.itt());
                put32(&mut bhs, 20, RESERVED_TAG);
                self.emit(bhs, &answer, true);
                true
            }
            op::TMF_REQ => {
                self.advance_cmd_sn(&pdu);
                // Nothing ever waits here: every task is answered at once.
                let bhs = Self::header(op::TMF_RSP, 0x80, pdu.itt());
                self.emit(bhs, &[], true);
                true
            }
            op::LOGOUT_REQ => {
                self.advance_cmd_sn(&pdu);
                let bhs = Self::header(op::LOGOUT_RSP, 0x80, pdu.itt());
                self.emit(bhs, &[], true);
                false
            }
            _ => {
                let mut bhs = Self::header(op::REJECT, 0x80, RESERVED_TAG);
                bhs[2] = 0x04; // command not supported
                let header = pdu.bhs;
                self.emit(bhs, &header, true);
                true
            }
        }
    }

    fn login(&mut self, pdu: &Pdu) -> bool {
        let flags = pdu.flags();
        let transit = flags & 0x80 != 0;
        let csg = (flags >> 2) & 3;
        let nsg = flags & 3;
        if self.exp_cmd_sn == 0 {
            self.exp_cmd_sn = pdu.cmd_sn();
        }
        let mut answer = String::new();
        for pair in pdu.data.split(|&b| b == 0).filter(|p| !p.is_empty()) {
            let pair = String::from_utf8_lossy(pair);
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let reply = match key {
                "AuthMethod" => Some("None".to_string()),
                "HeaderDigest" | "DataDigest" => Some("None".to_string()),
                "IFMarker" | "OFMarker" => Some("No".to_string()),
                "MaxRecvDataSegmentLength" => {
                    self.their_max_recv = value.parse().unwrap_or(8192);
                    Some(OUR_MAX_RECV.to_string())
                }
                "FirstBurstLength" => {
                    self.first_burst = value.parse().unwrap_or(65536);
                    Some(value.to_string())
                }
                "MaxBurstLength" => {
                    self.max_burst = value.parse().unwrap_or(262_144);
                    Some(value.to_string())
                }
                "InitialR2T" => {
                    self.initial_r2t = value == "Yes";
                    Some(value.to_string())
                }
                "ImmediateData" => {
                    self.immediate_data = value == "Yes";
                    Some(value.to_string())
                }
                "SessionType" => {
                    self.discovery = value == "Discovery";
                    None
                }
                "MaxConnections"
                | "ErrorRecoveryLevel"
                | "DataPDUInOrder"
                | "DataSequenceInOrder"
                | "DefaultTime2Wait"
                | "DefaultTime2Retain" => Some(value.to_string()),
                "MaxOutstandingR2T" => Some("1".to_string()),
                "InitiatorName" | "InitiatorAlias" | "TargetName" => None,
                _ => Some("NotUnderstood".to_string()),
            };
            if let Some(reply) = reply {
                answer.push_str(&format!("{key}={reply}\0"));
            }
        }
        if !self.discovery && !self.tpgt_sent {
            self.tpgt_sent = true;
            answer.push_str("TargetPortalGroupTag=1\0");
        }
        let stage = (csg << 2) | if transit { nsg } else { 0 };
        let mut bhs = Self::header(op::LOGIN_RSP, (flags & 0x80) | stage, pdu.itt());
        bhs[8..14].copy_from_slice(&pdu.bhs[8..14]);
        if transit && nsg == 3 {
            bhs[14..16].copy_from_slice(&1u16.to_be_bytes());
            self.logged_in = true;
        }
        self.emit(bhs, answer.as_bytes(), true);
        true
    }

    fn scsi_command(&mut self, pdu: Pdu) {
        let mut cdb = [0u8; 16];
        cdb.copy_from_slice(&pdu.bhs[32..48]);
        let mut lun = [0u8; 8];
        lun.copy_from_slice(&pdu.bhs[8..16]);
        let expected = be32(&pdu.bhs, 20);
        let itt = pdu.itt();
        if pdu.flags() & 0x20 != 0 && expected > 0 {
            let received = pdu.data.len() as u32;
            let unsolicited = if self.initial_r2t {
                received
            } else {
                expected.min(self.first_burst).max(received)
            };
            let mut write = PendingWrite {
                lun,
                cdb,
                expected,
                received,
                requested: unsolicited,
                r2t_sn: 0,
            };
            if write.received >= write.expected {
                self.respond(itt, &lun, &cdb, expected);
                return;
            }
            if write.requested <= write.received {
                self.send_r2t(itt, &mut write);
            }
            self.writes.insert(itt, write);
            return;
        }
        self.respond(itt, &lun, &cdb, expected);
    }

    fn send_r2t(&mut self, itt: u32, write: &mut PendingWrite) {
        let offset = write.requested;
        let length = (write.expected - offset).min(self.max_burst);
        let mut bhs = Self::header(op::R2T, 0x80, itt);
        bhs[8..16].copy_from_slice(&write.lun);
        let ttt = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1) % RESERVED_TAG;
        put32(&mut bhs, 20, ttt);
        put32(&mut bhs, 24, self.stat_sn);
        put32(&mut bhs, 36, write.r2t_sn);
        put32(&mut bhs, 40, offset);
        put32(&mut bhs, 44, length);
        write.r2t_sn += 1;
        write.requested = offset + length;
        self.emit(bhs, &[], false);
    }

    fn data_out(&mut self, pdu: &Pdu) {
        let itt = pdu.itt();
        let Some(mut write) = self.writes.remove(&itt) else {
            return;
        };
        write.received += pdu.data.len() as u32;
        if write.received >= write.expected {
            self.respond(itt, &write.lun, &write.cdb, write.expected);
            return;
        }
        // The last PDU of a burst: ask for the next one.
        if pdu.flags() & 0x80 != 0 && write.received >= write.requested {
            self.send_r2t(itt, &mut write);
        }
        self.writes.insert(itt, write);
    }

    /// Answers a command whose data (if any) has arrived.
    fn respond(&mut self, itt: u32, lun: &[u8; 8], cdb: &[u8; 16], expected: u32) {
        let lun0 = lun.iter().all(|&b| b == 0);
        match emulate(cdb, lun0) {
            Reply::Good => self.status(itt, 0, &[]),
            Reply::Data(data) => self.data_in(itt, lun, Source::Bytes(&data), expected),
            Reply::Zeros(len) => self.data_in(itt, lun, Source::Zeros(len), expected),
            Reply::Check(asc) => {
                // Fixed sense, ILLEGAL REQUEST.
                let mut sense = [0u8; 20];
                sense[0..2].copy_from_slice(&18u16.to_be_bytes());
                sense[2] = 0x70;
                sense[4] = 0x05;
                sense[9] = 10;
                sense[14] = asc;
                self.status(itt, 0x02, &sense);
            }
        }
    }

    fn status(&mut self, itt: u32, status: u8, sense: &[u8]) {
        let mut bhs = Self::header(op::SCSI_RSP, 0x80, itt);
        bhs[3] = status;
        self.emit(bhs, sense, true);
    }

    fn data_in(&mut self, itt: u32, lun: &[u8; 8], source: Source<'_>, expected: u32) {
        let available = match source {
            Source::Bytes(b) => b.len() as u32,
            Source::Zeros(n) => n,
        };
        let total = available.min(expected);
        if total == 0 {
            self.status(itt, 0, &[]);
            return;
        }
        let chunk = self.their_max_recv.max(512) as u32;
        let mut offset = 0;
        let mut data_sn = 0;
        loop {
            let len = (total - offset).min(chunk);
            let last = offset + len == total;
            let mut bhs = Self::header(op::DATA_IN, 0, itt);
            bhs[8..16].copy_from_slice(lun);
            put32(&mut bhs, 20, RESERVED_TAG);
            put32(&mut bhs, 36, data_sn);
            put32(&mut bhs, 40, offset);
            if last {
                // Phase collapse: the status rides on the last Data-In.
                bhs[1] = 0x81;
                if total < expected {
                    bhs[1] |= 0x02;
                    put32(&mut bhs, 44, expected - total);
                }
            }
            match source {
                Source::Bytes(b) => {
                    self.emit(bhs, &b[offset as usize..(offset + len) as usize], last)
                }
                Source::Zeros(_) => self.emit_zeros(bhs, len as usize, last),
            }
            if last {
                return;
            }
            offset += len;
            data_sn += 1;
        }
    }
}

enum Source<'a> {
    Bytes(&'a [u8]),
    Zeros(u32),
}

enum Reply {
    Good,
    Data(Vec<u8>),
    Zeros(u32),
    /// CHECK CONDITION, ILLEGAL REQUEST with this ASC.
    Check(u8),
}

const INVALID_OPCODE: u8 = 0x20;
const INVALID_FIELD_IN_CDB: u8 = 0x24;
const LUN_NOT_SUPPORTED: u8 = 0x25;

/// The SCSI commands a disk needs to be attached and read and written.
fn emulate(cdb: &[u8; 16], lun0: bool) -> Reply {
    let alloc = |from: usize, to: usize| be_n(&cdb[from..to]) as usize;
    let cut = |mut v: Vec<u8>, len: usize| {
        v.truncate(len);
        Reply::Data(v)
    };
    if !lun0 && !matches!(cdb[0], 0x12 | 0xa0) {
        return Reply::Check(LUN_NOT_SUPPORTED);
    }
    match cdb[0] {
        0x00 | 0x35 | 0x91 | 0x1e => Reply::Good,
        0x12 => {
            let evpd = cdb[1] & 1 != 0;
            let len = alloc(3, 5);
            let qualifier = if lun0 { 0x00 } else { 0x7f };
            if evpd {
                return match cdb[2] {
                    0x00 => cut(vec![qualifier, 0x00, 0x00, 0x01, 0x00], len),
                    _ => Reply::Check(INVALID_FIELD_IN_CDB),
                };
            }
            let mut v = vec![qualifier, 0, 0x06, 0x02, 31, 0, 0, 0x02];
            v.extend_from_slice(b"SCST-RS CEILING         0001");
            cut(v, len)
        }
        0x25 => {
            let mut v = Vec::with_capacity(8);
            v.extend_from_slice(&((BLOCKS - 1) as u32).to_be_bytes());
            v.extend_from_slice(&BLOCK_SIZE.to_be_bytes());
            Reply::Data(v)
        }
        0x9e if cdb[1] & 0x1f == 0x10 => {
            let mut v = vec![0u8; 32];
            v[0..8].copy_from_slice(&(BLOCKS - 1).to_be_bytes());
            v[8..12].copy_from_slice(&BLOCK_SIZE.to_be_bytes());
            cut(v, alloc(10, 14))
        }
        0xa0 => {
            let mut v = vec![0u8; 16];
            v[3] = 8;
            cut(v, alloc(6, 10))
        }
        // MODE SENSE: a header with no block descriptor and no page.
        0x1a => cut(vec![3, 0, 0, 0], alloc(4, 5)),
        0x5a => cut(vec![0, 6, 0, 0, 0, 0, 0, 0], alloc(7, 9)),
        0x08 => {
            Reply::Zeros(u32::from(if cdb[4] == 0 { 256 } else { u16::from(cdb[4]) }) * BLOCK_SIZE)
        }
        0x28 => Reply::Zeros(be_n(&cdb[7..9]) as u32 * BLOCK_SIZE),
        0x88 => Reply::Zeros(be_n(&cdb[10..14]) as u32 * BLOCK_SIZE),
        0x0a | 0x2a | 0x8a => Reply::Good,
        _ => Reply::Check(INVALID_OPCODE),
    }
}

fn serve(stream: TcpStream, target: String, portal: String) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut session = Session::new(target, portal);
    loop {
        // Flush the batch before blocking for more requests.
        if reader.buffer().is_empty() && !session.out.is_empty() {
            session.out.flush(&mut writer)?;
        }
        let Some(pdu) = read_pdu(&mut reader)? else {
            break;
        };
        let keep = session.handle(pdu);
        if session.out.is_full() {
            session.out.flush(&mut writer)?;
        }
        if !keep {
            break;
        }
    }
    session.out.flush(&mut writer)
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3264".to_string());
    let target = args
        .next()
        .unwrap_or_else(|| "iqn.2026-11.org.scst-rs:ceiling".to_string());
    let listener = TcpListener::bind(&addr)?;
    eprintln!("iscsi-ceiling: {target} on {addr}");
    for stream in listener.incoming() {
        let stream = stream?;
        let target = target.clone();
        let portal = addr.clone();
        thread::spawn(move || {
            if let Err(e) = serve(stream, target, portal) {
                eprintln!("iscsi-ceiling: connection: {e}");
            }
        });
    }
    Ok(())
}
