//! Transfer progress on stderr: a bar per layer on a terminal, a line per layer otherwise.

use std::io::IsTerminal;

use ignite_oci::fetch::{LayerProgress, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bars {
    multi: Option<MultiProgress>,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        let show = !quiet && std::io::stderr().is_terminal();
        Bars {
            multi: show.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }
}

impl Progress for Bars {
    fn layer(&self, id: &str, total: u64) -> Box<dyn LayerProgress + Send + Sync> {
        match &self.multi {
            Some(multi) => {
                let bar = multi.add(ProgressBar::new(total));
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(id.to_string());
                Box::new(Bar(bar))
            }
            None => {
                tracing::info!(
                    "pulling layer {id} ({})",
                    ignite_api::Size::from_bytes(total)
                );
                Box::new(Line(id.to_string()))
            }
        }
    }
}

struct Bar(ProgressBar);

impl LayerProgress for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finish(&self) {
        self.0.finish();
    }
}

struct Line(String);

impl LayerProgress for Line {
    fn advance(&self, _: u64) {}
    fn finish(&self) {
        tracing::info!("pulled layer {}", self.0);
    }
}
