//! Resource paths (`organization:6/project:3`), parsed without allocation against a compiled policy.

use std::fmt;

use super::CompiledPolicy;
use crate::policy::model::KindId;
use crate::text::InlineStr;

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
    text: &'a str,
    /// Each segment's kind and its id's byte range in `text` ([`MAX_RESOURCE_BYTES`] fits `u16`):
    /// 96 bytes to set up and move where `(kind, &str)` pairs took 384.
    segs: [Seg; MAX_RESOURCE_DEPTH],
    len: u8,
}

/// A segment of a [`Resource`]: its kind, and where its id starts and ends in the text.
#[derive(Clone, Copy, Default)]
struct Seg {
    kind: KindId,
    start: u16,
    end: u16,
}

const _: () = assert!(MAX_RESOURCE_BYTES <= u16::MAX as usize);

impl fmt::Debug for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.segments()).finish()
    }
}

impl<'a> Resource<'a> {
    /// The segments: (kind id, instance id).
    pub fn segments(&self) -> impl ExactSizeIterator<Item = (KindId, &'a str)> + '_ {
        self.segs[..usize::from(self.len)]
            .iter()
            .map(|s| (s.kind, self.id(s)))
    }

    fn id(&self, seg: &Seg) -> &'a str {
        // INVARIANT: the parser stored the bounds of an id it sliced from `text`.
        self.text
            .get(usize::from(seg.start)..usize::from(seg.end))
            .unwrap_or("")
    }

    /// The kind of the last segment.
    #[inline]
    pub fn leaf_kind(&self) -> KindId {
        self.segs[usize::from(self.len).saturating_sub(1)].kind
    }

    /// The first segment.
    #[inline]
    pub fn first(&self) -> (KindId, &'a str) {
        (self.segs[0].kind, self.id(&self.segs[0]))
    }

    /// The path as given (it parsed, so it is in canonical `kind:id/kind:id` form).
    #[inline]
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// True if `prefix` is this path or an ancestor of it.
    ///
    /// Both paths parsed under the same policy, so each is the canonical text of its segments (no
    /// whitespace, ids free of `/` and `:`, kind names unique): segment-wise equality of the first
    /// `prefix.depth()` segments is equality of the text up to a `/` boundary. One short byte
    /// comparison, on the prefix's own bytes (inline in a binding, nearly always).
    #[inline]
    pub fn starts_with(&self, prefix: &OwnedPath) -> bool {
        let (t, p) = (self.text.as_bytes(), prefix.as_str().as_bytes());
        t.len() >= p.len()
            && (t.len() == p.len() || t[p.len()] == b'/')
            && bytes_eq(&t[..p.len()], p)
    }

    /// An owned copy.
    pub fn to_owned_path(&self) -> OwnedPath {
        OwnedPath {
            text: InlineStr::new(self.text),
            depth: self.len,
            leaf: self.leaf_kind(),
        }
    }
}

/// Bytes of path text an [`OwnedPath`] holds inline: a binding's scope nearly always, so a decision
/// compares it on its principal's own cache lines (one cache miss fewer per decision on a large
/// key table).
const PATH_INLINE: usize = 30;

/// An owned resource path (a binding's scope, a key's scope) in canonical text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedPath {
    text: InlineStr<PATH_INLINE>,
    depth: u8,
    leaf: KindId,
}

impl OwnedPath {
    /// The path's text, e.g. `organization:6/project:3`.
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The number of segments.
    pub fn depth(&self) -> usize {
        usize::from(self.depth)
    }

    /// The kind of the last segment.
    pub fn leaf_kind(&self) -> KindId {
        self.leaf
    }
}

impl fmt::Display for OwnedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `a == b`, without a call to `memcmp` for the short names and ids of resource paths: up to 16 bytes
/// are compared as two (possibly overlapping) 8-byte words, under 8 byte by byte.
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    match n {
        0..=7 => a.iter().zip(b).all(|(x, y)| x == y),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// What a byte means inside an id: part of it, the `/` that ends it, a byte no id may hold
/// (`:`, ASCII whitespace and control characters), or the start of a non-ASCII character.
const ID_BYTE: [u8; 256] = {
    let mut t = [ID_PLAIN; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c == b'/' {
            ID_END
        } else if c == b':' || c.is_ascii_whitespace() || c.is_ascii_control() {
            ID_BAD
        } else if !c.is_ascii() {
            ID_NON_ASCII
        } else {
            ID_PLAIN
        };
        b += 1;
    }
    t
};
const ID_PLAIN: u8 = 0;
const ID_END: u8 = 1;
const ID_BAD: u8 = 2;
const ID_NON_ASCII: u8 = 3;

impl CompiledPolicy {
    /// Parses `kind:id/kind:id/...`: every kind declared, each the parent of the next, ids non-empty
    /// without `:`, whitespace or control characters. The first segment may be any kind.
    ///
    /// One pass over the bytes. A kind is recognised by comparing the declared names with the text
    /// (for a segment after the first, only the previous kind's children), so the text is never
    /// scanned for `:` nor hashed; the slow path runs only to name an error.
    #[inline]
    pub fn parse_resource<'a>(&self, s: &'a str) -> Result<Resource<'a>, ResourceError> {
        if s.is_empty() {
            return Err(ResourceError::Empty);
        }
        if s.len() > MAX_RESOURCE_BYTES {
            return Err(ResourceError::TooLong);
        }
        let bytes = s.as_bytes();
        let mut r = Resource {
            text: s,
            segs: [Seg::default(); MAX_RESOURCE_DEPTH],
            len: 0,
        };
        let mut start = 0;
        loop {
            let i = usize::from(r.len);
            if i >= MAX_RESOURCE_DEPTH {
                return Err(ResourceError::TooDeep);
            }
            let rest = &bytes[start..];
            let is_kind = |k: &KindId| {
                let name = &self.kind_names[*k as usize];
                rest.len() > name.len()
                    && rest[name.len()] == b':'
                    && bytes_eq(name, &rest[..name.len()])
            };
            let found = if i == 0 {
                (0..self.kind_names.len() as KindId).find(is_kind)
            } else {
                self.kind_children[r.segs[i - 1].kind as usize]
                    .iter()
                    .copied()
                    .find(is_kind)
            };
            let Some(k) = found else {
                return Err(self.segment_error(s, start, i, r.segs[i.saturating_sub(1)].kind));
            };
            let id_start = start + self.kind_names[k as usize].len() + 1;
            let mut end = id_start;
            let mut ascii = true;
            while end < bytes.len() {
                match ID_BYTE[bytes[end] as usize] {
                    ID_PLAIN => {}
                    ID_END => break,
                    ID_BAD => return Err(ResourceError::BadId(i + 1)),
                    _ => ascii = false,
                }
                end += 1;
            }
            // INVARIANT: `id_start` follows an ASCII `:` and `end` is an ASCII `/` or the end of `s`,
            // so both are char boundaries.
            let id = &s[id_start..end];
            if id.is_empty() || (!ascii && id.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err(ResourceError::BadId(i + 1));
            }
            // `end` <= `s.len()` <= MAX_RESOURCE_BYTES, checked above: both fit `u16`.
            r.segs[i] = Seg {
                kind: k,
                start: id_start as u16,
                end: end as u16,
            };
            r.len = i as u8 + 1;
            if end == bytes.len() {
                return Ok(r);
            }
            start = end + 1;
        }
    }

    /// Why segment `i` (starting at byte `start`) is not `kind:id` with a kind that may stand there;
    /// `prev` is the kind of the segment before it, if any. Checks in the order a reader would: the
    /// shape, the id, then the kind.
    #[cold]
    fn segment_error(&self, s: &str, start: usize, i: usize, prev: KindId) -> ResourceError {
        let seg = s[start..].split('/').next().unwrap_or("");
        let Some((kind, id)) = seg.split_once(':') else {
            return ResourceError::NotKindId(i + 1);
        };
        if id.is_empty()
            || id
                .chars()
                .any(|c| c == ':' || c.is_whitespace() || c.is_control())
        {
            return ResourceError::BadId(i + 1);
        }
        match self.kind(kind) {
            None => ResourceError::UnknownKind(kind.chars().take(64).collect()),
            Some(_) => ResourceError::NotBeneath {
                kind: kind.to_string(),
                parent: self.model().kinds[prev as usize].name.clone(),
            },
        }
    }
}
