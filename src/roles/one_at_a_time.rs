//! One request at a time, each stalled by its fault before the handler runs: what the Lazy
//! Pirate server and the Freelance server share, so that the rule (count, draw the fault,
//! die of a crash at once, hold the request until its stall is over, read nothing meanwhile)
//! is written once.

use std::time::Instant;

use crate::event::{Events, ServiceReport, Serving};
use crate::faults::{Decision, Faults};
use crate::msg::Message;
use crate::reactor::{Due, Outbox};

/// A job a server holds: the request's body is what its `Served` event describes.
pub trait Request {
    fn body(&self) -> &Message;
}

impl Request for Message {
    fn body(&self) -> &Message {
        self
    }
}

/// The request being served, if any, and whether an injected crash ended the role. `J` is
/// the job handed to the handler; `X` what the reply needs besides (a ROUTER envelope).
#[derive(Debug)]
pub struct OneAtATime<J, X> {
    held: Option<Held<J, X>>,
    /// Set once a crash was asked for: nothing more is read.
    crashed: bool,
}

/// The request being served.
#[derive(Debug)]
struct Held<J, X> {
    /// What its `Served` event will say.
    event: Serving,
    /// What the reply needs besides the handler's answer.
    keep: X,
    /// When the stall ends and the handler may run; taken once it runs.
    due: Due<J>,
}

impl<J, X> Default for OneAtATime<J, X> {
    /// Nothing held, alive.
    fn default() -> Self {
        OneAtATime {
            held: None,
            crashed: false,
        }
    }
}

impl<J: Request, X> OneAtATime<J, X> {
    /// A request arrived: counts it and draws its fault. A crash ends the role at once, with
    /// the request (`None`); otherwise `job` is held, with `keep`, until its stall is over
    /// (started now if there is none), and the decision is returned.
    #[allow(clippy::too_many_arguments)]
    pub fn take(
        &mut self,
        faults: &mut Faults,
        report: &mut ServiceReport,
        job: J,
        keep: X,
        now: Instant,
        out: &mut Outbox<J>,
        events: &mut Events,
    ) -> Option<Decision> {
        let Some(decision) = faults.take_request(report, now, events) else {
            self.crashed = true;
            out.crash();
            return None;
        };
        self.held = Some(Held {
            event: Serving::new(decision.cycle, job.body(), now),
            keep,
            due: Due::at(decision.due, job),
        });
        self.tick(now, out);
        Some(decision)
    }

    /// Hands the held request to the handler once its stall is over.
    pub fn tick(&mut self, now: Instant, out: &mut Outbox<J>) {
        if let Some(job) = self.held.as_mut().and_then(|h| h.due.take_if_due(now)) {
            out.start(job);
        }
    }

    /// When the held request's stall ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.as_ref()?.due.when()
    }

    /// Whether the next request may be read: none held, and alive.
    pub fn wants(&self) -> bool {
        self.held.is_none() && !self.crashed
    }

    /// The handler answered: the held request's event (to say `Served` once the reply is
    /// out) and what its reply needs; `None` if nothing was held.
    pub fn done(&mut self) -> Option<(Serving, X)> {
        self.held.take().map(|h| (h.event, h.keep))
    }
}
