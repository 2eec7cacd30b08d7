//! QUIC transport: one quinn endpoint per agent, TLS 1.3 with the X25519MLKEM768 hybrid key
//! exchange, and a hello on the first stream that binds each connection to an `AgentId`.
//!
//! TLS certificates are throwaway and self-signed: identity comes from the [`Hello`], an
//! ML-DSA-65 signature by the agent key over the connection's TLS exporter secret, which is
//! unique to this TLS session, with the machine key's endorsement of the agent key. A peer that
//! cannot produce both is dropped.
//!
//! [`Hello`]: crate::wire::Hello

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, RecvStream, SendStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;

use crate::error::{Error, ErrorKind, Result};
use crate::identity::AgentId;
use crate::wire::{self, Credentials, FrameKind, Hello, Role, MAX_FRAME_LEN};

/// Version 2: hellos by the agent key (version 1 peers fail the TLS handshake with "no
/// application protocol" rather than a hello that does not decode).
const ALPN: &[u8] = b"x0x/2";
/// Direct connections (`crate::direct`: messages and requests to one agent) negotiate this
/// instead, so the acceptor hands them to the direct layer rather than the overlay.
const ALPN_DIRECT: &[u8] = b"x0x-direct/1";

/// What a connection is for, as its TLS handshake negotiated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The gossip overlay (membership, topic swarms, the directory).
    Overlay,
    /// Direct messages and requests between two agents.
    Direct,
}
/// QUIC application close codes, the one list of them (a peer reads some to name the cause).
/// An ordinary end: leaving, a refused or finished neighbourship, a connection not needed.
pub const CLOSE_NORMAL: u32 = 0;
/// The hello named another agent than the one we dialed.
pub const CLOSE_UNEXPECTED_PEER: u32 = 1;
/// A frame's length prefix was over the limit (the stream cannot be resynchronised).
pub const CLOSE_FRAME_TOO_LARGE: u32 = 2;
/// The peer stopped reading: its unsent backlog passed the cap.
pub const CLOSE_TOO_SLOW: u32 = 3;
/// Too many invalid messages on one connection.
pub const CLOSE_INVALID_MESSAGES: u32 = 4;
/// The peer restarted: this is its old run's connection.
pub const CLOSE_PEER_RESTARTED: u32 = 5;
/// One of our streams to the peer failed (a peer can stop one stream and keep the rest).
pub const CLOSE_STREAM_FAILED: u32 = 6;
/// The peer is this very agent (it dialed its own address).
pub const CLOSE_SELF: u32 = 7;
/// The peer has an agent id that another live process has too (a shared agent key).
pub const CLOSE_DUPLICATE_IDENTITY: u32 = 8;

/// Why a dial reached this agent itself (either end may notice first: both say this).
pub fn self_dial_error() -> Error {
    Error::invalid_argument("that address is this agent's own")
}

/// Why a dial reached another process running as `me` (either end may notice first).
pub fn duplicate_identity_error(me: AgentId) -> Error {
    Error::new(
        ErrorKind::InUse,
        format!(
            "the agent there has this agent's id {me:?}: another process runs with the same \
             agent key (give each agent its own data dir or key)"
        ),
    )
}
/// The TLS server name every agent's certificate carries (certificates are throwaway).
pub const SERVER_NAME: &str = "x0x";
/// How long a handshake (QUIC + TLS + hello) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keep-alives make a silent peer's death visible within [`IDLE_TIMEOUT`]: the gossip layer has
/// no failure detector of its own. Until then a peer whose neighbours all died publishes into
/// the void (recovered when it gets new neighbours, see `overlay::node::Node::announce_recent`), so
/// the timeout bounds that delay: at 3 s it put R3's p99 over 2 s. Four keep-alives per
/// timeout: one lost on a lossy link does not end a live connection.
const KEEP_ALIVE: Duration = Duration::from_millis(500);
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    // Only the post-quantum hybrid: a handshake that succeeds has negotiated it.
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519MLKEM768];
    Arc::new(provider)
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("2 s is a valid QUIC idle timeout"),
    ));
    // The peer's payload lanes (streams::LANES) and a few more; a peer opening more waits.
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(16));
    // A direct connection carries one bidirectional stream per message or request in flight.
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(256));
    // BBR instead of the default Cubic: random loss is not congestion. Under 5% loss on 50 ms
    // RTT links (R1), Cubic's shrinking window queued payloads on busy links (p50 140 ms, p99
    // 490 ms, 0.76-0.86 duplicates per payload as late copies triggered grafts); BBR: p50 108
    // ms, p99 390-460 ms, 0.49-0.57. quinn marks its BBR experimental; this is measured here.
    transport.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    Arc::new(transport)
}

fn tls_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Crypto, format!("TLS setup failed: {e}"))
}

/// The agent's endpoint, and the client configuration its direct connections are dialed with
/// (the endpoint's default dials overlay connections).
pub struct Endpoint {
    pub endpoint: quinn::Endpoint,
    pub direct: quinn::ClientConfig,
}

/// Creates the agent's endpoint, bound to `bind`, accepting and opening connections.
pub fn endpoint(bind: SocketAddr) -> Result<Endpoint> {
    let provider = crypto_provider();
    let cert =
        rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()]).map_err(tls_error)?;
    let cert_der = CertificateDer::from(cert.cert.der().to_vec());
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));

    let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .map_err(tls_error)?;
    server.alpn_protocols = vec![ALPN.to_vec(), ALPN_DIRECT.to_vec()];
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server).map_err(tls_error)?,
    ));
    server_config.transport_config(transport_config());

    let verifier = Arc::new(AnyCertificate(provider.signature_verification_algorithms));
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let mut direct = client.clone();
    client.alpn_protocols = vec![ALPN.to_vec()];
    direct.alpn_protocols = vec![ALPN_DIRECT.to_vec()];
    let client_config = |tls: rustls::ClientConfig| -> Result<quinn::ClientConfig> {
        let mut config = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(tls).map_err(tls_error)?,
        ));
        config.transport_config(transport_config());
        Ok(config)
    };
    let direct = client_config(direct)?;
    let client_config = client_config(client)?;

    let mut endpoint = quinn::Endpoint::server(server_config, bind)
        .map_err(|e| Error::io(format_args!("cannot bind UDP {bind}"), &e))?;
    endpoint.set_default_client_config(client_config);
    Ok(Endpoint { endpoint, direct })
}

/// Accepts any certificate but still checks the TLS handshake signature: who the peer is gets
/// decided by its [`Hello`], which is bound to this very TLS session.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A connection whose peer has proved its `AgentId`.
pub struct Authenticated {
    /// The peer: its agent id.
    pub peer: AgentId,
    /// The peer agent run's incarnation (changes when it restarts).
    pub incarnation: u64,
    /// Where the peer accepts connections.
    pub listen: SocketAddr,
    /// Other peers' addresses the peer passed on (see [`Hello::peers`]; at most
    /// [`wire::HELLO_PEERS`]).
    pub peers: Vec<SocketAddr>,
    /// What the connection is for.
    pub purpose: Purpose,
    /// The peer's machine, as its machine key's endorsement in the hello proved it.
    pub machine: crate::identity::MachineId,
    /// The QUIC connection.
    pub connection: Connection,
    /// Our half of the frame stream.
    pub send: SendStream,
    /// The peer's half of the frame stream.
    pub recv: RecvStream,
}

fn exporter_secret(connection: &Connection) -> Result<[u8; 32]> {
    let mut secret = [0u8; 32];
    connection
        .export_keying_material(&mut secret, wire::EXPORTER_LABEL, b"")
        .map_err(|_| Error::new(ErrorKind::Crypto, "TLS exporter unavailable"))?;
    Ok(secret)
}

/// Where to send packets for `addr`: an unspecified address (`0.0.0.0`, `::`, what an agent
/// bound to a wildcard reports as its address) means this host, so its loopback address.
pub fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// The addresses that reach an endpoint bound to `bound`: `bound` itself, or for a wildcard
/// each address of that family on this host's interfaces, loopback first.
pub fn local_addrs(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|interface| interface.ip())
        .filter(|ip| ip.is_ipv4() == bound.is_ipv4())
        .collect();
    ips.sort_by_key(|ip| !ip.is_loopback());
    ips.dedup();
    if ips.is_empty() {
        // No interface list (a restricted sandbox): this host can still dial itself.
        return vec![dialable(bound)];
    }
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect()
}

/// The address an endpoint bound to `bound` tells peers, in hellos and through the gossip
/// layer, which relays it to peers on other hosts: never a wildcard, which would name each
/// receiver's own host. The first non-loopback interface address (a laptop's LAN address, a
/// container's), or loopback on a host with no other. Peers that connect to us directly use
/// the address they reached us at instead (`reachable`).
pub fn advertised(bound: SocketAddr) -> SocketAddr {
    let addrs = local_addrs(bound);
    addrs
        .iter()
        .find(|addr| !addr.ip().is_loopback())
        .or(addrs.first())
        .copied()
        .unwrap_or_else(|| dialable(bound))
}

/// Dials `addr` for an overlay connection and authenticates the peer; `expected` rejects
/// anyone else. `peers` go to the peer as hints (see [`Hello::peers`]).
pub async fn dial(
    endpoint: &quinn::Endpoint,
    credentials: &Credentials,
    listen: SocketAddr,
    addr: SocketAddr,
    expected: Option<AgentId>,
    peers: Vec<SocketAddr>,
) -> Result<Authenticated> {
    let connecting = endpoint.connect(dialable(addr), SERVER_NAME);
    dial_with(connecting, credentials, listen, addr, expected, peers).await
}

/// Dials `addr` for a direct connection to the agent `expected`.
pub async fn dial_direct(
    endpoint: &Endpoint,
    credentials: &Credentials,
    listen: SocketAddr,
    addr: SocketAddr,
    expected: AgentId,
) -> Result<Authenticated> {
    let connecting =
        endpoint
            .endpoint
            .connect_with(endpoint.direct.clone(), dialable(addr), SERVER_NAME);
    dial_with(
        connecting,
        credentials,
        listen,
        addr,
        Some(expected),
        Vec::new(),
    )
    .await
}

async fn dial_with(
    connecting: std::result::Result<quinn::Connecting, quinn::ConnectError>,
    credentials: &Credentials,
    listen: SocketAddr,
    addr: SocketAddr,
    expected: Option<AgentId>,
    peers: Vec<SocketAddr>,
) -> Result<Authenticated> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let cannot = |e: &dyn std::fmt::Display| {
            Error::new(ErrorKind::Io, format!("cannot connect to {addr}: {e}"))
        };
        let connection = connecting
            .map_err(|e| cannot(&e))?
            .await
            .map_err(|e| cannot(&e))?;
        let exchange = async {
            let (mut send, mut recv) = connection.open_bi().await.map_err(conn_error)?;
            let secret = exporter_secret(&connection)?;
            let hello = Hello::new(credentials, Role::Dialer, &secret, listen)?.with_peers(peers);
            write_frame(&mut send, &wire::encode(&hello)?).await?;
            let theirs: Hello = read_hello(&mut recv).await?;
            let sender = theirs.verify(Role::Acceptor, &secret)?;
            Ok((theirs, sender, send, recv))
        };
        let (theirs, sender, send, recv) = match exchange.await {
            Ok(done) => done,
            // "connection lost" says nothing: the peer's reason for closing does.
            Err(e) => return Err(with_close_reason(e, &connection, credentials.agent_id())),
        };
        let peer = sender.agent_key.agent_id();
        if expected.is_some_and(|expected| expected != peer) {
            connection.close(CLOSE_UNEXPECTED_PEER.into(), b"unexpected peer");
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("{addr} is {peer:?}, not the expected {expected:?}"),
            ));
        }
        Ok(Authenticated {
            peer,
            incarnation: theirs.incarnation,
            listen: reachable(theirs.listen, &connection),
            peers: hints(theirs.peers),
            purpose: purpose_of(&connection),
            machine: sender.machine,
            connection,
            send,
            recv,
        })
    })
    .await
    .map_err(|_| {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "no answer from {addr} within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ),
        )
    })?
}

/// `error`, with the peer's reason when the peer closed `connection` (it names the cause, such
/// as a peer that is this agent itself).
fn with_close_reason(error: Error, connection: &Connection, me: AgentId) -> Error {
    match connection.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => {
            match u32::try_from(close.error_code.into_inner()) {
                Ok(CLOSE_DUPLICATE_IDENTITY) => duplicate_identity_error(me),
                Ok(CLOSE_SELF) => self_dial_error(),
                _ => Error::new(
                    error.kind(),
                    format!(
                        "the peer closed the connection: {}",
                        String::from_utf8_lossy(&close.reason)
                    ),
                ),
            }
        }
        _ => error,
    }
}

/// Authenticates an incoming connection; `peers` go to the peer as hints.
pub async fn accept(
    incoming: quinn::Incoming,
    credentials: &Credentials,
    listen: SocketAddr,
    peers: Vec<SocketAddr>,
) -> Result<Authenticated> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let connection = incoming.await.map_err(conn_error)?;
        let (mut send, mut recv) = connection.accept_bi().await.map_err(conn_error)?;
        let secret = exporter_secret(&connection)?;
        let theirs: Hello = read_hello(&mut recv).await?;
        let sender = theirs.verify(Role::Dialer, &secret)?;
        let hello = Hello::new(credentials, Role::Acceptor, &secret, listen)?.with_peers(peers);
        write_frame(&mut send, &wire::encode(&hello)?).await?;
        Ok(Authenticated {
            peer: sender.agent_key.agent_id(),
            incarnation: theirs.incarnation,
            listen: reachable(theirs.listen, &connection),
            peers: hints(theirs.peers),
            purpose: purpose_of(&connection),
            machine: sender.machine,
            connection,
            send,
            recv,
        })
    })
    .await
    .map_err(|_| Error::new(ErrorKind::Timeout, "incoming handshake timed out"))?
}

/// What the TLS handshake of `connection` negotiated it for.
fn purpose_of(connection: &Connection) -> Purpose {
    let protocol = connection
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    match protocol.as_deref() {
        Some(ALPN_DIRECT) => Purpose::Direct,
        _ => Purpose::Overlay,
    }
}

/// A peer bound to `0.0.0.0` announces an unspecified IP: use the one it connected from.
fn reachable(announced: SocketAddr, connection: &Connection) -> SocketAddr {
    if announced.ip().is_unspecified() {
        SocketAddr::new(connection.remote_address().ip(), announced.port())
    } else {
        announced
    }
}

/// A peer's hints, cut to the first [`wire::HELLO_PEERS`], without unspecified addresses.
fn hints(mut peers: Vec<SocketAddr>) -> Vec<SocketAddr> {
    peers.truncate(wire::HELLO_PEERS);
    peers.retain(|addr| !addr.ip().is_unspecified() && addr.port() != 0);
    peers
}

fn conn_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("connection failed: {e}"))
}

async fn read_hello(recv: &mut RecvStream) -> Result<Hello> {
    let frame = read_frame(recv)
        .await?
        .ok_or_else(|| Error::new(ErrorKind::Protocol, "the peer closed before its hello"))?;
    postcard::from_bytes(&frame)
        .map_err(|_| Error::new(ErrorKind::Protocol, "the peer's hello does not decode"))
}

/// Appends one frame (length prefix + bytes) to `out`.
pub fn put_frame(out: &mut BytesMut, frame: &[u8]) {
    out.reserve(4 + frame.len());
    out.put_u32(u32::try_from(frame.len()).expect("frames are far below 4 GiB"));
    out.put_slice(frame);
}

/// Appends one frame after the hello: length prefix, `kind`, then `body`.
pub fn put_frame_of(out: &mut BytesMut, kind: FrameKind, body: &[u8]) {
    out.reserve(5 + body.len());
    out.put_u32(u32::try_from(1 + body.len()).expect("frames are far below 4 GiB"));
    out.put_u8(kind as u8);
    out.put_slice(body);
}

async fn write_frame(send: &mut SendStream, frame: &[u8]) -> Result<()> {
    let mut buf = BytesMut::new();
    put_frame(&mut buf, frame);
    send.write_all(&buf).await.map_err(conn_error)
}

/// Why reading a frame failed.
#[derive(Debug)]
pub enum ReadError {
    /// The length prefix is over [`MAX_FRAME_LEN`]: the peer is broken or hostile.
    Oversized(usize),
    /// The stream or connection failed.
    Io(String),
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame_checked(
    recv: &mut RecvStream,
) -> std::result::Result<Option<Bytes>, ReadError> {
    let len = match recv.read_u32().await {
        Ok(len) => len as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(ReadError::Io(e.to_string())),
    };
    if len > MAX_FRAME_LEN {
        return Err(ReadError::Oversized(len));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf)
        .await
        .map_err(|e| ReadError::Io(e.to_string()))?;
    Ok(Some(Bytes::from(buf)))
}

async fn read_frame(recv: &mut RecvStream) -> Result<Option<Bytes>> {
    read_frame_checked(recv).await.map_err(|e| match e {
        ReadError::Oversized(len) => Error::new(
            ErrorKind::Protocol,
            format!("the peer sent a {len}-byte frame; the limit is {MAX_FRAME_LEN}"),
        ),
        ReadError::Io(e) => Error::new(ErrorKind::Io, format!("connection failed: {e}")),
    })
}
