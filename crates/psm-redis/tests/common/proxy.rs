//! A TCP proxy in front of a real Redis that can fail like a network does: it can silently stop
//! forwarding on every connection open at that moment (a "dead" peer whose kernel still holds the
//! socket), or swallow the reply to the next command containing a marker and close that
//! connection (the command ran on the server, its caller never hears of it).

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use parking_lot::Mutex;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

#[derive(Default)]
struct State {
    /// Connections with a generation below this are blackholed.
    dead_below: AtomicU64,
    generation: AtomicU64,
    /// The marker whose reply is swallowed next (once).
    eat: Mutex<Option<Vec<u8>>>,
    eaten: AtomicU64,
}

/// The proxy; stops accepting when dropped.
pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let generation = st.generation.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(pipe(client, server, Arc::clone(&st), generation));
            }
        });
        Self { port, state, task }
    }

    /// Every connection open now stops forwarding in both directions (sockets stay open); new
    /// connections work.
    pub fn blackhole_open_connections(&self) {
        let g = self.state.generation.load(Ordering::SeqCst);
        self.state.dead_below.store(g + 1, Ordering::SeqCst);
    }

    /// The reply to the next command containing `marker` is swallowed and its connection closed.
    pub fn swallow_next_reply_to(&self, marker: &[u8]) {
        *self.state.eat.lock() = Some(marker.to_vec());
    }

    /// How many replies were swallowed.
    pub fn swallowed(&self) -> u64 {
        self.state.eaten.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, st: Arc<State>, generation: u64) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let armed = Arc::new(AtomicBool::new(false));
    let dead = {
        let st = Arc::clone(&st);
        move || st.dead_below.load(Ordering::SeqCst) > generation
    };
    let up = {
        let (st, armed, dead) = (Arc::clone(&st), Arc::clone(&armed), dead.clone());
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if dead() {
                    continue;
                }
                {
                    let mut eat = st.eat.lock();
                    if let Some(m) = eat.as_ref()
                        && buf[..n].windows(m.len()).any(|w| w == m.as_slice())
                    {
                        *eat = None;
                        armed.store(true, Ordering::SeqCst);
                    }
                }
                if sw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let down = {
        let (st, armed) = (Arc::clone(&st), Arc::clone(&armed));
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if dead() {
                    continue;
                }
                if armed.load(Ordering::SeqCst) {
                    st.eaten.fetch_add(1, Ordering::SeqCst);
                    let _ = cw.shutdown().await;
                    return;
                }
                if cw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
