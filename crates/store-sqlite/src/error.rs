//! SQLite's errors as [`StoreError`]s.

use rusqlite::ErrorCode;
use rusqlite::ffi;
use store::StoreError;

/// A failed statement as the caller's outcome: a taken id is a conflict, an
/// unreadable file is corrupt, an oversize value is too large, and the rest
/// (busy, locked, I/O, a full disk) is "not now". A failed statement is
/// undone (by SQLite, or by its write's savepoint, or with its batch), so
/// each of these is determinate: nothing was written. Only the writer knows
/// when an outcome is unknown (a commit failing at I/O, the thread gone
/// after taking a request) and says so itself.
pub(crate) fn sql_error(operation: &str, err: rusqlite::Error) -> StoreError {
    let message = format!("{operation}: {err}");
    match &err {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::ConstraintViolation
                if matches!(
                    failure.extended_code,
                    ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE
                ) =>
            {
                StoreError::Conflict
            }
            ErrorCode::TooBig => StoreError::TooLarge(message),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase | ErrorCode::ConstraintViolation => {
                StoreError::Corrupt(message)
            }
            _ => StoreError::Unavailable(message),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(message),
        _ => StoreError::Unavailable(message),
    }
}
