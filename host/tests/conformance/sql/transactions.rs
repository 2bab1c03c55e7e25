//! The battery's checks of transactions: commit and rollback, isolation, batches, a
//! failed statement inside one, and transaction control sent as guest SQL.

use super::*;

/// Commit persists; rollback and drop without commit discard; the store stays usable.
pub(super) async fn commit_persists_rollback_and_drop_discard(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE cr (id {} PRIMARY KEY)", d.int_type),
        &[],
    )
    .await;
    let ins = "INSERT INTO cr (id) VALUES (?)";
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(1)]).await;
    tx_exec(c, &mut *tx, ins, &[int(2)]).await;
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("{c}: commit: {e:?}"));
    assert_eq!(ids(c, s, "cr").await, [1, 2], "{c}: committed");

    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(3)]).await;
    tx_exec(c, &mut *tx, "DELETE FROM cr WHERE id = ?", &[int(1)]).await;
    tx.rollback()
        .await
        .unwrap_or_else(|e| panic!("{c}: rollback: {e:?}"));
    assert_eq!(ids(c, s, "cr").await, [1, 2], "{c}: rolled back");

    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(4)]).await;
    tx_exec(c, &mut *tx, "DELETE FROM cr WHERE id = ?", &[int(2)]).await;
    drop(tx);
    assert_eq!(ids(c, s, "cr").await, [1, 2], "{c}: dropped without commit");

    // The writer is free again: a new transaction and a plain write both go through.
    let t = Instant::now();
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(5)]).await;
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("{c}: commit after a drop: {e:?}"));
    x(c, s, ins, &[int(6)]).await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "{c}: the writer was held after the drop ({:?})",
        t.elapsed()
    );
    assert_eq!(ids(c, s, "cr").await, [1, 2, 5, 6], "{c}");
}

/// A transaction sees its own writes; a reader outside it does not, until it commits.
pub(super) async fn transaction_is_isolated_until_commit(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE iso (id {0} PRIMARY KEY, v {0})", d.int_type),
        &[],
    )
    .await;
    x(c, s, "INSERT INTO iso (id, v) VALUES (1, 10)", &[]).await;
    let read = "SELECT id, v FROM iso ORDER BY id";
    let before = [vec![int(1), int(10)]];
    let after = [vec![int(1), int(11)], vec![int(2), int(20)]];

    let mut tx = begin(c, s).await;
    tx_exec(
        c,
        &mut *tx,
        "INSERT INTO iso (id, v) VALUES (?, ?)",
        &[int(2), int(20)],
    )
    .await;
    tx_exec(c, &mut *tx, "UPDATE iso SET v = 11 WHERE id = 1", &[]).await;
    let inside = tq(c, &mut *tx, read, &[]).await;
    assert_rows(c, "the transaction sees its own writes", &inside, &after);
    let t = Instant::now();
    let outside = q(c, s, read, &[]).await;
    assert_rows(
        c,
        "a reader outside sees no uncommitted write",
        &outside,
        &before,
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "{c}: a reader outside waited on the transaction ({:?})",
        t.elapsed()
    );
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("{c}: commit: {e:?}"));
    assert_rows(c, "after commit", &q(c, s, read, &[]).await, &after);
}

/// `execute_batch` runs everything valid (comments, literals with `;`), and a failure
/// anywhere in it leaves nothing behind.
pub(super) async fn execute_batch_is_atomic_and_accepts_valid_sql(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    let (i, t) = (d.int_type, d.text_type);
    let valid = format!(
        "-- a schema set-up; with a semicolon in a comment
        CREATE TABLE ba (id {i} PRIMARY KEY, note {t}, n {i});
        CREATE INDEX ba_n ON ba (n);
        /* a block comment; also with one */
        INSERT INTO ba (id, note, n) VALUES (1, 'semi;colon', 1);
        INSERT INTO ba (id, note, n) VALUES (2, 'it''s', 2);
        UPDATE ba SET id = id + 10 WHERE id = 2;
        CREATE TABLE bb (id {i} PRIMARY KEY);
        "
    );
    s.execute_batch(&limits(), &valid)
        .await
        .unwrap_or_else(|e| panic!("{c}: a valid batch was refused: {e:?}"));
    let got = q(c, s, "SELECT id, note FROM ba ORDER BY id", &[]).await;
    assert_rows(
        c,
        "the batch ran",
        &got,
        &[
            vec![int(1), text("semi;colon")],
            vec![int(12), text("it's")],
        ],
    );

    for (what, batch, kinds) in [
        (
            "a duplicate key in the middle",
            "INSERT INTO bb (id) VALUES (1); INSERT INTO bb (id) VALUES (2); \
             INSERT INTO bb (id) VALUES (1); INSERT INTO bb (id) VALUES (3)",
            &["ConstraintViolation"][..],
        ),
        (
            "an unknown table in the middle",
            "INSERT INTO bb (id) VALUES (1); INSERT INTO no_such_table (id) VALUES (2); \
             INSERT INTO bb (id) VALUES (3)",
            &["BadQuery"][..],
        ),
        (
            "a syntax error at the end",
            "INSERT INTO bb (id) VALUES (1); INSERT INTO bb (id) VALUES (2); INSERT INTO",
            &["BadQuery"][..],
        ),
        (
            "a failing DELETE after an UPDATE",
            "INSERT INTO bb (id) VALUES (1); UPDATE ba SET note = 'changed'; \
             DELETE FROM no_such_table",
            &["BadQuery"][..],
        ),
    ] {
        expect_err(c, what, s.execute_batch(&limits(), batch).await, kinds);
        assert_eq!(
            count(c, s, "bb").await,
            0,
            "{c}: {what}: the statements before the failure were undone"
        );
    }
    let got = q(c, s, "SELECT id, note FROM ba ORDER BY id", &[]).await;
    assert_rows(
        c,
        "ba untouched by the failed batches",
        &got,
        &[
            vec![int(1), text("semi;colon")],
            vec![int(12), text("it's")],
        ],
    );

    // Inside a transaction, a batch's writes are the transaction's.
    let mut tx = begin(c, s).await;
    tx.execute_batch(
        &limits(),
        "INSERT INTO bb (id) VALUES (1); INSERT INTO bb (id) VALUES (2)",
    )
    .await
    .unwrap_or_else(|e| panic!("{c}: batch in a transaction: {e:?}"));
    assert_eq!(tcount(c, &mut *tx, "bb").await, 2, "{c}");
    tx.rollback().await.unwrap();
    assert_eq!(
        count(c, s, "bb").await,
        0,
        "{c}: rolled back with its transaction"
    );
}

/// A statement that fails inside a transaction (a constraint, a typo) does what the
/// dialect declares. Either it fails alone: the transaction keeps its earlier writes, takes
/// more, and commits (SQLite). Or it aborts the transaction: every later statement fails,
/// `commit` fails rather than reporting success for writes that are gone, and nothing
/// persists. Either way the store is usable afterwards.
pub(super) async fn failed_statement_inside_a_transaction(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE fs (id {} PRIMARY KEY)", d.int_type),
        &[],
    )
    .await;
    let ins = "INSERT INTO fs (id) VALUES (?)";
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(1)]).await;
    expect_err(
        c,
        "duplicate key in a transaction",
        tx.execute(&limits(), ins, &[int(1)]).await,
        &["ConstraintViolation"],
    );
    if d.failed_statement_aborts_transaction {
        let r = tx.execute(&limits(), ins, &[int(2)]).await;
        assert!(
            r.is_err(),
            "{c}: declared to abort the transaction on a failed statement, but a later \
             statement succeeded: {r:?}"
        );
        let r = tx.commit().await;
        assert!(
            r.is_err(),
            "{c}: `commit` of an aborted transaction must fail, not report success for \
             writes that were discarded"
        );
        assert_eq!(
            ids(c, s, "fs").await,
            Vec::<i64>::new(),
            "{c}: nothing persisted"
        );
    } else {
        tx_exec(c, &mut *tx, ins, &[int(2)]).await;
        expect_err(
            c,
            "unknown table in a transaction",
            tx.query(&limits(), "SELECT * FROM no_such_table", &[])
                .await,
            &["BadQuery"],
        );
        tx_exec(c, &mut *tx, ins, &[int(3)]).await;
        assert_eq!(tcount(c, &mut *tx, "fs").await, 3, "{c}");
        tx.commit()
            .await
            .unwrap_or_else(|e| panic!("{c}: commit after failed statements: {e:?}"));
        assert_eq!(ids(c, s, "fs").await, [1, 2, 3], "{c}");
    }
    // The store is usable afterwards.
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(10)]).await;
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("{c}: a fresh transaction after the failure: {e:?}"));
    assert!(ids(c, s, "fs").await.contains(&10), "{c}");
}

/// Transaction control sent as guest SQL is refused, inside a transaction (which stays
/// usable and still rolls back cleanly) and outside one (the store stays usable).
pub(super) async fn transaction_control_is_refused(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE tc (id {} PRIMARY KEY)", d.int_type),
        &[],
    )
    .await;
    let refused = ["AccessDenied", "BadQuery"];
    let control = [
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT sp1",
        "RELEASE sp1",
        "RELEASE SAVEPOINT sp1",
        "ROLLBACK TO SAVEPOINT sp1",
        "END",
        "START TRANSACTION",
        "  commit",
        "/* hidden */ COMMIT",
        "-- hidden\nROLLBACK",
    ];
    let ins = "INSERT INTO tc (id) VALUES (?)";
    let mut tx = begin(c, s).await;
    let mut n = 0;
    for sql in control {
        n += 1;
        tx_exec(c, &mut *tx, ins, &[int(n)]).await;
        expect_err(
            c,
            &format!("tx.execute({sql:?})"),
            tx.execute(&limits(), sql, &[]).await,
            &refused,
        );
        expect_err(
            c,
            &format!("tx.query({sql:?})"),
            tx.query(&limits(), sql, &[]).await,
            &refused,
        );
        expect_err(
            c,
            &format!("tx.execute_batch({sql:?})"),
            tx.execute_batch(&limits(), sql).await,
            &refused,
        );
        assert_eq!(
            tcount(c, &mut *tx, "tc").await,
            n,
            "{c}: the transaction is still usable after {sql:?}"
        );
    }
    let outside = q(c, s, "SELECT id FROM tc", &[]).await;
    assert!(
        outside.rows.is_empty(),
        "{c}: nothing was committed by guest statements: {}",
        show_rows(&outside)
    );
    tx.rollback()
        .await
        .unwrap_or_else(|e| panic!("{c}: rollback after refused control statements: {e:?}"));
    assert_eq!(count(c, s, "tc").await, 0, "{c}: everything rolled back");

    for sql in control {
        expect_err(
            c,
            &format!("execute({sql:?})"),
            s.execute(&limits(), sql, &[]).await,
            &refused,
        );
        expect_err(
            c,
            &format!("query({sql:?})"),
            s.query(&limits(), sql, &[]).await,
            &refused,
        );
        expect_err(
            c,
            &format!("execute_batch({sql:?})"),
            s.execute_batch(&limits(), sql).await,
            &refused,
        );
    }
    // No connection was left inside a guest's transaction: writes land, and a
    // transaction opens, commits and is visible.
    x(c, s, ins, &[int(100)]).await;
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, ins, &[int(101)]).await;
    tx.commit().await.unwrap();
    assert_eq!(ids(c, s, "tc").await, [100, 101], "{c}");
}
