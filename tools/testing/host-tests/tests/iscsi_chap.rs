// SPDX-License-Identifier: GPL-2.0

//! CHAP: algorithm choice, response computation and checking, mutual CHAP
//! and its refusals.

mod iscsi_support;

use iscsi_support::{digest, to_base64, to_hex, Crypto};
use scst_host_tests::scst_iscsi::chap::*;

#[test]
fn algorithms() {
    for (code, alg, len) in [
        (5, ChapAlgorithm::Md5, 16),
        (6, ChapAlgorithm::Sha1, 20),
        (7, ChapAlgorithm::Sha256, 32),
    ] {
        assert_eq!(ChapAlgorithm::from_code(code), Some(alg));
        assert_eq!(u64::from(alg.code()), code);
        assert_eq!(alg.digest_len(), len);
        assert!(alg.challenge_len() >= 16);
        assert!(alg.digest_len() <= MAX_DIGEST_LEN);
    }
    for code in [0, 4, 8, 128, u64::MAX] {
        assert_eq!(ChapAlgorithm::from_code(code), None);
    }
}

#[test]
fn target_prefers_the_strongest_offered() {
    let cases: &[(&[u8], Option<ChapAlgorithm>)] = &[
        (b"5", Some(ChapAlgorithm::Md5)),
        (b"7,6,5", Some(ChapAlgorithm::Sha256)),
        (b"5,6,7", Some(ChapAlgorithm::Sha256)),
        (b"5,6", Some(ChapAlgorithm::Sha1)),
        (b"0x05", Some(ChapAlgorithm::Md5)),
        (b"x,5", Some(ChapAlgorithm::Md5)),
        (b"4,8,128", None),
        (b"", None),
        (b"None", None),
    ];
    for (offer, want) in cases {
        assert_eq!(
            choose_algorithm(offer),
            *want,
            "{:?}",
            String::from_utf8_lossy(offer)
        );
    }
}

#[test]
fn response_is_the_digest_of_id_secret_challenge() {
    let mut crypto = Crypto::new();
    for alg in ChapAlgorithm::PREFERENCE {
        let mut out = [0u8; MAX_DIGEST_LEN];
        let n = response(&mut crypto, alg, 0x2a, b"secret", b"challenge", &mut out).unwrap();
        assert_eq!(n, alg.digest_len());
        let want = digest(alg, &[b"\x2asecret", b"challenge"]);
        assert_eq!(&out[..n], &want[..]);
    }
    // RFC 1321 anchors the MD5 implementation the tests use.
    assert_eq!(
        to_hex(&digest(ChapAlgorithm::Md5, &[b"abc"])),
        "0x900150983cd24fb0d6963f7d28e17f72"
    );
}

#[test]
fn constant_time_comparison() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}

/// Runs CHAP_A and returns (target, id, challenge).
fn challenged(offer: &[u8]) -> (ChapTarget, Crypto, ChapAlgorithm, u8, Vec<u8>) {
    let mut crypto = Crypto::new();
    let mut target = ChapTarget::new();
    assert_eq!(target.algorithm(), None);
    let c = target.challenge(offer, &mut crypto).unwrap();
    let (alg, id, challenge) = (c.alg, c.id, c.challenge.to_vec());
    assert_eq!(challenge.len(), alg.challenge_len());
    assert_eq!(target.algorithm(), Some(alg));
    (target, crypto, alg, id, challenge)
}

#[test]
fn one_way_chap() {
    for alg in ChapAlgorithm::PREFERENCE {
        let code = alg.code().to_string();
        let (mut target, mut crypto, got, id, c) = challenged(code.as_bytes());
        assert_eq!(got, alg);
        let r = to_hex(&digest(alg, &[&[id], b"s3cret-123456", &c]));
        assert!(!target.verified());
        target
            .verify(r.as_bytes(), Some(b"s3cret-123456"), &mut crypto)
            .unwrap();
        assert!(target.verified());
    }
}

#[test]
fn base64_response() {
    let (mut target, mut crypto, alg, id, c) = challenged(b"7");
    let r = to_base64(&digest(alg, &[&[id], b"s3cret-123456", &c]));
    target
        .verify(r.as_bytes(), Some(b"s3cret-123456"), &mut crypto)
        .unwrap();
}

#[test]
fn verification_failures() {
    let good = |alg: ChapAlgorithm, id: u8, c: &[u8]| to_hex(&digest(alg, &[&[id], b"right", c]));
    // Wrong secret, unknown user, empty secret, malformed, short.
    let (mut t, mut cr, alg, id, c) = challenged(b"5");
    assert_eq!(
        t.verify(good(alg, id, &c).as_bytes(), Some(b"wrong"), &mut cr),
        Err(ChapError::BadResponse)
    );
    // A failed exchange accepts nothing more.
    assert_eq!(
        t.verify(good(alg, id, &c).as_bytes(), Some(b"right"), &mut cr),
        Err(ChapError::OutOfOrder)
    );
    let (mut t, mut cr, alg, id, c) = challenged(b"5");
    assert_eq!(
        t.verify(good(alg, id, &c).as_bytes(), None, &mut cr),
        Err(ChapError::UnknownUser)
    );
    let (mut t, mut cr, alg, id, c) = challenged(b"5");
    assert_eq!(
        t.verify(good(alg, id, &c).as_bytes(), Some(b""), &mut cr),
        Err(ChapError::UnknownUser)
    );
    let (mut t, mut cr, _, _, _) = challenged(b"5");
    assert_eq!(
        t.verify(b"0xqq", Some(b"right"), &mut cr),
        Err(ChapError::Malformed)
    );
    let (mut t, mut cr, alg, id, c) = challenged(b"5");
    let mut short = good(alg, id, &c);
    short.truncate(10);
    assert_eq!(
        t.verify(short.as_bytes(), Some(b"right"), &mut cr),
        Err(ChapError::BadResponse)
    );
    // Too long for any digest.
    let (mut t, mut cr, _, _, _) = challenged(b"7");
    let long = to_hex(&[0u8; 33]);
    assert_eq!(
        t.verify(long.as_bytes(), Some(b"right"), &mut cr),
        Err(ChapError::Malformed)
    );
}

#[test]
fn out_of_order_steps() {
    let mut crypto = Crypto::new();
    let mut t = ChapTarget::new();
    assert_eq!(
        t.verify(b"0x00", Some(b"s"), &mut crypto),
        Err(ChapError::OutOfOrder)
    );
    let mut t = ChapTarget::new();
    assert_eq!(
        t.challenge(b"9", &mut crypto).unwrap_err(),
        ChapError::NoAlgorithm
    );
    let mut t = ChapTarget::default();
    t.challenge(b"5", &mut crypto).unwrap();
    assert_eq!(
        t.challenge(b"5", &mut crypto).unwrap_err(),
        ChapError::OutOfOrder
    );
    // Mutual before the initiator was verified.
    let (mut t, mut cr, _, _, _) = challenged(b"5");
    let mut out = [0u8; MAX_DIGEST_LEN];
    assert_eq!(
        t.answer(b"1", b"0x0102", b"target", b"init", &mut cr, &mut out),
        Err(ChapError::OutOfOrder)
    );
}

fn verified(alg_code: &[u8]) -> (ChapTarget, Crypto, ChapAlgorithm, Vec<u8>) {
    let (mut t, mut cr, alg, id, c) = challenged(alg_code);
    let r = to_hex(&digest(alg, &[&[id], b"initiator-secret", &c]));
    t.verify(r.as_bytes(), Some(b"initiator-secret"), &mut cr)
        .unwrap();
    (t, cr, alg, c)
}

#[test]
fn mutual_chap_answers_with_the_target_secret() {
    for code in [&b"5"[..], b"6", b"7"] {
        let (mut t, mut cr, alg, _) = verified(code);
        let challenge = [7u8; 24];
        let mut out = [0u8; MAX_DIGEST_LEN];
        let n = t
            .answer(
                b"200",
                to_hex(&challenge).as_bytes(),
                b"target-secret",
                b"initiator-secret",
                &mut cr,
                &mut out,
            )
            .unwrap();
        assert_eq!(
            &out[..n],
            &digest(alg, &[&[200], b"target-secret", &challenge])[..]
        );
    }
    // Base64 challenge, hex identifier.
    let (mut t, mut cr, alg, _) = verified(b"5");
    let mut out = [0u8; MAX_DIGEST_LEN];
    let n = t
        .answer(
            b"0x10",
            to_base64(&[1, 2, 3, 4]).as_bytes(),
            b"target-secret",
            b"initiator-secret",
            &mut cr,
            &mut out,
        )
        .unwrap();
    assert_eq!(
        &out[..n],
        &digest(alg, &[&[16], b"target-secret", &[1, 2, 3, 4]])[..]
    );
}

#[test]
fn mutual_chap_refusals() {
    let mut out = [0u8; MAX_DIGEST_LEN];
    let (mut t, mut cr, _, own) = verified(b"6");
    assert_eq!(
        t.answer(
            b"1",
            to_hex(&own).as_bytes(),
            b"ts",
            b"initiator-secret",
            &mut cr,
            &mut out
        ),
        Err(ChapError::Reflected)
    );
    let (mut t, mut cr, _, _) = verified(b"6");
    assert_eq!(
        t.answer(
            b"1",
            b"0x0102",
            b"initiator-secret",
            b"initiator-secret",
            &mut cr,
            &mut out
        ),
        Err(ChapError::SameSecret)
    );
    let (mut t, mut cr, _, _) = verified(b"6");
    assert_eq!(
        t.answer(b"1", b"0x0102", b"", b"initiator-secret", &mut cr, &mut out),
        Err(ChapError::NoTargetCredentials)
    );
    for (id, challenge) in [
        (&b"256"[..], &b"0x0102"[..]),
        (b"x", b"0x0102"),
        (b"", b"0x0102"),
        (b"1", b"0102"),
        (b"1", b"0x"),
    ] {
        let (mut t, mut cr, _, _) = verified(b"6");
        assert_eq!(
            t.answer(id, challenge, b"ts", b"initiator-secret", &mut cr, &mut out),
            Err(ChapError::Malformed)
        );
    }
    // Longest challenge accepted, one byte more refused.
    let (mut t, mut cr, _, _) = verified(b"5");
    let max = to_hex(&[3u8; MAX_CHALLENGE_LEN]);
    assert!(t
        .answer(
            b"1",
            max.as_bytes(),
            b"ts",
            b"initiator-secret",
            &mut cr,
            &mut out
        )
        .is_ok());
    let (mut t, mut cr, _, _) = verified(b"5");
    let over = to_hex(&[3u8; MAX_CHALLENGE_LEN + 1]);
    assert_eq!(
        t.answer(
            b"1",
            over.as_bytes(),
            b"ts",
            b"initiator-secret",
            &mut cr,
            &mut out
        ),
        Err(ChapError::Malformed)
    );
}

struct Broken;

impl ChapCrypto for Broken {
    fn digest(&mut self, _: ChapAlgorithm, _: &[&[u8]], _: &mut [u8]) -> Result<(), CryptoError> {
        Err(CryptoError)
    }

    fn random(&mut self, out: &mut [u8]) {
        out.fill(1);
    }
}

#[test]
fn crypto_failure_is_reported() {
    let mut t = ChapTarget::new();
    let c = t.challenge(b"5", &mut Broken).unwrap();
    assert_eq!((c.id, c.challenge), (1, &[1u8; 16][..]));
    assert_eq!(
        t.verify(&to_hex(&[0; 16]).into_bytes(), Some(b"s"), &mut Broken),
        Err(ChapError::Crypto)
    );
}
