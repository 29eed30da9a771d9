// SPDX-License-Identifier: GPL-2.0

//! EXTENDED COPY parameter lists, RECEIVE COPY RESULTS data and the
//! Third-party Copy VPD page.

use scst_host_tests::scst_core::cdb::Out;
use scst_host_tests::scst_core::sense::{self, Sense};
use scst_host_tests::scst_core::xcopy::{
    self, CopyStatus, Segment, MAX_DESCRIPTOR_LIST_LEN, MAX_SEGMENTS, MAX_TARGETS,
};

const NAA: [u8; 8] = [0x31, 2, 3, 4, 5, 6, 7, 8];

fn target(naa: &[u8; 8], block_len: u32) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0] = 0xe4;
    d[4] = 0x01; // binary
    d[5] = 0x03; // LU, NAA
    d[7] = 8;
    d[8..16].copy_from_slice(naa);
    d[29..32].copy_from_slice(&block_len.to_be_bytes()[1..]);
    d
}

fn segment(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = 0x02;
    d[2..4].copy_from_slice(&0x18u16.to_be_bytes());
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[10..12].copy_from_slice(&blocks.to_be_bytes());
    d[12..20].copy_from_slice(&src_lba.to_be_bytes());
    d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
    d
}

fn list(list_id: u8, usage: u8, targets: &[Vec<u8>], segments: &[Vec<u8>]) -> Vec<u8> {
    let t: Vec<u8> = targets.concat();
    let s: Vec<u8> = segments.concat();
    let mut p = vec![0u8; 16];
    p[0] = list_id;
    p[1] = usage << 3;
    p[2..4].copy_from_slice(&(t.len() as u16).to_be_bytes());
    p[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
    p.extend(t);
    p.extend(s);
    p
}

#[test]
fn a_block_to_block_list_decodes() {
    let p = list(7, 0, &[target(&NAA, 512)], &[segment(0, 0, 2048, 0, 4096)]);
    let l = xcopy::parse(&p).unwrap();
    assert_eq!((l.list_id, l.held), (7, true));
    assert_eq!(l.target(0).unwrap().naa(), Some(&NAA[..]));
    assert_eq!(l.target(0).unwrap().block_len, 512);
    assert!(l.target(1).is_none());
    assert_eq!(
        l.segments().collect::<Vec<_>>(),
        [Segment {
            source: 0,
            destination: 0,
            blocks: 2048,
            source_lba: 0,
            destination_lba: 4096
        }]
    );
    // Not held: LIST ID USAGE 10b; 11b needs list identifier 0.
    assert!(
        !xcopy::parse(&list(7, 2, &[target(&NAA, 512)], &[]))
            .unwrap()
            .held
    );
    assert_eq!(
        xcopy::parse(&list(7, 3, &[], &[])).err(),
        Some(Sense::invalid_param_field(0, None))
    );
    assert!(xcopy::parse(&list(0, 3, &[], &[])).is_ok());
    assert_eq!(xcopy::parse(&[]).unwrap().segment_count(), 0);
}

#[test]
fn lengths_and_limits_are_checked() {
    let full = list(1, 0, &[target(&NAA, 512)], &[segment(0, 0, 1, 0, 1)]);
    for cut in [15, 16 + 31, full.len() - 1] {
        assert_eq!(
            xcopy::parse(&full[..cut]).err(),
            Some(sense::PARAMETER_LIST_LENGTH_ERROR),
            "{cut}"
        );
    }
    let targets = vec![target(&NAA, 512); MAX_TARGETS + 1];
    assert_eq!(
        xcopy::parse(&list(1, 0, &targets, &[])).err(),
        Some(xcopy::TOO_MANY_TARGETS)
    );
    let segments = vec![segment(0, 0, 1, 0, 1); MAX_SEGMENTS + 1];
    assert_eq!(
        xcopy::parse(&list(1, 0, &[target(&NAA, 512)], &segments)).err(),
        Some(xcopy::TOO_MANY_SEGMENTS)
    );
    // Longer than the descriptor list may be: a length error first.
    let many = vec![segment(0, 0, 1, 0, 1); MAX_DESCRIPTOR_LIST_LEN / 28 + 1];
    assert_eq!(
        xcopy::parse(&list(1, 0, &targets, &many)).err(),
        Some(sense::PARAMETER_LIST_LENGTH_ERROR)
    );
}

#[test]
fn unsupported_descriptor_types_are_named() {
    let mut t = target(&NAA, 512);
    t[0] = 0xe0;
    assert_eq!(
        xcopy::parse(&list(1, 0, &[t], &[])).err(),
        Some(xcopy::UNSUPPORTED_TARGET)
    );
    let mut tape = target(&NAA, 512);
    tape[1] = 0x01;
    assert_eq!(
        xcopy::parse(&list(1, 0, &[tape], &[])).err(),
        Some(xcopy::UNSUPPORTED_TARGET)
    );
    let mut s = segment(0, 0, 1, 0, 1);
    s[0] = 0x03;
    assert_eq!(
        xcopy::parse(&list(1, 0, &[target(&NAA, 512)], &[s])).err(),
        Some(xcopy::UNSUPPORTED_SEGMENT)
    );
}

#[test]
fn copy_results_and_vpd_page() {
    let mut buf = [0u8; 64];
    let mut out = Out::new(&mut buf);
    xcopy::operating_parameters(&mut out);
    assert_eq!(out.len(), 46);
    assert_eq!(u32::from_be_bytes(buf[0..4].try_into().unwrap()), 42);
    assert_eq!(u16::from_be_bytes([buf[8], buf[9]]) as usize, MAX_TARGETS);
    assert_eq!(
        u16::from_be_bytes([buf[10], buf[11]]) as usize,
        MAX_SEGMENTS
    );
    assert_eq!(&buf[43..46], &[2, 0x02, 0xe4]);

    let mut buf = [0u8; 12];
    let mut out = Out::new(&mut buf);
    let status = CopyStatus {
        list_id: 1,
        failed: false,
        segments_done: 1,
        bytes: 1 << 20,
    };
    xcopy::copy_status(&status, &mut out);
    assert_eq!(buf, [0, 0, 0, 8, 0, 0, 1, 0, 0, 0x10, 0, 0]);

    let mut buf = [0u8; 128];
    let mut out = Out::new(&mut buf);
    xcopy::third_party_copy_vpd(&mut out);
    let len = out.len();
    assert_eq!(len % 4, 0);
    // Every descriptor's length leads to the next; the first lists
    // EXTENDED COPY (LID1) and RECEIVE COPY RESULTS' service actions.
    let mut at = 0;
    let mut types = vec![];
    while at < len {
        types.push(u16::from_be_bytes([buf[at], buf[at + 1]]));
        at += 4 + u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
    }
    assert_eq!(at, len);
    assert_eq!(types, [0x0001, 0x0004, 0x0008, 0x000c]);
    assert_eq!(&buf[4..12], &[7, 0x83, 1, 0x00, 0x84, 2, 0x00, 0x03]);
}
