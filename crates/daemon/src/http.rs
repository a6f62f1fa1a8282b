//! A minimal HTTP/1.1 server for the API socket: one request per connection (the clients
//! are curl and scripts on the same host), bodies up to 1 MiB, lines up to 8 KiB and a
//! head up to 64 KiB (431 beyond), the whole request within a deadline (408 after),
//! JSON answers.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

pub const MAX_BODY: usize = 1 << 20;

#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn flag(&self, name: &str) -> bool {
        self.query
            .iter()
            .any(|(k, v)| k == name && (v.is_empty() || v == "true" || v == "1"))
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        let mut body = serde_json::to_vec_pretty(value).expect("API values serialise");
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    /// `{"error": message, "status": status}`.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(
            status,
            &serde_json::json!({"error": message.into(), "status": status}),
        )
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body: body.into_bytes(),
        }
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: Vec::new(),
        }
    }
}

/// The longest request line or header line.
pub const MAX_LINE: usize = 8 * 1024;
/// The most bytes of request line and headers together, and the most header lines.
pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;
/// How long a client has to send its whole request (head and body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A reader that fails with `TimedOut` once `deadline` has passed, however slowly the
/// bytes trickle in (each read waits only for what is left of the time).
struct Deadline<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut stream = self.stream;
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
            other => other,
        }
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes (without its CRLF); `Ok(None)` at EOF.
fn read_line(reader: &mut impl BufRead, head: &mut usize) -> Result<Option<String>, Response> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE as u64 + 2)
        .read_until(b'\n', &mut line)
        .map_err(read_error)?;
    if n == 0 {
        return Ok(None);
    }
    *head += n;
    if !line.ends_with(b"\n") && n > MAX_LINE || line.len() > MAX_LINE + 2 {
        return Err(Response::error(
            431,
            format!("a request or header line is longer than {MAX_LINE} bytes"),
        ));
    }
    if *head > MAX_HEAD {
        return Err(Response::error(
            431,
            format!("the request's head is longer than {MAX_HEAD} bytes"),
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| Response::error(400, "the request's head is not UTF-8"))
}

fn read_error(e: io::Error) -> Response {
    if e.kind() == io::ErrorKind::TimedOut {
        Response::error(408, "the request was not sent in time")
    } else {
        Response::error(400, "cannot read the request")
    }
}

/// Reads one request within `timeout`; `Err` carries the response a malformed, oversized
/// or late one gets.
pub fn read_request(stream: &UnixStream, timeout: Duration) -> Result<Request, Response> {
    let bad = |m: &str| Response::error(400, m);
    let mut reader = BufReader::new(Deadline {
        stream,
        deadline: Instant::now() + timeout,
    });
    let mut head = 0usize;
    let line = read_line(&mut reader, &mut head)?.ok_or_else(|| bad("not an HTTP request"))?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(bad("not an HTTP request"));
    };
    let mut length = 0usize;
    let mut headers = 0usize;
    loop {
        let Some(header) = read_line(&mut reader, &mut head)? else {
            return Err(bad("the request's head ends before its blank line"));
        };
        if header.is_empty() {
            break;
        }
        headers += 1;
        if headers > MAX_HEADERS {
            return Err(Response::error(
                431,
                format!("the request has more than {MAX_HEADERS} headers"),
            ));
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value
                .trim()
                .parse()
                .map_err(|_| bad("bad Content-Length"))?;
        }
    }
    if length > MAX_BODY {
        return Err(Response::error(
            413,
            format!("the body is {length} bytes; at most {MAX_BODY} are accepted"),
        ));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            read_error(e)
        } else {
            bad("the body is shorter than its Content-Length")
        }
    })?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
        body,
    })
}

pub fn write_response(mut stream: &UnixStream, response: &Response) -> io::Result<()> {
    let reason = match response.status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bytes: &[u8], timeout: Duration) -> Result<Request, Response> {
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(bytes).unwrap();
        read_request(&server, timeout)
    }

    #[test]
    fn heads_and_bodies_are_capped_and_late_requests_end() {
        let ok = request(
            b"GET /v1/vms?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
            REQUEST_TIMEOUT,
        )
        .unwrap();
        assert_eq!((ok.method.as_str(), ok.path.as_str()), ("GET", "/v1/vms"));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_LINE + 1));
        assert_eq!(
            request(long.as_bytes(), REQUEST_TIMEOUT)
                .err()
                .unwrap()
                .status,
            431
        );
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            request(many.as_bytes(), REQUEST_TIMEOUT)
                .err()
                .unwrap()
                .status,
            431
        );
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            request(big.as_bytes(), REQUEST_TIMEOUT)
                .err()
                .unwrap()
                .status,
            413
        );
        // Half a request: 408 when the time is up, not a thread held for ever.
        let started = Instant::now();
        let late = request(b"GET / HTTP/1.1\r\nHost:", Duration::from_millis(200));
        assert_eq!(late.err().unwrap().status, 408);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
