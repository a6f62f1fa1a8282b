//! Just enough HTTP/1.1 over a Unix socket for a local engine's API: one request per
//! connection, the reply's status and headers read with caps, its body as a reader
//! (`Content-Length`, chunked, or until close). The engine is trusted no more than a
//! registry: every line and header block is capped before it is buffered.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The longest status or header line accepted.
const MAX_LINE: usize = 8 << 10;
/// The most header lines accepted.
const MAX_HEADERS: usize = 100;
/// How long one read or write may wait (an engine that accepts and never answers).
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// A reply: its status, headers (names lower-cased) and body.
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads the whole body, refusing more than `limit` bytes.
    pub fn read_body(mut self, limit: u64) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        (&mut self.body).take(limit + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the reply is larger than the {limit} bytes accepted"),
            ));
        }
        Ok(buf)
    }
}

/// Connects to `socket`, sends `method path` and reads the reply's head.
pub(crate) fn request(socket: &Path, method: &str, path: &str) -> io::Result<Response> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    (&stream).write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: ignite\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )?;
    let mut reader = BufReader::new(stream);
    let status_line = read_line(&mut reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("not an HTTP status line: {status_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("not an HTTP/1 reply: {status_line:?}")));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| invalid(format!("bad status code in {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(invalid(format!("more than {MAX_HEADERS} header lines")));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("bad header line {line:?}")));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Body::Chunked {
            reader,
            left: 0,
            done: false,
        }
    } else if let Some(len) = find("content-length") {
        let len: u64 = len
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
        Body::Length(reader.take(len))
    } else {
        Body::UntilClose(reader)
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

/// One CRLF-terminated line, at most [`MAX_LINE`] bytes, without its terminator.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let read = reader
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed before the reply was complete",
        ));
    }
    if !line.ends_with(b"\n") {
        return Err(invalid(format!("a line longer than {MAX_LINE} bytes")));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("a line that is not UTF-8".into()))
}

/// A reply's body.
pub(crate) enum Body {
    Length(io::Take<BufReader<UnixStream>>),
    Chunked {
        reader: BufReader<UnixStream>,
        left: u64,
        done: bool,
    },
    UntilClose(BufReader<UnixStream>),
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Length(r) => {
                let n = r.read(buf)?;
                if n == 0 && r.limit() > 0 && !buf.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the reply ended before its Content-Length",
                    ));
                }
                Ok(n)
            }
            Body::UntilClose(r) => r.read(buf),
            Body::Chunked { reader, left, done } => {
                if *done || buf.is_empty() {
                    return Ok(0);
                }
                if *left == 0 {
                    let line = read_line(reader)?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    *left = u64::from_str_radix(size, 16)
                        .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
                    if *left == 0 {
                        // Trailers, if any, end with an empty line.
                        while !read_line(reader)?.is_empty() {}
                        *done = true;
                        return Ok(0);
                    }
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the reply ended inside a chunk",
                    ));
                }
                *left -= n as u64;
                if *left == 0 && !read_line(reader)?.is_empty() {
                    return Err(invalid("a chunk not followed by CRLF".into()));
                }
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// Serves `reply` once on a socket in a new directory and returns its path.
    fn serve(reply: &'static [u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = [0u8; 1024];
            let _ = conn.read(&mut head);
            let _ = conn.write_all(reply);
        });
        (dir, path)
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let (_d, sock) = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nApi-Version: 1.41\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        );
        let reply = request(&sock, "GET", "/x").unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("api-version"), Some("1.41"));
        assert_eq!(reply.read_body(100).unwrap(), b"hello world");
    }

    #[test]
    fn lengths_and_caps_are_kept() {
        let (_d, sock) = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nabcdefgh");
        let reply = request(&sock, "GET", "/x").unwrap();
        assert_eq!(reply.status, 404);
        assert_eq!(reply.read_body(100).unwrap(), b"abcde");
        let (_d, sock) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nabc");
        let err = request(&sock, "GET", "/x")
            .unwrap()
            .read_body(100)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let (_d, sock) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nabcdefgh");
        assert!(request(&sock, "GET", "/x").unwrap().read_body(4).is_err());
    }

    #[test]
    fn hostile_heads_are_refused() {
        let long: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
                "a".repeat(MAX_LINE + 10)
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        let (_d, sock) = serve(long);
        assert!(request(&sock, "GET", "/x").is_err());
        let (_d, sock) = serve(b"SSH-2.0-OpenSSH\r\n\r\n");
        assert!(request(&sock, "GET", "/x").is_err());
        let (_d, sock) = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        let mut body = Vec::new();
        assert!(
            request(&sock, "GET", "/x")
                .unwrap()
                .body
                .read_to_end(&mut body)
                .is_err()
        );
    }
}
