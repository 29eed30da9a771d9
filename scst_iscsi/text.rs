// SPDX-License-Identifier: GPL-2.0

//! iSCSI text (RFC 7143, 6.1): the `key=value` entries that Login and Text
//! PDUs carry in their data segment, each terminated by a NUL byte.
//!
//! - [`pairs`] walks a complete text; a malformed entry (no `=`, an empty or
//!   over-long key, a key with bytes outside `A-Za-z0-9.-+@_#`, a value past
//!   [`MAX_LARGE_VALUE_LEN`], a last entry without its NUL) ends the walk
//!   with a [`TextError`]. Empty entries (two NULs in a row) are skipped:
//!   some initiators pad their text that way, and they carry nothing.
//! - [`parse_number`], [`parse_bool`], [`list_items`] and [`decode_binary`]
//!   read values: decimal, `0x` hex and `0b` base64 numbers and binary
//!   values, `Yes`/`No`, comma-separated lists.
//! - [`TextWriter`] writes a response into a caller's buffer, a whole entry
//!   or nothing.
//! - [`SendTargetsWriter`] writes the answer to `SendTargets` (RFC 7143,
//!   13.3 and appendix C): `TargetName=` followed by that target's
//!   `TargetAddress=` entries.
//!
//! Plain `core` Rust over caller-provided buffers: the kernel and the host
//! tests share it.

use core::fmt;

/// The longest key name (RFC 7143, 6.1).
pub const MAX_KEY_LEN: usize = 63;

/// The longest value of an ordinary key (RFC 7143, 6.1).
pub const MAX_VALUE_LEN: usize = 255;

/// The longest value any key may have: the binary values of CHAP
/// (`CHAP_C`, `CHAP_R`) are the only keys allowed past [`MAX_VALUE_LEN`].
pub const MAX_LARGE_VALUE_LEN: usize = 8192;

/// The longest iSCSI name (RFC 7143, 4.2.7.1).
pub const MAX_NAME_LEN: usize = 223;

/// The constant a responder answers to a key it does not know.
pub const NOT_UNDERSTOOD: &[u8] = b"NotUnderstood";

/// The constant a responder answers to a value it cannot accept.
pub const REJECT: &[u8] = b"Reject";

/// The constant a responder answers to a key that has no meaning here.
pub const IRRELEVANT: &[u8] = b"Irrelevant";

/// Why a text is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    /// The last entry has no terminating NUL.
    Unterminated,
    /// An entry without `=`.
    NoEquals,
    /// An entry with an empty key.
    EmptyKey,
    /// A key longer than [`MAX_KEY_LEN`].
    KeyTooLong,
    /// A key with a byte outside `A-Za-z0-9.-+@_#`.
    BadKey,
    /// A value longer than [`MAX_LARGE_VALUE_LEN`].
    ValueTooLong,
}

/// One `key=value` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair<'a> {
    /// The key, case-sensitive.
    pub key: &'a [u8],
    /// The value, possibly empty.
    pub value: &'a [u8],
}

/// The entries of a text, in order; see [`pairs`].
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Walks the entries of a complete text.
///
/// After the first error the iterator ends, so a caller that stops on
/// `Err` and one that collects everything agree.
pub fn pairs(text: &[u8]) -> Pairs<'_> {
    Pairs {
        rest: text,
        failed: false,
    }
}

/// Checks a whole text, returning the number of entries.
pub fn validate(text: &[u8]) -> Result<usize, TextError> {
    let mut count = 0;
    for pair in pairs(text) {
        pair?;
        count += 1;
    }
    Ok(count)
}

/// The value of the first entry named `key`, if the text is well formed up
/// to it.
pub fn find<'a>(text: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    pairs(text)
        .map_while(Result::ok)
        .find(|p| p.key == key)
        .map(|p| p.value)
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<Pair<'a>, TextError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed && !self.rest.is_empty() {
            let Some(nul) = self.rest.iter().position(|&b| b == 0) else {
                self.failed = true;
                return Some(Err(TextError::Unterminated));
            };
            let (entry, tail) = self.rest.split_at(nul);
            self.rest = tail.get(1..).unwrap_or(&[]);
            if entry.is_empty() {
                continue;
            }
            let parsed = parse_entry(entry);
            self.failed = parsed.is_err();
            return Some(parsed);
        }
        None
    }
}

fn parse_entry(entry: &[u8]) -> Result<Pair<'_>, TextError> {
    let eq = entry
        .iter()
        .position(|&b| b == b'=')
        .ok_or(TextError::NoEquals)?;
    let (key, value) = entry.split_at(eq);
    let value = value.get(1..).unwrap_or(&[]);
    if key.is_empty() {
        return Err(TextError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(TextError::KeyTooLong);
    }
    if !key.iter().all(|&b| is_key_byte(b)) {
        return Err(TextError::BadKey);
    }
    if value.len() > MAX_LARGE_VALUE_LEN {
        return Err(TextError::ValueTooLong);
    }
    Ok(Pair { key, value })
}

fn is_key_byte(b: u8) -> bool {
    // `#` only occurs in public extension keys (`X#...`, RFC 7143 13.5.2).
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'@' | b'_' | b'#')
}

/// Whether `key` is a private or public extension key (`X-...`, `X#...`),
/// which this implementation answers with `NotUnderstood`.
pub fn is_extension_key(key: &[u8]) -> bool {
    matches!(key, [b'X', b'-' | b'#', ..])
}

/// Reads a numerical value: decimal, `0x`/`0X` hex or `0b`/`0B` base64
/// (RFC 7143, 6.1), up to 64 bits.
pub fn parse_number(value: &[u8]) -> Option<u64> {
    match value {
        [b'0', b'x' | b'X', digits @ ..] => {
            let digits = trim_leading_zeros(digits);
            if value.len() == 2 || digits.len() > 16 {
                return None;
            }
            digits
                .iter()
                .try_fold(0u64, |n, &c| Some((n << 4) | u64::from(hex_val(c)?)))
        }
        [b'0', b'b' | b'B', ..] => {
            let mut bytes = [0u8; 8];
            let len = decode_binary(value, &mut bytes)?;
            let bytes = bytes.get(..len)?;
            Some(bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)))
        }
        [] => None,
        digits => digits.iter().try_fold(0u64, |n, &c| {
            let d = u64::from(c.checked_sub(b'0').filter(|d| *d <= 9)?);
            n.checked_mul(10)?.checked_add(d)
        }),
    }
}

/// Reads a number that must lie in `min..=max`.
pub fn parse_in_range(value: &[u8], min: u32, max: u32) -> Option<u32> {
    let n = parse_number(value)?;
    u32::try_from(n).ok().filter(|n| (min..=max).contains(n))
}

fn trim_leading_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    digits.get(zeros..).unwrap_or(&[])
}

/// Reads `Yes` or `No`.
pub fn parse_bool(value: &[u8]) -> Option<bool> {
    match value {
        b"Yes" => Some(true),
        b"No" => Some(false),
        _ => None,
    }
}

/// The items of a comma-separated list value.
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',')
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn base64_val(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes a binary value, `0x`/`0X` hex or `0b`/`0B` base64 (RFC 7143,
/// 6.1), into `out`; returns its length, or `None` if it is malformed,
/// empty or longer than `out`.
///
/// Hex with an odd number of digits reads as if a `0` led it; base64 may
/// omit its `=` padding.
pub fn decode_binary(value: &[u8], out: &mut [u8]) -> Option<usize> {
    match value {
        [b'0', b'x' | b'X', digits @ ..] => decode_hex(digits, out),
        [b'0', b'b' | b'B', chars @ ..] => decode_base64(chars, out),
        _ => None,
    }
}

fn decode_hex(digits: &[u8], out: &mut [u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    let len = digits.len().div_ceil(2);
    let out = out.get_mut(..len)?;
    // With an odd count the first byte takes a single digit.
    let (first, rest) = digits.split_at(digits.len() % 2);
    let mut bytes = out.iter_mut();
    if let [d] = first {
        *bytes.next()? = hex_val(*d)?;
    }
    for (byte, pair) in bytes.zip(rest.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *byte = (hex_val(*hi)? << 4) | hex_val(*lo)?;
    }
    Some(len)
}

fn decode_base64(chars: &[u8], out: &mut [u8]) -> Option<usize> {
    let pad = chars.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let chars = chars.get(..chars.len() - pad)?;
    if chars.is_empty() {
        return None;
    }
    let (mut acc, mut bits, mut len) = (0u32, 0u32, 0usize);
    for &c in chars {
        acc = (acc << 6) | base64_val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(len)? = (acc >> bits) as u8;
            len += 1;
            acc &= (1 << bits) - 1;
        }
    }
    // A lone trailing character (6 bits) cannot end a base64 string.
    (bits < 6).then_some(len)
}

/// The text did not fit into the buffer, or a key or value holds a NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteError;

/// Writes `key=value` entries into a caller's buffer.
///
/// Each entry is written whole or not at all.
pub struct TextWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> TextWriter<'a> {
    /// A writer that fills `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// The bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The text written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Drops everything written after the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        if bytes.contains(&0) {
            return Err(WriteError);
        }
        let end = self.len.checked_add(bytes.len()).ok_or(WriteError)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(WriteError)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn terminate(&mut self) -> Result<(), WriteError> {
        *self.buf.get_mut(self.len).ok_or(WriteError)? = 0;
        self.len += 1;
        Ok(())
    }

    /// Runs `body` between `key=` and the NUL, undoing everything on error.
    fn entry(
        &mut self,
        key: &[u8],
        body: impl FnOnce(&mut Self) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let start = self.len;
        let result = self
            .put(key)
            .and_then(|()| self.put(b"="))
            .and_then(|()| body(self))
            .and_then(|()| self.terminate());
        if result.is_err() {
            self.len = start;
        }
        result
    }

    /// Writes `key=value`.
    pub fn pair(&mut self, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        self.entry(key, |w| w.put(value))
    }

    /// Writes `key=` and a decimal number.
    pub fn pair_number(&mut self, key: &[u8], n: u64) -> Result<(), WriteError> {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = n;
        for slot in digits.iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
            start -= 1;
            if rest == 0 {
                break;
            }
        }
        self.pair(key, digits.get(start..).unwrap_or(&[]))
    }

    /// Writes `key=Yes` or `key=No`.
    pub fn pair_bool(&mut self, key: &[u8], value: bool) -> Result<(), WriteError> {
        self.pair(key, if value { b"Yes" } else { b"No" })
    }

    /// Writes `key=0x` and `bytes` in lower-case hex.
    pub fn pair_hex(&mut self, key: &[u8], bytes: &[u8]) -> Result<(), WriteError> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.entry(key, |w| {
            w.put(b"0x")?;
            for &b in bytes {
                let hi = DIGITS.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = DIGITS.get(usize::from(b & 15)).copied().unwrap_or(b'0');
                w.put(&[hi, lo])?;
            }
            Ok(())
        })
    }

    /// Writes `key=` and formatted text (e.g. an address and port).
    pub fn pair_fmt(&mut self, key: &[u8], value: fmt::Arguments<'_>) -> Result<(), WriteError> {
        self.entry(key, |w| {
            fmt::write(&mut FmtSink(w), value).map_err(|_| WriteError)
        })
    }
}

struct FmtSink<'w, 'a>(&'w mut TextWriter<'a>);

impl fmt::Write for FmtSink<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// A bounded iSCSI name (at most [`MAX_NAME_LEN`] bytes), kept as the
/// initiator sent it.
#[derive(Clone, Copy)]
pub struct IscsiName {
    bytes: [u8; MAX_NAME_LEN],
    len: u8,
}

impl IscsiName {
    /// The empty name (a discovery session has no target name).
    pub const EMPTY: Self = Self {
        bytes: [0; MAX_NAME_LEN],
        len: 0,
    };

    /// Copies `name`, or `None` if it is longer than [`MAX_NAME_LEN`].
    pub fn new(name: &[u8]) -> Option<Self> {
        let mut bytes = [0; MAX_NAME_LEN];
        bytes.get_mut(..name.len())?.copy_from_slice(name);
        Some(Self {
            bytes,
            len: u8::try_from(name.len()).ok()?,
        })
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Whether the name is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PartialEq for IscsiName {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for IscsiName {}

impl PartialEq<[u8]> for IscsiName {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl fmt::Debug for IscsiName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.as_bytes()),
        }
    }
}

/// iSCSI names compare without regard to case (RFC 3722 folds them to
/// lower case; initiators do not always send them folded).
pub fn names_equal(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// What a `SendTargets` request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTargetsQuery<'a> {
    /// `SendTargets=All`: every target the initiator may see.
    All,
    /// `SendTargets=<name>`: that target only.
    Target(&'a [u8]),
}

/// Writes the answer to `SendTargets`: a target source calls
/// [`target`](Self::target) for each target the initiator may see, each
/// followed by its [`address`](Self::address) calls.
///
/// Targets the query does not ask for are skipped here, so a source only
/// applies its access control. When the buffer fills up, the target being
/// written is dropped whole and later calls are ignored; [`truncated`]
/// (Self::truncated) tells.
pub struct SendTargetsWriter<'w, 'a> {
    w: &'w mut TextWriter<'a>,
    query: SendTargetsQuery<'w>,
    /// Where the current target's entries start, if it is being written.
    current: Option<usize>,
    truncated: bool,
}

impl<'w, 'a> SendTargetsWriter<'w, 'a> {
    /// A writer appending to `w` the targets `query` asks for.
    pub fn new(w: &'w mut TextWriter<'a>, query: SendTargetsQuery<'w>) -> Self {
        Self {
            w,
            query,
            current: None,
            truncated: false,
        }
    }

    /// Starts the entries of target `name`.
    pub fn target(&mut self, name: &[u8]) {
        self.current = None;
        if self.truncated {
            return;
        }
        if let SendTargetsQuery::Target(wanted) = self.query {
            if !names_equal(wanted, name) {
                return;
            }
        }
        let start = self.w.len();
        if self.w.pair(b"TargetName", name).is_ok() {
            self.current = Some(start);
        } else {
            self.truncated = true;
        }
    }

    /// Adds an address of the current target: `host:port,tpgt`, with an
    /// IPv6 host in brackets (RFC 7143, 13.8).
    pub fn address(&mut self, address: &[u8]) {
        if let Some(start) = self.current {
            let result = self.w.pair(b"TargetAddress", address);
            self.after_address(start, result);
        }
    }

    /// Like [`address`](Self::address), formatting the value.
    pub fn address_fmt(&mut self, address: fmt::Arguments<'_>) {
        if let Some(start) = self.current {
            let result = self.w.pair_fmt(b"TargetAddress", address);
            self.after_address(start, result);
        }
    }

    fn after_address(&mut self, start: usize, result: Result<(), WriteError>) {
        if result.is_err() {
            // Half a target would mislead: drop it whole.
            self.w.truncate(start);
            self.current = None;
            self.truncated = true;
        }
    }

    /// Whether some targets were left out for lack of room.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

/// The targets an initiator may discover, implemented by the caller.
pub trait TargetCatalog {
    /// Reports, through `w`, every target `initiator` may see (its access
    /// control applied) with its addresses. `w` drops the targets the query
    /// did not ask for.
    fn send_targets(&self, initiator: &[u8], w: &mut SendTargetsWriter<'_, '_>);
}
