// SPDX-License-Identifier: GPL-2.0

//! Reservations of a logical unit: SPC-4 persistent reservations (5.13)
//! and SPC-2 RESERVE/RELEASE with SPC-4's compatible reservation handling
//! (CRH, 5.13.3).
//!
//! Pure logic over caller-provided registrant storage, so that the kernel
//! (a `KVec` under the device's reservation lock) and host tests share it.
//! The caller identifies the I_T nexus of each command ([`Nexus`]), and
//! acts on what a service action reports through its `notify` callback
//! (unit attentions, tasks to abort) and its [`Done`] (whether the state
//! changed and must be saved when APTPL is set).

use crate::scst_core::cdb::{Cdb, Out};
use crate::scst_core::sense::{self, Sense};

/// Longest TransportID kept: an iSCSI name (223 bytes), `,i,0x`, an ISID
/// in hex, a NUL and the header, rounded up to a multiple of four.
pub const MAX_TRANSPORT_ID_LEN: usize = 256;

/// Protocol identifiers (SPC-4 7.6.1) of the TransportIDs this target
/// hands out or accepts.
pub mod proto {
    /// Fibre Channel.
    pub const FCP: u8 = 0x0;
    /// SCSI RDMA Protocol.
    pub const SRP: u8 = 0x4;
    /// iSCSI.
    pub const ISCSI: u8 = 0x5;
    /// SAS.
    pub const SAS: u8 = 0x6;
}

/// The separator between an iSCSI name and the ISID of an initiator port
/// (SPC-4 7.6.4.6).
const ISID_SEPARATOR: &[u8] = b",i,0x";

/// The identity of an initiator port, as SPC-4 7.6.4 encodes it. iSCSI
/// names are kept lower case (iSCSI names are case-insensitive, RFC 3722),
/// so that equal ports have equal bytes.
#[derive(Clone, Copy)]
pub struct TransportId {
    len: u16,
    bytes: [u8; MAX_TRANSPORT_ID_LEN],
}

impl core::fmt::Debug for TransportId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TransportId(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl PartialEq for TransportId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for TransportId {}

impl TransportId {
    /// The encoded TransportID.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// An iSCSI initiator port: `name` and, for format 01b, its ISID
    /// (format 00b names the initiator device, every port of it). `None`
    /// when the name does not fit or holds a NUL or a comma.
    pub fn iscsi(name: &[u8], isid: Option<[u8; 6]>) -> Option<Self> {
        if name.is_empty() || name.iter().any(|&b| b == 0 || b == b',') {
            return None;
        }
        let mut id = Self {
            len: 0,
            bytes: [0; MAX_TRANSPORT_ID_LEN],
        };
        let format = if isid.is_some() { 1 } else { 0 };
        id.bytes[0] = (format << 6) | proto::ISCSI;
        let mut at = 4;
        let mut put = |id: &mut Self, b: u8| -> Option<()> {
            *id.bytes.get_mut(at)? = b;
            at += 1;
            Some(())
        };
        for &b in name {
            put(&mut id, b.to_ascii_lowercase())?;
        }
        if let Some(isid) = isid {
            for &b in ISID_SEPARATOR {
                put(&mut id, b)?;
            }
            for b in isid {
                for nibble in [b >> 4, b & 0xf] {
                    put(&mut id, b"0123456789abcdef"[usize::from(nibble)])?;
                }
            }
        }
        // NUL-terminated, padded to a multiple of four (the buffer is zero).
        put(&mut id, 0)?;
        let total = (at + 3) & !3;
        if total > MAX_TRANSPORT_ID_LEN {
            return None;
        }
        let additional = (total - 4) as u16;
        id.bytes[2..4].copy_from_slice(&additional.to_be_bytes());
        id.len = total as u16;
        Some(id)
    }

    /// An SRP initiator port (SPC-4 7.6.4.5): its 16-byte identifier.
    pub fn srp(port_id: [u8; 16]) -> Self {
        let mut id = Self {
            len: 24,
            bytes: [0; MAX_TRANSPORT_ID_LEN],
        };
        id.bytes[0] = proto::SRP;
        id.bytes[8..24].copy_from_slice(&port_id);
        id
    }

    /// The iSCSI-format TransportID (format 00b) a session named `name`
    /// gets when its transport has no port identifiers of its own
    /// (scst_local): NULs and commas become `_`, and a name too long is
    /// cut.
    pub fn named(name: &[u8]) -> Self {
        let mut clean = [0u8; 223];
        let n = name.len().clamp(1, clean.len());
        for (i, c) in clean.iter_mut().enumerate().take(n) {
            *c = match name.get(i) {
                Some(&b) if b != 0 && b != b',' => b,
                _ => b'_',
            };
        }
        // Fits: 4 + 223 + NUL, rounded up, is 228.
        Self::iscsi(&clean[..n], None).unwrap_or(Self {
            len: 0,
            bytes: [0; MAX_TRANSPORT_ID_LEN],
        })
    }

    /// Decodes the TransportID at the start of `buf` (a PERSISTENT RESERVE
    /// OUT parameter list); returns it and the bytes it took, or `None`
    /// for one this target does not accept (an unknown protocol or format,
    /// a length past `buf`).
    pub fn decode(buf: &[u8]) -> Option<(Self, usize)> {
        let first = *buf.first()?;
        let (format, protocol) = (first >> 6, first & 0xf);
        match protocol {
            proto::ISCSI => {
                let additional = usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
                let total = 4 + additional;
                if additional < 4 || additional % 4 != 0 {
                    return None;
                }
                let body = buf.get(4..total)?;
                let end = body.iter().position(|&b| b == 0)?;
                let text = &body[..end];
                let id = match format {
                    0 => Self::iscsi(text, None)?,
                    1 => {
                        let sep = text
                            .windows(ISID_SEPARATOR.len())
                            .position(|w| w.eq_ignore_ascii_case(ISID_SEPARATOR))?;
                        let hex = &text[sep + ISID_SEPARATOR.len()..];
                        if hex.len() != 12 {
                            return None;
                        }
                        let mut isid = [0u8; 6];
                        for (i, pair) in hex.chunks(2).enumerate() {
                            let hi = hex_digit(pair[0])?;
                            let lo = hex_digit(*pair.get(1)?)?;
                            isid[i] = (hi << 4) | lo;
                        }
                        Self::iscsi(&text[..sep], Some(isid))?
                    }
                    _ => return None,
                };
                Some((id, total))
            }
            // The fixed 24-byte formats (SPC-4 7.6.4.2, .4, .7).
            proto::FCP | proto::SRP | proto::SAS if format == 0 => {
                let raw = buf.get(..24)?;
                let mut id = Self {
                    len: 24,
                    bytes: [0; MAX_TRANSPORT_ID_LEN],
                };
                id.bytes[..24].copy_from_slice(raw);
                Some((id, 24))
            }
            _ => None,
        }
    }

    /// The iSCSI name and, for an initiator port, the ISID text.
    fn iscsi_parts(&self) -> Option<(&[u8], Option<&[u8]>)> {
        let b = self.as_bytes();
        if b.first()? & 0xf != proto::ISCSI {
            return None;
        }
        let body = b.get(4..)?;
        let text = &body[..body.iter().position(|&c| c == 0).unwrap_or(body.len())];
        match text
            .windows(ISID_SEPARATOR.len())
            .position(|w| w == ISID_SEPARATOR)
        {
            Some(sep) => Some((&text[..sep], text.get(sep + ISID_SEPARATOR.len()..))),
            None => Some((text, None)),
        }
    }

    /// Whether a registration made with this TransportID covers initiator
    /// port `port`: the same port, or, for an iSCSI name without an ISID,
    /// any port of that initiator.
    pub fn covers(&self, port: &TransportId) -> bool {
        if self == port {
            return true;
        }
        match (self.iscsi_parts(), port.iscsi_parts()) {
            (Some((name, None)), Some((other, _))) => name == other,
            _ => false,
        }
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// An I_T nexus as reservations see it: the initiator port and the
/// relative target port identifier of the target port.
#[derive(Clone, Copy, Debug)]
pub struct Nexus<'a> {
    pub port: &'a TransportId,
    pub rel_tgt_id: u16,
}

/// A registration (SPC-4 5.13.7).
#[derive(Clone, Copy, Debug)]
pub struct Registrant {
    pub key: u64,
    pub port: TransportId,
    /// The target port it was made through, `None` with ALL_TG_PT (every
    /// target port).
    pub rel_tgt_id: Option<u16>,
    /// It holds the reservation (of a type other than all registrants).
    pub holder: bool,
}

impl Registrant {
    /// Whether this registration is that of `nexus`.
    pub fn is_of(&self, nexus: &Nexus<'_>) -> bool {
        let through = match self.rel_tgt_id {
            None => true,
            Some(id) => id == nexus.rel_tgt_id,
        };
        through && self.port.covers(nexus.port)
    }
}

/// No room for another registration.
#[derive(Debug)]
pub struct NoRoom;

/// Where a logical unit keeps its registrations.
pub trait RegistrantStore {
    fn all(&self) -> &[Registrant];
    fn all_mut(&mut self) -> &mut [Registrant];
    /// Appends a registration; may fail when out of memory or room.
    fn add(&mut self, r: Registrant) -> Result<(), NoRoom>;
    /// Removes registration `i`, keeping the order of the others.
    fn remove_at(&mut self, i: usize);
}

/// Registrations a logical unit keeps at most (SCST sets no limit; this
/// bounds what one initiator's REGISTER with SPEC_I_PT can make the target
/// allocate).
pub const MAX_REGISTRANTS: usize = 1024;

/// Persistent reservation types (SPC-4 table 170).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrType {
    WriteExclusive,
    ExclusiveAccess,
    WriteExclusiveRegistrantsOnly,
    ExclusiveAccessRegistrantsOnly,
    WriteExclusiveAllRegistrants,
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    /// Decodes the TYPE field.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::WriteExclusive,
            3 => Self::ExclusiveAccess,
            5 => Self::WriteExclusiveRegistrantsOnly,
            6 => Self::ExclusiveAccessRegistrantsOnly,
            7 => Self::WriteExclusiveAllRegistrants,
            8 => Self::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// The TYPE field.
    pub fn code(self) -> u8 {
        match self {
            Self::WriteExclusive => 1,
            Self::ExclusiveAccess => 3,
            Self::WriteExclusiveRegistrantsOnly => 5,
            Self::ExclusiveAccessRegistrantsOnly => 6,
            Self::WriteExclusiveAllRegistrants => 7,
            Self::ExclusiveAccessAllRegistrants => 8,
        }
    }

    /// Every registrant holds a reservation of this type.
    pub fn all_registrants(self) -> bool {
        matches!(
            self,
            Self::WriteExclusiveAllRegistrants | Self::ExclusiveAccessAllRegistrants
        )
    }

    /// Registrants that do not hold it still have access.
    fn registrants_have_access(self) -> bool {
        !matches!(self, Self::WriteExclusive | Self::ExclusiveAccess)
    }

    /// Other I_T nexuses may not read either.
    fn exclusive_access(self) -> bool {
        matches!(
            self,
            Self::ExclusiveAccess
                | Self::ExclusiveAccessRegistrantsOnly
                | Self::ExclusiveAccessAllRegistrants
        )
    }

    /// A registrants-only or all-registrants type: its release is
    /// announced to the other registrants (SPC-4 5.13.11.2.2).
    fn announces_release(self) -> bool {
        self.registrants_have_access()
    }
}

/// How a command fares under a reservation held by another I_T nexus
/// (SPC-4 table 66 and SBC-4 table 13, in three classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Allowed under every reservation.
    Allowed,
    /// Reads: conflict only under the exclusive access types.
    Read,
    /// Everything else: conflicts under every type.
    Write,
}

/// Operation codes the reservation rules name.
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const INQUIRY: u8 = 0x12;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const VERIFY_10: u8 = 0x2f;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const LOG_SENSE: u8 = 0x4d;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5e;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5f;
    pub const VARIABLE_LENGTH: u8 = 0x7f;
    pub const READ_16: u8 = 0x88;
    pub const VERIFY_16: u8 = 0x8f;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const MAINTENANCE_IN: u8 = 0xa3;
    pub const READ_12: u8 = 0xa8;
    pub const READ_MEDIA_SERIAL_NUMBER: u8 = 0xab;
    pub const VERIFY_12: u8 = 0xaf;
    pub const READ_DEFECT_DATA_12: u8 = 0xb7;
}

/// The class of the command `cdb` under a persistent reservation.
pub fn access_of(cdb: Cdb<'_>) -> Access {
    let sa = cdb.u8(1) & 0x1f;
    match cdb.opcode() {
        op::TEST_UNIT_READY
        | op::REQUEST_SENSE
        | op::INQUIRY
        | op::READ_CAPACITY_10
        | op::LOG_SENSE
        | op::PERSISTENT_RESERVE_IN
        | op::PERSISTENT_RESERVE_OUT
        | op::REPORT_LUNS => Access::Allowed,
        // READ CAPACITY (16) is allowed; GET LBA STATUS and REPORT
        // REFERRALS read.
        op::SERVICE_ACTION_IN_16 if sa == 0x10 => Access::Allowed,
        op::SERVICE_ACTION_IN_16 if sa == 0x12 || sa == 0x13 => Access::Read,
        // REPORT IDENTIFYING INFORMATION, REPORT TARGET PORT GROUPS,
        // REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS,
        // REPORT TIMESTAMP.
        op::MAINTENANCE_IN if matches!(sa, 0x05 | 0x0a | 0x0c | 0x0d | 0x0f) => Access::Allowed,
        op::READ_MEDIA_SERIAL_NUMBER if sa == 0x01 => Access::Allowed,
        op::READ_6
        | op::READ_10
        | op::READ_12
        | op::READ_16
        | op::VERIFY_10
        | op::VERIFY_12
        | op::VERIFY_16
        | op::PRE_FETCH_10
        | op::PRE_FETCH_16
        | op::READ_DEFECT_DATA_10
        | op::READ_DEFECT_DATA_12 => Access::Read,
        // READ (32) and VERIFY (32).
        op::VARIABLE_LENGTH if matches!(cdb.be16(8), 0x0009 | 0x000a) => Access::Read,
        _ => Access::Write,
    }
}

/// Whether a command may run while another I_T nexus holds an SPC-2
/// reservation (SPC-2 5.5.1): what an initiator needs to find out about
/// the logical unit, and RELEASE (which then does nothing).
pub fn allowed_under_spc2(opcode: u8) -> bool {
    matches!(
        opcode,
        op::INQUIRY | op::REQUEST_SENSE | op::REPORT_LUNS | op::RELEASE_6 | op::RELEASE_10
    )
}

/// RESERVATION CONFLICT, or CHECK CONDITION with sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Conflict,
    Check(Sense),
}

impl From<Sense> for Refused {
    fn from(s: Sense) -> Self {
        Self::Check(s)
    }
}

/// INVALID RELEASE OF PERSISTENT RESERVATION.
pub const INVALID_RELEASE: Sense = Sense::new(sense::key::ILLEGAL_REQUEST, 0x26, 0x04);
/// INSUFFICIENT REGISTRATION RESOURCES.
pub const INSUFFICIENT_REGISTRATION_RESOURCES: Sense =
    Sense::new(sense::key::ILLEGAL_REQUEST, 0x55, 0x04);
/// RESERVATIONS PREEMPTED.
pub const RESERVATIONS_PREEMPTED: Sense = Sense::new(sense::key::UNIT_ATTENTION, 0x2a, 0x03);
/// RESERVATIONS RELEASED.
pub const RESERVATIONS_RELEASED: Sense = Sense::new(sense::key::UNIT_ATTENTION, 0x2a, 0x04);
/// REGISTRATIONS PREEMPTED.
pub const REGISTRATIONS_PREEMPTED: Sense = Sense::new(sense::key::UNIT_ATTENTION, 0x2a, 0x05);

/// What a service action asks the caller to do for the I_T nexuses of a
/// registration (reported before the registration is removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Queue this unit attention on them.
    Ua(Sense),
    /// PREEMPT AND ABORT: abort their tasks, as ABORT TASK SET would.
    Abort,
}

/// What a PERSISTENT RESERVE OUT changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Done {
    /// Registrations, the reservation or APTPL changed: a logical unit
    /// with APTPL set saves its state.
    pub changed: bool,
}

/// PERSISTENT RESERVE OUT service actions (SPC-4 table 171).
mod sa {
    pub const REGISTER: u8 = 0x00;
    pub const RESERVE: u8 = 0x01;
    pub const RELEASE: u8 = 0x02;
    pub const CLEAR: u8 = 0x03;
    pub const PREEMPT: u8 = 0x04;
    pub const PREEMPT_AND_ABORT: u8 = 0x05;
    pub const REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 0x06;
    pub const REGISTER_AND_MOVE: u8 = 0x07;
}

/// PERSISTENT RESERVE IN service actions (SPC-4 table 160).
mod sa_in {
    pub const READ_KEYS: u8 = 0x00;
    pub const READ_RESERVATION: u8 = 0x01;
    pub const REPORT_CAPABILITIES: u8 = 0x02;
    pub const READ_FULL_STATUS: u8 = 0x03;
}

/// The length of a PERSISTENT RESERVE OUT basic parameter list.
pub const BASIC_PARAMETERS_LEN: usize = 24;

/// A `core::fmt::Write` into a byte slice; writing past its end fails.
pub struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// What was written.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl core::fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Why a saved state was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// A line that does not parse (its number, from 1).
    BadLine(usize),
    /// No `end` line: the file was cut short while being written.
    Incomplete,
    /// More registrations than a logical unit keeps, or no memory.
    TooMany,
}

/// The first line of a saved state.
const SAVED_HEADER: &str = "# scst-rs persistent reservations";

/// One line of a saved state (parsed one at a time, so the size of the
/// registrant variant costs nothing).
#[allow(clippy::large_enum_variant)]
enum SavedLine {
    Aptpl(bool),
    Generation(u32),
    Reservation(PrType),
    Registrant(Registrant),
    End,
}

fn parse_hex(word: &[u8]) -> Option<u64> {
    if word.is_empty() || word.len() > 16 {
        return None;
    }
    word.iter()
        .try_fold(0u64, |v, &c| Some((v << 4) | u64::from(hex_digit(c)?)))
}

fn parse_dec(word: &[u8]) -> Option<u64> {
    if word.is_empty() || word.len() > 19 {
        return None;
    }
    word.iter().try_fold(0u64, |v, &c| {
        c.is_ascii_digit().then(|| v * 10 + u64::from(c - b'0'))
    })
}

fn parse_saved_line(line: &[u8]) -> Option<Option<SavedLine>> {
    let mut words = line
        .split(|&c| c == b' ' || c == b'\t')
        .filter(|w| !w.is_empty());
    let Some(first) = words.next() else {
        return Some(None);
    };
    if first.starts_with(b"#") {
        return Some(None);
    }
    let mut next = || words.next();
    let parsed = match first {
        b"aptpl" => SavedLine::Aptpl(parse_dec(next()?)? != 0),
        b"generation" => SavedLine::Generation(u32::try_from(parse_dec(next()?)?).ok()?),
        b"reservation" => {
            SavedLine::Reservation(PrType::from_code(u8::try_from(parse_dec(next()?)?).ok()?)?)
        }
        b"registrant" => {
            let key = parse_hex(next()?)?;
            let rel_tgt_id = match next()? {
                b"all" => None,
                w => Some(u16::try_from(parse_dec(w)?).ok()?),
            };
            let holder = parse_dec(next()?)? != 0;
            let hex = next()?;
            if hex.len() % 2 != 0 || hex.len() / 2 > MAX_TRANSPORT_ID_LEN {
                return None;
            }
            let mut raw = [0u8; MAX_TRANSPORT_ID_LEN];
            for (i, pair) in hex.chunks(2).enumerate() {
                raw[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
            }
            let (port, used) = TransportId::decode(&raw[..hex.len() / 2])?;
            if used != hex.len() / 2 {
                return None;
            }
            SavedLine::Registrant(Registrant {
                key,
                port,
                rel_tgt_id,
                holder,
            })
        }
        b"end" => SavedLine::End,
        _ => return None,
    };
    if next().is_some() {
        return None;
    }
    Some(Some(parsed))
}

/// RESERVE and RELEASE with extents (the (6) CDBs' bit 0) or for a third
/// party (LongID and 3rdPty of the (10) CDBs) are obsolete and refused as
/// invalid fields.
fn refuse_obsolete_fields(cdb: Cdb<'_>) -> Result<(), Refused> {
    let refused_bits = match cdb.opcode() {
        op::RESERVE_6 | op::RELEASE_6 => 0x01,
        _ => 0x12,
    };
    match cdb.u8(1) & refused_bits {
        0 => Ok(()),
        set => Err(Sense::invalid_cdb_field(1, Some(set.trailing_zeros() as u8)).into()),
    }
}

/// The persistent reservation state of a logical unit, and the SPC-2
/// reservation.
pub struct Reservations<S> {
    /// PRgeneration: bumped by every REGISTER, CLEAR, PREEMPT and REGISTER
    /// AND MOVE that succeeds.
    pub generation: u32,
    regs: S,
    /// The persistent reservation (its holder is marked in `regs`, unless
    /// its type is all registrants).
    reservation: Option<PrType>,
    /// Activate persist through power loss.
    pub aptpl: bool,
    /// The I_T_L nexus (the caller's number for it) holding an SPC-2
    /// reservation.
    spc2_holder: Option<u64>,
    /// The caller can keep the state through power loss (APTPL may be set).
    pub can_persist: bool,
}

fn be64(b: &[u8], at: usize) -> u64 {
    Cdb(b).be64(at)
}

impl<S: RegistrantStore> Reservations<S> {
    /// No registration, no reservation.
    pub fn new(regs: S, can_persist: bool) -> Self {
        Self {
            generation: 0,
            regs,
            reservation: None,
            aptpl: false,
            spc2_holder: None,
            can_persist,
        }
    }

    /// Bytes [`Self::save`] writes at most.
    pub fn saved_len_bound(&self) -> usize {
        160 + self.regs.all().len() * (64 + 2 * MAX_TRANSPORT_ID_LEN)
    }

    /// Writes the persistent reservation state (not the SPC-2 one, which
    /// does not survive power loss), as [`Self::load`] reads it.
    pub fn save(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        writeln!(out, "{SAVED_HEADER}; rewritten by the kernel, do not edit")?;
        writeln!(out, "aptpl {}", u8::from(self.aptpl))?;
        writeln!(out, "generation {}", self.generation)?;
        if let Some(t) = self.reservation {
            writeln!(out, "reservation {}", t.code())?;
        }
        for r in self.regs.all() {
            write!(out, "registrant {:x} ", r.key)?;
            match r.rel_tgt_id {
                Some(id) => write!(out, "{id}")?,
                None => write!(out, "all")?,
            }
            write!(out, " {} ", u8::from(r.holder))?;
            for b in r.port.as_bytes() {
                write!(out, "{b:02x}")?;
            }
            writeln!(out)?;
        }
        writeln!(out, "end")
    }

    /// Takes the state [`Self::save`] wrote, if it says APTPL was set
    /// (else the state did not persist and nothing changes). Nothing
    /// changes either when `text` does not parse to its end.
    pub fn load(&mut self, text: &[u8]) -> Result<bool, LoadError> {
        let mut complete = false;
        let mut aptpl = false;
        let mut count = 0;
        for (i, line) in text.split(|&c| c == b'\n').enumerate() {
            if complete && line.iter().any(|c| !c.is_ascii_whitespace()) {
                return Err(LoadError::BadLine(i + 1));
            }
            match parse_saved_line(line).ok_or(LoadError::BadLine(i + 1))? {
                Some(SavedLine::End) => complete = true,
                Some(SavedLine::Aptpl(a)) => aptpl = a,
                Some(SavedLine::Registrant(_)) => count += 1,
                _ => {}
            }
        }
        if !complete {
            return Err(LoadError::Incomplete);
        }
        if count > MAX_REGISTRANTS {
            return Err(LoadError::TooMany);
        }
        if !aptpl {
            return Ok(false);
        }
        while !self.regs.all().is_empty() {
            self.regs.remove_at(0);
        }
        self.reservation = None;
        for line in text.split(|&c| c == b'\n') {
            match parse_saved_line(line) {
                Some(Some(SavedLine::Generation(g))) => self.generation = g,
                Some(Some(SavedLine::Reservation(t))) => self.reservation = Some(t),
                Some(Some(SavedLine::Registrant(r))) if self.regs.add(r).is_err() => {
                    while !self.regs.all().is_empty() {
                        self.regs.remove_at(0);
                    }
                    self.reservation = None;
                    return Err(LoadError::TooMany);
                }
                _ => {}
            }
        }
        // A holder must be registered; an all-registrants reservation
        // needs registrants.
        let held = match self.reservation {
            Some(t) if t.all_registrants() => !self.regs.all().is_empty(),
            Some(_) => self.regs.all().iter().filter(|r| r.holder).count() == 1,
            None => true,
        };
        if !held {
            self.reservation = None;
        }
        let single_holder = matches!(self.reservation, Some(t) if !t.all_registrants());
        if !single_holder {
            for r in self.regs.all_mut() {
                r.holder = false;
            }
        }
        self.aptpl = true;
        Ok(true)
    }

    /// Makes `other` a copy of this state, for a service action to run on
    /// before it is taken ([`Self::take_persistent`]); fails if `other`
    /// cannot hold the registrations.
    pub fn copy_to(&self, other: &mut Self) -> Result<(), NoRoom> {
        while !other.regs.all().is_empty() {
            other.regs.remove_at(0);
        }
        for r in self.regs.all() {
            other.regs.add(*r)?;
        }
        other.generation = self.generation;
        other.reservation = self.reservation;
        other.aptpl = self.aptpl;
        other.spc2_holder = self.spc2_holder;
        other.can_persist = self.can_persist;
        Ok(())
    }

    /// Takes the persistent reservation state of `other` (a copy a
    /// service action changed), leaving this one's there; the SPC-2
    /// reservation stays this one's.
    pub fn take_persistent(&mut self, other: &mut Self) {
        core::mem::swap(&mut self.regs, &mut other.regs);
        self.generation = other.generation;
        self.reservation = other.reservation;
        self.aptpl = other.aptpl;
    }

    /// The registrations.
    pub fn registrants(&self) -> &[Registrant] {
        self.regs.all()
    }

    /// The persistent reservation's type, if one is held.
    pub fn reservation(&self) -> Option<PrType> {
        self.reservation
    }

    /// Whether any reservation, persistent or SPC-2, is held: commands
    /// need checking ([`Self::check`]) only then.
    pub fn any_held(&self) -> bool {
        self.reservation.is_some() || self.spc2_holder.is_some()
    }

    /// The nexus holding an SPC-2 reservation.
    pub fn spc2_holder(&self) -> Option<u64> {
        self.spc2_holder
    }

    fn find(&self, nexus: &Nexus<'_>) -> Option<usize> {
        self.regs.all().iter().position(|r| r.is_of(nexus))
    }

    /// Whether `nexus` holds the persistent reservation.
    fn holds(&self, nexus: &Nexus<'_>) -> bool {
        match self.reservation {
            None => false,
            Some(t) if t.all_registrants() => self.find(nexus).is_some(),
            Some(_) => self.regs.all().iter().any(|r| r.holder && r.is_of(nexus)),
        }
    }

    /// Whether the command `cdb` of `nexus` (the caller's nexus number
    /// `id`) conflicts with a reservation another I_T nexus holds.
    pub fn check(&self, cdb: Cdb<'_>, nexus: &Nexus<'_>, id: u64) -> bool {
        let opcode = cdb.opcode();
        if let Some(holder) = self.spc2_holder {
            return holder != id && !allowed_under_spc2(opcode);
        }
        let Some(t) = self.reservation else {
            return false;
        };
        if matches!(
            opcode,
            op::RESERVE_6 | op::RESERVE_10 | op::RELEASE_6 | op::RELEASE_10
        ) {
            // Decided by [`Self::reserve_spc2`] and [`Self::release_spc2`].
            return false;
        }
        if self.holds(nexus) || (t.registrants_have_access() && self.find(nexus).is_some()) {
            return false;
        }
        match access_of(cdb) {
            Access::Allowed => false,
            Access::Read => t.exclusive_access(),
            Access::Write => true,
        }
    }

    /// RESERVE(6) or RESERVE(10) from nexus `id` (SPC-2 7.21, with SPC-4
    /// 5.13.3: refused while any registration exists).
    pub fn reserve_spc2(&mut self, cdb: Cdb<'_>, id: u64) -> Result<(), Refused> {
        refuse_obsolete_fields(cdb)?;
        if !self.regs.all().is_empty() {
            return Err(Refused::Conflict);
        }
        match self.spc2_holder {
            Some(h) if h != id => Err(Refused::Conflict),
            _ => {
                self.spc2_holder = Some(id);
                Ok(())
            }
        }
    }

    /// RELEASE(6) or RELEASE(10) from nexus `id`: releases its own SPC-2
    /// reservation; from any other nexus it does nothing (SPC-2 7.17).
    /// While registrations exist, a registered nexus gets GOOD and no
    /// effect, others RESERVATION CONFLICT (SPC-4 5.13.3).
    pub fn release_spc2(
        &mut self,
        cdb: Cdb<'_>,
        nexus: &Nexus<'_>,
        id: u64,
    ) -> Result<(), Refused> {
        refuse_obsolete_fields(cdb)?;
        if !self.regs.all().is_empty() {
            return match self.find(nexus) {
                Some(_) => Ok(()),
                None if self.reservation.is_some() => Err(Refused::Conflict),
                None => Ok(()),
            };
        }
        if self.spc2_holder == Some(id) {
            self.spc2_holder = None;
        }
        Ok(())
    }

    /// The I_T_L nexus `id` is gone (session closed, LUN unmapped): its
    /// SPC-2 reservation ends.
    pub fn nexus_lost(&mut self, id: u64) {
        if self.spc2_holder == Some(id) {
            self.spc2_holder = None;
        }
    }

    /// A LUN reset or target reset: the SPC-2 reservation ends; persistent
    /// reservations stay (SPC-4 5.13.1).
    pub fn reset(&mut self) {
        self.spc2_holder = None;
    }

    /// PERSISTENT RESERVE IN from `nexus`: writes the parameter data.
    pub fn persistent_reserve_in(&self, cdb: Cdb<'_>, out: &mut Out<'_>) -> Result<(), Sense> {
        match cdb.u8(1) & 0x1f {
            sa_in::READ_KEYS => {
                out.be32(self.generation);
                out.be32((self.regs.all().len() * 8) as u32);
                for r in self.regs.all() {
                    out.be64(r.key);
                }
            }
            sa_in::READ_RESERVATION => {
                out.be32(self.generation);
                match self.reservation {
                    None => out.be32(0),
                    Some(t) => {
                        out.be32(16);
                        // An all-registrants reservation reports key zero
                        // (SPC-4 6.15.3).
                        let key = if t.all_registrants() {
                            0
                        } else {
                            self.regs
                                .all()
                                .iter()
                                .find(|r| r.holder)
                                .map_or(0, |r| r.key)
                        };
                        out.be64(key);
                        out.zeroes(5);
                        out.u8(t.code());
                        out.zeroes(2);
                    }
                }
            }
            sa_in::REPORT_CAPABILITIES => {
                out.be16(8);
                // CRH, SIP_C, ATP_C; PTPL_C when the state can persist.
                out.u8(0x10 | 0x08 | 0x04 | u8::from(self.can_persist));
                // TMV (the mask is valid); PTPL_A.
                out.u8(0x80 | u8::from(self.aptpl));
                // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; EX_AC_AR.
                out.u8(0x80 | 0x40 | 0x20 | 0x08 | 0x02);
                out.u8(0x01);
                out.zeroes(2);
            }
            sa_in::READ_FULL_STATUS => {
                out.be32(self.generation);
                let len_at = out.len();
                out.be32(0);
                let start = out.len();
                for r in self.regs.all() {
                    out.be64(r.key);
                    out.zeroes(4);
                    let holds = match self.reservation {
                        Some(t) if t.all_registrants() => true,
                        Some(_) => r.holder,
                        None => false,
                    };
                    out.u8(u8::from(r.rel_tgt_id.is_none()) << 1 | u8::from(holds));
                    out.u8(match (holds, self.reservation) {
                        (true, Some(t)) => t.code(),
                        _ => 0,
                    });
                    out.zeroes(4);
                    out.be16(r.rel_tgt_id.unwrap_or(0));
                    let id = r.port.as_bytes();
                    out.be32(id.len() as u32);
                    out.put(id);
                }
                let len = (out.len() - start) as u32;
                out.set_be32(len_at, len);
            }
            _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
        }
        Ok(())
    }

    /// PERSISTENT RESERVE OUT from `nexus` with parameter list `params`
    /// (as long as the CDB says, or shorter if the initiator sent less).
    /// `notify` hears, for each registration affected, what to do to its
    /// I_T nexuses, before the registration goes.
    pub fn persistent_reserve_out(
        &mut self,
        cdb: Cdb<'_>,
        params: &[u8],
        nexus: &Nexus<'_>,
        notify: &mut dyn FnMut(&Registrant, Notice),
    ) -> Result<Done, Refused> {
        let action = cdb.u8(1) & 0x1f;
        let scope = cdb.u8(2) >> 4;
        let type_code = cdb.u8(2) & 0xf;
        let list_len = cdb.be32(5) as usize;
        if self.spc2_holder.is_some() {
            // An SPC-2 reservation held by anyone conflicts (SPC-4 5.13.3:
            // persistent reservations are refused while one is held).
            return Err(Refused::Conflict);
        }
        if action > sa::REGISTER_AND_MOVE {
            return Err(Sense::invalid_cdb_field(1, Some(4)).into());
        }
        if action == sa::REGISTER_AND_MOVE {
            return self.register_and_move(params, list_len, nexus);
        }
        let spec_i_pt = params.get(20).is_some_and(|b| b & 0x08 != 0);
        if list_len != BASIC_PARAMETERS_LEN && !(action == sa::REGISTER && spec_i_pt)
            || params.len() < BASIC_PARAMETERS_LEN
        {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR.into());
        }
        let key = be64(params, 0);
        let sa_key = be64(params, 8);
        let flags = params[20];
        let all_tg_pt = flags & 0x04 != 0;
        let aptpl = flags & 0x01 != 0;
        let uses_type = matches!(
            action,
            sa::RESERVE | sa::RELEASE | sa::PREEMPT | sa::PREEMPT_AND_ABORT
        );
        let rtype = if uses_type {
            if scope != 0 {
                return Err(Sense::invalid_cdb_field(2, Some(7)).into());
            }
            // PREEMPT with no reservation to take over ignores the type.
            let needs_type = !matches!(action, sa::PREEMPT | sa::PREEMPT_AND_ABORT)
                || self.reservation.is_some();
            match PrType::from_code(type_code) {
                Some(t) => Some(t),
                None if needs_type => return Err(Sense::invalid_cdb_field(2, Some(3)).into()),
                None => None,
            }
        } else {
            None
        };
        if matches!(action, sa::REGISTER | sa::REGISTER_AND_IGNORE_EXISTING_KEY) {
            return self.register(
                params,
                list_len,
                nexus,
                key,
                sa_key,
                action == sa::REGISTER_AND_IGNORE_EXISTING_KEY,
                spec_i_pt,
                all_tg_pt,
                aptpl,
                notify,
            );
        }
        // Every other service action is for a registered I_T nexus, and
        // names its key.
        let Some(me) = self.find(nexus) else {
            return Err(Refused::Conflict);
        };
        if self.regs.all()[me].key != key {
            return Err(Refused::Conflict);
        }
        if spec_i_pt {
            return Err(Sense::invalid_param_field(20, Some(3)).into());
        }
        if all_tg_pt {
            return Err(Sense::invalid_param_field(20, Some(2)).into());
        }
        match (action, rtype) {
            (sa::RESERVE, Some(t)) => self.reserve(nexus, me, t),
            (sa::RELEASE, Some(t)) => self.release(nexus, t, notify),
            (sa::CLEAR, _) => {
                for r in self.regs.all() {
                    if !r.is_of(nexus) {
                        notify(r, Notice::Ua(RESERVATIONS_PREEMPTED));
                    }
                }
                while !self.regs.all().is_empty() {
                    self.regs.remove_at(0);
                }
                self.reservation = None;
                self.generation = self.generation.wrapping_add(1);
                Ok(Done { changed: true })
            }
            (sa::PREEMPT | sa::PREEMPT_AND_ABORT, t) => {
                self.preempt(nexus, sa_key, t, action == sa::PREEMPT_AND_ABORT, notify)
            }
            _ => Err(Sense::invalid_cdb_field(1, Some(4)).into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        params: &[u8],
        list_len: usize,
        nexus: &Nexus<'_>,
        key: u64,
        sa_key: u64,
        ignore_key: bool,
        spec_i_pt: bool,
        all_tg_pt: bool,
        aptpl: bool,
        notify: &mut dyn FnMut(&Registrant, Notice),
    ) -> Result<Done, Refused> {
        if aptpl && !self.can_persist {
            return Err(Sense::invalid_param_field(20, Some(0)).into());
        }
        match self.find(nexus) {
            None => {
                if !ignore_key && key != 0 {
                    return Err(Refused::Conflict);
                }
                if sa_key == 0 {
                    // Nothing to register or unregister.
                    return Ok(Done::default());
                }
                if spec_i_pt && ignore_key {
                    return Err(Sense::invalid_param_field(20, Some(3)).into());
                }
                let mut added = 0;
                let outcome = self.add_registrations(
                    params, list_len, nexus, sa_key, spec_i_pt, all_tg_pt, &mut added,
                );
                if let Err(e) = outcome {
                    // All or nothing: undo the registrations made.
                    for _ in 0..added {
                        let last = self.regs.all().len() - 1;
                        self.regs.remove_at(last);
                    }
                    return Err(e);
                }
            }
            Some(me) => {
                if !ignore_key && self.regs.all()[me].key != key {
                    return Err(Refused::Conflict);
                }
                if spec_i_pt {
                    return Err(Sense::invalid_param_field(20, Some(3)).into());
                }
                if sa_key == 0 {
                    self.unregister(me, notify);
                } else {
                    self.regs.all_mut()[me].key = sa_key;
                }
            }
        }
        self.aptpl = aptpl;
        self.generation = self.generation.wrapping_add(1);
        Ok(Done { changed: true })
    }

    /// Registers `nexus` and, with SPEC_I_PT, the initiator ports the
    /// parameter list names (through the same target port), counting the
    /// registrations made in `added`.
    #[allow(clippy::too_many_arguments)]
    fn add_registrations(
        &mut self,
        params: &[u8],
        list_len: usize,
        nexus: &Nexus<'_>,
        sa_key: u64,
        spec_i_pt: bool,
        all_tg_pt: bool,
        added: &mut usize,
    ) -> Result<(), Refused> {
        let rel_tgt_id = if all_tg_pt {
            None
        } else {
            Some(nexus.rel_tgt_id)
        };
        self.add(Registrant {
            key: sa_key,
            port: *nexus.port,
            rel_tgt_id,
            holder: false,
        })?;
        *added += 1;
        if !spec_i_pt {
            return Ok(());
        }
        if list_len < BASIC_PARAMETERS_LEN + 4 || params.len() < list_len {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR.into());
        }
        let ids_len = Cdb(params).be32(24) as usize;
        if BASIC_PARAMETERS_LEN + 4 + ids_len != list_len {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR.into());
        }
        let mut at = BASIC_PARAMETERS_LEN + 4;
        while at < list_len {
            let rest = params.get(at..list_len).unwrap_or(&[]);
            let Some((port, used)) = TransportId::decode(rest) else {
                return Err(Sense::invalid_param_field(at as u16, None).into());
            };
            let other = Nexus {
                port: &port,
                rel_tgt_id: nexus.rel_tgt_id,
            };
            // Naming the sender again is harmless; naming a registered
            // nexus is not (SPC-4 6.16.3).
            if !port.covers(nexus.port) {
                if self.find(&other).is_some() {
                    return Err(Sense::invalid_param_field(at as u16, None).into());
                }
                self.add(Registrant {
                    key: sa_key,
                    port,
                    rel_tgt_id,
                    holder: false,
                })?;
                *added += 1;
            }
            at += used;
        }
        Ok(())
    }

    fn add(&mut self, r: Registrant) -> Result<(), Refused> {
        if self.regs.all().len() >= MAX_REGISTRANTS || self.regs.add(r).is_err() {
            return Err(INSUFFICIENT_REGISTRATION_RESOURCES.into());
        }
        Ok(())
    }

    /// Removes registration `i`; a reservation it held ends, and one of a
    /// registrants-only type says so to the other registrants (SPC-4
    /// 5.13.11.2.2). An all-registrants reservation ends with its last
    /// registrant.
    fn unregister(&mut self, i: usize, notify: &mut dyn FnMut(&Registrant, Notice)) {
        let Some(&r) = self.regs.all().get(i) else {
            return;
        };
        self.regs.remove_at(i);
        match self.reservation {
            Some(t) if t.all_registrants() && self.regs.all().is_empty() => {
                self.reservation = None;
            }
            // Holder flags are set only for the other types.
            Some(t) if r.holder => {
                self.reservation = None;
                if t.announces_release() {
                    for other in self.regs.all() {
                        notify(other, Notice::Ua(RESERVATIONS_RELEASED));
                    }
                }
            }
            _ => {}
        }
    }

    fn reserve(&mut self, nexus: &Nexus<'_>, me: usize, t: PrType) -> Result<Done, Refused> {
        match self.reservation {
            None => {
                self.reservation = Some(t);
                if !t.all_registrants() {
                    self.regs.all_mut()[me].holder = true;
                }
                Ok(Done { changed: true })
            }
            // The holder reserving again with the same type: nothing.
            Some(held) if held == t && self.holds(nexus) => Ok(Done::default()),
            Some(_) => Err(Refused::Conflict),
        }
    }

    fn release(
        &mut self,
        nexus: &Nexus<'_>,
        t: PrType,
        notify: &mut dyn FnMut(&Registrant, Notice),
    ) -> Result<Done, Refused> {
        let Some(held) = self.reservation else {
            return Ok(Done::default());
        };
        if !self.holds(nexus) {
            return Ok(Done::default());
        }
        if held != t {
            return Err(INVALID_RELEASE.into());
        }
        self.end_reservation();
        if held.announces_release() {
            for r in self.regs.all() {
                if !r.is_of(nexus) {
                    notify(r, Notice::Ua(RESERVATIONS_RELEASED));
                }
            }
        }
        Ok(Done { changed: true })
    }

    fn end_reservation(&mut self) {
        self.reservation = None;
        for r in self.regs.all_mut() {
            r.holder = false;
        }
    }

    /// Removes every registration with `key` but the sender's, telling
    /// each; returns how many went.
    fn remove_key(
        &mut self,
        nexus: &Nexus<'_>,
        key: u64,
        abort: bool,
        notify: &mut dyn FnMut(&Registrant, Notice),
    ) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while let Some(&r) = self.regs.all().get(i) {
            if r.key == key && !r.is_of(nexus) {
                notify(&r, Notice::Ua(REGISTRATIONS_PREEMPTED));
                if abort {
                    notify(&r, Notice::Abort);
                }
                self.regs.remove_at(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
        removed
    }

    /// PREEMPT and PREEMPT AND ABORT (SPC-4 5.13.11.4).
    fn preempt(
        &mut self,
        nexus: &Nexus<'_>,
        sa_key: u64,
        t: Option<PrType>,
        abort: bool,
        notify: &mut dyn FnMut(&Registrant, Notice),
    ) -> Result<Done, Refused> {
        let held = match (self.reservation, t) {
            (Some(held), Some(t)) => Some((held, t)),
            _ => None,
        };
        match held {
            // All registrants, key zero: every other registration goes and
            // the sender alone holds a reservation of the new type.
            Some((held, t)) if held.all_registrants() && sa_key == 0 => {
                let mut i = 0;
                while let Some(&r) = self.regs.all().get(i) {
                    if r.is_of(nexus) {
                        i += 1;
                        continue;
                    }
                    notify(&r, Notice::Ua(REGISTRATIONS_PREEMPTED));
                    if abort {
                        notify(&r, Notice::Abort);
                    }
                    self.regs.remove_at(i);
                }
                self.take_over(nexus, t);
            }
            // The holder's key: its registrations go (the sender's stays)
            // and the sender holds a reservation of the new type.
            Some((held, t))
                if !held.all_registrants()
                    && self.regs.all().iter().any(|r| r.holder && r.key == sa_key) =>
            {
                self.remove_key(nexus, sa_key, abort, notify);
                if held != t {
                    for r in self.regs.all() {
                        if !r.is_of(nexus) {
                            notify(r, Notice::Ua(RESERVATIONS_RELEASED));
                        }
                    }
                }
                self.take_over(nexus, t);
            }
            // Otherwise only registrations go: those with the key.
            _ => {
                if sa_key == 0 {
                    return Err(Sense::invalid_param_field(8, None).into());
                }
                if self.remove_key(nexus, sa_key, abort, notify) == 0 {
                    return Err(Refused::Conflict);
                }
                if self.reservation.is_some_and(|r| r.all_registrants())
                    && self.regs.all().is_empty()
                {
                    self.reservation = None;
                }
            }
        }
        self.generation = self.generation.wrapping_add(1);
        Ok(Done { changed: true })
    }

    /// The sender (registered) holds a new reservation of type `t`.
    fn take_over(&mut self, nexus: &Nexus<'_>, t: PrType) {
        self.end_reservation();
        self.reservation = Some(t);
        if !t.all_registrants() {
            if let Some(me) = self.find(nexus) {
                self.regs.all_mut()[me].holder = true;
            }
        }
    }

    /// REGISTER AND MOVE (SPC-4 5.13.8): the holder registers another I_T
    /// nexus and hands it the reservation.
    fn register_and_move(
        &mut self,
        params: &[u8],
        list_len: usize,
        nexus: &Nexus<'_>,
    ) -> Result<Done, Refused> {
        if list_len < BASIC_PARAMETERS_LEN || params.len() < list_len {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR.into());
        }
        let key = be64(params, 0);
        let sa_key = be64(params, 8);
        let unreg = params[17] & 0x02 != 0;
        let aptpl = params[17] & 0x01 != 0;
        let rel_tgt_id = Cdb(params).be16(18);
        let id_len = Cdb(params).be32(20) as usize;
        let Some(me) = self.find(nexus) else {
            return Err(Refused::Conflict);
        };
        if self.regs.all()[me].key != key {
            return Err(Refused::Conflict);
        }
        match self.reservation {
            Some(t) if !t.all_registrants() && self.regs.all()[me].holder => {}
            _ => return Err(Refused::Conflict),
        }
        if aptpl && !self.can_persist {
            return Err(Sense::invalid_param_field(17, Some(0)).into());
        }
        if BASIC_PARAMETERS_LEN + id_len > list_len {
            return Err(sense::PARAMETER_LIST_LENGTH_ERROR.into());
        }
        if sa_key == 0 {
            return Err(Sense::invalid_param_field(8, None).into());
        }
        let Some((port, _)) = params
            .get(BASIC_PARAMETERS_LEN..BASIC_PARAMETERS_LEN + id_len)
            .and_then(TransportId::decode)
        else {
            return Err(Sense::invalid_param_field(BASIC_PARAMETERS_LEN as u16, None).into());
        };
        let dest = Nexus {
            port: &port,
            rel_tgt_id,
        };
        if port.covers(nexus.port) && rel_tgt_id == nexus.rel_tgt_id {
            return Err(Sense::invalid_param_field(BASIC_PARAMETERS_LEN as u16, None).into());
        }
        let t = self.reservation.unwrap_or(PrType::WriteExclusive);
        let d = match self.find(&dest) {
            Some(d) => {
                self.regs.all_mut()[d].key = sa_key;
                d
            }
            None => {
                self.add(Registrant {
                    key: sa_key,
                    port,
                    rel_tgt_id: Some(rel_tgt_id),
                    holder: false,
                })?;
                self.regs.all().len() - 1
            }
        };
        self.end_reservation();
        self.reservation = Some(t);
        self.regs.all_mut()[d].holder = true;
        if unreg {
            if let Some(me) = self.find(nexus) {
                self.regs.remove_at(me);
            }
        }
        self.aptpl = aptpl;
        self.generation = self.generation.wrapping_add(1);
        Ok(Done { changed: true })
    }
}
