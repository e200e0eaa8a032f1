//! The project's own SSTP client: a tokio driver around [`sstp_proto::ClientConnection`].
//!
//! It connects over TCP, does the TLS handshake with tokio-rustls (verifying the server against a
//! given CA or root store), takes the crypto-binding certificate hash from the leaf the server
//! presented, and then runs one task that moves bytes, time and IP packets between the socket
//! and the state machine. The integration tests and the load tool use it; a [`Client`] is a handle
//! to that task:
//!
//! ```no_run
//! # async fn demo(options: sstp_gateway::client::ClientOptions) -> Result<(), sstp_gateway::client::ClientError> {
//! let mut client = sstp_gateway::client::Client::connect(options).await?;
//! let address = client.wait_up().await?;
//! client.send_ip(bytes::Bytes::from_static(&[0x45])).await?;
//! let reply = client.recv_ip().await;
//! let reason = client.disconnect().await;
//! # Ok(()) }
//! ```

mod driver;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use rustls::{
    CipherSuite, ProtocolVersion, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use sstp_ppp::dhcp_inform::Ack;
use sstp_proto::{CertHashes, ClientConfig, ClientProfile, CloseReason, HashProtocol, Recorded};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_rustls::TlsConnector;

/// Everything needed to open one SSTP call.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The gateway's TLS address.
    pub server: SocketAddr,
    /// The name the certificate is checked against (also the SNI).
    pub server_name: ServerName<'static>,
    /// The TLS configuration (roots, versions). See [`tls_config_with_ca`].
    pub tls: Arc<rustls::ClientConfig>,
    /// The SSTP and PPP configuration: user, password, Host header, timers, quirks.
    pub sstp: ClientConfig,
    /// Local address to connect from (e.g. `127.0.0.2` to appear as another source on loopback).
    pub bind: Option<IpAddr>,
    /// Deadline for TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Capacity of the received-IP queue; packets beyond it are dropped, as a NIC would.
    pub rx_queue: usize,
    /// Bytes written on the TCP connection before TLS: a PROXY protocol header, to play the
    /// load balancer in front of a gateway with `proxyProtocol` on.
    pub proxy_header: Option<Vec<u8>>,
    /// Send a DHCPINFORM once IPCP is up, as Windows RAS does (see [`windows_inform`]), and
    /// keep the DHCPACK ([`Client::wait_dhcp_ack`]) instead of handing it to `recv_ip`.
    pub dhcp_inform: bool,
}

impl ClientOptions {
    /// Options with the defaults: no bind address, 10 s connect deadline, 1024-packet queue.
    pub fn new(
        server: SocketAddr,
        server_name: ServerName<'static>,
        tls: Arc<rustls::ClientConfig>,
        sstp: ClientConfig,
    ) -> Self {
        Self {
            server,
            server_name,
            tls,
            sstp,
            bind: None,
            connect_timeout: Duration::from_secs(10),
            rx_queue: 1024,
            proxy_header: None,
            dhcp_inform: false,
        }
    }

    /// Options playing `profile`: the SSTP/PPP knobs ([`ClientProfile::apply`]), the TLS
    /// versions and suites over `roots` ([`tls_config_for_profile`]) and, for Windows, the
    /// DHCPINFORM after IPCP. The SNI is `server_name`, the name dialled: rustls sends it for
    /// every DNS name, as Windows does (windows-client.md §1.1, the SSToPer ClientHello).
    pub fn for_profile(
        profile: ClientProfile,
        server: SocketAddr,
        server_name: ServerName<'static>,
        roots: RootCertStore,
        sstp: ClientConfig,
    ) -> Self {
        let mut options = Self::new(
            server,
            server_name,
            tls_config_for_profile(profile, roots),
            sstp.with_profile(profile),
        );
        // Windows RAS asks for what IPCP cannot carry with a DHCPINFORM (§1.9).
        options.dhcp_inform = profile.is_windows();
        options
    }
}

/// The TLS configuration of `profile` over `roots`.
///
/// - Windows 10: TLS 1.2 only ("TLS 1.3 is not currently supported in Windows 10",
///   windows-client.md §1.1, Hicks). Suites: the AEAD ECDHE suites of Schannel's Windows 10
///   default list in its order (ECDSA before RSA, AES-256 before AES-128: learn.microsoft.com
///   "TLS Cipher Suites in Windows 10 v1903"; the order is not in windows-client.md). Against an
///   RSA certificate that makes ECDHE-RSA-AES256-GCM-SHA384, what Windows 10 negotiated with
///   SoftEther (§1.1, SoftEther #1169, #1396).
/// - Windows 11: TLS 1.3 first (§1.1: TLS 1.3 for SSTP needs Windows 11), AES-256 then
///   AES-128 GCM (Schannel ships no ChaCha20), TLS 1.2 as above as the fallback.
/// - sstpc: rustls' defaults (TLS 1.3 and 1.2), as OpenSSL's.
///
/// Key exchange groups for Windows: X25519, P-256, P-384 (no post-quantum hybrid).
pub fn tls_config_for_profile(
    profile: ClientProfile,
    roots: RootCertStore,
) -> Arc<rustls::ClientConfig> {
    use rustls::crypto::aws_lc_rs::{self as provider, cipher_suite as cs, kx_group};
    let tls12 = [
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    let (suites, versions): (Vec<_>, &[&rustls::SupportedProtocolVersion]) = match profile {
        ClientProfile::Sstpc => return tls_config_with_roots(roots),
        ClientProfile::Windows10 => (tls12.to_vec(), &[&rustls::version::TLS12]),
        ClientProfile::Windows11 => (
            [cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_AES_128_GCM_SHA256]
                .into_iter()
                .chain(tls12)
                .collect(),
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        ),
    };
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..provider::default_provider()
    };
    match rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
    {
        Ok(builder) => Arc::new(builder.with_root_certificates(roots).with_no_client_auth()),
        // Cannot happen: each version has its suites above.
        Err(_) => tls_config_with_roots(roots),
    }
}

/// A root store holding the CA certificates in `ca_pem`.
pub fn roots_from_pem(ca_pem: &[u8]) -> Result<RootCertStore, ClientError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|err| ClientError::Ca(err.to_string()))?;
        roots
            .add(cert)
            .map_err(|err| ClientError::Ca(err.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Ca("no certificate in the CA file".into()));
    }
    Ok(roots)
}

/// The DHCPINFORM a Windows client sends after IPCP from `local` (windows-client.md §1.9):
/// broadcast, UDP 68 to 67, vendor class "MSFT 5.0" and the parameter request list
/// 1,15,3,6,44,46,47,31,33,121,249,43. No public trace shows the exact list of Windows 10/11;
/// this one is SoftEther's client posing as Windows (`IPC.c`, `IPC_DHCP_VENDOR_ID`).
pub fn windows_inform(local: Ipv4Addr, xid: u32, hardware: [u8; 6]) -> Vec<u8> {
    let request = sstp_ppp::dhcp_inform::InformRequest {
        client: local,
        destination: Ipv4Addr::BROADCAST,
        xid,
        hardware,
        host_name: Some("SSTP-WINDOWS".to_owned()),
        vendor_class: Some("MSFT 5.0".to_owned()),
        parameters: WINDOWS_PARAMETER_REQUEST_LIST.to_vec(),
    };
    let mut packet = Vec::new();
    // Always fits: about 300 bytes.
    let _ = sstp_ppp::dhcp_inform::build_inform(&request, &mut packet);
    packet
}

/// The parameter request list of [`windows_inform`].
pub const WINDOWS_PARAMETER_REQUEST_LIST: [u8; 12] =
    [1, 15, 3, 6, 44, 46, 47, 31, 33, 121, 249, 43];

/// What TLS negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSession {
    /// The protocol version.
    pub version: Option<ProtocolVersion>,
    /// The cipher suite.
    pub suite: Option<CipherSuite>,
    /// How many certificates the server sent (leaf first, then intermediates).
    pub chain_len: usize,
}

/// The client's transcript ([`ClientConfig::record`]), readable after the call is over.
#[derive(Debug, Clone, Default)]
pub struct Transcript(Arc<std::sync::Mutex<Vec<Recorded>>>);

impl Transcript {
    /// Everything recorded so far.
    pub fn snapshot(&self) -> Vec<Recorded> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn extend(&self, more: Vec<Recorded>) {
        if !more.is_empty()
            && let Ok(mut recorded) = self.0.lock()
        {
            recorded.extend(more);
        }
    }
}

/// A TLS client configuration (TLS 1.2 and 1.3) that trusts only the CA certificates in
/// `ca_pem`.
pub fn tls_config_with_ca(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    Ok(tls_config_with_roots(roots_from_pem(ca_pem)?))
}

/// A TLS client configuration (TLS 1.2 and 1.3) over a given root store.
pub fn tls_config_with_roots(roots: RootCertStore) -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Why the client could not connect or the call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA certificates could not be read.
    #[error("invalid CA certificate: {0}")]
    Ca(String),
    /// TCP connect or the TLS handshake failed.
    #[error("cannot connect to {server}")]
    Connect {
        /// The gateway.
        server: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TCP connect plus TLS handshake missed the deadline.
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    /// The server presented no certificate (cannot happen with a verifying configuration).
    #[error("the server presented no certificate")]
    NoCertificate,
    /// The server refused our login; its message as sent (MS-CHAPv2 `E=<code> R=.. C=.. V=3
    /// M=<text>`, or PAP's Nak text), which is what a client shows its user.
    #[error("the server refused the login: {0}")]
    AuthFailed(String),
    /// The call ended before (or while) the operation could complete.
    #[error("the call ended: {}", .0.metric_label())]
    Closed(CloseReason),
}

/// The call's progress, as published by the driver task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallState {
    /// TLS is up; SSTP and PPP are negotiating.
    Negotiating,
    /// The tunnel carries IPv4.
    Up {
        /// Our tunnel address.
        local: Ipv4Addr,
        /// DNS servers from IPCP.
        dns: [Option<Ipv4Addr>; 2],
        /// The crypto binding algorithm the call used.
        hash_protocol: Option<HashProtocol>,
    },
    /// The server refused our login with this message; the call is ending.
    AuthFailed(String),
    /// The call is over.
    Closed(CloseReason),
}

/// What the handle asks of the driver.
#[derive(Debug)]
enum Command {
    /// Send one IP packet.
    Send(Bytes),
    /// End the call gracefully.
    Disconnect,
}

/// A running SSTP call; dropping it aborts the driver task (no CALL_DISCONNECT).
#[derive(Debug)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    received: mpsc::Receiver<Bytes>,
    state: watch::Receiver<CallState>,
    local_addr: SocketAddr,
    server_cert: CertHashes,
    tls_session: TlsSession,
    correlation_id: Option<String>,
    transcript: Transcript,
    dhcp_ack: watch::Receiver<Option<Ack>>,
    task: Option<JoinHandle<()>>,
}

impl Client {
    /// Connects, completes TLS and starts the SSTP call in a background task.
    pub async fn connect(options: ClientOptions) -> Result<Self, ClientError> {
        let server = options.server;
        let (stream, hashes, local_addr) =
            tokio::time::timeout(options.connect_timeout, open_tls(&options))
                .await
                .map_err(|_| ClientError::ConnectTimeout(server))??;
        let session = stream.get_ref().1;
        let tls_session = TlsSession {
            version: session.protocol_version(),
            suite: session.negotiated_cipher_suite().map(|s| s.suite()),
            chain_len: session.peer_certificates().map_or(0, <[_]>::len),
        };
        Ok(Self::start(
            stream,
            hashes,
            local_addr,
            tls_session,
            options.sstp,
            options.rx_queue,
            options.dhcp_inform,
        ))
    }

    /// Starts the SSTP call over a byte stream that is already open, as the server's end sees
    /// it after TLS: an in-memory pipe in the session tests, which need neither a socket nor a
    /// certificate. `server_cert` is what the crypto binding hashes (the server must be given
    /// the same). There is no TLS session to report and no local address (unspecified).
    pub fn over_stream<S>(stream: S, server_cert: CertHashes, sstp: ClientConfig) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let no_tls = TlsSession {
            version: None,
            suite: None,
            chain_len: 0,
        };
        Self::start(stream, server_cert, unspecified, no_tls, sstp, 1024, false)
    }

    fn start<S>(
        stream: S,
        hashes: CertHashes,
        local_addr: SocketAddr,
        tls_session: TlsSession,
        sstp: ClientConfig,
        rx_queue: usize,
        dhcp_inform: bool,
    ) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (commands_tx, commands_rx) = mpsc::channel(256);
        let (received_tx, received_rx) = mpsc::channel(rx_queue.max(1));
        let (state_tx, state_rx) = watch::channel(CallState::Negotiating);
        let (ack_tx, ack_rx) = watch::channel(None);
        let connection = sstp_proto::ClientConnection::new(
            sstp,
            hashes.clone(),
            Box::new(rand::make_rng::<rand::rngs::StdRng>()),
            crate::clock::now(),
        );
        let correlation_id = connection.correlation_id().map(str::to_owned);
        let transcript = Transcript::default();
        let task = tokio::spawn(driver::run(
            connection,
            stream,
            driver::Channels {
                commands: commands_rx,
                received: received_tx,
                state: state_tx,
                transcript: transcript.clone(),
                dhcp: dhcp_inform.then_some(ack_tx),
            },
        ));
        Self {
            commands: commands_tx,
            received: received_rx,
            state: state_rx,
            local_addr,
            server_cert: hashes,
            tls_session,
            correlation_id,
            transcript,
            dhcp_ack: ack_rx,
            task: Some(task),
        }
    }

    /// Waits until IPv4 is up and returns our tunnel address.
    pub async fn wait_up(&mut self) -> Result<Ipv4Addr, ClientError> {
        let state = self
            .state
            .wait_for(|s| !matches!(s, CallState::Negotiating))
            .await
            .map_err(|_| ClientError::Closed(CloseReason::TransportClosed))?;
        match &*state {
            CallState::Up { local, .. } => Ok(*local),
            CallState::AuthFailed(message) => Err(ClientError::AuthFailed(message.clone())),
            CallState::Closed(reason) => Err(ClientError::Closed(reason.clone())),
            CallState::Negotiating => unreachable!("wait_for returned a negotiating state"),
        }
    }

    /// The call's current state.
    pub fn state(&self) -> CallState {
        self.state.borrow().clone()
    }

    /// The local TCP address of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The hashes of the leaf certificate the server presented (what crypto binding used).
    pub fn server_cert(&self) -> &CertHashes {
        &self.server_cert
    }

    /// The TLS version and cipher suite the handshake settled on.
    pub fn tls_session(&self) -> TlsSession {
        self.tls_session
    }

    /// The `SSTPCORRELATIONID` sent, if any.
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The transcript handle (empty unless [`ClientConfig::record`] is on); it stays readable
    /// after the call.
    pub fn transcript(&self) -> Transcript {
        self.transcript.clone()
    }

    /// Waits up to `timeout` for the DHCPACK answering our DHCPINFORM
    /// ([`ClientOptions::dhcp_inform`]).
    pub async fn wait_dhcp_ack(&mut self, timeout: Duration) -> Option<Ack> {
        let ack = tokio::time::timeout(timeout, self.dhcp_ack.wait_for(Option::is_some)).await;
        ack.ok()?.ok()?.clone()
    }

    /// Queues one IP packet for the tunnel. Packets sent before the tunnel is up are dropped by
    /// the state machine.
    pub async fn send_ip(&self, packet: Bytes) -> Result<(), ClientError> {
        self.commands
            .send(Command::Send(packet))
            .await
            .map_err(|_| ClientError::Closed(self.close_reason()))
    }

    /// The next IP packet from the tunnel; `None` once the call is over and the queue is empty.
    pub async fn recv_ip(&mut self) -> Option<Bytes> {
        self.received.recv().await
    }

    /// Ends the call with LCP Terminate and CALL_DISCONNECT, waits for the driver to finish and
    /// returns why the call ended (the server's disconnect may have come first).
    pub async fn disconnect(mut self) -> CloseReason {
        let _ = self.commands.send(Command::Disconnect).await;
        self.closed().await
    }

    /// Waits until the call is over, however it ends, and returns why.
    pub async fn closed(&mut self) -> CloseReason {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.close_reason()
    }

    fn close_reason(&self) -> CloseReason {
        match &*self.state.borrow() {
            CallState::Closed(reason) => reason.clone(),
            _ => CloseReason::TransportClosed,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

async fn open_tls(
    options: &ClientOptions,
) -> Result<(TlsStream, CertHashes, SocketAddr), ClientError> {
    let server = options.server;
    let connect_err = |source| ClientError::Connect { server, source };
    let tcp = match options.bind {
        None => TcpStream::connect(server).await.map_err(connect_err)?,
        Some(bind) => {
            let socket = if server.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(connect_err)?;
            socket.bind(SocketAddr::new(bind, 0)).map_err(connect_err)?;
            socket.connect(server).await.map_err(connect_err)?
        }
    };
    let mut tcp = tcp;
    tcp.set_nodelay(true).map_err(connect_err)?;
    if let Some(header) = &options.proxy_header {
        tcp.write_all(header).await.map_err(connect_err)?;
    }
    let local_addr = tcp.local_addr().map_err(connect_err)?;
    let connector = TlsConnector::from(Arc::clone(&options.tls));
    let tls = connector
        .connect(options.server_name.clone(), tcp)
        .await
        .map_err(connect_err)?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or(ClientError::NoCertificate)?;
    let hashes = CertHashes::from_der(leaf.as_ref());
    Ok((tls, hashes, local_addr))
}
