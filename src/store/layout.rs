//! Byte layout of the single sled tree.
//!
//! Every key starts with one byte naming its logical table; integers are big-endian so that scans come out
//! in numeric order.
//!
//! | prefix | table                | key after the prefix          | value                     |
//! |--------|----------------------|-------------------------------|---------------------------|
//! | `0x00` | meta                 | name (`magic`, `seq`, ...)    | raw bytes / u64 BE        |
//! | `0x01` | principals           | principal id                  | `Principal`               |
//! | `0x02` | principal by login   | lowercased login              | principal id              |
//! | `0x03` | key id index         | key id                        | the hash's first 16 bytes |
//! | `0x04` | keys                 | the hash's first 16 bytes     | `KeyRecord` (full hash)   |
//! | `0x05` | keys by owner        | owner id, key id              | empty                     |
//! | `0x06` | key name per owner   | owner id, name                | key id                    |
//! | `0x07` | bindings             | principal id, role, 0, scope  | `Binding`                 |
//! | `0x08` | workspaces           | public key                    | `Workspace`               |
//! | `0x09` | audit                | seq                           | `AuditEntry`              |
//! | `0x0a` | audit by principal   | principal id, seq             | empty                     |
//!
//! Key records live under their hash so that the engine's cache-miss path, a lookup by hash, is one read;
//! a lookup by id reads the id index first. Since layout version 3 the record key holds only the hash's
//! first [`HASH_KEY_BYTES`] bytes (the record holds the whole hash, compared in constant time on every
//! lookup): at 17 bytes every key of the tree fits sled's inline `IVec` (22 bytes), so a leaf's keys lie
//! in one array instead of one heap allocation each. A lookup's binary search then reads one array, and
//! an insert copies no key allocations; at a million keys this halved the lookup tail. 128 bits of a
//! BLAKE3 output are unique among any number of keys a table will hold; two keys whose hashes share
//! them anyway are refused as duplicates, never confused. Version 1 kept records under their id with
//! a hash-to-id index; version 2 kept the whole hash in the record key. Both are migrated on open (see
//! `KeyTable::with_backend`).
//!
//! **Invariant:** roles never contain a zero byte (they are validated identifiers), so binding keys are
//! unambiguous.

use super::error::{Result, StoreError};
use super::record::{KeyId, PrincipalId};
use crate::token::KeyHash;

pub(crate) const META: u8 = 0x00;
pub(crate) const PRINCIPAL: u8 = 0x01;
pub(crate) const LOGIN: u8 = 0x02;
pub(crate) const KEY: u8 = 0x03;
pub(crate) const KEY_BY_HASH: u8 = 0x04;
pub(crate) const KEY_BY_OWNER: u8 = 0x05;
pub(crate) const KEY_NAME: u8 = 0x06;
pub(crate) const BINDING: u8 = 0x07;
pub(crate) const WORKSPACE: u8 = 0x08;
pub(crate) const AUDIT: u8 = 0x09;
pub(crate) const AUDIT_BY_PRINCIPAL: u8 = 0x0a;

/// The value of the meta `magic` record: `keyward` then the layout version as u32 BE.
pub(crate) const MAGIC: &[u8; 7] = b"keyward";
/// The layout version this build writes and reads.
pub const LAYOUT_VERSION: u32 = 3;
/// How many leading bytes of a key's hash form its record key (see the module documentation).
pub(crate) const HASH_KEY_BYTES: usize = 16;

pub(crate) fn meta(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(META);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn id_key(table: u8, id: u64) -> [u8; 9] {
    let mut k = [table; 9];
    let (_, rest) = k.split_at_mut(1);
    rest.copy_from_slice(&id.to_be_bytes());
    k
}

pub(crate) fn id_pair(table: u8, a: u64, b: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(table);
    k.extend_from_slice(&a.to_be_bytes());
    k.extend_from_slice(&b.to_be_bytes());
    k
}

pub(crate) fn id_str(table: u8, id: u64, s: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + s.len());
    k.push(table);
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(s.as_bytes());
    k
}

pub(crate) fn str_key(table: u8, s: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + s.len());
    k.push(table);
    k.extend_from_slice(s.as_bytes());
    k
}

pub(crate) fn principal(id: PrincipalId) -> [u8; 9] {
    id_key(PRINCIPAL, id)
}

pub(crate) fn login(lower: &str) -> Vec<u8> {
    str_key(LOGIN, lower)
}

pub(crate) fn key(id: KeyId) -> [u8; 9] {
    id_key(KEY, id)
}

/// The record key of the key whose hash starts with `hash` (at least [`HASH_KEY_BYTES`] bytes).
pub(crate) fn key_by_hash(hash: &KeyHash) -> [u8; 1 + HASH_KEY_BYTES] {
    key_by_hash_prefix(hash_prefix(hash))
}

/// The first [`HASH_KEY_BYTES`] bytes of a hash: the key id index's value.
pub(crate) fn hash_prefix(hash: &KeyHash) -> &[u8; HASH_KEY_BYTES] {
    let (prefix, _) = hash
        .0
        .split_first_chunk::<HASH_KEY_BYTES>()
        .unwrap_or((&[0; HASH_KEY_BYTES], &[]));
    prefix
}

/// The record key for a stored hash prefix.
pub(crate) fn key_by_hash_prefix(prefix: &[u8; HASH_KEY_BYTES]) -> [u8; 1 + HASH_KEY_BYTES] {
    let mut k = [KEY_BY_HASH; 1 + HASH_KEY_BYTES];
    let (_, rest) = k.split_at_mut(1);
    rest.copy_from_slice(prefix);
    k
}

pub(crate) fn key_by_owner(owner: PrincipalId, key: KeyId) -> Vec<u8> {
    id_pair(KEY_BY_OWNER, owner, key)
}

pub(crate) fn key_name(owner: PrincipalId, name: &str) -> Vec<u8> {
    id_str(KEY_NAME, owner, name)
}

pub(crate) fn binding(principal: PrincipalId, role: &str, scope: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + role.len() + scope.len());
    k.push(BINDING);
    k.extend_from_slice(&principal.to_be_bytes());
    k.extend_from_slice(role.as_bytes());
    k.push(0);
    k.extend_from_slice(scope.as_bytes());
    k
}

pub(crate) fn workspace(public_key: &str) -> Vec<u8> {
    str_key(WORKSPACE, public_key)
}

pub(crate) fn audit(seq: u64) -> [u8; 9] {
    id_key(AUDIT, seq)
}

pub(crate) fn audit_by_principal(principal: PrincipalId, seq: u64) -> Vec<u8> {
    id_pair(AUDIT_BY_PRINCIPAL, principal, seq)
}

/// The 9-byte prefix `table, id`.
pub(crate) fn id_prefix(table: u8, id: u64) -> [u8; 9] {
    id_key(table, id)
}

/// Reads a big-endian u64 stored as a value or at the end of a key.
pub(crate) fn read_u64(what: &'static str, bytes: &[u8]) -> Result<u64> {
    let tail = bytes
        .len()
        .checked_sub(8)
        .and_then(|start| bytes.get(start..))
        .ok_or_else(|| {
            StoreError::corrupt(what, format!("expected 8 bytes, found {}", bytes.len()))
        })?;
    let mut buf = [0u8; 8];
    buf.copy_from_slice(tail);
    Ok(u64::from_be_bytes(buf))
}

/// Reads a value that must be exactly one big-endian u64.
pub(crate) fn exact_u64(what: &'static str, bytes: &[u8]) -> Result<u64> {
    if bytes.len() != 8 {
        return Err(StoreError::corrupt(
            what,
            format!("expected 8 bytes, found {}", bytes.len()),
        ));
    }
    read_u64(what, bytes)
}
