//! An owned multipart message with envelope helpers and the Guide-style frame dump.
//!
//! ZeroMQ messages are lists of frames. Routing sockets put an *envelope* in front of the body:
//! one or more identity frames, then an empty delimiter frame (`[id]["" ][body…]`). `Message`
//! keeps frames in a `VecDeque` so popping and pushing envelope frames at the front is O(1), and
//! moving a message between sockets never copies a body.

use std::collections::VecDeque;
use std::fmt;

/// One frame: an owned byte buffer.
pub type Frame = Vec<u8>;

/// Most frames [`Message::take_envelope`] accepts before the delimiter.
pub const MAX_ENVELOPE: usize = 16;

/// An owned multipart message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    frames: VecDeque<Frame>,
}

impl Message {
    /// An empty message (no frames).
    pub fn new() -> Self {
        Self::default()
    }

    /// A message made of the given frames, in order.
    pub fn from_frames<I, F>(frames: I) -> Self
    where
        I: IntoIterator<Item = F>,
        F: Into<Frame>,
    {
        Message {
            frames: frames.into_iter().map(Into::into).collect(),
        }
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when there are no frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frame at `index`, if any.
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        self.frames.get(index).map(Vec::as_slice)
    }

    /// Iterates over the frames.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.frames.iter().map(Vec::as_slice)
    }

    /// Adds a frame at the front (used to push envelope and protocol header frames).
    pub fn push_front(&mut self, frame: impl Into<Frame>) {
        self.frames.push_front(frame.into());
    }

    /// Adds a frame at the back.
    pub fn push_back(&mut self, frame: impl Into<Frame>) {
        self.frames.push_back(frame.into());
    }

    /// Removes and returns the first frame.
    pub fn pop_front(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// Removes and returns the last frame.
    pub fn pop_back(&mut self) -> Option<Frame> {
        self.frames.pop_back()
    }

    /// Wraps the message in a one-identity envelope: `[address]["" ][body…]`.
    pub fn wrap(&mut self, address: impl Into<Frame>) {
        self.frames.push_front(Vec::new());
        self.frames.push_front(address.into());
    }

    /// Removes a one-identity envelope and returns the address. Returns `None` (and leaves the
    /// message untouched) unless the message starts `[address]["" ]…`.
    pub fn unwrap_envelope(&mut self) -> Option<Frame> {
        if self.frames.len() < 2 || !self.frames[1].is_empty() {
            return None;
        }
        let address = self.frames.pop_front();
        self.frames.pop_front();
        address
    }

    /// Removes a whole envelope: every frame before the first empty frame, and that delimiter,
    /// as ZeroMQ REP sockets and proxies do. Returns the envelope frames (without the
    /// delimiter; possibly none). Returns `None`, leaving the message untouched, if no empty
    /// frame is among the first [`MAX_ENVELOPE`] + 1 frames: one frame per proxy hop plus a
    /// request id never comes near that, and a bound keeps a hostile peer from making us
    /// scan and hold an envelope of a million frames.
    pub fn take_envelope(&mut self) -> Option<Vec<Frame>> {
        let delimiter = self
            .frames
            .iter()
            .take(MAX_ENVELOPE + 1)
            .position(Vec::is_empty)?;
        let envelope: Vec<Frame> = self.frames.drain(..delimiter).collect();
        self.frames.pop_front();
        Some(envelope)
    }

    /// Puts `envelope` and an empty delimiter in front: the reverse of [`Message::take_envelope`].
    pub fn push_envelope(&mut self, envelope: Vec<Frame>) {
        self.frames.push_front(Vec::new());
        for frame in envelope.into_iter().rev() {
            self.frames.push_front(frame);
        }
    }

    /// Consumes the message, returning its frames.
    pub fn into_frames(self) -> Vec<Frame> {
        self.frames.into()
    }

    /// The body joined as text, frames separated by newlines (lossy UTF-8). Used to print a
    /// reply on one line of stdout and to feed `--exec` commands.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.joined()).into_owned()
    }

    /// The frames' bytes joined by newlines, unchanged: a reply as stdout gets it.
    pub fn joined(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.frames.iter().map(|f| f.len() + 1).sum());
        for (i, frame) in self.frames.iter().enumerate() {
            if i > 0 {
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(frame);
        }
        bytes
    }

    /// The body as text, cut to 200 characters: enough to identify a request in a history.
    /// Only the first bytes are looked at, so a preview of a big body costs nothing.
    pub fn preview(&self) -> String {
        // 200 characters are at most 800 bytes of UTF-8 (plus a newline per frame).
        let mut head: Vec<u8> = Vec::new();
        for (i, frame) in self.frames.iter().enumerate() {
            if head.len() > 1000 {
                break;
            }
            if i > 0 {
                head.push(b'\n');
            }
            head.extend_from_slice(&frame[..frame.len().min(1000)]);
        }
        let text = String::from_utf8_lossy(&head);
        match text.char_indices().nth(200) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.into_owned(),
        }
    }

    /// The Guide's frame dump (`zmsg_dump`/`s_dump`): a rule line, then `[NNN] payload` per
    /// frame, where NNN is the frame size and the payload is text when printable, else hex,
    /// bounded like [`dump_lines`].
    pub fn dump(&self) -> String {
        self.to_string()
    }
}

impl From<Vec<Frame>> for Message {
    fn from(frames: Vec<Frame>) -> Self {
        Message {
            frames: frames.into(),
        }
    }
}

/// Most payload bytes of one frame that a dump shows, as text (half as many as hex).
pub const DUMP_BYTES: usize = 200;
/// Most frames of one message that a dump shows.
pub const DUMP_FRAMES: usize = 64;

/// One dump line, `[NNN] payload`: NNN is the whole frame's size, the payload at most
/// [`DUMP_BYTES`] of text or `DUMP_BYTES / 2` bytes of hex, then `…` if there was more. A
/// 100 MB frame is a short line, so `-v` cannot stall a role or fill a disk.
pub fn dump_frame(frame: &[u8]) -> String {
    let printable = |part: &[u8]| part.iter().all(|&b| (0x20..0x7f).contains(&b));
    let text_part = &frame[..frame.len().min(DUMP_BYTES)];
    let (shown, payload) = if printable(text_part) {
        (
            text_part.len(),
            String::from_utf8_lossy(text_part).into_owned(),
        )
    } else {
        let hex_part = &frame[..frame.len().min(DUMP_BYTES / 2)];
        (
            hex_part.len(),
            hex_part.iter().map(|b| format!("{b:02X}")).collect(),
        )
    };
    let more = if shown < frame.len() { "…" } else { "" };
    format!("[{:03}] {payload}{more}", frame.len())
}

/// The dump lines of a message, one per frame ([`dump_frame`]), at most [`DUMP_FRAMES`] of
/// them and then one line saying how many frames were left out.
pub fn dump_lines(msg: &Message) -> Vec<String> {
    let mut lines: Vec<String> = msg.iter().take(DUMP_FRAMES).map(dump_frame).collect();
    if msg.len() > DUMP_FRAMES {
        lines.push(format!("… {} more frames", msg.len() - DUMP_FRAMES));
    }
    lines
}

/// Renders one frame's payload: text if every byte is printable ASCII, else upper-case hex.
/// Whole, for names (identities, services) that are bounded at 255 bytes; dumps of frames
/// that may be big use [`dump_frame`].
pub fn frame_text(frame: &[u8]) -> String {
    let printable = frame.iter().all(|&b| (0x20..0x7f).contains(&b));
    if printable {
        String::from_utf8_lossy(frame).into_owned()
    } else {
        frame.iter().map(|b| format!("{b:02X}")).collect()
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "----------------------------------------")?;
        for line in dump_lines(self) {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_and_unwrap_round_trip() {
        let mut m = Message::from_frames(vec![b"hello".to_vec()]);
        m.wrap(b"client-1".to_vec());
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(1), Some(&b""[..]));
        assert_eq!(m.unwrap_envelope(), Some(b"client-1".to_vec()));
        assert_eq!(m.into_frames(), vec![b"hello".to_vec()]);
    }

    #[test]
    fn unwrap_refuses_a_message_without_delimiter() {
        let mut m = Message::from_frames(vec![b"id".to_vec(), b"body".to_vec()]);
        assert_eq!(m.unwrap_envelope(), None);
        assert_eq!(m.len(), 2, "message left untouched");
        let mut single = Message::from_frames(vec![b"id".to_vec()]);
        assert_eq!(single.unwrap_envelope(), None);
    }

    #[test]
    fn take_envelope_takes_every_frame_up_to_the_first_empty_one() {
        let mut m = Message::from_frames(vec![
            b"hop".to_vec(),
            b"id".to_vec(),
            vec![],
            b"a".to_vec(),
            vec![],
            b"b".to_vec(),
        ]);
        let envelope = m.take_envelope().unwrap();
        assert_eq!(envelope, vec![b"hop".to_vec(), b"id".to_vec()]);
        assert_eq!(m.len(), 3, "the body keeps its own empty frame");
        m.push_envelope(envelope);
        assert_eq!(m.len(), 6);
        assert_eq!(m.get(2), Some(&b""[..]));
        // An empty envelope: the message starts with the delimiter.
        let mut bare = Message::from_frames(vec![vec![], b"x".to_vec()]);
        assert_eq!(bare.take_envelope(), Some(vec![]));
        assert_eq!(bare.into_frames(), vec![b"x".to_vec()]);
    }

    #[test]
    fn take_envelope_refuses_no_delimiter_or_a_too_deep_envelope() {
        let mut none = Message::from_frames(vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(none.take_envelope(), None);
        assert_eq!(none.len(), 2, "untouched");
        let mut deep: Vec<Frame> = (0..=MAX_ENVELOPE).map(|i| vec![b'a' + i as u8]).collect();
        deep.push(vec![]);
        deep.push(b"body".to_vec());
        let mut deep = Message::from(deep);
        assert_eq!(deep.take_envelope(), None);
        let mut deepest_ok: Vec<Frame> = (0..MAX_ENVELOPE).map(|_| b"h".to_vec()).collect();
        deepest_ok.push(vec![]);
        deepest_ok.push(b"body".to_vec());
        let mut ok = Message::from(deepest_ok);
        assert_eq!(ok.take_envelope().map(|e| e.len()), Some(MAX_ENVELOPE));
    }

    #[test]
    fn dump_prints_text_or_hex_with_sizes() {
        let m = Message::from_frames(vec![b"MDPC01".to_vec(), vec![0x01], vec![]]);
        assert_eq!(
            m.dump(),
            "----------------------------------------\n[006] MDPC01\n[001] 01\n[000] \n"
        );
    }

    #[test]
    fn dump_shows_a_bounded_prefix_of_each_frame_with_its_size() {
        let text = vec![b'a'; 10 * DUMP_BYTES];
        let line = dump_frame(&text);
        assert!(
            line.starts_with(&format!("[{}] aaaa", 10 * DUMP_BYTES)),
            "{line}"
        );
        assert!(line.ends_with('…'));
        assert!(line.len() < DUMP_BYTES + 20, "{}", line.len());
        let binary = vec![0u8; 1 << 20];
        let line = dump_frame(&binary);
        assert!(line.starts_with("[1048576] 0000"), "{line}");
        assert!(line.len() < DUMP_BYTES + 20, "{}", line.len());
        // A frame exactly at the bound is shown whole, without the ellipsis.
        assert!(!dump_frame(&[b'x'; DUMP_BYTES]).ends_with('…'));
        let many = Message::from_frames(vec![b"f".to_vec(); DUMP_FRAMES + 5]);
        let lines = dump_lines(&many);
        assert_eq!(lines.len(), DUMP_FRAMES + 1);
        assert_eq!(lines.last().unwrap(), "… 5 more frames");
    }

    #[test]
    fn preview_is_cut_to_200_characters() {
        let m = Message::from_frames(vec![vec![b'z'; 5000], b"second".to_vec()]);
        let p = m.preview();
        assert_eq!(p.chars().count(), 201);
        assert!(p.ends_with('…'));
        assert_eq!(
            Message::from_frames(vec![b"a".to_vec(), b"b".to_vec()]).preview(),
            "a\nb"
        );
    }

    #[test]
    fn text_joins_frames_with_newlines() {
        let m = Message::from_frames(vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(m.text(), "a\nb");
        let m = Message::from_frames(vec![b"\xff".to_vec(), b"b".to_vec()]);
        assert_eq!(m.joined(), b"\xff\nb", "bytes pass unchanged");
        assert_eq!(m.text(), "\u{fffd}\nb");
    }
}
