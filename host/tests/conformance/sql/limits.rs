//! The battery's checks of limits: a runaway statement, a result over its cap, and
//! concurrent writers.

use super::*;

/// A runaway statement stops with `limit-exceeded` soon after its deadline (the request's
/// or the statement budget, whichever is first), outside and inside a transaction, and the
/// store is usable right after.
pub(super) async fn runaway_statement_stops_at_the_deadline(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    let short = Duration::from_millis(300);
    let within = Duration::from_secs(3);
    let by_deadline = || CallLimits {
        deadline: Instant::now() + short,
        statement_budget: Duration::from_secs(3600),
        max_result_bytes: 1 << 20,
    };
    let by_budget = || CallLimits {
        deadline: Instant::now() + Duration::from_secs(3600),
        statement_budget: short,
        max_result_bytes: 1 << 20,
    };
    for (what, l) in [
        ("deadline", by_deadline()),
        ("statement budget", by_budget()),
    ] {
        let t = Instant::now();
        let r = s.query(&l, d.sleep_sql, &[]).await;
        let took = t.elapsed();
        expect_err(c, &format!("runaway query, {what}"), r, &["LimitExceeded"]);
        assert!(
            took < within,
            "{c}: a runaway query ({what} 300 ms) took {took:?}"
        );
    }
    let mut tx = begin(c, s).await;
    let t = Instant::now();
    let r = tx.query(&by_budget(), d.sleep_sql, &[]).await;
    let took = t.elapsed();
    expect_err(c, "runaway query in a transaction", r, &["LimitExceeded"]);
    assert!(
        took < within,
        "{c}: a runaway query in a transaction took {took:?}"
    );
    tx.rollback()
        .await
        .unwrap_or_else(|e| panic!("{c}: rollback after a runaway: {e:?}"));
    // The next statements are unaffected: no leftover deadline, no held writer.
    let t = Instant::now();
    x(c, s, &format!("CREATE TABLE rw (id {})", d.int_type), &[]).await;
    let mut tx = begin(c, s).await;
    tx_exec(c, &mut *tx, "INSERT INTO rw (id) VALUES (1)", &[]).await;
    tx.commit().await.unwrap();
    assert_eq!(count(c, s, "rw").await, 1, "{c}");
    assert!(
        t.elapsed() < within,
        "{c}: the store was slow after a runaway ({:?})",
        t.elapsed()
    );
}

/// A result larger than `max_result_bytes` is `limit-exceeded`; one under it is whole.
pub(super) async fn result_size_is_capped(c: Ck<'_>, s: &Store) {
    let d = c.d;
    let s = &**s;
    x(
        c,
        s,
        &format!("CREATE TABLE big (id {}, b {})", d.int_type, d.blob_type),
        &[],
    )
    .await;
    let blob: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    x(
        c,
        s,
        "INSERT INTO big (id, b) VALUES (?, ?)",
        &[int(1), Value::Blob(blob.clone())],
    )
    .await;
    let capped = |max| CallLimits {
        max_result_bytes: max,
        ..limits()
    };
    expect_err(
        c,
        "one 64 KiB value, 16 KiB allowed",
        s.query(&capped(16 * 1024), "SELECT b FROM big", &[]).await,
        &["LimitExceeded"],
    );
    let whole = s
        .query(&capped(1 << 20), "SELECT id, b FROM big", &[])
        .await
        .unwrap_or_else(|e| panic!("{c}: 64 KiB under a 1 MiB cap: {e:?}"));
    assert_rows(c, "the blob", &whole, &[vec![int(1), Value::Blob(blob)]]);

    let many = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000) \
                SELECT x, 'padding padding padding' AS p FROM n";
    expect_err(
        c,
        "5000 rows, 10 000 bytes allowed",
        s.query(&capped(10_000), many, &[]).await,
        &["LimitExceeded"],
    );
    let all = s
        .query(&capped(4 << 20), many, &[])
        .await
        .unwrap_or_else(|e| panic!("{c}: 5000 small rows under a 4 MiB cap: {e:?}"));
    assert_eq!(all.rows.len(), 5000, "{c}");

    let mut tx = begin(c, s).await;
    expect_err(
        c,
        "one 64 KiB value in a transaction, 16 KiB allowed",
        tx.query(&capped(16 * 1024), "SELECT b FROM big", &[]).await,
        &["LimitExceeded"],
    );
    drop(tx);
}

/// 20 concurrent transactions each read a counter and write it back plus one: since a
/// transaction is its store's only writer, none is lost. `unavailable` is retried.
pub(super) async fn concurrent_increments_serialize(c: Ck<'_>, s: &Store) {
    let d = c.d;
    x(
        c,
        &**s,
        &format!(
            "CREATE TABLE ctr (id {0} PRIMARY KEY, n {0} NOT NULL)",
            d.int_type
        ),
        &[],
    )
    .await;
    x(c, &**s, "INSERT INTO ctr (id, n) VALUES (1, 0)", &[]).await;
    const TASKS: u64 = 20;
    const ATTEMPTS: u64 = 50;
    let label = c.to_string();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let s = s.clone();
        let label = label.clone();
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            for attempt in 0..ATTEMPTS {
                let r: Result<(), SqlError> = async {
                    let mut tx = s.begin(&limits()).await?;
                    let rs = tx
                        .query(&limits(), "SELECT n FROM ctr WHERE id = 1", &[])
                        .await?;
                    let n = match rs.rows.as_slice() {
                        [row] => match row.as_slice() {
                            [Value::Integer(n)] => *n,
                            r => panic!("{label}: task {task}: counter row {r:?}"),
                        },
                        _ => panic!("{label}: task {task}: counter rows {:?}", rs.rows),
                    };
                    // Give the others every chance to interleave.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let e = tx
                        .execute(
                            &limits(),
                            "UPDATE ctr SET n = ? WHERE id = 1",
                            &[Value::Integer(n + 1)],
                        )
                        .await?;
                    assert_eq!(e.rows_affected, 1, "{label}: task {task}");
                    tx.commit().await
                }
                .await;
                match r {
                    Ok(()) => return retries,
                    Err(SqlError::Unavailable(_)) => {
                        retries += 1;
                        let ms = (task * 7 + attempt * 13) % 40;
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    Err(e) => panic!("{label}: task {task}, attempt {attempt}: {e:?}"),
                }
            }
            panic!("{label}: task {task}: still unavailable after {ATTEMPTS} attempts");
        }));
    }
    let mut retries = 0;
    for t in tasks {
        retries += t
            .await
            .unwrap_or_else(|e| panic!("{c}: a task failed: {e}"));
    }
    let n = scalar(
        c,
        "counter",
        &q(c, &**s, "SELECT n FROM ctr WHERE id = 1", &[]).await,
    );
    assert_eq!(
        n, TASKS as i64,
        "{c}: {TASKS} committed increments ({retries} retries) must leave the counter at {TASKS}"
    );
    eprintln!("{c}: {retries} retries on `unavailable`");
}
