//! One place that knows how to print progress (stderr), so stdout carries only data: quiet mode,
//! and a progress bar kept on the last line when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

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
