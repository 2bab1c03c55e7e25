//! What the server backends share: the names a store gets on a shared server, the secrets
//! derived for it from the host's own, which data folder owns its objects there
//! ([`Owner`], Redis included), and (PostgreSQL, MariaDB) its size cap.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::Digest;

use super::SqlError;
use crate::names;

/// Checks a `prefix` of `[backends.*]` ([`crate::names::check_prefix`], as a store error).
pub fn check_prefix(prefix: &str) -> Result<(), SqlError> {
    names::check_prefix(prefix).map_err(SqlError::Other)
}

/// The name of a PostgreSQL store's database and login role ([`crate::names::postgres_database`]).
pub fn postgres_database(prefix: &str, service: &str, store: &str) -> Result<String, SqlError> {
    names::postgres_database(prefix, service, store).map_err(SqlError::Other)
}

/// The name of a MariaDB store's database and login user ([`crate::names::mariadb_database`]).
pub fn mysql_database(prefix: &str, service: &str, store: &str) -> Result<String, SqlError> {
    names::mariadb_database(prefix, service, store).map_err(SqlError::Other)
}

/// A secret for `purpose` (a password, a key) on database `db`, derived from the host's
/// secret file, so a restarted host finds the same ones.
pub fn derive(secret: &str, purpose: &str, db: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("{secret}:{purpose}:{db}")))
}

/// Which data folder owns a store's objects on a shared server (its database and login, its
/// ACL user and keys): recorded there when a host first provisions them, where only the
/// server's administrator can read it, and checked before any host provisions them again.
///
/// The id is derived from the backend's secret in the data folder (the secret the store's
/// passwords derive from), so a host restarting on its folder, or a folder given the same
/// secret on purpose, is the same owner; a folder with another secret would reset the
/// owner's passwords, and is refused instead ([`Owner::refusal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `derive(secret, "owner", NAME)`: says nothing about the secret itself.
    pub id: String,
    /// The owner's data folder, as an absolute path.
    pub folder: String,
    /// The machine it runs on (its host name).
    pub machine: String,
}

impl Owner {
    /// The owner of a store made before owners were recorded, by a data folder with another
    /// secret (what that folder is, the server does not say).
    pub fn unrecorded() -> Self {
        Self {
            id: String::new(),
            folder: String::new(),
            machine: String::new(),
        }
    }

    /// This host, as the owner of the store named `name` on a server: `secret` is the
    /// backend's secret from `data_dir`.
    pub fn this_host(secret: &str, name: &str, data_dir: &Path) -> Self {
        let folder = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Self {
            id: derive(secret, "owner", name),
            folder: folder.display().to_string(),
            machine: machine_name(),
        }
    }

    /// What a host that is not `self` (the owner on record) gets for provisioning the
    /// store: `what` names the objects, `server` where they are, `secret` the secret
    /// file's path under a data folder (`sql/postgres.secret`), `section` the manifest
    /// table and `prefix` the prefix in force.
    pub fn refusal(
        &self,
        mine: &Owner,
        what: &str,
        server: &str,
        secret: &str,
        section: &str,
        prefix: &str,
    ) -> SqlError {
        let (theirs, copy) = if self.folder.is_empty() {
            (
                "another data folder (one with another secret, unrecorded: the store was made \
                 before silo recorded owners)"
                    .to_string(),
                format!("copy that folder's {secret} to {}/{secret}", mine.folder),
            )
        } else {
            let theirs = if self.machine == mine.machine {
                self.folder.clone()
            } else {
                format!("{} on machine {}", self.folder, self.machine)
            };
            (
                format!("another data folder, {theirs}"),
                format!("copy {}/{secret} to {}/{secret}", self.folder, mine.folder),
            )
        };
        SqlError::OwnedElsewhere(format!(
            "{what} on {server} belong to {theirs}, not to this one ({}): provisioning them \
             would reset that host's passwords, so nothing was changed. To share them, give \
             this data folder that one's secret ({copy}); to keep apart, set a `prefix` of its \
             own in [{section}] (now \"{prefix}\")",
            mine.folder
        ))
    }
}

/// This machine's host name, for ownership records ("?" if it cannot be read).
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// A store's `max-size-mb` on a database server, which enforces no such cap itself: the
/// backend measures the store's size on the server and refuses what could grow it once it
/// is past the cap.
///
/// Measuring costs a round trip, so it is cached: a backend measures at most once every
/// [`SizeCap::EVERY`], but every time once the last measurement plus the bytes guest
/// statements sent since ([`SizeCap::sent`]: their text and parameters) come within a
/// quarter of the cap. Between two measurements a store can grow by what the server itself
/// makes of little text (`repeat('x', 1e8)`) in that time; a transaction that ends past the
/// cap and bigger than it began is rolled back at commit ([`SizeCap::grew_past`]), so the
/// overshoot does not stay.
pub struct SizeCap {
    max_bytes: u64,
    /// The last measurement, and when it was taken.
    last: Mutex<Option<(Instant, u64)>>,
    /// Bytes guest statements sent since it.
    sent: std::sync::atomic::AtomicU64,
}

impl SizeCap {
    /// Longest a measurement is trusted while the store is far from its cap.
    pub const EVERY: Duration = Duration::from_millis(250);
    /// Growth a transaction may show at commit past the cap: the server's own bookkeeping
    /// (free-space and visibility maps) grows a little on its own.
    const SLACK: u64 = 64 << 10;

    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            last: Mutex::new(None),
            sent: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Notes that a guest statement that may grow the store sent `bytes` (text and
    /// parameters).
    pub fn sent(&self, bytes: usize) {
        self.sent
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the store should be measured now.
    pub fn due(&self) -> bool {
        let sent = self.sent.load(std::sync::atomic::Ordering::Relaxed);
        match *self.last.lock().expect("size cap") {
            None => true,
            Some((at, bytes)) => {
                at.elapsed() >= Self::EVERY
                    || bytes.saturating_add(sent) >= self.max_bytes - self.max_bytes / 4
            }
        }
    }

    /// Records a measurement.
    pub fn record(&self, bytes: u64) {
        let mut last = self.last.lock().expect("size cap");
        self.sent.store(0, std::sync::atomic::Ordering::Relaxed);
        *last = Some((Instant::now(), bytes));
    }

    /// The last measurement, if any.
    pub fn last(&self) -> Option<u64> {
        self.last.lock().expect("size cap").map(|(_, b)| b)
    }

    /// True if the last measurement was at or past the cap.
    pub fn is_full(&self) -> bool {
        self.last().is_some_and(|b| b >= self.max_bytes)
    }

    /// True if a transaction that began when the store measured `began` and now measures
    /// `now` took it past the cap (and must not commit).
    pub fn grew_past(&self, began: Option<u64>, now: u64) -> bool {
        now > self.max_bytes && now > began.unwrap_or(0) + Self::SLACK
    }

    /// What a guest gets for a write past the cap (the same as from a full SQLite store).
    pub fn full(&self, bytes: u64) -> SqlError {
        SqlError::LimitExceeded(format!(
            "the store is full: it measures {bytes} bytes on the server, and its cap (`max-size-mb`) is {}; delete, truncate or drop to make room",
            self.max_bytes
        ))
    }
}

/// Whether a statement, by its first keyword (uppercased), may run in a full store: it
/// reads, or it makes room. Anything else might grow the store. (What runs inside a read —
/// a function that writes — is caught when its transaction commits.)
pub fn reads_or_frees(head: &str) -> bool {
    matches!(
        head,
        "SELECT"
            | "SHOW"
            | "VALUES"
            | "TABLE"
            | "DESCRIBE"
            | "DESC"
            | "DELETE"
            | "DROP"
            | "TRUNCATE"
    )
}

/// How a database server spells the few forms of the portable SQL silo accepts from guests
/// (what differs by engine in the demo services' schemas). Each server backend has one, in
/// its `portable.rs`; [`portable_ddl`] applies it.
pub struct PortableForms {
    /// The type of a column `INTEGER PRIMARY KEY [AUTOINCREMENT]`: an integer key the
    /// server assigns when an insert gives none (SQLite's rowid alias). `PRIMARY KEY` stays.
    pub auto_key: &'static str,
    /// The column added to a new table keyed by anything else (a text id), so that `ORDER BY
    /// rowid` lists its rows in the order they were created, as on SQLite. A table without
    /// a primary key, or with a server-assigned column of its own, gets none (where the
    /// column is not invisible, `SELECT *` would show it on tables that never asked).
    pub rowid_column: &'static str,
    /// Type names, portable (upper case) and the server's.
    pub types: &'static [(&'static str, &'static str)],
    /// The type of a `TEXT` column that is the primary key, where the server cannot make
    /// one of `TEXT`.
    pub key_text: Option<&'static str>,
    /// Whether an auto-assigned key may have a `CHECK` of its own (if not, such a column
    /// keeps a plain integer type: the check pins its values anyway).
    pub auto_key_checked: bool,
    /// Whether `\` escapes a character in a string literal.
    pub backslash_escapes: bool,
}

/// A piece of statement text, as [`portable_ddl`] sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    /// A keyword or a name, quoted or not.
    Word(&'a str),
    Open,
    Close,
    Comma,
    /// Whitespace, a comment, a literal, any other character.
    Other(&'a str),
}

/// `sql` cut into [`Piece`]s.
fn pieces(sql: &str, backslash_escapes: bool) -> Vec<Piece<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let piece = match c {
            b'(' => {
                i += 1;
                Piece::Open
            }
            b')' => {
                i += 1;
                Piece::Close
            }
            b',' => {
                i += 1;
                Piece::Comma
            }
            b'\'' | b'"' | b'`' => {
                i += 1;
                while i < b.len() {
                    if backslash_escapes && c == b'\'' && b[i] == b'\\' {
                        i += 2;
                    } else if b[i] == c {
                        i += 1;
                        // A doubled quote is one quote inside.
                        if i < b.len() && b[i] == c {
                            i += 1;
                        } else {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                let text = &sql[start..i.min(b.len())];
                // A quoted name is a word (that never equals a keyword); a literal is not.
                if c == b'\'' {
                    Piece::Other(text)
                } else {
                    Piece::Word(text)
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                Piece::Other(&sql[start..i])
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                Piece::Other(&sql[start..i])
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$')
                {
                    i += 1;
                }
                Piece::Word(&sql[start..i])
            }
            _ => {
                i += sql[i..].chars().next().map_or(1, char::len_utf8);
                Piece::Other(&sql[start..i])
            }
        };
        out.push(piece);
    }
    out
}

fn is_word(p: &Piece<'_>, word: &str) -> bool {
    matches!(p, Piece::Word(w) if w.eq_ignore_ascii_case(word))
}

/// A guest statement with the portable forms of `forms` in its schema changes spelled as
/// the server spells them: in `CREATE TABLE`, each column's type name (and an auto-assigned
/// `INTEGER PRIMARY KEY`), plus a creation-order `rowid` column; in `ALTER TABLE … ADD
/// [COLUMN]`, the new column's type name. Every other statement is left as it is.
pub fn portable_ddl<'a>(sql: &'a str, forms: &PortableForms) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    let mut ps = pieces(sql, forms.backslash_escapes);
    let words: Vec<usize> = (0..ps.len())
        .filter(|&i| matches!(ps[i], Piece::Word(_)))
        .collect();
    let word = |n: usize| words.get(n).map(|&i| ps[i]);
    let head = |n: usize, w: &str| word(n).is_some_and(|p| is_word(&p, w));
    // Replacement texts, by piece index.
    let mut replaced: Vec<(usize, String)> = Vec::new();
    let mut append_at: Option<usize> = None;
    if head(0, "CREATE") {
        let table = if head(1, "TABLE") {
            1
        } else if (head(1, "TEMP") || head(1, "TEMPORARY")) && head(2, "TABLE") {
            2
        } else {
            return Cow::Borrowed(sql);
        };
        let Some(open) = (words[table]..ps.len()).find(|&i| ps[i] == Piece::Open) else {
            return Cow::Borrowed(sql);
        };
        // `CREATE TABLE t AS SELECT …` (or `LIKE`) has no column definitions.
        if ps[words[table]..open]
            .iter()
            .any(|p| ["AS", "SELECT", "LIKE"].iter().any(|w| is_word(p, w)))
        {
            return Cow::Borrowed(sql);
        }
        // The column definitions: runs of pieces at depth 1, split by commas.
        let mut depth = 0usize;
        let mut close = None;
        let mut defs: Vec<Vec<usize>> = vec![Vec::new()];
        for (i, p) in ps.iter().enumerate().skip(open) {
            match p {
                Piece::Open => depth += 1,
                Piece::Close => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                Piece::Comma if depth == 1 => defs.push(Vec::new()),
                Piece::Word(_) if depth == 1 => defs.last_mut().expect("one").push(i),
                _ => {}
            }
        }
        let Some(close) = close else {
            return Cow::Borrowed(sql);
        };
        let without_rowid = ps[close..].iter().any(|p| is_word(p, "WITHOUT"));
        let mut has_rowid = false;
        let mut auto_key = false;
        let mut keyed = false;
        for def in &defs {
            let Some(&name) = def.first() else { continue };
            keyed |= def.iter().any(|&i| is_word(&ps[i], "PRIMARY"));
            if ["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"]
                .iter()
                .any(|w| is_word(&ps[name], w))
            {
                continue;
            }
            has_rowid |= def.iter().any(|&i| {
                [
                    "AUTO_INCREMENT",
                    "IDENTITY",
                    "SERIAL",
                    "BIGSERIAL",
                    "SMALLSERIAL",
                ]
                .iter()
                .any(|w| is_word(&ps[i], w))
            });
            has_rowid |= matches!(ps[name], Piece::Word(w)
                if w.trim_matches(['"', '`']).eq_ignore_ascii_case("rowid"));
            let Some(&ty) = def.get(1) else { continue };
            let has = |w: &str| def.iter().any(|&i| is_word(&ps[i], w));
            if is_word(&ps[ty], "INTEGER")
                && has("PRIMARY")
                && (forms.auto_key_checked || !has("CHECK"))
            {
                replaced.push((ty, forms.auto_key.to_string()));
                for &i in def {
                    if is_word(&ps[i], "AUTOINCREMENT") {
                        replaced.push((i, String::new()));
                    }
                }
                auto_key = true;
            } else {
                auto_key |= is_word(&ps[ty], "INTEGER") && has("PRIMARY");
                if let Some(t) = type_name(&ps[ty], has("PRIMARY"), forms) {
                    replaced.push((ty, t));
                }
            }
        }
        if !(has_rowid || auto_key || without_rowid) && keyed {
            append_at = Some(close);
        }
    } else if head(0, "ALTER") && head(1, "TABLE") {
        // ALTER TABLE name ADD [COLUMN] column TYPE …
        let Some(add) = (2..words.len()).find(|&n| head(n, "ADD")) else {
            return Cow::Borrowed(sql);
        };
        let ty = if head(add + 1, "COLUMN") {
            add + 3
        } else {
            add + 2
        };
        if let Some(&i) = words.get(ty)
            && let Some(t) = type_name(&ps[i], false, forms)
        {
            replaced.push((i, t));
        }
    } else {
        return Cow::Borrowed(sql);
    }
    if replaced.is_empty() && append_at.is_none() {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 64);
    replaced.sort_by_key(|(i, _)| *i);
    let mut next = replaced.iter().peekable();
    for (i, p) in ps.drain(..).enumerate() {
        if append_at == Some(i) {
            out.push_str(", ");
            out.push_str(forms.rowid_column);
        }
        if let Some((_, with)) = next.next_if(|(at, _)| *at == i) {
            out.push_str(with);
            continue;
        }
        out.push_str(match p {
            Piece::Word(w) | Piece::Other(w) => w,
            Piece::Open => "(",
            Piece::Close => ")",
            Piece::Comma => ",",
        });
    }
    Cow::Owned(out)
}

/// The server's name of a column type, if it is not the portable one.
fn type_name(p: &Piece<'_>, key: bool, forms: &PortableForms) -> Option<String> {
    let Piece::Word(w) = p else { return None };
    if key && w.eq_ignore_ascii_case("TEXT") {
        return forms.key_text.map(str::to_string);
    }
    forms
        .types
        .iter()
        .find(|(portable, _)| w.eq_ignore_ascii_case(portable))
        .map(|(_, server)| (*server).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::store_name;

    #[test]
    fn names_are_checked() {
        assert_eq!(
            store_name("silo", "a-b", "main", 63, "x").unwrap(),
            "silo_a-b_main"
        );
        assert!(store_name("Silo", "a", "b", 63, "x").is_err());
        assert!(store_name("", "a", "b", 63, "x").is_err());
        assert!(store_name("1x", "a", "b", 63, "x").is_err());
        assert!(store_name("silo", &"s".repeat(60), "b", 63, "x").is_err());
        assert_ne!(derive("s", "key", "a"), derive("s", "password", "a"));
    }

    /// PostgreSQL and MariaDB give a store the same name, so one store's objects on each
    /// server are easy to find.
    #[test]
    fn both_servers_name_a_store_alike() {
        assert_eq!(
            postgres_database("p", "svc", "main").unwrap(),
            mysql_database("p", "svc", "main").unwrap()
        );
    }

    /// `PREFIX_SERVICE_STORE` read from the right gives back store, service and prefix
    /// (neither name has a `_`), so two different stores never share a name, whichever
    /// prefixes two hosts on one server use; `-` in names stays as it is (no mapping that
    /// could make `a-b` and `a_b` one).
    #[test]
    fn names_do_not_collide() {
        let stores = [
            ("t", "a-b", "c"),
            ("t", "a", "b-c"),
            ("t", "x", "a-b"),
            ("t", "x-a", "b"),
            ("t_a", "b", "c"),
            ("t", "a", "b"),
            ("t_a_b", "c", "d"),
            ("t", "a_b", "c"), // refused below: `_` is not in a service name
        ];
        let mut seen = std::collections::HashMap::new();
        for (p, s, t) in stores {
            if s.contains('_') {
                continue;
            }
            let n = store_name(p, s, t, 63, "x").unwrap();
            let (rest, store) = n.rsplit_once('_').unwrap();
            let (prefix, service) = rest.rsplit_once('_').unwrap();
            assert_eq!((prefix, service, store), (p, s, t), "{n} reads back");
            assert!(
                seen.insert(n.clone(), (p, s, t)).is_none(),
                "{n} is taken twice"
            );
        }
    }

    #[test]
    fn the_cap_measures_often_near_its_limit() {
        let cap = SizeCap::new(1000);
        assert!(cap.due() && !cap.is_full());
        cap.record(100);
        assert!(!cap.due() && !cap.is_full());
        cap.sent(700);
        assert!(cap.due(), "what was sent since counts");
        cap.record(100);
        assert!(!cap.due());
        cap.record(800);
        assert!(cap.due(), "within a quarter of the cap: every time");
        cap.record(1000);
        assert!(cap.is_full());
        assert!(cap.grew_past(Some(900), 1000 + SizeCap::SLACK + 1));
        assert!(
            !cap.grew_past(Some(2000), 2000),
            "a delete in a full store commits"
        );
        assert!(
            matches!(cap.full(1000), SqlError::LimitExceeded(m) if m.starts_with("the store is full"))
        );
        assert!(reads_or_frees("DELETE") && !reads_or_frees("INSERT") && !reads_or_frees("UPDATE"));
    }
}
