// SPDX-License-Identifier: GPL-2.0

//! Parser for the lines written to SCST's `mgmt` sysfs files.
//!
//! A line is a verb followed by words and, at the end, optional parameters in
//! SCST's `key=value; key=value` form, e.g.
//! `add_device disk1 filename=/srv/disk1.img; blocksize=4096`.
//!
//! This module is plain `core` Rust: it borrows from the written buffer and
//! never allocates, so the kernel and the host test crate compile the same file.

use core::fmt;

/// Longest line accepted from a `mgmt` write (sysfs writes are one page).
pub const MAX_LINE_LEN: usize = 4096;

/// Longest object name (device, target, group, initiator).
pub const MAX_NAME_LEN: usize = 255;

/// The line SCST appends to an attribute's value when the value is part of
/// the configuration (given when the object was made, or changed from its
/// default): `scstadmin -write_config` saves exactly the marked attributes.
pub const KEY_MARK: &str = "[key]\n";

/// Why a `mgmt` line was refused. Every variant becomes `-EINVAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MgmtError<'a> {
    /// The line holds nothing but whitespace.
    Empty,
    /// The line is longer than [`MAX_LINE_LEN`] or is not UTF-8 text.
    NotText,
    /// The verb is not one this file understands.
    UnknownCommand(&'a str),
    /// A required word (named by the field) is missing.
    Missing(&'static str),
    /// Words follow where the command takes no more.
    Trailing(&'a str),
    /// A name is empty, too long, or holds a character sysfs cannot carry.
    BadName(&'a str),
    /// A parameter is not of the form `key=value`.
    BadParam(&'a str),
    /// A parameter key this command does not take.
    UnknownParam(&'a str),
    /// The same parameter appears twice.
    DuplicateParam(&'a str),
    /// A parameter value that does not parse or is out of range.
    BadValue {
        /// The parameter's key.
        key: &'a str,
        /// The refused value.
        value: &'a str,
        /// What was expected instead.
        expected: &'static str,
    },
    /// Two parameters that cannot be given together.
    Conflict(&'static str, &'static str),
    /// The named object does not exist.
    NoSuchObject(&'a str),
    /// An object of that name already exists.
    AlreadyExists(&'a str),
    /// The command is valid but the object's state forbids it.
    Refused(&'static str),
}

impl fmt::Display for MgmtError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty command"),
            Self::NotText => f.write_str("command is not a line of text"),
            Self::UnknownCommand(c) => write!(f, "unknown command '{c}'"),
            Self::Missing(what) => write!(f, "missing {what}"),
            Self::Trailing(rest) => write!(f, "unexpected '{rest}'"),
            Self::BadName(n) => write!(f, "invalid name '{n}'"),
            Self::BadParam(p) => write!(f, "parameter '{p}' is not key=value"),
            Self::UnknownParam(k) => write!(f, "unknown parameter '{k}'"),
            Self::DuplicateParam(k) => write!(f, "parameter '{k}' given twice"),
            Self::BadValue {
                key,
                value,
                expected,
            } => write!(
                f,
                "invalid value '{value}' for '{key}': expected {expected}"
            ),
            Self::Conflict(a, b) => write!(f, "'{a}' and '{b}' cannot be given together"),
            Self::NoSuchObject(n) => write!(f, "'{n}' does not exist"),
            Self::AlreadyExists(n) => write!(f, "'{n}' already exists"),
            Self::Refused(why) => f.write_str(why),
        }
    }
}

/// Result of parsing part of a `mgmt` line.
pub type MgmtResult<'a, T> = Result<T, MgmtError<'a>>;

/// A `mgmt` line split into its verb and the text after it.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    verb: &'a str,
    rest: &'a str,
}

impl<'a> Line<'a> {
    /// Parses the bytes of one write. A single trailing newline (as `echo`
    /// adds) and surrounding whitespace are ignored; an embedded newline is not.
    pub fn parse(input: &'a [u8]) -> MgmtResult<'a, Self> {
        if input.len() > MAX_LINE_LEN {
            return Err(MgmtError::NotText);
        }
        let text = core::str::from_utf8(input).map_err(|_| MgmtError::NotText)?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        if text.contains(['\n', '\0']) {
            return Err(MgmtError::NotText);
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(MgmtError::Empty);
        }
        let (verb, rest) = split_word(text);
        Ok(Self { verb, rest })
    }

    /// The first word of the line.
    pub fn verb(&self) -> &'a str {
        self.verb
    }

    /// Takes the next whitespace-separated word, or fails naming `what`.
    pub fn word(&mut self, what: &'static str) -> MgmtResult<'a, &'a str> {
        if self.rest.is_empty() {
            return Err(MgmtError::Missing(what));
        }
        let (word, rest) = split_word(self.rest);
        self.rest = rest;
        Ok(word)
    }

    /// Takes the next word and checks that it is a valid object name.
    pub fn name(&mut self, what: &'static str) -> MgmtResult<'a, &'a str> {
        let word = self.word(what)?;
        check_name(word)?;
        Ok(word)
    }

    /// Takes the rest of the line as one value (e.g. a CHAP `name secret`).
    pub fn rest(&mut self) -> &'a str {
        let rest = self.rest;
        self.rest = "";
        rest
    }

    /// Fails unless the whole line has been consumed.
    pub fn end(&self) -> MgmtResult<'a, ()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(MgmtError::Trailing(self.rest))
        }
    }

    /// Takes the remainder as `key=value; ...` parameters.
    pub fn params(&mut self) -> Params<'a> {
        let rest = self.rest;
        self.rest = "";
        Params { rest }
    }
}

fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

/// Checks an object name: 1 to [`MAX_NAME_LEN`] printable ASCII characters,
/// none of them `/` (a sysfs path separator) or whitespace.
pub fn check_name(name: &str) -> MgmtResult<'_, ()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b';' && b != b'=');
    if ok {
        Ok(())
    } else {
        Err(MgmtError::BadName(name))
    }
}

/// The `key=value` parameters at the end of a line, separated by `;`.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    rest: &'a str,
}

/// One parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// The key, trimmed.
    pub key: &'a str,
    /// The value, trimmed; may be empty only if the key allows it.
    pub value: &'a str,
}

impl<'a> Iterator for Params<'a> {
    type Item = MgmtResult<'a, Param<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (item, rest) = self.rest.split_once(';').unwrap_or((self.rest, ""));
            self.rest = rest;
            let item = item.trim();
            if item.is_empty() {
                // Tolerate `a=1;` and `a=1; ; b=2`, as SCST does.
                continue;
            }
            return Some(match item.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() && !value.trim().is_empty() => {
                    Ok(Param {
                        key: key.trim(),
                        value: value.trim(),
                    })
                }
                _ => Err(MgmtError::BadParam(item)),
            });
        }
    }
}

/// Parses parameters against a fixed set of `keys`, storing each value at the
/// index of its key in `values`. Unknown and repeated keys are refused.
pub fn collect_params<'a, const N: usize>(
    params: Params<'a>,
    keys: &[&'static str; N],
    values: &mut [Option<&'a str>; N],
) -> MgmtResult<'a, ()> {
    for param in params {
        let param = param?;
        let index = keys
            .iter()
            .position(|k| *k == param.key)
            .ok_or(MgmtError::UnknownParam(param.key))?;
        if values[index].is_some() {
            return Err(MgmtError::DuplicateParam(param.key));
        }
        values[index] = Some(param.value);
    }
    Ok(())
}

/// Parses a decimal (or `0x` hexadecimal) unsigned integer.
pub fn parse_u64(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        if hex.is_empty() {
            return None;
        }
        return u64::from_str_radix(hex, 16).ok();
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses a `0`/`1` flag value.
pub fn parse_bool<'a>(key: &'a str, value: &'a str) -> MgmtResult<'a, bool> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(MgmtError::BadValue {
            key,
            value,
            expected: "0 or 1",
        }),
    }
}

/// Parses a number in `min..=max`.
pub fn parse_ranged<'a>(key: &'a str, value: &'a str, min: u64, max: u64) -> MgmtResult<'a, u64> {
    parse_u64(value)
        .filter(|v| (min..=max).contains(v))
        .ok_or(MgmtError::BadValue {
            key,
            value,
            expected: "a number in range",
        })
}

/// Parses a byte count with an optional binary suffix (`K`, `M`, `G`, `T`).
pub fn parse_size<'a>(key: &'a str, value: &'a str) -> MgmtResult<'a, u64> {
    let bad = MgmtError::BadValue {
        key,
        value,
        expected: "a size in bytes, optionally with K, M, G or T",
    };
    let shift = match value.chars().last() {
        Some('K' | 'k') => 10,
        Some('M' | 'm') => 20,
        Some('G' | 'g') => 30,
        Some('T' | 't') => 40,
        _ => 0,
    };
    let digits = match shift {
        0 => value,
        _ => value.get(..value.len() - 1).ok_or(bad)?,
    };
    let base = parse_u64(digits).ok_or(bad)?;
    base.checked_mul(1u64 << shift).ok_or(bad)
}

/// A fixed-capacity text buffer that `write!` fills, silently truncating.
///
/// Used for the result of the last `mgmt` command, which must be recorded
/// without allocating (the failure being recorded may be `ENOMEM`).
#[derive(Clone)]
pub struct TextBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> TextBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    /// The text written so far (cut at a character boundary if truncated).
    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..self.len).unwrap_or_default();
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            // Truncation split a character: drop its partial bytes.
            Err(e) => core::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or_default())
                .unwrap_or_default(),
        }
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for TextBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for TextBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.get_mut(self.len..).unwrap_or_default();
        let n = s.len().min(room.len());
        for (dst, src) in room.iter_mut().zip(s.bytes()) {
            *dst = src;
        }
        self.len += n;
        Ok(())
    }
}

/// Matches an initiator name against an SCST-style pattern: `*` matches any
/// run of characters, `?` one character; a leading `!` negates the pattern.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('!') {
        Some(p) => !glob(p.as_bytes(), name.as_bytes()),
        None => glob(pattern.as_bytes(), name.as_bytes()),
    }
}

/// Iterative glob with backtracking to the last `*`: linear in practice,
/// no recursion on input the admin controls.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// The symbolic name of an errno (positive or negative) that a management
/// command can meet, for `last_sysfs_mgmt_res` (the kernel's own table,
/// CONFIG_SYMBOLIC_ERRNAME, may be configured out).
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno.unsigned_abs() {
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        6 => "ENXIO",
        12 => "ENOMEM",
        13 => "EACCES",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        27 => "EFBIG",
        28 => "ENOSPC",
        30 => "EROFS",
        36 => "ENAMETOOLONG",
        40 => "ELOOP",
        95 => "EOPNOTSUPP",
        _ => return None,
    })
}
