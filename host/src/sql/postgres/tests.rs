//! Unit tests of the PostgreSQL backend.

use super::guard::check_guest;
use super::values::{date_text, numeric_text, timestamp_text};

#[test]
fn guest_transaction_control_is_refused() {
    for s in [
        "COMMIT",
        " /* x */ rollback",
        "begin",
        "SAVEPOINT a",
        "release a",
        "set role postgres",
        "RESET ALL",
        "discard all",
        "copy t from stdin",
        "",
        "  -- nothing",
    ] {
        assert!(check_guest(s).is_err(), "{s}");
    }
    for s in [
        "SELECT 1",
        "set constraints all deferred",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "(SELECT 1)",
    ] {
        assert!(check_guest(s).is_ok(), "{s}");
    }
}

#[test]
fn numerics_dates_and_times_read_as_text() {
    // 12345.678: ndigits 3, weight 1, sign +, dscale 3: [1, 2345, 6780].
    let raw = [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
    assert_eq!(numeric_text(&raw).unwrap(), "12345.678");
    // -0.05: ndigits 1, weight -1, sign -, dscale 2: [500].
    let raw = [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4];
    assert_eq!(numeric_text(&raw).unwrap(), "-0.05");
    assert_eq!(date_text(0), "2000-01-01");
    assert_eq!(date_text(-1), "1999-12-31");
    assert_eq!(date_text(9_190), "2025-02-28");
    assert_eq!(
        timestamp_text(86_400_000_000 + 3_723_000_001, "Z"),
        "2000-01-02T01:02:03.000001Z"
    );
}
