//! The battery's checks of what statements return: values, columns, counts, and the
//! errors of a bad statement.

use super::*;

/// Every value kind goes in as a parameter and comes back out as the same kind and value,
/// and compares equal to itself as a parameter.
pub(super) async fn typed_values_round_trip(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!(
            "CREATE TABLE rt (id {} PRIMARY KEY, i {}, r {}, t {}, b {})",
            d.int_type, d.int_type, d.real_type, d.text_type, d.blob_type
        ),
        &[],
    )
    .await;
    let all_bytes: Vec<u8> = (0..=255).collect();
    let mut cols: Vec<(usize, Value)> = Vec::new();
    for i in [i64::MIN, i64::MAX, 0, -1, -7, 42, 1 << 53] {
        cols.push((1, int(i)));
    }
    for r in [
        0.5,
        -1e300,
        1e300,
        0.0,
        2.0,
        -0.25,
        1.0 / 3.0,
        std::f64::consts::PI,
        f64::MIN_POSITIVE,
    ] {
        cols.push((2, Value::Real(r)));
    }
    let long = "ü".repeat(5000);
    for t in [
        "",
        "a",
        "héllo wörld",
        "日本語のテキスト",
        "emoji 🦀🎉 and a family 👩‍👩‍👧",
        "quotes ' \" \\ and %_ ?",
        "line\nbreak\ttab\r",
        long.as_str(),
    ] {
        cols.push((3, text(t)));
    }
    for b in [
        vec![],
        vec![0],
        all_bytes.clone(),
        vec![0xff; 3],
        b"looks like text".to_vec(),
    ] {
        cols.push((4, Value::Blob(b)));
    }
    let mut want = Vec::new();
    for (n, (col, v)) in cols.iter().enumerate() {
        let mut row = vec![
            int(n as i64),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ];
        row[*col] = v.clone();
        let r = x(
            c,
            s,
            "INSERT INTO rt (id, i, r, t, b) VALUES (?, ?, ?, ?, ?)",
            &row,
        )
        .await;
        assert_eq!(
            r.rows_affected,
            1,
            "{c}: inserting {} affects one row",
            show(v)
        );
        want.push(row);
    }
    // A row of NULLs in every typed column.
    let nulls = vec![
        int(cols.len() as i64),
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Null,
    ];
    x(
        c,
        s,
        "INSERT INTO rt (id, i, r, t, b) VALUES (?, ?, ?, ?, ?)",
        &nulls,
    )
    .await;
    want.push(nulls);

    let got = q(c, s, "SELECT id, i, r, t, b FROM rt ORDER BY id", &[]).await;
    assert_eq!(got.columns, ["id", "i", "r", "t", "b"], "{c}");
    for (g, w) in got.rows.iter().zip(&want) {
        assert!(
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| same(a, b)),
            "{c}: round trip: got {}, want {}",
            show_row(g),
            show_row(w)
        );
    }
    assert_eq!(got.rows.len(), want.len(), "{c}: every row comes back");

    // Each value, as a parameter, finds exactly its own row.
    let names = ["id", "i", "r", "t", "b"];
    for (n, (col, v)) in cols.iter().enumerate() {
        let sql = format!("SELECT id FROM rt WHERE {} = ?", names[*col]);
        let got = q(c, s, &sql, std::slice::from_ref(v)).await;
        assert_rows(
            c,
            &format!("{sql} with {}", show(v)),
            &got,
            &[vec![int(n as i64)]],
        );
    }
}

/// Column names come back in the statement's order, also when there are no rows.
pub(super) async fn columns_come_back_in_order(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!(
            "CREATE TABLE cols (a {}, b {}, c {})",
            d.int_type, d.text_type, d.real_type
        ),
        &[],
    )
    .await;
    let empty = q(c, s, "SELECT c, a, b FROM cols", &[]).await;
    assert_eq!(empty.columns, ["c", "a", "b"], "{c}: empty table");
    assert!(empty.rows.is_empty(), "{c}");
    let empty = q(c, s, "SELECT * FROM cols WHERE 1 = 0", &[]).await;
    assert_eq!(empty.columns, ["a", "b", "c"], "{c}: `*` with no rows");
    x(
        c,
        s,
        "INSERT INTO cols (a, b, c) VALUES (?, ?, ?)",
        &[int(1), text("one"), Value::Real(1.5)],
    )
    .await;
    let got = q(c, s, "SELECT b, c, a FROM cols", &[]).await;
    assert_eq!(got.columns, ["b", "c", "a"], "{c}");
    assert_rows(
        c,
        "reordered",
        &got,
        &[vec![text("one"), Value::Real(1.5), int(1)]],
    );
    let aliased = q(
        c,
        s,
        "SELECT b AS zeta, a AS alpha, a + 1 AS next FROM cols WHERE a = ?",
        &[int(99)],
    )
    .await;
    assert_eq!(
        aliased.columns,
        ["zeta", "alpha", "next"],
        "{c}: aliases, no rows"
    );
    assert!(aliased.rows.is_empty(), "{c}");
    let mut tx = begin(c, s).await;
    let got = tq(
        c,
        &mut *tx,
        "SELECT a AS second, b AS first FROM cols WHERE 1 = 0",
        &[],
    )
    .await;
    assert_eq!(got.columns, ["second", "first"], "{c}: in a transaction");
    tx.rollback().await.unwrap();
}

/// `rows_affected` counts the rows a statement changed.
pub(super) async fn rows_affected_is_counted(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE ra (id {0} PRIMARY KEY, v {0})", d.int_type),
        &[],
    )
    .await;
    for i in 1..=5 {
        x(
            c,
            s,
            "INSERT INTO ra (id, v) VALUES (?, ?)",
            &[int(i), int(0)],
        )
        .await;
    }
    let r = x(c, s, "UPDATE ra SET v = v + 1 WHERE id > ?", &[int(2)]).await;
    assert_eq!(r.rows_affected, 3, "{c}: UPDATE of 3 rows");
    let r = x(c, s, "UPDATE ra SET v = v + 1 WHERE id > ?", &[int(100)]).await;
    assert_eq!(r.rows_affected, 0, "{c}: UPDATE of no rows");
    let r = x(c, s, "DELETE FROM ra WHERE id <= ?", &[int(2)]).await;
    assert_eq!(r.rows_affected, 2, "{c}: DELETE of 2 rows");
    let mut tx = begin(c, s).await;
    let r = tx_exec(c, &mut *tx, "UPDATE ra SET v = v + 10", &[]).await;
    assert_eq!(r.rows_affected, 3, "{c}: UPDATE in a transaction");
    tx.rollback().await.unwrap();
    assert_eq!(ids(c, s, "ra").await, [3, 4, 5], "{c}");
}

/// Too few or too many parameters is `bad-query`, and changes nothing.
pub(super) async fn parameter_count_mismatch_is_bad_query(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE pc (id {0}, v {0})", d.int_type),
        &[],
    )
    .await;
    let bad = ["BadQuery"];
    let sel = "SELECT id FROM pc WHERE id = ? AND v = ?";
    let ins = "INSERT INTO pc (id, v) VALUES (?, ?)";
    for params in [vec![], vec![int(1)], vec![int(1), int(2), int(3)]] {
        let what = format!("{} parameters for 2", params.len());
        expect_err(
            c,
            &format!("query, {what}"),
            s.query(&limits(), sel, &params).await,
            &bad,
        );
        expect_err(
            c,
            &format!("execute, {what}"),
            s.execute(&limits(), ins, &params).await,
            &bad,
        );
    }
    expect_err(
        c,
        "a parameter for a statement without any",
        s.query(&limits(), "SELECT id FROM pc", &[int(1)]).await,
        &bad,
    );
    expect_err(
        c,
        "a parameter for an execute without any",
        s.execute(&limits(), "DELETE FROM pc", &[int(1)]).await,
        &bad,
    );
    let mut tx = begin(c, s).await;
    expect_err(
        c,
        "execute in a transaction, 1 parameter for 2",
        tx.execute(&limits(), ins, &[int(1)]).await,
        &bad,
    );
    expect_err(
        c,
        "query in a transaction, 3 parameters for 2",
        tx.query(&limits(), sel, &[int(1), int(2), int(3)]).await,
        &bad,
    );
    drop(tx);
    assert_eq!(count(c, s, "pc").await, 0, "{c}: nothing was inserted");
}

/// Syntax errors, unknown tables and unknown columns are `bad-query`.
pub(super) async fn bad_statements_are_bad_query(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(c, s, &format!("CREATE TABLE bq (id {})", d.int_type), &[]).await;
    let bad = ["BadQuery"];
    for sql in [
        "SELEC 1",
        "SELECT FROM WHERE",
        "SELECT * FROM bq WHERE",
        "SELECT * FROM no_such_table",
        "SELECT no_such_column FROM bq",
    ] {
        expect_err(c, sql, s.query(&limits(), sql, &[]).await, &bad);
    }
    for sql in [
        "INSERT INTO no_such_table (id) VALUES (1)",
        "INSERT INTO bq (no_such_column) VALUES (1)",
        "UPDATE no_such_table SET id = 1",
        "DELETE FROM no_such_table",
        "CREATE TABLE (",
        "INSERT INTO bq VALUES (1",
    ] {
        expect_err(c, sql, s.execute(&limits(), sql, &[]).await, &bad);
    }
    let mut tx = begin(c, s).await;
    expect_err(
        c,
        "unknown table in a transaction",
        tx.query(&limits(), "SELECT * FROM no_such_table", &[])
            .await,
        &bad,
    );
    drop(tx);
    expect_err(
        c,
        "syntax error in a transaction",
        begin(c, s)
            .await
            // (Not `VALUE`: MariaDB accepts it as a synonym of `VALUES`.)
            .execute(&limits(), "INSERT INTO bq VALUS (1)", &[])
            .await,
        &bad,
    );
}

/// UNIQUE, PRIMARY KEY, NOT NULL, CHECK and FOREIGN KEY violations are
/// `constraint-violation`, and leave the table as it was.
pub(super) async fn constraint_violations_are_classified(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    let i = d.int_type;
    x(
        c,
        s,
        &format!("CREATE TABLE cv_parent (id {i} PRIMARY KEY)"),
        &[],
    )
    .await;
    x(
        c,
        s,
        &format!(
            "CREATE TABLE cv (id {i} PRIMARY KEY, u {i} UNIQUE, nn {i} NOT NULL, \
             ck {i} CHECK (ck >= 0), p {i}, FOREIGN KEY (p) REFERENCES cv_parent (id))"
        ),
        &[],
    )
    .await;
    x(c, s, "INSERT INTO cv_parent (id) VALUES (?)", &[int(1)]).await;
    let ins = "INSERT INTO cv (id, u, nn, ck, p) VALUES (?, ?, ?, ?, ?)";
    x(c, s, ins, &[int(1), int(10), int(0), int(0), int(1)]).await;
    let cv = ["ConstraintViolation"];
    for (what, params) in [
        (
            "duplicate primary key",
            [int(1), int(11), int(0), int(0), int(1)],
        ),
        (
            "duplicate UNIQUE",
            [int(2), int(10), int(0), int(0), int(1)],
        ),
        (
            "NULL in NOT NULL",
            [int(3), int(12), Value::Null, int(0), int(1)],
        ),
        ("failed CHECK", [int(4), int(13), int(0), int(-1), int(1)]),
        (
            "missing FOREIGN KEY parent",
            [int(5), int(14), int(0), int(0), int(999)],
        ),
    ] {
        expect_err(c, what, s.execute(&limits(), ins, &params).await, &cv);
    }
    expect_err(
        c,
        "UPDATE into a NOT NULL violation",
        s.execute(&limits(), "UPDATE cv SET nn = NULL", &[]).await,
        &cv,
    );
    expect_err(
        c,
        "DELETE of a referenced parent",
        s.execute(&limits(), "DELETE FROM cv_parent", &[]).await,
        &cv,
    );
    let mut tx = begin(c, s).await;
    expect_err(
        c,
        "duplicate UNIQUE in a transaction",
        tx.execute(&limits(), ins, &[int(6), int(10), int(0), int(0), int(1)])
            .await,
        &cv,
    );
    tx.rollback().await.unwrap();
    assert_eq!(ids(c, s, "cv").await, [1], "{c}: cv unchanged");
    assert_eq!(
        ids(c, s, "cv_parent").await,
        [1],
        "{c}: cv_parent unchanged"
    );
    let row = q(c, s, "SELECT id, u, nn, ck, p FROM cv", &[]).await;
    assert_rows(
        c,
        "cv row unchanged",
        &row,
        &[vec![int(1), int(10), int(0), int(0), int(1)]],
    );
}

/// `execute` refuses a statement that returns rows (and it has no effect).
pub(super) async fn execute_of_a_row_returning_statement_is_bad_query(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!(
            "CREATE TABLE er (id {} PRIMARY KEY, name {})",
            d.int_type, d.text_type
        ),
        &[],
    )
    .await;
    let bad = ["BadQuery"];
    for (sql, params) in [
        ("SELECT 1", vec![]),
        ("SELECT id, name FROM er", vec![]),
        (
            "INSERT INTO er (id, name) VALUES (?, ?) RETURNING id",
            vec![int(1), text("x")],
        ),
    ] {
        expect_err(c, sql, s.execute(&limits(), sql, &params).await, &bad);
    }
    let mut tx = begin(c, s).await;
    expect_err(
        c,
        "INSERT … RETURNING through execute in a transaction",
        tx.execute(
            &limits(),
            "INSERT INTO er (id, name) VALUES (?, ?) RETURNING id",
            &[int(2), text("y")],
        )
        .await,
        &bad,
    );
    expect_err(
        c,
        "SELECT through execute in a transaction",
        tx.execute(&limits(), "SELECT id FROM er", &[]).await,
        &bad,
    );
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("{c}: commit after refusals: {e:?}"));
    assert_eq!(
        count(c, s, "er").await,
        0,
        "{c}: a refused INSERT … RETURNING inserted nothing"
    );
}

/// `INSERT … RETURNING` through `query` inserts and returns the row.
pub(super) async fn insert_returning_through_query(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!(
            "CREATE TABLE ret (id {} PRIMARY KEY, name {}, b {})",
            d.int_type, d.text_type, d.blob_type
        ),
        &[],
    )
    .await;
    let got = q(
        c,
        s,
        "INSERT INTO ret (id, name, b) VALUES (?, ?, ?) RETURNING name, id",
        &[int(7), text("seven"), Value::Blob(vec![7])],
    )
    .await;
    assert_eq!(got.columns, ["name", "id"], "{c}");
    assert_rows(c, "RETURNING", &got, &[vec![text("seven"), int(7)]]);
    assert_eq!(ids(c, s, "ret").await, [7], "{c}: the row was inserted");
    let mut tx = begin(c, s).await;
    let got = tq(
        c,
        &mut *tx,
        "INSERT INTO ret (id, name, b) VALUES (?, ?, ?) RETURNING id, b",
        &[int(8), text("eight"), Value::Blob(vec![0, 8])],
    )
    .await;
    assert_rows(
        c,
        "RETURNING in a transaction",
        &got,
        &[vec![int(8), Value::Blob(vec![0, 8])]],
    );
    assert_eq!(tcount(c, &mut *tx, "ret").await, 2, "{c}");
    tx.rollback().await.unwrap();
    assert_eq!(ids(c, s, "ret").await, [7], "{c}: rolled back");
}
