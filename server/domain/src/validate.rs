//! Checks shared by the inputs: lengths, identifiers, metadata, pages.

use serde_json::Value;

use crate::{DomainError, DomainResult, FieldError};

/// Adds an error when `value` is empty, blank, longer than `max` characters, or holds a NUL
/// character (which no database text column stores).
pub fn check_len(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    let n = value.chars().count();
    if n == 0 || value.trim().is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if value.contains('\0') {
        errors.push(FieldError::new(field, "must not contain NUL characters"));
    } else if n > max {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
}

/// Adds an error unless `value` is 1-128 characters of `[A-Za-z0-9_.:-]` (a hardware id).
pub fn check_hardware_id(errors: &mut Vec<FieldError>, value: &str) {
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if value.is_empty() || value.len() > 128 || !ok_chars {
        errors.push(FieldError::new(
            "hardware_id",
            "must be 1-128 characters of A-Z, a-z, 0-9, _ . : -",
        ));
    }
}

/// Adds an error unless `value` is absent, a JSON object or null.
pub fn check_metadata(errors: &mut Vec<FieldError>, value: &Option<Value>) {
    if let Some(v) = value {
        if !(v.is_object() || v.is_null()) {
            errors.push(FieldError::new("metadata", "must be an object or null"));
        }
    }
}

/// A page of a list: `offset` >= 0, `limit` 1..=100 (default 20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Rows skipped.
    pub offset: i64,
    /// Rows returned at most.
    pub limit: i64,
}

impl Default for Page {
    fn default() -> Page {
        Page {
            offset: 0,
            limit: 20,
        }
    }
}

impl Page {
    /// The largest `limit`.
    pub const MAX_LIMIT: i64 = 100;

    /// Reads `offset` and `limit` as given in a query string (absent means the default);
    /// 422 naming each that is out of bounds.
    pub fn parse(offset: Option<&str>, limit: Option<&str>) -> DomainResult<Page> {
        let mut errors = Vec::new();
        let mut page = Page::default();
        if let Some(raw) = offset {
            match raw.parse::<i64>() {
                Ok(v) if v >= 0 => page.offset = v,
                _ => errors.push(FieldError::new("offset", "must be an integer >= 0")),
            }
        }
        if let Some(raw) = limit {
            match raw.parse::<i64>() {
                Ok(v) if (1..=Page::MAX_LIMIT).contains(&v) => page.limit = v,
                _ => errors.push(FieldError::new("limit", "must be an integer from 1 to 100")),
            }
        }
        DomainError::check(errors)?;
        Ok(page)
    }
}

/// One page of a list and the number of rows in the whole list.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing<T> {
    /// The rows of the page.
    pub rows: Vec<T>,
    /// Rows in the whole list.
    pub total: i64,
    /// The page.
    pub page: Page,
}

/// Deserializes an optional integer that JSON may write as `7` or `7.0` (both are the
/// integer 7 to JSON Schema); a fractional or out-of-range number is an error.
pub(crate) fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize as _;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
            Ok(Some(f as i64))
        }
        _ => Err(serde::de::Error::custom(format!(
            "expected an integer, got {n}"
        ))),
    }
}

/// As [`integer`], for a field where `null` means something (used with `#[serde(default)]`):
/// left out is `None`, `null` is `Some(None)`, a number `Some(Some(n))`.
pub(crate) fn nullable_integer<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<i64>>, D::Error> {
    integer(d).map(Some)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(err: DomainError) -> Vec<String> {
        match err {
            DomainError::Validation(errors) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn nul_characters_are_refused() {
        let mut errors = Vec::new();
        check_len(&mut errors, "a", "x\0y", 5);
        check_len(&mut errors, "b", "fine", 5);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["a"]);
    }

    #[test]
    fn integers_may_be_written_as_whole_floats() {
        #[derive(serde::Deserialize)]
        struct K {
            #[serde(default, deserialize_with = "super::integer")]
            k: Option<i64>,
        }
        let k = |text: &str| serde_json::from_str::<K>(text).map(|v| v.k);
        assert_eq!(k(r#"{"k": 7}"#).unwrap(), Some(7));
        assert_eq!(k(r#"{"k": 7.0}"#).unwrap(), Some(7));
        assert_eq!(k(r#"{"k": -3e0}"#).unwrap(), Some(-3));
        assert_eq!(k(r#"{"k": null}"#).unwrap(), None);
        assert_eq!(k("{}").unwrap(), None);
        assert!(k(r#"{"k": 7.5}"#).is_err());
        assert!(k(r#"{"k": 1e300}"#).is_err());
        assert!(k(r#"{"k": "7"}"#).is_err());
    }

    #[test]
    fn a_null_is_told_from_a_missing_value() {
        #[derive(serde::Deserialize)]
        struct R {
            #[serde(default, deserialize_with = "super::nullable_integer")]
            r: Option<Option<i64>>,
        }
        let r = |text: &str| serde_json::from_str::<R>(text).map(|v| v.r);
        assert_eq!(r("{}").unwrap(), None);
        assert_eq!(r(r#"{"r": null}"#).unwrap(), Some(None));
        assert_eq!(r(r#"{"r": 30}"#).unwrap(), Some(Some(30)));
        assert_eq!(r(r#"{"r": 30.0}"#).unwrap(), Some(Some(30)));
        assert!(r(r#"{"r": 1.5}"#).is_err());
        assert!(r(r#"{"r": "30"}"#).is_err());
    }

    #[test]
    fn page_bounds() {
        assert_eq!(Page::parse(None, None).unwrap(), Page::default());
        assert_eq!(
            Page::parse(Some("5"), Some("100")).unwrap(),
            Page {
                offset: 5,
                limit: 100
            }
        );
        for (offset, limit) in [
            (None, Some("0")),
            (None, Some("101")),
            (Some("-1"), None),
            (None, Some("1.5")),
            (Some("x"), None),
        ] {
            assert!(Page::parse(offset, limit).is_err(), "{offset:?} {limit:?}");
        }
        let both = Page::parse(Some("-2"), Some("0")).unwrap_err();
        assert_eq!(fields(both), ["offset", "limit"]);
    }

    #[test]
    fn lengths_identifiers_and_metadata() {
        let mut errors = Vec::new();
        check_len(&mut errors, "a", "", 5);
        check_len(&mut errors, "b", "   ", 5);
        check_len(&mut errors, "c", "123456", 5);
        check_len(&mut errors, "d", "éééé", 4);
        check_metadata(&mut errors, &Some(json!([1])));
        check_metadata(&mut errors, &Some(json!(null)));
        check_metadata(&mut errors, &Some(json!({"k": 1})));
        check_hardware_id(&mut errors, "scanner-01:a.b_c");
        check_hardware_id(&mut errors, "has space");
        let names: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "metadata", "hardware_id"]);
    }
}
