//! The Windows 10 and Windows 11 profiles of the project's client against the real gateway
//! (real TUN device, network namespace): every documented Windows behaviour
//! (`../shared/reference/windows-client.md`) and the gateway's exact answer to it, read from the
//! client's transcript, plus the TLS handshake seen on the wire by a pass-through proxy.
//! Run as root: `cargo test -p sstp-gateway --test windows`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Harness, USERS, in_new_netns, ping, runtime, start};
use rustls::{CipherSuite, ProtocolVersion, pki_types::ServerName};
use sstp_api::gateway_config::{TlsConfig, TlsFiles};
use sstp_gateway::{
    client::{Client, ClientOptions, WINDOWS_PARAMETER_REQUEST_LIST, roots_from_pem},
    pki::{CertificateAuthority, KeyAlgorithm, RsaBits, ServerCertRequest},
};
use sstp_ppp::dhcp_inform::ClasslessRoute;
use sstp_proto::{
    ClientProfile, CloseReason, ControlMessage, HashProtocol, HashProtocolSet, Recorded,
    RecordedPacket,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The name the client dials: in the certificate, in the SNI and in the Host header.
const DIALLED: &str = "vpn.example.test";

/// What the pass-through proxy saw in each ClientHello: SNI and offered suites.
type Hellos = Arc<Mutex<Vec<(Option<String>, Vec<CipherSuite>)>>>;

/// A TCP proxy in front of `upstream` that parses each ClientHello with rustls' `Acceptor`,
/// records it, and then forwards every byte both ways unchanged.
async fn hello_recording_proxy(upstream: SocketAddr) -> (SocketAddr, Hellos) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hellos = Hellos::default();
    let seen = Arc::clone(&hellos);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut acceptor = rustls::server::Acceptor::default();
                let mut buffered = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = inbound.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffered.extend_from_slice(&chunk[..n]);
                    acceptor.read_tls(&mut &chunk[..n]).unwrap();
                    match acceptor.accept() {
                        Ok(None) => {}
                        Ok(Some(accepted)) => {
                            let hello = accepted.client_hello();
                            let entry = (
                                hello.server_name().map(str::to_owned),
                                hello.cipher_suites().to_vec(),
                            );
                            seen.lock().unwrap().push(entry);
                            break;
                        }
                        Err(_) => return,
                    }
                }
                let mut outbound = TcpStream::connect(upstream).await.unwrap();
                outbound.write_all(&buffered).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (addr, hellos)
}

/// A gateway serving an RSA-2048 certificate for [`DIALLED`] (Windows 10 met RSA servers in
/// the traces, windows-client.md §1.1), with split-tunnel routes and a DNS server so that the
/// DHCPINFORM is answered.
/// The certificate files live in the returned directory, removed when it is dropped.
async fn rsa_gateway(test: &str) -> (Harness, common::TestDir) {
    let certs = common::TestDir::new(&format!("{test}-rsa"));
    let dir = certs.0.clone();
    let now = time::OffsetDateTime::now_utc();
    let algorithm = KeyAlgorithm::Rsa(RsaBits::Rsa2048);
    let ca =
        CertificateAuthority::generate("windows test CA", now, time::Duration::days(1), algorithm)
            .unwrap();
    let issued = ca
        .issue_server_cert(&ServerCertRequest {
            hostnames: vec![DIALLED.to_owned(), "localhost".to_owned()],
            not_before: now,
            validity: time::Duration::days(1),
            algorithm,
        })
        .unwrap();
    let files = TlsFiles {
        cert_file: dir.join("tls.crt"),
        key_file: dir.join("tls.key"),
        ca_file: Some(dir.join("ca.crt")),
        crl_file: None,
    };
    std::fs::write(&files.cert_file, &issued.chain_pem).unwrap();
    std::fs::write(&files.key_file, &issued.key_pem).unwrap();
    std::fs::write(files.ca_file.as_ref().unwrap(), ca.cert_pem()).unwrap();
    let harness = start(test, move |config| {
        config.tls = TlsConfig::Files(files);
        config.routes = ["10.17.0.0/16", "192.168.1.0/24"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        config.dns = vec![Ipv4Addr::new(10, 77, 0, 53)];
    })
    .await;
    (harness, certs)
}

/// Options playing `profile` against `server` (the proxy), dialling [`DIALLED`].
fn windows_options(h: &Harness, server: SocketAddr, profile: ClientProfile) -> ClientOptions {
    let mut base = common::client_options(server, &h.ca_pem, USERS[0].0, USERS[0].1).sstp;
    base.host = DIALLED.to_owned();
    base.correlation_id = None;
    base.record = true;
    // Windows sends ECHO_REQUEST after a hello interval of silence (SPEC §3.1.2.3, 60 s);
    // shortened so the test sees one.
    base.timers.hello = Duration::from_secs(2);
    ClientOptions::for_profile(
        profile,
        server,
        ServerName::try_from(DIALLED).unwrap(),
        roots_from_pem(&h.ca_pem).unwrap(),
        base,
    )
}

/// The PPP control packets of `protocol` and `code` in the transcript, from one side.
fn ppp(recorded: &[Recorded], from_server: bool, protocol: u16, code: u8) -> Vec<Vec<u8>> {
    recorded
        .iter()
        .filter_map(|r| match &r.packet {
            RecordedPacket::Ppp {
                protocol: p,
                information,
                ..
            } if r.from_server == from_server && p.0 == protocol && information[0] == code => {
                Some(information.clone())
            }
            _ => None,
        })
        .collect()
}

/// The option kinds in the data of a Configure-* packet (information field).
fn kinds(information: &[u8]) -> Vec<u8> {
    let mut kinds = Vec::new();
    let mut rest = &information[4..];
    while let [kind, len, ..] = *rest {
        kinds.push(kind);
        rest = &rest[usize::from(len)..];
    }
    kinds
}

fn control_at(
    recorded: &[Recorded],
    from_server: bool,
    pick: impl Fn(&ControlMessage) -> bool,
) -> usize {
    recorded
        .iter()
        .position(|r| {
            r.from_server == from_server
                && matches!(&r.packet, RecordedPacket::Control(m) if pick(m))
        })
        .unwrap_or_else(|| panic!("control message not in the transcript: {recorded:#?}"))
}

fn ppp_at(recorded: &[Recorded], from_server: bool, protocol: u16, code: u8) -> usize {
    recorded
        .iter()
        .position(|r| {
            matches!(&r.packet, RecordedPacket::Ppp { protocol: p, information, .. }
                if r.from_server == from_server && p.0 == protocol && information[0] == code)
        })
        .unwrap()
}

/// One whole Windows call against the gateway, asserting every answer.
async fn windows_call(test: &str, profile: ClientProfile, multilink: bool) {
    let (h, _certs) = rsa_gateway(test).await;
    let (proxy, hellos) = hello_recording_proxy(h.gateway.sstp_addr).await;
    let mut options = windows_options(&h, proxy, profile);
    if multilink {
        options.sstp.ppp.link = sstp_ppp::LinkProfile::Windows { multilink: true };
    }
    let mut client = Client::connect(options).await.unwrap();
    let local = tokio::time::timeout(Duration::from_secs(15), client.wait_up())
        .await
        .expect("tunnel up in time")
        .unwrap();

    // TLS (windows-client.md §1.1): Windows 10 TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384 against
    // an RSA certificate; Windows 11 TLS 1.3. SNI = the dialled name.
    let tls = client.tls_session();
    match profile {
        ClientProfile::Windows10 => {
            assert_eq!(tls.version, Some(ProtocolVersion::TLSv1_2));
            assert_eq!(
                tls.suite,
                Some(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
            );
        }
        _ => {
            assert_eq!(tls.version, Some(ProtocolVersion::TLSv1_3));
            assert_eq!(tls.suite, Some(CipherSuite::TLS13_AES_256_GCM_SHA384));
        }
    }
    // Trap #16 (accel-ppp 6b8e7d04): the whole chain is sent, leaf then CA.
    assert_eq!(tls.chain_len, 2);
    let hello = hellos.lock().unwrap()[0].clone();
    assert_eq!(hello.0.as_deref(), Some(DIALLED), "SNI is the dialled name");
    assert_eq!(
        hello.1.contains(&CipherSuite::TLS13_AES_256_GCM_SHA384),
        profile == ClientProfile::Windows11,
        "TLS 1.3 suites offered only by Windows 11: {:?}",
        hello.1
    );

    // DHCPINFORM after IPCP (§1.9): the ACK carries the routes in 249 and 121 and the DNS.
    let ack = client
        .wait_dhcp_ack(Duration::from_secs(5))
        .await
        .expect("a DHCPACK to the DHCPINFORM");
    let gateway = h.gateway_ip();
    let routes: Vec<ClasslessRoute> = [([10, 17, 0, 0], 16), ([192, 168, 1, 0], 24)]
        .into_iter()
        .map(|(a, len)| ClasslessRoute::new(Ipv4Addr::from(a), len, gateway).unwrap())
        .collect();
    assert_eq!(ack.destination, local);
    assert_eq!((ack.ciaddr, ack.yiaddr), (local, Ipv4Addr::UNSPECIFIED));
    assert_eq!(ack.server_id, Some(gateway));
    assert_eq!(ack.ms_classless_routes, routes, "option 249");
    assert_eq!(ack.classless_routes, routes, "option 121");
    assert_eq!(ack.dns, [Ipv4Addr::new(10, 77, 0, 53)]);

    // The data path works with the frames as Windows sends them (PFC/ACFC acked, compressed).
    ping(&mut client, local, gateway, 7, b"windows").await;
    // SSTP echo from the client (§1.10): wait past the 2 s hello interval.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let transcript = client.transcript();
    assert_eq!(client.disconnect().await, CloseReason::LocalDisconnect);
    let recorded = transcript.snapshot();

    // HTTP (§1.3): a braced correlation GUID and the dialled Host.
    let RecordedPacket::Http(request) = &recorded[0].packet else {
        panic!("HTTP request first")
    };
    assert!(
        request.contains(&format!("Host: {DIALLED}\r\n")),
        "{request}"
    );
    let id = request
        .lines()
        .find_map(|l| l.strip_prefix("SSTPCORRELATIONID: "))
        .unwrap();
    assert!(
        id.starts_with('{') && id.ends_with('}') && id.len() == 38,
        "{id}"
    );
    assert!(
        matches!(&recorded[1].packet, RecordedPacket::Http(head) if head.starts_with("HTTP/1.1 200"))
    );

    // LCP (§1.5, check 4): the server rejects Callback (13), and MRRU (17) and
    // Endpoint-Discriminator (19) with multilink; the re-sent request without them is acked.
    let requests = ppp(&recorded, false, 0xC021, 1);
    let first = if multilink {
        vec![1, 5, 7, 8, 13, 17, 19]
    } else {
        vec![1, 5, 7, 8, 13]
    };
    assert_eq!(kinds(&requests[0]), first);
    let rejects = ppp(&recorded, true, 0xC021, 4);
    assert_eq!(rejects.len(), 1);
    assert_eq!(
        rejects[0][1], requests[0][1],
        "Configure-Reject of the first request"
    );
    assert_eq!(kinds(&rejects[0]), first[4..]);
    assert_eq!(kinds(&requests[1]), [1, 5, 7, 8]);
    assert_eq!(requests.len(), 2);
    let acks = ppp(&recorded, true, 0xC021, 2);
    assert_eq!(acks.len(), 1);
    assert_eq!(
        acks[0][1..],
        requests[1][1..],
        "MRU 4091, magic, PFC, ACFC acked as sent"
    );
    assert!(
        ppp(&recorded, true, 0xC021, 3).is_empty(),
        "no Configure-Nak at all"
    );

    // IPCP (§1.8): Windows asks for IP-Address, Primary-DNS and Secondary-DNS, all 0.0.0.0; the
    // gateway Naks the address (and the DNS it has), rejects the secondary DNS it has not, and
    // acks the corrected request.
    let ipcp = ppp(&recorded, false, 0x8021, 1);
    assert_eq!(kinds(&ipcp[0]), [3, 129, 131]);
    assert_eq!(
        ipcp[0][4..],
        [3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0, 131, 6, 0, 0, 0, 0]
    );
    let ipcp_rejects = ppp(&recorded, true, 0x8021, 4);
    let ipcp_naks = ppp(&recorded, true, 0x8021, 3);
    let ipcp_acks = ppp(&recorded, true, 0x8021, 2);
    assert_eq!(
        ipcp_rejects.iter().map(|r| kinds(r)).collect::<Vec<_>>(),
        [vec![131]]
    );
    assert_eq!(ipcp_naks.len(), 1);
    let mut nak = vec![3, 6];
    nak.extend_from_slice(&local.octets());
    nak.extend_from_slice(&[129, 6, 10, 77, 0, 53]);
    assert_eq!(ipcp_naks[0][4..], nak);
    assert_eq!(ipcp_acks.len(), 1);
    assert_eq!(ipcp_acks[0][4..], nak, "the request as Nak'd, acked");

    // CCP (§1.8, trap #9) and IPv6CP: the gateway runs IPv4 only and Protocol-Rejects both,
    // each once, returning the packet; neither is retransmitted afterwards.
    let ccp = ppp(&recorded, false, 0x80FD, 1);
    assert_eq!(ccp.len(), 1);
    assert_eq!(
        ccp[0][2..],
        [0x00, 0x0A, 0x12, 0x06, 0x01, 0x00, 0x00, 0x40]
    );
    let ipv6cp = ppp(&recorded, false, 0x8057, 1);
    assert_eq!(ipv6cp.len(), 1);
    let protocol_rejects = ppp(&recorded, true, 0xC021, 8);
    let rejected = |protocol: [u8; 2], packet: &[u8]| {
        protocol_rejects
            .iter()
            .any(|r| r[4..6] == protocol && r[6..] == *packet)
    };
    assert!(rejected([0x80, 0xFD], &ccp[0]), "CCP Protocol-Rejected");
    assert!(
        rejected([0x80, 0x57], &ipv6cp[0]),
        "IPv6CP Protocol-Rejected"
    );
    assert_eq!(protocol_rejects.len(), 2, "nothing else rejected");
    assert!(
        ppp(&recorded, true, 0x8057, 2).is_empty(),
        "no IPv6CP answer but the reject"
    );

    // Crypto binding (§1.4, §1.7): SHA1|SHA256 offered, CALL_CONNECTED with SHA-256 only
    // after the CHAP Success, and the call then worked, so the gateway accepted it.
    let ack_at = control_at(
        &recorded,
        true,
        |m| matches!(m, ControlMessage::CallConnectAck(r) if r.hash_protocols == HashProtocolSet::BOTH),
    );
    let success_at = ppp_at(&recorded, true, 0xC223, 3);
    let connected_at = control_at(
        &recorded,
        false,
        |m| matches!(m, ControlMessage::CallConnected(b) if b.hash_protocol == HashProtocol::SHA256),
    );
    assert!(ack_at < success_at && success_at < connected_at);

    // Echo (§1.10): the client's ECHO_REQUEST is answered.
    let echo_at = control_at(&recorded, false, |m| *m == ControlMessage::EchoRequest);
    let answer_at = control_at(&recorded, true, |m| *m == ControlMessage::EchoResponse);
    assert!(connected_at < echo_at && echo_at < answer_at);

    // Disconnect (§1.11, trap #21): LCP Terminate first, then CALL_DISCONNECT with a Status
    // Info attribute, acknowledged by CALL_DISCONNECT_ACK.
    let terminate_at = ppp_at(&recorded, false, 0xC021, 5);
    let disconnect_at = control_at(&recorded, false, |m| {
        matches!(m, ControlMessage::CallDisconnect(Some(_)))
    });
    let disconnect_ack_at =
        control_at(&recorded, true, |m| *m == ControlMessage::CallDisconnectAck);
    assert!(terminate_at < disconnect_at && disconnect_at < disconnect_ack_at);
    // Nothing made the gateway abort.
    assert!(!recorded.iter().any(|r| r.from_server
        && matches!(
            r.packet,
            RecordedPacket::Control(ControlMessage::CallAbort(_))
        )));
    assert_eq!(
        WINDOWS_PARAMETER_REQUEST_LIST,
        [1, 15, 3, 6, 44, 46, 47, 31, 33, 121, 249, 43]
    );
}

#[test]
fn windows10_profile_against_the_gateway_gets_every_answer_windows_needs() {
    in_new_netns("windows10", || {
        runtime().block_on(windows_call("win10", ClientProfile::Windows10, false));
    });
}

#[test]
fn windows10_profile_with_multilink_gets_mrru_and_endpoint_rejected_too() {
    in_new_netns("windows10_multilink", || {
        runtime().block_on(windows_call("win10ml", ClientProfile::Windows10, true));
    });
}

#[test]
fn windows11_profile_against_the_gateway_gets_every_answer_windows_needs() {
    in_new_netns("windows11", || {
        runtime().block_on(windows_call("win11", ClientProfile::Windows11, false));
    });
}

/// OGI says Windows may offer ALPN `http/1.1` (windows-client.md §1.1, no trace confirms it):
/// the gateway, which configures no ALPN, must complete the handshake either way.
#[test]
fn a_windows_client_offering_alpn_http11_is_served() {
    in_new_netns("windows_alpn", || {
        runtime().block_on(async {
            let (h, _certs) = rsa_gateway("winalpn").await;
            for profile in [ClientProfile::Windows10, ClientProfile::Windows11] {
                let mut options = windows_options(&h, h.gateway.sstp_addr, profile);
                let mut tls = (*options.tls).clone();
                tls.alpn_protocols = vec![b"http/1.1".to_vec()];
                options.tls = Arc::new(tls);
                let mut client = Client::connect(options).await.unwrap();
                let local = tokio::time::timeout(Duration::from_secs(15), client.wait_up())
                    .await
                    .unwrap()
                    .unwrap();
                ping(&mut client, local, h.gateway_ip(), 9, b"alpn").await;
                assert_eq!(client.disconnect().await, CloseReason::LocalDisconnect);
            }
        });
    });
}

/// Where the reference cannot say what Windows does with PFC/ACFC once acked, the gateway
/// must take both: the Windows 11 profile with uncompressed frames still works end to end.
#[test]
fn windows_profile_sending_uncompressed_frames_works_too() {
    in_new_netns("windows_uncompressed", || {
        runtime().block_on(async {
            let (h, _certs) = rsa_gateway("winplain").await;
            let mut options = windows_options(&h, h.gateway.sstp_addr, ClientProfile::Windows11);
            options.sstp.compress_frames = false;
            let mut client = Client::connect(options).await.unwrap();
            let local = tokio::time::timeout(Duration::from_secs(15), client.wait_up())
                .await
                .unwrap()
                .unwrap();
            assert!(client.wait_dhcp_ack(Duration::from_secs(5)).await.is_some());
            ping(&mut client, local, h.gateway_ip(), 8, b"plain").await;
            let transcript = client.transcript();
            assert_eq!(client.disconnect().await, CloseReason::LocalDisconnect);
            let recorded = transcript.snapshot();
            assert!(recorded.iter().all(|r| match &r.packet {
                RecordedPacket::Ppp { frame, .. } => frame[..2] == [0xFF, 0x03],
                _ => true,
            }));
        });
    });
}

/// Windows always puts a Status Info in CALL_ABORT (SPEC <3>, trap #21). A client that can use
/// none of the offered hash algorithms aborts with one; the gateway answers with its own
/// CALL_ABORT and the call ends cleanly.
#[test]
fn a_windows_call_abort_with_status_info_is_answered_with_an_abort() {
    in_new_netns("windows_abort", || {
        runtime().block_on(async {
            let (h, _certs) = rsa_gateway("winabort").await;
            let mut options = windows_options(&h, h.gateway.sstp_addr, ClientProfile::Windows10);
            options.sstp.hash_protocols = HashProtocolSet(0);
            let mut client = Client::connect(options).await.unwrap();
            let transcript = client.transcript();
            let result = tokio::time::timeout(Duration::from_secs(15), client.wait_up())
                .await
                .unwrap();
            assert!(
                matches!(
                    result,
                    Err(sstp_gateway::client::ClientError::Closed(
                        CloseReason::NoCommonHashProtocol
                    ))
                ),
                "{result:?}"
            );
            let _ = client.closed().await;
            let recorded = transcript.snapshot();
            let abort_at = control_at(&recorded, false, |m| {
                matches!(m, ControlMessage::CallAbort(Some(info))
                    if info.attribute == sstp_proto::AttributeId::CRYPTO_BINDING_REQ)
            });
            let answer_at = control_at(&recorded, true, |m| {
                matches!(m, ControlMessage::CallAbort(_))
            });
            assert!(abort_at < answer_at);
            common::wait_for_metric(&h, "sstp_sessions_active", 0.0).await;
        });
    });
}

/// The gateway's default certificate is ECDSA P-256 (design brief); Windows takes ECDSA too
/// (windows-client.md §1.2). Windows 10 then settles on ECDHE-ECDSA-AES256-GCM-SHA384, the
/// first suite of its list, and the call works.
#[test]
fn windows10_against_the_default_ecdsa_certificate_uses_ecdhe_ecdsa_aes256_gcm() {
    in_new_netns("windows10_ecdsa", || {
        runtime().block_on(async {
            let h = start("win10ecdsa", |_| {}).await;
            let mut base =
                common::client_options(h.gateway.sstp_addr, &h.ca_pem, USERS[0].0, USERS[0].1).sstp;
            base.correlation_id = None;
            let options = ClientOptions::for_profile(
                ClientProfile::Windows10,
                h.gateway.sstp_addr,
                ServerName::try_from("localhost").unwrap(),
                roots_from_pem(&h.ca_pem).unwrap(),
                base,
            );
            let mut client = Client::connect(options).await.unwrap();
            let local = tokio::time::timeout(Duration::from_secs(15), client.wait_up())
                .await
                .unwrap()
                .unwrap();
            let tls = client.tls_session();
            assert_eq!(tls.version, Some(ProtocolVersion::TLSv1_2));
            assert_eq!(
                tls.suite,
                Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
            );
            ping(&mut client, local, h.gateway_ip(), 10, b"ecdsa").await;
            assert_eq!(client.disconnect().await, CloseReason::LocalDisconnect);
        });
    });
}
