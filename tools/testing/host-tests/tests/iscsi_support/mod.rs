// SPDX-License-Identifier: GPL-2.0

//! Shared by the iSCSI text, CHAP and login tests: a CHAP crypto provider
//! over the `md-5`/`sha1`/`sha2` crates, a target registry, a discovery
//! catalog, and helpers to build and read texts.

#![allow(dead_code)]

use scst_host_tests::scst_iscsi::chap::{ChapAlgorithm, ChapCrypto, CryptoError};
use scst_host_tests::scst_iscsi::login::*;
use scst_host_tests::scst_iscsi::text::{pairs, SendTargetsWriter, TargetCatalog};

/// A deterministic xorshift64 generator.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next_u64() as u8;
        }
    }
}

/// CHAP crypto for tests: real digests, reproducible "random" bytes.
pub struct Crypto {
    pub rng: XorShift,
}

impl Crypto {
    pub fn new() -> Self {
        Self {
            rng: XorShift(0x9e37_79b9_7f4a_7c15),
        }
    }
}

/// The digest of the concatenated parts.
pub fn digest(alg: ChapAlgorithm, parts: &[&[u8]]) -> Vec<u8> {
    fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    match alg {
        ChapAlgorithm::Md5 => run::<md5::Md5>(parts),
        ChapAlgorithm::Sha1 => run::<sha1::Sha1>(parts),
        ChapAlgorithm::Sha256 => run::<sha2::Sha256>(parts),
    }
}

impl Default for Crypto {
    fn default() -> Self {
        Self::new()
    }
}

impl ChapCrypto for Crypto {
    fn digest(
        &mut self,
        alg: ChapAlgorithm,
        parts: &[&[u8]],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        let d = digest(alg, parts);
        if d.len() != out.len() {
            return Err(CryptoError);
        }
        out.copy_from_slice(&d);
        Ok(())
    }

    fn random(&mut self, out: &mut [u8]) {
        self.rng.fill(out);
    }
}

/// The initiator's CHAP response, as hex.
pub fn chap_response_hex(alg: ChapAlgorithm, id: u8, secret: &[u8], challenge: &[u8]) -> String {
    to_hex(&digest(alg, &[&[id], secret, challenge]))
}

pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn from_hex(s: &str) -> Vec<u8> {
    let digits = s.strip_prefix("0x").unwrap();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

pub fn to_base64(bytes: &[u8]) -> String {
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
        for _ in chunk.len()..3 {
            s.push('=');
        }
    }
    s
}

pub const INITIATOR: &str = "iqn.2005-03.org.open-iscsi:host1";
pub const TARGET: &str = "iqn.2024-01.org.example:disk1";

/// One configured target.
#[derive(Clone)]
pub struct TestTarget {
    pub name: String,
    pub settings: TargetSettings,
    pub enabled: bool,
    /// Initiators allowed; `None`: everyone.
    pub acl: Option<Vec<String>>,
    pub users: Vec<(String, Vec<u8>)>,
    pub outgoing: Option<(String, Vec<u8>)>,
    pub alias: Option<String>,
    pub addresses: Vec<String>,
}

impl TestTarget {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            settings: TargetSettings::default(),
            enabled: true,
            acl: None,
            users: Vec::new(),
            outgoing: None,
            alias: None,
            addresses: vec!["192.0.2.1:3260,1".into()],
        }
    }

    pub fn chap(mut self, user: &str, secret: &str) -> Self {
        self.users.push((user.into(), secret.as_bytes().to_vec()));
        self.settings.chap_required = true;
        self
    }

    pub fn mutual(mut self, user: &str, secret: &str) -> Self {
        self.outgoing = Some((user.into(), secret.as_bytes().to_vec()));
        self
    }
}

/// The registry the tests log in to.
#[derive(Clone)]
pub struct Targets {
    pub targets: Vec<TestTarget>,
    pub discovery: TargetLookup,
    pub discovery_users: Vec<(String, Vec<u8>)>,
    pub discovery_outgoing: Option<(String, Vec<u8>)>,
}

impl Targets {
    pub fn new(targets: Vec<TestTarget>) -> Self {
        Self {
            targets,
            discovery: TargetLookup::Found(TargetSettings::default()),
            discovery_users: Vec::new(),
            discovery_outgoing: None,
        }
    }

    pub fn one() -> Self {
        Self::new(vec![TestTarget::new(TARGET)])
    }

    fn find(&self, target: &[u8]) -> Option<&TestTarget> {
        self.targets.iter().find(|t| t.name.as_bytes() == target)
    }

    fn visible(t: &TestTarget, initiator: &[u8]) -> bool {
        t.acl
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
            Some(t) => TargetLookup::Found(t.settings),
        }
    }

    fn discovery(&self, _initiator: &[u8]) -> TargetLookup {
        self.discovery
    }

    fn chap_secret(&self, target: Option<&[u8]>, user: &[u8]) -> Option<&[u8]> {
        let users = match target {
            Some(t) => &self.find(t)?.users,
            None => &self.discovery_users,
        };
        users
            .iter()
            .find(|(u, _)| u.as_bytes() == user)
            .map(|(_, s)| s.as_slice())
    }

    fn chap_target_credentials(&self, target: Option<&[u8]>) -> Option<ChapCredentials<'_>> {
        let outgoing = match target {
            Some(t) => self.find(t)?.outgoing.as_ref(),
            None => self.discovery_outgoing.as_ref(),
        }?;
        Some(ChapCredentials {
            name: outgoing.0.as_bytes(),
            secret: &outgoing.1,
        })
    }

    fn target_alias(&self, target: &[u8]) -> Option<&[u8]> {
        self.find(target)?.alias.as_deref().map(str::as_bytes)
    }
}

impl TargetCatalog for Targets {
    fn send_targets(&self, initiator: &[u8], w: &mut SendTargetsWriter<'_, '_>) {
        for t in &self.targets {
            if t.enabled && Self::visible(t, initiator) {
                w.target(t.name.as_bytes());
                for a in &t.addresses {
                    w.address(a.as_bytes());
                }
            }
        }
    }
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

/// The entries of a response, as strings.
pub fn entries(data: &[u8]) -> Vec<(String, String)> {
    pairs(data)
        .map(|p| {
            let p = p.expect("well-formed response");
            (
                String::from_utf8_lossy(p.key).into_owned(),
                String::from_utf8_lossy(p.value).into_owned(),
            )
        })
        .collect()
}

/// The complete entries of a response piece (a piece may end mid-entry).
pub fn piece_entries(data: &[u8]) -> Vec<(String, String)> {
    pairs(data)
        .map_while(Result::ok)
        .map(|p| {
            (
                String::from_utf8_lossy(p.key).into_owned(),
                String::from_utf8_lossy(p.value).into_owned(),
            )
        })
        .collect()
}

/// The value of `key` in a response, if present exactly once.
pub fn value(resp: &[(String, String)], key: &str) -> Option<String> {
    let mut found = resp.iter().filter(|(k, _)| k == key);
    let v = found.next().map(|(_, v)| v.clone());
    assert!(found.next().is_none(), "{key} answered twice in {resp:?}");
    v
}

pub fn request(csg: u8, nsg: u8, transit: bool) -> LoginRequest {
    LoginRequest {
        immediate: true,
        transit,
        cont: false,
        csg,
        nsg,
        version_max: 0,
        version_min: 0,
        isid: [0x40, 0, 0x01, 0x37, 0, 0x01],
        tsih: 0,
        itt: 1,
        cid: 0,
        cmd_sn: 1,
        exp_stat_sn: 0,
    }
}

/// A login connection driven PDU by PDU.
pub struct Conn {
    pub login: Login<Vec<u8>>,
    pub targets: Targets,
    pub crypto: Crypto,
    pub out: Vec<u8>,
    in_pieces: bool,
}

/// One response: its header fields and its entries.
#[derive(Debug)]
pub struct Resp {
    pub step: LoginStep,
    pub data: Vec<u8>,
    pub keys: Vec<(String, String)>,
}

impl Resp {
    pub fn get(&self, key: &str) -> Option<String> {
        value(&self.keys, key)
    }

    pub fn assert_status(&self, status: Status) {
        assert_eq!(self.step.status, status, "response {:?}", self.step);
        if status != Status::SUCCESS {
            assert_eq!(self.step.outcome, Outcome::Failed);
            assert_eq!(self.step.data_len, 0);
        }
    }
}

impl Conn {
    pub fn new(targets: Targets) -> Self {
        Self {
            login: Login::new(vec![0; 128 * 1024], 1),
            targets,
            crypto: Crypto::new(),
            out: vec![0; 8192],
            in_pieces: false,
        }
    }

    pub fn send(&mut self, req: &LoginRequest, data: &[u8]) -> Resp {
        let step = self
            .login
            .step(req, data, &self.targets, &mut self.crypto, &mut self.out);
        let data = self.out[..step.data_len].to_vec();
        // Only a response sent whole must parse whole.
        let keys = if step.cont || self.in_pieces {
            piece_entries(&data)
        } else {
            entries(&data)
        };
        self.in_pieces = step.cont;
        Resp { step, data, keys }
    }

    pub fn send_keys(&mut self, req: &LoginRequest, keys: &[(&str, &str)]) -> Resp {
        self.send(req, &text(keys))
    }
}

/// The keys open-iscsi sends in its operational stage.
pub fn open_iscsi_operational() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxConnections", "1"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("ErrorRecoveryLevel", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
    ]
}

/// Leading keys of a normal session.
pub fn leading() -> Vec<(&'static str, &'static str)> {
    vec![
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("SessionType", "Normal"),
    ]
}
