//! Progress bars and spinners on stderr that leave room for the terminal's `^C`, so that
//! Ctrl-C does not leave a bar behind.

use std::io;

use console::Term;
use indicatif::{ProgressBar, ProgressDrawTarget, TermLike};

/// Columns kept free at the right of a bar: the terminal's echo of Ctrl-C is `^C` (ECHOCTL).
const ECHO_ROOM: u16 = 3;

/// stderr, seen as `ECHO_ROOM` columns narrower than it is. indicatif pads a bar's line to
/// the terminal's width (so that the next print starts a line of its own); the terminal's
/// `^C` then wrapped onto a new line, the clear on the way out erased only that line, and
/// the bar stayed on screen above the summary.
#[derive(Debug)]
struct RoomForCtrlC(Term);

impl TermLike for RoomForCtrlC {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(ECHO_ROOM).max(1)
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A bar of `total` steps (`None`: a spinner) drawn on stderr, which the caller has checked
/// is a terminal, at indicatif's usual 20 redraws a second.
pub fn on_stderr(total: Option<u64>) -> ProgressBar {
    let target = ProgressDrawTarget::term_like_with_hz(Box::new(RoomForCtrlC(Term::stderr())), 20);
    ProgressBar::with_draw_target(total, target)
}
