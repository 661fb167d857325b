//! Syntactic checks of names, logins and scopes. The store checks syntax only; what a scope or role means
//! is the policy's business (the store does not depend on the policy module).

use super::error::{Result, StoreError};

/// Longest key or workspace name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest login, in characters.
pub const MAX_LOGIN_CHARS: usize = 254;
/// Longest role or permission name, in characters.
pub const MAX_ROLE_CHARS: usize = 64;
/// Most permissions on one key.
pub const MAX_PERMISSIONS: usize = 256;
/// Longest workspace public key, in characters.
pub const MAX_WORKSPACE_KEY_CHARS: usize = 128;
/// Longest scope, in bytes.
pub const MAX_SCOPE_BYTES: usize = 1024;
/// Longest id in one scope segment, in characters.
pub const MAX_SCOPE_ID_CHARS: usize = 128;

fn check_len(what: &'static str, s: &str, max: usize, too_long: &'static str) -> Result<()> {
    if s.is_empty() {
        return Err(StoreError::invalid_name(what, s, "it is empty"));
    }
    if s.chars().count() > max {
        return Err(StoreError::invalid_name(what, s, too_long));
    }
    Ok(())
}

/// A key or workspace name: 1 to 100 characters, no control characters.
pub fn name(what: &'static str, s: &str) -> Result<()> {
    check_len(what, s, MAX_NAME_CHARS, "it is longer than 100 characters")?;
    if s.chars().any(char::is_control) {
        return Err(StoreError::invalid_name(
            what,
            s,
            "it holds a control character",
        ));
    }
    Ok(())
}

/// A login: 1 to 254 characters, no whitespace or control characters.
pub fn login(s: &str) -> Result<()> {
    check_len(
        "login",
        s,
        MAX_LOGIN_CHARS,
        "it is longer than 254 characters",
    )?;
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(StoreError::invalid_name(
            "login",
            s,
            "it holds whitespace or a control character",
        ));
    }
    Ok(())
}

/// The form a login is indexed (and compared) under.
pub fn login_key(s: &str) -> String {
    s.to_lowercase()
}

fn ident(what: &'static str, s: &str, extra: &[char]) -> Result<()> {
    check_len(what, s, MAX_ROLE_CHARS, "it is longer than 64 characters")?;
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || extra.contains(&c));
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c)) {
        return Err(StoreError::invalid_name(
            what,
            s,
            "use a letter or `_` then letters, digits, `_`, `-`, `.` or `:`",
        ));
    }
    Ok(())
}

/// A role name: a letter or `_`, then letters, digits, `_ - . :`; up to 64 characters.
pub fn role(s: &str) -> Result<()> {
    ident("role", s, &['-', '.', ':'])
}

/// An action name in a key's permission list: like a role, and `*` is allowed anywhere.
pub fn permission(s: &str) -> Result<()> {
    ident("permission", s, &['-', '.', ':', '*'])
}

/// A key's permission list: at most 256 valid, distinct action names.
pub fn permissions(list: &[String]) -> Result<()> {
    if list.len() > MAX_PERMISSIONS {
        return Err(StoreError::invalid_name(
            "permission list",
            &format!("{} entries", list.len()),
            "a key may list at most 256 permissions",
        ));
    }
    for (i, p) in list.iter().enumerate() {
        permission(p)?;
        if list.iter().take(i).any(|q| q == p) {
            return Err(StoreError::invalid_name(
                "permission",
                p,
                "it is listed twice",
            ));
        }
    }
    Ok(())
}

/// A workspace public key: 1 to 128 characters, no whitespace or control characters.
pub fn workspace_key(s: &str) -> Result<()> {
    check_len(
        "workspace key",
        s,
        MAX_WORKSPACE_KEY_CHARS,
        "it is longer than 128 characters",
    )?;
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(StoreError::invalid_name(
            "workspace key",
            s,
            "it holds whitespace or a control character",
        ));
    }
    Ok(())
}

/// A resource path or scope: `kind:id(/kind:id)*`, where `kind` is `[a-z_][a-z0-9_]*` and `id` is 1 to 128
/// characters without `/`, whitespace or control characters; 1024 bytes at most in total.
pub fn scope(s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(StoreError::invalid_scope(s, "it is empty"));
    }
    if s.len() > MAX_SCOPE_BYTES {
        return Err(StoreError::invalid_scope(
            s,
            format!(
                "it is {} bytes long, more than the {MAX_SCOPE_BYTES} allowed",
                s.len()
            ),
        ));
    }
    for (n, segment) in s.split('/').enumerate() {
        let n = n + 1;
        let Some((kind, id)) = segment.split_once(':') else {
            return Err(StoreError::invalid_scope(
                s,
                format!("segment {n} is not of the form `kind:id`"),
            ));
        };
        let mut kc = kind.chars();
        let kind_ok = kc
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && kc.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !kind_ok {
            return Err(StoreError::invalid_scope(
                s,
                format!("the kind of segment {n} must match `[a-z_][a-z0-9_]*`"),
            ));
        }
        if id.is_empty() {
            return Err(StoreError::invalid_scope(
                s,
                format!("the id of segment {n} is empty"),
            ));
        }
        if id.chars().count() > MAX_SCOPE_ID_CHARS {
            return Err(StoreError::invalid_scope(
                s,
                format!("the id of segment {n} is longer than 128 characters"),
            ));
        }
        if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(StoreError::invalid_scope(
                s,
                format!("the id of segment {n} holds whitespace or a control character"),
            ));
        }
    }
    Ok(())
}
