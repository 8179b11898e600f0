//! The test registry's HTTP server on a thread of its own with a tokio runtime of its own, so a
//! sync test and an async test (whatever its runtime) use it alike. It listens on one loopback
//! port for its whole life: a [`Outage::Refuse`] closes the listener (and the open connections)
//! and the end of the outage binds the same port again.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use super::gate::{Gate, Outage};

/// A running server, stopped on drop.
pub struct Server {
    pub addr: SocketAddr,
    gate: Arc<Gate>,
    listening: Arc<Listening>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `router` (already behind `gate`) on a free loopback port.
    pub fn start(router: Router, gate: Arc<Gate>) -> std::io::Result<Self> {
        let first = std::net::TcpListener::bind("127.0.0.1:0")?;
        first.set_nonblocking(true)?;
        let addr = first.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listening = Arc::new(Listening::default());
        let shutdown = watch::Sender::new(false);
        let run = Run {
            addr,
            router,
            outage: gate.outage.subscribe(),
            shutdown: shutdown.subscribe(),
            listening: listening.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("schema-registry-{}", addr.port()))
            .spawn(move || runtime.block_on(run.serve(first)))?;
        let server = Self {
            addr,
            gate,
            listening,
            shutdown,
            thread: Some(thread),
        };
        server.wait_listening(true);
        Ok(server)
    }

    /// Starts or ends an outage; returns once the listener is closed (or open again).
    pub fn set_outage(&self, outage: Outage) {
        self.gate.outage.send_replace(outage);
        self.wait_listening(outage != Outage::Refuse);
    }

    fn wait_listening(&self, listening: bool) {
        let reached = self.listening.wait_for(listening, Duration::from_secs(10));
        let doing = if listening { "listen on" } else { "close" };
        assert!(
            reached,
            "the test registry did not {doing} {} in 10 s",
            self.addr
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether the server holds its listening socket, for the handle to wait on.
#[derive(Default)]
struct Listening {
    state: Mutex<bool>,
    changed: Condvar,
}

impl Listening {
    fn set(&self, listening: bool) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = listening;
        self.changed.notify_all();
    }

    fn wait_for(&self, listening: bool, timeout: Duration) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| *s != listening)
            .unwrap_or_else(|e| e.into_inner());
        *state == listening
    }
}

/// What the server thread owns.
struct Run {
    addr: SocketAddr,
    router: Router,
    outage: watch::Receiver<Outage>,
    shutdown: watch::Receiver<bool>,
    listening: Arc<Listening>,
}

impl Run {
    /// Listens until shut down, closing the listener for each `Refuse` outage.
    async fn serve(mut self, first: std::net::TcpListener) {
        let mut next = TcpListener::from_std(first);
        loop {
            let listener = match next {
                Ok(listener) => listener,
                Err(error) => {
                    eprintln!("test registry: cannot listen on {}: {error}", self.addr);
                    return;
                }
            };
            let (closed, on_close) = oneshot::channel();
            let listener = Tracked {
                inner: listener,
                _closed: OnDrop(Some(closed)),
            };
            let mut outage = self.outage.clone();
            let mut shutdown = self.shutdown.clone();
            let stop = async move {
                tokio::select! {
                    _ = outage.wait_for(|o| *o == Outage::Refuse) => {}
                    _ = shutdown.wait_for(|s| *s) => {}
                }
            };
            let serve = axum::serve(listener, self.router.clone()).with_graceful_shutdown(stop);
            tokio::spawn(std::future::IntoFuture::into_future(serve));
            self.listening.set(true);
            let _ = on_close.await;
            self.listening.set(false);
            tokio::select! {
                _ = self.outage.wait_for(|o| *o != Outage::Refuse) => {}
                _ = self.shutdown.wait_for(|s| *s) => return,
            }
            if *self.shutdown.borrow() {
                return;
            }
            next = bind(self.addr).await;
        }
    }
}

/// Binds `addr` again, retrying while the port is briefly still taken.
async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => return result,
        }
    }
}

/// A listener that says when it is closed. Fields drop in declaration order, so the socket is
/// closed before `_closed` reports it.
struct Tracked {
    inner: TcpListener,
    _closed: OnDrop,
}

struct OnDrop(Option<oneshot::Sender<()>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(closed) = self.0.take() {
            let _ = closed.send(());
        }
    }
}

impl axum::serve::Listener for Tracked {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        axum::serve::Listener::accept(&mut self.inner).await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
