//! Statement helpers: statements prepared once per connection (cached), rows read into
//! records, database errors turned into [`StoreError`]s.

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::Row;

use crate::{StoreError, StoreResult};

/// Statement parameters.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl From<tokio_postgres::Error> for StoreError {
    /// A unique violation is a `Conflict` naming its constraint; any other database error
    /// keeps its code and message, never its detail (which may quote values).
    fn from(err: tokio_postgres::Error) -> StoreError {
        match err.as_db_error() {
            Some(db) if *db.code() == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(format!(
                "unique constraint `{}`",
                db.constraint().unwrap_or("unknown")
            )),
            Some(db) => StoreError::Database(format!("{} ({})", db.message(), db.code().code())),
            None => StoreError::Database(err.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> StoreError {
        match err {
            deadpool_postgres::PoolError::Backend(err) => err.into(),
            other => StoreError::Database(format!("connection pool: {other}")),
        }
    }
}

/// Every row of `sql`.
pub(super) async fn query(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Vec<Row>> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

/// The first row of `sql`, if any.
pub(super) async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Option<Row>> {
    Ok(query(c, sql, params).await?.into_iter().next())
}

/// Every row of `sql`, read by `map`.
pub(super) async fn fetch_all<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    map: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    query(c, sql, params).await?.iter().map(map).collect()
}

/// The first row of `sql`, if any, read by `map`.
pub(super) async fn fetch_optional<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    map: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    query_opt(c, sql, params)
        .await?
        .as_ref()
        .map(map)
        .transpose()
}

/// The one value of a statement that returns one row (a count, say).
pub(super) async fn fetch_value<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<T>
where
    T: for<'r> FromSql<'r>,
{
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_one(&statement, params).await?.try_get(0)?)
}

/// A page: the rows of `sql`, read by `map`, and the total that `count_sql` counts with the
/// first `count_params` of `params` (the filters, without the limit and offset).
pub(super) async fn fetch_page<T>(
    c: &impl GenericClient,
    (sql, count_sql): (&str, &str),
    params: Params<'_>,
    count_params: usize,
    map: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<(Vec<T>, i64)> {
    let rows = fetch_all(c, sql, params, map).await?;
    let total = fetch_value(c, count_sql, &params[..count_params]).await?;
    Ok((rows, total))
}

/// Runs one statement; returns the rows it changed.
pub(super) async fn execute(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<u64> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}

/// A column.
pub(super) fn get<'r, T: FromSql<'r>>(row: &'r Row, col: &str) -> StoreResult<T> {
    Ok(row.try_get(col)?)
}

/// A text column parsed as `T` (a UUID, say); a value that does not parse names the column.
pub(super) fn parsed<T>(row: &Row, col: &str) -> StoreResult<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: &str = get(row, col)?;
    text.parse()
        .map_err(|err| StoreError::Database(format!("column `{col}`: {err}")))
}

/// A nullable text column parsed as `T`.
pub(super) fn parsed_opt<T>(row: &Row, col: &str) -> StoreResult<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match get::<Option<&str>>(row, col)? {
        Some(_) => parsed(row, col).map(Some),
        None => Ok(None),
    }
}

/// A nullable JSON text column.
pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    row: &Row,
    col: &str,
) -> StoreResult<Option<T>> {
    get::<Option<&str>>(row, col)?
        .map(|text| {
            serde_json::from_str(text)
                .map_err(|err| StoreError::Database(format!("column `{col}`: {err}")))
        })
        .transpose()
}
