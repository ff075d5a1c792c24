//! One place that knows how to print progress (stderr), so stdout carries only data: quiet mode,
//! and a progress bar kept on the last line when stderr is a terminal. Data goes to stdout through
//! [`stdout_write`], which the crate's `println!`/`print!` (defined here, shadowing std's) call: a
//! closed stdout (`bakeoff runs show last | head -1`) stops the output instead of panicking, and
//! the command finishes its work (its run is recorded) and exits as if the reader had read it all.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// `println!` for the whole CLI: std's panics when stdout is a closed pipe (exit 101). Defined
/// before the command modules (`#[macro_use]`), so every command's output goes through here.
macro_rules! println {
    () => {
        $crate::printer::stdout_write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::printer::stdout_write(format_args!($($arg)*), true)
    };
}

/// `print!` for the whole CLI, as `println!` above.
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::printer::stdout_write(format_args!($($arg)*), false)
    };
}

/// Set once a write to stdout failed: later output is dropped.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);
/// The first stdout error that is not a closed pipe (a full disk), reported at exit.
static STDOUT_ERROR: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Write data to stdout. A closed pipe is the reader's choice, not a failure (ripgrep's rule): it
/// and any other error stop further output; [`stdout_error`] returns the latter for main.
pub fn stdout_write(args: std::fmt::Arguments, newline: bool) {
    if STDOUT_FAILED.load(Ordering::SeqCst) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| match newline {
        true => out.write_all(b"\n"),
        false => Ok(()),
    });
    if let Err(error) = written {
        STDOUT_FAILED.store(true, Ordering::SeqCst);
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            if let Ok(mut first) = STDOUT_ERROR.lock() {
                first.get_or_insert(error);
            }
        }
    }
}

/// A failed write to stdout other than a closed pipe, for main to report.
pub fn stdout_error() -> Option<std::io::Error> {
    STDOUT_ERROR.lock().ok().and_then(|mut first| first.take())
}

/// Whether a bar is drawn on the current stderr line (it is cleared before any other output).
static BAR_SHOWN: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub quiet: bool,
    /// stderr is an interactive terminal (bars are drawn only there).
    pub terminal: bool,
}

impl Printer {
    pub fn new(quiet: bool) -> Self {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Printer {
            quiet,
            terminal: std::io::stderr().is_terminal() && !dumb,
        }
    }

    fn clear_bar(&self) {
        if BAR_SHOWN.swap(false, Ordering::SeqCst) {
            eprint!("\r\x1b[2K");
        }
    }

    /// A progress or status line on stderr (suppressed by `--quiet`).
    pub fn status(&self, message: impl AsRef<str>) {
        if !self.quiet {
            self.clear_bar();
            eprintln!("{}", message.as_ref());
        }
    }

    /// A warning on stderr (always shown).
    pub fn warn(&self, message: impl AsRef<str>) {
        self.clear_bar();
        eprintln!("warning: {}", message.as_ref());
    }

    /// Draw `[#####-----] done/total  eta 12s  label` on the last line of a terminal.
    pub fn bar(&self, done: usize, total: usize, eta_s: f64, label: &str) {
        if self.quiet || !self.terminal || total == 0 {
            return;
        }
        const WIDTH: usize = 24;
        let filled = (done.min(total) * WIDTH) / total;
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH - filled));
        eprint!("\r\x1b[2K[{bar}] {done}/{total}  eta {eta_s:.0}s  {label}");
        let _ = std::io::stderr().flush();
        BAR_SHOWN.store(true, Ordering::SeqCst);
    }

    /// Leave the bar's line clean at the end of a command.
    pub fn finish(&self) {
        self.clear_bar();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_crate_println_goes_through_the_stdout_writer() {
        // Regression: std's println! panicked on a closed pipe (`runs show --json | head -1`).
        println!("{}", "shadowed");
        print!("too");
        assert!(super::stdout_error().is_none());
    }
}
