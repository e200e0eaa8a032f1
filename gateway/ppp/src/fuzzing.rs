//! Bodies of the cargo-fuzz targets under `gateway/fuzz` (and of the corpus replay test).
//! Each must never panic, whatever the bytes.

use std::{convert::Infallible, net::Ipv4Addr, sync::Arc, time::Instant};

use rand_core::TryRng;

use crate::{
    AddressAllocator, AuthPolicy, Client, ClientConfig, Lookup, NtHash, Protocol, Server,
    ServerConfig, Timers, UserLookup, decode_frame, encode_frame,
    packet::{Code, Packet, encode_packet, parse_options},
};

/// Decodes `data` as a PPP frame, checks the re-encoded frame decodes the same, and feeds
/// control frames to a server whose LCP is negotiating and to one that has logged a client in.
pub fn ppp_frame(data: &[u8]) {
    let Ok(frame) = decode_frame(data) else {
        return;
    };
    let mut encoded = Vec::new();
    encode_frame(frame.protocol, frame.information, &mut encoded);
    assert_eq!(decode_frame(&encoded).ok(), Some(frame), "frame round trip");
    if frame.protocol.is_network_data() {
        return;
    }
    let now = Instant::now();
    let mut server = server();
    server.lower_up(now);
    server.handle_frame(now, frame.protocol, frame.information);
    drain(&mut server);
    let (mut server, _) = logged_in_server(now);
    server.handle_frame(now, frame.protocol, frame.information);
    drain(&mut server);
}

/// Reads `data` as an IPv4 packet from a client: a DHCPINFORM that parses must get an ACK
/// that parses back with the configured routes; any bytes as an RFC 3442 route list must
/// re-encode to themselves when they decode.
pub fn dhcp_inform(data: &[u8]) {
    use crate::dhcp_inform::{
        ClasslessRoute, InformConfig, build_ack, decode_classless_routes, encode_classless_routes,
        parse_ack, parse_inform,
    };
    let _ = parse_ack(data);
    if let Ok(routes) = decode_classless_routes(data) {
        let mut encoded = Vec::new();
        encode_classless_routes(&routes, &mut encoded);
        assert_eq!(
            decode_classless_routes(&encoded).ok(),
            Some(routes),
            "route round trip"
        );
    }
    let Ok(inform) = parse_inform(data) else {
        return;
    };
    let server = Ipv4Addr::new(10, 0, 0, 1);
    let routes: Vec<ClasslessRoute> = [([10, 17, 0, 0], 16), ([0, 0, 0, 0], 0)]
        .into_iter()
        .filter_map(|(a, len)| ClasslessRoute::new(Ipv4Addr::from(a), len, server).ok())
        .collect();
    let config = InformConfig {
        server,
        routes: routes.clone(),
        domain: Some("fuzz.example".to_owned()),
        dns: vec![server],
    };
    let mut reply = Vec::new();
    if build_ack(&inform, &config, &mut reply).is_ok() {
        let ack = parse_ack(&reply).ok();
        assert_eq!(
            ack.map(|a| (a.xid, a.classless_routes, a.ms_classless_routes)),
            Some((inform.xid, routes.clone(), routes)),
            "ACK round trip"
        );
    }
}

/// Uses `data` as the option list of every kind of Configure packet a peer can send: LCP
/// Configure-Request/Nak/Reject to a negotiating server and client, and IPCP/IPv6CP ones to a
/// server that has just logged a client in.
pub fn lcp_options(data: &[u8]) {
    let _ = parse_options(data);
    let now = Instant::now();

    let mut server = server();
    server.lower_up(now);
    let sent = drain(&mut server);
    answer_requests(&mut server, now, Protocol::LCP, &sent, data);

    let mut client = Client::new(client_config(), Box::new(XorShift(7)));
    client.lower_up(now);
    let mut request = Vec::new();
    encode_packet(Code::CONFIGURE_REQUEST, 1, data, &mut request);
    client.handle_frame(now, Protocol::LCP, &request);
    while client.poll_transmit().is_some() {}

    let (mut server, sent) = logged_in_server(now);
    for protocol in [Protocol::IPCP, Protocol::IPV6CP] {
        answer_requests(&mut server, now, protocol, &sent, data);
    }
}

/// Sends `options` as a Configure-Request and as a Nak and a Reject of the server's last
/// Configure-Request of `protocol` found in `sent`.
fn answer_requests(
    server: &mut Server,
    now: Instant,
    protocol: Protocol,
    sent: &[Vec<u8>],
    options: &[u8],
) {
    let last_request_id = sent.iter().rev().find_map(|frame| {
        let frame = decode_frame(frame).ok()?;
        let packet = Packet::parse(frame.information).ok()?;
        (frame.protocol == protocol && packet.code == Code::CONFIGURE_REQUEST).then_some(packet.id)
    });
    let mut codes = vec![(Code::CONFIGURE_REQUEST, 0x5A)];
    if let Some(id) = last_request_id {
        codes.extend([(Code::CONFIGURE_NAK, id), (Code::CONFIGURE_REJECT, id)]);
    }
    for (code, id) in codes {
        let mut packet = Vec::new();
        encode_packet(code, id, options, &mut packet);
        server.handle_frame(now, protocol, &packet);
        drain(server);
    }
}

/// A server that has authenticated a client and started IPCP and IPv6CP, with every frame it
/// sent on the way.
pub(crate) fn logged_in_server(now: Instant) -> (Server, Vec<Vec<u8>>) {
    let mut server = server();
    let mut client = Client::new(client_config(), Box::new(XorShift(11)));
    server.lower_up(now);
    client.lower_up(now);
    let mut sent = Vec::new();
    // The in-memory handshake settles in a few dozen frames; the bound only guards the loop.
    for _ in 0..64 {
        let from_server = drain(&mut server);
        let from_client = drain_client(&mut client);
        if from_server.is_empty() && from_client.is_empty() {
            break;
        }
        for frame in &from_server {
            if let Ok(frame) = decode_frame(frame) {
                client.handle_frame(now, frame.protocol, frame.information);
            }
        }
        for frame in &from_client {
            if let Ok(frame) = decode_frame(frame) {
                server.handle_frame(now, frame.protocol, frame.information);
            }
        }
        sent.extend(from_server);
    }
    (server, sent)
}

fn client_config() -> ClientConfig {
    ClientConfig {
        username: "user".to_owned(),
        password: "password".to_owned(),
        auth: AuthPolicy::default(),
        request_dns: true,
        ipv6: true,
        timers: Timers::default(),
        link: crate::LinkProfile::Minimal,
    }
}

fn drain_client(client: &mut Client) -> Vec<Vec<u8>> {
    while client.poll_event().is_some() {}
    std::iter::from_fn(|| client.poll_transmit()).collect()
}

fn server() -> Server {
    let config = ServerConfig {
        auth: AuthPolicy {
            mschapv2: true,
            pap: true,
        },
        server_name: "fuzz".to_owned(),
        local_ipv4: Ipv4Addr::new(10, 0, 0, 1),
        dns: [Some(Ipv4Addr::new(10, 0, 0, 53)), None],
        mru: 1400,
        ipv6: true,
        timers: Timers::default(),
    };
    Server::new(
        Arc::new(config),
        Arc::new(OneUser),
        Box::new(OneAddress(true)),
        Box::new(XorShift(0x9E37_79B9_7F4A_7C15)),
    )
}

fn drain(server: &mut Server) -> Vec<Vec<u8>> {
    while server.poll_event().is_some() {}
    std::iter::from_fn(|| server.poll_transmit()).collect()
}

struct OneUser;

impl UserLookup for OneUser {
    fn lookup(&self, username: &str) -> Lookup {
        match username {
            "user" => Lookup::Found(NtHash::from_password("password")),
            _ => Lookup::Unknown,
        }
    }
}

struct OneAddress(bool);

impl AddressAllocator for OneAddress {
    fn allocate(&mut self, _username: &str) -> Result<Ipv4Addr, crate::Refusal> {
        std::mem::take(&mut self.0)
            .then_some(Ipv4Addr::new(10, 0, 0, 2))
            .ok_or(crate::Refusal::AddressExhausted)
    }

    fn release(&mut self, _addr: Ipv4Addr) {
        self.0 = true;
    }
}

/// xorshift64, a fixed-seed generator: fuzzing needs reproducibility (a crashing input replays),
/// not secrecy; never use it outside fuzzing. sstp-proto's fuzz entry points use it too.
#[derive(Debug)]
pub struct XorShift(pub u64);

impl TryRng for XorShift {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Ok(self.0)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}
