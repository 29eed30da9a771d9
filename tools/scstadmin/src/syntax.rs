// SPDX-License-Identifier: GPL-2.0

//! The lexical and block structure of SCST's `scst.conf`.
//!
//! A file is a sequence of statements, one per line: words, of which a word
//! in double quotes may hold spaces, and `#` starts a comment that runs to
//! the end of the line. A statement followed by `{` (on its own line or the
//! next) opens a block of statements that `}` closes:
//!
//! ```text
//! HANDLER vdisk_fileio {
//!     DEVICE disk1 {
//!         filename /srv/disk1.img    # a comment
//!     }
//! }
//! ```
//!
//! This module knows nothing of what the words mean: [`crate::config`] does.

use std::fmt;

/// One statement and, when it opened a block, the statements inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The words of the statement, quotes removed; never empty.
    pub words: Vec<String>,
    /// The statements of its block (`None`: the statement had no block).
    pub block: Option<Vec<Node>>,
    /// Line number (from 1) of the statement.
    pub line: usize,
}

/// A file that is not well formed, with the line where it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong there.
    pub reason: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
}

/// Splits one line into tokens; a comment ends it.
fn tokenize(text: &str, line: usize) -> Result<Vec<Token>, SyntaxError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            '#' => break,
            c if c.is_whitespace() => {
                chars.next();
            }
            '{' => {
                chars.next();
                tokens.push(Token::Open);
            }
            '}' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if chars.peek().is_some_and(|&c| c == '"' || c == '\\') => {
                            word.extend(chars.next());
                        }
                        Some(c) => word.push(c),
                        None => {
                            return Err(SyntaxError {
                                line,
                                reason: "unterminated quoted value".into(),
                            })
                        }
                    }
                }
                tokens.push(Token::Word(word));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | '#' | '"') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// Parses a whole file into its top-level statements.
pub fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
    // Blocks being filled, innermost last, each with the line that opened it.
    let mut stack: Vec<(Vec<Node>, usize)> = vec![(Vec::new(), 0)];
    // The statement being read: it may still open a block.
    let mut pending: Option<Node> = None;
    for (index, text) in text.lines().enumerate() {
        let line = index + 1;
        // A statement ends with its line, unless the next opens its block.
        let mut words: Vec<String> = Vec::new();
        for token in tokenize(text, line)? {
            match token {
                Token::Word(w) => {
                    if let Some(node) = pending.take() {
                        push(&mut stack, node);
                    }
                    words.push(w);
                }
                Token::Open => {
                    let node = if words.is_empty() {
                        pending.take().ok_or_else(|| SyntaxError {
                            line,
                            reason: "'{' without a statement to open".into(),
                        })?
                    } else {
                        Node {
                            words: std::mem::take(&mut words),
                            block: None,
                            line,
                        }
                    };
                    open(&mut stack, node);
                }
                Token::Close => {
                    if let Some(node) = pending.take() {
                        push(&mut stack, node);
                    }
                    if !words.is_empty() {
                        push(
                            &mut stack,
                            Node {
                                words: std::mem::take(&mut words),
                                block: None,
                                line,
                            },
                        );
                    }
                    close(&mut stack, line)?;
                }
            }
        }
        if let Some(node) = pending.take() {
            push(&mut stack, node);
        }
        if !words.is_empty() {
            pending = Some(Node {
                words,
                block: None,
                line,
            });
        }
    }
    if let Some(node) = pending.take() {
        push(&mut stack, node);
    }
    if stack.len() > 1 {
        let opened = stack.last().map_or(0, |s| s.1);
        return Err(SyntaxError {
            line: opened,
            reason: "this block is never closed with '}'".into(),
        });
    }
    Ok(stack.pop().map(|s| s.0).unwrap_or_default())
}

/// Opens the block of `header`: the header takes its place in the
/// enclosing block now, and its statements when the block closes.
fn open(stack: &mut Vec<(Vec<Node>, usize)>, header: Node) {
    let line = header.line;
    push(
        stack,
        Node {
            block: Some(Vec::new()),
            ..header
        },
    );
    stack.push((Vec::new(), line));
}

fn push(stack: &mut [(Vec<Node>, usize)], node: Node) {
    if let Some((block, _)) = stack.last_mut() {
        block.push(node);
    }
}

fn close(stack: &mut Vec<(Vec<Node>, usize)>, line: usize) -> Result<(), SyntaxError> {
    if stack.len() < 2 {
        return Err(SyntaxError {
            line,
            reason: "'}' without an open block".into(),
        });
    }
    let (nodes, _) = stack.pop().unwrap_or_default();
    if let Some(header) = stack.last_mut().and_then(|(b, _)| b.last_mut()) {
        header.block = Some(nodes);
    }
    Ok(())
}

/// Quotes `value` for a configuration file when it needs it.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '{' | '}' | '#' | '"' | '\\'));
    if plain {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
