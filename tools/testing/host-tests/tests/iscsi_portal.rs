// SPDX-License-Identifier: GPL-2.0

//! Portal addresses as `add_attribute portal` takes them, their display,
//! and `allowed_portal` wildcard matching.

use scst_host_tests::scst_iscsi::portal::*;

fn v4(a: [u8; 4], port: u16) -> Portal {
    Portal {
        ip: Ip::V4(a),
        port,
    }
}

fn v6(groups: [u16; 8], port: u16) -> Portal {
    let mut b = [0u8; 16];
    for (pair, g) in b.chunks_exact_mut(2).zip(groups) {
        pair.copy_from_slice(&g.to_be_bytes());
    }
    Portal {
        ip: Ip::V6(b),
        port,
    }
}

#[test]
fn ipv4_portals_parse_with_and_without_port() {
    assert_eq!(Portal::parse("0.0.0.0"), Ok(v4([0; 4], 3260)));
    assert_eq!(Portal::parse("10.1.2.3:3261"), Ok(v4([10, 1, 2, 3], 3261)));
    assert_eq!(
        Portal::parse("255.255.255.255:65535"),
        Ok(v4([255; 4], 65535))
    );
    for bad in [
        "",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "1.2.3.04",
        "a.b.c.d",
        "1..2.3",
        "-1.2.3.4",
    ] {
        assert_eq!(Portal::parse(bad), Err(PortalError::BadAddress), "{bad}");
    }
    for bad in [
        "1.2.3.4:",
        "1.2.3.4:0",
        "1.2.3.4:65536",
        "1.2.3.4:+1",
        "1.2.3.4:x",
        "1.2.3.4:999999",
    ] {
        assert_eq!(Portal::parse(bad), Err(PortalError::BadPort), "{bad}");
    }
}

#[test]
fn ipv6_portals_parse_bracketed_or_bare() {
    assert_eq!(Portal::parse("[::]"), Ok(v6([0; 8], 3260)));
    assert_eq!(Portal::parse("::"), Ok(v6([0; 8], 3260)));
    assert_eq!(
        Portal::parse("[::1]:3262"),
        Ok(v6([0, 0, 0, 0, 0, 0, 0, 1], 3262))
    );
    assert_eq!(
        Portal::parse("fe80::1:2"),
        Ok(v6([0xfe80, 0, 0, 0, 0, 0, 1, 2], 3260))
    );
    assert_eq!(
        Portal::parse("[2001:db8:0:0:1:0:0:1]:1"),
        Ok(v6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], 1))
    );
    assert_eq!(
        Portal::parse("1:2:3:4:5:6:7::"),
        Ok(v6([1, 2, 3, 4, 5, 6, 7, 0], 3260))
    );
    for bad in [
        "[::1",
        "[::1]3260",
        "1::2::3",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7",
        "[12345::]",
        "[g::]",
        "1:2:3:4:5:6:7:8::",
        "[]",
        "[::ffff:1.2.3.4]",
    ] {
        assert_eq!(Portal::parse(bad), Err(PortalError::BadAddress), "{bad}");
    }
    assert_eq!(Portal::parse("[::1]:0"), Err(PortalError::BadPort));
}

#[test]
fn portals_display_as_send_targets_writes_them() {
    let shown = |s: &str| Portal::parse(s).unwrap().to_string();
    assert_eq!(shown("10.0.0.1"), "10.0.0.1:3260");
    assert_eq!(shown("[::]"), "[::]:3260");
    assert_eq!(shown("[::1]:3261"), "[::1]:3261");
    assert_eq!(shown("2001:DB8:0:0:1:0:0:1"), "[2001:db8::1:0:0:1]:3260");
    assert_eq!(shown("1:0:0:2:0:0:0:3"), "[1:0:0:2::3]:3260");
    assert_eq!(shown("1:2:3:4:5:6:0:8"), "[1:2:3:4:5:6:0:8]:3260");
    assert_eq!(shown("fe80::"), "[fe80::]:3260");
    // What is shown parses back to the same portal.
    for p in Portal::DEFAULTS {
        assert_eq!(Portal::parse(&p.to_string()), Ok(p));
    }
}

#[test]
fn wildcards_match_like_a_shell() {
    for (pattern, text) in [
        ("*", ""),
        ("*", "10.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("10.0.0.*", "10.0.0.17"),
        ("10.?.0.1", "10.1.0.1"),
        ("*.1", "192.168.0.1"),
        ("1*1", "11"),
        ("fe80::*", "fe80::1"),
        ("**a", "a"),
        ("a*b*c", "axxbyybzc"),
    ] {
        assert!(
            wildcard_match(pattern.as_bytes(), text.as_bytes()),
            "{pattern} {text}"
        );
    }
    for (pattern, text) in [
        ("", "1"),
        ("10.0.0.1", "10.0.0.10"),
        ("10.0.0.?", "10.0.0.17"),
        ("*.2", "192.168.0.1"),
        ("a*b*c", "axxbyyb"),
        ("?", ""),
    ] {
        assert!(
            !wildcard_match(pattern.as_bytes(), text.as_bytes()),
            "{pattern} {text}"
        );
    }
}

#[test]
fn allowed_portal_lists() {
    let none: [&[u8]; 0] = [];
    assert!(portal_allowed(none.into_iter(), b"10.0.0.1"));
    let list: [&[u8]; 2] = [b"10.0.0.*", b"::1"];
    assert!(portal_allowed(list.into_iter(), b"10.0.0.5"));
    // The kernel brackets IPv6 addresses; patterns are written without.
    assert!(portal_allowed(list.into_iter(), b"[::1]"));
    assert!(!portal_allowed(list.into_iter(), b"127.0.0.1"));
    assert!(!portal_allowed(list.into_iter(), b"[::2]"));
}
