//! Lexical helpers for SQL text sent to PostgreSQL: splitting a batch into statements,
//! rewriting `?` placeholders to `$n`, and finding a statement's first keyword. They know
//! PostgreSQL's quoting (`'…'` with `''`, `E'…'` with backslashes, `"…"`, `$tag$…$tag$`)
//! and comments (`--`, nested `/* */`), so a `?` or `;` inside any of them is left alone.
//!
//! Splitting and keyword checks are not a security wall on their own: each piece still runs
//! through the extended protocol, where the server itself refuses more than one statement.

/// A piece of SQL text as the lexer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// Code outside quotes and comments (one character).
    Code,
    /// Inside a quoted string, identifier, dollar-quoted body or comment.
    Quoted,
}

/// Calls `f(index, kind)` for each byte offset where a code character starts; quoted and
/// commented spans are reported once per character as [`Tok::Quoted`].
fn scan(sql: &str, mut f: impl FnMut(usize, Tok)) {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b'\'' => {
                // E'…' allows backslash escapes.
                let escapes = start > 0 && matches!(b[start - 1], b'e' | b'E') && {
                    start < 2 || !(b[start - 2].is_ascii_alphanumeric() || b[start - 2] == b'_')
                };
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
            }
            b'"' => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'"' {
                        if b.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
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
            b'$' if dollar_tag(&b[i..]).is_some() => {
                let tag = dollar_tag(&b[i..]).unwrap_or_default();
                i += tag.len();
                while i < b.len() && !b[i..].starts_with(tag) {
                    i += 1;
                }
                i = (i + tag.len()).min(b.len());
            }
            _ => {
                f(i, Tok::Code);
                i += 1;
                continue;
            }
        }
        f(start, Tok::Quoted);
    }
}

/// `$tag$` or `$$` at the start of `b` (not `$1`, a parameter).
fn dollar_tag(b: &[u8]) -> Option<&[u8]> {
    let end = b[1..].iter().position(|&c| c == b'$')? + 2;
    let tag = &b[1..end - 1];
    let ok = tag
        .first()
        .is_none_or(|c| c.is_ascii_alphabetic() || *c == b'_')
        && tag.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    ok.then_some(&b[..end])
}

/// Splits `;`-separated statements, dropping empty ones.
pub fn split(sql: &str) -> Vec<&str> {
    let mut cuts = Vec::new();
    scan(sql, |i, t| {
        if t == Tok::Code && sql.as_bytes()[i] == b';' {
            cuts.push(i);
        }
    });
    let mut out = Vec::new();
    let mut from = 0;
    for c in cuts.into_iter().chain([sql.len()]) {
        let piece = &sql[from..c];
        if !first_word(piece).is_empty() || piece.trim().starts_with('(') {
            out.push(piece);
        }
        from = c + 1;
    }
    out
}

/// Rewrites `?` placeholders to `$1`, `$2`, … unless the statement already uses `$n`
/// parameters (then it is left as written). Returns the text and the number of `?` seen.
pub fn placeholders(sql: &str) -> (String, usize) {
    let b = sql.as_bytes();
    let mut marks = Vec::new();
    let mut dollar_params = false;
    scan(sql, |i, t| {
        if t != Tok::Code {
            return;
        }
        match b[i] {
            b'?' => marks.push(i),
            b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => dollar_params = true,
            _ => {}
        }
    });
    if marks.is_empty() || dollar_params {
        return (sql.to_string(), 0);
    }
    let mut out = String::with_capacity(sql.len() + marks.len() * 2);
    let mut from = 0;
    for (n, m) in marks.iter().enumerate() {
        out.push_str(&sql[from..*m]);
        out.push('$');
        out.push_str(&(n + 1).to_string());
        from = m + 1;
    }
    out.push_str(&sql[from..]);
    (out, marks.len())
}

/// The statement's first keyword, uppercased (empty if there is none).
pub fn first_word(sql: &str) -> String {
    let mut first = None;
    scan(sql, |i, t| {
        if first.is_none() && t == Tok::Code && !sql.as_bytes()[i].is_ascii_whitespace() {
            first = Some(i);
        }
    });
    let Some(start) = first else {
        return String::new();
    };
    sql[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphabetic() || *c == '_')
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The first two keywords (for `SET CONSTRAINTS`, `PREPARE TRANSACTION`, …).
pub fn second_word(sql: &str) -> String {
    let w = first_word(sql);
    let Some(pos) = sql.to_ascii_uppercase().find(&w) else {
        return String::new();
    };
    first_word(&sql[pos + w.len()..])
}

/// An identifier, quoted.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let s = "CREATE TABLE a (x TEXT DEFAULT ';'); -- c;\nINSERT INTO a VALUES ($$;$$); /* ; /* ; */ */ SELECT E'\\';'; ;";
        let parts = split(s);
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(parts[1].contains("$$;$$"));
        assert!(parts[2].contains("E'\\';'"));
    }

    #[test]
    fn rewrites_placeholders_only_in_code() {
        let (s, n) = placeholders("SELECT '?', \"?\", ? /* ? */ , ? -- ?\n");
        assert_eq!(n, 2);
        assert_eq!(s, "SELECT '?', \"?\", $1 /* ? */ , $2 -- ?\n");
        let (s, n) = placeholders("SELECT $1, ?");
        assert_eq!((s.as_str(), n), ("SELECT $1, ?", 0));
        let (s, _) = placeholders("SELECT $tag$ ? $tag$, ?");
        assert_eq!(s, "SELECT $tag$ ? $tag$, $1");
    }

    #[test]
    fn finds_the_first_keyword() {
        assert_eq!(first_word("  /* x */ -- y\n commit"), "COMMIT");
        assert_eq!(first_word("\"commit\""), "");
        assert_eq!(first_word(""), "");
        assert_eq!(second_word("set  constraints all deferred"), "CONSTRAINTS");
    }
}
