//! A TCP proxy on loopback between a client and a real server, for faults: it passes the bytes,
//! cuts every connection once the server has sent `n` bytes through it (a server dying in the
//! middle of an answer), stalls (holds the connections open, forwards nothing: a peer that
//! stopped answering but whose kernel still acknowledges), slows every chunk down, or refuses
//! new connections. A fault applies to the open connections and to those opened later;
//! `cut_all` ends every open connection at once (a network or server dying under them).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    /// Cuts every connection once the server has sent this many bytes in all.
    CutAfter(usize),
    /// Forwards nothing (in either direction) until the fault changes; connections stay open.
    Stall,
    /// Waits this long before forwarding each chunk read (in either direction).
    Slow(Duration),
    /// Closes new connections as soon as they are accepted (a server that is down); open ones pass.
    Refuse,
}

/// The open connections: both sockets of each, to end them all at once.
type Open = Arc<Mutex<Vec<(TcpStream, TcpStream)>>>;

pub struct Proxy {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    /// Bytes the server sent through the proxy.
    sent: Arc<AtomicUsize>,
    open: Open,
}

impl Proxy {
    /// Forwards connections to 127.0.0.1:`target`.
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let sent = Arc::new(AtomicUsize::new(0));
        let open: Open = Arc::default();
        let (f, s, o) = (fault.clone(), sent.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if *f.lock().expect("fault") == Fault::Refuse {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                    let mut open = o.lock().expect("open");
                    // Connections both of whose ends are shut are done: forget them.
                    open.retain(|(c, _)| c.peer_addr().is_ok());
                    open.push((c, s));
                }
                let (up, down, s) = (f.clone(), f.clone(), s.clone());
                let (c2, s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                std::thread::spawn(move || pipe(client, server, None, &up));
                std::thread::spawn(move || pipe(s2, c2, Some(&s), &down));
            }
        });
        Proxy { port, fault, sent, open }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("fault") = fault;
        self.sent.store(0, Ordering::Relaxed);
    }

    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Ends every open connection now, both ways; returns how many there were. New connections
    /// are then treated as the fault says.
    pub fn cut_all(&self) -> usize {
        let open = std::mem::take(&mut *self.open.lock().expect("open"));
        for (client, server) in &open {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        open.len()
    }
}

/// Copies `from` to `to` as the fault allows; `sent` counts the server's bytes.
fn pipe(mut from: TcpStream, mut to: TcpStream, sent: Option<&AtomicUsize>, fault: &Mutex<Fault>) {
    let mut buffer = [0u8; 16 * 1024];
    let stalled = || *fault.lock().expect("fault") == Fault::Stall;
    loop {
        while stalled() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A stall that began while this read waited holds what it read, too.
        while stalled() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let now = *fault.lock().expect("fault");
        if let Fault::Slow(delay) = now {
            std::thread::sleep(delay);
        }
        if let (Some(sent), Fault::CutAfter(limit)) = (sent, now) {
            if sent.fetch_add(n, Ordering::Relaxed) + n > limit {
                break;
            }
        } else if let Some(sent) = sent {
            sent.fetch_add(n, Ordering::Relaxed);
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
