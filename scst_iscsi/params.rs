// SPDX-License-Identifier: GPL-2.0

//! A target's iSCSI parameters as its sysfs attributes show and take them
//! (SCST's names, values and ranges), and CHAP user lines.
//!
//! Plain `core` Rust: the host tests parse and print exactly what the module
//! does.

use crate::scst_iscsi::login::{DigestPolicy, TargetSettings};
use core::fmt::{self, Write};

/// A per-target parameter attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    HeaderDigest,
    DataDigest,
    MaxRecvDataSegmentLength,
    MaxXmitDataSegmentLength,
    MaxBurstLength,
    FirstBurstLength,
    InitialR2T,
    ImmediateData,
    MaxOutstandingR2T,
    QueuedCommands,
    NopInInterval,
    NopInTimeout,
    RspTimeout,
    MaxSessions,
}

impl Param {
    /// Every parameter, in the order of their attribute files.
    pub const ALL: [Param; 14] = [
        Param::HeaderDigest,
        Param::DataDigest,
        Param::MaxRecvDataSegmentLength,
        Param::MaxXmitDataSegmentLength,
        Param::MaxBurstLength,
        Param::FirstBurstLength,
        Param::InitialR2T,
        Param::ImmediateData,
        Param::MaxOutstandingR2T,
        Param::QueuedCommands,
        Param::NopInInterval,
        Param::NopInTimeout,
        Param::RspTimeout,
        Param::MaxSessions,
    ];

    /// The attribute's (and the iSCSI key's) name.
    pub fn name(self) -> &'static str {
        match self {
            Param::HeaderDigest => "HeaderDigest",
            Param::DataDigest => "DataDigest",
            Param::MaxRecvDataSegmentLength => "MaxRecvDataSegmentLength",
            Param::MaxXmitDataSegmentLength => "MaxXmitDataSegmentLength",
            Param::MaxBurstLength => "MaxBurstLength",
            Param::FirstBurstLength => "FirstBurstLength",
            Param::InitialR2T => "InitialR2T",
            Param::ImmediateData => "ImmediateData",
            Param::MaxOutstandingR2T => "MaxOutstandingR2T",
            Param::QueuedCommands => "QueuedCommands",
            Param::NopInInterval => "NopInInterval",
            Param::NopInTimeout => "NopInTimeout",
            Param::RspTimeout => "RspTimeout",
            Param::MaxSessions => "MaxSessions",
        }
    }

    /// The parameter called `name`.
    pub fn from_name(name: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The range a numeric parameter takes.
    fn range(self) -> (u32, u32) {
        match self {
            Param::MaxRecvDataSegmentLength
            | Param::MaxXmitDataSegmentLength
            | Param::MaxBurstLength
            | Param::FirstBurstLength => (SEGMENT_MIN, SEGMENT_MAX),
            Param::MaxOutstandingR2T => (1, 65_535),
            Param::QueuedCommands => (1, MAX_QUEUED_COMMANDS),
            // 0 turns the pings off.
            Param::NopInInterval => (0, 65_535),
            Param::NopInTimeout | Param::RspTimeout => (1, 65_535),
            // 0: no limit.
            Param::MaxSessions => (0, 65_535),
            _ => (0, 1),
        }
    }
}

/// The smallest and largest data segment or burst (RFC 7143).
pub const SEGMENT_MIN: u32 = 512;
pub const SEGMENT_MAX: u32 = 16_777_215;

/// The largest command window a session may get.
pub const MAX_QUEUED_COMMANDS: u32 = 2048;

/// Largest data segment this target receives by default: a command's
/// immediate data and each Data-Out land straight in its pages, so the
/// size only bounds the per-connection buffer for other PDUs.
pub const DEFAULT_MAX_RECV: u32 = 256 << 10;

/// A target's parameters, as set through its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetParams {
    /// What the login offers and accepts.
    pub settings: TargetSettings,
    /// The command window (ExpCmdSN to MaxCmdSN) of each session.
    pub queued_commands: u32,
    /// Seconds of silence before the target pings with a NOP-In (0: never).
    pub nop_in_interval: u32,
    /// Seconds a ping waits for its NOP-Out before the connection closes.
    pub nop_in_timeout: u32,
    /// Seconds a connection may leave a command without progress (a write
    /// waiting for Data-Out) before it closes.
    pub rsp_timeout: u32,
    /// Sessions the target admits at once (0: no limit).
    pub max_sessions: u32,
}

impl Default for TargetParams {
    /// SCST's defaults, but for the data segment sizes.
    fn default() -> Self {
        Self {
            settings: TargetSettings {
                max_recv_data_segment_length: DEFAULT_MAX_RECV,
                max_xmit_data_segment_length: DEFAULT_MAX_RECV,
                max_burst_length: 1 << 20,
                first_burst_length: 65_536,
                initial_r2t: false,
                immediate_data: true,
                max_outstanding_r2t: 32,
                ..TargetSettings::default()
            },
            queued_commands: 32,
            nop_in_interval: 30,
            nop_in_timeout: 30,
            rsp_timeout: 90,
            max_sessions: 0,
        }
    }
}

/// Why a value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamError {
    /// Not one of the values the parameter takes.
    BadValue(&'static str),
    /// FirstBurstLength above MaxBurstLength.
    FirstBurstAboveMaxBurst,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::BadValue(expected) => write!(f, "expected {expected}"),
            ParamError::FirstBurstAboveMaxBurst => {
                f.write_str("FirstBurstLength may not exceed MaxBurstLength")
            }
        }
    }
}

fn digest_name(policy: DigestPolicy) -> &'static str {
    match policy {
        DigestPolicy::Off => "None",
        DigestPolicy::Required => "CRC32C",
        DigestPolicy::Allowed => "CRC32C,None",
    }
}

fn parse_digest(value: &str) -> Result<DigestPolicy, ParamError> {
    let mut crc = false;
    let mut none = false;
    for v in value.split(',') {
        match v.trim() {
            s if s.eq_ignore_ascii_case("crc32c") => crc = true,
            s if s.eq_ignore_ascii_case("none") => none = true,
            _ => return Err(ParamError::BadValue("None, CRC32C or both")),
        }
    }
    Ok(match (crc, none) {
        (true, true) => DigestPolicy::Allowed,
        (true, false) => DigestPolicy::Required,
        _ => DigestPolicy::Off,
    })
}

fn parse_yes_no(value: &str) -> Result<bool, ParamError> {
    match value {
        v if v.eq_ignore_ascii_case("yes") || v == "1" => Ok(true),
        v if v.eq_ignore_ascii_case("no") || v == "0" => Ok(false),
        _ => Err(ParamError::BadValue("Yes or No")),
    }
}

fn parse_number(value: &str, (min, max): (u32, u32)) -> Result<u32, ParamError> {
    let ok = !value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| value.parse::<u64>().ok())
        .flatten()
        .filter(|v| (u64::from(min)..=u64::from(max)).contains(v))
        .map(|v| v as u32)
        .ok_or(ParamError::BadValue("a number in the parameter's range"))
}

fn yes_no(v: bool) -> &'static str {
    if v {
        "Yes"
    } else {
        "No"
    }
}

impl TargetParams {
    /// Sets `param` from the text written to its attribute; a refused value
    /// changes nothing.
    pub fn set(&mut self, param: Param, value: &str) -> Result<(), ParamError> {
        let value = value.trim();
        let mut next = *self;
        let s = &mut next.settings;
        let number = || parse_number(value, param.range());
        match param {
            Param::HeaderDigest => s.header_digest = parse_digest(value)?,
            Param::DataDigest => s.data_digest = parse_digest(value)?,
            Param::MaxRecvDataSegmentLength => s.max_recv_data_segment_length = number()?,
            Param::MaxXmitDataSegmentLength => s.max_xmit_data_segment_length = number()?,
            Param::MaxBurstLength => s.max_burst_length = number()?,
            Param::FirstBurstLength => s.first_burst_length = number()?,
            Param::InitialR2T => s.initial_r2t = parse_yes_no(value)?,
            Param::ImmediateData => s.immediate_data = parse_yes_no(value)?,
            Param::MaxOutstandingR2T => s.max_outstanding_r2t = number()?,
            Param::QueuedCommands => next.queued_commands = number()?,
            Param::NopInInterval => next.nop_in_interval = number()?,
            Param::NopInTimeout => next.nop_in_timeout = number()?,
            Param::RspTimeout => next.rsp_timeout = number()?,
            Param::MaxSessions => next.max_sessions = number()?,
        }
        if next.settings.first_burst_length > next.settings.max_burst_length {
            return Err(ParamError::FirstBurstAboveMaxBurst);
        }
        *self = next;
        Ok(())
    }

    /// Writes `param`'s value as its attribute shows it.
    pub fn show(&self, param: Param, out: &mut impl Write) -> fmt::Result {
        let s = &self.settings;
        match param {
            Param::HeaderDigest => out.write_str(digest_name(s.header_digest)),
            Param::DataDigest => out.write_str(digest_name(s.data_digest)),
            Param::MaxRecvDataSegmentLength => write!(out, "{}", s.max_recv_data_segment_length),
            Param::MaxXmitDataSegmentLength => write!(out, "{}", s.max_xmit_data_segment_length),
            Param::MaxBurstLength => write!(out, "{}", s.max_burst_length),
            Param::FirstBurstLength => write!(out, "{}", s.first_burst_length),
            Param::InitialR2T => out.write_str(yes_no(s.initial_r2t)),
            Param::ImmediateData => out.write_str(yes_no(s.immediate_data)),
            Param::MaxOutstandingR2T => write!(out, "{}", s.max_outstanding_r2t),
            Param::QueuedCommands => write!(out, "{}", self.queued_commands),
            Param::NopInInterval => write!(out, "{}", self.nop_in_interval),
            Param::NopInTimeout => write!(out, "{}", self.nop_in_timeout),
            Param::RspTimeout => write!(out, "{}", self.rsp_timeout),
            Param::MaxSessions => write!(out, "{}", self.max_sessions),
        }
    }

    /// Whether `param` still has the value of a new target: the others
    /// are part of the configuration.
    pub fn is_default(&self, param: Param) -> bool {
        let d = Self::default();
        let (s, ds) = (&self.settings, &d.settings);
        match param {
            Param::HeaderDigest => s.header_digest == ds.header_digest,
            Param::DataDigest => s.data_digest == ds.data_digest,
            Param::MaxRecvDataSegmentLength => {
                s.max_recv_data_segment_length == ds.max_recv_data_segment_length
            }
            Param::MaxXmitDataSegmentLength => {
                s.max_xmit_data_segment_length == ds.max_xmit_data_segment_length
            }
            Param::MaxBurstLength => s.max_burst_length == ds.max_burst_length,
            Param::FirstBurstLength => s.first_burst_length == ds.first_burst_length,
            Param::InitialR2T => s.initial_r2t == ds.initial_r2t,
            Param::ImmediateData => s.immediate_data == ds.immediate_data,
            Param::MaxOutstandingR2T => s.max_outstanding_r2t == ds.max_outstanding_r2t,
            Param::QueuedCommands => self.queued_commands == d.queued_commands,
            Param::NopInInterval => self.nop_in_interval == d.nop_in_interval,
            Param::NopInTimeout => self.nop_in_timeout == d.nop_in_timeout,
            Param::RspTimeout => self.rsp_timeout == d.rsp_timeout,
            Param::MaxSessions => self.max_sessions == d.max_sessions,
        }
    }
}

/// Which CHAP user list an attribute line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKind {
    /// `IncomingUser`: initiators prove themselves with it (several).
    Incoming,
    /// `OutgoingUser`: the target proves itself with it (mutual CHAP; one).
    Outgoing,
}

impl UserKind {
    /// The kind an attribute name stands for.
    pub fn from_name(name: &str) -> Option<UserKind> {
        match name {
            "IncomingUser" => Some(UserKind::Incoming),
            "OutgoingUser" => Some(UserKind::Outgoing),
            _ => None,
        }
    }
}

/// Longest CHAP name and secret accepted (bytes).
pub const CHAP_FIELD_MAX: usize = 255;

/// Splits the value of an `IncomingUser`/`OutgoingUser` line, `name
/// secret` or `"name secret"`, into its name and secret. `del_*` lines may
/// give the name alone (`secret_optional`).
pub fn parse_user(value: &str, secret_optional: bool) -> Result<(&str, &str), ParamError> {
    let v = value.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .trim();
    let mut words = v.split_ascii_whitespace();
    let name = words.next().unwrap_or("");
    let secret = words.next().unwrap_or("");
    let bad = ParamError::BadValue("a CHAP name and secret");
    if name.is_empty()
        || name.len() > CHAP_FIELD_MAX
        || secret.len() > CHAP_FIELD_MAX
        || words.next().is_some()
        || (secret.is_empty() && !secret_optional)
        || name.contains('"')
        || secret.contains('"')
    {
        return Err(bad);
    }
    Ok((name, secret))
}
