//! `ignite logs VM`: the VM's output log, as `docker logs` shows a container's: boot
//! messages and a VM-mode guest's console, and a container-mode workload's stdout (on our
//! stdout) and stderr (on our stderr), in the order they arrived. `--tail`, `--since` and
//! `-t` work on its lines; `-f` follows it until the VM stops. VMs last started by an
//! older ignite have only their console log, which is printed as it is.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use ignite_runtime::vms::output_log::{self, Lines, Piece, Stream};
use ignite_runtime::vms::{self, VmFiles, console_log};

use super::Context;
use crate::args::LogsArgs;

pub fn run(ctx: &Context, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let vm = ctx.store.vms().find(&args.vm)?;
    let uid = vms::uid_of(&vm);
    let files = VmFiles::new(&ctx.store, &uid);
    let tail = args.tail.as_deref().map(parse_tail).transpose()?.flatten();
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, SystemTime::now()))
        .transpose()?;
    let path = files.output_log();
    if !path.exists() && !output_log::rotated_exists(&path) {
        return console_only(ctx, &files, &uid, args);
    }
    let (records, mut follower) = output_log::read_all_and_follow(&path)
        .with_context(|| format!("cannot read the output log {}", path.display()))?;
    let mut printer = Printer {
        timestamps: args.timestamps,
        out: std::io::stdout().lock(),
        err: std::io::stderr().lock(),
    };
    for piece in output_log::select(&records, since, tail) {
        printer.print(&piece)?;
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Lines continue where the printed part left them.
    let mut lines = Lines::default();
    for record in &records {
        lines.split(record);
    }
    loop {
        let running = vms::is_running(&ctx.store.vms().get(&uid)?);
        for record in follower.next_records()? {
            for piece in lines.split(&record) {
                printer.print(&piece)?;
            }
        }
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Printer<O: Write, E: Write> {
    timestamps: bool,
    out: O,
    err: E,
}

impl<O: Write, E: Write> Printer<O, E> {
    fn print(&mut self, piece: &Piece) -> std::io::Result<()> {
        let to: &mut dyn Write = match piece.stream {
            Stream::Stderr => &mut self.err,
            Stream::Console | Stream::Stdout => &mut self.out,
        };
        if self.timestamps && piece.starts_line {
            write!(to, "{} ", output_log::timestamp(piece.time))?;
        }
        to.write_all(&piece.bytes)?;
        to.flush()
    }
}

/// The console log alone (a VM from before output logs existed).
fn console_only(
    ctx: &Context,
    files: &VmFiles,
    uid: &ignite_api::Uid,
    args: &LogsArgs,
) -> anyhow::Result<ExitCode> {
    if args.tail.is_some() || args.since.is_some() || args.timestamps {
        tracing::warn!(
            "this VM was last run by an older ignite: its log has no times or lines to select; printing all of it"
        );
    }
    let path = files.console_log();
    let mut out = std::io::stdout().lock();
    // Older output first: the log rotated away once it reached its cap.
    console_log::copy_from(&console_log::rotated(&path), 0, &mut out)?;
    let mut offset = 0u64;
    loop {
        let running = vms::is_running(&ctx.store.vms().get(uid)?);
        offset = console_log::copy_from(&path, offset, &mut out)?;
        if !args.follow || !running {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `--tail N` or `--tail all`.
fn parse_tail(text: &str) -> anyhow::Result<Option<usize>> {
    if text == "all" {
        return Ok(None);
    }
    text.parse::<usize>()
        .map(Some)
        .with_context(|| format!("bad --tail {text:?}: want a number of lines or \"all\""))
}

/// `--since` as docker takes it: an RFC 3339 time, a date, a Unix time (with fractions),
/// or an age before `now` (`90s`, `10m`, `1h30m`, `1.5h`).
fn parse_since(text: &str, now: SystemTime) -> anyhow::Result<SystemTime> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc).into());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(t.into());
    }
    if let Ok(secs) = text.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Ok(UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    if let Ok(age) = ignite_api::duration::parse(text) {
        return Ok(now.checked_sub(age).unwrap_or(UNIX_EPOCH));
    }
    bail!(
        "bad --since {text:?}: want a time (2026-12-01T10:00:00Z, 2026-12-01, a Unix time) or an age (90s, 10m, 1h30m)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_what_docker_takes() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_since("10m", now).unwrap(),
            now - Duration::from_secs(600)
        );
        assert_eq!(
            parse_since("1h30m", now).unwrap(),
            now - Duration::from_secs(5400)
        );
        assert_eq!(
            parse_since("1500ms", now).unwrap(),
            now - Duration::from_millis(1500)
        );
        assert_eq!(
            parse_since("1970-01-02T00:00:00Z", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(86400)
        );
        assert_eq!(
            parse_since("1970-01-02", now).unwrap(),
            UNIX_EPOCH + Duration::from_secs(86400)
        );
        assert_eq!(
            parse_since("12.5", now).unwrap(),
            UNIX_EPOCH + Duration::from_millis(12500)
        );
        for bad in ["", "yesterday", "10x", "m", "-5"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tail_is_a_count_or_all() {
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("3").unwrap(), Some(3));
        assert!(parse_tail("-1").is_err());
    }

    #[test]
    fn timestamps_go_at_line_starts_and_stderr_apart() {
        let mut printer = Printer {
            timestamps: true,
            out: Vec::new(),
            err: Vec::new(),
        };
        let mut lines = Lines::default();
        let t = UNIX_EPOCH + Duration::from_secs(1);
        for (stream, text) in [
            (Stream::Stdout, "a\nb"),
            (Stream::Stderr, "e\n"),
            (Stream::Stdout, "c\n"),
        ] {
            let record = output_log::Record {
                stream,
                time: t,
                bytes: text.as_bytes().to_vec(),
            };
            for piece in lines.split(&record) {
                printer.print(&piece).unwrap();
            }
        }
        let stamp = "1970-01-01T00:00:01.000000000Z";
        assert_eq!(
            String::from_utf8(printer.out).unwrap(),
            format!("{stamp} a\n{stamp} bc\n")
        );
        assert_eq!(
            String::from_utf8(printer.err).unwrap(),
            format!("{stamp} e\n")
        );
    }
}
