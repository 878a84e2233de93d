//! Single values to and from columns: times as Unix nanoseconds, counts as `i64`, roles as text,
//! and checked readers, since anything read from the file is checked and a bad value is named.

use rusqlite::types::ValueRef;
use rusqlite::Row;
use time::OffsetDateTime;

use crate::protocol::types::Role;
use crate::store::StoreError;

fn value<'r>(row: &'r Row<'_>, i: usize, what: &str) -> Result<ValueRef<'r>, StoreError> {
    row.get_ref(i)
        .map_err(|e| StoreError::Invalid(format!("{what}: {e}")))
}

fn wrong_type(what: &str, v: ValueRef<'_>, wanted: &str) -> StoreError {
    let found = match v {
        ValueRef::Null => "null",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    };
    StoreError::Invalid(format!("{what} is {found}, not {wanted}"))
}

pub(super) fn text<'r>(row: &'r Row<'_>, i: usize, what: &str) -> Result<&'r str, StoreError> {
    let v = value(row, i, what)?;
    v.as_str().map_err(|_| wrong_type(what, v, "text"))
}

fn opt_text<'r>(row: &'r Row<'_>, i: usize, what: &str) -> Result<Option<&'r str>, StoreError> {
    let v = value(row, i, what)?;
    v.as_str_or_null().map_err(|_| wrong_type(what, v, "text"))
}

pub(super) fn int(row: &Row<'_>, i: usize, what: &str) -> Result<i64, StoreError> {
    let v = value(row, i, what)?;
    v.as_i64().map_err(|_| wrong_type(what, v, "an integer"))
}

fn invalid_value(what: &str, found: &str, expected: &str) -> StoreError {
    StoreError::Invalid(format!("{what} {found:?} is not {expected}"))
}

pub(super) fn parsed<T>(
    row: &Row<'_>,
    i: usize,
    what: &str,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let s = text(row, i, what)?;
    parse(s).ok_or_else(|| invalid_value(what, s, expected))
}

pub(super) fn id<T>(
    row: &Row<'_>,
    i: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parsed(row, i, what, "a UUID", parse)
}

pub(super) fn opt_id<T>(
    row: &Row<'_>,
    i: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, StoreError> {
    opt_text(row, i, what)?
        .map(|s| parse(s).ok_or_else(|| invalid_value(what, s, "a UUID")))
        .transpose()
}

pub(super) fn time_at(row: &Row<'_>, i: usize, what: &str) -> Result<OffsetDateTime, StoreError> {
    let n = int(row, i, what)?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
        .map_err(|_| StoreError::Invalid(format!("{what} {n} is not a time")))
}

/// Unix nanoseconds, as stored. i64 holds 1677..2262; a time outside that is clamped rather than
/// failing a commit that also carries a user's message.
pub(super) fn nanos(t: OffsetDateTime) -> i64 {
    let n = t.unix_timestamp_nanos();
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

pub(super) fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("{what} {n} is too large to store")))
}

/// A running total, as stored: past `i64::MAX` it is clamped, as [`nanos`] clamps, rather than
/// failing the commit of the turn that ends.
pub(super) fn total_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A running total, as read: a negative one is not ours.
pub(super) fn total(row: &Row<'_>, i: usize, what: &str) -> Result<u64, StoreError> {
    let n = int(row, i, what)?;
    u64::try_from(n).map_err(|_| StoreError::Invalid(format!("{what} {n} is negative")))
}

pub(super) fn role_str(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

pub(super) fn parse_role(s: &str) -> Option<Role> {
    match s {
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        "tool" => Some(Role::Tool),
        _ => None,
    }
}
