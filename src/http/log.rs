//! The decision log of `keyward serve`: one line per decision, written by a `tracing` layer of its
//! own instead of `tracing-subscriber`'s general formatter, or straight to the same writer.
//!
//! Decisions are [`DecisionEvent`]s. Under a host's own subscriber they are `tracing` events with
//! the target `keyward::decision` ([`DecisionSink::Tracing`]). Under the subscriber `keyward serve`
//! installs ([`run`](super::server::run)), [`DecisionLog`] formats every event of that target: a
//! timestamp, the level, the target, then `name=value` pairs in logfmt (a value is quoted, with `\"`,
//! `\\` and control characters escaped, only when it is empty or holds a space, `=`, `"` or a control
//! character), and decision lines skip the event altogether ([`DecisionSink::Direct`]): the same
//! bytes, built from the decision's fields in one pass (1,750 instructions instead of 3,100 per
//! line, callgrind). The general formatter spent about 1.2 µs on each decision event, as much as the
//! decision itself; these write strings and integers straight into a reused per-thread buffer and
//! cache the timestamp's date and time per second (`examples/logcost.rs`: 1.36 µs per event through
//! the general formatter, 0.30 µs through the layer).
//!
//! **Invariant:** a line is written with one `write_all` to the writer, so lines from concurrent
//! workers never interleave.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::swar::{all_visible, has_zero, lanes, word};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// The target of decision events.
pub const TARGET: &str = "keyward::decision";

/// A `tracing` layer that writes the events of target [`TARGET`] as logfmt lines to `W`.
#[derive(Debug)]
pub struct DecisionLog<W> {
    make: W,
}

impl<W> DecisionLog<W> {
    /// A layer writing to what `make` makes (e.g. a [`LogWriter`]).
    pub fn new(make: W) -> Self {
        DecisionLog { make }
    }
}

thread_local! {
    /// The line being built (for lines that are not staged).
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
    /// The last whole second formatted, with its `YYYY-MM-DDTHH:MM:SS`.
    static STAMP: Cell<Option<(u64, Stamp)>> = const { Cell::new(None) };
}

/// A second as `YYYY-MM-DDTHH:MM:SS` (room for any year a `u64` of seconds reaches).
type Stamp = arrayvec::ArrayString<32>;

/// Builds one line in this thread's buffer (see [`write_line`]) and hands it to `out`. Does nothing
/// when re-entered from a writer that logs.
fn with_line(
    level: Level,
    at: Option<std::time::Duration>,
    fields: impl FnOnce(&mut String),
    out: impl FnOnce(&[u8]),
) {
    LINE.with(|cell| {
        let Ok(mut line) = cell.try_borrow_mut() else {
            return; // re-entered from a writer that logs: drop rather than panic
        };
        line.clear();
        write_line(&mut line, level, at, fields);
        out(line.as_bytes());
    });
}

/// Appends one line to `line`: the timestamp (`at` since the Unix epoch, or now), level, target,
/// then what `fields` appends, then a newline.
fn write_line(
    line: &mut String,
    level: Level,
    at: Option<std::time::Duration>,
    fields: impl FnOnce(&mut String),
) {
    let now = at.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    });
    let secs = now.as_secs();
    let stamp = match STAMP.try_with(Cell::get) {
        Ok(Some((second, stamp))) if second == secs => stamp,
        _ => {
            let mut text = String::with_capacity(Stamp::new_const().capacity());
            civil_time(secs, &mut text);
            let stamp = Stamp::from(&text).unwrap_or_default();
            let _ = STAMP.try_with(|s| s.set(Some((secs, stamp))));
            stamp
        }
    };
    line.push_str(&stamp);
    line.push('.');
    // Six digits of microseconds: a seventh leading one keeps the zeros, and is left out.
    let mut digits = itoa::Buffer::new();
    line.push_str(&digits.format(now.subsec_micros() + 1_000_000)[1..]);
    line.push_str(after_time(level));
    fields(line);
    line.push('\n');
}

impl<S, W> Layer<S> for DecisionLog<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != TARGET {
            return;
        }
        with_line(
            *meta.level(),
            None,
            |line| event.record(&mut Fields { line }),
            |bytes| {
                let _ = self.make.make_writer().write_all(bytes);
            },
        );
    }
}

/// One decision as the log records it (ids, names and codes only: never a secret).
#[derive(Clone, Copy, Debug)]
pub enum DecisionEvent<'a> {
    /// Allowed.
    Allow {
        /// Principal id.
        principal: u64,
        /// Key id.
        key: u64,
        /// The granting role.
        role: &'a str,
        /// Where that role is bound.
        scope: &'a str,
        /// The route's action.
        action: &'a str,
        /// The route's resource.
        resource: &'a str,
        /// The original request's method.
        method: &'a str,
        /// The original request's path (clipped).
        path: &'a str,
        /// The credential style's code.
        style: &'static str,
        /// Time to decide, in microseconds.
        micros: u64,
    },
    /// No route matched and unmatched requests pass.
    PassThrough {
        /// The original request's method.
        method: &'a str,
        /// The original request's path (clipped).
        path: &'a str,
    },
    /// Denied.
    Deny {
        /// The reason code.
        reason: &'static str,
        /// The credential error's code, or empty.
        detail: &'static str,
        /// The principal, when authentication got that far.
        principal: Option<u64>,
        /// The key, when authentication got that far.
        key: Option<u64>,
        /// The status the policy prescribes.
        status: u16,
        /// The original request's method.
        method: &'a str,
        /// The original request's path (clipped).
        path: &'a str,
        /// Time to decide, in microseconds.
        micros: u64,
    },
    /// The proxy's request did not say which request to check (a `warn`).
    BadOriginal {
        /// What was wrong.
        detail: &'static str,
    },
}

/// Where `keyward serve` sends decision lines.
#[derive(Clone, Debug)]
pub enum DecisionSink {
    /// `tracing` events of target [`TARGET`], for whatever subscriber is installed.
    Tracing,
    /// Lines formatted as [`DecisionLog`] formats them, written straight to the writer: the same
    /// bytes without the event's dispatch and field visitor (half of a line's cost). `warn` and
    /// `info` say which levels the subscriber's filter lets through for [`TARGET`].
    Direct {
        /// The writer.
        writer: LogWriter,
        /// `info` lines (allow, deny, pass-through) are wanted.
        info: bool,
        /// `warn` lines (bad forward-auth requests) are wanted.
        warn: bool,
    },
}

impl DecisionEvent<'_> {
    /// Logs the decision to `sink`.
    pub fn log(&self, sink: &DecisionSink) {
        self.log_at(sink, None);
    }

    /// Logs the decision to `sink`, stamped `at` (since the Unix epoch) rather than now when
    /// given and the sink formats its lines itself.
    pub fn log_at(&self, sink: &DecisionSink, at: Option<std::time::Duration>) {
        match sink {
            DecisionSink::Tracing => self.emit(),
            DecisionSink::Direct { writer, info, warn } => {
                let level = self.level();
                if (level == Level::INFO && *info) || (level == Level::WARN && *warn) {
                    writer.append_decision(level, at, |line| self.fields(line));
                }
            }
        }
    }

    fn level(&self) -> Level {
        match self {
            DecisionEvent::BadOriginal { .. } => Level::WARN,
            _ => Level::INFO,
        }
    }

    /// The event through `tracing`: the same fields, in the same order, as [`Self::fields`].
    fn emit(&self) {
        match *self {
            DecisionEvent::Allow {
                principal,
                key,
                role,
                scope,
                action,
                resource,
                method,
                path,
                style,
                micros,
            } => tracing::info!(target: "keyward::decision", outcome = "allow", principal, key,
                role, scope, action, resource, method, path, style, micros),
            DecisionEvent::PassThrough { method, path } => {
                tracing::info!(target: "keyward::decision", outcome = "pass_through",
                    reason = "no_route", method, path)
            }
            DecisionEvent::Deny {
                reason,
                detail,
                principal,
                key,
                status,
                method,
                path,
                micros,
            } => tracing::info!(target: "keyward::decision", outcome = "deny", reason, detail,
                principal, key, status, method, path, micros),
            DecisionEvent::BadOriginal { detail } => tracing::warn!(target: "keyward::decision",
                outcome = "deny", reason = "bad_original_request", detail),
        }
    }

    /// The fields as logfmt, as [`DecisionLog`] writes the event [`Self::emit`] makes. Constant
    /// names and codes go in whole; a method is an HTTP token and a style a code, both bare.
    fn fields(&self, line: &mut String) {
        let mut f = Fields { line };
        match *self {
            DecisionEvent::Allow {
                principal,
                key,
                role,
                scope,
                action,
                resource,
                method,
                path,
                style,
                micros,
            } => {
                f.u64(" outcome=allow principal=", principal);
                f.u64(" key=", key);
                f.str(" role=", role);
                f.str(" scope=", scope);
                f.str(" action=", action);
                f.str(" resource=", resource);
                f.raw(" method=", method);
                f.str(" path=", path);
                f.raw(" style=", style);
                f.u64(" micros=", micros);
            }
            DecisionEvent::PassThrough { method, path } => {
                f.raw(" outcome=pass_through reason=no_route method=", method);
                f.str(" path=", path);
            }
            DecisionEvent::Deny {
                reason,
                detail,
                principal,
                key,
                status,
                method,
                path,
                micros,
            } => {
                f.raw(" outcome=deny reason=", reason);
                f.str(" detail=", detail);
                if let Some(p) = principal {
                    f.u64(" principal=", p);
                }
                if let Some(k) = key {
                    f.u64(" key=", k);
                }
                f.u64(" status=", u64::from(status));
                f.raw(" method=", method);
                f.str(" path=", path);
                f.u64(" micros=", micros);
            }
            DecisionEvent::BadOriginal { detail } => {
                f.str(" outcome=deny reason=bad_original_request detail=", detail);
            }
        }
    }
}

/// What follows a line's time: `Z`, the level and the target (one copy instead of five).
fn after_time(level: Level) -> &'static str {
    match level {
        Level::ERROR => "Z ERROR keyward::decision:",
        Level::WARN => "Z  WARN keyward::decision:",
        Level::INFO => "Z  INFO keyward::decision:",
        Level::DEBUG => "Z DEBUG keyward::decision:",
        Level::TRACE => "Z TRACE keyward::decision:",
    }
}

/// Appends `YYYY-MM-DDTHH:MM:SS` for unix seconds `secs` (UTC).
fn civil_time(secs: u64, out: &mut String) {
    let (year, month, day, h, m, sec) = crate::text::civil(secs);
    let _ = write!(out, "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}");
}

/// Appends the decimal digits of `v`.
fn push_u64(line: &mut String, v: u64) {
    line.push_str(itoa::Buffer::new().format(v));
}

struct Fields<'a> {
    line: &'a mut String,
}

impl Fields<'_> {
    fn name(&mut self, field: &Field) {
        self.key(field.name());
    }

    fn key(&mut self, name: &str) {
        self.line.push(' ');
        self.line.push_str(name);
        self.line.push('=');
    }

    /// ` name=` (as `lead`) and a value that may need quoting.
    fn str(&mut self, lead: &str, value: &str) {
        self.line.push_str(lead);
        push_value(self.line, value);
    }

    /// ` name=` (as `lead`) and a value known to be bare (a code or an HTTP token, never empty).
    fn raw(&mut self, lead: &str, value: &str) {
        if value.is_empty() {
            return self.str(lead, value);
        }
        self.line.push_str(lead);
        self.line.push_str(value);
    }

    fn u64(&mut self, lead: &str, value: u64) {
        self.line.push_str(lead);
        push_u64(self.line, value);
    }
}

/// Bytes a bare logfmt value may hold: visible ASCII but `=`, `"` and `\\` (anything else, including
/// every non-ASCII byte, takes the careful path).
const BARE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        t[b] = !matches!(b as u8, b'=' | b'"' | b'\\');
        b += 1;
    }
    t
};

/// True if every byte of `b` is in [`BARE`] (and `b` is not empty): eight bytes per step, the
/// table for the rest. A decision line's values are ~70 bytes; byte by byte they took a third of
/// the line's instructions. (The rest padded to one more word took more: a copy of variable
/// length.)
fn all_bare(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(8);
    for chunk in &mut chunks {
        if !word_bare(word(chunk)) {
            return false;
        }
    }
    !b.is_empty() && chunks.remainder().iter().all(|&c| BARE[usize::from(c)])
}

/// True if every byte of `v` is in [`BARE`].
#[inline]
fn word_bare(v: u64) -> bool {
    // Visible ASCII, and none of the three specials.
    all_visible(v)
        && !(has_zero(v ^ lanes(b'=')) || has_zero(v ^ lanes(b'"')) || has_zero(v ^ lanes(b'\\')))
}

/// Appends `value` as a logfmt value: bare when it can be, quoted and escaped otherwise.
fn push_value(line: &mut String, value: &str) {
    if all_bare(value.as_bytes()) {
        line.push_str(value);
        return;
    }
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if plain {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{{{:x}}}", u32::from(c));
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        push_value(self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        push_u64(self.line, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.name(field);
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        push_value(self.line, &text);
    }
}

/// A log writer for many threads that batches lines: a line is appended to its thread's own buffer
/// (no allocation, no channel, no system call, and no cache line another core writes) and a
/// background thread writes every buffer out when one passes [`BATCH_BYTES`] or every
/// [`BATCH_DELAY`], whichever comes first. Lines are never dropped: a thread whose buffer falls
/// [`MAX_PENDING_BYTES`] behind waits. Dropping the [`LogWriterGuard`] writes what is pending and
/// stops the thread. Each thread's lines come out in its order; lines of different threads are
/// ordered by batch (each line carries its time). A thread may also stage its decision lines and
/// hand them over in bulk (see [`stage_lines_on_this_thread`]; `keyward serve`'s workers do).
///
/// `tracing_appender`'s non-blocking writer sends every line through a channel as its own
/// allocation and wakes its writer thread per line; under load that was most of a decision line's
/// cost. One buffer shared by all threads moved its lock and tail between the cores on nearly every
/// line.
#[derive(Clone, Debug)]
pub struct LogWriter {
    shared: std::sync::Arc<Batch>,
}

/// Write out once a thread has this much pending.
pub const BATCH_BYTES: usize = 128 * 1024;
/// Write out at least this often when anything is pending.
pub const BATCH_DELAY: std::time::Duration = std::time::Duration::from_millis(20);
/// A thread waits while this much of its lines is pending.
pub const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

/// One thread's pending lines.
type Local = std::sync::Arc<parking_lot::Mutex<Vec<u8>>>;

/// Bytes a staging thread (see [`stage_lines_on_this_thread`]) gathers before it hands them to its
/// buffer.
pub const STAGE_BYTES: usize = 4 * 1024;

/// Requests a staging thread serves (see [`tick`]) before it hands over what it has staged, so a
/// worker that keeps serving requests that log nothing still hands its lines over.
pub const STAGE_TICKS: u32 = 64;

thread_local! {
    /// Lines this thread staged and has not handed over yet (`None`: it does not stage).
    static STAGED: RefCell<Option<Staged>> = const { RefCell::new(None) };
}

/// A thread's staged lines and the writer they are for.
#[derive(Default)]
struct Staged {
    to: Option<LogWriter>,
    /// Whole lines (a `String`, so that lines are formatted straight into it).
    bytes: String,
    ticks: u32,
}

impl Staged {
    /// Hands the staged lines to their writer's buffer for this thread.
    fn hand_over(&mut self) {
        if let Some(to) = &self.to {
            if !self.bytes.is_empty() {
                to.append_now(self.bytes.as_bytes());
                self.bytes.clear();
            }
        }
        self.ticks = 0;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.hand_over();
    }
}

/// From now on, decision lines this thread logs to a [`LogWriter`] ([`DecisionSink::Direct`]; any
/// other line first hands them over, so a thread's lines keep their order) gather in a buffer of the thread
/// and go to the writer's buffer [`STAGE_BYTES`] at a time, or when the thread calls
/// [`hand_over_staged`] (which it must do before it goes idle, e.g. from the runtime's
/// `on_thread_park` hook, and before it stops), or when [`tick`] counts [`STAGE_TICKS`] requests.
///
/// Appending to the writer's buffer takes its lock, and a lock's atomic instructions wait for the
/// stores before them: the line's copy into buffer memory that the writer's thread read last, on
/// another core (cache misses). Per line that wait was most of a decision line's cost on a worker
/// of `keyward serve` (`LogWriter::append`, ~125 ns per `/auth` by perf); staged, a thread takes
/// the lock once per ~20 lines and writes its lines into memory it keeps in its own caches. (16 KB
/// at a time took ~0.15 µs more per `/auth` than 4 KB: the staged buffer then fills half of a
/// core's L1 data cache, evicting what the next requests use.)
pub fn stage_lines_on_this_thread() {
    let _ = STAGED.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s.get_or_insert_with(Staged::default);
        }
    });
}

/// Hands the lines this thread has staged (see [`stage_lines_on_this_thread`]) to their writer.
pub fn hand_over_staged() {
    let _ = STAGED.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if let Some(staged) = s.as_mut() {
                staged.hand_over();
            }
        }
    });
}

/// Counts a request served by this thread; hands its staged lines over every [`STAGE_TICKS`]
/// requests (see [`stage_lines_on_this_thread`]).
pub fn tick() {
    let _ = STAGED.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if let Some(staged) = s.as_mut().filter(|st| !st.bytes.is_empty()) {
                staged.ticks += 1;
                if staged.ticks >= STAGE_TICKS {
                    staged.hand_over();
                }
            }
        }
    });
}

static NEXT_WRITER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    /// This thread's buffers, one per writer it has logged to (by the writer's id).
    static LOCALS: RefCell<Vec<(u64, Local)>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug)]
struct Batch {
    id: u64,
    /// Lines of threads that could not use a buffer of their own (while exiting), and the stop flag.
    pending: parking_lot::Mutex<Pending>,
    /// Wakes the writer thread (a buffer is full, or stopping).
    full: parking_lot::Condvar,
    /// Wakes loggers waiting for room.
    room: parking_lot::Condvar,
    /// Every thread's buffer (a thread's entry goes once it has exited and its lines are out).
    locals: parking_lot::Mutex<Vec<Local>>,
}

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    stopping: bool,
}

/// Stops a [`LogWriter`]'s thread when dropped, after it wrote everything pending.
#[derive(Debug)]
pub struct LogWriterGuard {
    shared: std::sync::Arc<Batch>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogWriter {
    /// A writer whose thread writes to `out`.
    pub fn new<W: std::io::Write + Send + 'static>(
        mut out: W,
    ) -> std::io::Result<(LogWriter, LogWriterGuard)> {
        let shared = std::sync::Arc::new(Batch {
            id: NEXT_WRITER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            pending: parking_lot::Mutex::default(),
            full: parking_lot::Condvar::new(),
            room: parking_lot::Condvar::new(),
            locals: parking_lot::Mutex::default(),
        });
        let batch = std::sync::Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("keyward-log".into())
            .spawn(move || {
                // Buffers change places with the threads' and keep their capacity; the shared
                // buffer has a spare of its own (swapping it with the threads' spare handed a
                // thread an empty vector each round, which it grew again from nothing).
                let mut spare = Vec::with_capacity(BATCH_BYTES * 2);
                let mut spare_shared = Vec::new();
                // A failing stderr must not stop the loggers: the line is lost, not them.
                let mut write = |bytes: &mut Vec<u8>| {
                    if !bytes.is_empty() {
                        let _ = out.write_all(bytes).and_then(|()| out.flush());
                        bytes.clear();
                    }
                };
                loop {
                    let stopping = {
                        let mut p = batch.pending.lock();
                        if !p.stopping {
                            batch.full.wait_for(&mut p, BATCH_DELAY);
                        }
                        p.stopping
                    };
                    {
                        let mut locals = batch.locals.lock();
                        for local in locals.iter() {
                            std::mem::swap(&mut *local.lock(), &mut spare);
                            write(&mut spare);
                        }
                        // A thread that has exited holds no handle any more: its buffer goes once
                        // it is empty (it may have appended after the drain above, before exiting;
                        // after exiting it appends nothing, so an empty buffer stays empty).
                        locals.retain(|l| {
                            std::sync::Arc::strong_count(l) > 1 || !l.lock().is_empty()
                        });
                    }
                    std::mem::swap(&mut batch.pending.lock().bytes, &mut spare_shared);
                    write(&mut spare_shared);
                    batch.room.notify_all();
                    if stopping {
                        break;
                    }
                }
            })?;
        Ok((
            LogWriter {
                shared: std::sync::Arc::clone(&shared),
            },
            LogWriterGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Appends a line written through `io::Write` (any `tracing` line): after this thread's staged
    /// lines, if it has any, so its lines keep their order.
    pub(crate) fn append(&self, line: &[u8]) {
        hand_over_staged();
        self.append_now(line);
    }

    /// Appends a decision line (see [`write_line`]): formatted straight into this thread's staged
    /// lines if it stages (see [`stage_lines_on_this_thread`]).
    pub(crate) fn append_decision(
        &self,
        level: Level,
        at: Option<std::time::Duration>,
        fields: impl FnOnce(&mut String),
    ) {
        let mut fields = Some(fields);
        let _ = STAGED.try_with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return; // re-entered while handing over: straight to the buffer
            };
            let Some(st) = s.as_mut() else {
                return;
            };
            if st
                .to
                .as_ref()
                .is_some_and(|w| w.shared.id != self.shared.id)
            {
                // Another writer's lines first (a thread rarely logs to two).
                st.hand_over();
                st.to = None;
            }
            st.to.get_or_insert_with(|| self.clone());
            if let Some(fields) = fields.take() {
                write_line(&mut st.bytes, level, at, fields);
            }
            if st.bytes.len() >= STAGE_BYTES {
                st.hand_over();
            }
        });
        if let Some(fields) = fields {
            with_line(level, at, fields, |bytes| self.append_now(bytes));
        }
    }

    /// Appends to this thread's buffer (whole lines only: see the module's invariant).
    fn append_now(&self, line: &[u8]) {
        let b = &self.shared;
        let done = LOCALS.try_with(|cell| {
            let Ok(mut mine) = cell.try_borrow_mut() else {
                return false;
            };
            let at = match mine.iter().position(|(id, _)| *id == b.id) {
                Some(at) => at,
                None => {
                    // Writers this thread logged to and that are gone: their entries go.
                    mine.retain(|(_, l)| std::sync::Arc::strong_count(l) > 1);
                    let local: Local = std::sync::Arc::default();
                    b.locals.lock().push(std::sync::Arc::clone(&local));
                    mine.push((b.id, local));
                    mine.len() - 1
                }
            };
            let mut buf = mine[at].1.lock();
            while buf.len() >= MAX_PENDING_BYTES {
                drop(buf);
                let mut p = b.pending.lock();
                if p.stopping {
                    return true; // the writer is gone or going: nothing will make room
                }
                b.full.notify_one();
                b.room.wait_for(&mut p, BATCH_DELAY);
                drop(p);
                buf = mine[at].1.lock();
            }
            let was = buf.len();
            buf.extend_from_slice(line);
            if was < BATCH_BYTES && buf.len() >= BATCH_BYTES {
                b.full.notify_one();
            }
            true
        });
        if done != Ok(true) {
            // No buffer of its own (the thread is exiting, or a writer re-entered): the shared one.
            let mut p = b.pending.lock();
            while p.bytes.len() >= MAX_PENDING_BYTES && !p.stopping {
                b.full.notify_one();
                b.room.wait(&mut p);
            }
            p.bytes.extend_from_slice(line);
        }
    }
}

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        self.shared.pending.lock().stopping = true;
        self.shared.full.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::io::Write for &LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.append(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The eight-bytes-a-step check agrees with the table on every byte value, at every
        /// position of a chunk and of the tail.
        #[test]
        fn the_word_check_agrees_with_the_table(
            base in proptest::collection::vec(0x21u8..0x7f, 0..40),
            odd in any::<u8>(),
            at in any::<prop::sample::Index>(),
        ) {
            let mut bytes = base.clone();
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = odd;
            }
            let table = !bytes.is_empty() && bytes.iter().all(|&b| BARE[usize::from(b)]);
            prop_assert_eq!(all_bare(&bytes), table, "{:?}", bytes);
        }
    }

    #[test]
    fn every_byte_value_in_every_lane() {
        for len in [1, 7, 8, 9, 16, 17] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(
                        all_bare(&bytes),
                        BARE[usize::from(b)],
                        "{b:#x} at {at} of {len}"
                    );
                }
            }
        }
        assert!(!all_bare(b""));
    }

    /// A `Write` that appends to a shared vector.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_batching_writer_keeps_every_line_whole_and_in_order_per_thread() {
        use std::io::Write as _;
        let sink = Sink::default();
        let (writer, guard) = LogWriter::new(sink.clone()).expect("writer");
        std::thread::scope(|s| {
            for t in 0..4 {
                let w = writer.clone();
                s.spawn(move || {
                    for i in 0..20_000 {
                        let line = format!("thread={t} line={i} {}\n", "x".repeat(i % 300));
                        (&w).write_all(line.as_bytes()).expect("write");
                    }
                });
            }
        });
        drop(guard);
        let out = String::from_utf8(sink.0.lock().clone()).expect("utf-8");
        let mut next = [0usize; 4];
        for line in out.lines() {
            let mut parts = line.split(' ');
            let t: usize = parts
                .next()
                .and_then(|p| p.strip_prefix("thread="))
                .and_then(|v| v.parse().ok())
                .expect("thread");
            let i: usize = parts
                .next()
                .and_then(|p| p.strip_prefix("line="))
                .and_then(|v| v.parse().ok())
                .expect("line");
            assert_eq!(i, next[t], "thread {t}");
            assert_eq!(parts.next().map_or(0, str::len), i % 300, "line {i} whole");
            next[t] += 1;
        }
        assert_eq!(next, [20_000; 4], "every line written once");
    }

    #[test]
    fn a_line_reaches_the_output_without_more_traffic() {
        use std::io::Write as _;
        let sink = Sink::default();
        let (writer, _guard) = LogWriter::new(sink.clone()).expect("writer");
        (&writer).write_all(b"one line\n").expect("write");
        let mut waited = 0;
        while sink.0.lock().is_empty() {
            waited += 1;
            assert!(waited < 100, "written within the batch delay");
            std::thread::sleep(BATCH_DELAY);
        }
        assert_eq!(&*sink.0.lock(), b"one line\n");
    }

    /// A writer to a fresh sink, and the direct decision sink on it (every level).
    fn direct_sink() -> (Sink, LogWriter, LogWriterGuard, DecisionSink) {
        let sink = Sink::default();
        let (writer, guard) = LogWriter::new(sink.clone()).expect("writer");
        let direct = DecisionSink::Direct {
            writer: writer.clone(),
            info: true,
            warn: true,
        };
        (sink, writer, guard, direct)
    }

    /// Waits until `sink` holds `lines` lines (or fails after a second).
    fn lines_in(sink: &Sink, lines: usize) -> Vec<String> {
        for _ in 0..100 {
            let out = String::from_utf8(sink.0.lock().clone()).expect("utf-8");
            if out.lines().count() >= lines {
                return out.lines().map(str::to_string).collect();
            }
            std::thread::sleep(BATCH_DELAY);
        }
        let out = String::from_utf8(sink.0.lock().clone()).expect("utf-8");
        panic!("{lines} lines expected, {} written", out.lines().count());
    }

    fn pass_through(n: usize) -> DecisionEvent<'static> {
        const PATHS: [&str; 4] = ["/0", "/1", "/2", "/3"];
        DecisionEvent::PassThrough {
            method: "GET",
            path: PATHS[n % 4],
        }
    }

    /// A staging thread's decision lines wait for a hand-over (idle, a non-decision line, enough
    /// requests, enough bytes, or the thread's end) and keep their order with its other lines.
    #[test]
    fn staged_lines_are_handed_over_in_order() {
        use std::io::Write as _;
        let (sink, writer, _guard, direct) = direct_sink();
        std::thread::scope(|s| {
            s.spawn(|| {
                stage_lines_on_this_thread();
                pass_through(0).log(&direct);
                pass_through(1).log(&direct);
                std::thread::sleep(BATCH_DELAY * 3);
                assert!(sink.0.lock().is_empty(), "staged, not written yet");
                (&writer).write_all(b"other line\n").expect("write");
                let lines = lines_in(&sink, 3);
                assert!(lines[0].ends_with("path=/0") && lines[1].ends_with("path=/1"));
                assert_eq!(lines[2], "other line");

                pass_through(2).log(&direct);
                for _ in 0..STAGE_TICKS - 1 {
                    tick();
                }
                std::thread::sleep(BATCH_DELAY * 3);
                assert_eq!(lines_in(&sink, 3).len(), 3, "not yet");
                tick();
                assert!(
                    lines_in(&sink, 4)[3].ends_with("path=/2"),
                    "after enough requests"
                );

                let before = sink.0.lock().len();
                let mut n = 0;
                while sink.0.lock().len() == before && n < STAGE_BYTES {
                    pass_through(n).log(&direct);
                    n += 1;
                    if n % 50 == 0 {
                        std::thread::sleep(BATCH_DELAY * 2);
                    }
                }
                // Handed over in one piece once it reached the size (lines after it stay staged).
                let grew = sink.0.lock().len() - before;
                assert!(grew >= STAGE_BYTES, "handed over {grew} bytes");
                assert!(grew < STAGE_BYTES + 200, "handed over {grew} bytes");

                pass_through(3).log(&direct);
                hand_over_staged();
                let lines = lines_in(&sink, 4 + n + 1);
                assert_eq!(lines.len(), 4 + n + 1);
                assert!(lines[4 + n].ends_with("path=/3"));
                pass_through(1).log(&direct);
                n
            })
            .join()
            .map(|n| {
                // The thread's end handed over its last line.
                let lines = lines_in(&sink, 4 + n + 2);
                assert_eq!(lines.len(), 4 + n + 2);
                assert!(lines[4 + n + 1].ends_with("path=/1"));
            })
            .expect("thread");
        });
    }

    /// Every decision's direct line is the line the layer writes for its `tracing` event (past the
    /// timestamp), so the two paths of `keyward serve` cannot drift apart.
    #[test]
    fn direct_lines_match_the_layers_lines() {
        let events = [
            DecisionEvent::Allow {
                principal: 1,
                key: 22,
                role: "org_admin",
                scope: "domain:1/organization:6",
                action: "view",
                resource: "domain:1/organization:6/project:a b",
                method: "GET",
                path: "/api/v3/organizations/6/",
                style: "basic_email_key",
                micros: 41,
            },
            DecisionEvent::PassThrough {
                method: "PUT",
                path: "/x=\"y\"",
            },
            DecisionEvent::Deny {
                reason: "no_role",
                detail: "",
                principal: Some(3),
                key: None,
                status: 403,
                method: "DELETE",
                path: "/a",
                micros: 7,
            },
            DecisionEvent::BadOriginal {
                detail: "the original method is invalid",
            },
        ];
        let (sink, writer, guard, direct) = direct_sink();
        for e in &events {
            e.log(&direct);
        }
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(DecisionLog::new(writer));
        tracing::subscriber::with_default(subscriber, || {
            for e in &events {
                e.log(&DecisionSink::Tracing);
            }
        });
        drop(guard);
        let out = String::from_utf8(sink.0.lock().clone()).expect("utf-8");
        let lines: Vec<&str> = out
            .lines()
            .map(|l| l.split_once(' ').expect("timestamp").1)
            .collect();
        assert_eq!(lines.len(), 2 * events.len(), "{out}");
        let (direct, traced) = lines.split_at(events.len());
        assert_eq!(direct, traced);
        assert_eq!(
            direct[0],
            " INFO keyward::decision: outcome=allow principal=1 key=22 role=org_admin \
             scope=domain:1/organization:6 action=view resource=\"domain:1/organization:6/project:a b\" \
             method=GET path=/api/v3/organizations/6/ style=basic_email_key micros=41"
        );
        assert_eq!(
            direct[3],
            " WARN keyward::decision: outcome=deny reason=bad_original_request \
             detail=\"the original method is invalid\""
        );
    }

    #[test]
    fn a_line_starts_with_its_time_to_the_microsecond() {
        for (nanos, want) in [
            (5_000, ".000005Z"),
            (0, ".000000Z"),
            (999_999_999, ".999999Z"),
        ] {
            let mut line = String::new();
            let at = std::time::Duration::new(1_795_420_800, nanos);
            write_line(&mut line, Level::INFO, Some(at), |l| l.push_str(" x=1"));
            assert_eq!(
                line,
                format!("2026-11-23T08:00:00{want}  INFO keyward::decision: x=1\n")
            );
        }
    }

    #[test]
    fn every_level_names_the_target() {
        for level in [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ] {
            let text = after_time(level);
            assert_eq!(text, format!("Z {level:>5} {TARGET}:"));
        }
    }

    #[test]
    fn integers_are_written_in_full() {
        for v in [0, 7, 10, 4_294_967_296, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, v);
            assert_eq!(s, v.to_string());
        }
    }

    #[test]
    fn the_last_second_a_u64_holds_has_its_stamp() {
        let mut line = String::new();
        let at = std::time::Duration::from_secs(u64::MAX);
        write_line(&mut line, Level::INFO, Some(at), |_| {});
        assert!(
            line.starts_with("584554051223-11-09T07:00:15.000000Z  INFO"),
            "{line}"
        );
    }

    #[test]
    fn civil_time_matches_known_dates() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_795_420_800, "2026-11-23T08:00:00"),
            (4_107_542_399, "2100-02-28T23:59:59"),
        ] {
            let mut s = String::new();
            civil_time(secs, &mut s);
            assert_eq!(s, want, "{secs}");
        }
    }

    #[test]
    fn values_are_quoted_only_when_needed() {
        for (value, want) in [
            ("org_admin", "org_admin"),
            ("domain:1/organization:6", "domain:1/organization:6"),
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("x=\"y\"", "\"x=\\\"y\\\"\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("\u{1b}[31m", "\"\\u{1b}[31m\""),
            ("é", "é"),
            ("\u{85}", "\"\\u{85}\""),
        ] {
            let mut s = String::new();
            push_value(&mut s, value);
            assert_eq!(s, want, "{value:?}");
        }
    }
}
