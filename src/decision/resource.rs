//! Resource paths (`organization:6/project:3`), parsed without allocation against a compiled policy.

use std::fmt;

use super::CompiledPolicy;
use crate::policy::model::KindId;

/// Deepest resource path accepted.
pub const MAX_RESOURCE_DEPTH: usize = 16;
/// Longest resource path accepted, in bytes.
pub const MAX_RESOURCE_BYTES: usize = 1024;

/// Why a resource path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// Nothing was given.
    #[error("the resource path is empty")]
    Empty,
    /// Longer than [`MAX_RESOURCE_BYTES`].
    #[error("the resource path is longer than {MAX_RESOURCE_BYTES} bytes")]
    TooLong,
    /// More than [`MAX_RESOURCE_DEPTH`] segments.
    #[error("the resource path has more than {MAX_RESOURCE_DEPTH} segments")]
    TooDeep,
    /// A segment is not `kind:id`.
    #[error("segment {0} of the resource path is not `kind:id`")]
    NotKindId(usize),
    /// An id is empty or holds `:`, whitespace or control characters.
    #[error("segment {0} of the resource path has an empty or invalid id")]
    BadId(usize),
    /// The kind is not declared.
    #[error("unknown scope kind `{0}` in the resource path")]
    UnknownKind(String),
    /// The kind does not lie directly beneath the previous one.
    #[error("`{kind}` does not lie directly beneath `{parent}` in the scope hierarchy")]
    NotBeneath {
        /// The kind.
        kind: String,
        /// The segment before it.
        parent: String,
    },
}

/// A parsed resource path borrowing its ids from the request.
#[derive(Clone, Copy)]
pub struct Resource<'a> {
    segs: [(KindId, &'a str); MAX_RESOURCE_DEPTH],
    len: usize,
}

impl fmt::Debug for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.segs[..self.len]).finish()
    }
}

impl<'a> Resource<'a> {
    /// The segments: (kind id, instance id).
    pub fn segments(&self) -> &[(KindId, &'a str)] {
        &self.segs[..self.len]
    }

    /// The kind of the last segment.
    #[inline]
    pub fn leaf_kind(&self) -> KindId {
        self.segs[self.len.saturating_sub(1)].0
    }

    /// The first segment.
    #[inline]
    pub fn first(&self) -> (KindId, &'a str) {
        self.segs[0]
    }

    /// True if `prefix` is this path or an ancestor of it.
    #[inline]
    pub fn starts_with(&self, prefix: &OwnedPath) -> bool {
        let p = &prefix.0;
        p.len() <= self.len
            && p.iter()
                .zip(&self.segs[..self.len])
                .all(|((pk, pid), (k, id))| pk == k && **pid == **id)
    }

    /// An owned copy.
    pub fn to_owned_path(&self) -> OwnedPath {
        OwnedPath(
            self.segments()
                .iter()
                .map(|(k, id)| (*k, Box::<str>::from(*id)))
                .collect(),
        )
    }
}

/// An owned resource path (a binding's scope, a key's scope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedPath(pub Box<[(KindId, Box<str>)]>);

impl CompiledPolicy {
    /// Parses `kind:id/kind:id/...`: every kind declared, each the parent of the next, ids non-empty
    /// without `:`, whitespace or control characters. The first segment may be any kind.
    #[inline]
    pub fn parse_resource<'a>(&self, s: &'a str) -> Result<Resource<'a>, ResourceError> {
        if s.is_empty() {
            return Err(ResourceError::Empty);
        }
        if s.len() > MAX_RESOURCE_BYTES {
            return Err(ResourceError::TooLong);
        }
        let mut r = Resource {
            segs: [(0, ""); MAX_RESOURCE_DEPTH],
            len: 0,
        };
        // One pass over the bytes: a segment ends at `/` or at the end; its kind ends at the first `:`.
        let bytes = s.as_bytes();
        let mut seg_start = 0;
        let mut colon: Option<usize> = None;
        let mut ascii = true;
        let mut bad_id = false;
        for i in 0..=bytes.len() {
            let b = bytes.get(i).copied();
            match b {
                Some(b'/') | None => {
                    let n = r.len;
                    if n >= MAX_RESOURCE_DEPTH {
                        return Err(ResourceError::TooDeep);
                    }
                    let Some(c) = colon else {
                        return Err(ResourceError::NotKindId(n + 1));
                    };
                    let kind = &s[seg_start..c];
                    let id = &s[c + 1..i];
                    if id.is_empty()
                        || bad_id
                        || (!ascii && id.chars().any(|c| c.is_whitespace() || c.is_control()))
                    {
                        return Err(ResourceError::BadId(n + 1));
                    }
                    let Some(k) = self.kind(kind) else {
                        return Err(ResourceError::UnknownKind(kind.chars().take(64).collect()));
                    };
                    if n > 0 {
                        let prev = r.segs[n - 1].0;
                        if self.kind_parent[k as usize] != Some(prev) {
                            return Err(ResourceError::NotBeneath {
                                kind: kind.to_string(),
                                parent: self.model().kinds[prev as usize].name.clone(),
                            });
                        }
                    }
                    r.segs[n] = (k, id);
                    r.len = n + 1;
                    seg_start = i + 1;
                    colon = None;
                    ascii = true;
                    bad_id = false;
                }
                Some(b':') if colon.is_none() => colon = Some(i),
                Some(b) if colon.is_some() => {
                    if b == b':' || b <= b' ' || b == 0x7f {
                        bad_id = true;
                    } else if b >= 0x80 {
                        ascii = false;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(r)
    }
}
