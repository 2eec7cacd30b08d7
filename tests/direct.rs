//! Direct messages and requests between agents over real QUIC sockets on this host, built
//! as the README shows (default builder and bind, bootstrap addresses as agents report them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use x0x::{Agent, AgentId, ErrorKind, Inbox};

mod common;

const JOIN: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(10);

/// An agent from the default builder, joined through `bootstrap`.
async fn agent(bootstrap: &[std::net::SocketAddr]) -> Agent {
    let agent = common::agent(bootstrap).await;
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

/// Waits until `agent` holds the card of `of`, or panics after [`WAIT`].
async fn wait_for_card(agent: &Agent, of: AgentId) -> x0x::AgentInfo {
    let started = Instant::now();
    loop {
        if let Some(info) = agent.peers().into_iter().find(|p| p.agent_id == of) {
            return info;
        }
        assert!(started.elapsed() < WAIT, "no card of {of:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_found_by_capability_with_verified_cards() {
    let mut builder = Agent::builder();
    builder
        .with_capabilities(["summarize", "translate:fr"])
        .unwrap()
        .with_info([("model".to_owned(), "small".to_owned())].into())
        .unwrap();
    let a = builder.build().await.unwrap();
    a.join_network(JOIN).await.unwrap();
    let mut line = vec![];
    for _ in 0..4 {
        let bootstrap = line.last().map_or(a.local_addr(), Agent::local_addr);
        line.push(agent(&[bootstrap]).await);
    }
    let far = &line[3];
    let found = far
        .find("summarize", Duration::from_secs(5), None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].agent_id, a.agent_id());
    assert_eq!(found[0].machine_id, a.machine_id());
    assert_eq!(found[0].capabilities, ["summarize", "translate:fr"]);
    assert_eq!(found[0].info["model"], "small");
    assert!(found[0]
        .addresses
        .iter()
        .any(|addr| addr.port() == a.local_addr().port()));
    // Then known: a second find answers from the card held, and the agent takes requests.
    assert!(far.peers().iter().any(|p| p.agent_id == a.agent_id()));
    let found = far
        .find("translate:fr", Duration::from_secs(5), Some(1))
        .await
        .unwrap();
    assert_eq!(found[0].agent_id, a.agent_id());
    assert!(far
        .find("nobody-does-this", Duration::from_millis(500), None)
        .await
        .unwrap()
        .is_empty());
    for bad in ["", "two words"] {
        let err = far.find(bad, WAIT, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    }

    // Advertising something else: the old capability's record is taken back and the card
    // that finders fetch says so.
    a.advertise(vec!["review".to_owned()], None).unwrap();
    let started = Instant::now();
    loop {
        let card = wait_for_card(far, a.agent_id()).await;
        if card.capabilities == ["review"] {
            assert_eq!(card.info["model"], "small", "info kept");
            break;
        }
        assert!(started.elapsed() < WAIT, "the new card did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let found = line[1]
        .find("review", Duration::from_secs(5), None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(line[2]
        .find("summarize", Duration::from_secs(2), None)
        .await
        .unwrap()
        .is_empty());
    let err = Agent::builder()
        .with_capabilities(vec!["x".repeat(129)])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    // Leaving: peers that hold its card hear of it at once.
    let events = far.events().unwrap();
    a.leave_network().await.unwrap();
    let started = Instant::now();
    'left: loop {
        let batch = tokio::time::timeout(WAIT, events.next_batch(16))
            .await
            .unwrap()
            .unwrap();
        for event in batch {
            if event == x0x::Event::AgentLeft(a.agent_id()) {
                break 'left;
            }
        }
        assert!(started.elapsed() < WAIT);
    }
    assert!(!far.peers().iter().any(|p| p.agent_id == a.agent_id()));
    a.close().await.unwrap();
    for agent in &line {
        agent.close().await.unwrap();
    }
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
