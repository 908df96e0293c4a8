//! Hang-up watch: learn that the server closed a connection without
//! polling it on the hot path.
//!
//! Each connection's socket is registered once, when it is opened. A
//! watcher thread records, per slot, the registration token of a
//! connection whose server hung up (pg_terminate_backend, a shutdown or a
//! crash); a checkout compares it with the slot's own token (one atomic
//! load) and sends a hung-up connection for validation instead of lending
//! it. The watcher never touches a slot or a payload, never reads or
//! writes a socket: it only writes the board. Tokens make a late event for
//! an old connection harmless.
//!
//! The watch runs only while its pool is open: `start()` at open creates
//! the thread and its descriptors, `stop()` at close joins the thread and
//! closes them, so a closed or never-opened pool holds neither.
//!
//! Backends, chosen once per pool when it is built:
//! - `Epoll` (Linux): an edge-triggered `EPOLLRDHUP` watch; the thread
//!   sleeps in `epoll_wait` until a server hangs up, so ordinary query
//!   traffic never wakes it. Closing a socket removes it from the set.
//! - `Poll` (every other Unix, or Linux with `FERROPOOL_HANGUP_WATCH=poll`
//!   in the environment, which is how it is tested): the thread looks at
//!   every registered socket with a zero-timeout `poll()` every
//!   [`POLL_PERIOD`], for a hang-up (`POLLRDHUP` on Linux; `POLLHUP`, which
//!   macOS reports when the peer closed) or an error.
//! - `Inert` (Windows, loom models): no thread; liveness relies on the
//!   socket poll after the bypass window, where there is one, and on pings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::slot::SlotId;
use crate::table::{locate, BASE, SEGMENTS};

/// The environment variable that forces a backend (`poll`), read when a
/// pool is built.
pub const BACKEND_ENV: &str = "FERROPOOL_HANGUP_WATCH";

/// How often the `Poll` backend looks at the sockets: slower than an
/// event-driven watch, cheap (one syscall for every socket at once).
pub const POLL_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

/// How the watch learns of hang-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Epoll,
    Poll,
    Inert,
}

impl Backend {
    /// The platform's backend, or the one forced by [`BACKEND_ENV`].
    pub fn from_env() -> Self {
        let forced = std::env::var(BACKEND_ENV).ok();
        match forced.as_deref() {
            Some("poll") if cfg!(all(unix, not(loom))) => Backend::Poll,
            Some("off") => Backend::Inert,
            _ if cfg!(all(target_os = "linux", not(loom))) => Backend::Epoll,
            _ if cfg!(all(unix, not(loom))) => Backend::Poll,
            _ => Backend::Inert,
        }
    }
}

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

    /// The watcher saw the connection registered as `token` in `id` hang up.
    #[cfg(all(unix, not(loom)))]
    fn mark(&self, id: SlotId, token: u64) {
        if let Some(e) = self.entry(id) {
            e.store(token, Ordering::Release);
        }
    }
}

const TOKEN_BITS: u32 = 40;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;

#[derive(Debug)]
pub struct HangupWatch {
    board: Arc<Board>,
    next_token: AtomicU64,
    backend: Backend,
    /// The running watcher, between `start()` and `stop()`.
    running: Mutex<Option<sys::Watcher>>,
}

impl Default for HangupWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl HangupWatch {
    /// A stopped watch with the backend [`Backend::from_env`] chooses.
    pub fn new() -> Self {
        Self::with_backend(Backend::from_env())
    }

    pub fn with_backend(backend: Backend) -> Self {
        Self {
            board: Arc::new(Board::new()),
            next_token: AtomicU64::new(1),
            backend,
            running: Mutex::new(None),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<sys::Watcher>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start watching (a thread, asleep until a server hangs up or, for
    /// `Poll`, waking every [`POLL_PERIOD`]). Where the backend cannot
    /// start, the watch stays inert and liveness falls back to the socket
    /// poll after the bypass window.
    pub fn start(&self, name: &str) {
        let mut running = self.running();
        if running.is_none() {
            *running = sys::Watcher::start(self.backend, name, self.board.clone());
        }
    }

    /// Stop watching: the thread is joined and its descriptors closed.
    /// Connections registered so far read as not hung up from now on.
    pub fn stop(&self) {
        // Taken out first: its drop (which joins the thread) runs after
        // the lock is released.
        let watcher = self.running().take();
        let _stopped = watcher;
    }

    /// Whether a watcher thread is running.
    pub fn is_running(&self) -> bool {
        self.running().is_some()
    }

    /// Watch the socket `fd` of the connection just installed in slot `id`.
    /// Returns the token to compare with later (0: not watched).
    pub fn register(&self, id: SlotId, fd: i32) -> u64 {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed) & TOKEN_MASK;
        if let Some(e) = self.board.entry(id) {
            // A previous connection's hang-up must not stick to this one.
            e.store(0, Ordering::Relaxed);
        }
        if fd >= 0 {
            if let Some(w) = self.running().as_ref() {
                if w.register(id, fd, token) {
                    return token;
                }
            }
        }
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

/// The running watchers, one type per backend available on this platform.
mod sys {
    use super::{Arc, Backend, Board, SlotId};

    #[derive(Debug)]
    pub(super) enum Watcher {
        #[cfg(all(target_os = "linux", not(loom)))]
        Epoll(super::epoll::Watcher),
        #[cfg(all(unix, not(loom)))]
        Poll(super::poll::Watcher),
    }

    impl Watcher {
        pub(super) fn start(backend: Backend, name: &str, board: Arc<Board>) -> Option<Self> {
            let _unused = (name, &board);
            match backend {
                #[cfg(all(target_os = "linux", not(loom)))]
                Backend::Epoll => super::epoll::Watcher::start(name, board).map(Watcher::Epoll),
                #[cfg(all(unix, not(loom)))]
                Backend::Poll => super::poll::Watcher::start(name, board).map(Watcher::Poll),
                _ => None,
            }
        }

        pub(super) fn register(&self, id: SlotId, fd: i32, token: u64) -> bool {
            let _unused = (id, fd, token);
            match *self {
                #[cfg(all(target_os = "linux", not(loom)))]
                Watcher::Epoll(ref w) => w.register(id, fd, token),
                #[cfg(all(unix, not(loom)))]
                Watcher::Poll(ref w) => w.register(id, fd, token),
            }
        }
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
mod epoll {
    use super::{Arc, Board, SlotId, TOKEN_BITS, TOKEN_MASK};

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

    fn close_both(epfd: i32, wakefd: i32) {
        // SAFETY: closing descriptors this module created and owns, each
        // once (callers pass only descriptors not closed yet, or -1).
        unsafe {
            if epfd >= 0 {
                libc::close(epfd);
            }
            if wakefd >= 0 {
                libc::close(wakefd);
            }
        }
    }

    impl Watcher {
        pub(super) fn start(name: &str, board: Arc<Board>) -> Option<Self> {
            // SAFETY: a plain syscall creating a new descriptor; failure is
            // checked.
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
                close_both(epfd, wakefd);
                return None;
            }
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-hangup"))
                .spawn(move || watch(epfd, &board));
            match spawned {
                Ok(thread) => Some(Self {
                    epfd,
                    wakefd,
                    thread: Some(thread),
                }),
                Err(_) => {
                    close_both(epfd, wakefd);
                    None
                }
            }
        }

        pub(super) fn register(&self, id: SlotId, fd: i32, token: u64) -> bool {
            let data = (u64::from(id) << TOKEN_BITS) | token;
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
                board.mark((data >> TOKEN_BITS) as SlotId, data & TOKEN_MASK);
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
            // The watcher thread has exited: nothing uses them any more.
            close_both(self.epfd, self.wakefd);
        }
    }
}

#[cfg(all(unix, not(loom)))]
mod poll {
    use std::collections::HashMap;
    use std::sync::{Condvar, Mutex, MutexGuard};
    use std::thread::JoinHandle;

    use super::{Arc, Board, SlotId, POLL_PERIOD};

    /// What the watcher asks poll() about; hang-ups and errors are always
    /// reported (POLLHUP: macOS sets it when the peer closed its side).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const EVENTS: libc::c_short = libc::POLLRDHUP;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const EVENTS: libc::c_short = 0;

    /// What counts as a hang-up (POLLNVAL: the socket was closed under the
    /// registration; its token no longer matters or the slot is refilled).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const HUNG_UP: libc::c_short = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const HUNG_UP: libc::c_short = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;

    #[derive(Debug, Default)]
    struct Shared {
        /// The socket and token registered last in each slot; a slot
        /// refilled replaces its entry, so there is one per slot at most.
        sockets: Mutex<HashMap<SlotId, (i32, u64)>>,
        stop: Mutex<bool>,
        wake: Condvar,
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[derive(Debug)]
    pub(super) struct Watcher {
        shared: Arc<Shared>,
        thread: Option<JoinHandle<()>>,
    }

    impl Watcher {
        pub(super) fn start(name: &str, board: Arc<Board>) -> Option<Self> {
            let shared = Arc::new(Shared::default());
            let theirs = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-hangup"))
                .spawn(move || watch(&theirs, &board))
                .ok()?;
            Some(Self {
                shared,
                thread: Some(thread),
            })
        }

        pub(super) fn register(&self, id: SlotId, fd: i32, token: u64) -> bool {
            lock(&self.shared.sockets).insert(id, (fd, token));
            true
        }
    }

    fn watch(shared: &Shared, board: &Board) {
        let mut polled: Vec<(SlotId, u64)> = Vec::new();
        let mut fds: Vec<libc::pollfd> = Vec::new();
        loop {
            {
                let stop = lock(&shared.stop);
                let (stop, _) = shared
                    .wake
                    .wait_timeout_while(stop, POLL_PERIOD, |stop| !*stop)
                    .unwrap_or_else(|p| p.into_inner());
                if *stop {
                    return;
                }
            }
            polled.clear();
            fds.clear();
            for (id, (fd, token)) in lock(&shared.sockets).iter() {
                polled.push((*id, *token));
                fds.push(libc::pollfd {
                    fd: *fd,
                    events: EVENTS,
                    revents: 0,
                });
            }
            if fds.is_empty() {
                continue;
            }
            // SAFETY: `fds` is a valid, writable array of `fds.len()`
            // pollfds; with a zero timeout poll(2) only inspects the
            // descriptors and writes `revents`. A descriptor closed
            // meanwhile yields POLLNVAL, never undefined behaviour.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
            if n <= 0 {
                continue;
            }
            for (pfd, (id, token)) in fds.iter().zip(&polled) {
                if pfd.revents & HUNG_UP != 0 {
                    board.mark(*id, *token);
                }
            }
        }
    }

    impl Drop for Watcher {
        fn drop(&mut self) {
            *lock(&self.shared.stop) = true;
            self.shared.wake.notify_all();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(all(test, unix, not(loom)))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    /// A peer that hangs up is seen by the watch, a quiet one is not;
    /// stopping the watch ends its thread and forgets the connections.
    fn sees_hang_ups(backend: Backend) {
        let watch = HangupWatch::with_backend(backend);
        let (quiet, _quiet_peer) = UnixStream::pair().unwrap();
        let (gone, gone_peer) = UnixStream::pair().unwrap();
        assert_eq!(watch.register(0, gone.as_raw_fd()), 0, "stopped: unwatched");
        watch.start("test");
        assert!(watch.is_running());
        let q = watch.register(0, quiet.as_raw_fd());
        let g = watch.register(1, gone.as_raw_fd());
        assert!(q != 0 && g != 0);
        drop(gone_peer);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !watch.hung_up(1, g) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(watch.hung_up(1, g), "{backend:?}: the hang-up was seen");
        assert!(!watch.hung_up(0, q), "{backend:?}: the quiet one is not");
        assert!(
            !watch.hung_up(1, g + 1),
            "another token is another connection"
        );
        watch.stop();
        assert!(!watch.is_running());
        assert_eq!(watch.register(2, quiet.as_raw_fd()), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn epoll_backend_sees_hang_ups() {
        sees_hang_ups(Backend::Epoll);
    }

    #[test]
    fn poll_backend_sees_hang_ups() {
        sees_hang_ups(Backend::Poll);
    }

    #[test]
    fn inert_backend_runs_nothing() {
        let watch = HangupWatch::with_backend(Backend::Inert);
        watch.start("test");
        assert!(!watch.is_running());
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(watch.register(0, a.as_raw_fd()), 0);
    }
}
