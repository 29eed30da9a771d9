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
    let (segs, total) = segments(&cmd, &iu, 128).unwrap();
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
    let (segs, total) = segments(&cmd, &iu, 1).unwrap();
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
    let (segs, total) = segments(&cmd, &iu, 1).unwrap();
    assert_eq!((segs.regions(), total), (0, 0));
}

#[test]
fn tables_that_cannot_be_served() {
    // Two of three descriptors in the unit: the rest is the initiator's.
    let iu = indirect_read(&[512, 512, 512], 2, 1536);
    let cmd = Command::parse(&iu).unwrap();
    assert_eq!(
        segments(&cmd, &iu, 128).unwrap_err(),
        DataError::ExternalTable
    );
    // More regions than allowed.
    let iu = indirect_read(&[512; 5], 5, 2560);
    let cmd = Command::parse(&iu).unwrap();
    assert_eq!(
        segments(&cmd, &iu, 4).unwrap_err(),
        DataError::TooManyRegions
    );
    // Lengths that do not add up to the stated total.
    let iu = indirect_read(&[512, 512], 2, 4096);
    let cmd = Command::parse(&iu).unwrap();
    assert_eq!(
        segments(&cmd, &iu, 128).unwrap_err(),
        DataError::LengthMismatch
    );
    // Immediate data is not granted.
    let mut imm = vec![0u8; CMD_LEN];
    imm[0] = opcode::CMD;
    imm[5] = desc_fmt::IMMEDIATE << 4;
    imm.extend_from_slice(&512u32.to_be_bytes());
    let cmd = Command::parse(&imm).unwrap();
    assert_eq!(segments(&cmd, &imm, 128).unwrap_err(), DataError::Immediate);
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
