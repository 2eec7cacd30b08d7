//! Agents talking over real QUIC sockets on 127.0.0.1 (in one process; the Python and C suites
//! cover separate processes).

use std::time::Duration;

use bytes::Bytes;
use x0x::{Agent, ErrorKind};

const JOIN: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(10);

async fn agent(bootstrap: &[std::net::SocketAddr]) -> Agent {
    let mut builder = Agent::builder();
    builder
        .with_ephemeral_machine_key()
        .with_bind("127.0.0.1:0".parse().unwrap());
    for addr in bootstrap {
        builder.with_bootstrap(&addr.to_string()).unwrap();
    }
    builder.build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_exchange_signed_messages() {
    let a = agent(&[]).await;
    a.join_network(JOIN).await.unwrap();
    let b = agent(&[a.local_addr()]).await;
    let sub_a = a.subscribe("chat").unwrap();
    b.join_network(JOIN).await.unwrap();
    assert!(b.is_connected());
    let sub_b = b.subscribe("chat").unwrap();

    b.publish("chat", Bytes::from_static(b"hello from b"))
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, sub_a.next_batch(16))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got[0].payload, Bytes::from_static(b"hello from b"));
    assert_eq!(got[0].sender, b.agent_id());
    assert_eq!(&*got[0].topic, "chat");

    // The publisher's own subscription gets its message too.
    let own = tokio::time::timeout(WAIT, sub_b.next_batch(16))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own[0].payload, Bytes::from_static(b"hello from b"));

    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_before_join_is_not_connected() {
    let a = agent(&[]).await;
    let err = a.publish("t", Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected);
    a.join_network(JOIN).await.unwrap();
    a.publish("t", Bytes::from_static(b"x")).await.unwrap();
    a.leave_network().await.unwrap();
    let err = a.publish("t", Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected);
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_bootstrap_times_out_with_a_clear_message() {
    // A bound but silent UDP socket: the QUIC handshake never gets an answer.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = agent(&[silent.local_addr().unwrap()]).await;
    let err = a
        .join_network(Duration::from_millis(700))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        err.message().contains("could not join the network"),
        "{err}"
    );
    assert!(
        err.message()
            .contains(&silent.local_addr().unwrap().to_string()),
        "{err}"
    );
    // The failed join is over: publishing must not pretend to work (it once did for the
    // rest of the 5 s handshake timeout).
    let err = a.publish("t", Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    tokio::time::sleep(Duration::from_secs(6)).await; // past the handshake timeout
    let err = a.publish("t", Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    a.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_agents_in_a_line_all_receive() {
    let mut agents = vec![agent(&[]).await];
    agents[0].join_network(JOIN).await.unwrap();
    for i in 1..5 {
        let prev = agents[i - 1].local_addr();
        let next = agent(&[prev]).await;
        next.join_network(JOIN).await.unwrap();
        agents.push(next);
    }
    let subs: Vec<_> = agents
        .iter()
        .map(|a| a.subscribe("line").unwrap())
        .collect();
    agents[4]
        .publish("line", Bytes::from_static(b"end to end"))
        .await
        .unwrap();
    for (i, sub) in subs.iter().enumerate() {
        let got = tokio::time::timeout(WAIT, sub.next_batch(4))
            .await
            .unwrap_or_else(|_| panic!("agent {i} got nothing"))
            .unwrap();
        assert_eq!(
            got[0].payload,
            Bytes::from_static(b"end to end"),
            "agent {i}"
        );
    }
    for a in &agents {
        a.close().await.unwrap();
    }
}
