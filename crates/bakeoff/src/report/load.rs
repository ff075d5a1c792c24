//! The tables `bakeoff load` prints: one row per load step (Markdown, CSV, JSON, JSONL) and the
//! client's ceiling measured by `--self-test`.

use super::render::{Cell, Column, Table};
use super::table::Format;
use crate::measure::load::selftest::Ceiling;
use crate::measure::load::StepTable;

/// The step tables in `format`. JSON and JSONL keep the step tables' own shape (nested
/// percentiles, errors by kind), which scripts read.
pub fn render(format: Format, steps: &[StepTable]) -> String {
    match format {
        Format::Markdown => step_table(steps).markdown(),
        Format::Csv => csv_table(steps).csv(),
        Format::Json => serde_json::to_string_pretty(steps).unwrap_or_default() + "\n",
        Format::Jsonl => steps
            .iter()
            .map(|t| serde_json::to_string(t).unwrap_or_default() + "\n")
            .collect(),
    }
}

/// `0`, or each kind of error with its count: `2 timeout, 1 http 500`.
fn errors(step: &StepTable) -> String {
    if step.errors.is_empty() {
        return "0".into();
    }
    let kinds: Vec<String> = step
        .errors
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    kinds.join(", ")
}

/// One row per step, as the terminal shows it.
pub fn step_table(steps: &[StepTable]) -> Table {
    let mut table = Table::new(vec![
        Column::left("step", "step"),
        Column::right("completed", "done"),
        Column::right("errors", "errors"),
        Column::right("req_s", "req/s"),
        Column::right("out_tok_s", "out tok/s"),
        Column::right("goodput_rps", "goodput req/s"),
        Column::right("ttft_ms", "TTFT p50 / p90 / p99 ms"),
        Column::right("itl_ms", "ITL p50 / p99 ms"),
        Column::right("tpot_ms", "TPOT p50 / p99 ms"),
        Column::right("e2e_ms", "E2E p50 / p99 ms"),
        Column::right("client_cpu_cores", "client CPU"),
        Column::left("note", "note"),
    ]);
    let energy = steps
        .iter()
        .any(|t| t.tokens_per_j.is_some() || t.power_w.is_some());
    if energy {
        let at = table.columns.len() - 1;
        let columns = [
            Column::right("tokens_per_j", "tok/J"),
            Column::right("power_w", "W"),
            Column::right("mem_peak", "peak mem"),
        ];
        table.columns.splice(at..at, columns);
    }
    for t in steps {
        let mut row = step_row(t);
        if energy {
            let figure = |v: Option<f64>, digits: usize| {
                v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
            };
            let mib = t.mem_peak_bytes.map(|b| b / (1024.0 * 1024.0));
            let figures = [
                figure(t.tokens_per_j, 2),
                figure(t.power_w, 0),
                mib.map_or("-".into(), |m| format!("{m:.0} MiB")),
            ];
            let at = row.len() - 1;
            row.splice(at..at, figures);
        }
        table.push(row);
    }
    table
}

/// Percentiles as `p50 / p90 / p99`; `-` where no request was measured (not `NaN`).
fn percentiles(values: &[f64], digits: usize) -> String {
    let figure = |v: &f64| match v.is_finite() {
        true => format!("{v:.digits$}"),
        false => "-".to_string(),
    };
    values.iter().map(figure).collect::<Vec<_>>().join(" / ")
}

fn step_row(t: &StepTable) -> Vec<String> {
    let goodput = t.goodput_rps.map(|g| format!("{g:.2}"));
    let (ttft, itl, tpot, e2e) = (&t.ttft_ms, &t.itl_ms, &t.tpot_ms, &t.e2e_ms);
    vec![
        t.step.clone(),
        t.completed.to_string(),
        errors(t),
        format!("{:.2}", t.request_throughput),
        format!("{:.1}", t.output_tps),
        goodput.unwrap_or_else(|| "-".into()),
        percentiles(&[ttft.p("p50"), ttft.p("p90"), ttft.p("p99")], 0),
        percentiles(&[itl.p("p50"), itl.p("p99")], 1),
        percentiles(&[tpot.p("p50"), tpot.p("p99")], 1),
        percentiles(&[e2e.p("p50"), e2e.p("p99")], 0),
        format!("{:.2}", t.client_cpu_cores),
        t.note.clone().unwrap_or_default(),
    ]
}

/// One flat row per step for spreadsheets: each percentile its own column.
pub fn csv_table(steps: &[StepTable]) -> Table {
    let ids = [
        "step",
        "completed",
        "errors",
        "req_s",
        "out_tok_s",
        "goodput_rps",
        "ttft_p50_ms",
        "ttft_p90_ms",
        "ttft_p99_ms",
        "itl_p50_ms",
        "itl_p99_ms",
        "tpot_p50_ms",
        "tpot_p99_ms",
        "e2e_p50_ms",
        "e2e_p99_ms",
        "client_cpu_cores",
    ];
    let mut table = Table::new(ids.iter().map(|id| Column::left(*id, *id)).collect());
    for t in steps {
        table.push(csv_row(t));
    }
    table
}

fn csv_row(t: &StepTable) -> Vec<Cell> {
    let fixed = |v: f64, digits: usize| Cell::new(format!("{v:.digits$}"), v);
    let error_count: u64 = t.errors.values().sum();
    let goodput = t.goodput_rps.map(|g| format!("{g:.3}"));
    vec![
        t.step.as_str().into(),
        Cell::new(t.completed.to_string(), t.completed),
        Cell::new(error_count.to_string(), error_count),
        fixed(t.request_throughput, 3),
        fixed(t.output_tps, 2),
        Cell::new(goodput.unwrap_or_default(), t.goodput_rps),
        fixed(t.ttft_ms.p("p50"), 1),
        fixed(t.ttft_ms.p("p90"), 1),
        fixed(t.ttft_ms.p("p99"), 1),
        fixed(t.itl_ms.p("p50"), 2),
        fixed(t.itl_ms.p("p99"), 2),
        fixed(t.tpot_ms.p("p50"), 2),
        fixed(t.tpot_ms.p("p99"), 2),
        fixed(t.e2e_ms.p("p50"), 1),
        fixed(t.e2e_ms.p("p99"), 1),
        fixed(t.client_cpu_cores, 3),
    ]
}

/// The client's ceiling against the scripted endpoint, one row per stream count and pace.
pub fn ceiling_table(rows: &[Ceiling]) -> Table {
    let mut table = Table::new(vec![
        Column::right("streams", "streams"),
        Column::right("pace", "pace"),
        Column::right("streamed_tps", "streamed tok/s"),
        Column::right("requests", "requests"),
        Column::right("errors", "errors"),
        Column::right("gap_error_us", "gap error p50 / p99 µs"),
        Column::right("client_cpu_cores", "client CPU"),
    ]);
    for r in rows {
        table.push(ceiling_row(r));
    }
    table
}

fn ceiling_row(r: &Ceiling) -> Vec<String> {
    let gap = match (r.gap_error_p50_us, r.gap_error_p99_us) {
        (Some(a), Some(b)) => format!("{a:.0} / {b:.0}"),
        _ => "-".into(),
    };
    let pace = match r.pace_us {
        0 => "as fast as possible".to_string(),
        us => format!("{us} µs"),
    };
    vec![
        r.streams.to_string(),
        pace,
        format!("{:.0}", r.streamed_tps),
        r.requests.to_string(),
        r.errors.to_string(),
        gap,
        format!("{:.2}", r.client_cpu_cores),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::load::metrics::Distribution;

    fn step(name: &str) -> StepTable {
        let dist = Distribution::of(&[10.0, 20.0, 30.0]);
        StepTable {
            step: name.into(),
            completed: 3,
            errors: [("timeout".to_string(), 2)].into_iter().collect(),
            request_throughput: 1.5,
            output_tps: 42.25,
            goodput_rps: None,
            ttft_ms: dist.clone(),
            itl_ms: dist.clone(),
            tpot_ms: dist.clone(),
            e2e_ms: dist,
            client_cpu_cores: 0.125,
            note: Some("<b>near the ceiling</b>".into()),
            tokens_per_j: None,
            power_w: None,
            mem_peak_bytes: None,
        }
    }

    #[test]
    fn energy_columns_come_with_a_step_that_measured_it() {
        let mut measured = step("c8");
        measured.tokens_per_j = Some(3.25);
        measured.power_w = Some(412.0);
        measured.mem_peak_bytes = Some(2048.0 * 1024.0 * 1024.0);
        let md = render(Format::Markdown, &[step("c1"), measured]);
        let lines: Vec<&str> = md.lines().collect();
        assert!(
            lines[0].ends_with("| client CPU | tok/J | W | peak mem | note |"),
            "{md}"
        );
        assert!(lines[2].contains("| 0.12 | - | - | - |"), "{md}");
        assert!(
            lines[3].contains("| 0.12 | 3.25 | 412 | 2048 MiB |"),
            "{md}"
        );
        assert!(!render(Format::Markdown, &[step("c1")]).contains("tok/J"));
    }

    #[test]
    fn markdown_keeps_its_rules_and_escapes_the_note() {
        let md = render(Format::Markdown, &[step("c1")]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[1], "| ---- | ---: | -----: | ----: | --------: | ------------: | ----------------------: | ---------------: | ----------------: | ---------------: | ---------: | ---- |");
        assert!(
            lines[2].starts_with("| c1 | 3 | 2 timeout | 1.50 | 42.2 | - | 20 / 28 / 30 |"),
            "{md}"
        );
        assert!(
            lines[2].ends_with("| 0.12 | &lt;b&gt;near the ceiling&lt;/b&gt; |"),
            "{md}"
        );
    }

    // Regression: load's CSV wrote step names unquoted, so a comma split the record.
    #[test]
    fn csv_quotes_step_names() {
        let csv = render(Format::Csv, &[step("rate 1,5/s")]);
        let record = csv.lines().nth(1).unwrap();
        assert!(
            record.starts_with("\"rate 1,5/s\",3,2,1.500,42.25,,"),
            "{csv}"
        );
        assert_eq!(csv.lines().next().unwrap().split(',').count(), 16);
    }

    #[test]
    fn json_keeps_the_step_table_shape() {
        let json: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &[step("c1")])).unwrap();
        assert_eq!(json[0]["step"], "c1");
        assert_eq!(json[0]["errors"]["timeout"], 2);
        assert!(json[0]["ttft_ms"]["percentiles"]["p50"].is_number());
    }
}
