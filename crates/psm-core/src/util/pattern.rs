//! Shell-style permission patterns (`files:*`, `doc.?`, `[rw]ead`, `[!x]*`).
//!
//! Matching runs in `O(pattern × permission)` time at worst: the matcher remembers only the last `*`
//! and resumes from it, so no input can trigger exponential backtracking.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, ErrorKind, Result, is_valid_permission};

/// A validated, compiled permission pattern, for matching many permissions against one pattern.
///
/// Syntax (case-sensitive, shell style):
/// - `*` matches any run of characters, including none and including `:` and `.`;
/// - `?` matches exactly one character (a Unicode scalar value, not a byte);
/// - `[abc]` matches one of the listed characters, `[a-z]` one in the range, `[!abc]` one not listed;
///   a `]` right after `[` or `[!` is a member, and a `-` first or last is literal;
/// - a `[` without a closing `]` is a literal `[`; every other character matches itself.
///
/// A range written backwards (`[z-a]`) matches nothing.
///
/// ```
/// use psm_core::util::PermissionPattern;
///
/// let p = PermissionPattern::parse("files:*:read")?;
/// assert!(p.matches("files:docs:read"));
/// assert!(p.matches("files:a.b:c:read"));
/// assert!(!p.matches("files:docs:write"));
/// # Ok::<(), psm_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PermissionPattern {
    source: Box<str>,
    tokens: Vec<Token>,
}

/// One pattern element; each consumes exactly one character, except `Star`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Token {
    Literal(char),
    AnyChar,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Self::Literal(l) => *l == c,
            Self::AnyChar => true,
            Self::Star => false,
            Self::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }
}

impl PermissionPattern {
    /// Validates and compiles `pattern`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidPermission`] when `pattern` is empty, longer than 255 bytes, or contains
    /// whitespace or control characters (the same rules as a permission).
    pub fn parse(pattern: &str) -> Result<Self> {
        if !is_valid_permission(pattern) {
            let reason = if pattern.is_empty() {
                "permission pattern is empty"
            } else if pattern.len() > crate::MAX_PERMISSION_LEN {
                "permission pattern is longer than 255 bytes"
            } else {
                "permission pattern may not contain whitespace or control characters"
            };
            return Err(Error::new(ErrorKind::InvalidPermission, reason)
                .with_detail("length", pattern.len()));
        }
        Ok(Self::compile(pattern))
    }

    /// Compiles any string without validating it; used by the free functions, which accept any input.
    fn compile(pattern: &str) -> Self {
        Self {
            source: pattern.into(),
            tokens: tokenize(pattern),
        }
    }

    /// Whether `permission` matches this pattern.
    pub fn matches(&self, permission: &str) -> bool {
        glob_match(&self.tokens, permission)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern has no wildcards, so it matches exactly one permission: itself.
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }
}

/// Whether `permission` matches the shell-style `pattern` (syntax: [`PermissionPattern`]).
///
/// Any string is accepted as a pattern and nothing panics; use [`PermissionPattern::parse`] to
/// validate a pattern first or to match it against many permissions.
///
/// ```
/// use psm_core::util::match_permission_pattern;
///
/// assert!(match_permission_pattern("admin:users:delete", "admin:*"));
/// assert!(match_permission_pattern("doc.read", "doc.????"));
/// assert!(match_permission_pattern("read", "[rw]ead"));
/// assert!(!match_permission_pattern("read", "[!r]ead"));
/// assert!(!match_permission_pattern("Admin", "admin"));
/// assert!(match_permission_pattern("[x", "[x"));
/// ```
pub fn match_permission_pattern(permission: &str, pattern: &str) -> bool {
    if !pattern.contains(['*', '?', '[']) {
        return permission == pattern;
    }
    glob_match(&tokenize(pattern), permission)
}

/// The entries of `permissions` that match `pattern`, in their original order.
///
/// Works on owned or borrowed items: `filter_permissions_by_pattern(&perms, "files:*")` yields
/// references, `filter_permissions_by_pattern(perms, "files:*")` moves the kept values.
///
/// ```
/// use psm_core::util::filter_permissions_by_pattern;
///
/// let perms = ["files:read", "users:read", "files:write"];
/// assert_eq!(filter_permissions_by_pattern(perms, "files:*"), ["files:read", "files:write"]);
/// ```
pub fn filter_permissions_by_pattern<I>(permissions: I, pattern: &str) -> Vec<I::Item>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let compiled = PermissionPattern::compile(pattern);
    permissions
        .into_iter()
        .filter(|p| compiled.matches(p.as_ref()))
        .collect()
}

fn tokenize(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::with_capacity(chars.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        let token = match c {
            // Consecutive stars are one star; keeping one keeps the matcher's work minimal.
            '*' if tokens.last() == Some(&Token::Star) => continue,
            '*' => Token::Star,
            '?' => Token::AnyChar,
            '[' => match parse_class(&chars, i) {
                Some((class, next)) => {
                    i = next;
                    class
                }
                None => Token::Literal('['),
            },
            _ => Token::Literal(c),
        };
        tokens.push(token);
    }
    tokens
}

/// Parses a class whose body starts at `start` (just after `[`); returns it and the index after
/// its `]`, or `None` when it is not closed.
fn parse_class(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = chars.get(i) == Some(&'!');
    if negated {
        i += 1;
    }
    let body_start = i;
    // A `]` first in the body is a member, so the search for the closing one starts after it.
    if chars.get(i) == Some(&']') {
        i += 1;
    }
    let end = i + chars.get(i..)?.iter().position(|&c| c == ']')?;
    let body = &chars[body_start..end];
    let mut ranges = Vec::new();
    let mut j = 0;
    while let Some(&lo) = body.get(j) {
        match (body.get(j + 1), body.get(j + 2)) {
            (Some('-'), Some(&hi)) => {
                // A backwards range matches nothing, so it is left out.
                if lo <= hi {
                    ranges.push((lo, hi));
                }
                j += 3;
            }
            _ => {
                ranges.push((lo, lo));
                j += 1;
            }
        }
    }
    Some((Token::Class { negated, ranges }, end + 1))
}

/// Greedy matching that remembers only the most recent `*`: on a mismatch, that star absorbs one
/// more character and matching resumes after it. Earlier stars never need revisiting, because the
/// later star can absorb anything they could, which bounds the work by `tokens × text`.
fn glob_match(tokens: &[Token], text: &str) -> bool {
    let mut t = 0;
    let mut s = 0;
    // (token index after the star, byte offset in `text` where the star's run ends).
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = text[s..].chars().next() {
        match tokens.get(t) {
            Some(Token::Star) => {
                t += 1;
                star = Some((t, s));
                continue;
            }
            Some(token) if token.matches(c) => {
                t += 1;
                s += c.len_utf8();
                continue;
            }
            _ => {}
        }
        let Some((after_star, run_end)) = star else {
            return false;
        };
        // The star takes one more character; `run_end < s <= text.len()`, so one exists.
        let Some(absorbed) = text[run_end..].chars().next() else {
            return false;
        };
        let next = run_end + absorbed.len_utf8();
        star = Some((after_star, next));
        t = after_star;
        s = next;
    }
    tokens[t.min(tokens.len())..]
        .iter()
        .all(|tok| *tok == Token::Star)
}

impl fmt::Display for PermissionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for PermissionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PermissionPattern")
            .field(&self.source)
            .finish()
    }
}

impl FromStr for PermissionPattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for PermissionPattern {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for PermissionPattern {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for PermissionPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rules_examples() {
        let m = match_permission_pattern;
        assert!(m("files:read", "files:*"));
        assert!(m("files:a:b.c", "files:*"));
        assert!(m("files:", "files:*"));
        assert!(m("a.b:c", "*"));
        assert!(m("", "*"));
        assert!(!m("file:read", "files:*"));
        assert!(m("doc1", "doc?"));
        assert!(!m("doc", "doc?"));
        assert!(!m("doc12", "doc?"));
        assert!(m("docé", "doc?"), "? is one character, not one byte");
        assert!(m("read", "[rw]ead") && m("wead", "[rw]ead") && !m("bead", "[rw]ead"));
        assert!(m("bead", "[!rw]ead") && !m("read", "[!rw]ead"));
        assert!(m("v5", "v[0-9]") && !m("vx", "v[0-9]") && m("vx", "v[!0-9]"));
        assert!(!m("Files:read", "files:*"), "case-sensitive");
    }

    #[test]
    fn class_edge_cases() {
        let m = match_permission_pattern;
        assert!(m("[", "["));
        assert!(m("a[b", "a[b"));
        assert!(m("[!", "[!"));
        assert!(m("[!]", "[!]"), "no closing bracket after the member ]");
        assert!(m("]", "[]]") && m("x]", "x[]]"));
        assert!(m("a", "[!]]") && !m("]", "[!]]"));
        assert!(m("-", "[-a]") && m("-", "[a-]") && !m("b", "[-a]"));
        assert!(!m("m", "[z-a]") && !m("z", "[z-a]"));
        assert!(m("é", "[à-ü]"));
        assert!(m("[ab", "[ab"), "unclosed class is literal");
        assert!(m("[xyz]", "[[]xyz]"));
    }

    #[test]
    fn stars_and_backtracking() {
        let m = match_permission_pattern;
        assert!(m("abcbcd", "a*bcd"));
        assert!(m("aaa", "a*a*a"));
        assert!(!m("aa", "a*a*a"));
        assert!(m("admin:users:delete", "*:*:delete"));
        assert!(!m("admin:users:deletex", "*:*:delete"));
        assert!(m("x", "**x**"));
        assert!(m("ab", "*?*?*"));
        assert!(!m("a", "*?*?*"));
    }

    #[test]
    fn many_stars_finish_quickly() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "a*".repeat(2_000));
        let start = Instant::now();
        assert!(!match_permission_pattern(&text, &pattern));
        assert!(match_permission_pattern(&text, &"*a".repeat(100)));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn compiled_pattern_validates() {
        let p = PermissionPattern::parse("files:*").unwrap();
        assert!(p.matches("files:x") && !p.is_literal());
        assert_eq!(p.as_str(), "files:*");
        assert_eq!(p.to_string(), "files:*");
        assert!(PermissionPattern::parse("files:read").unwrap().is_literal());
        for bad in ["", "a *", "a\n", &"*".repeat(256)] {
            assert_eq!(
                PermissionPattern::parse(bad).unwrap_err().kind(),
                ErrorKind::InvalidPermission
            );
        }
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<PermissionPattern>(&json).unwrap(), p);
        assert!(serde_json::from_str::<PermissionPattern>("\"a b\"").is_err());
    }

    #[test]
    fn filter_keeps_order_for_owned_and_borrowed() {
        let perms = vec![
            String::from("b:1"),
            String::from("a:1"),
            String::from("b:2"),
        ];
        assert_eq!(
            filter_permissions_by_pattern(&perms, "b:*"),
            [&perms[0], &perms[2]]
        );
        assert_eq!(
            filter_permissions_by_pattern(perms.clone(), "?:1"),
            ["b:1", "a:1"]
        );
        assert!(filter_permissions_by_pattern(perms, "c*").is_empty());
    }

    /// Reference matcher: plain recursion over characters, exponential but obviously correct.
    fn naive(tokens: &[Token], text: &[char]) -> bool {
        match tokens.split_first() {
            None => text.is_empty(),
            Some((Token::Star, rest)) => (0..=text.len()).any(|k| naive(rest, &text[k..])),
            Some((tok, rest)) => text
                .split_first()
                .is_some_and(|(c, tail)| tok.matches(*c) && naive(rest, tail)),
        }
    }

    proptest! {
        #[test]
        fn never_panics(permission in any::<String>(), pattern in any::<String>()) {
            let _ = match_permission_pattern(&permission, &pattern);
            let _ = PermissionPattern::parse(&pattern);
        }

        #[test]
        fn star_matches_everything(permission in any::<String>()) {
            prop_assert!(match_permission_pattern(&permission, "*"));
        }

        #[test]
        fn literal_patterns_match_only_themselves(pattern in "[^*?\\[]{0,20}", other in any::<String>()) {
            prop_assert!(match_permission_pattern(&pattern, &pattern));
            prop_assert_eq!(match_permission_pattern(&other, &pattern), other == pattern);
        }

        #[test]
        fn agrees_with_naive_matcher(text in "[ab:é]{0,10}", pattern in "[ab:é*?\\[\\]!-]{0,10}") {
            let chars: Vec<char> = text.chars().collect();
            prop_assert_eq!(match_permission_pattern(&text, &pattern), naive(&tokenize(&pattern), &chars));
        }

        #[test]
        fn many_stars_are_fast(stars in 1usize..200, len in 0usize..2000) {
            let pattern = format!("{}b", "a*".repeat(stars));
            let text = "a".repeat(len);
            prop_assert!(!match_permission_pattern(&text, &pattern));
        }

        #[test]
        fn stars_around_a_literal_find_it(prefix in "[a-z:.]{0,10}", lit in "[a-z]{1,5}", suffix in "[a-z:.]{0,10}") {
            let text = format!("{}{}{}", prefix, lit, suffix);
            let pattern = format!("*{lit}*");
            prop_assert!(match_permission_pattern(&text, &pattern));
        }
    }
}
