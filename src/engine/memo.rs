//! A memo of credentials seen before: the keyed 128-bit SipHash of a request's credential headers →
//! what reading them gave (the key's hash, the style, the Basic email, the workspace header). A
//! credential sent again skips base64 decoding, parsing, the key's checksum and BLAKE3 — about 4,000
//! of the 5,600 instructions of a warm `authorize` — and goes straight to the key cache and the
//! checks, which run on every decision as before.
//!
//! What it holds is no secret: a tag that only this process can compute (its SipHash key is drawn
//! from the OS at start-up and never leaves memory) and the key's hash, which the key cache holds
//! anyway. A tag is found by its first half and confirmed by its second in constant time.
//!
//! **Invariant:** an entry is a pure function of the credential headers' bytes and the policy
//! generation (the accepted styles, the key format and the pepper fix the reading); it is used only
//! under the generation it was made in. It never decides anything: a key that was revoked, deleted
//! or expired since is refused by the same checks as without the memo (a deleted key is no longer in
//! the key cache, so the request takes the full path).
//!
//! Only requests with exactly one `Authorization` header, at most one workspace header, and no
//! query parameter named like the policy's query credential are memoised (anything else takes the
//! full path, which reports it); only credentials whose key was found are entered, so junk cannot
//! fill the memo.
//!
//! Each thread keeps its own memo, [`THREAD_SLOTS`] slots per engine in sets of [`WAYS`] (a new
//! entry takes a free slot of its set or replaces one: no scan, no pause to empty a full table; one
//! slot per set let half of 10,000 keys evict each other): a shared memo, even sharded, had every
//! decision write a lock word that the other cores' decisions write too, and two threads scaled
//! 1.43× instead of 1.74×. A credential is read once per thread that sees it.

use std::cell::RefCell;
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::AUTHORIZATION;
use http::HeaderMap;
use siphasher::sip128::{Hasher128, SipHasher24};
use subtle::ConstantTimeEq;

use crate::credential::Style;
use crate::credential::{Presented, Styles};
use crate::token::KeyHash;

/// Slots per thread and engine (about 100 bytes each, allocated at a thread's first entry).
pub(crate) const THREAD_SLOTS: usize = 16 * 1024;

/// Slots per set.
const WAYS: usize = 4;

/// Engines a thread keeps memos for (the oldest goes first).
const ENGINES_PER_THREAD: usize = 4;

static NEXT_MEMO_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static MEMOS: RefCell<Vec<ThreadMemo>> = const { RefCell::new(Vec::new()) };
}

struct ThreadMemo {
    memo: u64,
    slots: Box<[[Option<Entry>; WAYS]]>,
}

/// The tag of one request's credential headers.
#[derive(Clone, Copy)]
pub(crate) struct Tag {
    lo: u64,
    hi: u64,
}

/// What reading a credential gave, as a decision's checks need it (never the secret).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Claim<'a> {
    pub style: Style,
    pub email: Option<&'a str>,
    pub workspace: Option<&'a str>,
}

impl Presented {
    pub(crate) fn claim(&self) -> Claim<'_> {
        Claim {
            style: self.style,
            email: self.email.as_deref(),
            workspace: self.workspace.as_deref(),
        }
    }
}

struct Entry {
    /// The tag's first half (it also chose the slot).
    lo: u64,
    /// The tag's second half, compared in constant time.
    hi: u64,
    generation: u64,
    hash: KeyHash,
    style: Style,
    email: Option<Box<str>>,
    workspace: Option<Box<str>>,
}

pub(crate) struct Memo {
    id: u64,
    sip_key: [u8; 16],
    enabled: bool,
}

impl Memo {
    /// An empty memo with a fresh SipHash key from the OS (a memo that cannot get one stays empty).
    pub(crate) fn new() -> Memo {
        let mut sip_key = [0u8; 16];
        let enabled = getrandom::fill(&mut sip_key).is_ok();
        Memo {
            id: NEXT_MEMO_ID.fetch_add(1, Ordering::Relaxed),
            sip_key,
            enabled,
        }
    }

    /// The tag of the request's credential headers, if it may be memoised.
    pub(crate) fn tag(
        &self,
        styles: &Styles,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Option<Tag> {
        if !self.enabled {
            return None;
        }
        if let (Some(param), Some(query)) = (styles.query_param.as_deref(), query) {
            if query.contains(param) {
                return None;
            }
        }
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let authorization = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let mut h = SipHasher24::new_with_key(&self.sip_key);
        part(&mut h, Some(authorization.as_bytes()));
        if let Some(name) = styles.workspace_header.as_deref() {
            let mut values = headers.get_all(name).iter();
            let workspace = values.next();
            if values.next().is_some() {
                return None;
            }
            part(&mut h, workspace.map(|v| v.as_bytes()));
        }
        let t = h.finish128();
        Some(Tag { lo: t.h1, hi: t.h2 })
    }

    /// Calls `f` with this thread's memoised reading of `tag` under `generation`, if there is one.
    pub(crate) fn with<R>(
        &self,
        tag: &Tag,
        generation: u64,
        f: impl FnOnce(&KeyHash, Claim<'_>) -> R,
    ) -> Option<R> {
        MEMOS
            .try_with(|memos| {
                let memos = memos.try_borrow().ok()?;
                let mine = memos.iter().find(|m| m.memo == self.id)?;
                let e = mine
                    .slots
                    .get(set(tag))?
                    .iter()
                    .flatten()
                    .find(|e| e.lo == tag.lo)?;
                if !bool::from(e.hi.ct_eq(&tag.hi)) || e.generation != generation {
                    return None;
                }
                Some(f(
                    &e.hash,
                    Claim {
                        style: e.style,
                        email: e.email.as_deref(),
                        workspace: e.workspace.as_deref(),
                    },
                ))
            })
            .ok()
            .flatten()
    }

    /// Remembers, in this thread's memo, what `tag`'s headers read as under `generation`.
    pub(crate) fn insert(&self, tag: &Tag, generation: u64, p: &Presented, hash: &KeyHash) {
        let _ = MEMOS.try_with(|memos| {
            let Ok(mut memos) = memos.try_borrow_mut() else {
                return;
            };
            let at = match memos.iter().position(|m| m.memo == self.id) {
                Some(at) => at,
                None => {
                    if memos.len() >= ENGINES_PER_THREAD {
                        memos.remove(0);
                    }
                    memos.push(ThreadMemo {
                        memo: self.id,
                        slots: (0..THREAD_SLOTS / WAYS)
                            .map(|_| Default::default())
                            .collect(),
                    });
                    memos.len() - 1
                }
            };
            let Some(ways) = memos[at].slots.get_mut(set(tag)) else {
                return;
            };
            // The same tag's slot, else a free one, else one the tag's other half picks.
            let way = ways
                .iter()
                .position(|e| e.as_ref().is_some_and(|e| e.lo == tag.lo))
                .or_else(|| ways.iter().position(Option::is_none))
                .unwrap_or(tag.hi as usize % WAYS);
            ways[way] = Some(Entry {
                lo: tag.lo,
                hi: tag.hi,
                generation,
                hash: *hash,
                style: p.style,
                email: p.email.as_deref().map(Box::from),
                workspace: p.workspace.as_deref().map(Box::from),
            });
        });
    }

    /// Entries this thread holds for this memo.
    #[cfg(test)]
    fn len(&self) -> usize {
        MEMOS.with(|m| {
            m.borrow()
                .iter()
                .find(|t| t.memo == self.id)
                .map_or(0, |t| t.slots.iter().flatten().flatten().count())
        })
    }
}

/// The set of a tag (from its first half's high bits).
fn set(tag: &Tag) -> usize {
    (tag.lo >> 40) as usize % (THREAD_SLOTS / WAYS)
}

/// Hashes one header's bytes, length-prefixed, or a marker for its absence.
fn part(h: &mut SipHasher24, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            h.write_u64(b.len() as u64);
            h.write(b);
        }
        None => h.write_u64(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn styles() -> Styles {
        Styles {
            bearer: true,
            workspace_header: Some("x-workspace-key".into()),
            query_param: Some("api_token".into()),
            ..Styles::default()
        }
    }

    fn headers(authorization: &str, workspace: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        if let Some(w) = workspace {
            h.insert("x-workspace-key", HeaderValue::from_str(w).unwrap());
        }
        h
    }

    fn tag_of(m: &Memo, h: &HeaderMap, query: Option<&str>) -> Option<(u64, u64)> {
        m.tag(&styles(), h, query).map(|t| (t.lo, t.hi))
    }

    #[test]
    fn tags_tell_the_headers_apart_and_refuse_what_the_full_path_must_see() {
        let m = Memo::new();
        let a = tag_of(&m, &headers("Bearer x", Some("yz")), None).expect("tag");
        let b = tag_of(&m, &headers("Bearer xy", Some("z")), None).expect("tag");
        let c = tag_of(&m, &headers("Bearer xy", None), None).expect("tag");
        let d = tag_of(&m, &headers("Bearer xy", Some("")), None).expect("tag");
        assert!(
            a != b && b != c && c != d && a != c,
            "{a:?} {b:?} {c:?} {d:?}"
        );
        assert_eq!(tag_of(&m, &headers("Bearer x", Some("yz")), None), Some(a));
        // Another memo (another process) computes other tags.
        assert_ne!(
            tag_of(&Memo::new(), &headers("Bearer x", Some("yz")), None),
            Some(a)
        );
        // Two Authorization headers, two workspace headers, or a query credential: full path.
        let mut two = headers("Bearer x", None);
        two.append(AUTHORIZATION, HeaderValue::from_static("Bearer y"));
        assert_eq!(tag_of(&m, &two, None), None);
        let mut two = headers("Bearer x", Some("a"));
        two.append("x-workspace-key", HeaderValue::from_static("b"));
        assert_eq!(tag_of(&m, &two, None), None);
        assert_eq!(
            tag_of(&m, &headers("Bearer x", None), Some("api_token=k")),
            None
        );
        assert!(tag_of(&m, &headers("Bearer x", None), Some("org=6")).is_some());
        assert_eq!(tag_of(&m, &HeaderMap::new(), None), None);
    }

    #[test]
    fn the_memo_stays_within_its_capacity() {
        let m = Memo::new();
        let p = Presented {
            style: Style::Bearer,
            email: None,
            key: crate::token::Secret::new("k"),
            workspace: None,
        };
        let hash = KeyHash([7; 32]);
        for i in 0..(THREAD_SLOTS * 2) {
            let t = m
                .tag(&styles(), &headers(&format!("Bearer {i}"), None), None)
                .expect("tag");
            m.insert(&t, 1, &p, &hash);
            assert!(m.with(&t, 1, |h, c| (*h == hash, c.style)).is_some());
            assert!(m.with(&t, 2, |_, _| ()).is_none(), "another generation");
        }
        assert!(m.len() <= THREAD_SLOTS, "{}", m.len());
        assert!(m.len() > THREAD_SLOTS / 2, "{}", m.len());
        // Another thread has a memo of its own.
        let t = m
            .tag(&styles(), &headers("Bearer 0", None), None)
            .expect("tag");
        std::thread::scope(|s| {
            s.spawn(|| assert!(m.with(&t, 1, |_, _| ()).is_none()));
        });
    }
}
