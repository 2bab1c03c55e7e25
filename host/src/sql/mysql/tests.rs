//! Unit tests of the MariaDB backend.

use super::config::MyNames;
use super::guard::{check_guest, check_guest_in_tx, reads_only};
use super::provision::grant_db;

/// Store `host` of service `b` under prefix `silo_a` would have been database
/// `silo_a_b_host`: the host database of store `b` of service `a` under prefix `silo`.
#[test]
fn host_database_and_definer_names_cannot_be_another_stores() {
    let a = MyNames::new("silo", "a", "b").unwrap();
    assert_eq!(a.host_db, "silo_a_b_host");
    for store in ["host", "def"] {
        let e = MyNames::new("silo_a", "b", store).expect_err(store);
        assert!(e.to_string().contains("cannot be named"), "{e}");
    }
    assert_eq!(grant_db("silo_a-b_main"), "`silo\\_a-b\\_main`");
}

#[test]
fn guest_control_and_session_statements_are_refused() {
    for s in [
        "COMMIT",
        " /* x */ rollback",
        "begin",
        "START TRANSACTION",
        "SAVEPOINT a",
        "release savepoint a",
        "set autocommit = 0",
        "SET ROLE r",
        "SET DEFAULT ROLE r",
        "PREPARE s FROM 'SET ROLE r'",
        "EXECUTE IMMEDIATE 'COMMIT'",
        "deallocate prepare s",
        "LOCK TABLES t WRITE",
        "unlock tables",
        "LOAD DATA INFILE 'x' INTO TABLE t",
        "HANDLER t OPEN",
        "XA START 'x'",
        "KILL 5",
        "CALL p()",
        "DO SLEEP(1)",
        "SELECT /*!50000 1 */",
        "/*M!100000 SET ROLE r*/",
        "SELECT GET_LOCK('silo_provision', 60)",
        "select get_lock ('x', 1), is_used_lock('x')",
        "SELECT RELEASE_ALL_LOCKS()",
        "",
        "  -- nothing",
    ] {
        assert!(check_guest(s).is_err(), "{s}");
    }
    for s in [
        "SELECT 1",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "(SELECT 1)",
        "SELECT 'COMMIT', '/*!50000 1 */'",
        "CREATE TABLE t (id INT)",
    ] {
        assert!(check_guest(s).is_ok(), "{s}");
    }
}

#[test]
fn statements_that_commit_implicitly_are_refused_in_a_transaction() {
    for s in [
        "CREATE TABLE t (id INT)",
        "create index i on t (x)",
        "ALTER TABLE t ADD x INT",
        "DROP TABLE IF EXISTS t",
        "TRUNCATE t",
        "RENAME TABLE a TO b",
        "CREATE VIEW v AS SELECT 1",
        "ANALYZE TABLE t",
    ] {
        assert!(check_guest_in_tx(s).is_err(), "{s}");
        assert!(check_guest(s).is_ok(), "{s}");
    }
    for s in [
        "CREATE TEMPORARY TABLE t (id INT)",
        "DROP TEMPORARY TABLE t",
        "INSERT INTO t VALUES (1)",
        "SELECT * FROM t FOR UPDATE",
    ] {
        assert!(check_guest_in_tx(s).is_ok(), "{s}");
    }
}

#[test]
fn reads_only_spots_locking_and_writing_reads() {
    assert!(reads_only("SELECT a FROM t"));
    assert!(!reads_only("SELECT a FROM t FOR UPDATE"));
    assert!(!reads_only("SELECT a FROM t LOCK IN SHARE MODE"));
    assert!(!reads_only("INSERT INTO t VALUES (1) RETURNING id"));
    assert!(!reads_only("WITH x AS (SELECT 1) DELETE FROM t"));
}
