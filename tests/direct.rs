//! Direct messages and requests between agents over real QUIC sockets on this host, built
//! as the README shows (default builder and bind, bootstrap addresses as agents report them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use x0x::{Agent, AgentId, ErrorKind, Inbox};

const JOIN: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(10);

async fn agent(bootstrap: &[std::net::SocketAddr]) -> Agent {
    let mut builder = Agent::builder();
    for addr in bootstrap {
        builder.with_bootstrap(&addr.to_string()).unwrap();
    }
    let agent = builder.build().await.unwrap();
    agent.join_network(JOIN).await.unwrap();
    agent
}

/// Answers every request on `inbox` with `echo:` and its payload, until the inbox ends.
fn echo(inbox: Inbox) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut answered = 0;
        while let Some(batch) = inbox.next_batch(256).await {
            for message in batch {
                let reply = [&b"echo:"[..], message.payload()].concat();
                message.reply(Bytes::from(reply)).unwrap();
                answered += 1;
            }
        }
        answered
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_the_inbox_and_a_request_gets_its_reply() {
    let a = agent(&[]).await;
    let b = agent(&[a.local_addr()]).await;
    let inbox = b.inbox(16).unwrap();

    a.send(b.agent_id(), Bytes::from_static(b"hi b"), WAIT)
        .await
        .unwrap();
    let got = inbox.try_next_batch(16).unwrap();
    assert_eq!(got.len(), 1, "acknowledged once in the inbox");
    assert_eq!(got[0].payload(), &Bytes::from_static(b"hi b"));
    assert_eq!(got[0].sender(), a.agent_id());
    assert!(!got[0].is_request());
    let err = got[0].reply(Bytes::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    let server = echo(inbox);
    let reply = a
        .request(b.agent_id(), Bytes::from_static(b"ping"), WAIT)
        .await
        .unwrap();
    assert_eq!(reply, Bytes::from_static(b"echo:ping"));
    // And back the other way, over the same connection.
    let a_inbox = a.inbox(16).unwrap();
    b.send(a.agent_id(), Bytes::from_static(b"hi a"), WAIT)
        .await
        .unwrap();
    assert_eq!(a_inbox.try_next_batch(1).unwrap()[0].sender(), b.agent_id());
    assert_eq!(a.stats().direct_out, 2);
    assert_eq!(b.stats().direct_in, 2);

    a.close().await.unwrap();
    b.close().await.unwrap();
    assert_eq!(server.await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_failures_are_typed_and_carry_their_reason() {
    let a = agent(&[]).await;
    let b = agent(&[a.local_addr()]).await;

    // No inbox open at b.
    let err = a
        .send(b.agent_id(), Bytes::from_static(b"x"), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote, "{err}");
    assert!(err.message().contains("no inbox open"), "{err}");
    assert_eq!(b.stats().direct_refused, 1);

    // A handler failure, and a request dropped unanswered.
    let inbox = b.inbox(16).unwrap();
    let second = b.inbox(16).unwrap_err();
    assert_eq!(second.kind(), ErrorKind::InUse, "{second}");
    let server = tokio::spawn(async move {
        let batch = inbox.next_batch(1).await.unwrap();
        batch[0]
            .reply_error("summarizer crashed: empty text")
            .unwrap();
        let batch = inbox.next_batch(1).await.unwrap();
        drop(batch);
        inbox
    });
    let err = a
        .request(b.agent_id(), Bytes::from_static(b""), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote, "{err}");
    assert_eq!(err.message(), "summarizer crashed: empty text");
    let err = a
        .request(b.agent_id(), Bytes::from_static(b"y"), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote, "{err}");
    assert!(err.message().contains("without replying"), "{err}");
    let inbox = server.await.unwrap();
    inbox.close();
    drop(inbox);
    // Closed: the next inbox may open.
    let _inbox = b.inbox(16).unwrap();

    // Unknown agents, this agent itself, oversized payloads.
    let nobody = AgentId([7; 32]);
    let err = a
        .send(nobody, Bytes::from_static(b"x"), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = a
        .send(a.agent_id(), Bytes::from_static(b"x"), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = a
        .send(b.agent_id(), Bytes::from(vec![0; 256 * 1024 + 1]), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    // After a leave: not connected.
    a.leave_network().await.unwrap();
    let err = a
        .request(b.agent_id(), Bytes::from_static(b"x"), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ends_of_a_line_of_five_talk_directly() {
    let mut agents: Vec<Agent> = Vec::new();
    for _ in 0..5 {
        let bootstrap: Vec<_> = agents.last().map(Agent::local_addr).into_iter().collect();
        agents.push(agent(&bootstrap).await);
    }
    let (first, last) = (&agents[0], &agents[4]);
    let server = echo(last.inbox(16).unwrap());
    let reply = first
        .request(last.agent_id(), Bytes::from_static(b"across"), WAIT)
        .await
        .unwrap();
    assert_eq!(reply, Bytes::from_static(b"echo:across"));
    for middle in &agents[1..4] {
        assert_eq!(middle.stats().direct_in, 0, "no relay carried it");
    }
    for agent in &agents {
        agent.close().await.unwrap();
    }
    assert_eq!(server.await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_are_all_answered() {
    let a = Arc::new(agent(&[]).await);
    let b = agent(&[a.local_addr()]).await;
    let server = echo(b.inbox(1024).unwrap());
    let to = b.agent_id();
    let requests: Vec<_> = (0..1000u32)
        .map(|i| {
            let a = Arc::clone(&a);
            tokio::spawn(async move {
                let reply = a
                    .request(to, Bytes::from(i.to_string()), Duration::from_secs(30))
                    .await
                    .unwrap();
                assert_eq!(reply, Bytes::from(format!("echo:{i}")));
            })
        })
        .collect();
    for request in requests {
        request.await.unwrap();
    }
    assert_eq!(b.stats().direct_in, 1000);
    assert_eq!(b.stats().direct_refused, 0);
    a.close().await.unwrap();
    b.close().await.unwrap();
    assert_eq!(server.await.unwrap(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_recipient_fails_within_the_timeout() {
    let a = agent(&[]).await;
    let b = agent(&[a.local_addr()]).await;
    let server = echo(b.inbox(16).unwrap());
    let to = b.agent_id();
    a.request(to, Bytes::from_static(b"1"), WAIT).await.unwrap();
    b.close().await.unwrap();
    server.await.unwrap();
    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    let err = a
        .request(to, Bytes::from_static(b"2"), timeout)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::NotFound | ErrorKind::Timeout),
        "{err}"
    );
    assert!(
        started.elapsed() < timeout + Duration::from_secs(1),
        "no hang"
    );
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_left_in_a_dropped_inbox_is_refused_at_once() {
    let a = agent(&[]).await;
    let b = agent(&[a.local_addr()]).await;
    let inbox = b.inbox(16).unwrap();
    let started = Instant::now();
    let request = a.request(b.agent_id(), Bytes::from_static(b"unread"), WAIT);
    let drop_unread = async {
        while b.stats().direct_in == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Counted on arrival, queued just after.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(inbox);
    };
    let (result, ()) = tokio::join!(request, drop_unread);
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote, "{err}");
    assert!(err.message().contains("without replying"), "{err}");
    assert!(
        started.elapsed() < WAIT / 2,
        "refused at once, not at the timeout"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_given_just_before_the_recipient_closes_still_arrives() {
    let a = agent(&[]).await;
    for round in 0..10 {
        let b = agent(&[a.local_addr()]).await;
        let inbox = b.inbox(16).unwrap();
        let request = a.request(b.agent_id(), Bytes::from_static(b"last words?"), WAIT);
        let answer_and_close = async {
            let batch = inbox.next_batch(1).await.unwrap();
            batch[0].reply(Bytes::from_static(b"goodbye")).unwrap();
            b.close().await.unwrap();
        };
        let (reply, ()) = tokio::join!(request, answer_and_close);
        assert_eq!(
            reply.unwrap_or_else(|e| panic!("round {round}: {e}")),
            Bytes::from_static(b"goodbye")
        );
    }
    a.close().await.unwrap();
}
