//! The connection cap of `sphere-lite serve`, alone in its test binary: it counts the
//! process's sockets, which other tests running in parallel would disturb.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sphere_lite::door::DoorSettings;

#[path = "door_support/mod.rs"]
mod door_support;

use door_support::{DoorServer, read_answer};

/// Sockets this process holds open (client and server ends alike).
fn sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd (this test needs Linux procfs)")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Fails before this change: warp accepted every connection it could, so idle sockets took
/// as many descriptors and tasks as an attacker opened. Now, with a cap of 4 and 14 idle
/// sockets, the server holds at most 4 of them at any moment, and a normal request made
/// behind them is served once the idle ones have timed out.
#[test]
fn the_cap_holds_with_idle_sockets_and_a_waiting_request_is_served() {
    const CAP: usize = 4;
    let server = DoorServer::start(
        DoorSettings {
            max_connections: CAP,
            header_read_timeout: Duration::from_secs(2),
            ..DoorSettings::default()
        },
        None,
    );
    let before = sockets();
    let idle: Vec<TcpStream> = (0..CAP + 10).map(|_| server.connect()).collect();
    // The server's accepted ends are the sockets beyond ours; watch them while the idle
    // connections are accepted and time out in turn.
    let mut most = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let accepted = sockets().saturating_sub(before + idle.len());
        most = most.max(accepted);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(most >= 1, "the server accepted nothing");
    assert!(
        most <= CAP,
        "{most} connections accepted at once with a cap of {CAP}"
    );

    let mut s = server.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut s, Duration::from_secs(60))
        .expect("the request behind the idle sockets was never served");
    assert_eq!(answer.status, 200, "{answer:?}");
    drop(idle);
}
