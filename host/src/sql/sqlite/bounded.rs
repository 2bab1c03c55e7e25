//! SQLite's string searches with a bounded cost, registered over the built-in ones on every
//! connection of the SQLite backend.
//!
//! The progress handler can stop a statement only between two VDBE ops, and one op is one
//! function call. SQLite's `instr` and `replace` search naively (pattern × text: 0.5 MB in
//! 1 MB runs for seconds) and `LIKE`/`GLOB` cost up to pattern × text, all within one op.
//! These versions give the same answers: `instr` and `replace` search in linear time
//! (`memchr::memmem`), and `like`/`glob` match with the classic one-backtrack-point
//! algorithm (at most pattern × text steps, never exponential) that looks at the
//! statement's deadline every few thousand steps and interrupts it like the progress
//! handler does.
//!
//! SQLite runs its progress handler only at jumps (loops), so a straight-line expression of
//! many costly calls is never checked. Each function here, and `randomblob`, `hex`, `upper`
//! and `lower` (the costliest producers of large values per byte: random bytes, doubling
//! any value, and copying one),
//! refuses to start once the deadline has passed: such an expression stops at its first
//! call of one of them past the deadline.
//!
//! Values are converted to text as SQLite converts them (integers in decimal, reals as
//! `%!.15g`, blobs as their bytes), and results are the same type SQLite's are.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ffi};

/// What the functions read at run time: the statement's deadline (nanoseconds since the
/// backend's epoch, as its progress handler reads it) and the connection's limits in force.
#[derive(Clone)]
pub struct Bounds {
    pub deadline: Arc<AtomicU64>,
    pub length: Arc<AtomicU64>,
    pub like_pattern_length: Arc<AtomicU64>,
    pub now: fn(Instant) -> u64,
}

impl Bounds {
    fn interrupted(&self) -> bool {
        (self.now)(Instant::now()) > self.deadline.load(Ordering::Relaxed)
    }
}

/// Registers `instr`, `replace`, `like` (2 and 3 arguments) and `glob` on `conn`.
pub fn register(conn: &Connection, bounds: &Bounds) -> rusqlite::Result<()> {
    // Innocuous: usable in views, triggers and CHECK constraints with trusted_schema off,
    // as the built-ins are.
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    let b = bounds.clone();
    conn.create_scalar_function("instr", 2, flags, move |ctx| instr(ctx, &b))?;
    let b = bounds.clone();
    conn.create_scalar_function("replace", 3, flags, move |ctx| replace(ctx, &b))?;
    for args in [2, 3] {
        let b = bounds.clone();
        conn.create_scalar_function("like", args, flags, move |ctx| {
            pattern_match(ctx, &b, Syntax::Like)
        })?;
    }
    let b = bounds.clone();
    conn.create_scalar_function("glob", 2, flags, move |ctx| {
        pattern_match(ctx, &b, Syntax::Glob)
    })?;
    let b = bounds.clone();
    conn.create_scalar_function("hex", 1, flags, move |ctx| hex(ctx, &b))?;
    for (name, upper) in [("upper", true), ("lower", false)] {
        let b = bounds.clone();
        conn.create_scalar_function(name, 1, flags, move |ctx| case(ctx, &b, upper))?;
    }
    // Not deterministic: every call draws anew.
    let b = bounds.clone();
    conn.create_scalar_function(
        "randomblob",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_INNOCUOUS,
        move |ctx| randomblob(ctx, &b),
    )?;
    Ok(())
}

/// Refuses to start more work once the statement's deadline has passed. SQLite checks it
/// only at jumps (loops): between the calls of one straight-line expression (60 calls of
/// `randomblob(900000)` summed in one SELECT) only the functions themselves can.
fn check(bounds: &Bounds) -> rusqlite::Result<()> {
    if bounds.interrupted() {
        Err(interrupted())
    } else {
        Ok(())
    }
}

/// An integer as SQLite's `sqlite3_value_int64` reads one: a real truncated (saturating),
/// text and blobs by their leading integer, NULL as 0.
fn int64_of(v: ValueRef<'_>) -> i64 {
    match v {
        ValueRef::Null => 0,
        ValueRef::Integer(i) => i,
        ValueRef::Real(f) => f as i64,
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            let t = t.trim_ascii_start();
            let (negative, digits) = match t.first() {
                Some(b'-') => (true, &t[1..]),
                Some(b'+') => (false, &t[1..]),
                _ => (false, t),
            };
            let mut n: i64 = 0;
            for &d in digits.iter().take_while(|d| d.is_ascii_digit()) {
                n = n.saturating_mul(10).saturating_add(i64::from(d - b'0'));
            }
            if negative { n.saturating_neg() } else { n }
        }
    }
}

/// `randomblob(N)`: N random bytes (at least 1).
fn randomblob(ctx: &Context<'_>, bounds: &Bounds) -> rusqlite::Result<Vec<u8>> {
    check(bounds)?;
    let n = int64_of(ctx.get_raw(0)).max(1) as u64;
    if n > bounds.length.load(Ordering::Relaxed) {
        return Err(too_big());
    }
    let mut bytes = vec![0u8; n as usize];
    rand::fill(&mut bytes[..]);
    Ok(bytes)
}

/// `upper(X)` / `lower(X)`: X as text with its ASCII letters in one case; NULL for NULL.
fn case(ctx: &Context<'_>, bounds: &Bounds, upper: bool) -> rusqlite::Result<Option<TextBytes>> {
    check(bounds)?;
    Ok(text_of(ctx.get_raw(0)).map(|t| {
        TextBytes(if upper {
            t.to_ascii_uppercase()
        } else {
            t.to_ascii_lowercase()
        })
    }))
}

/// `hex(X)`: the bytes of X (its text, for a number) as upper-case hex text; '' for NULL.
fn hex(ctx: &Context<'_>, bounds: &Bounds) -> rusqlite::Result<String> {
    check(bounds)?;
    let bytes = text_of(ctx.get_raw(0)).unwrap_or_default();
    if bytes.len() as u64 * 2 > bounds.length.load(Ordering::Relaxed) {
        return Err(too_big());
    }
    Ok(::hex::encode_upper(&bytes[..]))
}

/// Text bytes that need not be UTF-8 (SQLite's text of a blob is its bytes).
struct TextBytes(Vec<u8>);

impl ToSql for TextBytes {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(&self.0)))
    }
}

/// An error with SQLite's code and message (a message turns any code into SQLITE_ERROR).
fn sqlite_error(message: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        ffi::Error::new(ffi::SQLITE_ERROR),
        Some(message.to_string()),
    )
}

/// SQLITE_TOOBIG, as the built-ins report it.
fn too_big() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_TOOBIG), None)
}

/// SQLITE_INTERRUPT, as a statement stopped by the progress handler reports it.
fn interrupted() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_INTERRUPT), None)
}

/// A value as SQLite's `sqlite3_value_text` sees it; `None` for NULL.
fn text_of(v: ValueRef<'_>) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(Cow::Owned(i.to_string().into_bytes())),
        ValueRef::Real(f) => Some(Cow::Owned(real_text(f).into_bytes())),
        ValueRef::Text(t) => Some(Cow::Borrowed(t)),
        ValueRef::Blob(b) => Some(Cow::Borrowed(b)),
    }
}

/// A real as SQLite renders it in text: `printf("%!.15g")` (15 significant digits, at least
/// one digit after the point, exponent form below 1e-4 and from 1e15).
pub fn real_text(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // d.dddddddddddddde±x, correctly rounded to 15 digits.
    let sci = format!("{:.14e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..15).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}.{rest}e{esign}{:02}", exp.abs())
    } else if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            let zeros = "0".repeat(int_len - digits.len());
            format!("{sign}{digits}{zeros}.0")
        } else {
            let (int, frac) = digits.split_at(int_len);
            format!("{sign}{int}.{frac}")
        }
    }
}

/// `instr(X, Y)`: 1 + the characters (bytes, for two blobs) of X before the first Y; 0 if
/// Y is not in X; 1 for an empty Y; NULL if either is NULL.
fn instr(ctx: &Context<'_>, bounds: &Bounds) -> rusqlite::Result<Option<i64>> {
    check(bounds)?;
    let (x, y) = (ctx.get_raw(0), ctx.get_raw(1));
    let is_text = !matches!((x, y), (ValueRef::Blob(_), ValueRef::Blob(_)));
    let (Some(hay), Some(needle)) = (text_of(x), text_of(y)) else {
        return Ok(None);
    };
    if needle.is_empty() {
        return Ok(Some(1));
    }
    let finder = memchr::memmem::Finder::new(&needle[..]);
    let mut from = 0;
    while let Some(i) = finder.find(&hay[from..]) {
        let at = from + i;
        // SQLite tries only the starts of characters (and the first byte).
        if !is_text || at == 0 || hay[at] & 0xc0 != 0x80 {
            let before = if is_text {
                hay[1..=at].iter().filter(|&&b| b & 0xc0 != 0x80).count()
            } else {
                at
            };
            return Ok(Some(before as i64 + 1));
        }
        from = at + 1;
    }
    Ok(Some(0))
}

/// `replace(X, Y, Z)`: X with every Y replaced by Z, as text; X (as text) if Y is empty or
/// starts with a NUL; NULL if any is NULL.
fn replace(ctx: &Context<'_>, bounds: &Bounds) -> rusqlite::Result<Option<TextBytes>> {
    check(bounds)?;
    let Some(x) = text_of(ctx.get_raw(0)) else {
        return Ok(None);
    };
    let Some(y) = text_of(ctx.get_raw(1)) else {
        return Ok(None);
    };
    if y.first().is_none_or(|&b| b == 0) {
        return Ok(Some(TextBytes(x.into_owned())));
    }
    let Some(z) = text_of(ctx.get_raw(2)) else {
        return Ok(None);
    };
    let limit = bounds.length.load(Ordering::Relaxed);
    let grows = z.len().saturating_sub(y.len()) as u64;
    let mut out = Vec::with_capacity(x.len());
    let mut last = 0;
    let mut projected = x.len() as u64;
    for at in memchr::memmem::find_iter(&x[..], &y[..]) {
        projected += grows;
        if projected > limit {
            return Err(too_big());
        }
        out.extend_from_slice(&x[last..at]);
        out.extend_from_slice(&z);
        last = at + y.len();
    }
    out.extend_from_slice(&x[last..]);
    Ok(Some(TextBytes(out)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Like,
    Glob,
}

/// One element of a compiled pattern: each matches exactly one character, but `Any`.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// A character (for LIKE, compared without ASCII case).
    Char(u32),
    /// `_` or `?`.
    One,
    /// `%` or `*`.
    Any,
    /// `[…]` of GLOB: ranges and characters, maybe inverted.
    Set {
        invert: bool,
        ranges: Vec<(u32, u32)>,
    },
    /// An unterminated `[` or an escape at the end of the pattern: matches nothing.
    Never,
}

/// Reads one character the way `sqlite3Utf8Read` does (lenient; invalid sequences become
/// U+FFFD, stray continuation bytes stand for themselves). `None` at the end or at a NUL.
fn next_char(s: &[u8], i: &mut usize) -> Option<u32> {
    let &c = s.get(*i)?;
    if c == 0 {
        return None;
    }
    *i += 1;
    let mut c = u32::from(c);
    if c >= 0xc0 {
        c = match c {
            0xc0..=0xdf => c & 0x1f,
            0xe0..=0xef => c & 0x0f,
            0xf0..=0xf7 => c & 0x07,
            0xf8..=0xfb => c & 0x03,
            _ => c & 0x01,
        };
        while let Some(&b) = s.get(*i)
            && b & 0xc0 == 0x80
        {
            c = (c << 6) + u32::from(b & 0x3f);
            *i += 1;
        }
        if c < 0x80 || (c & 0xffff_f800) == 0xd800 || (c & 0xffff_fffe) == 0xfffe {
            c = 0xfffd;
        }
    }
    Some(c)
}

fn fold(c: u32) -> u32 {
    if (u32::from(b'A')..=u32::from(b'Z')).contains(&c) {
        c + 32
    } else {
        c
    }
}

/// Compiles a LIKE or GLOB pattern as SQLite's `patternCompare` reads it.
fn compile(pattern: &[u8], syntax: Syntax, escape: Option<u32>) -> Vec<Token> {
    let (all, one) = match syntax {
        Syntax::Like => (u32::from(b'%'), u32::from(b'_')),
        Syntax::Glob => (u32::from(b'*'), u32::from(b'?')),
    };
    // An ESCAPE equal to a wildcard turns that wildcard off.
    let all = (escape != Some(all)).then_some(all);
    let one = (escape != Some(one)).then_some(one);
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(c) = next_char(pattern, &mut i) {
        let token = if Some(c) == all {
            Token::Any
        } else if Some(c) == one {
            Token::One
        } else if syntax == Syntax::Like && Some(c) == escape {
            match next_char(pattern, &mut i) {
                Some(c) => Token::Char(c),
                None => Token::Never,
            }
        } else if syntax == Syntax::Glob && c == u32::from(b'[') {
            compile_set(pattern, &mut i)
        } else {
            Token::Char(c)
        };
        tokens.push(token);
    }
    tokens
}

/// A GLOB `[…]` set, after its `[`.
fn compile_set(pattern: &[u8], i: &mut usize) -> Token {
    let mut ranges = Vec::new();
    let mut invert = false;
    let mut c2 = next_char(pattern, i);
    if c2 == Some(u32::from(b'^')) {
        invert = true;
        c2 = next_char(pattern, i);
    }
    if c2 == Some(u32::from(b']')) {
        ranges.push((c2.unwrap_or(0), c2.unwrap_or(0)));
        c2 = next_char(pattern, i);
    }
    let mut prior: Option<u32> = None;
    while let Some(c) = c2
        && c != u32::from(b']')
    {
        let next = pattern.get(*i).copied().unwrap_or(0);
        if c == u32::from(b'-') && next != b']' && next != 0 && prior.is_some_and(|p| p > 0) {
            let hi = next_char(pattern, i).unwrap_or(0);
            // The range replaces the lone character before it (which it includes).
            ranges.push((prior.unwrap_or(0), hi));
            prior = None;
        } else {
            ranges.push((c, c));
            prior = Some(c);
        }
        c2 = next_char(pattern, i);
    }
    if c2.is_none() {
        return Token::Never;
    }
    Token::Set { invert, ranges }
}

fn token_matches(t: &Token, c: u32, syntax: Syntax) -> bool {
    match t {
        Token::Char(p) => {
            *p == c || (syntax == Syntax::Like && c < 0x80 && *p < 0x80 && fold(*p) == fold(c))
        }
        Token::One => true,
        Token::Set { invert, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *invert
        }
        Token::Any | Token::Never => false,
    }
}

/// How many steps run between two looks at the deadline.
const STEPS_PER_CHECK: u32 = 4096;

/// Greedy matching with one backtrack point (the last `Any`): at most pattern × text steps.
fn matches(
    tokens: &[Token],
    text: &[u8],
    syntax: Syntax,
    bounds: &Bounds,
) -> rusqlite::Result<bool> {
    let (mut p, mut s) = (0usize, 0usize);
    // The last `Any` seen: the token after it and where in the text it resumes.
    let mut star: Option<(usize, usize)> = None;
    let mut steps = 0u32;
    loop {
        steps += 1;
        if steps == STEPS_PER_CHECK {
            steps = 0;
            if bounds.interrupted() {
                return Err(interrupted());
            }
        }
        let mut at = s;
        let c = next_char(text, &mut at);
        match (tokens.get(p), c) {
            (Some(Token::Any), _) => {
                star = Some((p + 1, s));
                p += 1;
                continue;
            }
            (Some(t), Some(c)) if token_matches(t, c, syntax) => {
                p += 1;
                s = at;
                continue;
            }
            (None, None) => return Ok(true),
            _ => {}
        }
        // A mismatch: let the last `Any` take one more character, or fail.
        let Some((after, resume)) = star else {
            return Ok(false);
        };
        let mut next = resume;
        if next_char(text, &mut next).is_none() {
            return Ok(false);
        }
        star = Some((after, next));
        p = after;
        s = next;
    }
}

/// `like(P, X [, E])` and `glob(P, X)`: 1 if X matches P, else 0; NULL if any is NULL.
fn pattern_match(
    ctx: &Context<'_>,
    bounds: &Bounds,
    syntax: Syntax,
) -> rusqlite::Result<Option<i64>> {
    check(bounds)?;
    let raw_pattern = ctx.get_raw(0);
    let pattern = text_of(raw_pattern);
    let len = pattern.as_ref().map_or(0, |p| p.len()) as u64;
    if len > bounds.like_pattern_length.load(Ordering::Relaxed) {
        return Err(sqlite_error("LIKE or GLOB pattern too complex"));
    }
    let escape = if ctx.len() == 3 {
        let Some(e) = text_of(ctx.get_raw(2)) else {
            return Ok(None);
        };
        let mut i = 0;
        let c = next_char(&e, &mut i);
        if c.is_none() || next_char(&e, &mut i).is_some() {
            return Err(sqlite_error("ESCAPE expression must be a single character"));
        }
        c
    } else {
        None
    };
    let (Some(pattern), Some(text)) = (pattern, text_of(ctx.get_raw(1))) else {
        return Ok(None);
    };
    let tokens = compile(&pattern, syntax, escape);
    matches(&tokens, &text, syntax, bounds).map(|m| Some(i64::from(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(bounded: bool) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        if bounded {
            let bounds = Bounds {
                deadline: Arc::new(AtomicU64::new(u64::MAX)),
                length: Arc::new(AtomicU64::new(1 << 30)),
                like_pattern_length: Arc::new(AtomicU64::new(50_000)),
                now: |_| 0,
            };
            register(&c, &bounds).unwrap();
        }
        c
    }

    /// Each expression gives the same value, with the same type, as SQLite's built-ins.
    #[test]
    fn the_same_answers_as_sqlite() {
        let (ours, theirs) = (conn(true), conn(false));
        let exprs = [
            "instr('hello', 'l')",
            "instr('hello', '')",
            "instr('hello', 'z')",
            "instr('', 'a')",
            "instr(NULL, 'a')",
            "instr('a', NULL)",
            "instr('héllo wörld', 'wö')",
            "instr('日本語テキスト', 'テ')",
            "instr(x'00010203', x'0203')",
            "instr(x'00010203', x'')",
            "instr(x'61626364', 'cd')",
            "instr('abcd', x'6364')",
            "instr(12345, 34)",
            "instr(1.5, '.')",
            "instr(x'80c3a961', x'61')",
            "instr(CAST(x'41c3a941c3a9' AS TEXT), 'A')",
            "replace('hello', 'l', 'L')",
            "replace('hello', 'll', '')",
            "replace('hello', '', 'x')",
            "replace('aaaa', 'aa', 'b')",
            "replace('hello', NULL, 'x')",
            "replace(NULL, 'a', 'x')",
            "replace('a', 'a', NULL)",
            "replace('x', NULL, NULL)",
            "typeof(replace(12, '', 'x'))",
            "replace(12.5, '.', ',')",
            "replace(1e20, 'e', 'E')",
            "replace(0.0001, '0', 'o')",
            "replace(123456789012345678.0, '8', 'x')",
            "replace(-2.5e-7, '5', 'five')",
            "replace(1.0, '.', ',')",
            "replace(100.0, '1', '2')",
            "replace(x'616263', 'b', 'B')",
            "typeof(replace(x'616263', 'b', 'B'))",
            "replace('abc', x'0062', 'x')",
            "replace(3, 3, 4)",
            "'Hello' LIKE 'h%'",
            "'Hello' LIKE 'H_llo'",
            "'Hello' LIKE 'H_lo'",
            "'Hello' NOT LIKE '%LL%'",
            "'Ünïcode' LIKE 'ü%'",
            "'Ünïcode' LIKE 'Ü%'",
            "'abc' LIKE ''",
            "'' LIKE '%'",
            "'' LIKE '_'",
            "'a%c' LIKE 'a!%c' ESCAPE '!'",
            "'abc' LIKE 'a!%c' ESCAPE '!'",
            "'a_c' LIKE 'a\\_c' ESCAPE '\\'",
            "'abc' LIKE 'a%' ESCAPE '%'",
            "'a%' LIKE 'a%' ESCAPE '%'",
            "'abc' LIKE 'abc!' ESCAPE '!'",
            "NULL LIKE 'a'",
            "'a' LIKE NULL",
            "'a' LIKE 'a' ESCAPE NULL",
            "123 LIKE '1%'",
            "1.5 LIKE '1._'",
            "'a[b]c' LIKE 'a[b]c'",
            "'mississippi' LIKE '%iss%ppi'",
            "'mississippi' LIKE '%iss%ppx'",
            "'abcabcabd' LIKE '%abd'",
            "'ab' LIKE '%%%b%%'",
            "'x' || char(0) || 'y' LIKE 'x'",
            "'x' || char(0) || 'y' LIKE 'x%y'",
            "'Hello' GLOB 'H*'",
            "'Hello' GLOB 'h*'",
            "'Hello' GLOB 'H?llo'",
            "'Hello' GLOB 'H[a-f]llo'",
            "'Hello' GLOB 'H[^a-f]llo'",
            "'Hallo' GLOB 'H[^a-f]llo'",
            "']' GLOB '[]]'",
            "'-' GLOB '[a-]'",
            "'b' GLOB '[a-]'",
            "'b' GLOB '[a-c]'",
            "'x' GLOB '[a-cx]'",
            "'x' GLOB '[abc'",
            "'[' GLOB '[[]'",
            "'a*b' GLOB 'a[*]b'",
            "'axb' GLOB 'a[*]b'",
            "'日本' GLOB '日?'",
            "'é' GLOB '[à-ê]'",
            "'mississippi' GLOB '*iss*ppi'",
            "'' GLOB '*'",
            "'abc' GLOB '*c*'",
            "NULL GLOB '*'",
            "'a' GLOB NULL",
            "hex('abc')",
            "hex(x'00ff10')",
            "hex(NULL)",
            "hex(12)",
            "hex(-1.5)",
            "hex('')",
            "hex('é')",
            "length(randomblob(0))",
            "length(randomblob(-5))",
            "length(randomblob(NULL))",
            "length(randomblob('12abc'))",
            "length(randomblob(' +7'))",
            "length(randomblob(3.9))",
            "typeof(randomblob(4))",
            "upper('abcÉé1')",
            "lower('ABCÉé1')",
            "upper(NULL)",
            "typeof(upper(x'6162'))",
            "upper(x'6162')",
            "lower(1.5e20)",
            "upper(12)",
        ];
        for e in exprs {
            let q = format!("SELECT {e}, typeof({e})");
            let get = |c: &Connection| {
                c.query_row(&q, [], |r| {
                    Ok((
                        r.get::<_, rusqlite::types::Value>(0)?,
                        r.get::<_, String>(1)?,
                    ))
                })
                .map_err(|e| e.to_string())
            };
            assert_eq!(get(&ours), get(&theirs), "{e}");
        }
        // Errors read the same too.
        for e in ["'a' LIKE 'a' ESCAPE 'ab'", "'a' LIKE 'a' ESCAPE ''"] {
            let q = format!("SELECT {e}");
            let err = |c: &Connection| c.query_row(&q, [], |_| Ok(())).unwrap_err().to_string();
            assert_eq!(err(&ours), err(&theirs), "{e}");
        }
    }

    #[test]
    fn reals_render_as_sqlite_renders_them() {
        let c = conn(false);
        for f in [
            1.0,
            -1.0,
            0.5,
            1.5,
            100.0,
            1e14,
            1e15,
            1e16,
            1e20,
            1.5e300,
            1e-4,
            1e-5,
            0.1,
            0.3,
            1.0 / 3.0,
            2.0 / 3.0,
            123456.789,
            9.999999999999999e14,
            1e100,
            5e-324,
            1.7976931348623157e308,
            -2.5e-7,
            12345678901234567.0,
            0.000123456789,
        ] {
            let theirs: String = c
                .query_row("SELECT CAST(? AS TEXT)", [f], |r| r.get(0))
                .unwrap();
            assert_eq!(real_text(f), theirs, "{f:e}");
        }
    }

    #[test]
    fn searches_take_linear_time() {
        let c = conn(true);
        let t = Instant::now();
        let n: i64 = c
            .query_row(
                "SELECT instr(hex(zeroblob(500000)), hex(zeroblob(250000)) || '1') \
                 + length(replace(hex(zeroblob(500000)), hex(zeroblob(250000)) || '1', 'x'))",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1_000_000);
        assert!(t.elapsed().as_millis() < 200, "{:?}", t.elapsed());
    }

    #[test]
    fn matching_stops_at_the_deadline() {
        let c = Connection::open_in_memory().unwrap();
        let bounds = Bounds {
            deadline: Arc::new(AtomicU64::new(0)),
            length: Arc::new(AtomicU64::new(1 << 30)),
            like_pattern_length: Arc::new(AtomicU64::new(1000)),
            now: |_| 1,
        };
        register(&c, &bounds).unwrap();
        let e = c
            .query_row(
                "SELECT (hex(zeroblob(100000)) || '1') LIKE ('%' || hex(zeroblob(40)) || '1_')",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_err();
        assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::OperationInterrupted),
            "{e}"
        );
    }
}
