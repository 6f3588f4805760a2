//! The three 9/TSP services as answers from the store: `titanic.request` stores (durably,
//! within the bounds), `titanic.reply` looks up, `titanic.close` forgets. Pure functions of
//! the store and the request body; the machine in [`super`] calls them and sends what they
//! return.

use crate::event::{Events, ServiceReport};
use crate::msg::Message;
use crate::proto::tsp::{Uuid, ERROR, OK, PENDING, REQUEST, UNKNOWN};

use super::store::Store;
use super::Limits;

/// Counts a malformed TSP body (400 on `titanic.request`) and logs internal errors.
pub(super) fn note_failure(
    reply: &Message,
    service: &str,
    report: &mut ServiceReport,
    events: &mut Events,
) {
    match reply.get(0) {
        Some(s) if s.starts_with(b"500 ") => events.warn(format!("{service}: {}", reply.text())),
        Some(s) if s == ERROR => events.error(format!("{service}: {}", reply.text())),
        Some(s) if s == UNKNOWN && service == REQUEST => {
            report.invalid += 1;
            events.invalid(
                service,
                "need a service name and at least one request frame",
            );
        }
        _ => {}
    }
}

pub(super) fn status(code: &[u8]) -> Message {
    Message::from_frames(vec![code.to_vec()])
}

/// `titanic.request`: [service, request frames…] → ["200", uuid] once stored durably,
/// ["400"] when the service or the request is missing, ["500 request too big …"] or
/// ["500 store full …"] past `limits`, ["500"] when the store failed.
pub fn handle_request(
    store: &mut Store,
    mut body: Message,
    limits: &Limits,
) -> (Message, Option<Uuid>) {
    let bytes: u64 = body.iter().map(|f| f.len() as u64).sum();
    if bytes > limits.max_request_bytes {
        let why = format!(
            "500 request too big: {bytes} bytes, at most {} (--max-request-bytes)",
            limits.max_request_bytes
        );
        return (status(why.as_bytes()), None);
    }
    if store.live_bytes() >= limits.max_store_bytes {
        let why = format!(
            "500 store full: {} bytes stored, at most {} (--max-store-bytes); close the \
             requests whose replies you have",
            store.live_bytes(),
            limits.max_store_bytes
        );
        return (status(why.as_bytes()), None);
    }
    let service = match body.pop_front().map(String::from_utf8) {
        Some(Ok(s)) if !s.is_empty() && !body.is_empty() => s,
        _ => return (status(UNKNOWN), None),
    };
    let mut uuid = Uuid::random();
    while store.get(&uuid).is_some() {
        uuid = Uuid::random();
    }
    match store.put_request(uuid, &service, &body) {
        Ok(()) => (
            Message::from_frames(vec![OK.to_vec(), uuid.to_string().into_bytes()]),
            Some(uuid),
        ),
        Err(_) if store.out_of_space() => (
            status(
                b"500 disk full: the request could not be written to the store; try again later",
            ),
            None,
        ),
        Err(_) => (status(ERROR), None),
    }
}

/// `titanic.reply`: [uuid] → ["200", reply…] | ["300"] | ["400"]. Never deletes.
pub fn handle_reply(store: &Store, body: Message) -> Message {
    let entry = match (body.len(), body.get(0).and_then(Uuid::parse)) {
        (1, Some(uuid)) => store.get(&uuid),
        _ => None,
    };
    match entry {
        Some(e) => match &e.reply {
            Some(reply) => {
                let mut msg = reply.clone();
                msg.push_front(OK.to_vec());
                msg
            }
            None => status(PENDING),
        },
        None => status(UNKNOWN),
    }
}

/// `titanic.close`: [uuid] → ["200"], whether or not the UUID was known; ["500"] if the
/// store could not record the close.
pub fn handle_close(store: &mut Store, body: Message) -> Message {
    match body.get(0).and_then(Uuid::parse) {
        Some(uuid) if body.len() == 1 => match store.close(uuid) {
            Ok(_) => status(OK),
            Err(_) => status(ERROR),
        },
        _ => status(OK),
    }
}
