//! The SSTP gateway's I/O shell: everything that touches sockets, files, devices and the kernel
//! around the sans-IO protocol crates (`sstp-proto`, `sstp-ppp`).
//!
//! Each module has one job:
//! - [`pki`]: the standalone CA, server certificate and CRL, and certificate inspection.
//! - [`ip_pool`]: the tunnel address allocator (pure).
//! - [`router`]: destination address -> session channel, for packets read from the TUN device.
//! - [`tun`]: the TUN device (Linux).
//! - [`nat`]: the nftables table for masquerade and MSS clamping.
//! - [`ip_forward`]: `net.ipv4.ip_forward`, read, turned on when possible, explained when not.
//! - [`metrics`]: the Prometheus registry and every `sstp_*` metric.
//! - [`admin`]: the admin HTTP server (`/metrics`, `/healthz`, `/readyz`) and the plain HTTP
//!   server for `/sstp/ca.crt` and `/sstp/ca.crl`.
//! - [`users_file`]: the users document, loaded from a file and reloaded on change.
//! - [`k8s_source`]: the users document and the TLS Secret, watched through the Kubernetes API
//!   when the gateway config names them (the operator's does), so changes apply within seconds.
//! - [`client`]: the project's own SSTP client (tests, load tool).
//! - [`tls`]: the rustls server configuration that follows its certificate files.
//! - [`proxy_protocol`]: re-export of `sstp_proto::proxy_protocol`, the sans-IO PROXY
//!   protocol v1/v2 header parser the listener runs before TLS.
//! - [`listener`]: the SSTP port (limits, PROXY header, TLS handshake deadline).
//! - [`pending`]: the budget of connections not logged in yet (a place each, a share per
//!   source, the oldest of the biggest source evicted when full).
//! - [`admission`]: a session whose credentials checked out, admitted before Success: the
//!   user's session limit, `maxSessions`, an address.
//! - `tls_sni`: reads the ClientHello's `server_name` before rustls, to explain and count the
//!   names rustls refuses (`HOST:PORT` from `sstpc --tls-ext`).
//! - `clock`: the time sessions and the client driver run on (tokio's, so tests can pause it).
//! - [`session`]: one task per connection driving `sstp_proto::ServerConnection`, and its
//!   audit records; `io_buffers`: that task's read and write buffers.
//! - [`users`]: credential lookup, address allocation and the session registry.
//! - [`throttle`]: auth-failure throttling per (user, source address).
//! - [`dataplane`]: the TUN reader and writer tasks.
//! - [`server`]: assembly and orderly shutdown.
//! - [`shutdown`]: the SIGTERM/SIGINT handlers.
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod admin;
pub mod admission;
pub mod client;
mod clock;
pub mod dataplane;
pub mod ip_forward;
pub mod ip_pool;
pub mod k8s_source;
pub mod listener;
pub mod metrics;
pub mod nat;
pub mod pending;
/// The certificates: the crate `sstp-pki`, shared with the operator.
pub use sstp_pki as pki;
pub use sstp_proto::proxy_protocol;
pub mod router;
pub mod server;
pub mod session;
pub mod shutdown;
#[cfg(test)]
mod test_packets;
pub mod throttle;
pub mod tls;
pub mod tun;
pub mod users;
pub mod users_file;

mod io_buffers;
mod tls_sni;
