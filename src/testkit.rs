//! The unit tests' one kit: [`Rig`] drives any [`Machine`] as the reactor would (same calls,
//! same order, a clock the test sets) and keeps what it sent and said; [`msg!`] writes a
//! message as its frames.
//!
//! Every role is tested through the [`Machine`] interface and nothing else, so a test reads as
//! the wire does: "this arrived at t, these frames went out, this was logged".

use crate::chaos::history::Record;
use crate::event::{Event, Events};
use crate::msg::Message;
use crate::reactor::{Input, Machine, Outbox, Output, Slot, SocketSpec};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A message written as its frames: `msg![b"READY"]`, `msg![id, "", body]`. Each frame is
/// anything with `as_ref() -> &[u8]` (byte strings, `&str`, `Vec<u8>`).
macro_rules! msg {
    ($($frame:expr),* $(,)?) => {
        $crate::msg::Message::from_frames(::std::vec![
            $(AsRef::<[u8]>::as_ref(&$frame).to_vec()),*
        ] as ::std::vec::Vec<::std::vec::Vec<u8>>)
    };
}
pub(crate) use msg;

/// A message made of the given frames (for frames built at run time).
pub fn frames(frames: &[&[u8]]) -> Message {
    Message::from_frames(frames.iter().map(|f| f.to_vec()))
}

/// A machine under test, its clock origin, and every event it has emitted.
pub struct Rig<M: Machine> {
    pub m: M,
    /// Time zero of the test's clock; [`Rig::at`] counts from it.
    pub t0: Instant,
    /// Every event so far, in order ([`Rig::take_events`] empties it).
    pub events: Vec<Event>,
    out: Outbox<M::Job>,
    trace: bool,
}

impl<M: Machine> Rig<M> {
    /// A rig around `m`, not yet started; events are traced (`-v`) as a test usually wants.
    pub fn new(m: M) -> Self {
        Rig {
            m,
            t0: Instant::now(),
            events: Vec::new(),
            out: Outbox::default(),
            trace: true,
        }
    }

    /// The same, with frame traces off (as without `-v`).
    pub fn quiet(m: M) -> Self {
        Rig {
            trace: false,
            ..Rig::new(m)
        }
    }

    /// `ms` milliseconds after [`Rig::t0`].
    pub fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// [`Machine::start`] at `now`; what it asked for.
    pub fn start(&mut self, now: Instant) -> Vec<Output<M::Job>> {
        let Rig { m, out, events, .. } = self;
        m.start(now, out, &mut Events::new(self.trace, |e| events.push(e)));
        self.out.take()
    }

    /// [`Machine::handle`] with `input` at `now`; what it asked for.
    pub fn handle(&mut self, input: Input<M::Done>, now: Instant) -> Vec<Output<M::Job>> {
        let Rig { m, out, events, .. } = self;
        m.handle(
            input,
            now,
            out,
            &mut Events::new(self.trace, |e| events.push(e)),
        );
        self.out.take()
    }

    /// `msg` arrives on `slot` at `now`; what the machine asked for.
    pub fn message(&mut self, slot: Slot, msg: Message, now: Instant) -> Vec<Output<M::Job>> {
        self.handle(Input::Message { slot, msg }, now)
    }

    /// A job the machine started finished with `done` at `now`.
    pub fn done(&mut self, done: M::Done, now: Instant) -> Vec<Output<M::Job>> {
        self.handle(Input::Done(done), now)
    }

    /// [`Machine::tick`] at `now`; what it asked for.
    pub fn tick(&mut self, now: Instant) -> Vec<Output<M::Job>> {
        let Rig { m, out, events, .. } = self;
        m.tick(now, out, &mut Events::new(self.trace, |e| events.push(e)));
        self.out.take()
    }

    /// [`Machine::routed`]: `msg` on `slot` went out (`routed`) or found no peer.
    pub fn routed(
        &mut self,
        slot: Slot,
        msg: &Message,
        routed: bool,
        now: Instant,
    ) -> Vec<Output<M::Job>> {
        let Rig { m, out, events, .. } = self;
        m.routed(
            slot,
            msg,
            routed,
            now,
            out,
            &mut Events::new(self.trace, |e| events.push(e)),
        );
        self.out.take()
    }

    /// Carries out `outputs` at `now` as the reactor does for a ROUTER_MANDATORY or
    /// non-blocking DEALER socket: each send goes out when `routable(slot, msg)` says its peer
    /// is there, the machine hears at once whether it did ([`Machine::routed`]), and what it
    /// asks for in answer is carried out before the outputs that followed. What was carried
    /// out, in order: the sends that went out and every other output (a send that found no
    /// peer is gone). The reactor's cap on unroutable sends per wake-up is left out: a test
    /// that loops forever shows itself.
    pub fn carry(
        &mut self,
        outputs: Vec<Output<M::Job>>,
        now: Instant,
        mut routable: impl FnMut(Slot, &Message) -> bool,
    ) -> Vec<Output<M::Job>> {
        let mut todo: VecDeque<_> = outputs.into();
        let mut carried = Vec::new();
        while let Some(output) = todo.pop_front() {
            if let Output::Send { slot, msg } = &output {
                let went = routable(*slot, msg);
                let more = self.routed(*slot, msg, went, now);
                for o in more.into_iter().rev() {
                    todo.push_front(o);
                }
                if !went {
                    continue;
                }
            }
            carried.push(output);
        }
        carried
    }

    /// Calls `f` on the machine with the rig's outbox and events, for what the reactor does
    /// not call but a wrapper does (`Pair::step_down` under Binary Star, say); what it asked
    /// for.
    pub fn drive(
        &mut self,
        f: impl FnOnce(&mut M, &mut Outbox<M::Job>, &mut Events),
    ) -> Vec<Output<M::Job>> {
        let Rig { m, out, events, .. } = self;
        f(m, out, &mut Events::new(self.trace, |e| events.push(e)));
        self.out.take()
    }

    /// The events emitted since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Whether any event so far, as `Debug` text, contains `what`.
    pub fn logged(&self, what: &str) -> bool {
        self.events.iter().any(|e| format!("{e:?}").contains(what))
    }
}

/// Runs `f` on a machine the test holds itself (not through a [`Rig`]) with a fresh outbox
/// and an untraced event sink; what it asked for and what it said in that one step.
pub fn step<M: Machine>(
    m: &mut M,
    f: impl FnOnce(&mut M, &mut Outbox<M::Job>, &mut Events),
) -> (Vec<Output<M::Job>>, Vec<Event>) {
    let mut seen = Vec::new();
    let mut out = Outbox::default();
    {
        let mut ev = Events::new(false, |e| seen.push(e));
        f(m, &mut out, &mut ev);
    }
    (out.take(), seen)
}

/// [`step`] with [`Machine::handle`]: `input` at `now`.
pub fn handle<M: Machine>(
    m: &mut M,
    input: Input<M::Done>,
    now: Instant,
) -> (Vec<Output<M::Job>>, Vec<Event>) {
    step(m, |m, out, ev| m.handle(input, now, out, ev))
}

/// [`step`] with [`Machine::tick`] at `now`.
pub fn tick<M: Machine>(m: &mut M, now: Instant) -> (Vec<Output<M::Job>>, Vec<Event>) {
    step(m, |m, out, ev| m.tick(now, out, ev))
}

/// Runs `f` with an untraced event sink, for a test of something that says things but is
/// no [`Machine`] (a fault plan, a report helper); `f`'s result and every event it emitted.
pub fn collect<T>(f: impl FnOnce(&mut Events) -> T) -> (T, Vec<Event>) {
    let mut seen = Vec::new();
    let value = f(&mut Events::new(false, |e| seen.push(e)));
    (value, seen)
}

/// xorshift64: numbers for randomised tests, the same every run from the same seed, with no
/// dependency.
pub struct Xorshift(pub u64);

impl Xorshift {
    /// The next number of the stream.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The next number of the stream, below `n`.
    pub fn below(&mut self, n: u64) -> usize {
        (self.next_u64() % n) as usize
    }
}

/// The messages among `outputs` sent on `slot`, in order.
pub fn sent_on<J>(outputs: &[Output<J>], slot: Slot) -> Vec<Message> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { slot: s, msg } if *s == slot => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

/// Every message among `outputs`, with the slot it was sent on.
pub fn sent<J>(outputs: &[Output<J>]) -> Vec<(Slot, Message)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { slot, msg } => Some((*slot, msg.clone())),
            _ => None,
        })
        .collect()
}

/// The sockets `outputs` asked to open, in order.
pub fn opened<J>(outputs: &[Output<J>]) -> Vec<SocketSpec> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Open(spec) => Some(spec.clone()),
            _ => None,
        })
        .collect()
}

/// The slots `outputs` asked to close, in order.
pub fn closed<J>(outputs: &[Output<J>]) -> Vec<Slot> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Close(slot) => Some(*slot),
            _ => None,
        })
        .collect()
}

/// Reply 1 to request "1", first time, in half a millisecond, with `reply` for its bytes.
pub fn reply_event(reply: &[u8]) -> Event {
    Event::Reply {
        seq: 1,
        request: "1".into(),
        reply: reply.to_vec().into(),
        attempts: 1,
        latency_ms: 0.5,
    }
}

/// A chaos run's history written one record a line, `t_ms source {json event}`, so that a
/// test's history reads as the log it stands for; blank lines are skipped.
pub fn records(lines: &str) -> Vec<Record> {
    lines
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let mut next = || parts.next().unwrap_or_else(|| panic!("short record: {l}"));
            let t: f64 = next().parse().unwrap();
            let source = next();
            let event = serde_json::from_str(next()).unwrap_or_else(|e| panic!("{l}: {e}"));
            Record::new(t, source, event)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes every message back on its slot after saying it saw it; ticks once at `t0 + 10ms`.
    struct Echo {
        due: Option<Instant>,
    }

    impl Machine for Echo {
        type Job = ();
        type Done = ();
        fn sockets(&self) -> Vec<SocketSpec> {
            Vec::new()
        }
        fn start(&mut self, now: Instant, _out: &mut Outbox<()>, _events: &mut Events) {
            self.due = Some(now + Duration::from_millis(10));
        }
        fn handle(
            &mut self,
            input: Input<()>,
            _now: Instant,
            out: &mut Outbox<()>,
            events: &mut Events,
        ) {
            if let Input::Message { slot, msg } = input {
                events.info(format!("echo {}", msg.text()));
                out.send(slot, msg);
            }
        }
        fn tick(&mut self, now: Instant, out: &mut Outbox<()>, _events: &mut Events) {
            if self.due.is_some_and(|d| now >= d) {
                self.due = None;
                out.start(());
            }
        }
        fn next_deadline(&self) -> Option<Instant> {
            self.due
        }
        /// A message that found no peer on slot 4 is tried again on slot 5.
        fn routed(
            &mut self,
            slot: Slot,
            msg: &Message,
            routed: bool,
            _now: Instant,
            out: &mut Outbox<()>,
            events: &mut Events,
        ) {
            if !routed && slot == 4 {
                events.warn(format!("no peer for {}", msg.text()));
                out.send(5, msg.clone());
            }
        }
    }

    #[test]
    fn msg_builds_frames_from_any_bytes() {
        let id = vec![0u8, 1];
        let m = msg![id, "", b"body"];
        assert_eq!(m, frames(&[&[0u8, 1][..], b"", b"body"]));
        assert_eq!(m.len(), 3);
        assert_eq!(crate::testkit::msg![], Message::new());
    }

    #[test]
    fn rig_drives_a_machine_and_keeps_what_it_sent_and_said() {
        let mut rig = Rig::new(Echo { due: None });
        assert!(rig.start(rig.t0).is_empty());
        let out = rig.message(3, msg!["hi"], rig.at(1));
        assert_eq!(sent_on(&out, 3), vec![msg!["hi"]]);
        assert_eq!(sent(&out), vec![(3, msg!["hi"])]);
        assert!(sent_on(&out, 4).is_empty());
        assert!(rig.logged("echo hi"));
        assert!(!rig.logged("echo there"));
        assert_eq!(rig.take_events().len(), 1);
        assert!(rig.events.is_empty());
        assert!(rig.tick(rig.at(5)).is_empty());
        assert_eq!(rig.tick(rig.at(10)), vec![Output::Start(())]);
        assert!(rig.done((), rig.at(11)).is_empty());
        assert!(rig.routed(3, &msg!["hi"], false, rig.at(12)).is_empty());
        let now = rig.at(13);
        let out = rig.drive(|m, out, events| {
            m.handle(
                Input::Message {
                    slot: 5,
                    msg: msg!["x"],
                },
                now,
                out,
                events,
            )
        });
        assert_eq!(sent_on(&out, 5), vec![msg!["x"]]);
        assert!(rig.logged("echo x"));
    }

    #[test]
    fn carry_tells_the_machine_where_sends_went_and_carries_its_answer_first() {
        let mut rig = Rig::new(Echo { due: None });
        let outputs = vec![
            Output::Send {
                slot: 4,
                msg: msg!["a"],
            },
            Output::Start(()),
            Output::Send {
                slot: 4,
                msg: msg!["b"],
            },
        ];
        let mut asked = Vec::new();
        let carried = rig.carry(outputs, rig.at(1), |slot, m| {
            asked.push((slot, m.text()));
            slot == 5 || m == &msg!["b"]
        });
        assert_eq!(
            carried,
            vec![
                Output::Send {
                    slot: 5,
                    msg: msg!["a"]
                },
                Output::Start(()),
                Output::Send {
                    slot: 4,
                    msg: msg!["b"]
                },
            ],
            "the unroutable \"a\" is gone, its retry on slot 5 comes before the rest"
        );
        assert_eq!(asked.len(), 3);
        assert!(rig.logged("no peer for a"));
        assert!(!rig.logged("no peer for b"));
    }

    #[test]
    fn collect_keeps_the_result_and_every_event_in_order() {
        let (n, seen) = collect(|events| {
            events.info("one");
            events.warn("two");
            2
        });
        assert_eq!(n, 2);
        assert_eq!(seen.len(), 2);
        assert!(format!("{:?}", seen[0]).contains("one"));
        assert!(format!("{:?}", seen[1]).contains("two"));
    }

    #[test]
    fn xorshift_is_the_same_stream_from_the_same_seed() {
        let (mut a, mut b) = (Xorshift(7), Xorshift(7));
        let first = a.next_u64();
        assert_eq!(first, b.next_u64());
        assert_ne!(first, a.next_u64(), "a stream, not a constant");
        assert!((0..100).all(|_| b.below(3) < 3));
    }

    #[test]
    fn a_rig_traces_frames_unless_quiet() {
        assert!(Rig::new(Echo { due: None }).trace);
        assert!(!Rig::quiet(Echo { due: None }).trace);
    }
}
