//! gRPC on a Unix socket, blocking: the unary and server-streaming calls containerd's
//! clients make, over hyperium's `h2` driven by a current-thread tokio runtime that lives
//! inside the [`Channel`]. The rest of Ignite is synchronous; nothing async leaks out.
//!
//! What a call is on the wire: `POST /package.Service/Method` with `content-type:
//! application/grpc` and `te: trailers`; each message framed as one flag byte (0: not
//! compressed), a big-endian 32-bit length and the protobuf bytes; the outcome in the
//! `grpc-status`/`grpc-message` trailers (or in the headers of a reply with no body).

use std::path::Path;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use prost::Message;

/// The largest message taken from the server: containerd's content reads come in 1 MiB
/// chunks and its other replies are small; gRPC's own default limit is 4 MiB.
const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// How long a unary call, or the wait for the next message of a stream, may take: a
/// daemon that stops answering is an error, not a hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 windows and frame size: a blob streams at full speed without a window update
/// per 64 KiB.
const WINDOW_BYTES: u32 = 8 << 20;
const FRAME_BYTES: u32 = 1 << 20;

/// gRPC's status code for "no such thing".
pub const NOT_FOUND: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{method}: {} ({code}): {message}", status_name(*code))]
    Status {
        method: &'static str,
        code: u32,
        message: String,
    },
    #[error("{method}: {reason}")]
    Protocol {
        method: &'static str,
        reason: String,
    },
}

impl GrpcError {
    pub fn code(&self) -> Option<u32> {
        match self {
            GrpcError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// An HTTP/2 connection to one gRPC server, with metadata sent on every call.
pub struct Channel {
    runtime: tokio::runtime::Runtime,
    sender: h2::client::SendRequest<Bytes>,
    metadata: Vec<(&'static str, String)>,
}

impl Channel {
    /// Connects to `socket`; `metadata` goes with every call (containerd's namespace).
    /// Values must be valid header values (checked by the caller).
    pub fn connect(
        socket: &Path,
        metadata: Vec<(&'static str, String)>,
    ) -> Result<Channel, GrpcError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| GrpcError::Connect(format!("cannot start the I/O runtime: {e}")))?;
        let sender = runtime.block_on(async {
            let stream =
                tokio::time::timeout(CALL_TIMEOUT, tokio::net::UnixStream::connect(socket))
                    .await
                    .map_err(|_| GrpcError::Connect("no answer".into()))?
                    .map_err(|e| GrpcError::Connect(e.to_string()))?;
            let (sender, connection) = h2::client::Builder::new()
                .initial_window_size(WINDOW_BYTES)
                .initial_connection_window_size(WINDOW_BYTES)
                .max_frame_size(FRAME_BYTES)
                .enable_push(false)
                .handshake::<_, Bytes>(stream)
                .await
                .map_err(|e| GrpcError::Connect(format!("HTTP/2 handshake: {e}")))?;
            // Driven whenever the runtime runs, that is during every call below.
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("gRPC connection ended: {e}");
                }
            });
            Ok::<_, GrpcError>(sender)
        })?;
        Ok(Channel {
            runtime,
            sender,
            metadata,
        })
    }

    /// A call with one reply.
    pub fn unary<Req: Message, Reply: Message + Default>(
        &mut self,
        method: &'static str,
        request: &Req,
    ) -> Result<Reply, GrpcError> {
        let mut stream = self.server_stream(method, request)?;
        let reply = stream.next::<Reply>()?.ok_or_else(|| GrpcError::Protocol {
            method,
            reason: "the server ended the call without a reply".into(),
        })?;
        if stream.next::<Reply>()?.is_some() {
            return Err(GrpcError::Protocol {
                method,
                reason: "the server sent more than one reply to a unary call".into(),
            });
        }
        Ok(reply)
    }

    /// A call whose replies are read one by one with [`Stream::next`].
    pub fn server_stream<Req: Message>(
        &mut self,
        method: &'static str,
        request: &Req,
    ) -> Result<Stream<'_>, GrpcError> {
        let protocol = |reason: String| GrpcError::Protocol { method, reason };
        let mut builder = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in &self.metadata {
            builder = builder.header(*name, value.as_str());
        }
        let http_request = builder
            .body(())
            .map_err(|e| protocol(format!("cannot build the request: {e}")))?;
        let body = frame(request);
        let sender = self.sender.clone();
        let reply = self.runtime.block_on(async move {
            tokio::time::timeout(CALL_TIMEOUT, async move {
                let mut sender = sender
                    .ready()
                    .await
                    .map_err(|e| protocol(format!("connection lost: {e}")))?;
                let (reply, mut send) = sender
                    .send_request(http_request, false)
                    .map_err(|e| protocol(format!("cannot send the request: {e}")))?;
                send.send_data(body, true)
                    .map_err(|e| protocol(format!("cannot send the request: {e}")))?;
                reply.await.map_err(|e| protocol(format!("no reply: {e}")))
            })
            .await
            .map_err(|_| protocol(format!("no reply within {CALL_TIMEOUT:?}")))?
        })?;
        if reply.status() != http::StatusCode::OK {
            return Err(protocol(format!(
                "HTTP status {} (is this a gRPC server?)",
                reply.status()
            )));
        }
        // A reply with no messages may carry its status in the headers ("Trailers-Only").
        check_status(method, reply.headers(), false)?;
        Ok(Stream {
            runtime: &self.runtime,
            method,
            body: reply.into_body(),
            buffer: BytesMut::new(),
            ended: false,
        })
    }
}

/// The replies of one call.
pub struct Stream<'a> {
    runtime: &'a tokio::runtime::Runtime,
    method: &'static str,
    body: h2::RecvStream,
    buffer: BytesMut,
    ended: bool,
}

impl Stream<'_> {
    /// The next reply, or `None` when the call ended well; an error status is an error.
    pub fn next<M: Message + Default>(&mut self) -> Result<Option<M>, GrpcError> {
        let method = self.method;
        let protocol = |reason: String| GrpcError::Protocol { method, reason };
        loop {
            if let Some(len) = message_len(&self.buffer, method)?
                && self.buffer.len() >= 5 + len
            {
                self.buffer.advance(5);
                let bytes = self.buffer.split_to(len).freeze();
                return M::decode(bytes)
                    .map(Some)
                    .map_err(|e| protocol(format!("a reply does not decode: {e}")));
            }
            if self.ended {
                if !self.buffer.is_empty() {
                    return Err(protocol(format!(
                        "the reply ends inside a message ({} bytes left over)",
                        self.buffer.len()
                    )));
                }
                return Ok(None);
            }
            let body = &mut self.body;
            let chunk = self.runtime.block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, body.data())
                    .await
                    .map_err(|_| protocol(format!("nothing received for {CALL_TIMEOUT:?}")))
            })?;
            match chunk {
                Some(Ok(data)) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    self.buffer.extend_from_slice(&data);
                }
                Some(Err(e)) => return Err(protocol(format!("the reply broke off: {e}"))),
                None => {
                    let body = &mut self.body;
                    let trailers = self.runtime.block_on(async {
                        tokio::time::timeout(CALL_TIMEOUT, body.trailers())
                            .await
                            .map_err(|_| protocol("no trailers".into()))
                    })?;
                    let trailers = trailers
                        .map_err(|e| protocol(format!("the reply broke off: {e}")))?
                        .unwrap_or_default();
                    check_status(method, &trailers, true)?;
                    self.ended = true;
                }
            }
        }
    }
}

/// One message as gRPC frames it.
fn frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = Vec::with_capacity(5 + len);
    out.push(0);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    message
        .encode(&mut out)
        .expect("a Vec grows as the message needs");
    Bytes::from(out)
}

/// The length of the message at the head of `buffer`, once its 5-byte prefix is there.
fn message_len(buffer: &[u8], method: &'static str) -> Result<Option<usize>, GrpcError> {
    let Some(prefix) = buffer.get(..5) else {
        return Ok(None);
    };
    if prefix[0] != 0 {
        return Err(GrpcError::Protocol {
            method,
            reason: "the server sent a compressed message, which was not asked for".into(),
        });
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(GrpcError::Protocol {
            method,
            reason: format!("a reply of {len} bytes is over the {MAX_MESSAGE_BYTES} accepted"),
        });
    }
    Ok(Some(len))
}

/// The call's status from `grpc-status`/`grpc-message`; `required`: a missing status is an
/// error (trailers must have one; headers may not).
fn check_status(
    method: &'static str,
    headers: &HeaderMap,
    required: bool,
) -> Result<(), GrpcError> {
    let Some(code) = headers.get("grpc-status") else {
        return if required {
            Err(GrpcError::Protocol {
                method,
                reason: "the reply has no grpc-status".into(),
            })
        } else {
            Ok(())
        };
    };
    let code: u32 = code
        .to_str()
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| GrpcError::Protocol {
            method,
            reason: format!("grpc-status {code:?} is not a number"),
        })?;
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Err(GrpcError::Status {
        method,
        code,
        message,
    })
}

/// `grpc-message` is percent-encoded UTF-8; what does not decode is kept as it came.
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Control characters from a server never reach a terminal.
    String::from_utf8_lossy(&out)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn status_name(code: u32) -> &'static str {
    match code {
        1 => "cancelled",
        2 => "unknown",
        3 => "invalid argument",
        4 => "deadline exceeded",
        5 => "not found",
        6 => "already exists",
        7 => "permission denied",
        8 => "resource exhausted",
        9 => "failed precondition",
        10 => "aborted",
        11 => "out of range",
        12 => "unimplemented",
        13 => "internal",
        14 => "unavailable",
        15 => "data loss",
        16 => "unauthenticated",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::containerd::proto::{ReadContentRequest, ReadContentResponse};

    #[test]
    fn messages_are_framed_and_measured_as_grpc_does() {
        let request = ReadContentRequest {
            digest: "sha256:ab".into(),
            offset: 0,
            size: 0,
        };
        let framed = frame(&request);
        assert_eq!(framed[0], 0);
        assert_eq!(
            message_len(&framed, "m").unwrap(),
            Some(request.encoded_len())
        );
        assert_eq!(ReadContentRequest::decode(&framed[5..]).unwrap(), request);
        assert_eq!(message_len(&framed[..4], "m").unwrap(), None);
        let compressed = [1u8, 0, 0, 0, 1];
        assert!(message_len(&compressed, "m").is_err());
        let huge = [0u8, 0x7f, 0xff, 0xff, 0xff];
        let err = message_len(&huge, "m").unwrap_err().to_string();
        assert!(err.contains("over the"), "{err}");
        let reply = ReadContentResponse {
            offset: 3,
            data: b"abc".to_vec(),
        };
        assert_eq!(
            ReadContentResponse::decode(&frame(&reply)[5..]).unwrap(),
            reply
        );
    }

    #[test]
    fn statuses_come_from_headers_or_trailers_and_messages_are_decoded() {
        let mut headers = HeaderMap::new();
        assert!(check_status("m", &headers, false).is_ok());
        assert!(check_status("m", &headers, true).is_err());
        headers.insert("grpc-status", "0".parse().unwrap());
        assert!(check_status("m", &headers, true).is_ok());
        headers.insert("grpc-status", "5".parse().unwrap());
        headers.insert(
            "grpc-message",
            "image%20%22x%22:%20not%20found%0A%1b[31m".parse().unwrap(),
        );
        let err = check_status("/x.Images/Get", &headers, true).unwrap_err();
        assert_eq!(err.code(), Some(NOT_FOUND));
        assert_eq!(
            err.to_string(),
            "/x.Images/Get: not found (5): image \"x\": not found  [31m"
        );
        headers.insert("grpc-status", "five".parse().unwrap());
        assert!(
            check_status("m", &headers, true)
                .unwrap_err()
                .code()
                .is_none()
        );
    }
}
