//! A TCP proxy on loopback between a client and a real server, for faults: it passes the bytes,
//! cuts every connection once the server has sent `n` bytes through it (a server dying in the
//! middle of an answer), or stalls (holds the connections open, forwards nothing).

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
    Stall,
}

pub struct Proxy {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    /// Bytes the server sent through the proxy.
    sent: Arc<AtomicUsize>,
}

impl Proxy {
    /// Forwards connections to 127.0.0.1:`target`.
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let sent = Arc::new(AtomicUsize::new(0));
        let (f, s) = (fault.clone(), sent.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let (up, down, s) = (f.clone(), f.clone(), s.clone());
                let (c2, s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                std::thread::spawn(move || pipe(client, server, None, &up));
                std::thread::spawn(move || pipe(s2, c2, Some(&s), &down));
            }
        });
        Proxy { port, fault, sent }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("fault") = fault;
        self.sent.store(0, Ordering::Relaxed);
    }

    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Copies `from` to `to` as the fault allows; `sent` counts the server's bytes.
fn pipe(mut from: TcpStream, mut to: TcpStream, sent: Option<&AtomicUsize>, fault: &Mutex<Fault>) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let now = *fault.lock().expect("fault");
        if now == Fault::Stall {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
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
