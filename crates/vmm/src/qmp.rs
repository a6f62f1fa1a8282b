//! A minimal QMP client: the greeting, `qmp_capabilities`, then one command at a time.
//! Ignite needs only a few commands (`system_powerdown`, `stop`, `cont`, and for snapshots
//! `getfd` with a file descriptor passed beside it, `migrate`, `migrate-incoming`,
//! `query-migrate`).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    pub fn connect(socket: &Path, timeout: Duration) -> io::Result<Qmp> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(timeout))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a QMP socket", socket.display()),
            ));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> io::Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Runs a command and returns its `return` value (events in between are skipped).
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> io::Result<Value> {
        let request = Self::request(command, arguments);
        writeln!(self.writer, "{request}")?;
        self.response(command)
    }

    /// Hands QEMU an open file under `name` (`getfd`), for a later `fd:NAME` URI: the file
    /// travels beside the request as SCM_RIGHTS, so QEMU never opens a path of ours.
    pub fn pass_fd(&mut self, name: &str, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
        let request = format!(
            "{}\n",
            Self::request("getfd", Some(json!({ "fdname": name })))
        );
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [fd];
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other(
                "no room for a file descriptor in the QMP message",
            ));
        }
        let bytes = request.as_bytes();
        let sent = sendmsg(
            &self.writer,
            &[io::IoSlice::new(bytes)],
            &mut control,
            SendFlags::empty(),
        )?;
        if sent < bytes.len() {
            // The descriptor went with the first bytes; the rest follows plainly.
            self.writer.write_all(&bytes[sent..])?;
        }
        self.response("getfd").map(|_| ())
    }

    fn request(command: &str, arguments: Option<Value>) -> Value {
        let mut request = json!({ "execute": command });
        if let Some(args) = arguments {
            request["arguments"] = args;
        }
        request
    }

    fn response(&mut self, command: &str) -> io::Result<Value> {
        loop {
            let message = self.read_message()?;
            if let Some(ret) = message.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = message.get("error") {
                return Err(io::Error::other(format!(
                    "QMP {command}: {}",
                    err.get("desc").and_then(Value::as_str).unwrap_or("failed")
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A stand-in for QEMU's side in a unit test of the exchange only.
    #[test]
    fn greets_negotiates_and_runs_commands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream).lines();
            writeln!(out, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut seen = Vec::new();
            while let Some(Ok(line)) = lines.next() {
                let v: Value = serde_json::from_str(&line).unwrap();
                let cmd = v["execute"].as_str().unwrap().to_string();
                seen.push(cmd.clone());
                if cmd == "query-status" {
                    writeln!(out, r#"{{"event": "RESUME"}}"#).unwrap();
                    writeln!(out, r#"{{"return": {{"status": "running"}}}}"#).unwrap();
                } else if cmd == "bogus" {
                    writeln!(out, r#"{{"error": {{"class": "CommandNotFound", "desc": "The command bogus has not been found"}}}}"#).unwrap();
                } else {
                    writeln!(out, r#"{{"return": {{}}}}"#).unwrap();
                }
            }
            seen
        });
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(
            qmp.execute("query-status", None).unwrap()["status"],
            "running"
        );
        let err = qmp.execute("bogus", None).unwrap_err().to_string();
        assert!(err.contains("bogus has not been found"), "{err}");
        drop(qmp);
        assert_eq!(
            server.join().unwrap(),
            ["qmp_capabilities", "query-status", "bogus"]
        );
    }
}
