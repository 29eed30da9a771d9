// SPDX-License-Identifier: GPL-2.0

//! iSCSI login (RFC 7143, 6.2-6.3, 11.12-11.13 and 13) and the text
//! negotiation of the full feature phase, the target's side.
//!
//! [`Login`] runs one connection's login phase: the caller decodes each
//! Login Request header into a [`LoginRequest`] and hands it with its data
//! segment to [`Login::step`], which writes the response's data and returns
//! the response's header fields ([`LoginStep`]). After the step that ends
//! in [`Outcome::FullFeature`], [`Login::negotiated`] holds the session's
//! parameters.
//!
//! Stages. The first request starts in the security stage (0) or, when no
//! authentication is wanted, in the operational stage (1). Valid
//! transitions are 0→1, 0→3 and 1→3; anything else (a CSG other than the
//! current stage, the reserved stage 2, T with C) fails the login with an
//! initiator error. The target sets T only when the initiator did and the
//! stage is done: authentication finished in stage 0; every key the target
//! offered answered in stage 1. When an initiator asks for 0→3 but the
//! target has operational keys to offer, the target answers NSG=1.
//!
//! Keys. Every key may be sent once per login (a second `MaxBurstLength`,
//! in the same PDU or a later one, is a renegotiation and fails the login).
//! `InitiatorName`, `TargetName` and `SessionType` belong to the first
//! request; `AuthMethod` and `CHAP_*` to stage 0; the operational keys to
//! stage 1; keys only a target sends (`TargetAlias`, `TargetAddress`,
//! `TargetPortalGroupTag`) and `SendTargets` never come from an initiator
//! in login. A key outside its place fails the login with an initiator
//! error. Unknown keys, including `X-` and `X#` extension keys, are
//! answered `NotUnderstood`; the operational keys RFC 7143 marks
//! "Irrelevant when SessionType=Discovery" are answered `Irrelevant` in a
//! discovery session; an unparsable or out-of-range value is answered
//! `Reject` and the key keeps its default.
//!
//! Choices where the RFC leaves room:
//! - `OFMarker`/`IFMarker` are answered `No` (RFC 7143 13.26 allows it for
//!   the obsolete marker keys); `OFMarkInt`/`IFMarkInt` are answered
//!   `Reject`, as 13.26 requires.
//! - `TaskReporting` is answered `RFC3720` when the initiator lists it,
//!   else `Reject`: the target implements none of the later semantics.
//! - `iSCSIProtocolLevel` is answered with the minimum of the offer and 1,
//!   the level of RFC 7143.
//! - `FirstBurstLength` is always negotiated, also when `InitialR2T=Yes`
//!   and `ImmediateData=No` make it irrelevant; the result is clamped to
//!   `MaxBurstLength`.
//! - The target offers what it needs beyond the defaults in its first
//!   operational response: `MaxRecvDataSegmentLength` (declared when not
//!   8192), a required CRC32C digest, `InitialR2T=No`, `ImmediateData=No`,
//!   and its `MaxBurstLength`, `FirstBurstLength` and `MaxOutstandingR2T`
//!   when they differ from the defaults. An answer that breaks the result
//!   function (e.g. a larger `MaxBurstLength` than offered) fails the
//!   login; `Reject` or `NotUnderstood` leave the default, which fails the
//!   login only when the target cannot work with it. Likewise a digest
//!   list without CRC32C fails the login when the target requires CRC32C.
//! - `TargetName` in a discovery session is accepted and ignored.
//!
//! Text spanning PDUs: a request with C=1 is stored and answered with an
//! empty response; the text is processed when the request with C=0
//! arrives. A response longer than 8192 bytes (the most a login response
//! may carry) is sent in pieces with C=1, each fetched by an empty request.
//! The storage the caller provides bounds both: its first half holds the
//! request text (more fails the login with an initiator error), its second
//! half the response (more fails it with "out of resources", 0x0302).
//!
//! [`TextNegotiation`] runs the Text Requests of the full feature phase,
//! with the same C-bit gathering and a response split into pieces of the
//! initiator's MaxRecvDataSegmentLength, each continued through a Target
//! Transfer Tag:
//! - `SendTargets` (through a [`TargetCatalog`]): in a discovery session
//!   `All` lists every target the initiator may see, a name that target,
//!   and an empty value is answered `Reject` (it asks for the session's
//!   own target, which a discovery session has not); in a normal session
//!   every query reports the session's own target only.
//! - `MaxRecvDataSegmentLength` may be declared anew (RFC 7143 13.12).
//! - Other known keys belong to login and are answered `Reject`; unknown
//!   keys `NotUnderstood`. A malformed text, or a known key twice, earns a
//!   Reject PDU (protocol error).

use core::ops::DerefMut;

use crate::scst_iscsi::chap::{ChapCrypto, ChapTarget, MAX_DIGEST_LEN};
use crate::scst_iscsi::pdu::{LoginPdu, RejectReason, TextPdu, BHS_LEN};
use crate::scst_iscsi::text::{
    list_items, names_equal, pairs, parse_bool, parse_in_range, IscsiName, SendTargetsQuery,
    SendTargetsWriter, TargetCatalog, TextWriter, WriteError, IRRELEVANT, MAX_VALUE_LEN,
    NOT_UNDERSTOOD, REJECT,
};

/// Login stage 0: security negotiation.
pub const STAGE_SECURITY: u8 = 0;
/// Login stage 1: operational negotiation.
pub const STAGE_OPERATIONAL: u8 = 1;
/// Stage 3: the full feature phase.
pub const STAGE_FULL_FEATURE: u8 = 3;

/// The most data one login response carries: the initiator's
/// MaxRecvDataSegmentLength takes effect only after login.
pub const LOGIN_DATA_MAX: usize = 8192;

/// The iSCSI version this target speaks (RFC 7143: 0x00).
pub const ISCSI_VERSION: u8 = 0;

/// The default MaxRecvDataSegmentLength (RFC 7143, 13.12).
pub const DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH: u32 = 8192;

/// The iSCSIProtocolLevel this target implements (RFC 7143, 13.24).
pub const ISCSI_PROTOCOL_LEVEL: u32 = 1;

/// The reserved tag: "no Target Transfer Tag".
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Bounds of the data segment length keys.
const SEGMENT_MIN: u32 = 512;
const SEGMENT_MAX: u32 = 16_777_215;

/// RFC defaults of the keys the target does not configure.
const DEFAULT_TIME2WAIT: u32 = 2;
const DEFAULT_TIME2RETAIN: u32 = 20;
const DEFAULT_MAX_BURST: u32 = 262_144;
const DEFAULT_FIRST_BURST: u32 = 65_536;

/// The default cap on the data segments the target sends.
const DEFAULT_MAX_XMIT: u32 = 262_144;

/// A Login Response's Status-Class and Status-Detail (RFC 7143, 11.13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Status-Class: 0 success, 1 redirection, 2 initiator error, 3 target
    /// error.
    pub class: u8,
    /// Status-Detail.
    pub detail: u8,
}

impl Status {
    /// Success.
    pub const SUCCESS: Self = Self::new(0, 0);
    /// Initiator error (a protocol violation, a malformed text).
    pub const INITIATOR_ERROR: Self = Self::new(2, 0x00);
    /// Authentication failure.
    pub const AUTH_FAILURE: Self = Self::new(2, 0x01);
    /// Authorization failure: the target's access control refuses.
    pub const AUTHORIZATION_FAILURE: Self = Self::new(2, 0x02);
    /// No such target.
    pub const NOT_FOUND: Self = Self::new(2, 0x03);
    /// The request's version range excludes the target's.
    pub const UNSUPPORTED_VERSION: Self = Self::new(2, 0x05);
    /// A required key is missing.
    pub const MISSING_PARAMETER: Self = Self::new(2, 0x07);
    /// The target is disabled or not serving yet.
    pub const SERVICE_UNAVAILABLE: Self = Self::new(3, 0x01);
    /// The response does not fit the target's buffers.
    pub const OUT_OF_RESOURCES: Self = Self::new(3, 0x02);

    const fn new(class: u8, detail: u8) -> Self {
        Self { class, detail }
    }
}

impl From<WriteError> for Status {
    fn from(_: WriteError) -> Self {
        Self::OUT_OF_RESOURCES
    }
}

/// The kind of session a login establishes (`SessionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    /// A session to a target, for SCSI commands.
    Normal,
    /// A session for `SendTargets` only.
    Discovery,
}

/// Which digest (`HeaderDigest` or `DataDigest`) a target accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestPolicy {
    /// No digest (`None` only).
    Off,
    /// CRC32C only; offered when the initiator does not ask.
    Required,
    /// Either; the initiator's order decides.
    Allowed,
}

impl DigestPolicy {
    fn allows(self, crc32c: bool) -> bool {
        match self {
            Self::Off => !crc32c,
            Self::Required => crc32c,
            Self::Allowed => true,
        }
    }
}

/// A target's login parameters, as an administrator set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSettings {
    /// Which header digest the target accepts.
    pub header_digest: DigestPolicy,
    /// Which data digest the target accepts.
    pub data_digest: DigestPolicy,
    /// The largest data segment the target receives (declared when not
    /// 8192).
    pub max_recv_data_segment_length: u32,
    /// The largest data segment the target sends: caps the initiator's
    /// declared MaxRecvDataSegmentLength.
    pub max_xmit_data_segment_length: u32,
    /// The target's MaxBurstLength.
    pub max_burst_length: u32,
    /// The target's FirstBurstLength.
    pub first_burst_length: u32,
    /// The target's InitialR2T.
    pub initial_r2t: bool,
    /// The target's ImmediateData.
    pub immediate_data: bool,
    /// The target's MaxOutstandingR2T.
    pub max_outstanding_r2t: u32,
    /// Whether initiators must authenticate with CHAP (the target has
    /// incoming users); otherwise `AuthMethod=None` is the only method.
    pub chap_required: bool,
}

impl Default for TargetSettings {
    /// The RFC 7143 defaults, no digests, no authentication.
    fn default() -> Self {
        Self {
            header_digest: DigestPolicy::Off,
            data_digest: DigestPolicy::Off,
            max_recv_data_segment_length: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
            max_xmit_data_segment_length: DEFAULT_MAX_XMIT,
            max_burst_length: DEFAULT_MAX_BURST,
            first_burst_length: DEFAULT_FIRST_BURST,
            initial_r2t: true,
            immediate_data: true,
            max_outstanding_r2t: 1,
            chap_required: false,
        }
    }
}

impl TargetSettings {
    /// Brings every value into the range its key allows.
    fn sanitized(mut self) -> Self {
        self.max_recv_data_segment_length = self
            .max_recv_data_segment_length
            .clamp(SEGMENT_MIN, SEGMENT_MAX);
        self.max_xmit_data_segment_length = self
            .max_xmit_data_segment_length
            .clamp(SEGMENT_MIN, SEGMENT_MAX);
        self.max_burst_length = self.max_burst_length.clamp(SEGMENT_MIN, SEGMENT_MAX);
        self.first_burst_length = self
            .first_burst_length
            .clamp(SEGMENT_MIN, self.max_burst_length);
        self.max_outstanding_r2t = self.max_outstanding_r2t.clamp(1, 65_535);
        self
    }
}

/// What looking a target up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetLookup {
    /// No such target: status 0x0203.
    NotFound,
    /// The target exists but does not serve: status 0x0301.
    Disabled,
    /// The target's access control refuses the initiator: status 0x0202.
    NotAllowed,
    /// The target's settings.
    Found(TargetSettings),
}

/// A name and secret for CHAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChapCredentials<'a> {
    /// The CHAP name (`CHAP_N`).
    pub name: &'a [u8],
    /// The secret.
    pub secret: &'a [u8],
}

/// The targets a login may reach, implemented by the caller over its
/// registry. `target` is `None` for a discovery session.
pub trait LoginTargets {
    /// Looks up target `target` for `initiator`.
    fn lookup(&self, target: &[u8], initiator: &[u8]) -> TargetLookup;

    /// The settings of discovery sessions for `initiator`: only the
    /// digests, `max_recv_data_segment_length`,
    /// `max_xmit_data_segment_length` and `chap_required` matter there.
    /// `NotFound` and `Disabled` both answer 0x0301.
    fn discovery(&self, initiator: &[u8]) -> TargetLookup;

    /// The secret of the incoming CHAP user `user`, if configured.
    fn chap_secret(&self, target: Option<&[u8]>, user: &[u8]) -> Option<&[u8]>;

    /// The outgoing CHAP user, with which the target proves itself (mutual
    /// CHAP), if configured.
    fn chap_target_credentials(&self, target: Option<&[u8]>) -> Option<ChapCredentials<'_>>;

    /// The target's alias, declared in the first response.
    fn target_alias(&self, _target: &[u8]) -> Option<&[u8]> {
        None
    }
}

/// The Login Request header the login reads: the PDU codec's own.
pub type LoginRequest = LoginPdu;

/// How the login goes on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send the response and wait for the next request.
    Continue,
    /// Send the response (a failure status) and close the connection.
    Failed,
    /// Send the response (T=1, NSG=3); the connection is in the full
    /// feature phase with [`Login::negotiated`]. The caller puts the TSIH
    /// it assigns into this response.
    FullFeature,
}

/// The header fields of the Login Response to send; its data are the first
/// `data_len` bytes of the `out` buffer given to [`Login::step`]. Version-max
/// and Version-active are [`ISCSI_VERSION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginStep {
    /// T.
    pub transit: bool,
    /// C: more response text follows.
    pub cont: bool,
    /// Current stage.
    pub csg: u8,
    /// Next stage (0 unless `transit`).
    pub nsg: u8,
    /// Status-Class and Status-Detail.
    pub status: Status,
    /// Length of the response's data segment.
    pub data_len: usize,
    /// What to do next.
    pub outcome: Outcome,
}

/// The parameters a login settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Normal or discovery.
    pub session_type: SessionType,
    /// `InitiatorName`.
    pub initiator_name: IscsiName,
    /// `TargetName` (empty for a discovery session).
    pub target_name: IscsiName,
    /// The ISID of the requests.
    pub isid: [u8; 6],
    /// The TSIH of the requests (0: a new session).
    pub tsih: u16,
    /// The connection's CID.
    pub cid: u16,
    /// Whether PDU headers carry CRC32C.
    pub header_digest: bool,
    /// Whether data segments carry CRC32C.
    pub data_digest: bool,
    /// The largest data segment the target accepts.
    pub max_recv_data_segment_length: u32,
    /// The largest data segment the target may send: the initiator's
    /// declared MaxRecvDataSegmentLength, capped by the target's setting.
    pub max_xmit_data_segment_length: u32,
    /// MaxBurstLength.
    pub max_burst_length: u32,
    /// FirstBurstLength (never above MaxBurstLength).
    pub first_burst_length: u32,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u32,
    /// MaxConnections.
    pub max_connections: u32,
    /// ErrorRecoveryLevel.
    pub error_recovery_level: u32,
    /// DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder.
    pub data_sequence_in_order: bool,
    /// DefaultTime2Wait, in seconds.
    pub default_time2wait: u32,
    /// DefaultTime2Retain, in seconds.
    pub default_time2retain: u32,
    /// iSCSIProtocolLevel.
    pub iscsi_protocol_level: u32,
}

/// The keys this implementation knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    HeaderDigest,
    DataDigest,
    MaxConnections,
    SendTargets,
    TargetName,
    InitiatorName,
    TargetAlias,
    InitiatorAlias,
    TargetAddress,
    TargetPortalGroupTag,
    InitialR2T,
    ImmediateData,
    MaxRecvDataSegmentLength,
    MaxBurstLength,
    FirstBurstLength,
    DefaultTime2Wait,
    DefaultTime2Retain,
    MaxOutstandingR2T,
    DataPduInOrder,
    DataSequenceInOrder,
    ErrorRecoveryLevel,
    SessionType,
    AuthMethod,
    OfMarker,
    IfMarker,
    OfMarkInt,
    IfMarkInt,
    TaskReporting,
    ProtocolLevel,
    ChapA,
    ChapI,
    ChapC,
    ChapN,
    ChapR,
}

const KEY_COUNT: usize = 34;

/// Every key, in the order responses answer them.
const KEYS: [Key; KEY_COUNT] = [
    Key::HeaderDigest,
    Key::DataDigest,
    Key::MaxConnections,
    Key::SendTargets,
    Key::TargetName,
    Key::InitiatorName,
    Key::TargetAlias,
    Key::InitiatorAlias,
    Key::TargetAddress,
    Key::TargetPortalGroupTag,
    Key::InitialR2T,
    Key::ImmediateData,
    Key::MaxRecvDataSegmentLength,
    Key::MaxBurstLength,
    Key::FirstBurstLength,
    Key::DefaultTime2Wait,
    Key::DefaultTime2Retain,
    Key::MaxOutstandingR2T,
    Key::DataPduInOrder,
    Key::DataSequenceInOrder,
    Key::ErrorRecoveryLevel,
    Key::SessionType,
    Key::AuthMethod,
    Key::OfMarker,
    Key::IfMarker,
    Key::OfMarkInt,
    Key::IfMarkInt,
    Key::TaskReporting,
    Key::ProtocolLevel,
    Key::ChapA,
    Key::ChapI,
    Key::ChapC,
    Key::ChapN,
    Key::ChapR,
];

/// Where a key may appear in a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The first request only.
    Leading,
    /// Any login request.
    Anywhere,
    /// The security stage.
    Security,
    /// The operational stage.
    Operational,
    /// Never from an initiator during login.
    Never,
}

impl Key {
    fn name(self) -> &'static [u8] {
        match self {
            Self::HeaderDigest => b"HeaderDigest",
            Self::DataDigest => b"DataDigest",
            Self::MaxConnections => b"MaxConnections",
            Self::SendTargets => b"SendTargets",
            Self::TargetName => b"TargetName",
            Self::InitiatorName => b"InitiatorName",
            Self::TargetAlias => b"TargetAlias",
            Self::InitiatorAlias => b"InitiatorAlias",
            Self::TargetAddress => b"TargetAddress",
            Self::TargetPortalGroupTag => b"TargetPortalGroupTag",
            Self::InitialR2T => b"InitialR2T",
            Self::ImmediateData => b"ImmediateData",
            Self::MaxRecvDataSegmentLength => b"MaxRecvDataSegmentLength",
            Self::MaxBurstLength => b"MaxBurstLength",
            Self::FirstBurstLength => b"FirstBurstLength",
            Self::DefaultTime2Wait => b"DefaultTime2Wait",
            Self::DefaultTime2Retain => b"DefaultTime2Retain",
            Self::MaxOutstandingR2T => b"MaxOutstandingR2T",
            Self::DataPduInOrder => b"DataPDUInOrder",
            Self::DataSequenceInOrder => b"DataSequenceInOrder",
            Self::ErrorRecoveryLevel => b"ErrorRecoveryLevel",
            Self::SessionType => b"SessionType",
            Self::AuthMethod => b"AuthMethod",
            Self::OfMarker => b"OFMarker",
            Self::IfMarker => b"IFMarker",
            Self::OfMarkInt => b"OFMarkInt",
            Self::IfMarkInt => b"IFMarkInt",
            Self::TaskReporting => b"TaskReporting",
            Self::ProtocolLevel => b"iSCSIProtocolLevel",
            Self::ChapA => b"CHAP_A",
            Self::ChapI => b"CHAP_I",
            Self::ChapC => b"CHAP_C",
            Self::ChapN => b"CHAP_N",
            Self::ChapR => b"CHAP_R",
        }
    }

    fn from_name(name: &[u8]) -> Option<Self> {
        KEYS.into_iter().find(|k| k.name() == name)
    }

    fn bit(self) -> u64 {
        1 << (self as u32)
    }

    fn place(self) -> Place {
        match self {
            Self::InitiatorName | Self::TargetName | Self::SessionType => Place::Leading,
            Self::InitiatorAlias => Place::Anywhere,
            Self::AuthMethod
            | Self::ChapA
            | Self::ChapI
            | Self::ChapC
            | Self::ChapN
            | Self::ChapR => Place::Security,
            Self::TargetAlias
            | Self::TargetAddress
            | Self::TargetPortalGroupTag
            | Self::SendTargets => Place::Never,
            _ => Place::Operational,
        }
    }

    /// RFC 7143 marks these "Irrelevant when: SessionType=Discovery".
    fn irrelevant_in_discovery(self) -> bool {
        matches!(
            self,
            Self::MaxConnections
                | Self::InitialR2T
                | Self::ImmediateData
                | Self::MaxBurstLength
                | Self::FirstBurstLength
                | Self::MaxOutstandingR2T
                | Self::DataPduInOrder
                | Self::DataSequenceInOrder
                | Self::TaskReporting
        )
    }

    /// The values of a key that holds CHAP's binary data may be long.
    fn allows_large_value(self) -> bool {
        matches!(self, Self::ChapC | Self::ChapR)
    }
}

/// The values of the known keys of one text, found by key.
struct Found<'t> {
    values: [Option<&'t [u8]>; KEY_COUNT],
    present: u64,
}

impl<'t> Found<'t> {
    /// Collects the known keys of `text`, refusing a malformed text and a
    /// key already in `seen` (sent before, or twice in this text).
    fn collect(text: &'t [u8], seen: &mut u64) -> Result<Self, ()> {
        let mut found = Self {
            values: [None; KEY_COUNT],
            present: 0,
        };
        for pair in pairs(text) {
            let pair = pair.map_err(|_| ())?;
            let Some(key) = Key::from_name(pair.key) else {
                continue;
            };
            if *seen & key.bit() != 0 {
                return Err(());
            }
            *seen |= key.bit();
            found.present |= key.bit();
            if let Some(slot) = found.values.get_mut(key as usize) {
                *slot = Some(pair.value);
            }
        }
        Ok(found)
    }

    fn get(&self, key: Key) -> Option<&'t [u8]> {
        self.values.get(key as usize).copied().flatten()
    }

    fn has(&self, key: Key) -> bool {
        self.present & key.bit() != 0
    }

    fn keys(&self) -> impl Iterator<Item = (Key, &'t [u8])> + '_ {
        KEYS.into_iter().filter_map(|k| Some((k, self.get(k)?)))
    }
}

/// Writes `NotUnderstood` for each unknown key of `text`.
fn answer_unknown(text: &[u8], w: &mut TextWriter<'_>) -> Result<(), WriteError> {
    for pair in pairs(text).map_while(Result::ok) {
        if Key::from_name(pair.key).is_none() {
            w.pair(pair.key, NOT_UNDERSTOOD)?;
        }
    }
    Ok(())
}

/// `Reject`, `Irrelevant` or `NotUnderstood`: an answer that leaves the
/// key at its default.
fn is_refusal(value: &[u8]) -> bool {
    matches!(value, b"Reject" | b"Irrelevant" | b"NotUnderstood")
}

/// A numeric value of an ordinary key in `min..=max`.
fn number(value: &[u8], min: u32, max: u32) -> Option<u32> {
    if value.len() > MAX_VALUE_LEN {
        return None;
    }
    parse_in_range(value, min, max)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// No `AuthMethod` yet.
    Pending,
    /// CHAP chosen, not finished.
    Chap,
    /// Authenticated, or no authentication needed.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Login,
    Failed,
    FullFeature,
}

/// What the response to a complete text does about the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decision {
    transit: bool,
    nsg: u8,
}

/// The values being negotiated, starting at the RFC defaults.
#[derive(Debug, Clone, Copy)]
struct Params {
    header_digest: bool,
    data_digest: bool,
    initiator_mrdsl: u32,
    max_burst_length: u32,
    first_burst_length: u32,
    initial_r2t: bool,
    immediate_data: bool,
    max_outstanding_r2t: u32,
    max_connections: u32,
    error_recovery_level: u32,
    data_pdu_in_order: bool,
    data_sequence_in_order: bool,
    default_time2wait: u32,
    default_time2retain: u32,
    iscsi_protocol_level: u32,
}

impl Params {
    const DEFAULT: Self = Self {
        header_digest: false,
        data_digest: false,
        initiator_mrdsl: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
        max_burst_length: DEFAULT_MAX_BURST,
        first_burst_length: DEFAULT_FIRST_BURST,
        initial_r2t: true,
        immediate_data: true,
        max_outstanding_r2t: 1,
        max_connections: 1,
        error_recovery_level: 0,
        data_pdu_in_order: true,
        data_sequence_in_order: true,
        default_time2wait: DEFAULT_TIME2WAIT,
        default_time2retain: DEFAULT_TIME2RETAIN,
        // RFC 7144: 0 until negotiated.
        iscsi_protocol_level: 0,
    };
}

/// The login's state apart from the text storage.
struct State {
    phase: Phase,
    portal_group_tag: u16,
    /// ISID, TSIH and CID of the first request; later ones must match.
    ids: Option<([u8; 6], u16, u16)>,
    stage: u8,
    leading_done: bool,
    session_type: SessionType,
    initiator: IscsiName,
    target: IscsiName,
    settings: TargetSettings,
    auth: Auth,
    chap: ChapTarget,
    /// Keys the initiator sent during this login.
    sent: u64,
    /// Keys the target offered and awaits answers to.
    pending: u64,
    offers_made: bool,
    /// The target's own MaxRecvDataSegmentLength is still to be declared:
    /// it waits one response when that response rejects the initiator's
    /// value, so that no response carries the key twice (RFC 7143 6.1).
    mrdsl_to_declare: bool,
    /// This response rejected the initiator's MaxRecvDataSegmentLength.
    mrdsl_rejected: bool,
    params: Params,
    decision: Decision,
    negotiated: Option<Negotiated>,
}

/// The login phase of one connection; see the module documentation.
pub struct Login<S> {
    storage: S,
    /// Request text gathered in the first half of `storage`.
    in_len: usize,
    /// Response text in the second half: its length, and how much is sent.
    out_len: usize,
    out_pos: usize,
    st: State,
}

impl<S: DerefMut<Target = [u8]>> Login<S> {
    /// A login on a connection that arrived at portal group
    /// `portal_group_tag`. `storage` holds the request text (first half)
    /// and the response text (second half); 2 x 64 KiB is plenty, and
    /// longer texts fail the login cleanly.
    pub fn new(storage: S, portal_group_tag: u16) -> Self {
        Self {
            storage,
            in_len: 0,
            out_len: 0,
            out_pos: 0,
            st: State {
                phase: Phase::Login,
                portal_group_tag,
                ids: None,
                stage: STAGE_SECURITY,
                leading_done: false,
                session_type: SessionType::Normal,
                initiator: IscsiName::EMPTY,
                target: IscsiName::EMPTY,
                settings: TargetSettings::default(),
                auth: Auth::Pending,
                chap: ChapTarget::new(),
                sent: 0,
                pending: 0,
                offers_made: false,
                mrdsl_to_declare: false,
                mrdsl_rejected: false,
                params: Params::DEFAULT,
                decision: Decision {
                    transit: false,
                    nsg: 0,
                },
                negotiated: None,
            },
        }
    }

    /// The settled parameters, once the login reached the full feature
    /// phase.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.st.negotiated.as_ref()
    }

    /// The current stage (0 or 1; 3 after the login).
    pub fn stage(&self) -> u8 {
        self.st.stage
    }

    /// Handles one Login Request: `req` its header, `data` its data
    /// segment. Writes the response's data into `out` (8192 bytes suffice)
    /// and returns the response's header fields.
    pub fn step(
        &mut self,
        req: &LoginRequest,
        data: &[u8],
        targets: &dyn LoginTargets,
        crypto: &mut dyn ChapCrypto,
        out: &mut [u8],
    ) -> LoginStep {
        match self.try_step(req, data, targets, crypto, out) {
            Ok(step) => step,
            Err(status) => {
                self.st.phase = Phase::Failed;
                LoginStep {
                    transit: false,
                    cont: false,
                    csg: req.csg & 3,
                    nsg: 0,
                    status,
                    data_len: 0,
                    outcome: Outcome::Failed,
                }
            }
        }
    }

    fn try_step(
        &mut self,
        req: &LoginRequest,
        data: &[u8],
        targets: &dyn LoginTargets,
        crypto: &mut dyn ChapCrypto,
        out: &mut [u8],
    ) -> Result<LoginStep, Status> {
        if self.st.phase != Phase::Login {
            return Err(Status::INITIATOR_ERROR);
        }
        if req.version_min > ISCSI_VERSION {
            return Err(Status::UNSUPPORTED_VERSION);
        }
        self.st.check_header(req)?;
        if self.out_pos < self.out_len {
            // Fetching the rest of a long response.
            if req.cont || !data.is_empty() {
                return Err(Status::INITIATOR_ERROR);
            }
            return self.emit(req, out);
        }
        let half = self.storage.len() / 2;
        let end = self
            .in_len
            .checked_add(data.len())
            .filter(|&end| end <= half)
            .ok_or(Status::INITIATOR_ERROR)?;
        self.storage
            .get_mut(self.in_len..end)
            .ok_or(Status::INITIATOR_ERROR)?
            .copy_from_slice(data);
        self.in_len = end;
        if req.cont {
            return Ok(self.st.reply(false, 0, 0, Outcome::Continue));
        }
        let (input, output) = self.storage.split_at_mut(half);
        let text = input.get(..self.in_len).unwrap_or(&[]);
        let mut w = TextWriter::new(output);
        let decision = self.st.process(req, text, targets, crypto, &mut w)?;
        self.out_len = w.len();
        self.out_pos = 0;
        self.in_len = 0;
        self.st.decision = decision;
        self.emit(req, out)
    }

    /// Sends the next piece of the pending response; the last piece carries
    /// the stage decision.
    fn emit(&mut self, req: &LoginRequest, out: &mut [u8]) -> Result<LoginStep, Status> {
        let half = self.storage.len() / 2;
        let pending = self
            .storage
            .get(half + self.out_pos..half + self.out_len)
            .unwrap_or(&[]);
        let n = pending.len().min(out.len()).min(LOGIN_DATA_MAX);
        if n == 0 && !pending.is_empty() {
            return Err(Status::OUT_OF_RESOURCES);
        }
        if let (Some(dst), Some(src)) = (out.get_mut(..n), pending.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.out_pos += n;
        if self.out_pos < self.out_len {
            let mut step = self.st.reply(false, 0, n, Outcome::Continue);
            step.cont = true;
            return Ok(step);
        }
        self.out_pos = 0;
        self.out_len = 0;
        let decision = self.st.decision;
        // A piece fetched without T does not move on; the initiator asks
        // again with T.
        if !(decision.transit && req.transit) {
            return Ok(self.st.reply(false, 0, n, Outcome::Continue));
        }
        let nsg = decision.nsg.min(req.nsg);
        if nsg == STAGE_FULL_FEATURE {
            let step = self.st.reply(true, nsg, n, Outcome::FullFeature);
            self.st.finish();
            return Ok(step);
        }
        let step = self.st.reply(true, nsg, n, Outcome::Continue);
        self.st.stage = nsg;
        Ok(step)
    }
}

impl State {
    fn reply(&self, transit: bool, nsg: u8, data_len: usize, outcome: Outcome) -> LoginStep {
        LoginStep {
            transit,
            cont: false,
            csg: self.stage,
            nsg,
            status: Status::SUCCESS,
            data_len,
            outcome,
        }
    }

    /// The header checks of every request.
    fn check_header(&mut self, req: &LoginRequest) -> Result<(), Status> {
        if req.transit && req.cont {
            return Err(Status::INITIATOR_ERROR);
        }
        let ids = (req.isid, req.tsih, req.cid);
        match self.ids {
            None => {
                if req.csg != STAGE_SECURITY && req.csg != STAGE_OPERATIONAL {
                    return Err(Status::INITIATOR_ERROR);
                }
                self.ids = Some(ids);
                self.stage = req.csg;
            }
            Some(first) => {
                if first != ids || req.csg != self.stage {
                    return Err(Status::INITIATOR_ERROR);
                }
            }
        }
        let valid_transit = matches!(
            (req.csg, req.nsg),
            (STAGE_SECURITY, STAGE_OPERATIONAL | STAGE_FULL_FEATURE)
                | (STAGE_OPERATIONAL, STAGE_FULL_FEATURE)
        );
        if req.transit && !valid_transit {
            return Err(Status::INITIATOR_ERROR);
        }
        Ok(())
    }

    /// Handles one complete request text, writing the response text.
    fn process(
        &mut self,
        req: &LoginRequest,
        text: &[u8],
        targets: &dyn LoginTargets,
        crypto: &mut dyn ChapCrypto,
        w: &mut TextWriter<'_>,
    ) -> Result<Decision, Status> {
        let found = Found::collect(text, &mut self.sent).map_err(|()| Status::INITIATOR_ERROR)?;
        for (key, value) in found.keys() {
            let allowed = match key.place() {
                Place::Leading => !self.leading_done,
                Place::Anywhere => true,
                Place::Security => self.stage == STAGE_SECURITY,
                Place::Operational => self.stage == STAGE_OPERATIONAL,
                Place::Never => false,
            };
            let fits = value.len() <= MAX_VALUE_LEN || key.allows_large_value();
            // Long values of operational keys are answered Reject below.
            if !allowed || (!fits && key.place() != Place::Operational) {
                return Err(Status::INITIATOR_ERROR);
            }
        }
        if !self.leading_done {
            self.leading(&found, targets, w)?;
            self.leading_done = true;
        }
        let decision = if self.stage == STAGE_SECURITY {
            self.security(req, &found, targets, crypto, w)?
        } else {
            self.operational(req, &found, w)?
        };
        answer_unknown(text, w)?;
        Ok(decision)
    }

    /// The first request: who logs in to what.
    fn leading(
        &mut self,
        found: &Found<'_>,
        targets: &dyn LoginTargets,
        w: &mut TextWriter<'_>,
    ) -> Result<(), Status> {
        self.session_type = match found.get(Key::SessionType) {
            None | Some(b"Normal") => SessionType::Normal,
            Some(b"Discovery") => SessionType::Discovery,
            Some(_) => return Err(Status::INITIATOR_ERROR),
        };
        let initiator = found
            .get(Key::InitiatorName)
            .filter(|n| !n.is_empty())
            .ok_or(Status::MISSING_PARAMETER)?;
        self.initiator = IscsiName::new(initiator).ok_or(Status::INITIATOR_ERROR)?;
        let lookup = match self.session_type {
            SessionType::Discovery => match targets.discovery(initiator) {
                TargetLookup::NotFound => TargetLookup::Disabled,
                other => other,
            },
            SessionType::Normal => {
                let target = found
                    .get(Key::TargetName)
                    .filter(|n| !n.is_empty())
                    .ok_or(Status::MISSING_PARAMETER)?;
                // A name longer than any iSCSI name names no target.
                self.target = IscsiName::new(target).ok_or(Status::NOT_FOUND)?;
                targets.lookup(target, initiator)
            }
        };
        self.settings = match lookup {
            TargetLookup::NotFound => return Err(Status::NOT_FOUND),
            TargetLookup::Disabled => return Err(Status::SERVICE_UNAVAILABLE),
            TargetLookup::NotAllowed => return Err(Status::AUTHORIZATION_FAILURE),
            TargetLookup::Found(settings) => settings.sanitized(),
        };
        if self.session_type == SessionType::Normal {
            w.pair_number(b"TargetPortalGroupTag", u64::from(self.portal_group_tag))?;
            if let Some(alias) = targets.target_alias(self.target.as_bytes()) {
                w.pair(b"TargetAlias", alias)?;
            }
        }
        Ok(())
    }

    /// Stage 0: `AuthMethod` and CHAP.
    fn security(
        &mut self,
        req: &LoginRequest,
        found: &Found<'_>,
        targets: &dyn LoginTargets,
        crypto: &mut dyn ChapCrypto,
        w: &mut TextWriter<'_>,
    ) -> Result<Decision, Status> {
        let required = self.settings.chap_required;
        if let Some(methods) = found.get(Key::AuthMethod) {
            // The configuration leaves one method: CHAP when the target has
            // users, None when it has none.
            let method: &[u8] = if required { b"CHAP" } else { b"None" };
            if list_items(methods).any(|m| m == method) {
                w.pair(b"AuthMethod", method)?;
                self.auth = if required { Auth::Chap } else { Auth::Done };
            } else if required {
                return Err(Status::AUTH_FAILURE);
            } else {
                // Only methods this target cannot do; the default (None)
                // stays, and the initiator decides whether to go on.
                w.pair(b"AuthMethod", REJECT)?;
                self.auth = Auth::Done;
            }
        }
        let chap_keys = [Key::ChapA, Key::ChapI, Key::ChapC, Key::ChapN, Key::ChapR];
        if chap_keys.iter().any(|&k| found.has(k)) {
            self.chap_step(found, targets, crypto, w)?;
        }
        if !req.transit {
            return Ok(Decision {
                transit: false,
                nsg: 0,
            });
        }
        match self.auth {
            Auth::Pending if required => return Err(Status::AUTH_FAILURE),
            Auth::Chap => {
                return Ok(Decision {
                    transit: false,
                    nsg: 0,
                })
            }
            Auth::Pending | Auth::Done => self.auth = Auth::Done,
        }
        // Offers need the operational stage: go there instead of stage 3.
        let nsg = if req.nsg == STAGE_FULL_FEATURE && self.needs_operational_stage() {
            STAGE_OPERATIONAL
        } else {
            req.nsg
        };
        Ok(Decision { transit: true, nsg })
    }

    fn chap_step(
        &mut self,
        found: &Found<'_>,
        targets: &dyn LoginTargets,
        crypto: &mut dyn ChapCrypto,
        w: &mut TextWriter<'_>,
    ) -> Result<(), Status> {
        if self.auth != Auth::Chap {
            return Err(Status::AUTH_FAILURE);
        }
        if let Some(algorithms) = found.get(Key::ChapA) {
            let challenge = self
                .chap
                .challenge(algorithms, crypto)
                .map_err(|_| Status::AUTH_FAILURE)?;
            w.pair_number(b"CHAP_A", u64::from(challenge.alg.code()))?;
            w.pair_number(b"CHAP_I", u64::from(challenge.id))?;
            w.pair_hex(b"CHAP_C", challenge.challenge)?;
            // The answer can only come with a later request.
            let early = [Key::ChapI, Key::ChapC, Key::ChapN, Key::ChapR];
            if early.iter().any(|&k| found.has(k)) {
                return Err(Status::AUTH_FAILURE);
            }
            return Ok(());
        }
        let (Some(name), Some(response)) = (found.get(Key::ChapN), found.get(Key::ChapR)) else {
            return Err(Status::AUTH_FAILURE);
        };
        // Discovery sessions use the discovery credentials (no target).
        let target = (self.session_type == SessionType::Normal).then(|| self.target.as_bytes());
        let secret = targets.chap_secret(target, name);
        self.chap
            .verify(response, secret, crypto)
            .map_err(|_| Status::AUTH_FAILURE)?;
        match (found.get(Key::ChapI), found.get(Key::ChapC)) {
            (None, None) => {}
            (Some(id), Some(challenge)) => {
                let own = targets
                    .chap_target_credentials(target)
                    .ok_or(Status::AUTH_FAILURE)?;
                let mut digest = [0u8; MAX_DIGEST_LEN];
                let len = self
                    .chap
                    .answer(
                        id,
                        challenge,
                        own.secret,
                        secret.unwrap_or(&[]),
                        crypto,
                        &mut digest,
                    )
                    .map_err(|_| Status::AUTH_FAILURE)?;
                w.pair(b"CHAP_N", own.name)?;
                w.pair_hex(b"CHAP_R", digest.get(..len).unwrap_or(&[]))?;
            }
            _ => return Err(Status::AUTH_FAILURE),
        }
        self.auth = Auth::Done;
        Ok(())
    }

    /// Stage 1: answers the initiator's keys, takes its answers to the
    /// target's offers, and makes those offers in the stage's first response.
    fn operational(
        &mut self,
        req: &LoginRequest,
        found: &Found<'_>,
        w: &mut TextWriter<'_>,
    ) -> Result<Decision, Status> {
        // Stage 1 straight away skips authentication the target requires.
        if self.auth != Auth::Done {
            if self.settings.chap_required {
                return Err(Status::AUTH_FAILURE);
            }
            self.auth = Auth::Done;
        }
        self.mrdsl_rejected = false;
        for (key, value) in found.keys() {
            if key.place() != Place::Operational {
                continue;
            }
            if self.pending & key.bit() != 0 {
                self.pending &= !key.bit();
                self.take_answer(key, value)?;
            } else if self.session_type == SessionType::Discovery && key.irrelevant_in_discovery() {
                w.pair(key.name(), IRRELEVANT)?;
            } else {
                self.respond(key, value, w)?;
            }
        }
        if !self.offers_made {
            self.mrdsl_to_declare = self.declares_mrdsl();
            self.make_offers(w)?;
            self.offers_made = true;
        }
        if self.mrdsl_to_declare && !self.mrdsl_rejected {
            w.pair_number(
                b"MaxRecvDataSegmentLength",
                u64::from(self.settings.max_recv_data_segment_length),
            )?;
            self.mrdsl_to_declare = false;
        }
        Ok(Decision {
            transit: req.transit && self.pending == 0 && !self.mrdsl_to_declare,
            nsg: STAGE_FULL_FEATURE,
        })
    }

    /// The target's FirstBurstLength, never above its MaxBurstLength.
    fn target_first_burst(&self) -> u32 {
        self.settings
            .first_burst_length
            .min(self.settings.max_burst_length)
    }

    /// The keys the target offers because it needs other than the default
    /// and the initiator did not bring them up.
    fn offers(&self) -> u64 {
        let s = &self.settings;
        let normal = self.session_type == SessionType::Normal;
        let wanted = [
            (Key::HeaderDigest, s.header_digest == DigestPolicy::Required),
            (Key::DataDigest, s.data_digest == DigestPolicy::Required),
            (Key::InitialR2T, normal && !s.initial_r2t),
            (Key::ImmediateData, normal && !s.immediate_data),
            (
                Key::MaxBurstLength,
                normal && s.max_burst_length != DEFAULT_MAX_BURST,
            ),
            (
                Key::FirstBurstLength,
                normal && self.target_first_burst() != DEFAULT_FIRST_BURST,
            ),
            (Key::MaxOutstandingR2T, normal && s.max_outstanding_r2t != 1),
        ];
        wanted
            .into_iter()
            .filter(|&(key, want)| want && self.sent & key.bit() == 0)
            .fold(0, |mask, (key, _)| mask | key.bit())
    }

    fn declares_mrdsl(&self) -> bool {
        self.settings.max_recv_data_segment_length != DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH
    }

    fn needs_operational_stage(&self) -> bool {
        self.declares_mrdsl() || self.offers() != 0
    }

    fn make_offers(&mut self, w: &mut TextWriter<'_>) -> Result<(), Status> {
        let offers = self.offers();
        for key in KEYS {
            if offers & key.bit() == 0 {
                continue;
            }
            match key {
                Key::HeaderDigest | Key::DataDigest => w.pair(key.name(), b"CRC32C")?,
                Key::InitialR2T | Key::ImmediateData => w.pair_bool(key.name(), false)?,
                _ => w.pair_number(key.name(), u64::from(self.offer_value(key)))?,
            }
        }
        self.pending |= offers;
        Ok(())
    }

    /// The number the target offers for a numeric key.
    fn offer_value(&self, key: Key) -> u32 {
        match key {
            Key::MaxBurstLength => self.settings.max_burst_length,
            Key::FirstBurstLength => self.target_first_burst(),
            Key::MaxOutstandingR2T => self.settings.max_outstanding_r2t,
            _ => 0,
        }
    }

    /// The initiator's answer to an offer of the target.
    fn take_answer(&mut self, key: Key, value: &[u8]) -> Result<(), Status> {
        let p = &mut self.params;
        match key {
            // The target offered CRC32C only: nothing else will do.
            Key::HeaderDigest | Key::DataDigest if value == b"CRC32C" => {
                if key == Key::HeaderDigest {
                    p.header_digest = true;
                } else {
                    p.data_digest = true;
                }
            }
            // Offered No; OR makes the answer the result, a refusal
            // leaves Yes, which the target can always do.
            Key::InitialR2T => match parse_bool(value) {
                Some(v) => p.initial_r2t = v,
                None if is_refusal(value) => {}
                None => return Err(Status::INITIATOR_ERROR),
            },
            // Offered No; AND makes No the only answer.
            Key::ImmediateData if value == b"No" => p.immediate_data = false,
            Key::MaxBurstLength | Key::FirstBurstLength | Key::MaxOutstandingR2T => {
                let offered = self.offer_value(key);
                let (min, max, default) = match key {
                    Key::MaxBurstLength => (SEGMENT_MIN, SEGMENT_MAX, DEFAULT_MAX_BURST),
                    Key::FirstBurstLength => (SEGMENT_MIN, SEGMENT_MAX, DEFAULT_FIRST_BURST),
                    _ => (1, 65_535, 1),
                };
                // Minimum function: the answer may not exceed the offer.
                let result = match number(value, min, max) {
                    Some(v) if v <= offered => v,
                    None if is_refusal(value) && default <= offered => default,
                    _ => return Err(Status::INITIATOR_ERROR),
                };
                let p = &mut self.params;
                match key {
                    Key::MaxBurstLength => p.max_burst_length = result,
                    Key::FirstBurstLength => p.first_burst_length = result,
                    _ => p.max_outstanding_r2t = result,
                }
            }
            _ => return Err(Status::INITIATOR_ERROR),
        }
        Ok(())
    }

    /// Answers an operational key the initiator offered.
    fn respond(&mut self, key: Key, value: &[u8], w: &mut TextWriter<'_>) -> Result<(), Status> {
        let name = key.name();
        let s = self.settings;
        let p = &mut self.params;
        match key {
            Key::HeaderDigest | Key::DataDigest => {
                let policy = if key == Key::HeaderDigest {
                    s.header_digest
                } else {
                    s.data_digest
                };
                let choice = list_items(value).find_map(|item| match item {
                    b"CRC32C" if policy.allows(true) => Some(true),
                    b"None" if policy.allows(false) => Some(false),
                    _ => None,
                });
                match choice {
                    Some(crc) => {
                        w.pair(name, if crc { b"CRC32C" } else { b"None" })?;
                        if key == Key::HeaderDigest {
                            p.header_digest = crc;
                        } else {
                            p.data_digest = crc;
                        }
                    }
                    // The default, None, serves when the target allows it.
                    None if policy.allows(false) => w.pair(name, REJECT)?,
                    None => return Err(Status::INITIATOR_ERROR),
                }
            }
            Key::MaxRecvDataSegmentLength => match number(value, SEGMENT_MIN, SEGMENT_MAX) {
                // A declaration: nothing to answer.
                Some(v) => p.initiator_mrdsl = v,
                None => {
                    w.pair(name, REJECT)?;
                    self.mrdsl_rejected = true;
                }
            },
            Key::MaxConnections => {
                // The target runs one connection per session.
                if let Some(v) = answer_number(w, name, value, 1, 65_535, |v| v.min(1))? {
                    p.max_connections = v;
                }
            }
            Key::ErrorRecoveryLevel => {
                if let Some(v) = answer_number(w, name, value, 0, 2, |_| 0)? {
                    p.error_recovery_level = v;
                }
            }
            Key::MaxBurstLength => {
                let mine = s.max_burst_length;
                if let Some(v) =
                    answer_number(w, name, value, SEGMENT_MIN, SEGMENT_MAX, |v| v.min(mine))?
                {
                    p.max_burst_length = v;
                }
            }
            Key::FirstBurstLength => {
                let mine = s.first_burst_length.min(s.max_burst_length);
                if let Some(v) =
                    answer_number(w, name, value, SEGMENT_MIN, SEGMENT_MAX, |v| v.min(mine))?
                {
                    p.first_burst_length = v;
                }
            }
            Key::MaxOutstandingR2T => {
                let mine = s.max_outstanding_r2t;
                if let Some(v) = answer_number(w, name, value, 1, 65_535, |v| v.min(mine))? {
                    p.max_outstanding_r2t = v;
                }
            }
            Key::DefaultTime2Wait => {
                if let Some(v) =
                    answer_number(w, name, value, 0, 3600, |v| v.max(DEFAULT_TIME2WAIT))?
                {
                    p.default_time2wait = v;
                }
            }
            Key::DefaultTime2Retain => {
                if let Some(v) =
                    answer_number(w, name, value, 0, 3600, |v| v.min(DEFAULT_TIME2RETAIN))?
                {
                    p.default_time2retain = v;
                }
            }
            Key::ProtocolLevel => {
                if let Some(v) =
                    answer_number(w, name, value, 0, 31, |v| v.min(ISCSI_PROTOCOL_LEVEL))?
                {
                    p.iscsi_protocol_level = v;
                }
            }
            Key::InitialR2T => {
                if let Some(v) = answer_bool(w, name, value, |v| v || s.initial_r2t)? {
                    p.initial_r2t = v;
                }
            }
            Key::ImmediateData => {
                if let Some(v) = answer_bool(w, name, value, |v| v && s.immediate_data)? {
                    p.immediate_data = v;
                }
            }
            // The target needs data in order: OR with Yes.
            Key::DataPduInOrder => {
                answer_bool(w, name, value, |_| true)?;
            }
            Key::DataSequenceInOrder => {
                answer_bool(w, name, value, |_| true)?;
            }
            // Markers are not supported: AND with No.
            Key::OfMarker | Key::IfMarker => {
                answer_bool(w, name, value, |_| false)?;
            }
            Key::OfMarkInt | Key::IfMarkInt => w.pair(name, REJECT)?,
            Key::TaskReporting => {
                let answer: &[u8] = if list_items(value).any(|v| v == b"RFC3720") {
                    b"RFC3720"
                } else {
                    REJECT
                };
                w.pair(name, answer)?;
            }
            _ => w.pair(name, NOT_UNDERSTOOD)?,
        }
        Ok(())
    }

    /// The parameters once the login reaches the full feature phase.
    fn finish(&mut self) {
        let p = &self.params;
        let s = &self.settings;
        let (isid, tsih, cid) = self.ids.unwrap_or_default();
        self.phase = Phase::FullFeature;
        self.stage = STAGE_FULL_FEATURE;
        self.negotiated = Some(Negotiated {
            session_type: self.session_type,
            initiator_name: self.initiator,
            target_name: self.target,
            isid,
            tsih,
            cid,
            header_digest: p.header_digest,
            data_digest: p.data_digest,
            max_recv_data_segment_length: s.max_recv_data_segment_length,
            max_xmit_data_segment_length: p.initiator_mrdsl.min(s.max_xmit_data_segment_length),
            max_burst_length: p.max_burst_length,
            first_burst_length: p.first_burst_length.min(p.max_burst_length),
            initial_r2t: p.initial_r2t,
            immediate_data: p.immediate_data,
            max_outstanding_r2t: p.max_outstanding_r2t,
            max_connections: p.max_connections,
            error_recovery_level: p.error_recovery_level,
            data_pdu_in_order: p.data_pdu_in_order,
            data_sequence_in_order: p.data_sequence_in_order,
            default_time2wait: p.default_time2wait,
            default_time2retain: p.default_time2retain,
            iscsi_protocol_level: p.iscsi_protocol_level,
        });
    }
}

/// Answers a numeric offer with `result(offer)`, or `Reject` for a value
/// out of `min..=max`; returns the result.
fn answer_number(
    w: &mut TextWriter<'_>,
    name: &[u8],
    value: &[u8],
    min: u32,
    max: u32,
    result: impl FnOnce(u32) -> u32,
) -> Result<Option<u32>, Status> {
    match number(value, min, max) {
        Some(v) => {
            let r = result(v);
            w.pair_number(name, u64::from(r))?;
            Ok(Some(r))
        }
        None => {
            w.pair(name, REJECT)?;
            Ok(None)
        }
    }
}

/// Answers a Boolean offer with `result(offer)`, or `Reject` for a value
/// other than `Yes`/`No`; returns the result.
fn answer_bool(
    w: &mut TextWriter<'_>,
    name: &[u8],
    value: &[u8],
    result: impl FnOnce(bool) -> bool,
) -> Result<Option<bool>, Status> {
    match parse_bool(value) {
        Some(v) => {
            let r = result(v);
            w.pair_bool(name, r)?;
            Ok(Some(r))
        }
        None => {
            w.pair(name, REJECT)?;
            Ok(None)
        }
    }
}

/// The fields of a Text Request header the negotiation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRequest {
    /// F: the initiator ends the negotiation with this request.
    pub final_pdu: bool,
    /// C: the text continues in the next request.
    pub cont: bool,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag: [`RESERVED_TAG`] to start, else the tag of the
    /// response continued.
    pub ttt: u32,
}

impl TextRequest {
    /// Decodes a Text Request's Basic Header Segment (RFC 7143, 11.10).
    pub fn from_bhs(bhs: &[u8; BHS_LEN]) -> Self {
        let p = TextPdu::parse(bhs);
        Self {
            final_pdu: p.final_pdu,
            cont: p.cont,
            itt: p.itt,
            ttt: p.ttt,
        }
    }
}

/// What to answer a Text Request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOutcome {
    /// A Text Response with the fields of the [`TextStep`].
    Respond,
    /// A Reject PDU with this reason; the negotiation is reset.
    Reject(RejectReason),
}

/// The header fields of the Text Response to send; its data are the first
/// `data_len` bytes of the `out` buffer given to [`TextNegotiation::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextStep {
    /// F: the negotiation ends with this response.
    pub final_pdu: bool,
    /// C: more response text follows.
    pub cont: bool,
    /// Target Transfer Tag: [`RESERVED_TAG`] with F, else a tag the
    /// initiator echoes to go on.
    pub ttt: u32,
    /// Length of the response's data segment.
    pub data_len: usize,
    /// Response or Reject.
    pub outcome: TextOutcome,
    /// A new limit on the data segments the target sends, from a
    /// `MaxRecvDataSegmentLength` the initiator declared (already capped).
    pub max_xmit_data_segment_length: Option<u32>,
    /// `SendTargets` found more targets than the response buffer holds.
    pub truncated: bool,
}

/// The text negotiation of one connection in the full feature phase; see
/// the module documentation.
pub struct TextNegotiation<S> {
    storage: S,
    in_len: usize,
    out_len: usize,
    out_pos: usize,
    /// ITT and TTT of the negotiation awaiting a continuation.
    open: Option<(u32, u32)>,
    next_ttt: u32,
    session_type: SessionType,
    initiator: IscsiName,
    target: IscsiName,
    max_xmit: u32,
    xmit_cap: u32,
}

impl<S: DerefMut<Target = [u8]>> TextNegotiation<S> {
    /// The negotiation of a session that logged in with `session`;
    /// `xmit_cap` is the target's MaxXmitDataSegmentLength, which caps later
    /// declarations. `storage` is split like [`Login`]'s.
    pub fn new(storage: S, session: &Negotiated, xmit_cap: u32) -> Self {
        Self {
            storage,
            in_len: 0,
            out_len: 0,
            out_pos: 0,
            open: None,
            next_ttt: 1,
            session_type: session.session_type,
            initiator: session.initiator_name,
            target: session.target_name,
            max_xmit: session.max_xmit_data_segment_length,
            xmit_cap: xmit_cap.clamp(SEGMENT_MIN, SEGMENT_MAX),
        }
    }

    fn reset(&mut self) {
        self.in_len = 0;
        self.out_len = 0;
        self.out_pos = 0;
        self.open = None;
    }

    fn new_ttt(&mut self) -> u32 {
        let ttt = self.next_ttt;
        self.next_ttt = match self.next_ttt.wrapping_add(1) {
            RESERVED_TAG => 1,
            n => n,
        };
        ttt
    }

    fn reject(&mut self, reason: RejectReason) -> TextStep {
        self.reset();
        TextStep {
            final_pdu: false,
            cont: false,
            ttt: RESERVED_TAG,
            data_len: 0,
            outcome: TextOutcome::Reject(reason),
            max_xmit_data_segment_length: None,
            truncated: false,
        }
    }

    /// Handles one Text Request: `req` its header, `data` its data segment.
    /// Writes the response's data into `out` and returns the response's
    /// header fields.
    pub fn step(
        &mut self,
        req: &TextRequest,
        data: &[u8],
        catalog: &dyn TargetCatalog,
        out: &mut [u8],
    ) -> TextStep {
        if req.cont && req.final_pdu {
            return self.reject(RejectReason::ProtocolError);
        }
        if req.ttt == RESERVED_TAG {
            // A new negotiation replaces any unfinished one.
            self.reset();
        } else if self.open != Some((req.itt, req.ttt)) {
            return self.reject(RejectReason::InvalidPduField);
        }
        self.open = None;
        if self.out_pos < self.out_len {
            if req.cont || !data.is_empty() {
                return self.reject(RejectReason::ProtocolError);
            }
            return self.emit(req, out, None, false);
        }
        let half = self.storage.len() / 2;
        let Some(end) = self.in_len.checked_add(data.len()).filter(|&e| e <= half) else {
            return self.reject(RejectReason::ProtocolError);
        };
        if let Some(dst) = self.storage.get_mut(self.in_len..end) {
            dst.copy_from_slice(data);
        }
        self.in_len = end;
        if req.cont {
            let ttt = self.new_ttt();
            self.open = Some((req.itt, ttt));
            return TextStep {
                final_pdu: false,
                cont: false,
                ttt,
                data_len: 0,
                outcome: TextOutcome::Respond,
                max_xmit_data_segment_length: None,
                truncated: false,
            };
        }
        let (input, output) = self.storage.split_at_mut(half);
        let text = input.get(..self.in_len).unwrap_or(&[]);
        let mut w = TextWriter::new(output);
        let query = Query {
            session_type: self.session_type,
            initiator: &self.initiator,
            target: &self.target,
            xmit_cap: self.xmit_cap,
        };
        let result = query.process(text, catalog, &mut w);
        let len = w.len();
        self.in_len = 0;
        match result {
            Ok((max_xmit, truncated)) => {
                self.out_len = len;
                self.out_pos = 0;
                self.emit(req, out, max_xmit, truncated)
            }
            Err(reason) => self.reject(reason),
        }
    }

    fn emit(
        &mut self,
        req: &TextRequest,
        out: &mut [u8],
        max_xmit: Option<u32>,
        truncated: bool,
    ) -> TextStep {
        let half = self.storage.len() / 2;
        let limit =
            usize::try_from(self.max_xmit.min(max_xmit.unwrap_or(u32::MAX))).unwrap_or(usize::MAX);
        if let Some(m) = max_xmit {
            self.max_xmit = m;
        }
        let pending = self
            .storage
            .get(half + self.out_pos..half + self.out_len)
            .unwrap_or(&[]);
        let n = pending.len().min(out.len()).min(limit);
        if n == 0 && !pending.is_empty() {
            return self.reject(RejectReason::ProtocolError);
        }
        if let (Some(dst), Some(src)) = (out.get_mut(..n), pending.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.out_pos += n;
        let more = self.out_pos < self.out_len;
        if !more {
            self.out_pos = 0;
            self.out_len = 0;
        }
        let final_pdu = !more && req.final_pdu;
        let ttt = if final_pdu {
            RESERVED_TAG
        } else {
            let ttt = self.new_ttt();
            self.open = Some((req.itt, ttt));
            ttt
        };
        TextStep {
            final_pdu,
            cont: more,
            ttt,
            data_len: n,
            outcome: TextOutcome::Respond,
            max_xmit_data_segment_length: max_xmit,
            truncated,
        }
    }
}

/// What processing a complete Text Request needs of the session.
struct Query<'a> {
    session_type: SessionType,
    initiator: &'a IscsiName,
    target: &'a IscsiName,
    xmit_cap: u32,
}

impl Query<'_> {
    /// Answers a complete text; returns a new MaxXmitDataSegmentLength and
    /// whether SendTargets was cut short.
    fn process(
        &self,
        text: &[u8],
        catalog: &dyn TargetCatalog,
        w: &mut TextWriter<'_>,
    ) -> Result<(Option<u32>, bool), RejectReason> {
        let mut seen = 0;
        Found::collect(text, &mut seen).map_err(|()| RejectReason::ProtocolError)?;
        let (mut max_xmit, mut truncated) = (None, false);
        for pair in pairs(text).map_while(Result::ok) {
            let written = match Key::from_name(pair.key) {
                Some(Key::SendTargets) => {
                    truncated = self.send_targets(pair.value, catalog, w);
                    Ok(())
                }
                Some(Key::MaxRecvDataSegmentLength) => {
                    match number(pair.value, SEGMENT_MIN, SEGMENT_MAX) {
                        Some(v) => {
                            max_xmit = Some(v.min(self.xmit_cap));
                            Ok(())
                        }
                        None => w.pair(pair.key, REJECT),
                    }
                }
                // A declaration without effect here.
                Some(Key::InitiatorAlias) => Ok(()),
                // Login-only keys, and keys only targets send.
                Some(_) => w.pair(pair.key, REJECT),
                None => w.pair(pair.key, NOT_UNDERSTOOD),
            };
            written.map_err(|_| RejectReason::ProtocolError)?;
        }
        Ok((max_xmit, truncated))
    }

    /// Writes the answer to `SendTargets=value`; returns whether targets
    /// were left out for lack of room.
    fn send_targets(
        &self,
        value: &[u8],
        catalog: &dyn TargetCatalog,
        w: &mut TextWriter<'_>,
    ) -> bool {
        let query = match self.session_type {
            SessionType::Discovery => match value {
                b"All" => SendTargetsQuery::All,
                // Empty asks for the session's target, which a discovery
                // session has not.
                b"" => return w.pair(b"SendTargets", REJECT).is_err(),
                name => SendTargetsQuery::Target(name),
            },
            // A normal session learns about its own target only.
            SessionType::Normal => {
                let own = self.target.as_bytes();
                if value.is_empty() || value == b"All" || names_equal(value, own) {
                    SendTargetsQuery::Target(own)
                } else {
                    return false;
                }
            }
        };
        let mut st = SendTargetsWriter::new(w, query);
        catalog.send_targets(self.initiator.as_bytes(), &mut st);
        st.truncated()
    }
}
