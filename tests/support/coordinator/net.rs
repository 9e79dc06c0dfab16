//! A listener whose connections can be killed (every read and write fails at once, like a
//! process killed with -9) or frozen (every read and write hangs, like SIGSTOP), so an
//! in-process coordinator can reproduce the failures the link must survive.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

const OPEN: u8 = 0;
const FROZEN: u8 = 1;
const KILLED: u8 = 2;

/// Wakers of one connection, so a state change reaches a task blocked on the socket.
#[derive(Default)]
struct Slot {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

/// The state shared by every connection of one server instance.
#[derive(Default)]
pub struct Gate {
    mode: AtomicU8,
    slots: Mutex<Vec<Weak<Slot>>>,
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn freeze(&self) {
        self.set(FROZEN);
    }

    pub fn thaw(&self) {
        self.set(OPEN);
    }

    pub fn kill(&self) {
        self.set(KILLED);
    }

    pub fn is_killed(&self) -> bool {
        self.mode.load(Ordering::SeqCst) == KILLED
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        let mut slots = self.slots.lock().unwrap();
        slots.retain(|s| s.strong_count() > 0);
        for slot in slots.iter().filter_map(Weak::upgrade) {
            for waker in [&slot.read, &slot.write] {
                if let Some(w) = waker.lock().unwrap().take() {
                    w.wake();
                }
            }
        }
    }

    fn register(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        let mut slots = self.slots.lock().unwrap();
        slots.retain(|s| s.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        slot
    }

    fn check(&self, waker: &Mutex<Option<Waker>>, cx: &Context<'_>) -> Poll<io::Result<()>> {
        // The waker is kept even when open: a kill must wake a task parked on the socket.
        *waker.lock().unwrap() = Some(cx.waker().clone());
        match self.mode.load(Ordering::SeqCst) {
            OPEN => Poll::Ready(Ok(())),
            FROZEN => Poll::Pending,
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "killed",
            ))),
        }
    }
}

/// A TCP connection behind a gate.
pub struct GatedStream {
    inner: TcpStream,
    gate: Arc<Gate>,
    slot: Arc<Slot>,
}

impl AsyncRead for GatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.gate.check(&this.slot.read, cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_read(cx, buf),
            other => other,
        }
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.gate.check(&this.slot.write, cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.gate.check(&this.slot.write, cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gate.is_killed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An axum listener whose connections go through `gate`.
pub struct GatedListener {
    pub inner: TcpListener,
    pub gate: Arc<Gate>,
}

impl axum::serve::Listener for GatedListener {
    type Io = GatedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let slot = self.gate.register();
                    return (
                        GatedStream {
                            inner: stream,
                            gate: self.gate.clone(),
                            slot,
                        },
                        addr,
                    );
                }
                // EMFILE and friends: back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
