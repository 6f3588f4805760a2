//! The seeded wire-message generator of the fuzz tests: valid messages of every protocol in
//! `docs/protocols.md` (6/PPP, 7/MDP, 18/MDP, 8/MMI, 9/TSP, 10/FLP, Binary Star states, correlated
//! REQ envelopes), mutations of them, and random multipart messages. Everything it draws comes
//! from one ChaCha generator, so a seed replays the same sequence of messages.

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub type Frames = Vec<Vec<u8>>;

/// A protocol whose valid messages (every command, both directions) the generator draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// 6/PPP: READY `0x01`, HEARTBEAT `0x02`, `[envelope…]["" ][body…]`.
    Ppp,
    /// A REQ request/reply as a DEALER sends it: `[request id]["" ][body…]`.
    Req,
    /// 7/MDP client: `["" ]["MDPC01"][service][body…]` (REQUEST and REPLY look alike).
    Mdp1Client,
    /// 7/MDP worker: READY, REQUEST, REPLY, HEARTBEAT, DISCONNECT (`0x01`..`0x05`).
    Mdp1Worker,
    /// 18/MDP client: REQUEST, PARTIAL, FINAL (`0x01`..`0x03`).
    Mdp2Client,
    /// 18/MDP worker: READY, REQUEST, PARTIAL, FINAL, HEARTBEAT, DISCONNECT (`0x01`..`0x06`).
    Mdp2Worker,
    /// 8/MMI requests (`mmi.service`, `mmi.status`, `mmi.correlate`, unknown `mmi.*`).
    Mmi,
    /// 9/TSP requests (`titanic.request`, `titanic.reply`, `titanic.close`) over 7/MDP.
    Tsp,
    /// 10/FLP: `PING`, `PONG`, `[control][body…]`.
    Flp,
    /// Binary Star state messages `"2"` and `"4"` only: `"1"` and `"3"` are legitimately fatal
    /// to a lone primary (two primaries, dual active), so they would test nothing but that.
    BstarState,
}

const ALL: [Family; 10] = [
    Family::Ppp,
    Family::Req,
    Family::Mdp1Client,
    Family::Mdp1Worker,
    Family::Mdp2Client,
    Family::Mdp2Worker,
    Family::Mmi,
    Family::Tsp,
    Family::Flp,
    Family::BstarState,
];

/// Protocol words a mutation swaps in for a header or command frame.
const WORDS: [&[u8]; 16] = [
    b"MDPC01", b"MDPW01", b"MDPC02", b"MDPW02", b"MDPC00", b"MDPW03", b"mdpc01", b"MDP", b"PING",
    b"PONG", b"\x01", b"\x02", b"\x03", b"\x05", b"\x06", b"\xff",
];

/// The seeded generator, with frames learnt from the role's replies (request handles, UUIDs,
/// identities) that it replays inside later messages.
pub struct Gen {
    rng: ChaCha8Rng,
    focus: Vec<Family>,
    services: Vec<Vec<u8>>,
    learnt: Vec<Vec<u8>>,
}

/// How many learnt frames are kept (the oldest is replaced): a bound, like every buffer.
const LEARNT: usize = 64;

impl Gen {
    /// A generator for `seed` that favours `focus` (70% of valid messages) and draws
    /// `services` as service names (plus random ones).
    pub fn new(seed: u64, focus: &[Family], services: &[&str]) -> Self {
        Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            focus: focus.to_vec(),
            services: services.iter().map(|s| s.as_bytes().to_vec()).collect(),
            learnt: Vec::new(),
        }
    }

    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.rng.gen_range(0..n.max(1))
    }

    /// Keeps the short frames of a message the role sent, to replay them later.
    pub fn learn(&mut self, msg: &[Vec<u8>]) {
        for frame in msg.iter().filter(|f| !f.is_empty() && f.len() <= 64) {
            if self.learnt.len() < LEARNT {
                self.learnt.push(frame.clone());
            } else {
                let i = self.below(LEARNT);
                self.learnt[i] = frame.clone();
            }
        }
    }

    /// The next message: 40% valid, 40% a mutated valid one, 20% random multipart.
    pub fn message(&mut self) -> Frames {
        let roll = self.below(10);
        let msg = if roll < 4 {
            self.valid()
        } else if roll < 8 {
            let valid = self.valid();
            self.mutate(valid)
        } else {
            self.random_multipart()
        };
        if msg.is_empty() {
            vec![Vec::new()] // ZeroMQ cannot send a message of no frames
        } else {
            msg
        }
    }

    /// A valid message of one of the families.
    pub fn valid(&mut self) -> Frames {
        let family = if self.chance(0.7) && !self.focus.is_empty() {
            *self.focus.choose(&mut self.rng).unwrap()
        } else {
            *ALL.choose(&mut self.rng).unwrap()
        };
        self.valid_of(family)
    }

    pub fn valid_of(&mut self, family: Family) -> Frames {
        let e = Vec::new;
        match family {
            Family::Ppp => match self.below(3) {
                0 => vec![vec![0x01]],
                1 => vec![vec![0x02]],
                _ => {
                    let mut m = self.envelope();
                    m.push(e());
                    m.extend(self.body());
                    m
                }
            },
            Family::Req => {
                let mut m = vec![self.request_id(), e()];
                m.extend(self.body());
                m
            }
            Family::Mdp1Client => {
                let mut m = vec![e(), b"MDPC01".to_vec(), self.service()];
                m.extend(self.body());
                if self.chance(0.3) {
                    m.insert(0, self.request_id()); // pirate's correlated form
                }
                m
            }
            Family::Mdp1Worker => {
                let command = self.rng.gen_range(1u8..=5);
                let mut m = vec![e(), b"MDPW01".to_vec(), vec![command]];
                match command {
                    1 => m.push(self.service()),
                    2 | 3 => {
                        m.push(self.address());
                        m.push(e());
                        m.extend(self.body());
                    }
                    _ => {}
                }
                // pirate's credit: READY asking for it, HEARTBEAT granting it
                if matches!(command, 1 | 4) && self.chance(0.3) {
                    m.push(self.credit());
                }
                m
            }
            Family::Mdp2Client => {
                let command = self.rng.gen_range(1u8..=3);
                let mut m = vec![b"MDPC02".to_vec(), vec![command], self.service()];
                m.extend(self.body());
                if self.chance(0.2) {
                    m.insert(0, e()); // the leading "" some implementations send
                }
                m
            }
            Family::Mdp2Worker => {
                let command = self.rng.gen_range(1u8..=6);
                let mut m = vec![b"MDPW02".to_vec(), vec![command]];
                match command {
                    1 => m.push(self.service()),
                    2..=4 => {
                        m.push(self.address());
                        m.push(e());
                        m.extend(self.body());
                    }
                    _ => {}
                }
                if matches!(command, 1 | 5) && self.chance(0.3) {
                    m.push(self.credit());
                }
                if self.chance(0.2) {
                    m.insert(0, e());
                }
                m
            }
            Family::Mmi => {
                let service: &[u8] = [
                    &b"mmi.service"[..],
                    b"mmi.status",
                    b"mmi.correlate",
                    b"mmi.nosuch",
                    b"mmi.",
                ]
                .choose(&mut self.rng)
                .unwrap();
                let mut m = vec![e(), b"MDPC01".to_vec(), service.to_vec()];
                if self.chance(0.8) {
                    m.push(self.service());
                }
                m
            }
            Family::Tsp => {
                let mut m = vec![e(), b"MDPC01".to_vec()];
                match self.below(3) {
                    0 => {
                        m.push(b"titanic.request".to_vec());
                        m.push(self.service());
                        m.extend(self.body());
                    }
                    1 => {
                        m.push(b"titanic.reply".to_vec());
                        m.push(self.uuid());
                    }
                    _ => {
                        m.push(b"titanic.close".to_vec());
                        m.push(self.uuid());
                    }
                }
                m
            }
            Family::Flp => match self.below(3) {
                0 => vec![b"PING".to_vec()],
                1 => vec![b"PONG".to_vec()],
                _ => {
                    let mut m = vec![self.request_id()];
                    m.extend(self.body());
                    m
                }
            },
            Family::BstarState => {
                let state = if self.chance(0.5) { b"2" } else { b"4" };
                let mut frame = state.to_vec();
                if self.chance(0.3) {
                    frame.push(0);
                }
                vec![frame]
            }
        }
    }

    /// A mutation of `msg` (one to three of: truncated, frame dropped, extra frames, a command
    /// or header replaced, an empty frame, a long frame, garbage, frames swapped or repeated).
    pub fn mutate(&mut self, mut msg: Frames) -> Frames {
        for _ in 0..self.rng.gen_range(1..=3) {
            let n = msg.len();
            let i = self.below(n);
            match self.below(11) {
                0 => msg.truncate(self.below(n)),
                1 if n > 0 => {
                    msg.remove(i);
                }
                2 => {
                    for _ in 0..self.rng.gen_range(1..=4) {
                        let f = self.frame();
                        let at = self.below(msg.len() + 1);
                        msg.insert(at, f);
                    }
                }
                3 if n > 0 => msg[i] = WORDS.choose(&mut self.rng).unwrap().to_vec(),
                4 if n > 0 => msg[i] = vec![self.rng.gen()],
                5 if n > 0 => msg[i].clear(),
                6 if n > 0 => msg[i] = self.long_frame(),
                7 if n > 0 => msg[i] = self.garbage(1..64),
                8 if n > 1 => msg.swap(i, self.below(n)),
                9 if n > 0 => {
                    let f = msg[i].clone();
                    msg.insert(i, f);
                }
                10 if n > 0 && !msg[i].is_empty() => {
                    let len = self.below(msg[i].len());
                    msg[i].truncate(len); // a header cut short: "MDPC0"
                }
                _ => msg.push(Vec::new()),
            }
        }
        msg
    }

    /// 1 to 8 random frames.
    pub fn random_multipart(&mut self) -> Frames {
        (0..self.rng.gen_range(1..=8))
            .map(|_| self.frame())
            .collect()
    }

    /// A random frame: empty, a protocol word, a learnt frame, a short or long garbage one.
    fn frame(&mut self) -> Vec<u8> {
        match self.below(10) {
            0 | 1 => Vec::new(),
            2 | 3 => WORDS.choose(&mut self.rng).unwrap().to_vec(),
            4 => self.learnt(),
            5 => self.long_frame(),
            _ => self.garbage(1..32),
        }
    }

    fn garbage(&mut self, len: std::ops::Range<usize>) -> Vec<u8> {
        let mut bytes = vec![0; self.rng.gen_range(len)];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }

    /// Mostly 256 B – 16 KiB, rarely up to 256 KiB: large enough to cross every small-buffer
    /// path, small enough that a million messages stay a test of parsing, not of memory.
    fn long_frame(&mut self) -> Vec<u8> {
        let len = if self.chance(0.02) {
            self.rng.gen_range(16_384..262_144)
        } else {
            self.rng.gen_range(256..16_384)
        };
        let fill: u8 = self.rng.gen();
        vec![fill; len]
    }

    fn learnt(&mut self) -> Vec<u8> {
        if self.learnt.is_empty() {
            return self.garbage(1..16);
        }
        let i = self.below(self.learnt.len());
        self.learnt[i].clone()
    }

    /// A service name: one of the configured ones, a random one, or an odd one.
    pub fn service(&mut self) -> Vec<u8> {
        match self.below(10) {
            0 => Vec::new(),
            1 => format!("svc-{}", self.rng.gen::<u32>()).into_bytes(),
            2 => self.garbage(1..40),
            3 if self.chance(0.1) => vec![b's'; self.rng.gen_range(200..400)],
            _ => self
                .services
                .choose(&mut self.rng)
                .cloned()
                .unwrap_or_else(|| b"echo".to_vec()),
        }
    }

    /// A body of one to three frames (text, empty, garbage, learnt, or long).
    fn body(&mut self) -> Frames {
        (0..self.rng.gen_range(1..=3))
            .map(|_| match self.below(8) {
                0 => Vec::new(),
                1 => self.garbage(1..48),
                2 => self.learnt(),
                3 if self.chance(0.2) => self.long_frame(),
                _ => format!("body-{}", self.rng.gen::<u16>()).into_bytes(),
            })
            .collect()
    }

    /// A client address or request handle: learnt ones (the role's real handles), made-up ones.
    fn address(&mut self) -> Vec<u8> {
        match self.below(4) {
            0 | 1 => self.learnt(),
            2 => format!("{:016x}", self.rng.gen::<u64>()).into_bytes(),
            _ => self.garbage(1..20),
        }
    }

    /// An envelope of one or two address frames.
    fn envelope(&mut self) -> Frames {
        (0..self.rng.gen_range(1..=2))
            .map(|_| self.address())
            .collect()
    }

    /// A `credit=N` frame (pirate's extension to READY and HEARTBEAT): mostly valid, from 1 to
    /// past the broker's cap, sometimes a value the codec refuses.
    fn credit(&mut self) -> Vec<u8> {
        let value = match self.below(6) {
            0 => "0".to_string(),
            1 => "x".to_string(),
            2 => "99999999999".to_string(),
            _ => self.rng.gen_range(1u32..=2000).to_string(),
        };
        format!("credit={value}").into_bytes()
    }

    fn request_id(&mut self) -> Vec<u8> {
        if self.chance(0.3) {
            self.learnt()
        } else {
            format!("{:016x}", self.rng.gen::<u64>()).into_bytes()
        }
    }

    /// A 9/TSP UUID: learnt (a real one), random 32 hex digits, or malformed.
    fn uuid(&mut self) -> Vec<u8> {
        match self.below(4) {
            0 | 1 => self.learnt(),
            2 => format!("{:032x}", self.rng.gen::<u128>()).into_bytes(),
            _ => self.garbage(0..40),
        }
    }

    /// A peer identity: printable, binary (never a leading zero byte: libzmq reserves those
    /// for its own generated identities and asserts on a clash, fixed elsewhere), long, or none.
    pub fn identity(&mut self) -> Option<Vec<u8>> {
        match self.below(6) {
            0 => None,
            1 => {
                let mut id = self.garbage(1..32);
                id[0] = id[0].max(1);
                Some(id)
            }
            2 => Some(vec![b'L'; self.rng.gen_range(100..=255)]),
            3 => Some(self.learnt()).filter(|id| id.first().is_some_and(|b| *b != 0)),
            _ => Some(format!("fuzz-{}", self.rng.gen::<u16>() % 64).into_bytes()),
        }
    }
}

/// A short, printable rendering of a message for a failure report.
pub fn show(msg: &[Vec<u8>]) -> String {
    let frames: Vec<String> = msg
        .iter()
        .map(|f| {
            let head = &f[..f.len().min(24)];
            let text = if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                String::from_utf8_lossy(head).into_owned()
            } else {
                head.iter().map(|b| format!("{b:02x}")).collect()
            };
            if f.len() > 24 {
                format!("[{}]{text}…", f.len())
            } else {
                format!("[{}]{text}", f.len())
            }
        })
        .collect();
    frames.join(" ")
}
