// SPDX-License-Identifier: GPL-2.0

//! Sense data, CDB access, LUN addressing and the SBC command emulation.

use scst_host_tests::scst_core::cdb::{self, Cdb, Out};
use scst_host_tests::scst_core::sense::{self, Sense, SenseFormat};
use scst_host_tests::scst_vdisk::sbc::{self, Action, DiskInfo, ModeState};

fn disk(blocks: u64, block_size: u32) -> DiskInfo<'static> {
    DiskInfo {
        vendor: b"SCST_FIO",
        product: b"disk1",
        revision: b"0100",
        t10_dev_id: b"disk1-0001",
        usn: b"1a2b3c4d",
        naa_id: [0x30, 1, 2, 3, 4, 5, 6, 7],
        rel_tgt_id: 1,
        tpgs: 0,
        target_port_group: None,
        blocks,
        block_size,
        read_only: false,
        thin: true,
        rotational: false,
        lbppb_exp: 0,
        removable: false,
        medium: true,
        atomic: None,
        sanitize: sbc::SanitizeState::Idle,
    }
}

const MODE: ModeState = ModeState {
    wce: true,
    d_sense: false,
    tas: false,
    swp: false,
};

fn run(cdb: &[u8], d: &DiskInfo<'_>) -> (Result<Action, Sense>, Vec<u8>) {
    let mut buf = vec![0u8; 4096];
    let mut out = Out::new(&mut buf);
    let r = sbc::parse(Cdb(cdb), d, &MODE, &mut out);
    let n = out.len().min(4096);
    buf.truncate(n);
    (r, buf)
}

#[test]
fn fixed_sense_with_field_pointer() {
    let mut b = [0u8; sense::MAX_SENSE_LEN];
    let n = Sense::invalid_cdb_field(2, Some(5)).encode(SenseFormat::Fixed, &mut b);
    assert_eq!(n, 18);
    assert_eq!(b[0], 0x70);
    assert_eq!(b[2], 0x05);
    assert_eq!(b[7], 10);
    assert_eq!((b[12], b[13]), (0x24, 0x00));
    assert_eq!(&b[15..18], &[0x80 | 0x40 | 0x08 | 5, 0, 2]);
    assert_eq!(sense::decode(&b[..n]), Some((5, 0x24, 0)));
}

#[test]
fn descriptor_sense_with_info() {
    let mut b = [0u8; sense::MAX_SENSE_LEN];
    let n = sense::LBA_OUT_OF_RANGE
        .with_info(0x1_0000_0000)
        .encode(SenseFormat::Descriptor, &mut b);
    assert_eq!(n, 20);
    assert_eq!(&b[..4], &[0x72, 0x05, 0x21, 0x00]);
    assert_eq!(b[7], 12);
    assert_eq!(&b[8..12], &[0x00, 0x0a, 0x80, 0x00]);
    assert_eq!(&b[12..20], &0x1_0000_0000u64.to_be_bytes());
    // Fixed format cannot hold a 64-bit INFORMATION: VALID stays clear.
    let n = sense::LBA_OUT_OF_RANGE
        .with_info(0x1_0000_0000)
        .encode(SenseFormat::Fixed, &mut b);
    assert_eq!((n, b[0]), (18, 0x70));
}

#[test]
fn sense_truncates_to_short_buffer() {
    let mut b = [0u8; 8];
    assert_eq!(sense::INVALID_OPCODE.encode(SenseFormat::Fixed, &mut b), 8);
}

#[test]
fn lun_addressing() {
    assert_eq!(cdb::encode_lun(5), [0, 5, 0, 0, 0, 0, 0, 0]);
    assert_eq!(cdb::encode_lun(300), [0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
    for lun in [0, 1, 255, 256, 300, cdb::MAX_LUN] {
        assert_eq!(cdb::decode_lun(cdb::encode_lun(lun)), Some(lun));
    }
    assert_eq!(cdb::lun_from_linux(7), [0, 7, 0, 0, 0, 0, 0, 0]);
    assert_eq!(cdb::lun_from_linux(0x412c), [0x41, 0x2c, 0, 0, 0, 0, 0, 0]);
    assert_eq!(cdb::lun_to_linux(7), 7);
    assert_eq!(cdb::lun_to_linux(300), 0x412c);
    for lun in [0, 1, 255, 256, 300, cdb::MAX_LUN] {
        assert_eq!(
            cdb::lun_from_linux(cdb::lun_to_linux(lun)),
            cdb::encode_lun(lun)
        );
    }
    assert_eq!(cdb::decode_lun(cdb::lun_from_linux(0x412c)), Some(300));
    // Bus number in peripheral addressing, second level: not ours.
    assert_eq!(cdb::decode_lun([0x01, 5, 0, 0, 0, 0, 0, 0]), None);
    assert_eq!(cdb::decode_lun([0, 5, 0, 1, 0, 0, 0, 0]), None);
    let wlun = cdb::REPORT_LUNS_WLUN.to_be_bytes();
    assert_eq!(cdb::decode_lun(wlun), Some(cdb::REPORT_LUNS_WLUN));
}

#[test]
fn report_luns_selects() {
    let luns = [0u64, 1, 300];
    let mut buf = [0u8; 64];
    let c = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0];
    let mut out = Out::new(&mut buf);
    cdb::report_luns(Cdb(&c), luns.iter().copied(), &mut out).unwrap();
    assert_eq!(out.len(), 8 + 24);
    assert_eq!(&buf[..4], &24u32.to_be_bytes());
    assert_eq!(&buf[24..26], &[0x41, 0x2c]);
    let c = [0xa0, 0, 2, 0, 0, 0, 0, 0, 0, 64, 0, 0];
    let mut out = Out::new(&mut buf);
    cdb::report_luns(Cdb(&c), luns.iter().copied(), &mut out).unwrap();
    assert_eq!(out.len(), 8 + 32);
    assert_eq!(&buf[32..34], &[0xc1, 0x01]);
    let c = [0xa0, 0, 7, 0, 0, 0, 0, 0, 0, 64, 0, 0];
    let mut out = Out::new(&mut buf);
    assert_eq!(
        cdb::report_luns(Cdb(&c), luns.iter().copied(), &mut out),
        Err(Sense::invalid_cdb_field(2, None))
    );
    let c = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0];
    let mut out = Out::new(&mut buf);
    assert!(cdb::report_luns(Cdb(&c), luns.iter().copied(), &mut out).is_err());
}

#[test]
fn unknown_opcode_and_service_action() {
    let d = disk(1000, 512);
    assert_eq!(
        run(&[0xc0, 0, 0, 0, 0, 0], &d).0,
        Err(sense::INVALID_OPCODE)
    );
    let r = run(&[0x9e, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], &d).0;
    assert_eq!(r, Err(Sense::invalid_cdb_field(1, Some(4))));
}

#[test]
fn reserved_bits_point_at_the_field() {
    let d = disk(1000, 512);
    // READ(10) with RDPROTECT=1: no protection information here.
    let r = run(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], &d).0;
    assert_eq!(r, Err(Sense::invalid_cdb_field(1, Some(5))));
    // TEST UNIT READY with a reserved bit.
    let r = run(&[0x00, 0, 0, 0x10, 0, 0], &d).0;
    assert_eq!(r, Err(Sense::invalid_cdb_field(3, Some(4))));
    // A CDB shorter than its group.
    assert!(run(&[0x28, 0, 0, 0], &d).0.is_err());
}

#[test]
fn read_write_ranges() {
    let d = disk(1000, 512);
    assert_eq!(
        run(&[0x28, 0, 0, 0, 3, 0xe6, 0, 0, 2, 0], &d).0,
        Ok(Action::Read {
            lba: 998,
            blocks: 2
        })
    );
    assert_eq!(
        run(&[0x28, 0, 0, 0, 3, 0xe7, 0, 0, 2, 0], &d).0,
        Err(sense::LBA_OUT_OF_RANGE)
    );
    // READ(6) length 0 means 256 blocks.
    assert_eq!(
        run(&[0x08, 0, 0, 0, 0, 0], &d).0,
        Ok(Action::Read {
            lba: 0,
            blocks: 256
        })
    );
    // READ(16) past 2^64 wraps in no arithmetic.
    let mut c = [0u8; 16];
    c[0] = 0x88;
    c[2..10].copy_from_slice(&u64::MAX.to_be_bytes());
    c[13] = 1;
    assert_eq!(run(&c, &d).0, Err(sense::LBA_OUT_OF_RANGE));
    // WRITE(10) FUA.
    assert_eq!(
        run(&[0x2a, 0x08, 0, 0, 0, 0, 0, 0, 1, 0], &d).0,
        Ok(Action::Write {
            lba: 0,
            blocks: 1,
            fua: true
        })
    );
    let mut ro = disk(1000, 512);
    ro.read_only = true;
    assert_eq!(
        run(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], &ro).0,
        Err(sense::WRITE_PROTECTED)
    );
    assert_eq!(
        run(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &ro).0,
        Ok(Action::Read { lba: 0, blocks: 1 })
    );
    let w = Action::Write {
        lba: 0,
        blocks: 3,
        fua: false,
    };
    assert_eq!(w.data_out_len(4096), 3 * 4096);
}

#[test]
fn write_through_when_cache_disabled() {
    let d = disk(1000, 512);
    let mut buf = [0u8; 64];
    let mode = ModeState {
        wce: false,
        d_sense: false,
        tas: false,
        swp: false,
    };
    let r = sbc::parse(
        Cdb(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
        &d,
        &mode,
        &mut Out::new(&mut buf),
    );
    assert_eq!(
        r,
        Ok(Action::Write {
            lba: 0,
            blocks: 1,
            fua: true
        })
    );
}

#[test]
fn inquiry_reports_alua_when_in_a_device_group() {
    let mut d = disk(1000, 512);
    let (_, data) = run(&[0x12, 0, 0, 0, 96, 0], &d);
    assert_eq!(data[5] & 0x30, 0);
    assert_eq!(data[5] & 0x08, 0x08, "3PC");
    let (_, plain) = run(&[0x12, 1, 0x83, 0, 255, 0], &d);
    d.tpgs = 3;
    d.target_port_group = Some(0x0101);
    let (_, data) = run(&[0x12, 0, 0, 0, 96, 0], &d);
    assert_eq!(data[5] & 0x30, 0x30);
    let (_, vpd) = run(&[0x12, 1, 0x83, 0, 255, 0], &d);
    assert_eq!(vpd.len(), plain.len() + 8);
    assert_eq!(&vpd[plain.len()..], &[0x01, 0x15, 0, 4, 0, 0, 1, 1]);
    assert_eq!(u16::from_be_bytes([vpd[2], vpd[3]]) as usize + 4, vpd.len());
}

#[test]
fn inquiry_standard_and_vpd() {
    let d = disk(1000, 512);
    let (r, data) = run(&[0x12, 0, 0, 0, 96, 0], &d);
    assert_eq!(r, Ok(Action::DataIn(96)));
    assert_eq!(data.len(), 96);
    assert_eq!(data[4] as usize + 5, 96);
    assert_eq!(&data[8..16], b"SCST_FIO");
    assert_eq!(&data[16..21], b"disk1");
    assert_eq!(data[7] & 0x02, 0x02);
    let (_, data) = run(&[0x12, 1, 0, 0, 255, 0], &d);
    assert_eq!(
        &data[4..],
        &[0x00, 0x80, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2]
    );
    for page in [0x80u8, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2] {
        let (r, data) = run(&[0x12, 1, page, 0, 255, 0], &d);
        assert_eq!(r, Ok(Action::DataIn(255)), "page {page:#x}");
        assert_eq!(data[1], page);
        assert_eq!(
            u16::from_be_bytes([data[2], data[3]]) as usize + 4,
            data.len(),
            "page {page:#x} length"
        );
    }
    let (_, b0) = run(&[0x12, 1, 0xb0, 0, 255, 0], &d);
    assert_eq!(b0.len(), 64);
    let (_, b2) = run(&[0x12, 1, 0xb2, 0, 255, 0], &d);
    assert_eq!(b2[5] & 0x80, 0x80);
    assert_eq!(
        run(&[0x12, 1, 0x99, 0, 255, 0], &d).0,
        Err(Sense::invalid_cdb_field(2, None))
    );
    assert_eq!(
        run(&[0x12, 0, 0x80, 0, 255, 0], &d).0,
        Err(Sense::invalid_cdb_field(2, None))
    );
    // CMDDT (obsolete) is a reserved bit now.
    assert_eq!(
        run(&[0x12, 2, 0, 0, 255, 0], &d).0,
        Err(Sense::invalid_cdb_field(1, Some(1)))
    );
}

#[test]
fn read_capacity() {
    let d = disk(0x1_0000_0001, 4096);
    let (r, data) = run(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &d);
    assert_eq!(r, Ok(Action::DataIn(8)));
    assert_eq!(&data[..8], &[0xff, 0xff, 0xff, 0xff, 0, 0, 0x10, 0]);
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x10;
    c[13] = 32;
    let (r, data) = run(&c, &d);
    assert_eq!(r, Ok(Action::DataIn(32)));
    assert_eq!(&data[..8], &0x1_0000_0000u64.to_be_bytes());
    assert_eq!(&data[8..12], &4096u32.to_be_bytes());
    assert_eq!(data[14] & 0xc0, 0xc0);
}

#[test]
fn mode_sense_pages() {
    let d = disk(1000, 512);
    let (r, data) = run(&[0x1a, 0, 0x3f, 0, 255, 0], &d);
    assert_eq!(r, Ok(Action::DataIn(255)));
    assert_eq!(data[0] as usize + 1, data.len());
    assert_eq!(data[3], 8);
    assert_eq!(&data[8..12], &[0, 0, 2, 0]);
    // Caching page with WCE.
    let (_, data) = run(&[0x1a, 0x08, 0x08, 0, 255, 0], &d);
    assert_eq!(&data[4..7], &[0x08, 0x12, 0x04]);
    // Changeable values of the control page: D_SENSE.
    let (_, data) = run(&[0x5a, 0x08, 0x4a, 0, 0, 0, 0, 0, 255, 0], &d);
    assert_eq!(&data[8..11], &[0x0a, 0x0a, 0x04]);
    assert_eq!(
        u16::from_be_bytes([data[0], data[1]]) as usize + 2,
        data.len()
    );
    // Long LBA block descriptor.
    let (_, data) = run(&[0x5a, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0], &d);
    assert_eq!(data[4] & 1, 1);
    assert_eq!(u16::from_be_bytes([data[6], data[7]]), 16);
    assert_eq!(
        run(&[0x1a, 0, 0xc8, 0, 255, 0], &d).0,
        Err(sense::SAVING_PARAMS_UNSUPPORTED)
    );
    assert_eq!(
        run(&[0x1a, 0, 0x05, 0, 255, 0], &d).0,
        Err(Sense::invalid_cdb_field(2, Some(5)))
    );
    assert_eq!(
        run(&[0x1a, 0, 0x08, 1, 255, 0], &d).0,
        Err(Sense::invalid_cdb_field(3, None))
    );
}

#[test]
fn control_page_tas_is_changeable() {
    let d = disk(1000, 512);
    // MODE SENSE(6), control page (0Ah), changeable values: TAS is byte 5
    // of the page, after the 4-byte header (no block descriptor: DBD).
    let (_, mask) = run(&[0x1a, 0x08, 0x4a, 0, 255, 0], &d);
    assert_eq!(mask[4], 0x0a);
    assert_eq!(mask[4 + 5] & 0x40, 0x40);
    let (_, current) = run(&[0x1a, 0x08, 0x0a, 0, 255, 0], &d);
    assert_eq!(current[4 + 5] & 0x40, 0);
    let mut params = current.clone();
    params[0] = 0;
    params[4 + 5] |= 0x40;
    let new = sbc::mode_select(&params, false, &d, &MODE).unwrap();
    assert!(new.tas);
    let mut buf = vec![0u8; 255];
    let mut out = Out::new(&mut buf);
    sbc::parse(Cdb(&[0x1a, 0x08, 0x0a, 0, 255, 0]), &d, &new, &mut out).unwrap();
    assert_eq!(buf[4 + 5] & 0x40, 0x40);
}

#[test]
fn mode_select_changes_only_changeable_bits() {
    let d = disk(1000, 512);
    let (_, sensed) = run(&[0x1a, 0x08, 0x08, 0, 255, 0], &d);
    let mut params = sensed.clone();
    params[0] = 0;
    params[6] &= !0x04; // clear WCE
    let new = sbc::mode_select(&params, false, &d, &MODE).unwrap();
    assert_eq!(
        new,
        ModeState {
            wce: false,
            d_sense: false,
            tas: false,
            swp: false,
        }
    );
    let mut bad = sensed.clone();
    bad[0] = 0;
    bad[7] = 0x01; // a bit that is not changeable
    assert_eq!(
        sbc::mode_select(&bad, false, &d, &MODE),
        Err(Sense::invalid_param_field(7, None))
    );
    let mut bad_len = sensed.clone();
    bad_len[5] = 0x11;
    assert!(sbc::mode_select(&bad_len, false, &d, &MODE).is_err());
    assert_eq!(
        sbc::mode_select(&[0, 0], false, &d, &MODE),
        Err(sense::PARAMETER_LIST_LENGTH_ERROR)
    );
    // Block descriptor with another block size.
    let bd = [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0];
    assert_eq!(
        sbc::mode_select(&bd, false, &d, &MODE),
        Err(Sense::invalid_param_field(9, None))
    );
    // SP is refused, PF is required with data.
    assert_eq!(
        run(&[0x15, 0x11, 0, 0, 12, 0], &d).0,
        Err(Sense::invalid_cdb_field(1, Some(0)))
    );
    assert_eq!(
        run(&[0x15, 0x00, 0, 0, 12, 0], &d).0,
        Err(Sense::invalid_cdb_field(1, Some(4)))
    );
    assert_eq!(
        run(&[0x15, 0x10, 0, 0, 12, 0], &d).0,
        Ok(Action::ModeSelect {
            param_len: 12,
            ten: false
        })
    );
}

#[test]
fn unmap_and_write_same() {
    let d = disk(1000, 512);
    assert_eq!(
        run(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &d).0,
        Ok(Action::Unmap { param_len: 24 })
    );
    assert_eq!(
        run(&[0x42, 0, 0, 0, 0, 0, 0, 0, 4, 0], &d).0,
        Err(sense::PARAMETER_LIST_LENGTH_ERROR)
    );
    let mut p = vec![0, 22, 0, 16, 0, 0, 0, 0];
    p.extend_from_slice(&10u64.to_be_bytes());
    p.extend_from_slice(&5u32.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    let ranges: Vec<_> = sbc::parse_unmap(&p, &d).unwrap().collect();
    assert_eq!(ranges, vec![sbc::UnmapRange { lba: 10, blocks: 5 }]);
    p[8..16].copy_from_slice(&996u64.to_be_bytes());
    assert!(matches!(sbc::parse_unmap(&p, &d), Err(e) if e == sense::LBA_OUT_OF_RANGE));
    let mut thick = disk(1000, 512);
    thick.thin = false;
    assert_eq!(
        run(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &thick).0,
        Err(sense::INVALID_OPCODE)
    );
    assert_eq!(
        run(&[0x41, 0x08, 0, 0, 0, 1, 0, 0, 8, 0], &d).0,
        Ok(Action::WriteSame {
            lba: 1,
            blocks: 8,
            unmap: true,
            no_data: false
        })
    );
    // Zero blocks: to the end of the medium.
    assert_eq!(
        run(&[0x41, 0, 0, 0, 0, 1, 0, 0, 0, 0], &d).0,
        Ok(Action::WriteSame {
            lba: 1,
            blocks: 999,
            unmap: false,
            no_data: false
        })
    );
    assert_eq!(
        run(&[0x41, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 0], &d).0,
        Err(sense::LBA_OUT_OF_RANGE)
    );
    assert_eq!(
        run(
            &[0x41, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &disk(u64::from(sbc::MAX_WRITE_SAME_BLOCKS) + 1, 512)
        )
        .0,
        Err(Sense::invalid_cdb_field(7, None))
    );
    // Fully provisioned: UNMAP is refused (LBPWS10 and LBPWS are zero), a
    // plain WRITE SAME is served.
    for op in [0x41u8, 0x93] {
        let mut cdb = [0u8; 16];
        cdb[0] = op;
        cdb[1] = 0x08;
        let (len, blocks_at) = if op == 0x41 { (10, 8) } else { (16, 13) };
        cdb[blocks_at] = 8;
        assert_eq!(
            run(&cdb[..len], &thick).0,
            Err(Sense::invalid_cdb_field(1, Some(3))),
            "{op:#x}"
        );
        cdb[1] = 0;
        assert!(matches!(
            run(&cdb[..len], &thick).0,
            Ok(Action::WriteSame { unmap: false, .. })
        ));
    }
}

#[test]
fn read_defect_data_is_an_empty_list() {
    let d = disk(1000, 512);
    // (10): PLIST and GLIST asked for, format 101b (physical sector).
    let (r, data) = run(&[0x37, 0, 0x1d, 0, 0, 0, 0, 0, 32, 0], &d);
    assert_eq!(r, Ok(Action::DataIn(32)));
    assert_eq!(&data[..4], &[0, 0x1d, 0, 0]);
    // (12): an 8-byte header, list length 0.
    let (r, data) = run(&[0xb7, 0x08, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], &d);
    assert_eq!(r, Ok(Action::DataIn(64)));
    assert_eq!(&data[..8], &[0, 0x08, 0, 0, 0, 0, 0, 0]);
    // A reserved bit set is refused like any other.
    assert_eq!(
        run(&[0x37, 0x01, 0, 0, 0, 0, 0, 0, 32, 0], &d).0,
        Err(Sense::invalid_cdb_field(1, Some(0)))
    );
}

#[test]
fn supported_opcodes() {
    let d = disk(1000, 512);
    let mut c = [0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
    let (r, data) = run(&c, &d);
    assert_eq!(r, Ok(Action::DataIn(4096)));
    let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    // All but WRITE ATOMIC (16), which needs a backend that writes
    // atomically.
    assert_eq!(len, (sbc::OPS.len() - 1) * 8);
    // One command: READ(10).
    c[2] = 1;
    c[3] = 0x28;
    let (_, data) = run(&c, &d);
    assert_eq!(data[1] & 0x07, 3);
    assert_eq!(&data[2..4], &[0, 10]);
    assert_eq!(data[4], 0x28);
    // Option 1 on an opcode with service actions is an error.
    c[3] = 0x9e;
    assert_eq!(run(&c, &d).0, Err(Sense::invalid_cdb_field(2, Some(2))));
    c[2] = 2;
    c[5] = 0x10;
    let (_, data) = run(&c, &d);
    assert_eq!(data[1] & 0x07, 3);
    // Unsupported opcode: SUPPORT = 001b.
    c[2] = 1;
    c[3] = 0xc5;
    let (_, data) = run(&c, &d);
    assert_eq!(data[1] & 0x07, 1);
    // Every table entry validates its own usage map as a CDB.
    for info in sbc::OPS.iter() {
        let mut cdb = info.usage.to_vec();
        // A variable-length CDB's usage map holds its service action
        // (bytes 8-9) already; the others' is in byte 1.
        if let (Some(sa), false) = (info.service_action, info.opcode == 0x7f) {
            cdb[1] = sa as u8;
        }
        assert!(Cdb(&cdb).check_usage(info.usage).is_ok());
        assert_eq!(sbc::lookup(Cdb(&cdb)).map(|i| i.opcode), Ok(info.opcode));
    }
}

#[test]
fn out_counts_past_the_buffer() {
    let mut buf = [0u8; 4];
    let mut out = Out::new(&mut buf);
    out.be64(0x0102030405060708);
    assert_eq!(out.len(), 8);
    assert_eq!(buf, [1, 2, 3, 4]);
}

#[test]
fn request_sense_reports_pending_condition() {
    let mut buf = [0u8; 64];
    let mut out = Out::new(&mut buf);
    cdb::request_sense(
        Cdb(&[0x03, 0, 0, 0, 252, 0]),
        Some(sense::POWER_ON_OCCURRED),
        &mut out,
    );
    assert_eq!(out.len(), 18);
    assert_eq!(sense::decode(&buf[..18]), Some((6, 0x29, 0x01)));
    let mut out = Out::new(&mut buf);
    cdb::request_sense(Cdb(&[0x03, 1, 0, 0, 252, 0]), None, &mut out);
    assert_eq!(buf[0], 0x72);
    assert!(cdb::passes_unit_attention(0x12));
    assert!(!cdb::passes_unit_attention(0x00));
}

#[test]
fn compare_and_write_and_pre_fetch() {
    let d = disk(1000, 512);
    let caw = |lba: u64, n: u8, flags: u8| {
        let mut c = [0u8; 16];
        c[0] = 0x89;
        c[1] = flags;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[13] = n;
        c
    };
    let (r, _) = run(&caw(10, 2, 0x08), &d);
    let action = r.unwrap();
    assert_eq!(
        action,
        Action::CompareAndWrite {
            lba: 10,
            blocks: 2,
            fua: true
        }
    );
    // Both halves: the data to compare and the data to write.
    assert_eq!(action.data_out_len(512), 2 * 2 * 512);
    assert!(action.writes());
    let zero = run(&caw(10, 0, 0), &d).0.unwrap();
    assert_eq!(zero.data_out_len(512), 0);
    assert_eq!(run(&caw(999, 2, 0), &d).0, Err(sense::LBA_OUT_OF_RANGE));
    // WRPROTECT: no protection information here.
    assert_eq!(
        run(&caw(0, 1, 0x20), &d).0,
        Err(Sense::invalid_cdb_field(1, Some(5)))
    );
    // The block limits page says how many blocks one may name.
    let (r, page) = run(&[0x12, 1, 0xb0, 0, 64, 0], &d);
    r.unwrap();
    assert_eq!(page[5], 255);

    let (r, _) = run(&[0x34, 0x02, 0, 0, 3, 0xe8 - 8, 0, 0, 8, 0], &d);
    assert_eq!(r, Ok(Action::Done));
    assert_eq!(
        run(&[0x34, 0, 0, 0, 3, 0xe8 - 8, 0, 0, 9, 0], &d).0,
        Err(sense::LBA_OUT_OF_RANGE)
    );
    assert_eq!(
        run(&[0x34, 0, 0, 0, 3, 0xe8, 0, 0, 0, 0], &d).0,
        Err(sense::LBA_OUT_OF_RANGE)
    );
    let mut p16 = [0u8; 16];
    p16[0] = 0x90;
    p16[9] = 5;
    p16[13] = 10;
    assert_eq!(run(&p16, &d).0, Ok(Action::Done));
}

#[test]
fn physical_block_exponent() {
    let d = DiskInfo {
        lbppb_exp: 3,
        ..disk(1 << 20, 512)
    };
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x10;
    c[13] = 32;
    let (_, data) = run(&c, &d);
    assert_eq!(data[13], 3);
    // Block limits: transfer and unmap granularities are a physical block.
    let (r, data) = run(&[0x12, 1, 0xb0, 0, 64, 0], &d);
    assert!(r.is_ok());
    assert_eq!(&data[6..8], &8u16.to_be_bytes());
    assert_eq!(&data[28..32], &8u32.to_be_bytes());
}

#[test]
fn removable_medium() {
    let fixed = disk(1024, 512);
    let prevent = [0x1e, 0, 0, 0, 1, 0];
    let eject = [0x1b, 0, 0, 0, 0x02, 0];
    let load = [0x1b, 0, 0, 0, 0x03, 0];
    // A fixed medium: RMB clear, nothing to prevent or eject.
    let (_, data) = run(&[0x12, 0, 0, 0, 96, 0], &fixed);
    assert_eq!(data[1], 0);
    assert_eq!(run(&prevent, &fixed).0, Ok(Action::Done));
    assert_eq!(run(&eject, &fixed).0, Ok(Action::Done));

    let d = DiskInfo {
        removable: true,
        ..disk(1024, 512)
    };
    let (_, data) = run(&[0x12, 0, 0, 0, 96, 0], &d);
    assert_eq!(data[1], 0x80);
    assert_eq!(run(&prevent, &d).0, Ok(Action::PreventRemoval(true)));
    assert_eq!(
        run(&[0x1e, 0, 0, 0, 0, 0], &d).0,
        Ok(Action::PreventRemoval(false))
    );
    assert_eq!(run(&eject, &d).0, Ok(Action::LoadEject(false)));
    assert_eq!(run(&load, &d).0, Ok(Action::LoadEject(true)));
    // START without LOEJ starts nothing; a power condition ignores LOEJ.
    assert_eq!(run(&[0x1b, 0, 0, 0, 0x01, 0], &d).0, Ok(Action::Done));
    assert_eq!(run(&[0x1b, 0, 0, 0, 0x32, 0], &d).0, Ok(Action::Done));

    // Ejected: what needs the medium is NOT READY, the rest runs.
    let ejected = DiskInfo {
        medium: false,
        ..DiskInfo {
            removable: true,
            ..disk(1024, 512)
        }
    };
    for cdb in [
        &[0u8, 0, 0, 0, 0, 0][..],
        &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ] {
        assert_eq!(
            run(cdb, &ejected).0,
            Err(sense::MEDIUM_NOT_PRESENT),
            "{cdb:x?}"
        );
    }
    assert!(run(&[0x12, 0, 0, 0, 96, 0], &ejected).0.is_ok());
    assert!(run(&[0x1a, 0, 0x3f, 0, 255, 0], &ejected).0.is_ok());
    assert_eq!(run(&load, &ejected).0, Ok(Action::LoadEject(true)));
    assert_eq!(run(&prevent, &ejected).0, Ok(Action::PreventRemoval(true)));
}

#[test]
fn write_atomic() {
    use sbc::AtomicLimits;
    let cdb = |lba: u64, blocks: u16| {
        let mut c = [0u8; 16];
        c[0] = 0x9c;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[12..14].copy_from_slice(&blocks.to_be_bytes());
        c
    };
    // Without atomic writes in the backend: no such command, and none
    // listed or limited.
    let plain = disk(1024, 512);
    assert_eq!(run(&cdb(0, 8), &plain).0, Err(sense::INVALID_OPCODE));
    let (_, data) = run(&[0x12, 1, 0xb0, 0, 64, 0], &plain);
    assert!(data[44..64].iter().all(|&b| b == 0));
    let d = DiskInfo {
        atomic: Some(AtomicLimits {
            max_blocks: 64,
            alignment: 8,
            granularity: 8,
        }),
        ..disk(1024, 512)
    };
    let (_, data) = run(&[0x12, 1, 0xb0, 0, 64, 0], &d);
    assert_eq!(&data[44..56], &[0, 0, 0, 64, 0, 0, 0, 8, 0, 0, 0, 8]);
    assert_eq!(
        run(&cdb(16, 32), &d).0,
        Ok(Action::AtomicWrite {
            lba: 16,
            blocks: 32,
            fua: false
        })
    );
    assert_eq!(run(&cdb(0, 0), &d).0, Ok(Action::Done));
    // Misaligned, not a multiple of the granularity, too long.
    assert_eq!(
        run(&cdb(4, 8), &d).0,
        Err(Sense::invalid_cdb_field(2, None))
    );
    assert_eq!(
        run(&cdb(0, 12), &d).0,
        Err(Sense::invalid_cdb_field(12, None))
    );
    assert_eq!(
        run(&cdb(0, 72), &d).0,
        Err(Sense::invalid_cdb_field(12, None))
    );
    // Past the end is out of range before it is too long.
    assert_eq!(run(&cdb(1016, 512), &d).0, Err(sense::LBA_OUT_OF_RANGE));
    // WRPROTECT and ATOMIC BOUNDARY are not supported.
    let mut c = cdb(0, 8);
    c[1] = 0x20;
    assert!(run(&c, &d).0.is_err());
    let mut c = cdb(0, 8);
    c[11] = 1;
    assert!(run(&c, &d).0.is_err());
    // Listed by REPORT SUPPORTED OPERATION CODES only where supported.
    let one = [0xa3, 0x0c, 0x01, 0x9c, 0, 0, 0, 0, 0, 64, 0, 0];
    assert_eq!(run(&one, &d).1[1] & 0x07, 0x03);
    assert_eq!(run(&one, &plain).1[1] & 0x07, 0x01);
}

#[test]
fn naca_is_refused_at_the_control_byte() {
    // The CONTROL byte ends a fixed-length CDB; NACA is its bit 2.
    assert_eq!(Cdb(&[0, 0, 0, 0, 0, 0]).naca_refusal(), None);
    assert_eq!(
        Cdb(&[0, 0, 0, 0, 0, 0x04]).naca_refusal(),
        Some(Sense::invalid_cdb_field(5, Some(2)))
    );
    let mut read16 = [0u8; 16];
    read16[0] = 0x88;
    read16[15] = 0x04;
    assert_eq!(
        Cdb(&read16).naca_refusal(),
        Some(Sense::invalid_cdb_field(15, Some(2)))
    );
    // LINK and vendor bits are not NACA.
    read16[15] = 0xc1;
    assert_eq!(Cdb(&read16).naca_refusal(), None);
    // Variable-length: the second byte.
    let mut var = [0u8; 32];
    var[0] = 0x7f;
    var[1] = 0x04;
    assert_eq!(
        Cdb(&var).naca_refusal(),
        Some(Sense::invalid_cdb_field(1, Some(2)))
    );
    // Vendor-specific groups are the device's.
    assert_eq!(Cdb(&[0xc0, 0, 0, 0, 0, 0x04]).naca_refusal(), None);
}

#[test]
fn sanitize() {
    use sbc::{parse_overwrite, SanitizeOp, SanitizeState};
    let d = disk(1024, 512);
    let overwrite = |len: u16| [0x48, 0x01, 0, 0, 0, 0, 0, (len >> 8) as u8, len as u8, 0];
    assert_eq!(
        run(&overwrite(516), &d).0,
        Ok(Action::Sanitize {
            op: SanitizeOp::Overwrite { param_len: 516 },
            immed: false
        })
    );
    for bad in [0, 4, 517] {
        assert_eq!(
            run(&overwrite(bad), &d).0,
            Err(Sense::invalid_cdb_field(7, None))
        );
    }
    // BLOCK ERASE on a thin LUN only; no parameter list.
    let erase = [0x48, 0x82, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        run(&erase, &d).0,
        Ok(Action::Sanitize {
            op: SanitizeOp::BlockErase,
            immed: true
        })
    );
    assert!(run(&[0x48, 0x02, 0, 0, 0, 0, 0, 0, 8, 0], &d).0.is_err());
    let thick = DiskInfo {
        thin: false,
        ..disk(1024, 512)
    };
    assert_eq!(
        run(&erase, &thick).0,
        Err(Sense::invalid_cdb_field(1, Some(4)))
    );
    // CRYPTOGRAPHIC ERASE, EXIT FAILURE MODE outside failure mode, and
    // reserved service actions are refused.
    for sa in [0x00, 0x03, 0x04, 0x1e, 0x1f] {
        assert_eq!(
            run(&[0x48, sa, 0, 0, 0, 0, 0, 0, 0, 0], &d).0,
            Err(Sense::invalid_cdb_field(1, Some(4))),
            "{sa:#x}"
        );
    }
    // While one runs: NOT READY, but INQUIRY.
    let running = DiskInfo {
        sanitize: SanitizeState::InProgress,
        ..disk(1024, 512)
    };
    assert_eq!(
        run(&[0, 0, 0, 0, 0, 0], &running).0,
        Err(sense::SANITIZE_IN_PROGRESS)
    );
    assert_eq!(
        run(&overwrite(516), &running).0,
        Err(sense::SANITIZE_IN_PROGRESS)
    );
    assert!(run(&[0x12, 0, 0, 0, 96, 0], &running).0.is_ok());
    // After a failure: MEDIUM ERROR until EXIT FAILURE MODE or a sanitize.
    let failed = DiskInfo {
        sanitize: SanitizeState::Failed,
        ..disk(1024, 512)
    };
    assert_eq!(
        run(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &failed).0,
        Err(sense::SANITIZE_COMMAND_FAILED)
    );
    assert_eq!(
        run(&[0x48, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0], &failed).0,
        Ok(Action::Sanitize {
            op: SanitizeOp::ExitFailureMode,
            immed: false
        })
    );
    assert!(run(&overwrite(516), &failed).0.is_ok());
    // The parameter list.
    let mut p = vec![0x81, 0, 0x02, 0x00];
    p.extend(std::iter::repeat_n(0xaa, 512));
    let o = parse_overwrite(&p, 512).unwrap();
    assert_eq!((o.invert, o.passes, o.pattern.len()), (true, 1, 512));
    p[0] = 0x80; // no passes
    assert!(parse_overwrite(&p, 512).is_err());
    p[0] = 0x01;
    p[3] = 0x01; // length disagrees with the list
    assert!(parse_overwrite(&p, 512).is_err());
    assert!(parse_overwrite(&[1, 0, 0, 0, 0], 512).is_err());
    assert!(parse_overwrite(&[1, 0, 0, 1, 7], 512).is_ok());
    // VPD B1h: WABEREQ 01b on a thin LUN.
    let (_, data) = run(&[0x12, 1, 0xb1, 0, 64, 0], &d);
    assert_eq!(data[7] & 0xc0, 0x40);
}

#[test]
fn software_write_protect() {
    let d = disk(1024, 512);
    let swp = ModeState { swp: true, ..MODE };
    let mut buf = vec![0u8; 4096];
    let mut out = Out::new(&mut buf);
    let r = sbc::parse(Cdb(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]), &d, &swp, &mut out);
    assert_eq!(r, Err(sense::SOFTWARE_WRITE_PROTECTED));
    let r = sbc::parse(Cdb(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), &d, &swp, &mut out);
    assert!(r.is_ok());
    // Changeable, and set by MODE SELECT of the control page.
    let (_, sensed) = run(&[0x1a, 0x08, 0x0a, 0, 255, 0], &d);
    let mut ms = sensed.clone();
    ms[0] = 0;
    ms[8] |= 0x08; // SWP: byte 4 of the page
    let new = sbc::mode_select(&ms, false, &d, &MODE).unwrap();
    assert!(new.swp);
    let (_, sensed) = {
        let mut buf = vec![0u8; 255];
        let mut out = Out::new(&mut buf);
        let r = sbc::parse(Cdb(&[0x1a, 0x08, 0x0a, 0, 255, 0]), &d, &new, &mut out);
        let n = out.len();
        buf.truncate(n);
        (r, buf)
    };
    assert_eq!(
        sensed[2] & 0x80,
        0x80,
        "WP in the device-specific parameter"
    );
}

#[test]
fn write_same_32() {
    let d = disk(1024, 512);
    let cdb = |lba: u64, blocks: u32, flags: u8| {
        let mut c = [0u8; 32];
        c[0] = 0x7f;
        c[7] = 0x18;
        c[9] = 0x0d;
        c[10] = flags;
        c[12..20].copy_from_slice(&lba.to_be_bytes());
        c[28..32].copy_from_slice(&blocks.to_be_bytes());
        c
    };
    assert_eq!(
        run(&cdb(8, 16, 0x08), &d).0,
        Ok(Action::WriteSame {
            lba: 8,
            blocks: 16,
            unmap: true,
            no_data: false
        })
    );
    assert_eq!(
        run(&cdb(0, 0, 0x01), &d).0,
        Ok(Action::WriteSame {
            lba: 0,
            blocks: 1024,
            unmap: false,
            no_data: true
        })
    );
    assert_eq!(run(&cdb(1020, 8, 0), &d).0, Err(sense::LBA_OUT_OF_RANGE));
    // WRPROTECT (no protection information here) and a wrong length.
    assert!(run(&cdb(0, 1, 0x20), &d).0.is_err());
    let mut c = cdb(0, 1, 0);
    c[7] = 0x10;
    assert_eq!(run(&c, &d).0, Err(Sense::invalid_cdb_field(7, None)));
    // Another variable-length service action: the field points at it.
    let mut c = cdb(0, 1, 0);
    c[9] = 0x09;
    assert_eq!(run(&c, &d).0, Err(Sense::invalid_cdb_field(8, None)));
    // UNMAP on a fully provisioned LUN points at byte 10.
    let thick = DiskInfo {
        thin: false,
        ..disk(1024, 512)
    };
    assert_eq!(
        run(&cdb(0, 1, 0x08), &thick).0,
        Err(Sense::invalid_cdb_field(10, Some(3)))
    );
}
