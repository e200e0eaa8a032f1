//! Client profiles: the project's client reproducing, one behaviour at a time, the real clients
//! a gateway meets. Every Windows behaviour cites `windows-client.md` (the project's research
//! notes, `../shared/reference/windows-client.md`) by section, and through it the public source.
//!
//! A profile only sets knobs of [`ClientConfig`] and of the PPP client; the I/O shell adds what
//! lies outside SSTP (TLS versions and suites, SNI, the DHCPINFORM after IPCP).

use std::{fmt, str::FromStr};

use rand_core::Rng;

use crate::{
    attribute::HashProtocolSet,
    config::{CallConnectedTiming, ClientConfig},
    control::ControlMessage,
};

/// A real client to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum ClientProfile {
    /// Linux `sstpc` with pppd: CALL_CONNECTED right after its own MS-CHAPv2 Response
    /// (windows-client.md §1.7, accel-ppp 7dd9766a), an unbraced correlation GUID (§1.3,
    /// accel-ppp #91 log) and pppd's minimal LCP request. The project's default client.
    #[default]
    Sstpc,
    /// The Windows 10 built-in client (TLS 1.2 only, §1.1).
    Windows10,
    /// The Windows 11 built-in client (TLS 1.3, §1.1); on the SSTP and PPP level the public
    /// sources show no difference from Windows 10.
    Windows11,
}

impl ClientProfile {
    /// Every profile, for tests and help texts.
    pub const ALL: [Self; 3] = [Self::Sstpc, Self::Windows10, Self::Windows11];

    /// The name used on command lines.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sstpc => "sstpc",
            Self::Windows10 => "windows10",
            Self::Windows11 => "windows11",
        }
    }

    /// Whether this is one of the Windows built-in clients.
    #[must_use]
    pub fn is_windows(self) -> bool {
        matches!(self, Self::Windows10 | Self::Windows11)
    }

    /// Sets the knobs of `config` that this profile decides. User, password, host and timers
    /// are left alone.
    pub fn apply(self, config: &mut ClientConfig) {
        match self {
            Self::Sstpc => {
                config.ppp.link = sstp_ppp::LinkProfile::Minimal;
                config.call_connected = CallConnectedTiming::AfterChapResponse;
                config.new_correlation_id = Some(GuidStyle::Bare);
                config.compress_frames = false;
            }
            Self::Windows10 | Self::Windows11 => {
                // LCP: MRU 4091, Magic, PFC, ACFC, Callback CBCP; MRRU and
                // Endpoint-Discriminator only with multilink on, which is off here as in the
                // Windows 10 trace (§1.5, SoftEther #1169). Rejected options are dropped and the
                // request re-sent (§1.5, sorz/sstp-server #5). CCP with MPPE after
                // authentication (§1.8, OGI `ppp/driver.rs`).
                config.ppp.link = sstp_ppp::LinkProfile::Windows { multilink: false };
                // IPCP asks for an address and both DNS servers (§1.8, OGI's
                // "decode_typical_windows_configure_request").
                config.ppp.request_dns = true;
                // IPv6CP after authentication (§1.8: Windows negotiates it; SoftEther
                // 2cfe0313, a742e2d1).
                config.ppp.ipv6 = true;
                // CALL_CONNECTED after CHAP Success, in the spec's order (§1.7, SPEC §3.2.5.2
                // steps 5-7, §3.2.7.1).
                config.call_connected = CallConnectedTiming::AfterAuthentication;
                // Offered SHA1|SHA256, the client must pick SHA256 (§1.4, SPEC §2.2.10,
                // §3.2.5.3.2); it accepts a SHA-1-only server too.
                config.hash_protocols = HashProtocolSet::BOTH;
                // SSTPCORRELATIONID: a new GUID per attempt in the [MS-DTYP] 2.3.4.3 braced form
                // (§1.3, SPEC §3.2.4.1; SSToPer's request to a Windows server).
                config.new_correlation_id = Some(GuidStyle::Braced);
                // Whether Windows then really leaves out `FF 03` and the protocol's high octet
                // is in no public trace (§1.5: "If the server ACKs PFC/ACFC, frames arrive
                // without FF 03 ..."); it asks for both, so by default it uses them. Tests run
                // it both ways, since the server must take either.
                config.compress_frames = true;
                // Retries CALL_CONNECT_REQUEST 3 times after a NAK (§1.4, SPEC <10>).
                config.max_connect_naks = 3;
            }
        }
    }
}

impl fmt::Display for ClientProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A profile name that is not one of [`ClientProfile::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown client profile {0:?} (expected sstpc, windows10 or windows11)")]
pub struct UnknownProfile(pub String);

impl FromStr for ClientProfile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

/// How a generated `SSTPCORRELATIONID` GUID is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuidStyle {
    /// `{8C4F2B9A-0F3C-4E5B-9D6A-1B2C3D4E5F60}`, as Windows formats a GUID (StringFromGUID2).
    Braced,
    /// `0c38434f-aa00-4e5b-9d6a-1b2c3d4e5f60`, as sstpc sends it.
    Bare,
}

impl GuidStyle {
    /// A random (version 4, RFC 9562 §5.4) GUID in this style.
    pub fn generate(self, rng: &mut dyn Rng) -> String {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0F) | 0x40;
        b[8] = (b[8] & 0x3F) | 0x80;
        let hex = |bytes: &[u8]| bytes.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let bare = format!(
            "{}-{}-{}-{}-{}",
            hex(&b[..4]),
            hex(&b[4..6]),
            hex(&b[6..8]),
            hex(&b[8..10]),
            hex(&b[10..])
        );
        match self {
            Self::Braced => format!("{{{}}}", bare.to_ascii_uppercase()),
            Self::Bare => bare,
        }
    }
}

/// One packet the client sent or received, kept when [`ClientConfig::record`] is on, so tests
/// can assert every answer of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// True for what the server sent.
    pub from_server: bool,
    /// The packet.
    pub packet: RecordedPacket,
}

/// What was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordedPacket {
    /// The HTTP request or the head of the HTTP response.
    Http(String),
    /// A control message.
    Control(ControlMessage),
    /// A PPP control frame (not IP data), decoded.
    Ppp {
        /// Its protocol.
        protocol: sstp_ppp::Protocol,
        /// The information field (the control packet: code, identifier, length, data).
        information: Vec<u8>,
        /// The frame as it went on the wire, header included.
        frame: Vec<u8>,
    },
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn windows_guids_are_braced_uppercase_and_sstpc_guids_bare_lowercase() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let braced = GuidStyle::Braced.generate(&mut rng);
        assert_eq!(braced.len(), 38);
        assert!(braced.starts_with('{') && braced.ends_with('}'));
        assert_eq!(braced, braced.to_ascii_uppercase());
        assert_eq!(&braced[15..16], "4", "version 4");
        let bare = GuidStyle::Bare.generate(&mut rng);
        assert_eq!(bare.len(), 36);
        assert_eq!(bare, bare.to_ascii_lowercase());
        assert_ne!(
            bare,
            braced[1..37].to_ascii_lowercase(),
            "a new one per attempt"
        );
    }

    #[test]
    fn profiles_parse_from_their_names() {
        for profile in ClientProfile::ALL {
            assert_eq!(profile.as_str().parse::<ClientProfile>(), Ok(profile));
        }
        assert!("windows7".parse::<ClientProfile>().is_err());
    }
}
