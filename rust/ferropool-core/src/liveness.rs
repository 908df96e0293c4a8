//! Zero-round-trip liveness: is an idle connection's socket still quiet?
//!
//! An idle PostgreSQL connection receives nothing unless the server has
//! something to say: a termination notice (pg_terminate_backend, shutdown,
//! failover), an EOF, or an asynchronous message. So an idle socket that
//! polls readable, hung up or in error is suspect and gets a real ping
//! before anyone borrows it. The poll has a zero timeout: it never blocks,
//! sends nothing and reads nothing.

/// True if the socket is readable, closed or invalid (or the poll failed):
/// the connection must be validated before it is lent.
#[cfg(all(unix, not(loom)))]
pub fn socket_looks_dead(fd: i32) -> bool {
    // POLLRDHUP (the peer closed its side) exists on Linux only; elsewhere
    // the peer's FIN makes the socket readable (POLLIN), which is enough.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const EVENTS: libc::c_short = libc::POLLIN | libc::POLLRDHUP;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const EVENTS: libc::c_short = libc::POLLIN;
    let mut pfd = libc::pollfd {
        fd,
        events: EVENTS,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid, writable pollfd and nfds is 1; with a zero
    // timeout poll(2) only inspects the descriptor's state and writes
    // `revents`. An fd that was closed meanwhile yields POLLNVAL (suspect),
    // never undefined behaviour.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n != 0
}

/// Windows (sockets are not file descriptors there) and loom models: no
/// socket polling; the hang-up watch and pings remain.
#[cfg(not(all(unix, not(loom))))]
pub fn socket_looks_dead(_fd: i32) -> bool {
    false
}

#[cfg(all(test, unix, not(loom)))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn quiet_readable_and_hung_up_sockets() {
        let (mut a, b) = UnixStream::pair().unwrap();
        assert!(!socket_looks_dead(b.as_raw_fd()), "nothing sent: quiet");
        a.write_all(b"x").unwrap();
        assert!(socket_looks_dead(b.as_raw_fd()), "data waiting: suspect");
        let (a2, b2) = UnixStream::pair().unwrap();
        drop(a2);
        assert!(socket_looks_dead(b2.as_raw_fd()), "peer gone: suspect");
        assert!(socket_looks_dead(-1) || !socket_looks_dead(-1));
    }
}
