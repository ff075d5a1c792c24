//! `bakeoff monitor`: the telemetry sampler as a stand-alone logger: one row per sample on
//! stdout (CSV or JSON lines), the summary on stderr when the duration ends or Ctrl-C arrives.

use crate::cli::{MonitorArgs, MonitorFormat};
use bakeoff::system::telemetry::sampler::Sample;
use bakeoff::system::telemetry::{Config, Metric, Sampler, TelemetrySummary};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often the wait for the next row looks at the clock and for a signal.
const POLL: Duration = Duration::from_millis(100);

pub fn run(args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    let config = Config {
        interval: args.interval,
        ..Config::default()
    };
    let (tx, rx) = mpsc::channel();
    let handle = Sampler::start(&config, Some(tx));
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut writer = RowWriter::new(args.output);
    while !stopping(deadline) {
        let wait = deadline.map_or(POLL, |d| {
            d.saturating_duration_since(Instant::now()).min(POLL)
        });
        match rx.recv_timeout(wait) {
            Ok(sample) => writer.write(&sample)?,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let summary = handle.stop();
    for sample in rx.try_iter() {
        writer.write(&sample)?;
    }
    print_summary(&summary);
    Ok(ExitCode::SUCCESS)
}

/// The duration is over or a signal arrived.
fn stopping(deadline: Option<Instant>) -> bool {
    bakeoff::engines::process::interrupted().is_some()
        || deadline.is_some_and(|d| Instant::now() >= d)
}

/// Rows in the chosen format; CSV's columns are the first sample's readings (a reading that
/// appears later, a hot-plugged GPU, is left out rather than shifting the columns).
struct RowWriter {
    format: MonitorFormat,
    columns: Option<Vec<(String, String)>>,
}

impl RowWriter {
    fn new(format: MonitorFormat) -> Self {
        RowWriter {
            format,
            columns: None,
        }
    }

    fn write(&mut self, sample: &Sample) -> anyhow::Result<()> {
        match self.format {
            MonitorFormat::Jsonl => println!("{}", serde_json::to_string(sample)?),
            MonitorFormat::Csv => self.write_csv(sample),
        }
        Ok(())
    }

    fn write_csv(&mut self, sample: &Sample) {
        let columns = self.columns.get_or_insert_with(|| {
            let columns: Vec<_> = sample
                .readings
                .iter()
                .map(|r| (r.source.clone(), r.name.clone()))
                .collect();
            let names: Vec<String> = sample
                .readings
                .iter()
                .map(|r| format!("{}/{}_{}", r.source, r.name, unit(r.metric)))
                .collect();
            println!("{}", csv_line("t_s".into(), names, "throttle".into()));
            columns
        });
        let values: Vec<String> = columns
            .iter()
            .map(|(source, name)| {
                sample
                    .readings
                    .iter()
                    .find(|r| &r.source == source && &r.name == name)
                    .map_or(String::new(), |r| format!("{}", r.value))
            })
            .collect();
        let throttle: Vec<String> = sample
            .throttle
            .iter()
            .map(|t| format!("{} {}", t.source, t.reason))
            .collect();
        let t_s = format!("{:.3}", sample.t_s);
        println!("{}", csv_line(t_s, values, throttle.join(";")));
    }
}

/// `first,middle…,last` (no empty column when there are no readings).
fn csv_line(first: String, middle: Vec<String>, last: String) -> String {
    let fields: Vec<String> = std::iter::once(first)
        .chain(middle)
        .chain(std::iter::once(last))
        .collect();
    fields.join(",")
}

fn unit(metric: Metric) -> &'static str {
    match metric {
        Metric::PowerW => "w",
        Metric::TempC => "c",
        Metric::ClockMhz => "mhz",
        Metric::MemUsedBytes => "bytes",
        Metric::EnergyJ => "j",
    }
}

/// The summary on stderr: totals, one line per source, and each source not available with why.
fn print_summary(summary: &TelemetrySummary) {
    let figure =
        |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.2} {unit}"));
    eprintln!(
        "telemetry: {} samples over {:.1} s at {} ms; energy gpu {}, cpu {}, dram {}; power mean {}, peak {}",
        summary.samples,
        summary.seconds,
        summary.interval_ms,
        figure(summary.energy_gpu_j, "J"),
        figure(summary.energy_cpu_j, "J"),
        figure(summary.energy_dram_j, "J"),
        figure(summary.power_w_mean, "W"),
        figure(summary.power_w_peak, "W"),
    );
    for s in &summary.sources {
        eprintln!(
            "  {}: energy {}, power mean {} peak {}, memory peak {}, clock {}..{} MHz, temp max {}{}",
            s.source,
            figure(s.energy_j, "J"),
            figure(s.power_w_mean, "W"),
            figure(s.power_w_peak, "W"),
            s.mem_used_peak_bytes
                .map_or("-".into(), |b| bakeoff::domain::units::human_bytes(b as u64)),
            s.clock_mhz_min.map_or("-".into(), |v| format!("{v:.0}")),
            s.clock_mhz_max.map_or("-".into(), |v| format!("{v:.0}")),
            figure(s.temp_c_max, "C"),
            match s.throttle_reasons.is_empty() {
                true => String::new(),
                false => format!(", throttled: {}", s.throttle_reasons.join(", ")),
            },
        );
    }
    for u in &summary.unavailable {
        eprintln!("  {}: not available: {}", u.source, u.reason);
    }
}
