//! One-line text of an error and its causes, for transport failures.

/// `error: cause: cause…`. Callers pass errors whose texts carry no secrets (URLs only;
/// credentials travel in headers).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
