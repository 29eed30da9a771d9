// SPDX-License-Identifier: GPL-2.0

//! srpt/vectors.rs: the `comp_v_mask` text and the vector each new
//! channel takes.

use scst_host_tests::srpt::vectors::*;

fn shown(words: &[u32], count: u32) -> String {
    let mut s = String::new();
    format(words, count, &mut s).unwrap();
    s
}

fn mask(count: u32) -> Vec<u32> {
    let mut w = vec![0; words_for(count)];
    allow_all(&mut w, count);
    w
}

#[test]
fn every_vector_is_allowed_at_first_and_printed_as_the_kernel_prints_bitmaps() {
    assert_eq!(shown(&mask(1), 1), "1");
    assert_eq!(shown(&mask(2), 2), "3");
    assert_eq!(shown(&mask(8), 8), "ff");
    assert_eq!(shown(&mask(32), 32), "ffffffff");
    assert_eq!(shown(&mask(36), 36), "f,ffffffff");
    assert_eq!(shown(&mask(64), 64), "ffffffff,ffffffff");
    assert_eq!(shown(&mask(70), 70), "3f,ffffffff,ffffffff");
}

#[test]
fn a_mask_is_read_back_as_written() {
    let mut w = mask(70);
    parse("2,00000000,00000101\n", 70, &mut w).unwrap();
    assert_eq!(w, vec![0x101, 0, 0x2]);
    assert_eq!(shown(&w, 70), "02,00000000,00000101");
    let mut w = mask(4);
    parse(" 0a ", 4, &mut w).unwrap();
    assert_eq!(shown(&w, 4), "a");
    // Leading zero groups are fine.
    parse("0,00000004", 4, &mut w).unwrap();
    assert_eq!(w, vec![4]);
}

#[test]
fn bad_masks_are_refused_and_change_nothing() {
    let mut w = mask(2);
    for (text, why) in [
        ("", MaskError::Malformed),
        ("0x3", MaskError::Malformed),
        ("g", MaskError::Malformed),
        ("1,,1", MaskError::Malformed),
        ("123456789", MaskError::Malformed),
        ("4", MaskError::OutOfRange),
        ("1,00000000", MaskError::OutOfRange),
        ("0", MaskError::Empty),
        ("0,00000000", MaskError::Empty),
    ] {
        assert_eq!(parse(text, 2, &mut w), Err(why), "{text:?}");
        assert_eq!(w, vec![3], "{text:?}");
    }
    let many = vec!["0"; 65].join(",");
    assert_eq!(parse(&many, 2, &mut w), Err(MaskError::OutOfRange));
}

#[test]
fn channels_take_the_allowed_vectors_in_turn() {
    let w = mask(3);
    let mut v = None;
    let taken: Vec<u32> = (0..5)
        .map(|_| {
            v = next(&w, 3, v);
            v.unwrap()
        })
        .collect();
    assert_eq!(taken, vec![0, 1, 2, 0, 1]);
    let mut w = mask(40);
    parse("80,00000002", 40, &mut w).unwrap();
    assert_eq!(next(&w, 40, None), Some(1));
    assert_eq!(next(&w, 40, Some(1)), Some(39));
    assert_eq!(next(&w, 40, Some(39)), Some(1));
    // A previous vector past the device's (the mask changed) starts over.
    assert_eq!(next(&w, 40, Some(100)), Some(1));
    assert_eq!(next(&[0], 4, None), None);
}
