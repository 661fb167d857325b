//! `keyward`: check and format policies, manage the key table, authorize requests from the shell,
//! and run a demo of the four bundled policies. Uses the library's public API only.
//!
//! Exit codes: 0 success (and `authorize`: allow), 1 a negative answer (`authorize`: deny; `check`:
//! the policy has errors; `fmt --check`: a file is not formatted), 2 anything that failed (usage,
//! i/o, a database in use, unknown principal or key, ...). Errors are one line, `error: ...`.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "keyward/args.rs"]
mod args;
#[path = "keyward/authorize.rs"]
mod authorize;
#[path = "keyward/demo.rs"]
mod demo;
#[path = "keyward/keys.rs"]
mod keys;
#[path = "keyward/out.rs"]
mod out;
#[path = "keyward/policy_cmd.rs"]
mod policy_cmd;
#[path = "keyward/remote.rs"]
mod remote;
#[path = "keyward/serve.rs"]
mod serve;
#[path = "keyward/table_cmd.rs"]
mod table_cmd;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// Printed on stderr before the `error:` line (e.g. a rendered policy report).
    pub detail: Option<String>,
    /// One line, without the `error: ` prefix.
    pub message: String,
    /// The exit code.
    pub code: u8,
}

impl CliError {
    /// A usage, i/o or operation failure (exit 2).
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            detail: None,
            message: message.into(),
            code: 2,
        }
    }

    /// Adds text printed before the `error:` line.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::new(e.to_string())
    }
}

/// What every command returns: its exit code, or an error.
pub type CmdResult = Result<ExitCode, CliError>;

fn main() -> ExitCode {
    // A panic is a bug: say so in one line, without a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        eprintln!("error: internal error: {msg} (this is a bug in keyward)");
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => policy_cmd::check(&a),
        Command::Fmt(a) => policy_cmd::fmt(&a),
        Command::Authorize(a) => authorize::run(&a),
        Command::Principal(a) => table_cmd::principal(a),
        Command::Bind(a) => table_cmd::bind(&a, true),
        Command::Unbind(a) => table_cmd::bind(&a, false),
        Command::Workspace(a) => table_cmd::workspace(a),
        Command::Key(a) => keys::run(a),
        Command::Audit(a) => table_cmd::audit(&a),
        Command::Demo => demo::run(),
        Command::Serve(a) => serve::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(d) = &e.detail {
                eprint!("{d}");
                if !d.ends_with('\n') {
                    eprintln!();
                }
            }
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
