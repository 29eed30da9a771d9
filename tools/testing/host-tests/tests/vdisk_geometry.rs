// SPDX-License-Identifier: GPL-2.0

use scst_host_tests::scst_vdisk::geometry::*;

#[test]
fn size_must_be_whole_blocks() {
    for bs in BLOCK_SIZES {
        check("x", u64::from(bs) * 3, bs).unwrap();
        assert!(check("x", u64::from(bs) * 3 + 1, bs).is_err());
        assert!(check("0", 0, bs).is_err());
    }
}

#[test]
fn block_sizes() {
    for bs in BLOCK_SIZES {
        assert_eq!(parse_block_size(&bs.to_string()), Ok(bs));
    }
    for bad in ["0", "256", "777", "8192", "4294967808", "", "4k", "-512"] {
        assert!(parse_block_size(bad).is_err(), "{bad}");
    }
}
