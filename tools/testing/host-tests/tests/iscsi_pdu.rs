// SPDX-License-Identifier: GPL-2.0

use scst_host_tests::scst_iscsi::pdu::*;

/// A SCSI Command PDU: immediate, final, 1 AHS word, 5 data bytes, LUN 1,
/// ITT 0x01020304.
fn scsi_command() -> [u8; BHS_LEN] {
    let mut b = [0u8; BHS_LEN];
    b[0] = 0x40 | 0x01;
    b[1] = 0x80;
    b[4] = 1;
    b[7] = 5;
    b[9] = 1;
    b[16..20].copy_from_slice(&[1, 2, 3, 4]);
    b
}

#[test]
fn parses_common_fields() {
    let bhs = Bhs::parse(&scsi_command(), 8192).unwrap();
    assert_eq!(bhs.opcode, InitiatorOpcode::ScsiCommand);
    assert!(bhs.immediate && bhs.final_pdu);
    assert_eq!(bhs.ahs_len, 4);
    assert_eq!(bhs.data_segment_len, 5);
    assert_eq!(bhs.lun, [0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(bhs.itt, 0x0102_0304);
    // AHS 4 + data padded to 8 (+ digests when negotiated).
    assert_eq!(bhs.bytes_after_bhs(false, false), 12);
    assert_eq!(bhs.bytes_after_bhs(true, true), 20);
}

#[test]
fn rejects_target_and_unknown_opcodes() {
    for op in [0x07u8, 0x20, 0x21, 0x3f, 0x1c] {
        let mut b = scsi_command();
        b[0] = op;
        let e = Bhs::parse(&b, 8192).unwrap_err();
        assert_eq!(e, BhsError::UnknownOpcode(op));
        assert_eq!(e.reject_reason(), RejectReason::CommandNotSupported);
    }
}

#[test]
fn refuses_data_beyond_max_recv_data_segment_length() {
    let mut b = scsi_command();
    set_data_segment_len(&mut b, 8193).unwrap();
    let e = Bhs::parse(&b, 8192).unwrap_err();
    assert_eq!(
        e,
        BhsError::DataSegmentTooLong {
            len: 8193,
            max: 8192
        }
    );
    assert_eq!(e.reject_reason(), RejectReason::ProtocolError);
    set_data_segment_len(&mut b, 8192).unwrap();
    assert_eq!(Bhs::parse(&b, 8192).unwrap().data_segment_len, 8192);
}

#[test]
fn data_segment_length_is_24_bits() {
    let mut b = [0u8; BHS_LEN];
    set_data_segment_len(&mut b, MAX_DATA_SEGMENT_LEN).unwrap();
    assert_eq!(&b[5..8], &[0xff, 0xff, 0xff]);
    assert_eq!(set_data_segment_len(&mut b, 1 << 24), Err(1 << 24));
    assert_eq!(padded(0), 0);
    assert_eq!(padded(1), 4);
    assert_eq!(padded(4), 4);
    assert_eq!(padded(4097), 4100);
}

#[test]
fn every_header_decodes_or_is_rejected() {
    // Exhaustive over byte 0 and the length bytes' extremes: never panics.
    for b0 in 0..=255u8 {
        for len in [0u8, 0x7f, 0xff] {
            let mut b = [len; BHS_LEN];
            b[0] = b0;
            let _ = Bhs::parse(&b, u32::MAX);
        }
    }
}
