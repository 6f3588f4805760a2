//! The same shapes through nats-server, with the official Rust client (async-nats):
//! responders in a queue group (NATS load-balances requests over them, as a broker does over
//! workers), and a requester with `--in-flight` requests outstanding on one connection (the
//! client multiplexes their replies over one inbox subscription).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::args::Flags;
use crate::latency::Latencies;

/// `nats-responder --url URL --subject S`: one connection, echoes every request until
/// killed; prints `ready` once subscribed.
pub fn responder(flags: &Flags) -> Result<(), String> {
    let url = flags.text("url")?.to_string();
    let subject = flags.text("subject")?.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
        let mut requests = client
            .queue_subscribe(subject, "bench".into())
            .await
            .map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())?;
        println!("ready");
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                client
                    .publish(reply, request.payload)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })
}

/// `nats-requester --url URL --subject S --in-flight N --duration D --size BYTES`: prints one
/// JSON record. Runs on two runtime threads (the machine's cores).
pub fn requester(flags: &Flags) -> Result<(), String> {
    let url = flags.text("url")?.to_string();
    let subject = flags.text("subject")?.to_string();
    let in_flight = flags.number("in-flight", 1)?.max(1);
    let duration = flags.duration("duration", Duration::from_secs(2))?;
    let body = bytes::Bytes::from(vec![b'.'; flags.number("size", 11)?]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
        // The responders are up once one request has been answered.
        client
            .request(subject.clone(), body.clone())
            .await
            .map_err(|e| format!("no responder: {e}"))?;
        let over = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                let (client, subject, body, over) =
                    (client.clone(), subject.clone(), body.clone(), over.clone());
                tokio::spawn(async move {
                    let mut latencies = Latencies::default();
                    while !over.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        client
                            .request(subject.clone(), body.clone())
                            .await
                            .map_err(|e| e.to_string())?;
                        latencies.record(sent.elapsed());
                    }
                    Ok::<_, String>(latencies)
                })
            })
            .collect();
        tokio::time::sleep(duration).await;
        over.store(true, Ordering::Relaxed);
        let mut all = Latencies::default();
        for task in tasks {
            all.merge(&task.await.map_err(|e| e.to_string())??);
        }
        println!("{}", all.record_json(started.elapsed()));
        Ok(())
    })
}

/// `nats-load --url URL --workers N --in-flight W --count K`: nats-server's side of the
/// "broker alone" table, the counterpart of pirate's `examples/mdp_load.rs`: N responders
/// (a connection each, in a queue group) and W requests in flight on one requester
/// connection, all in this one process (two runtime threads), until K requests are
/// answered. Prints `workers=N window=W count=K secs=S rps=R`, as `mdp_load` does.
pub fn load(flags: &Flags) -> Result<(), String> {
    let url = flags.text("url")?.to_string();
    let workers = flags.number("workers", 10)?.max(1);
    let in_flight = flags.number("in-flight", 100)?.max(1);
    let count = flags.number("count", 100_000)?.max(1);
    let body = bytes::Bytes::from_static(b"hello world");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        for _ in 0..workers {
            let client = async_nats::connect(url.clone())
                .await
                .map_err(|e| e.to_string())?;
            let mut requests = client
                .queue_subscribe("echo", "bench".into())
                .await
                .map_err(|e| e.to_string())?;
            client.flush().await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                while let Some(request) = requests.next().await {
                    if let Some(reply) = request.reply {
                        let _ = client.publish(reply, request.payload).await;
                    }
                }
            });
        }
        let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
        let left = Arc::new(std::sync::atomic::AtomicUsize::new(count));
        let started = Instant::now();
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                let (client, body, left) = (client.clone(), body.clone(), left.clone());
                tokio::spawn(async move {
                    while left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        client
                            .request("echo", body.clone())
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(())
                })
            })
            .collect();
        for task in tasks {
            task.await.map_err(|e| e.to_string())??;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "workers={workers} window={in_flight} clients=1 count={count} secs={secs:.3} rps={:.0}",
            count as f64 / secs
        );
        Ok(())
    })
}
