// SPDX-License-Identifier: GPL-2.0

//! A target's iSCSI parameter attributes and CHAP user lines.

use scst_host_tests::scst_iscsi::login::DigestPolicy;
use scst_host_tests::scst_iscsi::params::{
    parse_user, Param, ParamError, TargetParams, UserKind, MAX_QUEUED_COMMANDS,
};

fn shown(p: &TargetParams, param: Param) -> String {
    let mut s = String::new();
    p.show(param, &mut s).unwrap();
    s
}

#[test]
fn defaults_are_scst_s_but_for_segment_sizes() {
    let p = TargetParams::default();
    assert_eq!(shown(&p, Param::HeaderDigest), "None");
    assert_eq!(shown(&p, Param::DataDigest), "None");
    assert_eq!(shown(&p, Param::MaxRecvDataSegmentLength), "262144");
    assert_eq!(shown(&p, Param::MaxBurstLength), "1048576");
    assert_eq!(shown(&p, Param::FirstBurstLength), "65536");
    assert_eq!(shown(&p, Param::InitialR2T), "No");
    assert_eq!(shown(&p, Param::ImmediateData), "Yes");
    assert_eq!(shown(&p, Param::QueuedCommands), "32");
    assert_eq!(shown(&p, Param::NopInInterval), "30");
    assert_eq!(shown(&p, Param::NopInTimeout), "30");
    assert_eq!(shown(&p, Param::RspTimeout), "90");
    assert_eq!(shown(&p, Param::MaxSessions), "0");
}

#[test]
fn only_changed_parameters_differ_from_defaults() {
    let mut p = TargetParams::default();
    assert!(Param::ALL.iter().all(|&param| p.is_default(param)));
    p.set(Param::DataDigest, "CRC32C").unwrap();
    p.set(Param::QueuedCommands, "64").unwrap();
    for param in Param::ALL {
        let changed = matches!(param, Param::DataDigest | Param::QueuedCommands);
        assert_eq!(p.is_default(param), !changed, "{}", param.name());
    }
    p.set(Param::QueuedCommands, "32").unwrap();
    assert!(
        p.is_default(Param::QueuedCommands),
        "set back to its default"
    );
}

#[test]
fn every_name_maps_back() {
    for p in Param::ALL {
        assert_eq!(Param::from_name(p.name()), Some(p));
    }
    assert_eq!(Param::from_name("maxburstlength"), None);
}

#[test]
fn digests_take_none_crc32c_or_both() {
    let mut p = TargetParams::default();
    p.set(Param::HeaderDigest, "CRC32C").unwrap();
    assert_eq!(p.settings.header_digest, DigestPolicy::Required);
    p.set(Param::DataDigest, "crc32c, None").unwrap();
    assert_eq!(p.settings.data_digest, DigestPolicy::Allowed);
    assert_eq!(shown(&p, Param::DataDigest), "CRC32C,None");
    p.set(Param::HeaderDigest, "None").unwrap();
    assert_eq!(p.settings.header_digest, DigestPolicy::Off);
    for bad in ["", "MD5", "CRC32C,", "CRC32C;None"] {
        let before = p;
        assert!(p.set(Param::HeaderDigest, bad).is_err(), "{bad:?}");
        assert_eq!(p, before, "a refused value changes nothing");
    }
}

#[test]
fn numbers_are_checked_against_their_ranges() {
    let mut p = TargetParams::default();
    p.set(Param::MaxRecvDataSegmentLength, "8192").unwrap();
    assert_eq!(p.settings.max_recv_data_segment_length, 8192);
    for bad in [
        "511",
        "16777216",
        "-1",
        "0x2000",
        "1e3",
        "",
        "99999999999999",
    ] {
        assert_eq!(
            p.set(Param::MaxRecvDataSegmentLength, bad),
            Err(ParamError::BadValue("a number in the parameter's range")),
            "{bad:?}"
        );
    }
    p.set(Param::QueuedCommands, &MAX_QUEUED_COMMANDS.to_string())
        .unwrap();
    assert!(p.set(Param::QueuedCommands, "0").is_err());
    assert!(p.set(Param::QueuedCommands, "2049").is_err());
    p.set(Param::NopInInterval, "0").unwrap();
    assert!(p.set(Param::NopInTimeout, "0").is_err());
    p.set(Param::MaxSessions, "0").unwrap();
}

#[test]
fn first_burst_never_exceeds_max_burst() {
    let mut p = TargetParams::default();
    assert_eq!(
        p.set(Param::FirstBurstLength, "2097152"),
        Err(ParamError::FirstBurstAboveMaxBurst)
    );
    assert_eq!(
        p.set(Param::MaxBurstLength, "32768"),
        Err(ParamError::FirstBurstAboveMaxBurst)
    );
    p.set(Param::FirstBurstLength, "16384").unwrap();
    p.set(Param::MaxBurstLength, "32768").unwrap();
    assert_eq!(p.settings.max_burst_length, 32768);
}

#[test]
fn yes_no_values() {
    let mut p = TargetParams::default();
    p.set(Param::InitialR2T, "Yes").unwrap();
    assert!(p.settings.initial_r2t);
    p.set(Param::ImmediateData, "no").unwrap();
    assert!(!p.settings.immediate_data);
    assert!(p.set(Param::InitialR2T, "maybe").is_err());
}

#[test]
fn chap_user_lines() {
    assert_eq!(
        parse_user("joe secret12345", false),
        Ok(("joe", "secret12345"))
    );
    assert_eq!(
        parse_user("\"joe secret12345\"", false),
        Ok(("joe", "secret12345"))
    );
    assert_eq!(parse_user("  joe   s  ", false), Ok(("joe", "s")));
    assert_eq!(parse_user("joe", true), Ok(("joe", "")));
    for bad in ["", "joe", "joe a b", "\"joe\" \"x\"", "\"\""] {
        assert!(parse_user(bad, false).is_err(), "{bad:?}");
    }
    let long = "x".repeat(256);
    assert!(parse_user(&format!("{long} s"), false).is_err());
    assert!(parse_user(&format!("joe {long}"), false).is_err());
    assert_eq!(
        UserKind::from_name("IncomingUser"),
        Some(UserKind::Incoming)
    );
    assert_eq!(
        UserKind::from_name("OutgoingUser"),
        Some(UserKind::Outgoing)
    );
    assert_eq!(UserKind::from_name("incominguser"), None);
}
