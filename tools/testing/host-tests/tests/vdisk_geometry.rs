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
