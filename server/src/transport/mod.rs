//! Accepted connections: TCP with TCP_NODELAY (without it, Nagle's algorithm and the client's
//! delayed ACK add ~40 ms to every response that spans two segments), TLS when configured
//! (`tls`), and what the auth layer learns about the peer (`PeerInfo`, in every request's
//! extensions).

pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// A handshake that takes longer is dropped: a client that connects and sends nothing must not
/// hold a slot for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once; beyond that the accept loop waits for one to end.
const MAX_HANDSHAKES: usize = 512;

/// A verified client certificate (mTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject, RFC 4514 style (`CN=netbox,O=example`).
    pub subject: String,
    /// DNS, URI and e-mail subject alternative names.
    pub sans: Vec<String>,
}

/// What is known about the other end of a connection.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    pub client_cert: Option<ClientCert>,
}

/// One accepted connection with its peer facts.
pub struct Conn<IO> {
    io: IO,
    info: PeerInfo,
}

impl<IO> Connected for Conn<IO> {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Conn<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Conn<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("refusing to serve plaintext gRPC on {0}, which is not a loopback address: give --tls-cert and --tls-key, or --insecure-plaintext when a mesh or proxy in front secures the traffic")]
    PlaintextNotLoopback(SocketAddr),
}

/// Plaintext gRPC carries tokens in the clear: only on loopback, unless the operator says that
/// something else (a mesh's mTLS sidecar) protects the path.
pub fn check_plaintext(listen: SocketAddr, insecure_plaintext: bool) -> Result<(), TransportError> {
    if listen.ip().is_loopback() || insecure_plaintext {
        Ok(())
    } else {
        Err(TransportError::PlaintextNotLoopback(listen))
    }
}

/// The next TCP connection, with TCP_NODELAY. Accept errors (e.g. out of file descriptors) are
/// logged and retried after a pause instead of ending the server.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                return (stream, remote);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Plaintext connections from `listener`.
pub fn plaintext(listener: TcpListener) -> impl Stream<Item = io::Result<Conn<TcpStream>>> {
    futures::stream::unfold(listener, |listener| async move {
        let (stream, remote) = accept(&listener).await;
        Some((Ok(Conn { io: stream, info: PeerInfo { remote: Some(remote), client_cert: None } }), listener))
    })
}

/// TLS connections from `listener`, with the configuration `tls` holds at accept time. Each
/// handshake runs in its own task under HANDSHAKE_TIMEOUT, so a slow or silent client delays
/// nobody else; failures are logged at debug and the connection dropped. The accept loop ends
/// when the server drops the stream.
pub fn tls(
    listener: TcpListener,
    tls: Arc<tls::Reloading>,
) -> impl Stream<Item = io::Result<Conn<TlsStream<TcpStream>>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        loop {
            let (permit, (stream, remote)) = tokio::select! {
                _ = tx.closed() => return,
                next = async { (handshakes.clone().acquire_owned().await, accept(&listener).await) } => next,
            };
            let Ok(permit) = permit else { return };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
                // rustls has verified the chain against the client CA; read who it names.
                let client_cert = match stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()) {
                    None => None,
                    Some(der) => match tls::client_cert(der) {
                        Ok(cert) => Some(cert),
                        Err(e) => {
                            tracing::debug!(%remote, error = %e, "unreadable client certificate; connection dropped");
                            return;
                        }
                    },
                };
                tracing::debug!(%remote, client_subject = client_cert.as_ref().map(|c| c.subject.as_str()), "TLS connection");
                let _ = tx.send(Ok(Conn { io: stream, info: PeerInfo { remote: Some(remote), client_cert } })).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn accepted_plaintext_connections_have_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = plaintext(listener);
        futures::pin_mut!(incoming);
        let _client = TcpStream::connect(addr).await.unwrap();
        let conn = incoming.next().await.unwrap().unwrap();
        assert!(conn.io.nodelay().unwrap());
        assert_eq!(conn.connect_info().remote.map(|r| r.ip()), Some(addr.ip()));
    }

    #[test]
    fn plaintext_only_on_loopback_unless_insecure() {
        for (addr, insecure, ok) in [
            ("127.0.0.1:50051", false, true),
            ("[::1]:50051", false, true),
            ("0.0.0.0:50051", false, false),
            ("[::]:50051", false, false),
            ("10.1.2.3:50051", false, false),
            ("0.0.0.0:50051", true, true),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(check_plaintext(addr, insecure).is_ok(), ok, "{addr} {insecure}");
        }
        let message = check_plaintext("0.0.0.0:1".parse().unwrap(), false).unwrap_err().to_string();
        assert!(
            message.contains("0.0.0.0:1") && message.contains("--insecure-plaintext") && message.contains("--tls-cert"),
            "{message}"
        );
    }
}
