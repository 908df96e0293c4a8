//! Hang-up watch: learn that the server closed a connection without
//! polling it on the hot path.
//!
//! Each connection's socket is registered once, when it is opened, in an
//! epoll set for `EPOLLRDHUP` (the peer closed its side: pg_terminate_backend,
//! a server shutdown or crash) in edge-triggered mode, so ordinary query
//! traffic never wakes the watcher. A core thread sleeps in `epoll_wait` and
//! records, per slot, the registration token of a connection that hung up;
//! a checkout compares it with the slot's own token (one atomic load) and
//! sends a hung-up connection for validation instead of lending it.
//!
//! The watcher never touches a slot or a payload: it only writes the board.
//! Closing a socket removes it from the epoll set (the kernel does that), and
//! tokens make a late event for an old connection harmless.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::slot::SlotId;
use crate::table::{locate, BASE, SEGMENTS};

/// The last token, per slot, whose connection hung up.
#[derive(Debug)]
struct Board {
    segments: [OnceLock<Box<[AtomicU64]>>; SEGMENTS],
}

impl Board {
    fn new() -> Self {
        Self {
            segments: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn entry(&self, id: SlotId) -> Option<&AtomicU64> {
        let (seg, off) = locate(id as usize);
        self.segments
            .get(seg)?
            .get_or_init(|| (0..(BASE << seg)).map(|_| AtomicU64::new(0)).collect())
            .get(off)
    }
}

const TOKEN_BITS: u32 = 40;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;

#[derive(Debug)]
pub struct HangupWatch {
    board: Arc<Board>,
    next_token: AtomicU64,
    #[cfg(all(target_os = "linux", not(loom)))]
    sys: Option<linux::Watcher>,
}

impl HangupWatch {
    /// Start watching (a thread per pool, asleep until a server hangs up).
    /// Where epoll is missing the watch is inert and liveness falls back to
    /// the socket poll after the bypass window.
    pub fn start(name: &str) -> Self {
        let board = Arc::new(Board::new());
        let _ = name; // names the thread where there is one
        Self {
            #[cfg(all(target_os = "linux", not(loom)))]
            sys: linux::Watcher::start(name, board.clone()),
            board,
            next_token: AtomicU64::new(1),
        }
    }

    /// Watch the socket `fd` of the connection just installed in slot `id`.
    /// Returns the token to compare with later (0: not watched).
    pub fn register(&self, id: SlotId, fd: i32) -> u64 {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed) & TOKEN_MASK;
        if let Some(e) = self.board.entry(id) {
            // A previous connection's hang-up must not stick to this one.
            e.store(0, Ordering::Relaxed);
        }
        #[cfg(all(target_os = "linux", not(loom)))]
        if let Some(sys) = &self.sys {
            if fd >= 0 && sys.register(fd, (u64::from(id) << TOKEN_BITS) | token) {
                return token;
            }
        }
        let _unwatched = (fd, token);
        0
    }

    /// Whether the connection registered with `token` in slot `id` hung up.
    #[inline]
    pub fn hung_up(&self, id: SlotId, token: u64) -> bool {
        token != 0
            && self
                .board
                .entry(id)
                .is_some_and(|e| e.load(Ordering::Acquire) == token)
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
mod linux {
    use super::{Arc, Board, Ordering, TOKEN_BITS, TOKEN_MASK};

    /// epoll data of the eventfd that stops the watcher.
    const WAKE: u64 = u64::MAX;
    use std::thread::JoinHandle;

    #[derive(Debug)]
    pub(super) struct Watcher {
        epfd: i32,
        wakefd: i32,
        thread: Option<JoinHandle<()>>,
    }

    fn ctl(epfd: i32, op: i32, fd: i32, events: u32, data: u64) -> bool {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call;
        // epoll_ctl only reads it. A stale or foreign fd yields an error
        // code, not undefined behaviour.
        unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) == 0 }
    }

    impl Watcher {
        pub(super) fn start(name: &str, board: Arc<Board>) -> Option<Self> {
            // SAFETY: plain syscalls creating new descriptors; failures are
            // checked and leave nothing to clean up but what we close below.
            let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if epfd < 0 {
                return None;
            }
            // SAFETY: as above.
            let wakefd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if wakefd < 0
                || !ctl(
                    epfd,
                    libc::EPOLL_CTL_ADD,
                    wakefd,
                    libc::EPOLLIN as u32,
                    WAKE,
                )
            {
                // SAFETY: closing descriptors we just created and own.
                unsafe {
                    libc::close(epfd);
                    if wakefd >= 0 {
                        libc::close(wakefd);
                    }
                }
                return None;
            }
            let thread = std::thread::Builder::new()
                .name(format!("{name}-hangup"))
                .spawn(move || watch(epfd, &board))
                .ok()?;
            Some(Self {
                epfd,
                wakefd,
                thread: Some(thread),
            })
        }

        pub(super) fn register(&self, fd: i32, data: u64) -> bool {
            let events = (libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, events, data)
                || ctl(self.epfd, libc::EPOLL_CTL_MOD, fd, events, data)
        }
    }

    fn watch(epfd: i32, board: &Board) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            // SAFETY: `events` is a valid, writable buffer of 64 entries and
            // we pass its length; epoll_wait writes at most that many.
            let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), 64, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            for ev in &events[..n as usize] {
                let data = ev.u64;
                if data == WAKE {
                    return;
                }
                let id = (data >> TOKEN_BITS) as crate::slot::SlotId;
                if let Some(e) = board.entry(id) {
                    e.store(data & TOKEN_MASK, Ordering::Release);
                }
            }
        }
    }

    impl Drop for Watcher {
        fn drop(&mut self) {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a valid u64 to our own eventfd.
            unsafe {
                libc::write(self.wakefd, (&one as *const u64).cast(), 8);
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            // SAFETY: the watcher thread has exited; these descriptors are
            // ours and closed exactly once.
            unsafe {
                libc::close(self.epfd);
                libc::close(self.wakefd);
            }
        }
    }
}
