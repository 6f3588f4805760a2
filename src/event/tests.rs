//! Unit tests of events and reports: their JSON, the event sink, the report counters.

use super::*;

#[test]
fn a_client_report_times_its_run_as_replies_per_second() {
    let mut r = ClientReport::new("tcp://a:1");
    r.replied = 50;
    let latency = Latency {
        p50: 1.0,
        ..Latency::default()
    };
    r.timed(Duration::from_millis(2000), latency.clone());
    assert_eq!((r.elapsed_ms, r.req_per_s), (2000.0, 25.0));
    assert_eq!(r.latency_ms, latency);
    r.timed(Duration::ZERO, Latency::default());
    assert_eq!(r.req_per_s, 0.0, "no division by zero");
}

#[test]
fn a_service_starts_with_an_event_and_a_stop_request_ends_it_normally() {
    let (report, seen) =
        crate::testkit::collect(|events| ServiceReport::start("server", "tcp://*:1", 9, events));
    assert_eq!((report.endpoint.as_str(), report.seed), ("tcp://*:1", 9));
    assert!(matches!(
        &seen[..],
        [Event::Started { role, endpoint, seed: Some(9), .. }]
            if role == "server" && endpoint == "tcp://*:1"
    ));
    assert!(matches!(
        report.clone().finish(Err(Error::Interrupted)),
        Ok(Report::Service(_))
    ));
    assert!(matches!(
        report.clone().finish(Ok(())),
        Ok(Report::Service(_))
    ));
    assert!(matches!(
        report.finish(Err(Error::Internal("boom".into()))),
        Err(Error::Internal(_))
    ));
}

#[test]
fn serving_counts_the_reply_and_describes_the_request() {
    let body = Message::from_frames(vec![b"hello".to_vec(), b"you".to_vec()]);
    let started = Instant::now() - std::time::Duration::from_millis(5);
    let serving = Serving::new(7, &body, started);
    let mut report = ServiceReport::default();
    let ((), seen) = crate::testkit::collect(|events| serving.served(&mut report, events));
    assert_eq!(report.replied, 1);
    let [Event::Served {
        cycle,
        request,
        bytes,
        work_ms,
    }] = &seen[..]
    else {
        panic!("expected one Served event, got {seen:?}")
    };
    assert_eq!(
        (*cycle, request.as_str(), *bytes),
        (7, body.preview().as_str(), 8)
    );
    assert!(*work_ms >= 5.0, "{work_ms}");
}

#[test]
fn events_serialise_with_an_event_tag() {
    let e = crate::testkit::reply_event(b"\xff1");
    let v: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(v["event"], "reply");
    assert_eq!(
        v["reply"], "\u{fffd}1",
        "bytes that are not UTF-8 show as U+FFFD"
    );
    assert_eq!(v["attempts"], 1);
}

#[test]
fn summary_flattens_the_report() {
    let e = Event::Summary(Report::Service(ServiceReport {
        requests: 3,
        ..Default::default()
    }));
    let v: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(v["event"], "summary");
    assert_eq!(v["requests"], 3);
}
