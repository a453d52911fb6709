//! Classifying PostgreSQL errors by SQLSTATE: what a retry can fix and what it cannot.

use surefoot_core_lifecycle::ErrorClass;

/// The class of a server error with this SQLSTATE.
///
/// Permanent: authentication and authorisation failures, objects that do not exist (publication,
/// slot, table), syntax and feature errors — retrying changes nothing. Transient: connection
/// failures, the server shutting down or starting, too many connections, a slot still held by a
/// walsender that has not exited yet, serialization failures and deadlocks.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    match code {
        // admin_shutdown, crash_shutdown, cannot_connect_now, database_dropped is permanent
        "57P01" | "57P02" | "57P03" => ErrorClass::Transient,
        // query_canceled: statement_timeout fired.
        "57014" => ErrorClass::Timeout,
        // too_many_connections, object_in_use (slot active), lock_not_available
        "53300" | "55006" | "55P03" => ErrorClass::Transient,
        // serialization_failure, deadlock_detected
        "40001" | "40P01" => ErrorClass::Transient,
        // insufficient resources (disk full, out of memory): may clear up
        code if code.starts_with("53") => ErrorClass::Transient,
        // connection_exception family
        code if code.starts_with("08") => ErrorClass::Transient,
        // invalid_authorization_specification, invalid_password
        code if code.starts_with("28") => ErrorClass::Permanent,
        // invalid configuration parameter values and the like
        code if code.starts_with("22") || code.starts_with("F0") => ErrorClass::Configuration,
        _ => ErrorClass::Permanent,
    }
}

/// Finds the `SQLSTATE xxxxx` code inside an error text, as pgwire-replication formats server
/// errors.
pub fn sqlstate_in_text(text: &str) -> Option<&str> {
    let start = text.find("SQLSTATE ")? + "SQLSTATE ".len();
    let code = text.get(start..start + 5)?;
    code.bytes()
        .all(|byte| byte.is_ascii_alphanumeric())
        .then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_only_what_can_recover() {
        assert_eq!(classify_sqlstate("28P01"), ErrorClass::Permanent);
        assert_eq!(classify_sqlstate("42501"), ErrorClass::Permanent);
        assert_eq!(classify_sqlstate("42704"), ErrorClass::Permanent);
        assert_eq!(classify_sqlstate("57P01"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("08006"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("55006"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("57014"), ErrorClass::Timeout);
        assert_eq!(classify_sqlstate("22023"), ErrorClass::Configuration);
    }

    #[test]
    fn sqlstate_is_found_in_formatted_text() {
        let text = "server error: FATAL: password authentication failed (SQLSTATE 28P01)";
        assert_eq!(sqlstate_in_text(text), Some("28P01"));
        assert_eq!(sqlstate_in_text("no code here"), None);
        assert_eq!(sqlstate_in_text("SQLSTATE 2"), None);
        assert_eq!(sqlstate_in_text("SQLSTATE 2$P01"), None);
    }
}
