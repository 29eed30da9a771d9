// SPDX-License-Identifier: GPL-2.0

use scst_host_tests::scst_passthrough::rules::*;

#[test]
fn hctl_names() {
    assert_eq!(
        parse_hctl("2:0:1:3"),
        Some(Hctl {
            host: 2,
            channel: 0,
            id: 1,
            lun: 3
        })
    );
    assert_eq!(
        parse_hctl("0:0:0:18446744073709551615").map(|h| h.lun),
        Some(u64::MAX)
    );
    assert_eq!(parse_hctl("10:2:30:4").unwrap().to_string(), "10:2:30:4");
    for bad in [
        "",
        "1:2:3",
        "1:2:3:4:5",
        "a:0:0:0",
        "1::0:0",
        " 1:0:0:0",
        "1:0:0:0 ",
        "-1:0:0:0",
        "+1:0:0:0",
        "4294967296:0:0:0",
        "0:0:0:18446744073709551616",
        "disk1",
    ] {
        assert_eq!(parse_hctl(bad), None, "{bad:?}");
    }
}

#[test]
fn handlers_are_scsts() {
    let names: Vec<_> = HANDLERS.iter().map(|h| h.name).collect();
    for n in [
        "dev_disk",
        "dev_disk_perf",
        "dev_tape",
        "dev_tape_perf",
        "dev_changer",
        "dev_processor",
        "dev_raid",
        "dev_cdrom",
        "dev_modisk",
        "dev_modisk_perf",
    ] {
        assert!(names.contains(&n), "{n}");
    }
    for h in HANDLERS {
        assert_eq!(h.perf, h.name.ends_with("_perf"), "{}", h.name);
        let base = h.name.trim_end_matches("_perf");
        let plain = HANDLERS.iter().find(|p| p.name == base).unwrap();
        assert_eq!(plain.device_type, h.device_type, "{}", h.name);
    }
    let ty = |n: &str| HANDLERS.iter().find(|h| h.name == n).unwrap().device_type;
    assert_eq!(
        [
            ty("dev_disk"),
            ty("dev_tape"),
            ty("dev_processor"),
            ty("dev_cdrom"),
            ty("dev_modisk"),
            ty("dev_changer"),
            ty("dev_raid")
        ],
        [0x00, 0x01, 0x03, 0x05, 0x07, 0x08, 0x0c]
    );
}

#[test]
fn timeouts_follow_the_medium() {
    // A disk's READ is quick; its FORMAT UNIT is not.
    assert_eq!(timeout_ms(0x00, 0x28), 60_000);
    assert_eq!(timeout_ms(0x00, 0x04), 3_600_000);
    // A tape's REWIND, SPACE or ERASE may cross a whole cartridge.
    for op in [0x01, 0x11, 0x19] {
        assert!(timeout_ms(0x01, op) >= 4 * 3_600_000, "{op:#x}");
    }
    // A changer's MOVE MEDIUM takes minutes.
    assert!(timeout_ms(0x08, 0xa5) >= 10 * 60_000);
    for ty in [0x00, 0x01, 0x03, 0x05, 0x07, 0x08, 0x0c] {
        for op in 0..=255u8 {
            assert!(timeout_ms(ty, op) >= 60_000);
        }
    }
}

#[test]
fn perf_takes_only_block_reads_and_writes() {
    for op in [0x08, 0x28, 0xa8, 0x88] {
        assert_eq!(perf_rw(op), Some(false));
    }
    for op in [0x0a, 0x2a, 0xaa, 0x8a] {
        assert_eq!(perf_rw(op), Some(true));
    }
    for op in [0x00, 0x12, 0x25, 0x2f, 0x35, 0x41, 0x89, 0x93, 0x9e] {
        assert_eq!(perf_rw(op), None, "{op:#x}");
    }
}

#[test]
fn read_only_refuses_what_writes() {
    // A disk: the writes of SBC-4, not its reads.
    for op in [
        0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0x41, 0x93, 0x42, 0x89, 0x04, 0x07, 0x48,
    ] {
        assert!(writes_medium(0x00, op), "{op:#x}");
    }
    for op in [
        0x00, 0x08, 0x28, 0x88, 0x12, 0x25, 0x9e, 0x2f, 0x35, 0x1a, 0x5e, 0xa0,
    ] {
        assert!(!writes_medium(0x00, op), "{op:#x}");
    }
    // A tape: WRITE FILEMARKS and ERASE too; READ and SPACE are not.
    for op in [0x0a, 0x10, 0x19] {
        assert!(writes_medium(0x01, op), "{op:#x}");
    }
    for op in [0x08, 0x11, 0x01, 0x2b, 0x1b] {
        assert!(!writes_medium(0x01, op), "{op:#x}");
    }
    // A changer moves media, which a read-only LUN does not forbid; 0x07
    // is its INITIALIZE ELEMENT STATUS.
    for op in [0xa5, 0x07, 0xb8] {
        assert!(!writes_medium(0x08, op), "{op:#x}");
    }
    assert!(is_mode_select(0x15) && is_mode_select(0x55) && !is_mode_select(0x1a));
}

#[test]
fn write_protect_bit_where_the_type_has_it() {
    assert_eq!(write_protect_byte(0x00, 0x1a), Some(2));
    assert_eq!(write_protect_byte(0x00, 0x5a), Some(3));
    assert_eq!(write_protect_byte(0x01, 0x1a), Some(2));
    assert_eq!(write_protect_byte(0x08, 0x1a), None);
    assert_eq!(write_protect_byte(0x05, 0x5a), None);
    assert_eq!(write_protect_byte(0x00, 0x28), None);
}
