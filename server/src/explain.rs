//! Domain errors as the command line says them.

use palmlink_domain::DomainError;

/// A domain error as the command line says it: with the fields that failed validation.
pub fn explain(err: DomainError) -> anyhow::Error {
    match err {
        DomainError::Validation(fields) => anyhow::anyhow!(
            "{}",
            fields
                .iter()
                .map(|f| format!("{} {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => other.into(),
    }
}
