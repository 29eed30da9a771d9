// SPDX-License-Identifier: GPL-2.0

//! CHAP for iSCSI login (RFC 1994, RFC 7143 12.1.3), the target's side.
//!
//! 1. The initiator offers algorithms (`CHAP_A=7,6,5`); the target picks
//!    the first of its own preference (SHA-256, SHA-1, MD5) that was offered
//!    and answers with `CHAP_A`, an identifier `CHAP_I` and a random
//!    challenge `CHAP_C` as long as the digest (at least 16 bytes).
//! 2. The initiator answers with its name `CHAP_N` and `CHAP_R` =
//!    H(I || secret || C); the target checks it against the secret its
//!    configuration holds for that name.
//! 3. For mutual CHAP the initiator also sends `CHAP_I` and `CHAP_C`; the
//!    target answers with its own name and H(I || its secret || C). A
//!    challenge equal to the target's own is refused (a reflection attack
//!    would let the initiator use the target as its oracle), and so is a
//!    target secret equal to the initiator's (RFC 7143 12.1.3 forbids using
//!    one secret in both directions).
//!
//! Algorithm numbers follow the IANA "PPP Authentication Algorithms"
//! registry: 5 MD5 (the one RFC 7143 names), 6 SHA-1 and 7 SHA-256 (later
//! assignments that current initiators offer).
//!
//! Secrets of any non-empty length are accepted here: RFC 7143 asks for at
//! least 96 bits, which is the configuration interface's business to warn
//! about, and refusing short secrets at login would only lock out existing
//! setups. An empty secret never authenticates.
//!
//! The digests and the random bytes come from [`ChapCrypto`], which the
//! caller implements (the kernel crypto API in the module, hash crates in
//! the host tests).

use crate::scst_iscsi::text::{decode_binary, list_items, parse_number};

/// The longest digest of the supported algorithms.
pub const MAX_DIGEST_LEN: usize = 32;

/// The longest challenge accepted from an initiator (mutual CHAP).
pub const MAX_CHALLENGE_LEN: usize = 1024;

/// A CHAP digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapAlgorithm {
    /// MD5, algorithm 5.
    Md5,
    /// SHA-1, algorithm 6.
    Sha1,
    /// SHA-256, algorithm 7.
    Sha256,
}

impl ChapAlgorithm {
    /// The target's preference, strongest first.
    pub const PREFERENCE: [Self; 3] = [Self::Sha256, Self::Sha1, Self::Md5];

    /// The algorithm with the IANA number `code`.
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            5 => Some(Self::Md5),
            6 => Some(Self::Sha1),
            7 => Some(Self::Sha256),
            _ => None,
        }
    }

    /// The IANA number.
    pub fn code(self) -> u8 {
        match self {
            Self::Md5 => 5,
            Self::Sha1 => 6,
            Self::Sha256 => 7,
        }
    }

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// The length of the challenges the target sends: the digest length.
    pub fn challenge_len(self) -> usize {
        self.digest_len()
    }
}

/// The digest could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoError;

/// The cryptography CHAP needs, implemented by the caller.
pub trait ChapCrypto {
    /// Writes the digest of the concatenation of `parts` with `alg` into
    /// `out`, which is exactly `alg.digest_len()` bytes long.
    fn digest(
        &mut self,
        alg: ChapAlgorithm,
        parts: &[&[u8]],
        out: &mut [u8],
    ) -> Result<(), CryptoError>;

    /// Fills `out` with unpredictable bytes.
    fn random(&mut self, out: &mut [u8]);
}

/// Why CHAP failed; every case ends the login with an authentication
/// failure (status 0x0201).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapError {
    /// `CHAP_A` offered no algorithm the target supports.
    NoAlgorithm,
    /// A CHAP key out of turn (e.g. `CHAP_R` before a challenge was sent).
    OutOfOrder,
    /// A CHAP value that does not parse.
    Malformed,
    /// `CHAP_N` names no user the target knows.
    UnknownUser,
    /// `CHAP_R` is not the expected digest.
    BadResponse,
    /// Mutual CHAP was asked for, but the target has no credentials.
    NoTargetCredentials,
    /// The initiator's challenge is the target's own.
    Reflected,
    /// The target's secret equals the initiator's.
    SameSecret,
    /// The caller's digest failed.
    Crypto,
}

impl From<CryptoError> for ChapError {
    fn from(_: CryptoError) -> Self {
        Self::Crypto
    }
}

/// The algorithm the target picks from a `CHAP_A` list.
pub fn choose_algorithm(chap_a: &[u8]) -> Option<ChapAlgorithm> {
    ChapAlgorithm::PREFERENCE.into_iter().find(|alg| {
        list_items(chap_a).any(|item| parse_number(item) == Some(u64::from(alg.code())))
    })
}

/// Computes the CHAP response H(`id` || `secret` || `challenge`) into `out`,
/// returning its length.
pub fn response(
    crypto: &mut dyn ChapCrypto,
    alg: ChapAlgorithm,
    id: u8,
    secret: &[u8],
    challenge: &[u8],
    out: &mut [u8; MAX_DIGEST_LEN],
) -> Result<usize, CryptoError> {
    let len = alg.digest_len();
    let out = out.get_mut(..len).ok_or(CryptoError)?;
    crypto.digest(alg, &[&[id], secret, challenge], out)?;
    Ok(len)
}

/// Compares in time independent of where the inputs differ, so that a
/// response cannot be guessed byte by byte from timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The challenge the target sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// The algorithm chosen (`CHAP_A`).
    pub alg: ChapAlgorithm,
    /// The identifier (`CHAP_I`).
    pub id: u8,
    /// The challenge bytes (`CHAP_C`).
    pub challenge: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for `CHAP_A`.
    Start,
    /// Challenge sent, waiting for `CHAP_N`/`CHAP_R`.
    Challenged,
    /// The initiator proved its identity.
    Verified,
    /// A step failed; nothing more is accepted.
    Failed,
}

/// The target's side of one CHAP exchange.
#[derive(Debug, Clone)]
pub struct ChapTarget {
    state: State,
    alg: ChapAlgorithm,
    id: u8,
    challenge: [u8; MAX_DIGEST_LEN],
}

impl Default for ChapTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl ChapTarget {
    /// An exchange waiting for `CHAP_A`.
    pub const fn new() -> Self {
        Self {
            state: State::Start,
            alg: ChapAlgorithm::Md5,
            id: 0,
            challenge: [0; MAX_DIGEST_LEN],
        }
    }

    /// The algorithm chosen, once a challenge was sent.
    pub fn algorithm(&self) -> Option<ChapAlgorithm> {
        (self.state != State::Start).then_some(self.alg)
    }

    /// Whether the initiator's response was verified.
    pub fn verified(&self) -> bool {
        self.state == State::Verified
    }

    fn own_challenge(&self) -> &[u8] {
        self.challenge
            .get(..self.alg.challenge_len())
            .unwrap_or(&[])
    }

    /// Answers `CHAP_A`: picks the algorithm and draws the identifier and
    /// the challenge.
    pub fn challenge(
        &mut self,
        chap_a: &[u8],
        crypto: &mut dyn ChapCrypto,
    ) -> Result<Challenge<'_>, ChapError> {
        if self.state != State::Start {
            self.state = State::Failed;
            return Err(ChapError::OutOfOrder);
        }
        let Some(alg) = choose_algorithm(chap_a) else {
            self.state = State::Failed;
            return Err(ChapError::NoAlgorithm);
        };
        let mut id = [0u8];
        crypto.random(&mut id);
        let [id] = id;
        self.alg = alg;
        self.id = id;
        let len = alg.challenge_len();
        if let Some(c) = self.challenge.get_mut(..len) {
            crypto.random(c);
        }
        self.state = State::Challenged;
        Ok(Challenge {
            alg,
            id,
            challenge: self.own_challenge(),
        })
    }

    /// Checks `CHAP_R` against `secret`, the secret of the user `CHAP_N`
    /// named (`None` when no such user is configured).
    pub fn verify(
        &mut self,
        chap_r: &[u8],
        secret: Option<&[u8]>,
        crypto: &mut dyn ChapCrypto,
    ) -> Result<(), ChapError> {
        let result = self.check(chap_r, secret, crypto);
        self.state = if result.is_ok() {
            State::Verified
        } else {
            State::Failed
        };
        result
    }

    fn check(
        &self,
        chap_r: &[u8],
        secret: Option<&[u8]>,
        crypto: &mut dyn ChapCrypto,
    ) -> Result<(), ChapError> {
        if self.state != State::Challenged {
            return Err(ChapError::OutOfOrder);
        }
        let mut got = [0u8; MAX_DIGEST_LEN];
        let got_len = decode_binary(chap_r, &mut got).ok_or(ChapError::Malformed)?;
        let secret = secret.filter(|s| !s.is_empty());
        // An unknown name costs a digest too, so timing does not tell
        // which names exist.
        let mut want = [0u8; MAX_DIGEST_LEN];
        let want_len = response(
            crypto,
            self.alg,
            self.id,
            secret.unwrap_or(b"-"),
            self.own_challenge(),
            &mut want,
        )?;
        if secret.is_none() {
            return Err(ChapError::UnknownUser);
        }
        let got = got.get(..got_len).unwrap_or(&[]);
        let want = want.get(..want_len).unwrap_or(&[]);
        if constant_time_eq(got, want) {
            Ok(())
        } else {
            Err(ChapError::BadResponse)
        }
    }

    /// Answers the initiator's challenge (mutual CHAP) after a verified
    /// response: `chap_i` and `chap_c` as received, `target_secret` the
    /// target's own secret, `initiator_secret` the one just verified.
    /// Writes the response into `out` and returns its length.
    pub fn answer(
        &mut self,
        chap_i: &[u8],
        chap_c: &[u8],
        target_secret: &[u8],
        initiator_secret: &[u8],
        crypto: &mut dyn ChapCrypto,
        out: &mut [u8; MAX_DIGEST_LEN],
    ) -> Result<usize, ChapError> {
        let result = self.mutual(chap_i, chap_c, target_secret, initiator_secret, crypto, out);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn mutual(
        &self,
        chap_i: &[u8],
        chap_c: &[u8],
        target_secret: &[u8],
        initiator_secret: &[u8],
        crypto: &mut dyn ChapCrypto,
        out: &mut [u8; MAX_DIGEST_LEN],
    ) -> Result<usize, ChapError> {
        if self.state != State::Verified {
            return Err(ChapError::OutOfOrder);
        }
        let id = parse_number(chap_i)
            .and_then(|n| u8::try_from(n).ok())
            .ok_or(ChapError::Malformed)?;
        let mut challenge = [0u8; MAX_CHALLENGE_LEN];
        let len = decode_binary(chap_c, &mut challenge).ok_or(ChapError::Malformed)?;
        let challenge = challenge.get(..len).unwrap_or(&[]);
        if challenge == self.own_challenge() {
            return Err(ChapError::Reflected);
        }
        if target_secret.is_empty() {
            return Err(ChapError::NoTargetCredentials);
        }
        if constant_time_eq(target_secret, initiator_secret) {
            return Err(ChapError::SameSecret);
        }
        Ok(response(
            crypto,
            self.alg,
            id,
            target_secret,
            challenge,
            out,
        )?)
    }
}
