//! Urgent data (`send(MSG_OOB)`, tcp(7)) on the TCP sockets the pumps read
//! and write: where the mark is in what a socket received, and sending the
//! urgent byte again on the other side.
//!
//! A socket a pump reads keeps its urgent byte in line (`SO_OOBINLINE`),
//! so no byte is ever lost, and every read looks for the mark first: the
//! kernel ends a read before the mark, and [`read_marked`] returns the
//! byte at the mark apart. Whether the *program* reads urgent data in line
//! is its own socket's option, untouched. Must not decide what is done
//! with a chunk: the pumps do.

use std::io;
use std::os::fd::AsFd;

use rustix::net::{RecvFlags, SendFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// What one read of a pump's socket gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// This many ordinary bytes, all before any mark.
    Data(usize),
    /// The urgent byte: the byte at the mark.
    Urgent(u8),
    /// The peer finished its side.
    End,
}

/// Keeps the socket's urgent byte in line, where [`read_marked`] finds it.
/// Set on a socket before it can receive anything (on a listener, its
/// accepted sockets inherit it). Best effort: a socket without it only
/// loses urgent bytes, as before.
pub fn keep_urgent_inline(socket: impl AsFd) {
    let _ = rustix::net::sockopt::set_socket_oobinline(socket, true);
}

/// Reads what comes next on `socket`, up to `buf.len()` bytes, stopping
/// at the urgent mark.
pub async fn read_marked(socket: &TcpStream, buf: &mut [u8]) -> io::Result<Chunk> {
    loop {
        socket.readable().await?;
        match socket.try_io(Interest::READABLE, || read_marked_now(socket, buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return done,
        }
    }
}

/// [`read_marked`] without waiting: `WouldBlock` when nothing is there.
///
/// The order matters. The peek proves a byte is queued; a queued byte that
/// is not at the mark can never become the mark (an urgent byte is always
/// new data), so once `SIOCATMARK` says no, the read cannot start at an
/// urgent byte that arrived meanwhile, and the kernel ends it before any
/// later mark.
pub fn read_marked_now(socket: impl AsFd, buf: &mut [u8]) -> io::Result<Chunk> {
    let fd = socket.as_fd();
    let mut byte = [0u8; 1];
    if rustix::net::recv(fd, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT)?.0 == 0 {
        return Ok(Chunk::End);
    }
    if crate::sys::net::at_urgent_mark(fd)? {
        return Ok(
            match rustix::net::recv(fd, &mut byte, RecvFlags::DONTWAIT)?.0 {
                0 => Chunk::End,
                _ => Chunk::Urgent(byte[0]),
            },
        );
    }
    Ok(match rustix::net::recv(fd, buf, RecvFlags::DONTWAIT)?.0 {
        0 => Chunk::End,
        n => Chunk::Data(n),
    })
}

/// Sends `byte` as urgent data (`MSG_OOB`): the peer's mark falls on it.
pub async fn send_urgent(socket: &TcpStream, byte: u8) -> io::Result<()> {
    loop {
        socket.writable().await?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            let flags = SendFlags::OOB | SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
            Ok(rustix::net::send(socket, &[byte], flags)?)
        });
        match sent {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A connected pair on loopback: (the sender, the pump's socket).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        keep_urgent_inline(&listener);
        let addr = listener.local_addr().expect("addr");
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    /// Everything until the end, chunk by chunk, data joined.
    async fn read_all(socket: &TcpStream) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        let mut data = Vec::new();
        loop {
            match read_marked(socket, &mut buf).await.expect("read") {
                Chunk::Data(n) => data.extend_from_slice(&buf[..n]),
                other => {
                    if !data.is_empty() {
                        out.push(Chunk::Data(data.len()));
                        data.clear();
                    }
                    if other == Chunk::End {
                        return out;
                    }
                    out.push(other);
                }
            }
        }
    }

    #[tokio::test]
    async fn the_urgent_byte_comes_apart_at_its_place() {
        let (mut sender, pumped) = pair().await;
        sender.write_all(b"abc").await.expect("write");
        send_urgent(&sender, b'!').await.expect("urgent");
        sender.write_all(b"defg").await.expect("write");
        sender.shutdown().await.expect("shutdown");
        assert_eq!(
            read_all(&pumped).await,
            vec![Chunk::Data(3), Chunk::Urgent(b'!'), Chunk::Data(4)]
        );
    }

    #[tokio::test]
    async fn an_urgent_byte_first_and_alone() {
        let (mut sender, pumped) = pair().await;
        send_urgent(&sender, 7).await.expect("urgent");
        sender.shutdown().await.expect("shutdown");
        assert_eq!(read_all(&pumped).await, vec![Chunk::Urgent(7)]);
    }
}
