//! Statement helpers: cached statements with `$n` parameters, rows mapped to records.

/// Prepares `sql` once per connection (cached). Parameters are written `$1`, `$2`, ... in
/// order of first use, so that positional binding matches their numbers.
use rusqlite::Connection;

fn prepare<'c>(c: &'c Connection, sql: &str) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let st = c.prepare_cached(sql)?;
    debug_assert!(
        (1..=st.parameter_count()).all(|i| st.parameter_name(i) == Some(format!("${i}").as_str())),
        "parameters of `{sql}` are not $1..$n in order"
    );
    Ok(st)
}

/// Every row of `sql`, mapped by `map`.
pub(super) fn fetch_all<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut st = prepare(c, sql)?;
    let rows = st.query_map(params, map)?;
    rows.collect()
}

/// The first row of `sql`, if any, mapped by `map`.
pub(super) fn fetch_optional<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    use rusqlite::OptionalExtension as _;
    prepare(c, sql)?.query_row(params, map).optional()
}

/// Runs one statement; returns the rows it changed.
pub(super) fn execute(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    prepare(c, sql)?.execute(params)
}

/// A text column parsed as `T` (a UUID, say); a value that does not parse is a conversion
/// error naming the column.
pub(super) fn parsed<T>(row: &rusqlite::Row<'_>, col: &str) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(col)?;
    text.parse().map_err(|err| conversion(row, col, err))
}

/// A nullable JSON text column.
pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    col: &str,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|err| conversion(row, col, err)))
        .transpose()
}

pub(super) fn conversion(
    row: &rusqlite::Row<'_>,
    col: &str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    let index = row.as_ref().column_index(col).unwrap_or_default();
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(err))
}
