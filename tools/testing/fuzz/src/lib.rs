// SPDX-License-Identifier: GPL-2.0

//! Shared by the fuzz targets and the seed generator: a byte reader over the
//! fuzz input, the input formats of the `login` and `text` targets, a CHAP
//! crypto provider (the host tests' own, over the `md-5`/`sha1`/`sha2`
//! crates) and a target
//! registry (after `host-tests/tests/iscsi_support`).

use scst_host_tests::scst_iscsi::login::{
    ChapCredentials, DigestPolicy, LoginTargets, TargetLookup, TargetSettings,
};
use scst_host_tests::scst_iscsi::text::{SendTargetsWriter, TargetCatalog};

/// Reads the fuzz input front to back; past its end every read is zero.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.0 {
            [b, rest @ ..] => {
                self.0 = rest;
                *b
            }
            [] => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }

    /// `N` bytes, zero-padded at the end of the input.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.iter_mut().for_each(|b| *b = self.u8());
        out
    }

    /// A data segment: a 16-bit length, then that many bytes.
    pub fn segment(&mut self) -> &'a [u8] {
        let len = usize::from(self.u16());
        self.bytes(len)
    }
}

/// Appends a data segment the way [`Input::segment`] reads it.
pub fn put_segment(out: &mut Vec<u8>, data: &[u8]) {
    let len = u16::try_from(data.len()).expect("seed segment too long");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

/// `k=v\0...` from pairs.
pub fn text(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut t = Vec::new();
    for (k, v) in entries {
        t.extend_from_slice(k.as_bytes());
        t.push(b'=');
        t.extend_from_slice(v.as_bytes());
        t.push(0);
    }
    t
}

pub fn to_base64(bytes: &[u8], pad: bool) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::from("0b");
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            s.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if pad {
            for _ in chunk.len()..3 {
                s.push('=');
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------
// CHAP crypto: the host tests' (real digests, reproducible "random" bytes).

#[path = "../../host-tests/tests/iscsi_support/mod.rs"]
mod iscsi_support;
pub use iscsi_support::{digest, to_hex, Crypto, XorShift};

// ---------------------------------------------------------------------------
// Targets.

pub const INITIATOR: &str = "iqn.2005-03.org.open-iscsi:host1";
/// The initiator the ACL of [`ACL_TARGET`] admits.
pub const INITIATOR2: &str = "iqn.2005-03.org.open-iscsi:host2";
pub const TARGET: &str = "iqn.2024-01.org.example:disk1";
pub const DISABLED_TARGET: &str = "iqn.2024-01.org.example:off";
pub const ACL_TARGET: &str = "iqn.2024-01.org.example:acl";
pub const CHAP_USER: &str = "user1";
pub const CHAP_SECRET: &str = "secret-one-12";
pub const TARGET_USER: &str = "target1";
pub const TARGET_SECRET: &str = "secret-two-34";

/// The first byte of the `login` input: what the targets are like.
#[derive(Debug, Clone, Copy, Default)]
pub struct Config(pub u8);

impl Config {
    pub const CHAP: u8 = 0x01;
    pub const MUTUAL: u8 = 0x02;
    /// Bits 2-3: header digest policy; bits 4-5: data digest policy.
    pub const HEADER_REQUIRED: u8 = 0x04;
    pub const DATA_REQUIRED: u8 = 0x10;
    /// Non-default numbers: the target makes offers.
    pub const OFFERS: u8 = 0x40;
    /// Many targets: SendTargets answers span pieces.
    pub const MANY: u8 = 0x80;

    fn policy(bits: u8) -> DigestPolicy {
        match bits & 3 {
            1 => DigestPolicy::Required,
            2 => DigestPolicy::Allowed,
            _ => DigestPolicy::Off,
        }
    }

    /// The settings of every target (and of discovery sessions).
    pub fn settings(self) -> TargetSettings {
        let mut s = TargetSettings {
            header_digest: Self::policy(self.0 >> 2),
            data_digest: Self::policy(self.0 >> 4),
            chap_required: self.0 & Self::CHAP != 0,
            ..TargetSettings::default()
        };
        if self.0 & Self::OFFERS != 0 {
            s.max_recv_data_segment_length = 65_536;
            s.max_xmit_data_segment_length = 4096;
            s.max_burst_length = 1 << 20;
            s.first_burst_length = 1 << 17;
            s.initial_r2t = false;
            s.immediate_data = false;
            s.max_outstanding_r2t = 4;
        }
        s
    }

    pub fn chap(self) -> bool {
        self.0 & Self::CHAP != 0
    }
}

/// One configured target.
#[derive(Clone)]
pub struct TestTarget {
    pub name: String,
    pub enabled: bool,
    /// Initiators allowed; `None`: everyone.
    pub acl: Option<Vec<String>>,
    pub addresses: Vec<String>,
}

impl TestTarget {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            enabled: true,
            acl: None,
            addresses: vec!["192.0.2.1:3260,1".into(), "[2001:db8::1]:3260,1".into()],
        }
    }
}

/// The registry: [`TARGET`], [`DISABLED_TARGET`] and [`ACL_TARGET`] (and
/// with [`Config::MANY`] a hundred more), one user for the initiator and,
/// with [`Config::MUTUAL`], one for the target.
pub struct Targets {
    pub targets: Vec<TestTarget>,
    pub settings: TargetSettings,
    pub users: Vec<(String, Vec<u8>)>,
    pub outgoing: Option<(String, Vec<u8>)>,
}

impl Targets {
    pub fn new(config: Config) -> Self {
        let mut targets = vec![TestTarget::new(TARGET)];
        let mut off = TestTarget::new(DISABLED_TARGET);
        off.enabled = false;
        targets.push(off);
        let mut acl = TestTarget::new(ACL_TARGET);
        acl.acl = Some(vec![INITIATOR2.into()]);
        targets.push(acl);
        if config.0 & Config::MANY != 0 {
            targets.extend(
                (0..100).map(|i| TestTarget::new(&format!("iqn.2024-01.org.example:t{i:03}"))),
            );
        }
        let users = if config.chap() {
            vec![(CHAP_USER.into(), CHAP_SECRET.as_bytes().to_vec())]
        } else {
            Vec::new()
        };
        let outgoing = (config.0 & Config::MUTUAL != 0)
            .then(|| (TARGET_USER.into(), TARGET_SECRET.as_bytes().to_vec()));
        Self {
            targets,
            settings: config.settings(),
            users,
            outgoing,
        }
    }

    fn find(&self, target: &[u8]) -> Option<&TestTarget> {
        self.targets.iter().find(|t| t.name.as_bytes() == target)
    }

    pub fn visible(t: &TestTarget, initiator: &[u8]) -> bool {
        t.enabled
            && t.acl
                .as_ref()
                .is_none_or(|acl| acl.iter().any(|i| i.as_bytes() == initiator))
    }
}

impl LoginTargets for Targets {
    fn lookup(&self, target: &[u8], initiator: &[u8]) -> TargetLookup {
        match self.find(target) {
            None => TargetLookup::NotFound,
            Some(t) if !t.enabled => TargetLookup::Disabled,
            Some(t) if !Self::visible(t, initiator) => TargetLookup::NotAllowed,
            Some(_) => TargetLookup::Found(self.settings),
        }
    }

    fn discovery(&self, _initiator: &[u8]) -> TargetLookup {
        TargetLookup::Found(self.settings)
    }

    fn chap_secret(&self, target: Option<&[u8]>, user: &[u8]) -> Option<&[u8]> {
        if let Some(t) = target {
            self.find(t)?;
        }
        self.users
            .iter()
            .find(|(u, _)| u.as_bytes() == user)
            .map(|(_, s)| s.as_slice())
    }

    fn chap_target_credentials(&self, target: Option<&[u8]>) -> Option<ChapCredentials<'_>> {
        if let Some(t) = target {
            self.find(t)?;
        }
        let outgoing = self.outgoing.as_ref()?;
        Some(ChapCredentials {
            name: outgoing.0.as_bytes(),
            secret: &outgoing.1,
        })
    }

    fn target_alias(&self, target: &[u8]) -> Option<&[u8]> {
        (target == TARGET.as_bytes()).then_some(b"disk one".as_slice())
    }
}

impl TargetCatalog for Targets {
    fn send_targets(&self, initiator: &[u8], w: &mut SendTargetsWriter<'_, '_>) {
        for t in &self.targets {
            if Self::visible(t, initiator) {
                w.target(t.name.as_bytes());
                for a in &t.addresses {
                    w.address(a.as_bytes());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Input formats.

/// Sizes the `login` and `text` targets pick from for the login/text
/// storage (split in halves) and for the response buffer.
pub const STORAGE_SIZES: [usize; 5] = [256, 1024, 4096, 16 * 1024, 128 * 1024];
pub const OUT_SIZES: [usize; 6] = [0, 16, 512, 4096, 8192, 9000];

/// The step byte of the `login` input: bit 0 set, a raw 48-byte header
/// follows; clear, one byte follows, byte 1 of a header whose other fields
/// are those of [`login_header`].
pub const LOGIN_STEP_RAW: u8 = 1;

/// In a login request text, `CHAP_R=?` is replaced by the right response to
/// the last challenge, and `CHAP_C=?` by a fixed challenge: the fuzzer
/// cannot compute digests.
pub const PLACEHOLDER: &[u8] = b"?";

/// A Login Request header: immediate, T/C/CSG/NSG from `flags`, a fixed
/// ISID, TSIH 0, ITT 1, CID 0.
pub fn login_header(flags: u8) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[0] = 0x43;
    b[1] = flags;
    b[8..14].copy_from_slice(&[0x40, 0, 0x01, 0x37, 0, 0x01]);
    b[19] = 1;
    b[27] = 1;
    b
}

/// Byte 1 of a Login Request: T, C, CSG, NSG.
pub const fn login_flags(transit: bool, cont: bool, csg: u8, nsg: u8) -> u8 {
    (if transit { 0x80 } else { 0 }) | (if cont { 0x40 } else { 0 }) | (csg & 3) << 2 | (nsg & 3)
}

/// The first bytes of the `text` input.
pub mod text_config {
    /// Byte 0, bit 0: a discovery session (else normal, to [`super::TARGET`]).
    pub const DISCOVERY: u8 = 0x01;
    /// Byte 0, bit 1: the initiator is [`super::INITIATOR2`].
    pub const SECOND_INITIATOR: u8 = 0x02;
    /// Byte 0, bit 7: many targets.
    pub const MANY: u8 = 0x80;
    /// Step byte: F.
    pub const FINAL: u8 = 0x01;
    /// Step byte: C.
    pub const CONT: u8 = 0x02;
    /// Step byte, bits 2-3: TTT 0xffffffff (0), the last one the target
    /// gave (1), or a 32-bit value from the input (2, 3).
    pub const TTT_LAST: u8 = 0x04;
    pub const TTT_INPUT: u8 = 0x08;
    /// Step byte, bit 4: the ITT comes from the input (else 1).
    pub const ITT_INPUT: u8 = 0x10;
}

/// Whether `SCST_FUZZ_TRACE` is set: the targets then print each step, to
/// triage an artifact (`cargo fuzz run --fuzz-dir . login artifacts/...`).
pub fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SCST_FUZZ_TRACE").is_some())
}
