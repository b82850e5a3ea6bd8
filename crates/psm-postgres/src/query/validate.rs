//! Validation of query-layer calls before any I/O: size, parameter count, one statement only.

use psm_core::{Error, Result};

/// Limits the query layer enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_bytes: usize,
    pub(crate) max_params: usize,
}

/// Checks `sql` and the number of parameters against `limits`, and rejects more than one statement.
pub(crate) fn check(sql: &str, params: usize, limits: Limits) -> Result<()> {
    if sql.len() > limits.max_bytes {
        return Err(Error::validation("query is larger than max_query_bytes")
            .with_detail("bytes", sql.len())
            .with_detail("max_bytes", limits.max_bytes));
    }
    check_params(params, limits)?;
    if sql.as_bytes().contains(&0) {
        return Err(Error::validation("query holds a NUL byte"));
    }
    if plainly_one_statement(sql) {
        return Ok(());
    }
    match statement_count(sql) {
        0 => Err(Error::validation("query is empty")),
        1 => Ok(()),
        _ => Err(Error::validation(
            "query holds more than one statement; send one statement per call",
        )),
    }
}

/// Checks the number of parameters against `limits` (for SQL checked before).
pub(crate) fn check_params(params: usize, limits: Limits) -> Result<()> {
    if params > limits.max_params {
        return Err(
            Error::validation("query has more parameters than max_query_params")
                .with_detail("params", params)
                .with_detail("max_params", limits.max_params),
        );
    }
    Ok(())
}

/// Whether `sql` is certainly exactly one statement without scanning it: no `;` anywhere and a
/// first non-blank byte that starts a word or a parenthesis (not a comment, so there is content).
fn plainly_one_statement(sql: &str) -> bool {
    let b = sql.as_bytes();
    !b.contains(&b';')
        && b.iter()
            .find(|c| !c.is_ascii_whitespace())
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'(')
}

/// The number of statements in `sql`: `;`-separated pieces holding anything but whitespace and
/// comments. Quoted strings (`'…'`, `E'…'`), quoted identifiers, dollar-quoted bodies and comments
/// (`--`, nested `/* */`) are skipped, so a `;` inside them does not count.
pub(crate) fn statement_count(sql: &str) -> usize {
    let b = sql.as_bytes();
    let (mut i, mut count, mut content) = (0, 0, false);
    while i < b.len() {
        match b[i] {
            b';' => {
                if content {
                    count += 1;
                }
                content = false;
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                let escapes = i > 0 && matches!(b[i - 1], b'e' | b'E') && !ident_byte(b, i - 1);
                i = skip_quoted(b, i, b'\'', escapes);
                content = true;
            }
            b'"' => {
                i = skip_quoted(b, i, b'"', false);
                content = true;
            }
            // `$` inside a word belongs to it (identifiers may hold `$`): `a$x$` is a name, not
            // the start of a dollar quote.
            b'$' if ident_byte(b, i) => i += 1,
            b'$' => {
                content = true;
                i = skip_dollar(b, i);
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                content = true;
                i += 1;
            }
        }
    }
    count + usize::from(content)
}

/// Whether the byte before `at` continues a word: an identifier or keyword (letters, digits, `_`,
/// `$`, and every non-ASCII byte, as PostgreSQL's lexer has it) or a number. So `xe'` is not an
/// escape-string prefix and `a$x$` holds no dollar quote. Erring towards "a word" only ever makes
/// the scanner see more statements (a refusal), never fewer.
fn ident_byte(b: &[u8], at: usize) -> bool {
    at > 0 && {
        let c = b[at - 1];
        c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
    }
}

/// The index after the quoted run starting at `start` (doubled quotes continue it).
fn skip_quoted(b: &[u8], start: usize, q: u8, backslash_escapes: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if backslash_escapes && b[i] == b'\\' {
            i += 2;
        } else if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// The index after a `$tag$ … $tag$` body starting at `start`, or after a lone `$n` / `$`.
fn skip_dollar(b: &[u8], start: usize) -> usize {
    let mut j = start + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    let tag_is_word = j == start + 1 || !b[start + 1].is_ascii_digit();
    if j < b.len() && b[j] == b'$' && tag_is_word {
        let tag = &b[start..=j];
        let mut k = j + 1;
        while k + tag.len() <= b.len() {
            if &b[k..k + tag.len()] == tag {
                return k + tag.len();
            }
            k += 1;
        }
        return b.len();
    }
    j
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn counts_statements_outside_quotes_and_comments() {
        for (sql, n) in [
            ("SELECT 1", 1),
            ("SELECT 1;", 1),
            ("SELECT 1; ", 1),
            ("SELECT 1; -- done", 1),
            ("SELECT 1; /* c; */", 1),
            ("SELECT 1; SELECT 2", 2),
            ("SELECT ';'", 1),
            ("SELECT 'a'';'", 1),
            ("SELECT E'\\';' ", 1),
            ("SELECT \"a;b\" FROM t", 1),
            ("SELECT $$;$$", 1),
            ("SELECT $x$ ; $x$", 1),
            ("SELECT $1; DROP TABLE t", 2),
            ("x'; DROP TABLE users; --", 1),
            ("SELECT 1 /* /* ; */ ; */", 1),
            ("SELECT a$x$; DROP TABLE t; $x$", 3),
            ("SELECT 1 AS a$$; DROP TABLE t; $$", 3),
            ("SELECT 1 AS é$x$; DROP TABLE t; $x$", 3),
            ("SELECT x$E'; DROP TABLE t; --'", 1),
            ("SELECT xE'\\''; DROP TABLE t; --'", 1),
            ("SELECT '\\'; DROP TABLE t; --'", 2),
            ("SELECT E'\\\\'; DROP TABLE t; --'", 2),
            ("SELECT $x$ $y$ $x$; DROP TABLE t; $y$", 3),
            ("SELECT 1 -- ; \n; DROP TABLE t", 2),
            ("", 0),
            ("  ;  ; ", 0),
            ("-- only a comment", 0),
        ] {
            assert_eq!(statement_count(sql), n, "{sql:?}");
        }
    }

    #[test]
    fn check_enforces_limits() {
        let l = Limits {
            max_bytes: 20,
            max_params: 2,
        };
        assert!(check("SELECT $1", 1, l).is_ok());
        assert_eq!(
            check("SELECT 1 + 1 + 1 + 1 + 1", 0, l)
                .unwrap_err()
                .detail("max_bytes"),
            Some("20")
        );
        assert_eq!(
            check("SELECT 1", 3, l).unwrap_err().detail("max_params"),
            Some("2")
        );
        assert!(
            check("SELECT 1; SELECT 2", 0, l)
                .unwrap_err()
                .message()
                .contains("more than one statement")
        );
        assert!(check("  ", 0, l).unwrap_err().message().contains("empty"));
        assert!(
            check("SELECT '\0'", 0, l)
                .unwrap_err()
                .message()
                .contains("NUL")
        );
        assert!(check("-- c\nSELECT 1", 0, l).is_ok());
        assert!(check("/* only */", 0, l).is_err());
    }

    #[test]
    fn the_fast_path_agrees_with_the_scanner() {
        for sql in [
            "SELECT 1",
            "  select $1",
            "(SELECT 1)",
            "SELECT '--' || $x$/*$x$",
            "WITH a AS (SELECT 1) SELECT * FROM a",
        ] {
            assert!(plainly_one_statement(sql), "{sql:?}");
            assert_eq!(statement_count(sql), 1, "{sql:?}");
        }
        for sql in ["-- x", "/* x */ SELECT 1", "SELECT 1; SELECT 2", "", " "] {
            assert!(!plainly_one_statement(sql), "{sql:?}");
        }
    }
}
