//! Crash safety of the key table: a child process creates, rotates, regenerates, revokes and deletes keys,
//! reporting each operation before it starts (`KW begin ...`) and once the call returned (`KW ack ...`);
//! the parent kills it with SIGKILL at a random moment, reopens the table and checks that
//!
//! - the database opens without error (also after kills during open, as sled's own crash tests do),
//! - every acknowledged operation is there, with its key findable by its secret,
//! - the one operation in flight is either wholly applied or not at all (no half rotation, no key record
//!   without its hash index entry, no audit entry without its change or the reverse),
//! - the audit log holds exactly one entry per sequence number, `1..=seq`.
//!
//! The child is this same test binary, run as `crash_child` with `KEYWARD_CRASH_DIR` set.
//! `KEYWARD_CRASH_SEED` replays a run (the seed is printed on failure).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keyward::store::{
    Actor, AuditQuery, KeyId, KeyRecord, KeyTable, NewKey, NewPrincipal, PrincipalKind,
    StoreOptions,
};

const ROUNDS: u64 = 40;
/// One round in this many kills the child while it opens the database.
const OPEN_KILL_EVERY: u64 = 4;
const LOGIN: &str = "crash@example.com";
const FAR: u64 = 4_000_000_000;

/// xorshift64*: deterministic per seed, good enough for picking operations and delays.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ----- the child -----

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A failed write means the parent is gone; the child is about to be killed anyway.
    let _ = writeln!(out, "KW {line}");
    let _ = out.flush();
}

/// Runs only as the child (with `KEYWARD_CRASH_DIR` set); an ordinary test run passes through it.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("KEYWARD_CRASH_DIR") else {
        return;
    };
    let seed: u64 = std::env::var("KEYWARD_CRASH_CHILD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng::new(seed);
    say("opening");
    let table = match KeyTable::open(&dir, StoreOptions::default()) {
        Ok(t) => t,
        Err(e) => {
            say(&format!("open-error {e}"));
            std::process::exit(3);
        }
    };
    say("opened");
    let owner = match table.principal_by_login(LOGIN) {
        Ok(Some(p)) => p.id,
        Ok(None) => {
            say("begin principal");
            let p = table
                .add_principal(
                    Actor::Cli,
                    NewPrincipal {
                        kind: PrincipalKind::User,
                        login: LOGIN.to_owned(),
                        default_workspace: None,
                    },
                )
                .unwrap_or_else(|e| panic!("add principal: {e}"));
            say(&format!("ack principal {}", p.id));
            p.id
        }
        Err(e) => panic!("principal lookup: {e}"),
    };
    for n in 0..100_000u64 {
        let keys = table
            .keys_of(owner)
            .unwrap_or_else(|e| panic!("keys_of: {e}"));
        let current: Vec<&KeyRecord> = keys.iter().filter(|k| k.rotated_to.is_none()).collect();
        let pick =
            |rng: &mut Rng, from: &[&KeyRecord]| from[rng.below(from.len() as u64) as usize].id;
        let roll = rng.below(100);
        if current.len() < 3 || roll < 30 {
            let name = format!("k{seed}-{n}");
            say(&format!("begin create {name}"));
            let (rec, secret) = table
                .create_key(Actor::Cli, NewKey::new(owner, name.clone()))
                .unwrap_or_else(|e| panic!("create: {e}"));
            say(&format!("ack create {} {name} {}", rec.id, secret.expose()));
        } else if roll < 50 {
            let old = pick(&mut rng, &current);
            say(&format!("begin rotate {old}"));
            let (rec, secret) = table
                .rotate_key(Actor::Cli, old, FAR)
                .unwrap_or_else(|e| panic!("rotate: {e}"));
            say(&format!("ack rotate {old} {} {}", rec.id, secret.expose()));
        } else if roll < 65 {
            let old = pick(&mut rng, &current);
            say(&format!("begin regenerate {old}"));
            let (rec, secret) = table
                .regenerate_key(Actor::Cli, old)
                .unwrap_or_else(|e| panic!("regenerate: {e}"));
            say(&format!(
                "ack regenerate {old} {} {}",
                rec.id,
                secret.expose()
            ));
        } else if roll < 85 || keys.len() < 12 {
            let id = pick(&mut rng, &current);
            let active = !keys.iter().any(|k| k.id == id && k.active);
            say(&format!("begin active {id} {active}"));
            table
                .set_key_active(Actor::Cli, id, active)
                .unwrap_or_else(|e| panic!("set active: {e}"));
            say(&format!("ack active {id} {active}"));
        } else {
            // Keep the table small: delete, oldest first.
            let id = keys[0].id;
            say(&format!("begin delete {id}"));
            table
                .delete_key(Actor::Cli, id)
                .unwrap_or_else(|e| panic!("delete: {e}"));
            say(&format!("ack delete {id}"));
        }
    }
}

// ----- the parent -----

/// What the parent knows of a key: the fields the operations change, and its secret when it saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    name: String,
    active: bool,
    rotated_to: Option<KeyId>,
    secret: Option<String>,
}

type Model = BTreeMap<KeyId, Known>;

#[derive(Clone, Debug)]
enum Pending {
    Principal,
    Create(String),
    Rotate(KeyId),
    Regenerate(KeyId),
    Active(KeyId, bool),
    Delete(KeyId),
}

fn num(w: Option<&str>) -> KeyId {
    w.and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad number in child output"))
}

/// Applies one child line to the model. Returns the pending operation for `begin` lines.
fn apply(model: &mut Model, principal: &mut bool, line: &str) -> Option<Pending> {
    let mut w = line.split(' ');
    let (Some(tag), Some(op)) = (w.next(), w.next()) else {
        return None;
    };
    match (tag, op) {
        ("begin", "principal") => Some(Pending::Principal),
        ("begin", "create") => Some(Pending::Create(w.next().unwrap_or_default().to_owned())),
        ("begin", "rotate") => Some(Pending::Rotate(num(w.next()))),
        ("begin", "regenerate") => Some(Pending::Regenerate(num(w.next()))),
        ("begin", "active") => Some(Pending::Active(num(w.next()), w.next() == Some("true"))),
        ("begin", "delete") => Some(Pending::Delete(num(w.next()))),
        ("ack", "principal") => {
            *principal = true;
            None
        }
        ("ack", "create") => {
            let id = num(w.next());
            let name = w.next().unwrap_or_default().to_owned();
            let secret = w.next().map(str::to_owned);
            let known = Known {
                name,
                active: true,
                rotated_to: None,
                secret,
            };
            model.insert(id, known);
            None
        }
        ("ack", "rotate") | ("ack", "regenerate") => {
            let old = num(w.next());
            let new = num(w.next());
            let secret = w.next().map(str::to_owned);
            let prev = model
                .get(&old)
                .cloned()
                .unwrap_or_else(|| panic!("acked {op} of key {old} the parent never saw"));
            if op == "rotate" {
                if let Some(k) = model.get_mut(&old) {
                    k.rotated_to = Some(new);
                }
            } else {
                model.remove(&old);
            }
            model.insert(
                new,
                Known {
                    rotated_to: None,
                    secret,
                    ..prev
                },
            );
            None
        }
        ("ack", "active") => {
            let id = num(w.next());
            let active = w.next() == Some("true");
            if let Some(k) = model.get_mut(&id) {
                k.active = active;
            }
            None
        }
        ("ack", "delete") => {
            model.remove(&num(w.next()));
            None
        }
        _ => None,
    }
}

fn strip(m: &Model) -> BTreeMap<KeyId, (String, bool, Option<KeyId>)> {
    m.iter()
        .map(|(id, k)| (*id, (k.name.clone(), k.active, k.rotated_to)))
        .collect()
}

/// The states the table may be in: without the pending operation, or with it wholly applied (new key ids
/// are taken from what the table holds; there can be at most one).
fn explains(model: &Model, pending: Option<&Pending>, actual: &Model) -> bool {
    let before = strip(model);
    let now = strip(actual);
    if before == now {
        return true;
    }
    let mut after = before.clone();
    let extra: Vec<KeyId> = now
        .keys()
        .filter(|id| !before.contains_key(id))
        .copied()
        .collect();
    match pending {
        None | Some(Pending::Principal) => return false,
        Some(Pending::Create(name)) => {
            let [new] = extra[..] else { return false };
            after.insert(new, (name.clone(), true, None));
        }
        Some(Pending::Rotate(old)) | Some(Pending::Regenerate(old)) => {
            let [new] = extra[..] else { return false };
            let Some(prev) = before.get(old).cloned() else {
                return false;
            };
            if matches!(pending, Some(Pending::Rotate(_))) {
                after.insert(*old, (prev.0.clone(), prev.1, Some(new)));
            } else {
                after.remove(old);
            }
            after.insert(new, (prev.0, prev.1, None));
        }
        Some(Pending::Active(id, active)) => {
            if let Some(k) = after.get_mut(id) {
                k.1 = *active;
            }
        }
        Some(Pending::Delete(id)) => {
            after.remove(id);
        }
    }
    after == now
}

struct Round {
    acks: usize,
    killed_in_open: bool,
    pending_applied: Option<bool>,
}

fn verify(
    dir: &Path,
    model: &mut Model,
    principal: &mut bool,
    pending: Option<&Pending>,
    seed: u64,
    round: u64,
) -> Option<bool> {
    let ctx = format!("seed {seed}, round {round}");
    let table = KeyTable::open(dir, StoreOptions::default())
        .unwrap_or_else(|e| panic!("{ctx}: the database does not open after a kill: {e}"));

    let p = table
        .principal_by_login(LOGIN)
        .unwrap_or_else(|e| panic!("{ctx}: principal lookup: {e}"));
    let owner = match (p, *principal, pending) {
        (Some(p), _, _) => {
            *principal = true;
            Some(p.id)
        }
        (None, false, _) => None,
        (None, true, _) => panic!("{ctx}: the acknowledged principal is gone"),
    };

    // Keys: every one reachable through its hash index entry, rotation targets present.
    let records = table
        .list_keys()
        .unwrap_or_else(|e| panic!("{ctx}: list keys: {e}"));
    let mut actual = Model::new();
    for r in &records {
        assert_eq!(
            Some(r.owner),
            owner,
            "{ctx}: key {} has a foreign owner",
            r.id
        );
        let by_hash = table
            .key_by_hash(&r.hash)
            .unwrap_or_else(|e| panic!("{ctx}: key_by_hash: {e}"));
        assert_eq!(
            by_hash.map(|k| k.id),
            Some(r.id),
            "{ctx}: key {} has no hash index entry",
            r.id
        );
        let secret = model.get(&r.id).and_then(|k| k.secret.clone());
        actual.insert(
            r.id,
            Known {
                name: r.name.clone(),
                active: r.active,
                rotated_to: r.rotated_to,
                secret,
            },
        );
    }
    assert!(
        explains(model, pending, &actual),
        "{ctx}: the table is neither the acknowledged state nor it plus the pending {pending:?}\n\
         acknowledged: {:?}\nfound: {:?}",
        strip(model),
        strip(&actual)
    );
    // Every secret the parent saw finds its key if the key is still there, and nothing otherwise.
    for (id, k) in model.iter() {
        let Some(secret) = &k.secret else { continue };
        let found = table
            .key_by_hash(&table.hash(secret))
            .unwrap_or_else(|e| panic!("{ctx}: key_by_hash: {e}"))
            .map(|r| r.id);
        let expect = actual.contains_key(id).then_some(*id);
        assert_eq!(found, expect, "{ctx}: the secret of key {id}");
    }

    // The audit log: one entry per mutation, numbered 1..=seq, every entry decodes.
    let audit = table
        .audit(AuditQuery {
            principal: None,
            limit: usize::MAX,
            before: None,
        })
        .unwrap_or_else(|e| panic!("{ctx}: the audit log does not read back: {e}"));
    let seq = table.seq();
    let mut seqs: Vec<u64> = audit.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=seq).collect::<Vec<_>>(),
        "{ctx}: audit entries do not match the sequence counter"
    );

    let applied = if strip(model) == strip(&actual) {
        pending.map(|_| false)
    } else {
        Some(true)
    };
    *model = actual;
    applied
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_operation() {
    let seed: u64 = std::env::var("KEYWARD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let dir = tmp.path().join("db");
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));

    let mut model = Model::new();
    let mut principal = false;
    let mut open_time = Duration::from_millis(20);
    let mut rounds: Vec<Round> = Vec::new();
    let started = Instant::now();

    for round in 0..ROUNDS {
        let in_open = round % OPEN_KILL_EVERY == OPEN_KILL_EVERY - 1;
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("KEYWARD_CRASH_DIR", &dir)
            .env("KEYWARD_CRASH_CHILD_SEED", rng.next().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn child: {e}"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("child stdout"));
        let (tx, rx) = mpsc::channel::<(String, Instant)>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may have written `test crash_child ... ` on the same line first.
                if let Some(at) = line.find("KW ") {
                    if tx
                        .send((line[at + 3..].to_owned(), Instant::now()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });

        // Wait for the moment to aim at, then kill.
        let wait_for = if in_open { "opening" } else { "opened" };
        let mut lines: Vec<String> = Vec::new();
        let mut opening_at = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (line, at) = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("seed {seed}, round {round}: child said nothing"));
            if line.starts_with("open-error") {
                panic!("seed {seed}, round {round}: the child could not open: {line}");
            }
            if line == "opening" {
                opening_at = Some(at);
            }
            if line == "opened" {
                if let Some(o) = opening_at {
                    open_time = at - o;
                }
            }
            let done = line == wait_for;
            lines.push(line);
            if done {
                break;
            }
        }
        let delay = if in_open {
            Duration::from_micros(rng.below(open_time.as_micros() as u64 + 1))
        } else {
            Duration::from_micros(2_000 + rng.below(150_000))
        };
        std::thread::sleep(delay);
        child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
        let _ = child.wait();
        let _ = reader.join();
        lines.extend(rx.try_iter().map(|(l, _)| l));

        let mut pending = None;
        let mut acks = 0;
        for line in &lines {
            if line.starts_with("ack ") {
                acks += 1;
                pending = None;
            }
            if let Some(p) = apply(&mut model, &mut principal, line) {
                pending = Some(p);
            }
        }
        let killed_in_open = !lines.iter().any(|l| l == "opened");
        let pending_applied = verify(
            &dir,
            &mut model,
            &mut principal,
            pending.as_ref(),
            seed,
            round,
        );
        rounds.push(Round {
            acks,
            killed_in_open,
            pending_applied,
        });
    }

    let acks: usize = rounds.iter().map(|r| r.acks).sum();
    let in_open = rounds.iter().filter(|r| r.killed_in_open).count();
    let applied = rounds
        .iter()
        .filter(|r| r.pending_applied == Some(true))
        .count();
    let not_applied = rounds
        .iter()
        .filter(|r| r.pending_applied == Some(false))
        .count();
    eprintln!(
        "crash safety: seed {seed}, {} rounds in {:.1?}, {acks} acknowledged operations, {in_open} kills \
         during open, in-flight operation applied {applied} / not applied {not_applied} times, {} keys at the end",
        rounds.len(),
        started.elapsed(),
        model.len()
    );
    assert!(acks > 0, "seed {seed}: no operation was acknowledged");
    assert!(in_open > 0, "seed {seed}: no kill landed during open");
}
