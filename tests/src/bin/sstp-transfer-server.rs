//! The checksummed transfer server ([`sstp_e2e::transfer_server`]) as a program, for the pod the
//! real-node tests move data to through a tunnel: `sstp-transfer-server [ADDR]` (default
//! `0.0.0.0:9000`) serves until killed and prints one line per finished transfer,
//! `TRANSFER <GET|PUT> <bytes> <sha256> <complete|incomplete>`, which the test reads from the
//! pod's log.

use std::{net::SocketAddr, time::Duration};

use sstp_e2e::transfer_server::TransferServer;

/// How often finished transfers are looked for.
const POLL: Duration = Duration::from_millis(200);

fn main() {
    let addr: SocketAddr = match std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("0.0.0.0:9000")
        .parse()
    {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("sstp-transfer-server: bad address: {error}");
            std::process::exit(2);
        }
    };
    let server = match TransferServer::bind(addr) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("sstp-transfer-server: {error}");
            std::process::exit(1);
        }
    };
    println!("LISTENING {}", server.addr());
    let mut printed = 0;
    loop {
        let transfers = server.transfers();
        for transfer in &transfers[printed.min(transfers.len())..] {
            let state = if transfer.complete {
                "complete"
            } else {
                "incomplete"
            };
            println!(
                "TRANSFER {} {} {} {state}",
                transfer.kind, transfer.bytes, transfer.sha256
            );
        }
        printed = transfers.len();
        std::thread::sleep(POLL);
    }
}
