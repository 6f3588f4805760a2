//! Questions to a Majordomo broker (8/MMI): `mmi.correlate` (does it carry request ids?)
//! before the first request, `mmi.service` (has it a worker?) when a request times out.

use std::time::Instant;

use crate::event::Events;
use crate::msg::Message;
use crate::proto::mdp::Version;
use crate::proto::mmi;
use crate::reactor::{Outbox, Slot};

use super::{Client, Correlation, Framing, ReadNext, Received};

/// What a probe asks a Majordomo broker (8/MMI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Question {
    /// `mmi.correlate`: does it carry request ids (see [`crate::proto::mmi`])?
    Correlate,
    /// `mmi.service NAME`: has it a worker for our service? Asked when a request times out,
    /// so that a run that gives up can say what is true.
    Service,
}

/// A question in flight to endpoint `at`.
pub(super) struct Probe {
    pub(super) slot: Slot,
    pub(super) at: usize,
    pub(super) deadline: Instant,
    pub(super) question: Question,
    /// The question as sent: an answer equal to it is an echo (see [`Client::probe_reply`]).
    pub(super) sent: Message,
}

impl Client {
    /// Asks the broker at endpoint `at` `question` (8/MMI), unless a question is already out.
    pub(super) fn ask(
        &mut self,
        at: usize,
        question: Question,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        if self.probe.is_some() {
            return;
        }
        let ask = self.probe_framing(question);
        let slot = self.slot();
        let why = match question {
            Question::Correlate => "asking mmi.correlate",
            Question::Service => "asking mmi.service",
        };
        self.open(slot, ask.socket_type(), at, why, out, events);
        // One body frame: the Guide's brokers write their 501 over the last body frame and
        // crash on a request without one.
        let body = match (question, self.service()) {
            (Question::Service, Some(service)) => service.as_bytes().to_vec(),
            _ => b"1".to_vec(),
        };
        let sent = ask.encode(Message::from_frames([body]));
        out.send(slot, sent.clone());
        self.probe = Some(Probe {
            slot,
            at,
            deadline: now + self.config.timeout,
            question,
            sent,
        });
    }

    pub(super) fn probe_framing(&self, question: Question) -> Framing {
        let version = match &self.config.framing {
            Framing::Majordomo { version, .. } => *version,
            Framing::Bare => Version::V1,
        };
        let service = match question {
            Question::Correlate => mmi::CORRELATE,
            Question::Service => mmi::SERVICE,
        };
        Framing::Majordomo {
            version,
            service: String::from_utf8_lossy(service).into_owned(),
        }
    }

    /// The Majordomo service this client asks for (`None`: bare).
    pub(super) fn service(&self) -> Option<&str> {
        match &self.config.framing {
            Framing::Majordomo { service, .. } => Some(service),
            Framing::Bare => None,
        }
    }

    /// Whether it asks a broker for a service, rather than an `mmi.*` question itself.
    pub(super) fn asks_a_service(&self) -> bool {
        self.service().is_some_and(|s| !mmi::is_mmi(s.as_bytes()))
    }

    /// The probe's answer (`None`: no answer in time, or a malformed one).
    pub(super) fn answered(
        &mut self,
        answer: Option<String>,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        self.release(probe.slot, out);
        match probe.question {
            Question::Correlate => self.correlation_answered(probe.at, answer, events),
            Question::Service => {
                if answer.as_deref() == Some("404") && self.service_answer.is_none() {
                    events.warn(self.no_service(probe.at));
                }
                self.service_answer = Some(answer);
            }
        }
        if self.abandoning {
            self.abandon(now, out, events);
            return;
        }
        self.pump(now, out, events);
    }

    /// What a `404` to `mmi.service` from endpoint `at` means.
    pub(super) fn no_service(&self, at: usize) -> String {
        let service = self.service().unwrap_or_default();
        format!(
            "the broker at {} is up but has no worker for service {service:?} (mmi.service: 404)",
            self.endpoints[at]
        )
    }

    /// The `mmi.correlate` answer: `200` means request ids, anything else one socket per
    /// request (then the run is correct, only slower).
    pub(super) fn correlation_answered(
        &mut self,
        at: usize,
        answer: Option<String>,
        events: &mut Events,
    ) {
        let correlation = match answer.as_deref() {
            Some("200") => Correlation::RequestId,
            _ => Correlation::Socket,
        };
        self.correlation[at] = Some(correlation);
        if events.tracing() {
            let endpoint = &self.endpoints[at];
            const FALLBACK: &str = "the window falls back to one socket per request";
            events.info(match (&answer, correlation) {
                (_, Correlation::RequestId) => format!(
                    "{endpoint} carries request ids (mmi.correlate: 200): replies are matched \
                     by id, every request in flight shares one socket"
                ),
                (Some(other), _) => format!(
                    "{endpoint} does not carry request ids (mmi.correlate: {other}): {FALLBACK}"
                ),
                (None, _) => format!(
                    "no answer to mmi.correlate from {endpoint} within {} ms: {FALLBACK}",
                    self.config.timeout.as_millis()
                ),
            });
        }
    }

    /// A message on the probe's socket.
    pub(super) fn probe_reply(
        &mut self,
        msg: Message,
        now: Instant,
        out: &mut Outbox<ReadNext>,
        events: &mut Events,
    ) {
        let question = self
            .probe
            .as_ref()
            .map_or(Question::Correlate, |p| p.question);
        if let Some(why) = self
            .probe
            .as_ref()
            .and_then(|p| echoed(p, &msg, &self.endpoints))
        {
            return self.wrong_protocol(why, now, out, events);
        }
        match self.probe_framing(question).decode(msg) {
            Ok(Received::Partial(_)) => {}
            Ok(Received::Final(body)) => self.answered(Some(body.text()), now, out, events),
            Err(_) => self.answered(None, now, out, events),
        }
    }
}

/// Why `msg`, the answer to `probe`, is an echo: the question itself, frame for frame. A
/// Majordomo broker answers `mmi.correlate` with a status (`200`, `501`) and `mmi.service`
/// with `200`/`404`; a plain echo server sends the question back, and in 7/MDP 0.1 a
/// client REQUEST and its REPLY have the same frames (`["MDPC01"][service][body]`), so an
/// echoed request would pass for an answer: the probe is what tells them apart.
fn echoed(probe: &Probe, msg: &Message, endpoints: &[String]) -> Option<String> {
    (*msg == probe.sent).then(|| {
        let question = match probe.question {
            Question::Correlate => "mmi.correlate",
            Question::Service => "mmi.service",
        };
        format!(
            "{} echoed the question {question} back: it is not a Majordomo broker \
             (a plain echo server on the wrong port?)",
            endpoints[probe.at]
        )
    })
}
