// SPDX-License-Identifier: GPL-2.0

//! ALUA rules: access states, REPORT TARGET PORT GROUPS data and SET
//! TARGET PORT GROUPS parameter lists.

use scst_host_tests::scst_core::alua::{
    group_command, parse_set_list, AccessState, GroupCommand, GroupReport, PortView, SetDescriptor,
    SUPPORTED_STATES,
};
use scst_host_tests::scst_core::cdb::{Cdb, Out};
use scst_host_tests::scst_core::sense::{self, Sense};

const READ_10: [u8; 10] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const WRITE_10: [u8; 10] = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const TUR: [u8; 6] = [0; 6];
const INQUIRY: [u8; 6] = [0x12, 0, 0, 0, 96, 0];
const RTPG: [u8; 12] = [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
const STPG: [u8; 12] = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0];
const READ_CAPACITY_16: [u8; 16] = [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
const PR_IN: [u8; 10] = [0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0];
const MODE_SENSE_6: [u8; 6] = [0x1a, 0, 0x3f, 0, 0xff, 0];

fn refusal(state: AccessState, cdb: &[u8]) -> Option<Sense> {
    state.refusal(Cdb(cdb))
}

#[test]
fn active_states_accept_everything() {
    for s in [AccessState::Optimized, AccessState::NonOptimized] {
        for cdb in [&READ_10[..], &WRITE_10, &TUR, &STPG, &PR_IN] {
            assert_eq!(refusal(s, cdb), None);
        }
        assert!(s.is_active());
    }
}

#[test]
fn standby_accepts_its_list_and_refuses_media_access() {
    let s = AccessState::Standby;
    for cdb in [
        &INQUIRY[..],
        &RTPG,
        &STPG,
        &READ_CAPACITY_16,
        &PR_IN,
        &MODE_SENSE_6,
    ] {
        assert_eq!(refusal(s, cdb), None, "{:02x}", cdb[0]);
    }
    for cdb in [&READ_10[..], &WRITE_10, &TUR] {
        assert_eq!(refusal(s, cdb), Some(sense::ALUA_STANDBY), "{:02x}", cdb[0]);
    }
}

#[test]
fn unavailable_offline_and_transitioning_accept_less() {
    assert_eq!(refusal(AccessState::Unavailable, &STPG), None);
    assert_eq!(
        refusal(AccessState::Unavailable, &PR_IN),
        Some(sense::ALUA_UNAVAILABLE)
    );
    assert_eq!(
        refusal(AccessState::Unavailable, &READ_10),
        Some(sense::ALUA_UNAVAILABLE)
    );
    assert_eq!(
        refusal(AccessState::Offline, &STPG),
        Some(sense::ALUA_OFFLINE)
    );
    assert_eq!(refusal(AccessState::Offline, &READ_CAPACITY_16), None);
    assert_eq!(
        refusal(AccessState::Transitioning, &READ_CAPACITY_16),
        Some(sense::ALUA_TRANSITIONING)
    );
    for s in [
        AccessState::Unavailable,
        AccessState::Offline,
        AccessState::Transitioning,
    ] {
        assert_eq!(refusal(s, &INQUIRY), None);
        assert_eq!(refusal(s, &RTPG), None);
        assert_eq!(refusal(s, &[0x03, 0, 0, 0, 18, 0]), None);
        assert_eq!(refusal(s, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), None);
        // READ BUFFER: the echo buffer only.
        assert_eq!(refusal(s, &[0x3c, 0x0a, 0, 0, 0, 0, 0, 0, 4, 0]), None);
        assert!(refusal(s, &[0x3c, 0x02, 0, 0, 0, 0, 0, 0, 4, 0]).is_some());
    }
}

#[test]
fn state_names_and_codes_round_trip() {
    for (name, code) in [
        ("active", 0),
        ("nonoptimized", 1),
        ("standby", 2),
        ("unavailable", 3),
        ("offline", 0xe),
        ("transitioning", 0xf),
    ] {
        let s = AccessState::from_name(name).unwrap();
        assert_eq!(s.name(), name);
        assert_eq!(s as u8, code);
        assert_eq!(AccessState::from_code(code), Some(s));
    }
    assert_eq!(
        AccessState::from_name("Standby"),
        Some(AccessState::Standby)
    );
    assert_eq!(AccessState::from_name("lba_dependent"), None);
    assert_eq!(AccessState::from_code(4), None);
}

#[test]
fn port_views_pack_into_a_word() {
    assert_eq!(PortView::decode(0), None);
    assert_eq!(PortView::encode(None), 0);
    for v in [
        PortView {
            explicit: false,
            port: None,
        },
        PortView {
            explicit: true,
            port: Some((0xffff, AccessState::Transitioning)),
        },
        PortView {
            explicit: false,
            port: Some((0, AccessState::Optimized)),
        },
        PortView {
            explicit: true,
            port: Some((257, AccessState::Standby)),
        },
    ] {
        assert_eq!(PortView::decode(PortView::encode(Some(v))), Some(v));
    }
    assert_eq!(
        PortView {
            explicit: true,
            port: None
        }
        .tpgs(),
        3
    );
    assert_eq!(
        PortView {
            explicit: false,
            port: None
        }
        .tpgs(),
        1
    );
}

#[test]
fn group_commands_are_recognized() {
    assert_eq!(group_command(Cdb(&RTPG)), Some(GroupCommand::Report));
    assert_eq!(group_command(Cdb(&STPG)), Some(GroupCommand::Set));
    // REPORT SUPPORTED OPERATION CODES is another MAINTENANCE IN.
    assert_eq!(
        group_command(Cdb(&[0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])),
        None
    );
    assert_eq!(group_command(Cdb(&READ_10)), None);
}

fn report(cdb: &[u8], alloc: usize) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; alloc];
    let mut out = Out::new(&mut buf);
    let mut r = GroupReport::begin(Cdb(cdb), &mut out).unwrap();
    r.group(256, AccessState::Optimized, true, 2, 2);
    r.port(1);
    r.port(2);
    r.group(257, AccessState::Standby, false, 1, 1);
    r.port(3);
    r.finish();
    let len = out.len();
    (buf, len)
}

#[test]
fn report_target_port_groups_data() {
    let (buf, len) = report(&RTPG, 64);
    assert_eq!(len, 4 + 8 + 8 + 8 + 4);
    assert_eq!(&buf[..4], &[0, 0, 0, 28]);
    assert_eq!(
        &buf[4..20],
        &[
            0x80,
            SUPPORTED_STATES,
            1,
            0,
            0,
            2,
            0,
            2,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            2
        ]
    );
    assert_eq!(
        &buf[20..32],
        &[0x02, SUPPORTED_STATES, 1, 1, 0, 1, 0, 1, 0, 0, 0, 3]
    );
    // A short allocation length still gets the full length.
    let (short, len) = report(&RTPG, 4);
    assert_eq!(len, 32);
    assert_eq!(&short[..], &[0, 0, 0, 28]);
}

#[test]
fn report_with_the_extended_header() {
    let mut cdb = RTPG;
    cdb[1] |= 0x20;
    let (buf, len) = report(&cdb, 64);
    assert_eq!(len, 36);
    assert_eq!(&buf[..8], &[0, 0, 0, 32, 0x10, 0, 0, 0]);
    assert_eq!(buf[8], 0x80);
    cdb[1] = 0x40 | 0x0a;
    let mut b = [0u8; 8];
    let mut out = Out::new(&mut b);
    assert_eq!(
        GroupReport::begin(Cdb(&cdb), &mut out).err(),
        Some(Sense::invalid_cdb_field(1, Some(7)))
    );
}

fn parse(params: &[u8]) -> Result<Vec<SetDescriptor>, Sense> {
    let mut seen = Vec::new();
    parse_set_list(params, |d| {
        seen.push(d);
        Ok(())
    })
    .map(|()| seen)
}

#[test]
fn set_target_port_groups_lists() {
    assert_eq!(parse(&[]), Ok(vec![]));
    assert_eq!(
        parse(&[0, 0, 0, 0, 0x02, 0, 1, 1, 0x00, 0, 0, 7]),
        Ok(vec![
            SetDescriptor {
                state: AccessState::Standby,
                group_id: 257,
                offset: 4
            },
            SetDescriptor {
                state: AccessState::Optimized,
                group_id: 7,
                offset: 8
            },
        ])
    );
    assert_eq!(parse(&[0, 0]), Err(sense::PARAMETER_LIST_LENGTH_ERROR));
    assert_eq!(
        parse(&[0, 0, 0, 0, 1, 0]),
        Err(sense::PARAMETER_LIST_LENGTH_ERROR)
    );
    // Transitioning and undefined states cannot be asked for.
    assert_eq!(
        parse(&[0, 0, 0, 0, 0x0f, 0, 0, 1]),
        Err(Sense::invalid_param_field(4, Some(3)))
    );
    assert_eq!(
        parse(&[0, 0, 0, 0, 0, 0, 0, 1, 0x04, 0, 0, 1]),
        Err(Sense::invalid_param_field(8, Some(3)))
    );
}

#[test]
fn a_refused_descriptor_stops_the_list() {
    let mut calls = 0;
    let r = parse_set_list(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1], |d| {
        calls += 1;
        if d.group_id == 9 {
            Err(Sense::invalid_param_field(d.offset + 2, None))
        } else {
            Ok(())
        }
    });
    assert_eq!(r, Err(Sense::invalid_param_field(6, None)));
    assert_eq!(calls, 1);
}
