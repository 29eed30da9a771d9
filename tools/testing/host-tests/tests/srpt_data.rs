// SPDX-License-Identifier: GPL-2.0

//! srpt/data.rs: a command's remote regions placed in its buffer, and the
//! residuals of a transfer.

use scst_host_tests::srpt::data::*;
use scst_host_tests::srpt::iu::*;

fn desc(va: u64, key: u32, len: u32) -> Vec<u8> {
    let mut d = va.to_be_bytes().to_vec();
    d.extend_from_slice(&key.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d
}

/// An SRP_CMD reading into `lens.len()` regions (indirect), `in_iu` of
/// them in the unit, the table stating `total`.
fn indirect_read(lens: &[u32], in_iu: usize, total: u32) -> Vec<u8> {
    let mut b = vec![0u8; CMD_LEN];
    b[0] = opcode::CMD;
    b[5] = desc_fmt::INDIRECT;
    b[7] = in_iu as u8;
    b[32] = 0x28;
    b.extend_from_slice(&desc(0xfeed_0000, 5, (lens.len() * DIRECT_DESC_LEN) as u32));
    b.extend_from_slice(&total.to_be_bytes());
    for (i, &len) in lens.iter().enumerate().take(in_iu) {
        b.extend_from_slice(&desc(0x1000 * (i as u64 + 1), 7, len));
    }
    b
}

#[test]
fn indirect_regions_follow_each_other_in_the_buffer() {
    let iu = indirect_read(&[4096, 512, 8192], 3, 12800);
    let cmd = Command::parse(&iu).unwrap();
    let (segs, total) = segments(&cmd, &iu, 128, None).unwrap();
    assert_eq!((segs.regions(), total), (3, 12800));
    let got: Vec<(u32, u64, u32)> = segs
        .map(|s| (s.offset, s.region.va, s.region.len))
        .collect();
    assert_eq!(
        got,
        vec![(0, 0x1000, 4096), (4096, 0x2000, 512), (4608, 0x3000, 8192)]
    );
}

#[test]
fn a_direct_region_and_no_data() {
    let mut iu = vec![0u8; CMD_LEN];
    iu[0] = opcode::CMD;
    iu[5] = desc_fmt::DIRECT << 4;
    iu[6] = 1;
    iu.extend_from_slice(&desc(0x9000, 3, 65536));
    let cmd = Command::parse(&iu).unwrap();
    let (segs, total) = segments(&cmd, &iu, 1, None).unwrap();
    assert_eq!(total, 65536);
    assert_eq!(
        segs.collect::<Vec<_>>(),
        vec![Segment {
            offset: 0,
            region: DirectBuf {
                va: 0x9000,
                key: 3,
                len: 65536
            }
        }]
    );

    iu.truncate(CMD_LEN);
    iu[5] = 0;
    let cmd = Command::parse(&iu).unwrap();
    let (segs, total) = segments(&cmd, &iu, 1, None).unwrap();
    assert_eq!((segs.regions(), total), (0, 0));
}

#[test]
fn tables_that_cannot_be_served() {
    // Two of three descriptors in the unit: the rest is the initiator's.
    let iu = indirect_read(&[512, 512, 512], 2, 1536);
    let cmd = Command::parse(&iu).unwrap();
    assert_eq!(
        segments(&cmd, &iu, 128, None).unwrap_err(),
        DataError::ExternalTable
    );
    // More regions than allowed.
    let iu = indirect_read(&[512; 5], 5, 2560);
    let cmd = Command::parse(&iu).unwrap();
    assert_eq!(
        segments(&cmd, &iu, 4, None).unwrap_err(),
        DataError::TooManyRegions
    );
    // Lengths that do not add up to the stated total.
    let iu = indirect_read(&[512, 512], 2, 4096);
    let cmd = Command::parse(&iu).unwrap();
    assert_eq!(
        segments(&cmd, &iu, 128, None).unwrap_err(),
        DataError::LengthMismatch
    );
}

/// ib_srp's offset of immediate data: an SRP_CMD, 16 bytes of additional
/// CDB, and the immediate descriptor.
const IMM_OFFSET: usize = CMD_LEN + 16 + IMMEDIATE_DESC_LEN;

/// An SRP_CMD writing `len` bytes of immediate data, of which the unit
/// carries `carried` after the descriptor (at `IMM_OFFSET` where the
/// additional CDB has at most 16 bytes).
fn immediate_write(len: u32, carried: usize, add_cdb: usize) -> Vec<u8> {
    let mut b = vec![0u8; CMD_LEN + add_cdb];
    b[0] = opcode::CMD;
    b[5] = desc_fmt::IMMEDIATE << 4;
    b[6] = 1;
    b[31] = add_cdb as u8;
    b[32] = 0x2a;
    b.extend_from_slice(&len.to_be_bytes());
    // (Past the descriptor where a long additional CDB pushes it there.)
    b.resize(b.len().max(IMM_OFFSET), 0);
    b.extend((0..carried).map(|i| i as u8));
    b
}

#[test]
fn immediate_data_is_the_units_own() {
    let iu = immediate_write(512, 512, 0);
    let cmd = Command::parse(&iu).unwrap();
    let (mut segs, total) = segments(&cmd, &iu, 128, Some(IMM_OFFSET)).unwrap();
    assert_eq!((segs.regions(), total), (0, 512));
    assert_eq!(segs.immediate(), Some(&iu[IMM_OFFSET..]));
    assert_eq!(segs.next(), None);
    // With the additional CDB ib_srp leaves room for.
    let iu = immediate_write(4096, 4096, 16);
    let cmd = Command::parse(&iu).unwrap();
    let (segs, total) = segments(&cmd, &iu, 128, Some(IMM_OFFSET)).unwrap();
    assert_eq!(total, 4096);
    assert_eq!(segs.immediate().map(<[u8]>::len), Some(4096));
    // A unit may carry more than its descriptor says (padding): only
    // the stated length is data.
    let iu = immediate_write(100, 512, 0);
    let cmd = Command::parse(&iu).unwrap();
    let (segs, total) = segments(&cmd, &iu, 128, Some(IMM_OFFSET)).unwrap();
    assert_eq!(total, 100);
    assert_eq!(segs.immediate(), Some(&iu[IMM_OFFSET..IMM_OFFSET + 100]));
    // No data at all is still a (zero-length) write.
    let iu = immediate_write(0, 0, 0);
    let cmd = Command::parse(&iu).unwrap();
    let (segs, total) = segments(&cmd, &iu, 128, Some(IMM_OFFSET)).unwrap();
    assert_eq!((total, segs.immediate()), (0, Some(&[][..])));
}

#[test]
fn immediate_data_that_cannot_be_served() {
    let iu = immediate_write(512, 512, 0);
    let cmd = Command::parse(&iu).unwrap();
    // The login did not grant it.
    assert_eq!(
        segments(&cmd, &iu, 128, None).unwrap_err(),
        DataError::ImmediateNotGranted
    );
    // The data would begin inside the descriptor.
    assert_eq!(
        segments(&cmd, &iu, 128, Some(CMD_LEN)).unwrap_err(),
        DataError::ImmediateOverlapsDescriptor
    );
    let long_cdb = immediate_write(512, 512, 20);
    let cmd = Command::parse(&long_cdb).unwrap();
    assert_eq!(
        segments(&cmd, &long_cdb, 128, Some(IMM_OFFSET)).unwrap_err(),
        DataError::ImmediateOverlapsDescriptor
    );
    // More than the unit carries, by one byte or by far.
    for len in [513, 8192, u32::MAX] {
        let iu = immediate_write(len, 512, 0);
        let cmd = Command::parse(&iu).unwrap();
        assert_eq!(
            segments(&cmd, &iu, 128, Some(IMM_OFFSET)).unwrap_err(),
            DataError::ImmediateBeyondUnit,
            "{len}"
        );
    }
    // An offset past the unit.
    let cmd = Command::parse(&iu).unwrap();
    assert_eq!(
        segments(&cmd, &iu, 128, Some(usize::MAX)).unwrap_err(),
        DataError::ImmediateBeyondUnit
    );
}

#[test]
fn transfers_and_their_residuals() {
    assert_eq!(transfer(4096, 4096), (4096, 0));
    // The logical unit has less than the initiator offered room for.
    assert_eq!(transfer(512, 4096), (512, 3584));
    // It has more: only what was offered moves, the rest is overflow.
    assert_eq!(transfer(8192, 4096), (4096, -4096));
    assert_eq!(transfer(u64::MAX, 0), (0, -i64::MAX));
    assert_eq!(transfer(0, 0), (0, 0));
}
