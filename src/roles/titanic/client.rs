//! The 9/TSP client side: [`TitanicClient`] (submit, poll, close, each an MDP request to
//! Titanic's services) and `pirate client --titanic` ([`run_client`]), the Guide's ticlient.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::{ClientReport, Event, Events, Outcome, Report};
use crate::msg::Message;
use crate::proto::mdp::Version;
use crate::proto::tsp::{Uuid, CLOSE, ERROR, OK, PENDING, REPLY, REQUEST, UNKNOWN};
use crate::reactor::Stop;
use crate::stats::{millis, LatencyRecorder};

use super::mdp_client::MdpClient;

/// What `titanic.reply` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyStatus {
    /// 200: the reply frames.
    Ready(Message),
    /// 300: not answered yet.
    Pending,
    /// 400: no such request (never stored, or closed).
    Unknown,
}

/// A 9/TSP client: submit, poll, close, each one MDP request to Titanic's services with the
/// Lazy Pirate timeout and retries.
pub struct TitanicClient {
    client: MdpClient,
    stop: Stop,
}

impl TitanicClient {
    /// A client of the Titanic behind the broker at `broker`; each TSP call waits `timeout`
    /// per attempt, for `retries` attempts.
    pub fn connect(broker: &str, timeout: Duration, retries: u32) -> Result<Self> {
        let mut client = MdpClient::connect(broker, Version::V1)?;
        client.set_timeout(timeout);
        client.set_retries(retries);
        Ok(TitanicClient {
            client,
            stop: Stop::new(),
        })
    }

    /// Raising `stop` ends a call that is waiting, or the wait between polls, with
    /// `Error::Interrupted`.
    pub fn with_stop(self, stop: Stop) -> Self {
        TitanicClient {
            client: self.client.with_stop(stop.clone()),
            stop,
        }
    }

    /// `titanic.request`: stores `body` for `service`; returns its UUID.
    pub fn submit(&mut self, service: &str, body: Message) -> Result<String> {
        let mut request = body;
        request.push_front(service.as_bytes().to_vec());
        let mut reply = self.client.request(REQUEST, request)?;
        let raw = reply.pop_front();
        let code = status_code(raw.clone());
        match (code.as_slice(), reply.pop_front()) {
            (OK, Some(uuid)) if Uuid::parse(&uuid).is_some() && reply.is_empty() => {
                Ok(String::from_utf8_lossy(&uuid).into_owned())
            }
            (UNKNOWN, _) => Err(Error::Usage(format!(
                "titanic refused the request for {service:?} (400: it needs a service name and \
                 a non-empty request)"
            ))),
            // A refusal with a reason (too big, store full): the text is for the user.
            (ERROR, _) if raw.as_ref().is_some_and(|r| r.len() > 4) => {
                Err(Error::Internal(format!(
                    "titanic refused the request: {}",
                    String::from_utf8_lossy(&raw.unwrap_or_default())
                )))
            }
            _ => Err(unexpected(REQUEST, &code)),
        }
    }

    /// Asks the broker (8/MMI `mmi.service`) whether any worker serves `service` now.
    pub fn has_workers(&mut self, service: &str) -> Result<bool> {
        let question = Message::from_frames(vec![service.as_bytes().to_vec()]);
        let mut reply = self.client.request("mmi.service", question)?;
        Ok(reply.pop_front().as_deref() != Some(b"404"))
    }

    /// `titanic.reply`: one look at the reply of `uuid`.
    pub fn reply(&mut self, uuid: &str) -> Result<ReplyStatus> {
        let question = Message::from_frames(vec![uuid.as_bytes().to_vec()]);
        let mut reply = self.client.request(REPLY, question)?;
        let code = status_code(reply.pop_front());
        match code.as_slice() {
            OK => Ok(ReplyStatus::Ready(reply)),
            PENDING => Ok(ReplyStatus::Pending),
            UNKNOWN => Ok(ReplyStatus::Unknown),
            _ => Err(unexpected(REPLY, &code)),
        }
    }

    /// Polls `titanic.reply` every `poll_interval` until the reply is there; returns it with
    /// the number of polls it took. A UUID Titanic does not know is an error.
    pub fn wait_reply(&mut self, uuid: &str, poll_interval: Duration) -> Result<(Message, u32)> {
        let mut polls = 0;
        loop {
            polls += 1;
            match self.reply(uuid)? {
                ReplyStatus::Ready(reply) => return Ok((reply, polls)),
                ReplyStatus::Pending => self.stop.sleep(poll_interval)?,
                ReplyStatus::Unknown => {
                    return Err(Error::Internal(format!(
                        "titanic does not know request {uuid} (closed by someone else?)"
                    )))
                }
            }
        }
    }

    /// `titanic.close`: forgets `uuid` and its reply.
    pub fn close(&mut self, uuid: &str) -> Result<()> {
        let question = Message::from_frames(vec![uuid.as_bytes().to_vec()]);
        let mut reply = self.client.request(CLOSE, question)?;
        let code = status_code(reply.pop_front());
        match code.as_slice() {
            OK => Ok(()),
            _ => Err(unexpected(CLOSE, &code)),
        }
    }
}

/// The three digits of a status frame. 9/TSP allows a space and free text after them,
/// which clients must not interpret: `"300 try later"` is `"300"`.
pub(super) fn status_code(frame: Option<Vec<u8>>) -> Vec<u8> {
    let mut frame = frame.unwrap_or_default();
    if frame.len() > 3 && frame[3] == b' ' {
        frame.truncate(3);
    }
    frame
}

fn unexpected(service: &str, code: &[u8]) -> Error {
    Error::Internal(format!(
        "{service} answered {:?} (500 is an internal error in titanic: see its log)",
        String::from_utf8_lossy(code)
    ))
}

/// One request through Titanic, the Guide's ticlient: `titanic.request`, then
/// `titanic.reply` every `poll_interval` until answered, then `titanic.close`. Each TSP call
/// has `timeout` per attempt and `retries` attempts; a Titanic that stays unreachable is
/// `Error::Unreachable` (the request may be stored: its UUID is in a warning event).
pub fn titanic_client(
    broker: &str,
    service: &str,
    body: Message,
    poll_interval: Duration,
    timeout: Duration,
    retries: u32,
    events: &mut Events,
) -> Result<Message> {
    let mut client = TitanicClient::connect(broker, timeout, retries)?;
    round_trip(&mut client, service, body, poll_interval, &mut true, events).map(|(reply, _)| reply)
}

/// One request through Titanic: submit, poll, close. While `check_service` is set, asks the
/// broker first whether anyone serves `service` and clears it once someone does, so a run
/// asks until it has seen a worker, not once per request.
fn round_trip(
    client: &mut TitanicClient,
    service: &str,
    body: Message,
    poll_interval: Duration,
    check_service: &mut bool,
    events: &mut Events,
) -> Result<(Message, u32)> {
    let uuid = client.submit(service, body)?;
    // The request's name from now on: a client that dies can fetch its reply by it.
    events.info(format!(
        "titanic stored the request as {uuid}; waiting for the reply"
    ));
    // Titanic keeps a request for a service nobody serves until someone does: say so, rather
    // than poll in silence.
    if *check_service {
        if client.has_workers(service)? {
            *check_service = false;
        } else {
            events.warn(format!(
                "no worker serves {service:?} now (mmi.service: 404): request {uuid} stays stored \
                 in titanic and is sent when one registers; waiting (Ctrl-C leaves it stored)"
            ));
        }
    }
    let (reply, polls) = client.wait_reply(&uuid, poll_interval).inspect_err(|e| {
        if matches!(e, Error::Unreachable(_)) {
            events.warn(format!(
                "request {uuid} is stored in titanic; fetch it later with \
                 `pirate client --service titanic.reply {uuid}`"
            ));
        }
    })?;
    // The reply is ours now; a failed close only leaves it stored until someone closes it.
    if let Err(e) = client.close(&uuid) {
        if matches!(e, Error::Interrupted) {
            return Err(e);
        }
        events.warn(format!("could not close {uuid}: {e}"));
    }
    Ok((reply, polls))
}

/// Everything `pirate client --titanic` needs.
#[derive(Clone, Debug)]
pub struct TitanicClientConfig {
    pub broker: String,
    pub service: String,
    /// Per attempt of each TSP call.
    pub timeout: Duration,
    pub retries: u32,
    /// Wait between `titanic.reply` polls while pending (the Guide's ticlient: 100 ms).
    pub poll_interval: Duration,
    /// Every reply must equal its request (`--count`, `--expect-echo`).
    pub check_echo: bool,
}

/// `pirate client --titanic`: each request through Titanic in turn, one `Reply` event each
/// (`attempts` = polls of `titanic.reply`), and a client report.
pub fn run_client(
    config: &TitanicClientConfig,
    requests: impl Iterator<Item = impl Into<Vec<u8>>>,
    stop: &Stop,
    events: &mut Events,
) -> Result<Report> {
    let started = Instant::now();
    let mut client = TitanicClient::connect(&config.broker, config.timeout, config.retries)?
        .with_stop(stop.clone());
    let mut latency = LatencyRecorder::default();
    let mut report = ClientReport::new(config.broker.clone());
    let mut check_service = true;
    events.emit(Event::started(
        format!("client (titanic {})", config.service),
        config.broker.clone(),
        None,
    ));
    for bytes in requests {
        let bytes = bytes.into();
        let request = String::from_utf8_lossy(&bytes).into_owned();
        report.requests += 1;
        report.sent += 1;
        let seq = report.requests;
        events.emit(Event::Sent {
            seq,
            request: request.clone(),
            attempt: 1,
        });
        let t0 = Instant::now();
        let body = Message::from_frames(vec![bytes]);
        match round_trip(
            &mut client,
            &config.service,
            body,
            config.poll_interval,
            &mut check_service,
            events,
        ) {
            Ok((reply, polls)) => {
                let text = reply.text();
                if config.check_echo && text != request {
                    // Titanic stores one reply per request: asking again gives the same.
                    report.mismatched += 1;
                    events.emit(Event::Mismatch {
                        seq,
                        expected: request.clone(),
                        got: text,
                    });
                    report.abandoned += 1;
                    report.outcome = Outcome::Abandoned;
                    events.emit(Event::Abandoned {
                        seq,
                        request,
                        attempts: polls,
                    });
                    break;
                }
                latency.record(t0.elapsed());
                report.replied += 1;
                events.emit(Event::Reply {
                    seq,
                    request,
                    reply: reply.joined().into(),
                    attempts: polls,
                    latency_ms: millis(t0.elapsed()),
                });
            }
            Err(Error::Interrupted) => {
                report.outcome = Outcome::Interrupted;
                break;
            }
            Err(Error::Unreachable(why)) => {
                events.error(why);
                report.abandoned += 1;
                report.outcome = Outcome::Abandoned;
                events.emit(Event::Abandoned {
                    seq,
                    request,
                    attempts: config.retries,
                });
                break;
            }
            Err(e) => return Err(e),
        }
    }
    report.timed(started.elapsed(), latency.summary());
    Ok(Report::Client(report))
}
