// SPDX-License-Identifier: GPL-2.0

//! A target port's `comp_v_mask`: the completion vectors its channels'
//! completion queues may take, one bit per vector, as SCST's ib_srpt keeps
//! it. Each new channel takes the next allowed vector after the previous
//! channel's, so that channels spread over the CPUs the administrator
//! chose for them.
//!
//! The text is the kernel's bitmap format (`%*pb`, what `cpumask_parse()`
//! reads): hex digits, most significant first, a comma between groups of
//! 32 bits. Plain `core` Rust: srpt's sysfs attribute uses it, the host
//! tests check it.

use core::fmt::{self, Write};

/// Bits per group of the text, and per word of a mask.
const GROUP_BITS: u32 = 32;

/// Why a mask text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskError {
    /// Not hex digits in comma-separated groups of at most eight.
    Malformed,
    /// It names a vector the device does not have.
    OutOfRange,
    /// It names no vector: channels would have none to take.
    Empty,
}

/// The words a mask of `count` vectors takes (at least one).
pub fn words_for(count: u32) -> usize {
    (count.div_ceil(GROUP_BITS) as usize).max(1)
}

/// The bits of word `i` that name one of `count` vectors.
fn word_of_all(i: usize, count: u32) -> u32 {
    match count.saturating_sub((i as u32).saturating_mul(GROUP_BITS)) {
        0 => 0,
        n if n >= GROUP_BITS => u32::MAX,
        n => (1u32 << n) - 1,
    }
}

/// Allows every one of `count` vectors (the default, as SCST has it).
pub fn allow_all(words: &mut [u32], count: u32) {
    for (i, w) in words.iter_mut().enumerate() {
        *w = word_of_all(i, count);
    }
}

/// Whether vector `v` is allowed.
fn allowed(words: &[u32], v: u32) -> bool {
    words
        .get((v / GROUP_BITS) as usize)
        .is_some_and(|w| w & (1 << (v % GROUP_BITS)) != 0)
}

/// Parses `text` into `words` as the mask of a device with `count`
/// vectors. `words` is left as it was unless the text is accepted.
pub fn parse(text: &str, count: u32, words: &mut [u32]) -> Result<(), MaskError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(MaskError::Malformed);
    }
    let mut parsed = [0u32; 64];
    let groups = text.split(',').count();
    if groups > parsed.len() {
        return Err(MaskError::OutOfRange);
    }
    // The last group holds the lowest vectors.
    for (i, group) in text.rsplit(',').enumerate() {
        if group.is_empty() || group.len() > 8 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MaskError::Malformed);
        }
        parsed[i] = u32::from_str_radix(group, 16).map_err(|_| MaskError::Malformed)?;
    }
    let room = |i: usize| words.get(i).map_or(0, |_| word_of_all(i, count));
    if parsed.iter().enumerate().any(|(i, &w)| w & !room(i) != 0) {
        return Err(MaskError::OutOfRange);
    }
    if parsed.iter().all(|&w| w == 0) {
        return Err(MaskError::Empty);
    }
    for (i, w) in words.iter_mut().enumerate() {
        *w = parsed.get(i).copied().unwrap_or(0);
    }
    Ok(())
}

/// Writes the mask of `count` vectors as the kernel prints a bitmap of
/// that many bits: the first group only as wide as its bits need.
pub fn format(words: &[u32], count: u32, out: &mut impl Write) -> fmt::Result {
    let groups = words_for(count).min(words.len());
    for i in (0..groups).rev() {
        let w = words.get(i).copied().unwrap_or(0);
        if i + 1 == groups {
            let bits = match count % GROUP_BITS {
                0 => GROUP_BITS,
                n => n,
            };
            let digits = bits.div_ceil(4) as usize;
            write!(out, "{:0width$x}", w, width = digits)?;
        } else {
            write!(out, ",{:08x}", w)?;
        }
    }
    Ok(())
}

/// The vector the next channel takes: the first allowed one after
/// `previous` (from the start when there is none after it, or no
/// previous); `None` if no vector of `count` is allowed.
pub fn next(words: &[u32], count: u32, previous: Option<u32>) -> Option<u32> {
    let start = previous.map_or(0, |p| p.saturating_add(1));
    (start..count)
        .chain(0..start.min(count))
        .find(|&v| allowed(words, v))
}
