// SPDX-License-Identifier: GPL-2.0

//! The login state machine: stages, statuses, every key's result rule, the
//! target's offers, multi-PDU text, CHAP, and text negotiation in the full
//! feature phase.

mod iscsi_support;

use iscsi_support::*;
use scst_host_tests::scst_iscsi::chap::ChapAlgorithm;
use scst_host_tests::scst_iscsi::login::*;
use scst_host_tests::scst_iscsi::pdu::{RejectReason, BHS_LEN};

const SEC: u8 = STAGE_SECURITY;
const OP: u8 = STAGE_OPERATIONAL;
const FFP: u8 = STAGE_FULL_FEATURE;

/// A login straight into the operational stage with `keys` after the
/// leading ones, T=1 to the full feature phase.
fn one_pdu(targets: Targets, keys: &[(&str, &str)]) -> (Conn, Resp) {
    let mut conn = Conn::new(targets);
    let mut all = leading();
    all.extend_from_slice(keys);
    let resp = conn.send_keys(&request(OP, FFP, true), &all);
    (conn, resp)
}

/// The answer to one operational key offered alone (normal session).
fn answer(targets: Targets, key: &str, value: &str) -> Option<String> {
    let (_, resp) = one_pdu(targets, &[(key, value)]);
    resp.assert_status(Status::SUCCESS);
    resp.get(key)
}

fn settings(f: impl FnOnce(&mut TargetSettings)) -> Targets {
    let mut t = TestTarget::new(TARGET);
    f(&mut t.settings);
    Targets::new(vec![t])
}

fn negotiated(conn: &Conn) -> Negotiated {
    *conn.login.negotiated().expect("login complete")
}

#[test]
fn normal_login_in_one_pdu() {
    let (conn, resp) = one_pdu(Targets::one(), &open_iscsi_operational());
    resp.assert_status(Status::SUCCESS);
    assert_eq!(resp.step.outcome, Outcome::FullFeature);
    assert!(resp.step.transit && !resp.step.cont);
    assert_eq!((resp.step.csg, resp.step.nsg), (OP, FFP));
    let expect = [
        ("TargetPortalGroupTag", "1"),
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxConnections", "1"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "65536"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("ErrorRecoveryLevel", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
    ];
    for (k, v) in expect {
        assert_eq!(resp.get(k).as_deref(), Some(v), "{k} in {:?}", resp.keys);
    }
    // Declarations are not answered.
    assert_eq!(resp.get("MaxRecvDataSegmentLength"), None);
    assert_eq!(resp.get("InitiatorName"), None);
    let n = negotiated(&conn);
    assert_eq!(n.session_type, SessionType::Normal);
    assert_eq!(n.initiator_name.as_bytes(), INITIATOR.as_bytes());
    assert_eq!(n.target_name.as_bytes(), TARGET.as_bytes());
    assert_eq!(n.isid, [0x40, 0, 0x01, 0x37, 0, 0x01]);
    assert_eq!((n.tsih, n.cid), (0, 0));
    assert!(!n.header_digest && !n.data_digest);
    assert_eq!(n.max_recv_data_segment_length, 8192);
    // The initiator's 262144 equals the target's default cap.
    assert_eq!(n.max_xmit_data_segment_length, 262_144);
    assert_eq!(
        (n.max_burst_length, n.first_burst_length),
        (262_144, 65_536)
    );
    assert!(n.initial_r2t && n.immediate_data);
    assert_eq!(n.max_outstanding_r2t, 1);
    assert_eq!((n.max_connections, n.error_recovery_level), (1, 0));
    assert!(n.data_pdu_in_order && n.data_sequence_in_order);
    assert_eq!((n.default_time2wait, n.default_time2retain), (2, 0));
    assert_eq!(conn.login.stage(), FFP);
}

#[test]
fn login_request_and_text_request_headers_decode() {
    let mut b = [0u8; BHS_LEN];
    b[0] = 0x43;
    b[1] = 0x80 | (1 << 2) | 3;
    b[2] = 0;
    b[3] = 0;
    b[8..14].copy_from_slice(&[0x40, 1, 2, 3, 4, 5]);
    b[14..16].copy_from_slice(&7u16.to_be_bytes());
    b[16..20].copy_from_slice(&0x1122_3344u32.to_be_bytes());
    b[20..22].copy_from_slice(&9u16.to_be_bytes());
    b[24..28].copy_from_slice(&5u32.to_be_bytes());
    b[28..32].copy_from_slice(&6u32.to_be_bytes());
    let r = LoginRequest::parse(&b);
    assert!(r.transit && !r.cont);
    assert_eq!((r.csg, r.nsg), (1, 3));
    assert_eq!(r.isid, [0x40, 1, 2, 3, 4, 5]);
    assert_eq!(
        (r.tsih, r.itt, r.cid, r.cmd_sn, r.exp_stat_sn),
        (7, 0x1122_3344, 9, 5, 6)
    );
    b[1] = 0x40;
    b[20..24].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
    let t = TextRequest::from_bhs(&b);
    assert!(!t.final_pdu && t.cont);
    assert_eq!((t.itt, t.ttt), (0x1122_3344, RESERVED_TAG));
}

#[test]
fn security_then_operational_in_several_pdus() {
    let mut conn = Conn::new(Targets::one());
    let mut keys = leading();
    keys.push(("AuthMethod", "None"));
    keys.push(("InitiatorAlias", "host1"));
    let r = conn.send_keys(&request(SEC, OP, true), &keys);
    r.assert_status(Status::SUCCESS);
    assert_eq!(r.get("AuthMethod").as_deref(), Some("None"));
    assert_eq!(r.get("TargetPortalGroupTag").as_deref(), Some("1"));
    assert!(r.step.transit);
    assert_eq!((r.step.csg, r.step.nsg), (SEC, OP));
    assert_eq!(r.step.outcome, Outcome::Continue);
    assert_eq!(conn.login.stage(), OP);

    // Operational keys over three PDUs; only the last asks to move on.
    let ops = open_iscsi_operational();
    let r = conn.send_keys(&request(OP, FFP, false), &ops[..5]);
    assert!(!r.step.transit);
    assert_eq!(r.keys.len(), 5);
    // TPGT is declared in the first response only.
    assert_eq!(r.get("TargetPortalGroupTag"), None);
    let r = conn.send_keys(&request(OP, FFP, false), &ops[5..10]);
    assert!(!r.step.transit && r.step.outcome == Outcome::Continue);
    let r = conn.send_keys(&request(OP, FFP, true), &ops[10..]);
    assert!(r.step.transit);
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    let n = negotiated(&conn);
    assert_eq!(n.default_time2retain, 0);
    assert!(n.initial_r2t);
}

#[test]
fn empty_requests_may_end_a_stage() {
    let mut conn = Conn::new(Targets::one());
    let r = conn.send_keys(&request(SEC, OP, false), &leading());
    assert!(!r.step.transit);
    assert_eq!(r.step.csg, SEC);
    // No AuthMethod at all: the default (None) serves this target.
    let r = conn.send(&request(SEC, OP, true), &[]);
    assert!(r.step.transit && r.step.nsg == OP);
    let r = conn.send(&request(OP, FFP, true), &[]);
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    assert_eq!(r.step.data_len, 0);
}

#[test]
fn security_stage_may_go_straight_to_full_feature() {
    let mut conn = Conn::new(Targets::one());
    let mut keys = leading();
    keys.push(("AuthMethod", "None"));
    let r = conn.send_keys(&request(SEC, FFP, true), &keys);
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    assert_eq!((r.step.csg, r.step.nsg), (SEC, FFP));
    assert_eq!(negotiated(&conn).max_burst_length, 262_144);
}

#[test]
fn target_with_offers_turns_a_jump_to_full_feature_into_operational() {
    let targets = settings(|s| s.max_recv_data_segment_length = 65_536);
    let mut conn = Conn::new(targets);
    let mut keys = leading();
    keys.push(("AuthMethod", "None"));
    let r = conn.send_keys(&request(SEC, FFP, true), &keys);
    assert!(r.step.transit);
    assert_eq!((r.step.csg, r.step.nsg), (SEC, OP));
    assert_eq!(r.step.outcome, Outcome::Continue);
    let r = conn.send(&request(OP, FFP, true), &[]);
    assert_eq!(r.get("MaxRecvDataSegmentLength").as_deref(), Some("65536"));
    // A declaration needs no answer: the stage ends at once.
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    assert_eq!(negotiated(&conn).max_recv_data_segment_length, 65_536);
}

#[test]
fn continued_request_text_is_gathered() {
    let mut conn = Conn::new(Targets::one());
    let mut keys = leading();
    keys.extend(open_iscsi_operational());
    let full = text(&keys);
    // Cut mid-key and mid-value.
    let (a, rest) = full.split_at(17);
    let (b, c) = rest.split_at(100);
    let mut req = request(OP, FFP, false);
    req.cont = true;
    for part in [a, b] {
        let r = conn.send(&req, part);
        r.assert_status(Status::SUCCESS);
        assert_eq!(r.step.data_len, 0);
        assert!(!r.step.transit && !r.step.cont);
        assert_eq!((r.step.csg, r.step.outcome), (OP, Outcome::Continue));
    }
    let r = conn.send(&request(OP, FFP, true), c);
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    assert_eq!(r.get("MaxBurstLength").as_deref(), Some("262144"));
    assert_eq!(r.get("TargetPortalGroupTag").as_deref(), Some("1"));
}

#[test]
fn long_response_is_sent_in_pieces() {
    let mut conn = Conn::new(Targets::one());
    let mut data = text(&leading());
    // 1000 unknown keys: ~ 25 KiB of NotUnderstood answers.
    for i in 0..1000 {
        data.extend_from_slice(format!("X-vendor.key{i:04}=v\0").as_bytes());
    }
    let mut r = conn.send(&request(OP, FFP, true), &data);
    let mut got = r.data.clone();
    let mut pieces = 1;
    while r.step.cont {
        assert!(!r.step.transit, "T with C");
        assert_eq!(r.step.data_len, 8192);
        assert_eq!(r.step.outcome, Outcome::Continue);
        r = conn.send(&request(OP, FFP, true), &[]);
        got.extend_from_slice(&r.data);
        pieces += 1;
    }
    assert_eq!(pieces, 4);
    assert!(r.step.transit);
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    let all = entries(&got);
    assert_eq!(all.len(), 1001);
    assert_eq!(all[0], ("TargetPortalGroupTag".into(), "1".into()));
    assert!(all[1..].iter().all(|(_, v)| v == "NotUnderstood"));
    assert_eq!(all[1000].0, "X-vendor.key0999");
}

#[test]
fn piece_requests_must_be_empty() {
    let mut conn = Conn::new(Targets::one());
    let mut data = text(&leading());
    for i in 0..1000 {
        data.extend_from_slice(format!("X-k{i}=v\0").as_bytes());
    }
    let r = conn.send(&request(OP, FFP, false), &data);
    assert!(r.step.cont);
    conn.send_keys(&request(OP, FFP, false), &[("MaxBurstLength", "512")])
        .assert_status(Status::INITIATOR_ERROR);
}

#[test]
fn last_piece_without_t_does_not_transit() {
    let mut conn = Conn::new(Targets::one());
    let mut data = text(&leading());
    for i in 0..1000 {
        data.extend_from_slice(format!("X-k{i}=v\0").as_bytes());
    }
    let mut r = conn.send(&request(OP, FFP, true), &data);
    while r.step.cont {
        r = conn.send(&request(OP, FFP, false), &[]);
    }
    assert!(!r.step.transit);
    let r = conn.send(&request(OP, FFP, true), &[]);
    assert_eq!(r.step.outcome, Outcome::FullFeature);
}

#[test]
fn oversized_text_fails_cleanly() {
    // 100 KiB of keys in one PDU, then the same accumulated with C=1.
    let mut data = text(&leading());
    let mut i = 0;
    while data.len() < 100 * 1024 {
        data.extend_from_slice(format!("X-filler{i}=0123456789abcdef\0").as_bytes());
        i += 1;
    }
    let mut conn = Conn::new(Targets::one());
    conn.send(&request(OP, FFP, true), &data)
        .assert_status(Status::INITIATOR_ERROR);

    let mut conn = Conn::new(Targets::one());
    let mut req = request(OP, FFP, false);
    req.cont = true;
    let mut failed = None;
    for chunk in data.chunks(8192) {
        let r = conn.send(&req, chunk);
        if r.step.outcome == Outcome::Failed {
            failed = Some(r.step.status);
            break;
        }
    }
    assert_eq!(failed, Some(Status::INITIATOR_ERROR));
}

#[test]
fn response_larger_than_storage_is_out_of_resources() {
    // Small storage: 2 x 4 KiB. Short unknown keys earn long answers.
    let targets = Targets::one();
    let mut login = Login::new(vec![0u8; 8192], 1);
    let mut data = text(&leading());
    for i in 0..600 {
        data.extend_from_slice(format!("X{i}=\0").as_bytes());
    }
    assert!(data.len() < 4096);
    let mut out = [0u8; 8192];
    let step = login.step(
        &request(OP, FFP, true),
        &data,
        &targets,
        &mut Crypto::new(),
        &mut out,
    );
    assert_eq!(step.status, Status::OUT_OF_RESOURCES);
}

#[test]
fn first_request_statuses() {
    let cases: Vec<(Vec<(&str, &str)>, Status)> = vec![
        (vec![("TargetName", TARGET)], Status::MISSING_PARAMETER),
        (
            vec![("InitiatorName", ""), ("TargetName", TARGET)],
            Status::MISSING_PARAMETER,
        ),
        (
            vec![("InitiatorName", INITIATOR)],
            Status::MISSING_PARAMETER,
        ),
        (
            vec![
                ("InitiatorName", INITIATOR),
                ("TargetName", "iqn.2024-01.org.example:nope"),
            ],
            Status::NOT_FOUND,
        ),
        (
            vec![
                ("InitiatorName", INITIATOR),
                ("TargetName", TARGET),
                ("SessionType", "Bogus"),
            ],
            Status::INITIATOR_ERROR,
        ),
    ];
    for (keys, status) in cases {
        let mut conn = Conn::new(Targets::one());
        conn.send_keys(&request(SEC, OP, false), &keys)
            .assert_status(status);
    }
}

#[test]
fn disabled_and_forbidden_targets() {
    let mut t = TestTarget::new(TARGET);
    t.enabled = false;
    let mut conn = Conn::new(Targets::new(vec![t]));
    conn.send_keys(&request(SEC, OP, false), &leading())
        .assert_status(Status::SERVICE_UNAVAILABLE);
    assert_eq!(
        Status::SERVICE_UNAVAILABLE,
        Status {
            class: 3,
            detail: 1
        }
    );

    let mut t = TestTarget::new(TARGET);
    t.acl = Some(vec!["iqn.2005-03.org.open-iscsi:other".into()]);
    let mut conn = Conn::new(Targets::new(vec![t.clone()]));
    conn.send_keys(&request(SEC, OP, false), &leading())
        .assert_status(Status::AUTHORIZATION_FAILURE);
    assert_eq!(
        Status::AUTHORIZATION_FAILURE,
        Status {
            class: 2,
            detail: 2
        }
    );

    t.acl = Some(vec![INITIATOR.into()]);
    let (_, r) = one_pdu(Targets::new(vec![t]), &[]);
    assert_eq!(r.step.outcome, Outcome::FullFeature);

    let mut targets = Targets::one();
    targets.discovery = TargetLookup::Disabled;
    let mut conn = Conn::new(targets);
    conn.send_keys(
        &request(SEC, OP, false),
        &[("InitiatorName", INITIATOR), ("SessionType", "Discovery")],
    )
    .assert_status(Status::SERVICE_UNAVAILABLE);
}

#[test]
fn version_and_header_errors() {
    let mut req = request(SEC, OP, true);
    req.version_min = 1;
    req.version_max = 2;
    let mut conn = Conn::new(Targets::one());
    conn.send_keys(&req, &leading())
        .assert_status(Status::UNSUPPORTED_VERSION);
    assert_eq!(
        Status::UNSUPPORTED_VERSION,
        Status {
            class: 2,
            detail: 5
        }
    );

    // version_max above ours is fine.
    let mut req = request(OP, FFP, true);
    req.version_max = 5;
    let mut conn = Conn::new(Targets::one());
    assert_eq!(
        conn.send_keys(&req, &leading()).step.outcome,
        Outcome::FullFeature
    );

    let bad: Vec<LoginRequest> = vec![
        LoginRequest {
            cont: true,
            ..request(SEC, OP, true)
        },
        request(2, 3, true),
        request(3, 3, false),
        request(SEC, 2, true),
        request(SEC, SEC, true),
        request(OP, OP, true),
        request(OP, SEC, true),
    ];
    for req in bad {
        let mut conn = Conn::new(Targets::one());
        let r = conn.send_keys(&req, &leading());
        r.assert_status(Status::INITIATOR_ERROR);
        assert!(!r.step.transit);
    }
}

#[test]
fn later_requests_must_match_the_first() {
    let start = |conn: &mut Conn| {
        let r = conn.send_keys(&request(SEC, OP, false), &leading());
        r.assert_status(Status::SUCCESS);
    };
    let mut conn = Conn::new(Targets::one());
    start(&mut conn);
    // CSG must stay 0 until the target moved on.
    conn.send(&request(OP, FFP, true), &[])
        .assert_status(Status::INITIATOR_ERROR);

    let mut conn = Conn::new(Targets::one());
    start(&mut conn);
    let mut req = request(SEC, OP, true);
    req.isid[5] = 9;
    conn.send(&req, &[]).assert_status(Status::INITIATOR_ERROR);

    let mut conn = Conn::new(Targets::one());
    start(&mut conn);
    let mut req = request(SEC, OP, true);
    req.tsih = 3;
    conn.send(&req, &[]).assert_status(Status::INITIATOR_ERROR);

    let mut conn = Conn::new(Targets::one());
    start(&mut conn);
    let mut req = request(SEC, OP, true);
    req.cid = 2;
    conn.send(&req, &[]).assert_status(Status::INITIATOR_ERROR);
}

#[test]
fn malformed_text_fails_the_login() {
    let long_key = format!("{}=1\0", "K".repeat(64));
    let ok_key = format!("{}=1\0", "K".repeat(63));
    let cases: Vec<Vec<u8>> = vec![
        b"NoEquals\0".to_vec(),
        b"=value\0".to_vec(),
        long_key.into_bytes(),
        b"Bad Key=1\0".to_vec(),
        b"Key\xff=1\0".to_vec(),
        b"MaxBurstLength=512".to_vec(),
    ];
    for bad in cases {
        let mut data = text(&leading());
        data.extend_from_slice(&bad);
        let mut conn = Conn::new(Targets::one());
        conn.send(&request(OP, FFP, true), &data)
            .assert_status(Status::INITIATOR_ERROR);
    }
    // A 63-byte key is fine (and unknown).
    let mut data = text(&leading());
    data.extend_from_slice(ok_key.as_bytes());
    let mut conn = Conn::new(Targets::one());
    let r = conn.send(&request(OP, FFP, true), &data);
    assert_eq!(r.get(&"K".repeat(63)).as_deref(), Some("NotUnderstood"));
}

#[test]
fn non_utf8_values_are_only_bytes() {
    let mut data = text(&leading());
    data.extend_from_slice(b"X-bin=\xff\xfe\x80\0InitiatorAlias=\xc3\x28\0");
    let mut conn = Conn::new(Targets::one());
    let r = conn.send(&request(OP, FFP, true), &data);
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    assert_eq!(r.get("X-bin").as_deref(), Some("NotUnderstood"));
}

#[test]
fn duplicates_and_renegotiation_fail() {
    let (_, r) = one_pdu(
        Targets::one(),
        &[("MaxBurstLength", "512"), ("MaxBurstLength", "1024")],
    );
    r.assert_status(Status::INITIATOR_ERROR);

    let mut conn = Conn::new(Targets::one());
    let mut keys = leading();
    keys.push(("MaxBurstLength", "512"));
    conn.send_keys(&request(OP, FFP, false), &keys)
        .assert_status(Status::SUCCESS);
    conn.send_keys(&request(OP, FFP, true), &[("MaxBurstLength", "512")])
        .assert_status(Status::INITIATOR_ERROR);

    // Repeated unknown keys are answered each time.
    let (_, r) = one_pdu(Targets::one(), &[("X-a", "1"), ("X-a", "2")]);
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    assert_eq!(r.keys.iter().filter(|(k, _)| k == "X-a").count(), 2);
}

#[test]
fn keys_out_of_place_fail() {
    // Operational keys in the security stage.
    let mut conn = Conn::new(Targets::one());
    let mut keys = leading();
    keys.push(("MaxBurstLength", "512"));
    conn.send_keys(&request(SEC, OP, true), &keys)
        .assert_status(Status::INITIATOR_ERROR);

    // Security keys in the operational stage.
    let (_, r) = one_pdu(Targets::one(), &[("AuthMethod", "None")]);
    r.assert_status(Status::INITIATOR_ERROR);
    let (_, r) = one_pdu(Targets::one(), &[("CHAP_A", "5")]);
    r.assert_status(Status::INITIATOR_ERROR);

    // Keys only targets send, and SendTargets.
    for key in [
        ("TargetAlias", "x"),
        ("TargetAddress", "10.0.0.1:3260,1"),
        ("TargetPortalGroupTag", "1"),
        ("SendTargets", "All"),
    ] {
        let (_, r) = one_pdu(Targets::one(), &[key]);
        r.assert_status(Status::INITIATOR_ERROR);
    }

    // Leading keys after the first request: SessionType is new there,
    // the names are sent a second time.
    for key in [
        ("SessionType", "Normal"),
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
    ] {
        let mut conn = Conn::new(Targets::one());
        conn.send_keys(
            &request(SEC, OP, false),
            &[("InitiatorName", INITIATOR), ("TargetName", TARGET)],
        )
        .assert_status(Status::SUCCESS);
        conn.send_keys(&request(SEC, OP, false), &[key])
            .assert_status(Status::INITIATOR_ERROR);
    }

    // InitiatorAlias is welcome in any login request.
    let mut conn = Conn::new(Targets::one());
    conn.send_keys(&request(SEC, OP, false), &leading())
        .assert_status(Status::SUCCESS);
    let r = conn.send_keys(&request(SEC, OP, true), &[("InitiatorAlias", "h")]);
    assert!(r.step.transit && r.keys.is_empty());
}

#[test]
fn calls_after_the_end_fail() {
    let (mut conn, r) = one_pdu(Targets::one(), &[]);
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    conn.send(&request(OP, FFP, true), &[])
        .assert_status(Status::INITIATOR_ERROR);

    let mut conn = Conn::new(Targets::one());
    conn.send_keys(&request(SEC, OP, false), &[("TargetName", TARGET)])
        .assert_status(Status::MISSING_PARAMETER);
    conn.send_keys(&request(SEC, OP, false), &leading())
        .assert_status(Status::INITIATOR_ERROR);
}

#[test]
fn digests() {
    use DigestPolicy::*;
    let cases = [
        (Off, "CRC32C,None", Some("None")),
        (Off, "CRC32C", Some("Reject")),
        (Allowed, "CRC32C,None", Some("CRC32C")),
        (Allowed, "None,CRC32C", Some("None")),
        (Allowed, "Foo,CRC32C", Some("CRC32C")),
        (Allowed, "Foo", Some("Reject")),
        (Allowed, "", Some("Reject")),
        (Required, "None,CRC32C", Some("CRC32C")),
        (Required, "CRC32C", Some("CRC32C")),
    ];
    for (policy, offer, want) in cases {
        for key in ["HeaderDigest", "DataDigest"] {
            let targets = settings(|s| {
                s.header_digest = policy;
                s.data_digest = policy;
            });
            let (conn, r) = one_pdu(targets, &[("HeaderDigest", offer), ("DataDigest", offer)]);
            assert_eq!(r.get(key).as_deref(), want, "{policy:?} {offer}");
            let n = negotiated(&conn);
            assert_eq!(n.header_digest, want == Some("CRC32C"));
            assert_eq!(n.data_digest, want == Some("CRC32C"));
        }
    }
    // Required, and the initiator offers None only: no way forward.
    let targets = settings(|s| s.header_digest = Required);
    let (_, r) = one_pdu(targets, &[("HeaderDigest", "None")]);
    r.assert_status(Status::INITIATOR_ERROR);
}

#[test]
fn numeric_keys_follow_their_result_functions() {
    let t = Targets::one;
    let cases: &[(&str, &str, &str)] = &[
        // MaxConnections: minimum with the target's 1.
        ("MaxConnections", "4", "1"),
        ("MaxConnections", "1", "1"),
        ("MaxConnections", "0", "Reject"),
        ("MaxConnections", "65536", "Reject"),
        // MaxBurstLength: minimum, 512..=16777215.
        ("MaxBurstLength", "511", "Reject"),
        ("MaxBurstLength", "512", "512"),
        ("MaxBurstLength", "16777215", "262144"),
        ("MaxBurstLength", "16777216", "Reject"),
        ("MaxBurstLength", "0x10000", "65536"),
        ("MaxBurstLength", "0X10000", "65536"),
        ("MaxBurstLength", "0bAAEAAA==", "65536"),
        ("MaxBurstLength", "65536x", "Reject"),
        ("MaxBurstLength", "-1", "Reject"),
        ("MaxBurstLength", "", "Reject"),
        ("MaxBurstLength", "99999999999999999999999", "Reject"),
        // FirstBurstLength: minimum.
        ("FirstBurstLength", "511", "Reject"),
        ("FirstBurstLength", "4096", "4096"),
        ("FirstBurstLength", "262144", "65536"),
        // DefaultTime2Wait: maximum with 2, 0..=3600.
        ("DefaultTime2Wait", "0", "2"),
        ("DefaultTime2Wait", "10", "10"),
        ("DefaultTime2Wait", "3600", "3600"),
        ("DefaultTime2Wait", "3601", "Reject"),
        // DefaultTime2Retain: minimum with 20.
        ("DefaultTime2Retain", "0", "0"),
        ("DefaultTime2Retain", "60", "20"),
        ("DefaultTime2Retain", "3601", "Reject"),
        // MaxOutstandingR2T: minimum with the target's 1, 1..=65535.
        ("MaxOutstandingR2T", "0", "Reject"),
        ("MaxOutstandingR2T", "65535", "1"),
        ("MaxOutstandingR2T", "65536", "Reject"),
        // ErrorRecoveryLevel: minimum with the target's 0.
        ("ErrorRecoveryLevel", "2", "0"),
        ("ErrorRecoveryLevel", "3", "Reject"),
        // iSCSIProtocolLevel: minimum with 1, 0..=31.
        ("iSCSIProtocolLevel", "2", "1"),
        ("iSCSIProtocolLevel", "0", "0"),
        ("iSCSIProtocolLevel", "31", "1"),
        ("iSCSIProtocolLevel", "32", "Reject"),
    ];
    for (key, offer, want) in cases {
        assert_eq!(
            answer(t(), key, offer).as_deref(),
            Some(*want),
            "{key}={offer}"
        );
    }
    // Values past 255 bytes are rejected even when numeric.
    let long = format!("{}512", "0".repeat(300));
    assert_eq!(
        answer(t(), "MaxBurstLength", &long).as_deref(),
        Some("Reject")
    );
}

#[test]
fn numeric_results_reach_negotiated() {
    let targets = settings(|s| {
        s.max_burst_length = 1 << 20;
        s.first_burst_length = 1 << 19;
        s.max_outstanding_r2t = 8;
        s.max_xmit_data_segment_length = 65_536;
    });
    let (conn, r) = one_pdu(
        targets,
        &[
            ("MaxBurstLength", "524288"),
            ("FirstBurstLength", "16777215"),
            ("MaxOutstandingR2T", "4"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("DefaultTime2Wait", "7"),
            ("DefaultTime2Retain", "5"),
            ("iSCSIProtocolLevel", "1"),
        ],
    );
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    assert_eq!(r.get("MaxBurstLength").as_deref(), Some("524288"));
    assert_eq!(r.get("FirstBurstLength").as_deref(), Some("524288"));
    let n = negotiated(&conn);
    assert_eq!(n.max_burst_length, 524_288);
    // The result of FirstBurstLength never exceeds MaxBurstLength.
    assert_eq!(n.first_burst_length, 524_288);
    assert_eq!(n.max_outstanding_r2t, 4);
    // Capped by the target's MaxXmitDataSegmentLength.
    assert_eq!(n.max_xmit_data_segment_length, 65_536);
    assert_eq!((n.default_time2wait, n.default_time2retain), (7, 5));
    assert_eq!(n.iscsi_protocol_level, 1);
}

#[test]
fn first_burst_is_clamped_to_max_burst() {
    let (conn, _) = one_pdu(
        Targets::one(),
        &[("MaxBurstLength", "16384"), ("FirstBurstLength", "65536")],
    );
    let n = negotiated(&conn);
    assert_eq!((n.max_burst_length, n.first_burst_length), (16_384, 16_384));
}

#[test]
fn max_recv_data_segment_length_is_declared() {
    for (offer, xmit, answered) in [
        ("512", 512, None),
        ("8192", 8192, None),
        ("16777215", 262_144, None),
        ("511", 8192, Some("Reject")),
        ("16777216", 8192, Some("Reject")),
        ("lots", 8192, Some("Reject")),
    ] {
        let (conn, r) = one_pdu(Targets::one(), &[("MaxRecvDataSegmentLength", offer)]);
        assert_eq!(
            r.get("MaxRecvDataSegmentLength").as_deref(),
            answered,
            "{offer}"
        );
        assert_eq!(
            negotiated(&conn).max_xmit_data_segment_length,
            xmit,
            "{offer}"
        );
    }
}

#[test]
fn rejected_max_recv_data_segment_length_is_never_answered_twice() {
    // The target declares its own value; rejecting the initiator's in the
    // same response would carry the key twice, so the declaration waits
    // one response and the stage does not end before it.
    let targets = settings(|s| s.max_recv_data_segment_length = 65_536);
    let (mut conn, r) = one_pdu(targets, &[("MaxRecvDataSegmentLength", "lots")]);
    r.assert_status(Status::SUCCESS);
    assert_eq!(r.get("MaxRecvDataSegmentLength").as_deref(), Some("Reject"));
    let times = r
        .keys
        .iter()
        .filter(|(k, _)| k == "MaxRecvDataSegmentLength")
        .count();
    assert_eq!(times, 1, "{:?}", r.keys);
    assert_eq!(r.step.outcome, Outcome::Continue);
    assert!(!r.step.transit);
    let r = conn.send(&request(OP, FFP, true), &[]);
    assert_eq!(r.get("MaxRecvDataSegmentLength").as_deref(), Some("65536"));
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    let n = negotiated(&conn);
    assert_eq!(n.max_recv_data_segment_length, 65_536);
    assert_eq!(n.max_xmit_data_segment_length, 8192);
}

#[test]
fn boolean_keys_follow_or_and_and() {
    for (target, offer, want) in [
        (true, "No", "Yes"),
        (true, "Yes", "Yes"),
        (false, "No", "No"),
        (false, "Yes", "Yes"),
        (false, "no", "Reject"),
    ] {
        let targets = settings(|s| s.initial_r2t = target);
        assert_eq!(answer(targets, "InitialR2T", offer).as_deref(), Some(want));
    }
    for (target, offer, want) in [
        (true, "Yes", "Yes"),
        (true, "No", "No"),
        (false, "Yes", "No"),
        (false, "No", "No"),
        (true, "Maybe", "Reject"),
    ] {
        let targets = settings(|s| s.immediate_data = target);
        assert_eq!(
            answer(targets, "ImmediateData", offer).as_deref(),
            Some(want)
        );
    }
    for key in ["DataPDUInOrder", "DataSequenceInOrder"] {
        assert_eq!(answer(Targets::one(), key, "No").as_deref(), Some("Yes"));
        assert_eq!(answer(Targets::one(), key, "Yes").as_deref(), Some("Yes"));
        assert_eq!(answer(Targets::one(), key, "").as_deref(), Some("Reject"));
    }
    let targets = settings(|s| s.initial_r2t = false);
    let (conn, _) = one_pdu(targets, &[("InitialR2T", "No"), ("ImmediateData", "No")]);
    let n = negotiated(&conn);
    assert!(!n.initial_r2t && !n.immediate_data);
}

#[test]
fn markers_task_reporting_and_unknown_keys() {
    let t = Targets::one;
    assert_eq!(answer(t(), "OFMarker", "Yes").as_deref(), Some("No"));
    assert_eq!(answer(t(), "IFMarker", "No").as_deref(), Some("No"));
    assert_eq!(answer(t(), "IFMarker", "Sure").as_deref(), Some("Reject"));
    assert_eq!(answer(t(), "OFMarkInt", "2048").as_deref(), Some("Reject"));
    assert_eq!(
        answer(t(), "IFMarkInt", "1~65535").as_deref(),
        Some("Reject")
    );
    assert_eq!(
        answer(t(), "TaskReporting", "FastAbort,RFC3720").as_deref(),
        Some("RFC3720")
    );
    assert_eq!(
        answer(t(), "TaskReporting", "ResponseFence").as_deref(),
        Some("Reject")
    );
    for key in [
        "X-com.example.Foo",
        "X#NodeArchitecture",
        "FutureKey",
        "maxburstlength",
    ] {
        assert_eq!(
            answer(t(), key, "1").as_deref(),
            Some("NotUnderstood"),
            "{key}"
        );
    }
}

#[test]
fn discovery_session() {
    let mut conn = Conn::new(Targets::one());
    let r = conn.send_keys(
        &request(OP, FFP, true),
        &[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Discovery"),
            // Accepted and ignored in discovery.
            ("TargetName", "iqn.2024-01.org.example:nope"),
            ("HeaderDigest", "CRC32C,None"),
            ("MaxRecvDataSegmentLength", "32768"),
            ("MaxConnections", "1"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("MaxOutstandingR2T", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("TaskReporting", "RFC3720"),
            ("DefaultTime2Wait", "2"),
            ("ErrorRecoveryLevel", "0"),
        ],
    );
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    for key in [
        "MaxConnections",
        "InitialR2T",
        "ImmediateData",
        "MaxBurstLength",
        "FirstBurstLength",
        "MaxOutstandingR2T",
        "DataPDUInOrder",
        "DataSequenceInOrder",
        "TaskReporting",
    ] {
        assert_eq!(r.get(key).as_deref(), Some("Irrelevant"), "{key}");
    }
    assert_eq!(r.get("HeaderDigest").as_deref(), Some("None"));
    assert_eq!(r.get("DefaultTime2Wait").as_deref(), Some("2"));
    assert_eq!(r.get("ErrorRecoveryLevel").as_deref(), Some("0"));
    // No portal group tag in discovery.
    assert_eq!(r.get("TargetPortalGroupTag"), None);
    let n = negotiated(&conn);
    assert_eq!(n.session_type, SessionType::Discovery);
    assert!(n.target_name.is_empty());
    assert_eq!(n.max_xmit_data_segment_length, 32_768);
}

#[test]
fn target_offers_and_initiator_answers() {
    let targets = settings(|s| {
        s.max_recv_data_segment_length = 65_536;
        s.header_digest = DigestPolicy::Required;
        s.initial_r2t = false;
        s.immediate_data = false;
        s.max_burst_length = 1 << 20;
        s.first_burst_length = 1 << 18;
        s.max_outstanding_r2t = 4;
    });
    let mut conn = Conn::new(targets);
    let mut keys = leading();
    keys.push(("DataDigest", "None"));
    let r = conn.send_keys(&request(OP, FFP, true), &keys);
    r.assert_status(Status::SUCCESS);
    // Offers pending: no transit yet.
    assert!(!r.step.transit);
    assert_eq!(r.step.outcome, Outcome::Continue);
    let want = [
        ("MaxRecvDataSegmentLength", "65536"),
        ("HeaderDigest", "CRC32C"),
        ("InitialR2T", "No"),
        ("ImmediateData", "No"),
        ("MaxBurstLength", "1048576"),
        ("FirstBurstLength", "262144"),
        ("MaxOutstandingR2T", "4"),
        ("DataDigest", "None"),
    ];
    for (k, v) in want {
        assert_eq!(r.get(k).as_deref(), Some(v), "{k}");
    }
    // Answer a part: still pending.
    let r = conn.send_keys(
        &request(OP, FFP, true),
        &[("HeaderDigest", "CRC32C"), ("InitialR2T", "No")],
    );
    assert!(r.keys.is_empty());
    assert!(!r.step.transit);
    let r = conn.send_keys(
        &request(OP, FFP, true),
        &[
            ("ImmediateData", "No"),
            ("MaxBurstLength", "524288"),
            ("FirstBurstLength", "Reject"),
            ("MaxOutstandingR2T", "2"),
        ],
    );
    assert!(r.keys.is_empty());
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    let n = negotiated(&conn);
    assert!(n.header_digest && !n.data_digest);
    assert!(!n.initial_r2t && !n.immediate_data);
    assert_eq!(n.max_burst_length, 524_288);
    // Rejected: the default 65536 stays (below the offered 262144).
    assert_eq!(n.first_burst_length, 65_536);
    assert_eq!(n.max_outstanding_r2t, 2);
    assert_eq!(n.max_recv_data_segment_length, 65_536);
}

#[test]
fn answers_breaking_the_result_function_fail() {
    let base = || {
        settings(|s| {
            s.max_burst_length = 65_536;
            s.immediate_data = false;
            s.header_digest = DigestPolicy::Required;
        })
    };
    let bad: &[(&str, &str)] = &[
        ("MaxBurstLength", "131072"),
        ("MaxBurstLength", "100"),
        // The default 262144 is more than the target can take.
        ("MaxBurstLength", "Reject"),
        ("ImmediateData", "Yes"),
        ("ImmediateData", "NotUnderstood"),
        ("HeaderDigest", "None"),
        ("HeaderDigest", "Reject"),
    ];
    for answer in bad {
        let mut conn = Conn::new(base());
        let r = conn.send_keys(&request(OP, FFP, true), &leading());
        assert!(!r.step.transit);
        conn.send_keys(&request(OP, FFP, true), &[*answer])
            .assert_status(Status::INITIATOR_ERROR);
    }
    // A target wanting more than the default accepts a refusal.
    let targets = settings(|s| s.max_outstanding_r2t = 16);
    let mut conn = Conn::new(targets);
    conn.send_keys(&request(OP, FFP, true), &leading());
    let r = conn.send_keys(
        &request(OP, FFP, true),
        &[("MaxOutstandingR2T", "NotUnderstood")],
    );
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    assert_eq!(negotiated(&conn).max_outstanding_r2t, 1);
}

#[test]
fn keys_the_initiator_brought_up_are_not_offered() {
    let targets = settings(|s| {
        s.max_burst_length = 1 << 20;
        s.initial_r2t = false;
    });
    let (conn, r) = one_pdu(
        targets,
        &[("MaxBurstLength", "2097152"), ("InitialR2T", "No")],
    );
    assert_eq!(r.get("MaxBurstLength").as_deref(), Some("1048576"));
    assert_eq!(r.get("InitialR2T").as_deref(), Some("No"));
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    assert!(!negotiated(&conn).initial_r2t);
}

#[test]
fn target_alias_is_declared() {
    let mut t = TestTarget::new(TARGET);
    t.alias = Some("disk one".into());
    let (_, r) = one_pdu(Targets::new(vec![t]), &[]);
    assert_eq!(r.get("TargetAlias").as_deref(), Some("disk one"));
}

// ---- CHAP ----

/// Starts a CHAP login: AuthMethod, then CHAP_A; returns the challenge.
fn chap_start(conn: &mut Conn, algorithms: &str) -> (ChapAlgorithm, u8, Vec<u8>) {
    let mut keys = leading();
    keys.push(("AuthMethod", "CHAP,None"));
    let r = conn.send_keys(&request(SEC, OP, true), &keys);
    r.assert_status(Status::SUCCESS);
    assert_eq!(r.get("AuthMethod").as_deref(), Some("CHAP"));
    assert!(!r.step.transit, "no transit before authentication");
    let r = conn.send_keys(&request(SEC, OP, true), &[("CHAP_A", algorithms)]);
    r.assert_status(Status::SUCCESS);
    assert!(!r.step.transit);
    let alg = ChapAlgorithm::from_code(r.get("CHAP_A").unwrap().parse().unwrap()).unwrap();
    let id: u8 = r.get("CHAP_I").unwrap().parse().unwrap();
    let challenge = from_hex(&r.get("CHAP_C").unwrap());
    assert_eq!(challenge.len(), alg.challenge_len());
    assert!(challenge.len() >= 16);
    (alg, id, challenge)
}

fn chap_targets() -> Targets {
    Targets::new(vec![
        TestTarget::new(TARGET).chap("alice", "alice-secret-12")
    ])
}

#[test]
fn chap_one_way_with_each_algorithm() {
    for (offer, want) in [
        ("5", ChapAlgorithm::Md5),
        ("6", ChapAlgorithm::Sha1),
        ("7", ChapAlgorithm::Sha256),
        ("5,6,7", ChapAlgorithm::Sha256),
        ("6,5", ChapAlgorithm::Sha1),
        ("0x5,99", ChapAlgorithm::Md5),
    ] {
        let mut conn = Conn::new(chap_targets());
        let (alg, id, c) = chap_start(&mut conn, offer);
        assert_eq!(alg, want, "CHAP_A={offer}");
        let resp = chap_response_hex(alg, id, b"alice-secret-12", &c);
        let r = conn.send_keys(
            &request(SEC, OP, true),
            &[("CHAP_N", "alice"), ("CHAP_R", &resp)],
        );
        r.assert_status(Status::SUCCESS);
        assert!(r.keys.is_empty());
        assert!(r.step.transit && r.step.nsg == OP);
        let r = conn.send_keys(&request(OP, FFP, true), &open_iscsi_operational());
        assert_eq!(r.step.outcome, Outcome::FullFeature);
    }
}

#[test]
fn chap_wrong_secret_user_or_encoding_fails() {
    type Answer = Box<dyn Fn(ChapAlgorithm, u8, &[u8]) -> Vec<(String, String)>>;
    let cases: Vec<Answer> = vec![
        Box::new(|alg, id, c| {
            vec![
                ("CHAP_N".into(), "alice".into()),
                (
                    "CHAP_R".into(),
                    chap_response_hex(alg, id, b"wrong-secret-1", c),
                ),
            ]
        }),
        Box::new(|alg, id, c| {
            vec![
                ("CHAP_N".into(), "mallory".into()),
                (
                    "CHAP_R".into(),
                    chap_response_hex(alg, id, b"alice-secret-12", c),
                ),
            ]
        }),
        // Right secret, wrong identifier.
        Box::new(|alg, id, c| {
            vec![
                ("CHAP_N".into(), "alice".into()),
                (
                    "CHAP_R".into(),
                    chap_response_hex(alg, id.wrapping_add(1), b"alice-secret-12", c),
                ),
            ]
        }),
        Box::new(|_, _, _| {
            vec![
                ("CHAP_N".into(), "alice".into()),
                ("CHAP_R".into(), "0xzz".into()),
            ]
        }),
        Box::new(|_, _, _| {
            vec![
                ("CHAP_N".into(), "alice".into()),
                ("CHAP_R".into(), "deadbeef".into()),
            ]
        }),
        // CHAP_N alone.
        Box::new(|_, _, _| vec![("CHAP_N".into(), "alice".into())]),
        // Truncated digest.
        Box::new(|alg, id, c| {
            let mut r = chap_response_hex(alg, id, b"alice-secret-12", c);
            r.truncate(r.len() - 2);
            vec![("CHAP_N".into(), "alice".into()), ("CHAP_R".into(), r)]
        }),
    ];
    for make in cases {
        let mut conn = Conn::new(chap_targets());
        let (alg, id, c) = chap_start(&mut conn, "5");
        let keys = make(alg, id, &c);
        let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = conn.send_keys(&request(SEC, OP, true), &keys);
        r.assert_status(Status::AUTH_FAILURE);
        assert_eq!(
            Status::AUTH_FAILURE,
            Status {
                class: 2,
                detail: 1
            }
        );
    }
}

#[test]
fn chap_response_in_base64_and_upper_case_hex() {
    for encode in [
        |d: &[u8]| to_base64(d),
        // 0X and upper-case digits.
        |d: &[u8]| to_hex(d).to_uppercase(),
    ] {
        let mut conn = Conn::new(chap_targets());
        let (alg, id, c) = chap_start(&mut conn, "6");
        let d = digest(alg, &[&[id], b"alice-secret-12", &c]);
        let r = conn.send_keys(
            &request(SEC, OP, true),
            &[("CHAP_N", "alice"), ("CHAP_R", &encode(&d))],
        );
        r.assert_status(Status::SUCCESS);
        assert!(r.step.transit);
    }
}

#[test]
fn chap_unsupported_algorithm_fails() {
    let mut conn = Conn::new(chap_targets());
    let mut keys = leading();
    keys.push(("AuthMethod", "CHAP"));
    conn.send_keys(&request(SEC, OP, false), &keys);
    conn.send_keys(&request(SEC, OP, false), &[("CHAP_A", "4,128,x")])
        .assert_status(Status::AUTH_FAILURE);
}

#[test]
fn mutual_chap() {
    for alg_code in ["5", "6", "7"] {
        let targets = Targets::new(vec![TestTarget::new(TARGET)
            .chap("alice", "alice-secret-12")
            .mutual("disk1-target", "target-secret-34")]);
        let mut conn = Conn::new(targets);
        let (alg, id, c) = chap_start(&mut conn, alg_code);
        let resp = chap_response_hex(alg, id, b"alice-secret-12", &c);
        let my_challenge = [0x5au8; 16];
        let r = conn.send_keys(
            &request(SEC, OP, true),
            &[
                ("CHAP_N", "alice"),
                ("CHAP_R", &resp),
                ("CHAP_I", "77"),
                ("CHAP_C", &to_hex(&my_challenge)),
            ],
        );
        r.assert_status(Status::SUCCESS);
        assert!(r.step.transit);
        assert_eq!(r.get("CHAP_N").as_deref(), Some("disk1-target"));
        let want = chap_response_hex(alg, 77, b"target-secret-34", &my_challenge);
        assert_eq!(r.get("CHAP_R"), Some(want));
    }
}

#[test]
fn mutual_chap_refusals() {
    let with_outgoing = |secret: &str| {
        Targets::new(vec![TestTarget::new(TARGET)
            .chap("alice", "alice-secret-12")
            .mutual("disk1-target", secret)])
    };
    // (targets, CHAP_I, CHAP_C or the reflected challenge when None)
    let cases: Vec<(Targets, &str, Option<String>)> = vec![
        // No outgoing user configured.
        (chap_targets(), "1", Some(to_hex(&[1; 16]))),
        // The target's own challenge reflected.
        (with_outgoing("target-secret-34"), "1", None),
        // One secret for both directions.
        (
            with_outgoing("alice-secret-12"),
            "1",
            Some(to_hex(&[1; 16])),
        ),
        // Identifier out of range, malformed challenge.
        (
            with_outgoing("target-secret-34"),
            "256",
            Some(to_hex(&[1; 16])),
        ),
        (with_outgoing("target-secret-34"), "1", Some("0x".into())),
        (with_outgoing("target-secret-34"), "1", Some("16".into())),
    ];
    for (targets, chap_i, chap_c) in cases {
        let mut conn = Conn::new(targets);
        let (alg, id, c) = chap_start(&mut conn, "5");
        let resp = chap_response_hex(alg, id, b"alice-secret-12", &c);
        let chap_c = chap_c.unwrap_or_else(|| to_hex(&c));
        conn.send_keys(
            &request(SEC, OP, true),
            &[
                ("CHAP_N", "alice"),
                ("CHAP_R", &resp),
                ("CHAP_I", chap_i),
                ("CHAP_C", &chap_c),
            ],
        )
        .assert_status(Status::AUTH_FAILURE);
    }
    // CHAP_I without CHAP_C.
    let mut conn = Conn::new(with_outgoing("target-secret-34"));
    let (alg, id, c) = chap_start(&mut conn, "5");
    let resp = chap_response_hex(alg, id, b"alice-secret-12", &c);
    conn.send_keys(
        &request(SEC, OP, true),
        &[("CHAP_N", "alice"), ("CHAP_R", &resp), ("CHAP_I", "3")],
    )
    .assert_status(Status::AUTH_FAILURE);
}

#[test]
fn chap_out_of_order_fails() {
    // CHAP_R before any challenge.
    let mut conn = Conn::new(chap_targets());
    let mut keys = leading();
    keys.push(("AuthMethod", "CHAP"));
    conn.send_keys(&request(SEC, OP, false), &keys);
    conn.send_keys(
        &request(SEC, OP, false),
        &[("CHAP_N", "alice"), ("CHAP_R", "0x00")],
    )
    .assert_status(Status::AUTH_FAILURE);

    // CHAP_A with its own answer in one PDU.
    let mut conn = Conn::new(chap_targets());
    conn.send_keys(&request(SEC, OP, false), &keys);
    conn.send_keys(
        &request(SEC, OP, false),
        &[("CHAP_A", "5"), ("CHAP_N", "alice"), ("CHAP_R", "0x00")],
    )
    .assert_status(Status::AUTH_FAILURE);

    // CHAP keys without AuthMethod=CHAP.
    let mut conn = Conn::new(Targets::one());
    let mut keys = leading();
    keys.push(("AuthMethod", "None"));
    conn.send_keys(&request(SEC, OP, false), &keys);
    conn.send_keys(&request(SEC, OP, false), &[("CHAP_A", "5")])
        .assert_status(Status::AUTH_FAILURE);
}

#[test]
fn chap_required_cannot_be_skipped() {
    // AuthMethod=None only.
    let mut conn = Conn::new(chap_targets());
    let mut keys = leading();
    keys.push(("AuthMethod", "None"));
    conn.send_keys(&request(SEC, OP, true), &keys)
        .assert_status(Status::AUTH_FAILURE);
    // Straight to the operational stage.
    let (_, r) = one_pdu(chap_targets(), &[]);
    r.assert_status(Status::AUTH_FAILURE);
    // Transit without any AuthMethod.
    let mut conn = Conn::new(chap_targets());
    conn.send_keys(&request(SEC, OP, true), &leading())
        .assert_status(Status::AUTH_FAILURE);
    // Transit in the middle of CHAP is held back, not granted.
    let mut conn = Conn::new(chap_targets());
    let _ = chap_start(&mut conn, "5");
    let r = conn.send(&request(SEC, FFP, true), &[]);
    r.assert_status(Status::SUCCESS);
    assert!(!r.step.transit);
}

#[test]
fn auth_method_without_users() {
    let mut conn = Conn::new(Targets::one());
    let mut keys = leading();
    keys.push(("AuthMethod", "CHAP,None"));
    let r = conn.send_keys(&request(SEC, OP, true), &keys);
    assert_eq!(r.get("AuthMethod").as_deref(), Some("None"));
    assert!(r.step.transit);

    let mut conn = Conn::new(Targets::one());
    let mut keys = leading();
    keys.push(("AuthMethod", "CHAP,SRP"));
    let r = conn.send_keys(&request(SEC, OP, false), &keys);
    assert_eq!(r.get("AuthMethod").as_deref(), Some("Reject"));
}

#[test]
fn chap_in_a_discovery_session() {
    let mut targets = Targets::one();
    targets.discovery = TargetLookup::Found(TargetSettings {
        chap_required: true,
        ..TargetSettings::default()
    });
    targets.discovery_users = vec![("disco".into(), b"discovery-secret".to_vec())];
    let mut conn = Conn::new(targets);
    let r = conn.send_keys(
        &request(SEC, OP, false),
        &[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Discovery"),
            ("AuthMethod", "CHAP"),
        ],
    );
    assert_eq!(r.get("AuthMethod").as_deref(), Some("CHAP"));
    let r = conn.send_keys(&request(SEC, OP, false), &[("CHAP_A", "7")]);
    let id: u8 = r.get("CHAP_I").unwrap().parse().unwrap();
    let c = from_hex(&r.get("CHAP_C").unwrap());
    let resp = chap_response_hex(ChapAlgorithm::Sha256, id, b"discovery-secret", &c);
    let r = conn.send_keys(
        &request(SEC, FFP, true),
        &[("CHAP_N", "disco"), ("CHAP_R", &resp)],
    );
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    assert_eq!(negotiated(&conn).session_type, SessionType::Discovery);
}

#[test]
fn challenges_differ_between_logins() {
    let mut seen = Vec::new();
    let mut crypto_seed = 1u64;
    for _ in 0..4 {
        let mut conn = Conn::new(chap_targets());
        conn.crypto.rng = XorShift(crypto_seed);
        crypto_seed += 7;
        let (_, _, c) = chap_start(&mut conn, "7");
        assert!(!seen.contains(&c));
        seen.push(c);
    }
}

// ---- Text negotiation in the full feature phase ----

fn catalog() -> Targets {
    let mut a = TestTarget::new("iqn.2024-01.org.example:a");
    a.addresses = vec!["192.0.2.1:3260,1".into(), "[2001:db8::1]:3260,1".into()];
    let mut b = TestTarget::new("iqn.2024-01.org.example:b");
    b.acl = Some(vec!["iqn.2005-03.org.open-iscsi:other".into()]);
    let mut c = TestTarget::new("iqn.2024-01.org.example:c");
    c.addresses = vec!["192.0.2.3:3261,2".into()];
    let mut d = TestTarget::new("iqn.2024-01.org.example:d");
    d.enabled = false;
    Targets::new(vec![a, b, c, d])
}

fn session(session_type: SessionType, target: &str, max_xmit: u32) -> Negotiated {
    let mut conn = Conn::new(catalog());
    let keys: Vec<(&str, &str)> = match session_type {
        SessionType::Discovery => vec![("InitiatorName", INITIATOR), ("SessionType", "Discovery")],
        SessionType::Normal => vec![("InitiatorName", INITIATOR), ("TargetName", target)],
    };
    let r = conn.send_keys(&request(OP, FFP, true), &keys);
    assert_eq!(r.step.outcome, Outcome::FullFeature);
    let mut n = negotiated(&conn);
    n.max_xmit_data_segment_length = max_xmit;
    n
}

fn text_req(final_pdu: bool, cont: bool, itt: u32, ttt: u32) -> TextRequest {
    TextRequest {
        final_pdu,
        cont,
        itt,
        ttt,
    }
}

struct TextConn {
    neg: TextNegotiation<Vec<u8>>,
    catalog: Targets,
    out: Vec<u8>,
}

impl TextConn {
    fn new(session: &Negotiated) -> Self {
        Self {
            neg: TextNegotiation::new(vec![0; 128 * 1024], session, 262_144),
            catalog: catalog(),
            out: vec![0; 1 << 20],
        }
    }

    fn send(&mut self, req: &TextRequest, data: &[u8]) -> (TextStep, Vec<(String, String)>) {
        let step = self.neg.step(req, data, &self.catalog, &mut self.out);
        let keys = piece_entries(&self.out[..step.data_len]);
        (step, keys)
    }
}

#[test]
fn send_targets_all_in_discovery_filters_by_acl() {
    let s = session(SessionType::Discovery, "", 8192);
    let mut conn = TextConn::new(&s);
    let (step, keys) = conn.send(
        &text_req(true, false, 5, RESERVED_TAG),
        b"SendTargets=All\0",
    );
    assert_eq!(step.outcome, TextOutcome::Respond);
    assert!(step.final_pdu && !step.cont);
    assert_eq!(step.ttt, RESERVED_TAG);
    let want: Vec<(String, String)> = [
        ("TargetName", "iqn.2024-01.org.example:a"),
        ("TargetAddress", "192.0.2.1:3260,1"),
        ("TargetAddress", "[2001:db8::1]:3260,1"),
        ("TargetName", "iqn.2024-01.org.example:c"),
        ("TargetAddress", "192.0.2.3:3261,2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(keys, want);
    assert!(!step.truncated);
}

#[test]
fn send_targets_by_name_and_empty() {
    let s = session(SessionType::Discovery, "", 8192);
    let mut conn = TextConn::new(&s);
    let (_, keys) = conn.send(
        &text_req(true, false, 1, RESERVED_TAG),
        b"SendTargets=IQN.2024-01.org.example:C\0",
    );
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].1, "iqn.2024-01.org.example:c");
    // Not visible to this initiator.
    let (_, keys) = conn.send(
        &text_req(true, false, 2, RESERVED_TAG),
        b"SendTargets=iqn.2024-01.org.example:b\0",
    );
    assert!(keys.is_empty());
    let (_, keys) = conn.send(&text_req(true, false, 3, RESERVED_TAG), b"SendTargets=\0");
    assert_eq!(
        keys,
        vec![("SendTargets".to_string(), "Reject".to_string())]
    );
}

#[test]
fn send_targets_in_a_normal_session_reports_its_target() {
    let s = session(SessionType::Normal, "iqn.2024-01.org.example:c", 8192);
    let mut conn = TextConn::new(&s);
    for query in ["All", "", "iqn.2024-01.org.example:c"] {
        let data = format!("SendTargets={query}\0");
        let (_, keys) = conn.send(&text_req(true, false, 1, RESERVED_TAG), data.as_bytes());
        assert_eq!(keys.len(), 2, "{query}");
        assert_eq!(keys[0].1, "iqn.2024-01.org.example:c");
    }
    let (_, keys) = conn.send(
        &text_req(true, false, 1, RESERVED_TAG),
        b"SendTargets=iqn.2024-01.org.example:a\0",
    );
    assert!(keys.is_empty());
}

#[test]
fn long_send_targets_answer_is_split_by_ttt() {
    let s = session(SessionType::Discovery, "", 512);
    let mut conn = TextConn::new(&s);
    conn.catalog.targets = (0..100)
        .map(|i| TestTarget::new(&format!("iqn.2024-01.org.example:t{i:03}")))
        .collect();
    let (mut step, _) = conn.send(
        &text_req(true, false, 9, RESERVED_TAG),
        b"SendTargets=All\0",
    );
    let mut all = conn.out[..step.data_len].to_vec();
    let mut ttts = Vec::new();
    while step.cont {
        // Pieces as long as the initiator takes, each with a fresh tag.
        assert!(!step.final_pdu);
        assert_ne!(step.ttt, RESERVED_TAG);
        assert!(!ttts.contains(&step.ttt));
        ttts.push(step.ttt);
        assert_eq!(step.data_len, 512);
        let (next, _) = conn.send(&text_req(true, false, 9, step.ttt), &[]);
        step = next;
        all.extend_from_slice(&conn.out[..step.data_len]);
    }
    assert!(step.final_pdu && step.ttt == RESERVED_TAG);
    assert!(ttts.len() > 5);
    let keys = entries(&all);
    assert_eq!(keys.len(), 200);
    assert_eq!(keys[198].1, "iqn.2024-01.org.example:t099");
}

#[test]
fn text_continuation_errors_and_reset() {
    let s = session(SessionType::Discovery, "", 512);
    let mut conn = TextConn::new(&s);
    conn.catalog.targets = (0..50)
        .map(|i| TestTarget::new(&format!("iqn.2024-01.org.example:t{i:03}")))
        .collect();
    let (step, _) = conn.send(
        &text_req(true, false, 9, RESERVED_TAG),
        b"SendTargets=All\0",
    );
    assert!(step.cont);
    // A wrong TTT.
    let (bad, _) = conn.send(&text_req(true, false, 9, step.ttt ^ 1), &[]);
    assert_eq!(
        bad.outcome,
        TextOutcome::Reject(RejectReason::InvalidPduField)
    );
    // The reject dropped the negotiation: the old TTT is gone too.
    let (bad, _) = conn.send(&text_req(true, false, 9, step.ttt), &[]);
    assert_eq!(
        bad.outcome,
        TextOutcome::Reject(RejectReason::InvalidPduField)
    );

    // A fresh request (reserved TTT) replaces an unfinished one.
    let (step, _) = conn.send(
        &text_req(true, false, 10, RESERVED_TAG),
        b"SendTargets=All\0",
    );
    assert!(step.cont);
    let (fresh, keys) = conn.send(&text_req(true, false, 11, RESERVED_TAG), b"X-foo=1\0");
    assert!(fresh.final_pdu);
    assert_eq!(
        keys,
        vec![("X-foo".to_string(), "NotUnderstood".to_string())]
    );

    // Data in a continuation fetch, and C with F.
    let (step, _) = conn.send(
        &text_req(true, false, 12, RESERVED_TAG),
        b"SendTargets=All\0",
    );
    let (bad, _) = conn.send(&text_req(true, false, 12, step.ttt), b"X-a=1\0");
    assert_eq!(
        bad.outcome,
        TextOutcome::Reject(RejectReason::ProtocolError)
    );
    let (bad, _) = conn.send(&text_req(true, true, 13, RESERVED_TAG), b"X-a=1\0");
    assert_eq!(
        bad.outcome,
        TextOutcome::Reject(RejectReason::ProtocolError)
    );
}

#[test]
fn text_request_spanning_pdus() {
    let s = session(SessionType::Discovery, "", 8192);
    let mut conn = TextConn::new(&s);
    let (step, keys) = conn.send(&text_req(false, true, 4, RESERVED_TAG), b"SendTar");
    assert_eq!(step.outcome, TextOutcome::Respond);
    assert!(!step.final_pdu && !step.cont && keys.is_empty());
    assert_ne!(step.ttt, RESERVED_TAG);
    let (step, keys) = conn.send(&text_req(true, false, 4, step.ttt), b"gets=All\0");
    assert!(step.final_pdu);
    assert_eq!(keys.len(), 5);
}

#[test]
fn text_request_other_keys() {
    let s = session(SessionType::Normal, "iqn.2024-01.org.example:a", 8192);
    let mut conn = TextConn::new(&s);
    let (step, keys) = conn.send(
        &text_req(true, false, 1, RESERVED_TAG),
        b"MaxRecvDataSegmentLength=1048576\0MaxBurstLength=512\0X-x=1\0InitiatorAlias=h\0",
    );
    assert_eq!(step.max_xmit_data_segment_length, Some(262_144));
    assert_eq!(
        keys,
        vec![
            ("MaxBurstLength".to_string(), "Reject".to_string()),
            ("X-x".to_string(), "NotUnderstood".to_string()),
        ]
    );
    let (step, keys) = conn.send(
        &text_req(true, false, 2, RESERVED_TAG),
        b"MaxRecvDataSegmentLength=100\0",
    );
    assert_eq!(step.max_xmit_data_segment_length, None);
    assert_eq!(keys[0].1, "Reject");
    let twice = b"MaxRecvDataSegmentLength=512\0MaxRecvDataSegmentLength=1024\0";
    for bad in [&b"NoEquals\0"[..], twice, b"SendTargets=All"] {
        let (step, _) = conn.send(&text_req(true, false, 3, RESERVED_TAG), bad);
        assert_eq!(
            step.outcome,
            TextOutcome::Reject(RejectReason::ProtocolError)
        );
    }
}

#[test]
fn text_request_without_f_keeps_the_negotiation_open() {
    let s = session(SessionType::Discovery, "", 8192);
    let mut conn = TextConn::new(&s);
    let (step, _) = conn.send(&text_req(false, false, 7, RESERVED_TAG), b"X-a=1\0");
    assert!(!step.final_pdu);
    assert_ne!(step.ttt, RESERVED_TAG);
    let (step, keys) = conn.send(&text_req(true, false, 7, step.ttt), b"SendTargets=All\0");
    assert!(step.final_pdu);
    assert_eq!(keys.len(), 5);
}

#[test]
fn send_targets_truncates_at_a_target_boundary() {
    let s = session(SessionType::Discovery, "", 1 << 20);
    let mut conn = TextConn {
        neg: TextNegotiation::new(vec![0; 2 * 1024], &s, 1 << 20),
        catalog: catalog(),
        out: vec![0; 1 << 20],
    };
    conn.catalog.targets = (0..100)
        .map(|i| TestTarget::new(&format!("iqn.2024-01.org.example:t{i:03}")))
        .collect();
    let (step, keys) = conn.send(
        &text_req(true, false, 1, RESERVED_TAG),
        b"SendTargets=All\0",
    );
    assert!(step.truncated);
    assert!(step.data_len <= 1024);
    assert_eq!(keys.len() % 2, 0);
    assert!(keys
        .chunks(2)
        .all(|p| p[0].0 == "TargetName" && p[1].0 == "TargetAddress"));
}

// ---- Robustness ----

#[test]
fn pseudo_random_logins_never_panic() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let words: &[&[u8]] = &[
        b"InitiatorName=iqn.x\0",
        b"TargetName=iqn.2024-01.org.example:disk1\0",
        b"SessionType=Discovery\0",
        b"AuthMethod=CHAP,None\0",
        b"AuthMethod=None\0",
        b"CHAP_A=5,6,7\0",
        b"CHAP_N=alice\0",
        b"CHAP_R=0x00112233\0",
        b"CHAP_I=1\0",
        b"CHAP_C=0b AAAA\0",
        b"MaxBurstLength=0x\0",
        b"HeaderDigest=CRC32C,None\0",
        b"MaxRecvDataSegmentLength=512\0",
        b"\0",
        b"X-a=\xff\0",
        b"DataDigest=None\0",
        b"ImmediateData=No\0",
        b"OFMarkInt=1\0",
    ];
    let mut outcomes = [0usize; 3];
    for round in 0..3000 {
        let targets = if round % 2 == 0 {
            chap_targets()
        } else {
            Targets::one()
        };
        let mut login = Login::new(vec![0u8; 4096], 1);
        let mut crypto = Crypto::new();
        let mut out = vec![0u8; rng.below(9000) as usize];
        for step_no in 0..rng.below(8) + 1 {
            let mut data = Vec::new();
            if step_no == 0 && rng.below(4) != 0 {
                data.extend_from_slice(&text(&leading()));
            }
            for _ in 0..rng.below(6) {
                if rng.below(8) == 0 {
                    let mut junk = vec![0u8; rng.below(40) as usize];
                    rng.fill(&mut junk);
                    data.extend_from_slice(&junk);
                } else {
                    data.extend_from_slice(words[rng.below(words.len() as u64) as usize]);
                }
            }
            let mut bhs = [0u8; BHS_LEN];
            rng.fill(&mut bhs);
            let mut req = LoginRequest::parse(&bhs);
            // Most requests plausible, so that later stages are reached.
            if rng.below(8) != 0 {
                req = LoginRequest {
                    transit: rng.below(3) != 0,
                    cont: rng.below(6) == 0,
                    csg: login.stage(),
                    nsg: [OP, FFP][rng.below(2) as usize],
                    ..request(SEC, OP, false)
                };
            }
            let step = login.step(&req, &data, &targets, &mut crypto, &mut out);
            assert!(step.data_len <= out.len());
            assert!(!(step.transit && step.cont));
            match step.outcome {
                Outcome::Continue => outcomes[0] += 1,
                Outcome::Failed => {
                    assert_eq!(step.data_len, 0);
                    outcomes[1] += 1;
                    break;
                }
                Outcome::FullFeature => {
                    assert!(login.negotiated().is_some());
                    outcomes[2] += 1;
                    break;
                }
            }
        }
    }
    // Every outcome occurred.
    assert!(outcomes.iter().all(|&n| n > 50), "{outcomes:?}");
}

#[test]
fn pseudo_random_text_requests_never_panic() {
    let mut rng = XorShift(0xfeed_f00d_dead_beef);
    let s = session(SessionType::Discovery, "", 512);
    let targets = catalog();
    for _ in 0..2000 {
        let mut neg = TextNegotiation::new(vec![0u8; 1024], &s, 8192);
        let mut out = vec![0u8; rng.below(1024) as usize];
        let mut last_ttt = RESERVED_TAG;
        for _ in 0..rng.below(6) + 1 {
            let mut data = if rng.below(2) == 0 {
                b"SendTargets=All\0".to_vec()
            } else {
                Vec::new()
            };
            let mut junk = vec![0u8; rng.below(64) as usize];
            rng.fill(&mut junk);
            data.extend_from_slice(&junk);
            let req = TextRequest {
                final_pdu: rng.below(2) == 0,
                cont: rng.below(4) == 0,
                itt: rng.below(3) as u32,
                ttt: if rng.below(2) == 0 {
                    last_ttt
                } else {
                    rng.next_u64() as u32
                },
            };
            let step = neg.step(&req, &data, &targets, &mut out);
            assert!(step.data_len <= out.len());
            last_ttt = step.ttt;
        }
    }
}
