// SPDX-License-Identifier: GPL-2.0

//! Persistent reservations and SPC-2 RESERVE/RELEASE rules.

use scst_host_tests::scst_core::cdb::{Cdb, Out};
use scst_host_tests::scst_core::pr::{
    LoadError, Nexus, Notice, Refused, Registrant, Reservations, SliceWriter, TransportId,
    INVALID_RELEASE, REGISTRATIONS_PREEMPTED, RESERVATIONS_PREEMPTED, RESERVATIONS_RELEASED,
};
use scst_host_tests::scst_core::sense::{self, Sense};

type Prs = Reservations<Vec<Registrant>>;

fn port(name: &str, isid: u8) -> TransportId {
    TransportId::iscsi(name.as_bytes(), Some([0x40, 0, 0, 0, 0, isid])).unwrap()
}

fn nexus(p: &TransportId) -> Nexus<'_> {
    Nexus {
        port: p,
        rel_tgt_id: 1,
    }
}

fn prout_cdb(action: u8, rtype: u8, len: u32) -> [u8; 10] {
    let l = len.to_be_bytes();
    [0x5f, action, rtype, 0, 0, l[0], l[1], l[2], l[3], 0]
}

fn params(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    p
}

/// Runs a PERSISTENT RESERVE OUT; returns the outcome and the notices.
fn prout(
    prs: &mut Prs,
    n: &Nexus<'_>,
    action: u8,
    rtype: u8,
    key: u64,
    sa_key: u64,
) -> (Result<(), Refused>, Vec<(u64, Notice)>) {
    let p = params(key, sa_key, 0);
    let cdb = prout_cdb(action, rtype, p.len() as u32);
    let mut notices = Vec::new();
    let r = prs.persistent_reserve_out(Cdb(&cdb), &p, n, &mut |r: &Registrant, what| {
        notices.push((r.key, what))
    });
    (r.map(|_| ()), notices)
}

fn prin(prs: &Prs, action: u8) -> Vec<u8> {
    let cdb = [0x5e, action, 0, 0, 0, 0, 0, 0x40, 0, 0];
    let mut buf = vec![0u8; 4096];
    let mut out = Out::new(&mut buf);
    prs.persistent_reserve_in(Cdb(&cdb), &mut out).unwrap();
    let n = out.len();
    buf.truncate(n);
    buf
}

fn keys(prs: &Prs) -> Vec<u64> {
    let d = prin(prs, 0);
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    d[8..8 + len]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn generation(prs: &Prs) -> u32 {
    u32::from_be_bytes(prin(prs, 0)[0..4].try_into().unwrap())
}

/// READ RESERVATION: (key, type) or `None`.
fn reservation(prs: &Prs) -> Option<(u64, u8)> {
    let d = prin(prs, 1);
    if d[7] == 0 {
        return None;
    }
    Some((
        u64::from_be_bytes(d[8..16].try_into().unwrap()),
        d[21] & 0xf,
    ))
}

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0];
const WRITE10: [u8; 10] = [0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0];
const TUR: [u8; 6] = [0; 6];
const MODE_SENSE6: [u8; 6] = [0x1a, 0, 0x3f, 0, 0xff, 0];

fn two() -> (TransportId, TransportId, Prs) {
    (
        port("iqn.1994-05.org.test:one", 1),
        port("iqn.1994-05.org.test:two", 2),
        Reservations::new(Vec::new(), false),
    )
}

#[test]
fn transport_ids_are_canonical_and_round_trip() {
    let a = TransportId::iscsi(
        b"IQN.1994-05.Org.Test:One",
        Some([0x40, 0, 1, 0x37, 0, 0xab]),
    )
    .unwrap();
    let b = port("iqn.1994-05.org.test:one", 0);
    let bytes = a.as_bytes();
    assert_eq!(bytes[0], 0x45);
    assert_eq!(bytes.len() % 4, 0);
    assert_eq!(
        usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        bytes.len() - 4
    );
    assert!(bytes[4..].starts_with(b"iqn.1994-05.org.test:one,i,0x4000013700ab\0"));
    let (decoded, used) = TransportId::decode(bytes).unwrap();
    assert_eq!(decoded, a);
    assert_eq!(used, bytes.len());
    assert_ne!(a, b);
    // A name without an ISID covers every port of that initiator.
    let device = TransportId::iscsi(b"iqn.1994-05.org.test:one", None).unwrap();
    assert_eq!(device.as_bytes()[0], 0x05);
    assert!(device.covers(&a) && device.covers(&b));
    assert!(!a.covers(&b));
    // Decoding is strict.
    assert!(TransportId::decode(&[0x45, 0, 0, 3, b'x', 0, 0]).is_none());
    assert!(TransportId::decode(&[0x85, 0, 0, 4, b'x', 0, 0, 0]).is_none());
    assert!(TransportId::iscsi(b"a,b", None).is_none());
    assert!(TransportId::iscsi(&[b'a'; 300], None).is_none());
}

#[test]
fn register_read_keys_and_unregister() {
    let (a, _, mut prs) = two();
    let na = nexus(&a);
    assert_eq!(keys(&prs), Vec::<u64>::new());
    // Unregistered: a non-zero reservation key conflicts.
    assert_eq!(prout(&mut prs, &na, 0, 0, 5, 6).0, Err(Refused::Conflict));
    assert_eq!(prout(&mut prs, &na, 0, 0, 0, 0x1234).0, Ok(()));
    assert_eq!(keys(&prs), vec![0x1234]);
    assert_eq!(generation(&prs), 1);
    // Registered, wrong key: conflict; right key: the key changes.
    assert_eq!(
        prout(&mut prs, &na, 0, 0, 0, 0x99).0,
        Err(Refused::Conflict)
    );
    assert_eq!(prout(&mut prs, &na, 0, 0, 0x1234, 0x99).0, Ok(()));
    assert_eq!(keys(&prs), vec![0x99]);
    // REGISTER AND IGNORE EXISTING KEY ignores the key field.
    assert_eq!(prout(&mut prs, &na, 6, 0, 0xdead, 0x77).0, Ok(()));
    assert_eq!(keys(&prs), vec![0x77]);
    assert_eq!(prout(&mut prs, &na, 0, 0, 0x77, 0).0, Ok(()));
    assert_eq!(keys(&prs), Vec::<u64>::new());
    assert_eq!(generation(&prs), 4);
    // Unregistered with a zero key to register: nothing happens.
    assert_eq!(prout(&mut prs, &na, 6, 0, 0, 0).0, Ok(()));
    assert_eq!(generation(&prs), 4);
}

#[test]
fn service_actions_need_a_registration_and_its_key() {
    let (a, _, mut prs) = two();
    let na = nexus(&a);
    for action in [1, 2, 3, 4, 5] {
        assert_eq!(
            prout(&mut prs, &na, action, 1, 0, 0).0,
            Err(Refused::Conflict)
        );
    }
    prout(&mut prs, &na, 6, 0, 0, 7).0.unwrap();
    assert_eq!(prout(&mut prs, &na, 1, 1, 8, 0).0, Err(Refused::Conflict));
    // Bad type, scope and service action.
    assert_eq!(
        prout(&mut prs, &na, 1, 2, 7, 0).0,
        Err(Refused::Check(Sense::invalid_cdb_field(2, Some(3))))
    );
    assert_eq!(
        prout(&mut prs, &na, 1, 0x11, 7, 0).0,
        Err(Refused::Check(Sense::invalid_cdb_field(2, Some(7))))
    );
    assert_eq!(
        prout(&mut prs, &na, 9, 1, 7, 0).0,
        Err(Refused::Check(Sense::invalid_cdb_field(1, Some(4))))
    );
    // A parameter list of the wrong length.
    let p = params(7, 0, 0);
    let cdb = prout_cdb(1, 1, 20);
    assert_eq!(
        prs.persistent_reserve_out(Cdb(&cdb), &p[..20], &na, &mut |_, _| ())
            .map(|_| ()),
        Err(Refused::Check(sense::PARAMETER_LIST_LENGTH_ERROR))
    );
    // APTPL where the state cannot persist.
    let p = params(7, 8, 1);
    let cdb = prout_cdb(0, 0, 24);
    assert_eq!(
        prs.persistent_reserve_out(Cdb(&cdb), &p, &na, &mut |_, _| ())
            .map(|_| ()),
        Err(Refused::Check(Sense::invalid_param_field(20, Some(0))))
    );
}

#[test]
fn reserve_and_release_every_type() {
    let (a, b, mut prs) = two();
    let (na, nb) = (nexus(&a), nexus(&b));
    prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
    prout(&mut prs, &nb, 6, 0, 0, 0xb).0.unwrap();
    let g = generation(&prs);
    for t in [1u8, 3, 5, 6, 7, 8] {
        assert_eq!(prout(&mut prs, &na, 1, t, 0xa, 0).0, Ok(()), "type {t}");
        let key = if t >= 7 { 0 } else { 0xa };
        assert_eq!(reservation(&prs), Some((key, t)));
        // Again with the same type: nothing; another type: conflict.
        assert_eq!(prout(&mut prs, &na, 1, t, 0xa, 0).0, Ok(()));
        let other = if t == 1 { 3 } else { 1 };
        assert_eq!(
            prout(&mut prs, &na, 1, other, 0xa, 0).0,
            Err(Refused::Conflict)
        );
        if t < 7 {
            assert_eq!(prout(&mut prs, &nb, 1, t, 0xb, 0).0, Err(Refused::Conflict));
            // A registered non-holder's RELEASE does nothing.
            assert_eq!(prout(&mut prs, &nb, 2, t, 0xb, 0).0, Ok(()));
            assert_eq!(reservation(&prs), Some((key, t)));
        }
        // The holder releasing with another type is refused.
        assert_eq!(
            prout(&mut prs, &na, 2, other, 0xa, 0).0,
            Err(Refused::Check(INVALID_RELEASE))
        );
        let (r, notices) = prout(&mut prs, &na, 2, t, 0xa, 0);
        assert_eq!(r, Ok(()));
        assert_eq!(reservation(&prs), None);
        // Registrants-only and all-registrants releases are announced.
        if t >= 5 {
            assert_eq!(notices, vec![(0xb, Notice::Ua(RESERVATIONS_RELEASED))]);
        } else {
            assert!(notices.is_empty());
        }
    }
    // RESERVE and RELEASE leave the generation alone.
    assert_eq!(generation(&prs), g);
}

#[test]
fn access_under_each_type() {
    // (type, registered read, registered write, unregistered read,
    // unregistered write): may the other initiator do it?
    let table = [
        (3u8, false, false, false, false),
        (1, true, false, true, false),
        (6, true, true, false, false),
        (5, true, true, true, false),
        (8, true, true, false, false),
        (7, true, true, true, false),
    ];
    for (t, rr, rw, ur, uw) in table {
        let (a, b, mut prs) = two();
        let (na, nb) = (nexus(&a), nexus(&b));
        prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
        prout(&mut prs, &nb, 6, 0, 0, 0xb).0.unwrap();
        prout(&mut prs, &na, 1, t, 0xa, 0).0.unwrap();
        assert!(prs.any_held());
        for cdb in [&READ10[..], &WRITE10, &TUR, &MODE_SENSE6] {
            assert!(!prs.check(Cdb(cdb), &na, 1), "holder, type {t}");
        }
        assert_eq!(!prs.check(Cdb(&READ10), &nb, 2), rr, "type {t}");
        assert_eq!(!prs.check(Cdb(&WRITE10), &nb, 2), rw, "type {t}");
        prout(&mut prs, &nb, 0, 0, 0xb, 0).0.unwrap();
        assert_eq!(!prs.check(Cdb(&READ10), &nb, 2), ur, "type {t}");
        assert_eq!(!prs.check(Cdb(&WRITE10), &nb, 2), uw, "type {t}");
        // Allowed commands stay allowed; others follow writes.
        for allowed in [
            &TUR[..],
            &[0x12, 0, 0, 0, 0x24, 0],
            &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0],
            &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0],
        ] {
            assert!(!prs.check(Cdb(allowed), &nb, 2), "type {t} {allowed:x?}");
        }
        assert!(prs.check(Cdb(&MODE_SENSE6), &nb, 2));
    }
}

#[test]
fn unregistering_holder_ends_or_keeps_the_reservation() {
    for t in [1u8, 3, 5, 6, 7, 8] {
        let (a, b, mut prs) = two();
        let (na, nb) = (nexus(&a), nexus(&b));
        prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
        prout(&mut prs, &nb, 6, 0, 0, 0xb).0.unwrap();
        prout(&mut prs, &na, 1, t, 0xa, 0).0.unwrap();
        let (r, notices) = prout(&mut prs, &na, 0, 0, 0xa, 0);
        r.unwrap();
        if t >= 7 {
            // All registrants: it stays while any registrant does.
            assert_eq!(reservation(&prs), Some((0, t)));
            assert!(notices.is_empty());
            assert_eq!(prout(&mut prs, &nb, 2, t, 0xb, 0).0, Ok(()));
            assert_eq!(reservation(&prs), None);
        } else {
            assert_eq!(reservation(&prs), None);
            let expected = if t >= 5 {
                vec![(0xb, Notice::Ua(RESERVATIONS_RELEASED))]
            } else {
                vec![]
            };
            assert_eq!(notices, expected, "type {t}");
        }
    }
    // The last all-registrants registrant leaving ends it.
    let (a, _, mut prs) = two();
    let na = nexus(&a);
    prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
    prout(&mut prs, &na, 1, 8, 0xa, 0).0.unwrap();
    prout(&mut prs, &na, 0, 0, 0xa, 0).0.unwrap();
    assert_eq!(reservation(&prs), None);
}

#[test]
fn clear_removes_everything_and_tells_the_others() {
    let (a, b, mut prs) = two();
    let (na, nb) = (nexus(&a), nexus(&b));
    prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
    prout(&mut prs, &nb, 6, 0, 0, 0xb).0.unwrap();
    prout(&mut prs, &na, 1, 3, 0xa, 0).0.unwrap();
    let g = generation(&prs);
    let (r, notices) = prout(&mut prs, &na, 3, 0, 0xa, 0);
    r.unwrap();
    assert_eq!(notices, vec![(0xb, Notice::Ua(RESERVATIONS_PREEMPTED))]);
    assert_eq!(keys(&prs), Vec::<u64>::new());
    assert_eq!(reservation(&prs), None);
    assert_eq!(generation(&prs), g + 1);
    assert!(!prs.any_held());
}

#[test]
fn preempt_without_reservation_removes_registrations() {
    let (a, b, mut prs) = two();
    let (na, nb) = (nexus(&a), nexus(&b));
    prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
    prout(&mut prs, &nb, 6, 0, 0, 0xb).0.unwrap();
    let g = generation(&prs);
    let (r, notices) = prout(&mut prs, &nb, 4, 3, 0xb, 0xa);
    r.unwrap();
    assert_eq!(notices, vec![(0xa, Notice::Ua(REGISTRATIONS_PREEMPTED))]);
    assert_eq!(keys(&prs), vec![0xb]);
    assert_eq!(generation(&prs), g + 1);
    assert_eq!(reservation(&prs), None);
    // No registration with the key: conflict; key zero: refused.
    assert_eq!(
        prout(&mut prs, &nb, 4, 3, 0xb, 0x55).0,
        Err(Refused::Conflict)
    );
    assert_eq!(
        prout(&mut prs, &nb, 4, 3, 0xb, 0).0,
        Err(Refused::Check(Sense::invalid_param_field(8, None)))
    );
}

#[test]
fn preempt_and_abort_takes_the_reservation_over() {
    let (a, b, mut prs) = two();
    let (na, nb) = (nexus(&a), nexus(&b));
    prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
    prout(&mut prs, &nb, 6, 0, 0, 0xb).0.unwrap();
    prout(&mut prs, &na, 1, 5, 0xa, 0).0.unwrap();
    let (r, notices) = prout(&mut prs, &nb, 5, 5, 0xb, 0xa);
    r.unwrap();
    assert_eq!(
        notices,
        vec![
            (0xa, Notice::Ua(REGISTRATIONS_PREEMPTED)),
            (0xa, Notice::Abort)
        ]
    );
    assert_eq!(reservation(&prs), Some((0xb, 5)));
    assert!(prs.check(Cdb(&WRITE10), &na, 1));
    assert!(!prs.check(Cdb(&WRITE10), &nb, 2));

    // The holder preempting itself changes the type; the other registrant
    // hears the reservation it had access to is gone.
    prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
    let (r, notices) = prout(&mut prs, &nb, 4, 1, 0xb, 0xb);
    r.unwrap();
    assert_eq!(notices, vec![(0xa, Notice::Ua(RESERVATIONS_RELEASED))]);
    assert_eq!(reservation(&prs), Some((0xb, 1)));
    assert_eq!(keys(&prs), vec![0xb, 0xa]);

    // All registrants with key zero: everyone else goes.
    let (a, b, mut prs) = two();
    let (na, nb) = (nexus(&a), nexus(&b));
    prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
    prout(&mut prs, &nb, 6, 0, 0, 0xb).0.unwrap();
    prout(&mut prs, &na, 1, 7, 0xa, 0).0.unwrap();
    let (r, notices) = prout(&mut prs, &nb, 4, 3, 0xb, 0);
    r.unwrap();
    assert_eq!(notices, vec![(0xa, Notice::Ua(REGISTRATIONS_PREEMPTED))]);
    assert_eq!(reservation(&prs), Some((0xb, 3)));
    assert_eq!(keys(&prs), vec![0xb]);
}

#[test]
fn read_full_status_and_capabilities() {
    let (a, b, mut prs) = two();
    let (na, nb) = (nexus(&a), nexus(&b));
    prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
    // ALL_TG_PT.
    let p = params(0, 0xb, 0x04);
    let cdb = prout_cdb(6, 0, 24);
    prs.persistent_reserve_out(Cdb(&cdb), &p, &nb, &mut |_, _| ())
        .unwrap();
    prout(&mut prs, &na, 1, 1, 0xa, 0).0.unwrap();
    let d = prin(&prs, 3);
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    assert_eq!(d.len(), 8 + len);
    let first = &d[8..];
    assert_eq!(&first[..8], &0xau64.to_be_bytes());
    assert_eq!(first[12], 0x01);
    assert_eq!(first[13], 1);
    assert_eq!(u16::from_be_bytes([first[18], first[19]]), 1);
    let id_len = u32::from_be_bytes(first[20..24].try_into().unwrap()) as usize;
    assert_eq!(&first[24..24 + id_len], a.as_bytes());
    let second = &first[24 + id_len..];
    assert_eq!(&second[..8], &0xbu64.to_be_bytes());
    assert_eq!(second[12], 0x02);
    // The ALL_TG_PT registration holds through any target port.
    let elsewhere = Nexus {
        port: &b,
        rel_tgt_id: 9,
    };
    assert_eq!(prout(&mut prs, &elsewhere, 6, 0, 0, 0xc).0, Ok(()));
    assert_eq!(keys(&prs), vec![0xa, 0xc]);

    let caps = prin(&prs, 2);
    assert_eq!(caps.len(), 8);
    assert_eq!(u16::from_be_bytes([caps[0], caps[1]]), 8);
    assert_eq!(caps[2] & 0x01, 0, "PTPL_C without a place to keep it");
    assert_eq!(caps[3] & 0x80, 0x80);
    assert_eq!(u16::from_be_bytes([caps[4], caps[5]]), 0xea01);
    // Other service actions are refused as invalid fields, not opcodes.
    let cdb = [0x5e, 4, 0, 0, 0, 0, 0, 0x40, 0, 0];
    let mut buf = vec![0u8; 64];
    assert_eq!(
        prs.persistent_reserve_in(Cdb(&cdb), &mut Out::new(&mut buf)),
        Err(Sense::invalid_cdb_field(1, Some(4)))
    );
}

#[test]
fn spec_i_pt_registers_the_named_ports_all_or_nothing() {
    let (a, b, mut prs) = two();
    let na = nexus(&a);
    let c = port("iqn.1994-05.org.test:three", 3);
    let mut p = params(0, 0x5, 0x08);
    let ids: Vec<u8> = [b.as_bytes(), c.as_bytes()].concat();
    p.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    p.extend_from_slice(&ids);
    let cdb = prout_cdb(0, 0, p.len() as u32);
    prs.persistent_reserve_out(Cdb(&cdb), &p, &na, &mut |_, _| ())
        .unwrap();
    assert_eq!(keys(&prs), vec![5, 5, 5]);
    assert!(prs.registrants()[2].port == c);
    // Naming a registered port registers nobody.
    let (d, _, mut prs) = (port("iqn.1994-05.org.test:four", 4), 0, prs);
    let nd = nexus(&d);
    let mut p = params(0, 0x6, 0x08);
    p.extend_from_slice(&(b.as_bytes().len() as u32).to_be_bytes());
    p.extend_from_slice(b.as_bytes());
    let cdb = prout_cdb(0, 0, p.len() as u32);
    assert!(prs
        .persistent_reserve_out(Cdb(&cdb), &p, &nd, &mut |_, _| ())
        .is_err());
    assert_eq!(keys(&prs), vec![5, 5, 5]);
    // A registered nexus may not use SPEC_I_PT.
    let p = params(5, 0x6, 0x08);
    let cdb = prout_cdb(0, 0, 24);
    assert_eq!(
        prs.persistent_reserve_out(Cdb(&cdb), &p, &na, &mut |_, _| ())
            .map(|_| ()),
        Err(Refused::Check(Sense::invalid_param_field(20, Some(3))))
    );
}

#[test]
fn register_and_move_hands_the_reservation_over() {
    let (a, b, mut prs) = two();
    let (na, nb) = (nexus(&a), nexus(&b));
    prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
    prout(&mut prs, &na, 1, 3, 0xa, 0).0.unwrap();
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&0xau64.to_be_bytes());
    p[8..16].copy_from_slice(&0xbu64.to_be_bytes());
    p[17] = 0x02; // UNREG
    p[18..20].copy_from_slice(&1u16.to_be_bytes());
    p[20..24].copy_from_slice(&(b.as_bytes().len() as u32).to_be_bytes());
    p.extend_from_slice(b.as_bytes());
    let cdb = prout_cdb(7, 3, p.len() as u32);
    prs.persistent_reserve_out(Cdb(&cdb), &p, &na, &mut |_, _| ())
        .unwrap();
    assert_eq!(reservation(&prs), Some((0xb, 3)));
    assert_eq!(keys(&prs), vec![0xb]);
    assert!(prs.check(Cdb(&READ10), &na, 1));
    assert!(!prs.check(Cdb(&READ10), &nb, 2));
    // Only the holder may move it.
    assert_eq!(
        prs.persistent_reserve_out(Cdb(&cdb), &p, &na, &mut |_, _| ())
            .map(|_| ()),
        Err(Refused::Conflict)
    );
}

#[test]
fn spc2_reserve_release_and_their_exceptions() {
    let (a, b, mut prs) = two();
    let (na, nb) = (nexus(&a), nexus(&b));
    let reserve6 = [0x16, 0, 0, 0, 0, 0];
    let release6 = [0x17, 0, 0, 0, 0, 0];
    prs.reserve_spc2(Cdb(&reserve6), 1).unwrap();
    prs.reserve_spc2(Cdb(&reserve6), 1).unwrap();
    assert_eq!(prs.reserve_spc2(Cdb(&reserve6), 2), Err(Refused::Conflict));
    // The other nexus: RELEASE does nothing; INQUIRY passes; the rest
    // conflicts, persistent reservations included.
    prs.release_spc2(Cdb(&release6), &nb, 2).unwrap();
    assert_eq!(prs.spc2_holder(), Some(1));
    assert!(!prs.check(Cdb(&[0x12, 0, 0, 0, 36, 0]), &nb, 2));
    assert!(prs.check(Cdb(&MODE_SENSE6), &nb, 2));
    assert!(prs.check(Cdb(&TUR), &nb, 2));
    assert!(!prs.check(Cdb(&WRITE10), &na, 1));
    assert_eq!(prout(&mut prs, &nb, 6, 0, 0, 0xb).0, Err(Refused::Conflict));
    prs.release_spc2(Cdb(&release6), &na, 1).unwrap();
    assert!(!prs.any_held());
    // Lost with its nexus, and with a reset.
    prs.reserve_spc2(Cdb(&reserve6), 2).unwrap();
    prs.nexus_lost(2);
    assert!(!prs.any_held());
    prs.reserve_spc2(Cdb(&reserve6), 2).unwrap();
    prs.reset();
    assert!(!prs.any_held());
    // Extents and third parties are refused.
    assert_eq!(
        prs.reserve_spc2(Cdb(&[0x16, 1, 0, 0, 0, 0]), 1),
        Err(Refused::Check(Sense::invalid_cdb_field(1, Some(0))))
    );
    assert_eq!(
        prs.reserve_spc2(Cdb(&[0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]), 1),
        Err(Refused::Check(Sense::invalid_cdb_field(1, Some(4))))
    );
    // With registrations: RESERVE conflicts, RELEASE from a registrant is
    // GOOD and changes nothing.
    prout(&mut prs, &na, 6, 0, 0, 0xa).0.unwrap();
    assert_eq!(prs.reserve_spc2(Cdb(&reserve6), 1), Err(Refused::Conflict));
    prout(&mut prs, &na, 1, 1, 0xa, 0).0.unwrap();
    assert_eq!(prs.release_spc2(Cdb(&release6), &na, 1), Ok(()));
    assert_eq!(
        prs.release_spc2(Cdb(&release6), &nb, 2),
        Err(Refused::Conflict)
    );
    assert_eq!(reservation(&prs), Some((0xa, 1)));
}

fn saved(prs: &Prs) -> Vec<u8> {
    let mut buf = vec![0u8; prs.saved_len_bound()];
    let mut w = SliceWriter::new(&mut buf);
    prs.save(&mut w).unwrap();
    w.written().to_vec()
}

#[test]
fn aptpl_state_saves_and_loads() {
    let (a, b, _) = two();
    let mut prs: Prs = Reservations::new(Vec::new(), true);
    let (na, nb) = (nexus(&a), nexus(&b));
    // REGISTER with APTPL.
    let p = params(0, 0xa, 0x01);
    let cdb = prout_cdb(0, 0, 24);
    prs.persistent_reserve_out(Cdb(&cdb), &p, &na, &mut |_, _| ())
        .unwrap();
    assert!(prs.aptpl);
    let p = params(0, 0xb, 0x05);
    prs.persistent_reserve_out(Cdb(&cdb), &p, &nb, &mut |_, _| ())
        .unwrap();
    prout(&mut prs, &na, 1, 5, 0xa, 0).0.unwrap();
    let caps = prin(&prs, 2);
    assert_eq!(caps[2] & 0x01, 0x01, "PTPL_C");
    assert_eq!(caps[3] & 0x01, 0x01, "PTPL_A");
    let text = saved(&prs);
    let shown = String::from_utf8(text.clone()).unwrap();
    assert!(
        shown.starts_with("# scst-rs persistent reservations"),
        "{shown}"
    );
    assert!(
        shown.contains("\nreservation 5\n") && shown.ends_with("end\n"),
        "{shown}"
    );

    let mut back: Prs = Reservations::new(Vec::new(), true);
    assert_eq!(back.load(&text), Ok(true));
    assert_eq!(keys(&back), vec![0xa, 0xb]);
    assert_eq!(reservation(&back), Some((0xa, 5)));
    assert_eq!(generation(&back), generation(&prs));
    assert_eq!(saved(&back), text);
    assert!(back.registrants()[1].rel_tgt_id.is_none());
    assert!(back.check(Cdb(&WRITE10), &nexus(&port("iqn.x:other", 1)), 9));
    assert!(!back.check(Cdb(&WRITE10), &nb, 9));

    // Cut short, or damaged: nothing is taken.
    let mut other: Prs = Reservations::new(Vec::new(), true);
    let cut = &text[..text.len() - 4];
    assert_eq!(other.load(cut), Err(LoadError::Incomplete));
    let mut bad = text.clone();
    let at = shown.find("registrant").unwrap() + 11;
    bad[at] = b'z';
    assert_eq!(other.load(&bad), Err(LoadError::BadLine(5)));
    assert_eq!(
        other.load(b"aptpl 1\nend\ngeneration 3\n"),
        Err(LoadError::BadLine(3))
    );
    assert_eq!(keys(&other), Vec::<u64>::new());
    // Saved without APTPL: the state did not persist.
    assert_eq!(other.load(b"aptpl 0\ngeneration 3\nend\n"), Ok(false));
    assert_eq!(generation(&other), 0);
    // A reservation whose holder is not registered is dropped.
    assert_eq!(other.load(b"aptpl 1\nreservation 1\nend\n"), Ok(true));
    assert_eq!(reservation(&other), None);
    // APTPL cleared by a later REGISTER: saved as not persisting.
    prout(&mut prs, &na, 0, 0, 0xa, 0xc).0.unwrap();
    assert!(!prs.aptpl);
    let mut again: Prs = Reservations::new(Vec::new(), true);
    assert_eq!(again.load(&saved(&prs)), Ok(false));
}

/// An SRP initiator port's TransportID (SPC-4 7.6.4.5): protocol 4, format
/// 0, the 16-byte port identifier at byte 8, 24 bytes in all; it decodes
/// back to itself, and covers only itself.
#[test]
fn srp_transport_id() {
    let port: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
    let id = TransportId::srp(port);
    let b = id.as_bytes();
    assert_eq!(b.len(), 24);
    assert_eq!(b[0], 0x04);
    assert_eq!(&b[1..8], &[0; 7]);
    assert_eq!(&b[8..24], &port);
    let (back, used) = TransportId::decode(b).unwrap();
    assert_eq!(used, 24);
    assert_eq!(back, id);
    let mut other = port;
    other[15] ^= 1;
    assert_ne!(TransportId::srp(other), id);
}
