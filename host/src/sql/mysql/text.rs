//! Just enough of MariaDB's lexical structure for the MariaDB backend's checks and
//! rewrites: splitting a batch at top-level `;`, finding a statement's leading keywords,
//! spotting executable comments (`/*! … */`, `/*M! … */`), and visiting the words and `?`
//! placeholders outside literals and comments.

/// One lexical piece of a statement that matters to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A bare word (keyword or unquoted identifier), as written.
    Word(&'a str),
    /// A `?` placeholder.
    Placeholder,
    /// A `;` at top level.
    Semicolon,
    /// Anything else: literals, quoted identifiers, comments, punctuation, whitespace.
    Other(&'a str),
    /// A comment the server would execute (`/*!…*/`, `/*M!…*/`).
    Executable,
}

/// Splits `sql` into pieces; concatenating the texts gives `sql` back (placeholders are
/// `?`, semicolons `;`, an executable comment is its text in [`Piece::Other`] order).
pub fn pieces(sql: &str) -> Vec<(Piece<'_>, &str)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let piece = match c {
            b'\'' | b'"' | b'`' => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'\\' && c != b'`' {
                        i += 2;
                        continue;
                    }
                    if b[i] == c {
                        if i + 1 < b.len() && b[i + 1] == c {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                i = i.min(b.len());
                Piece::Other(&sql[start..i])
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                Piece::Other(&sql[start..i])
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                Piece::Other(&sql[start..i])
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let exec = b.get(i + 2) == Some(&b'!')
                    || (matches!(b.get(i + 2), Some(b'M' | b'm')) && b.get(i + 3) == Some(&b'!'));
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(b.len());
                if exec {
                    Piece::Executable
                } else {
                    Piece::Other(&sql[start..i])
                }
            }
            b'?' => {
                i += 1;
                Piece::Placeholder
            }
            b';' => {
                i += 1;
                Piece::Semicolon
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                Piece::Word(&sql[start..i])
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                Piece::Other(&sql[start..i])
            }
            _ => {
                // One character (whole UTF-8 sequences are covered by the `>= 0x80` arm).
                i += 1;
                Piece::Other(&sql[start..i])
            }
        };
        out.push((piece, &sql[start..i]));
    }
    out
}

/// True if `sql` holds a comment the server would execute.
pub fn has_executable_comment(sql: &str) -> bool {
    pieces(sql).iter().any(|(p, _)| *p == Piece::Executable)
}

/// The statements of a batch, split at top-level `;`, trimmed, without empty ones
/// (a statement of comments only counts as empty).
pub fn split(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_word = false;
    let mut pos = 0;
    for (p, text) in pieces(sql) {
        match p {
            Piece::Semicolon => {
                if has_word {
                    out.push(sql[start..pos].trim());
                }
                start = pos + 1;
                has_word = false;
            }
            Piece::Other(t) if t.trim().is_empty() || is_comment(t) => {}
            _ => has_word = true,
        }
        pos += text.len();
    }
    if has_word {
        out.push(sql[start..].trim());
    }
    out
}

fn is_comment(t: &str) -> bool {
    t.starts_with("--") || t.starts_with('#') || t.starts_with("/*")
}

/// The first `n` bare words of a statement, uppercased (comments, whitespace and opening
/// parentheses skipped; anything else ends the list).
pub fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (p, _) in pieces(sql) {
        if out.len() == n {
            break;
        }
        match p {
            Piece::Word(w) => out.push(w.to_ascii_uppercase()),
            Piece::Other(t) if t.trim().is_empty() || is_comment(t) || t == "(" => {}
            _ => break,
        }
    }
    out
}

/// The number of `?` placeholders.
#[cfg(test)]
pub fn placeholders(sql: &str) -> usize {
    pieces(sql)
        .iter()
        .filter(|(p, _)| *p == Piece::Placeholder)
        .count()
}

/// True if any bare word of `sql` is `word` (case-insensitive).
pub fn has_word(sql: &str, word: &str) -> bool {
    pieces(sql)
        .iter()
        .any(|(p, _)| matches!(p, Piece::Word(w) if w.eq_ignore_ascii_case(word)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_literals_and_comments() {
        let s = "-- a; comment\nCREATE TABLE a (x INT); /* b; */ INSERT INTO a VALUES (';', \"x;\\\"\", `c;`);; -- end";
        assert_eq!(
            split(s),
            [
                "-- a; comment\nCREATE TABLE a (x INT)",
                "/* b; */ INSERT INTO a VALUES (';', \"x;\\\"\", `c;`)"
            ]
        );
        assert!(split(" ; -- x\n ;").is_empty());
    }

    #[test]
    fn words_and_placeholders() {
        assert_eq!(leading_words(" /* x */ ( select 1", 2), ["SELECT"]);
        assert_eq!(
            leading_words("-- c\nSET autocommit=1", 2),
            ["SET", "AUTOCOMMIT"]
        );
        assert_eq!(placeholders("SELECT ?, '?', `?`, \"?\" -- ?\n, ?"), 2);
        assert!(has_executable_comment("SELECT /*!50000 1 */"));
        assert!(has_executable_comment("SELECT /*M!100000 1 */"));
        assert!(!has_executable_comment("SELECT '/*!50000 1 */' /* ! */"));
        assert!(has_word("SELECT a FROM t FOR update", "UPDATE"));
    }
}
