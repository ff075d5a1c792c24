//! `bakeoff report` on real runs (a KV × depth bench and a concurrency load test through a real
//! llama-server on SmolLM2): the HTML and Markdown carry every section, config and stored number,
//! text injected through a tag and a fidelity detail stays text, and headless Chromium draws
//! every chart with an empty console.

use crate::common;

use bakeoff::analysis::compare;
use bakeoff::measure::load::StepTable;
use bakeoff::store::Store;
use common::{run, smollm, Sandbox};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TAG: &str = "</script><script>alert(1)</script>";
const DETAIL: &str = "\"><img src=x onerror=alert(1)>";
const SECTIONS: [(&str, &str); 9] = [
    ("runs", "Runs"),
    ("configs", "Configurations"),
    ("depth", "Speed against depth"),
    ("kv", "KV cache types"),
    ("latency", "Latency against concurrency"),
    ("speculative", "Speculative decoding"),
    ("fidelity", "Fidelity gates"),
    ("pareto", "Speed, memory and fidelity"),
    ("environment", "Environment"),
];

/// One sandbox with a bench run and a load run, made once for every test in this file.
struct Runs {
    sandbox: Sandbox,
    bench: i64,
    load: i64,
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let sandbox = Sandbox::new();
        let mut bench = sandbox.cmd();
        bench
            .args(["bench", "--model"])
            .arg(smollm())
            .args(["--kv", "f16,q8_0", "-d", "0,64", "-p", "16", "-n", "8"])
            .args(["-r", "1", "--warmup", "0", "--tag", TAG, "-q"]);
        let (status, _, stderr) = run(bench, Duration::from_secs(300));
        assert!(status.success(), "bench failed: {stderr}");
        let mut load = sandbox.cmd();
        load.args(["load", "--model"])
            .arg(smollm())
            .args(["--concurrency", "1,2", "--requests", "4", "--input", "16"])
            .args(["--output", "8", "-q", "--", "-t", "2"]);
        let (status, _, stderr) = run(load, Duration::from_secs(300));
        assert!(status.success(), "load failed: {stderr}");
        let store = Store::open(&sandbox.db()).expect("store");
        let ids: Vec<i64> = store.runs(2).expect("runs").iter().map(|r| r.id).collect();
        let (load, bench) = (ids[0], ids[1]);
        add_fidelity(&store, bench);
        Runs {
            sandbox,
            bench,
            load,
        }
    })
}

/// Fidelity rows as the fidelity checks store them: a mean KLD for the q8_0 candidate and a
/// failed canary whose detail quotes hostile model output.
fn add_fidelity(store: &Store, run_id: i64) {
    let config = bakeoff::domain::EngineConfig::default()
        .with_flag("-ctk", "q8_0")
        .with_flag("-ctv", "q8_0");
    for (kind, name, status, value) in [
        ("kld", "mean_kld", "pass", 0.00512),
        ("canary", "capital of France", "fail", 0.0),
    ] {
        let check = bakeoff::store::NewCheck {
            candidate: "q8_0",
            config: Some(&config),
            kind,
            name,
            status,
            value: Some(value),
            detail: serde_json::json!({ "output": DETAIL, "prompt": TAG }),
        };
        store
            .record_check(run_id, None, &check)
            .expect("insert fidelity row");
    }
}

/// Write a report with `args` into the sandbox; returns its text.
fn report(file: &str, args: &[&str]) -> String {
    let r = runs();
    let path = r.sandbox.dir.path().join(file);
    let mut cmd = r.sandbox.cmd();
    cmd.arg("report")
        .arg(r.bench.to_string())
        .arg(r.load.to_string())
        .arg("--out")
        .arg(&path)
        .args(args);
    let (status, _, stderr) = run(cmd, Duration::from_secs(60));
    assert!(status.success(), "report failed: {stderr}");
    assert!(stderr.contains("wrote"), "{stderr}");
    std::fs::read_to_string(&path).expect("report written")
}

/// What the store says the report must show.
struct Expected {
    config_labels: Vec<String>,
    /// (test kind, median t/s) of every bench cell.
    cells: Vec<(String, f64)>,
    steps: Vec<StepTable>,
    model_sha256: String,
}

fn expected() -> Expected {
    let r = runs();
    let store = Store::open(&r.sandbox.db()).expect("store");
    let bench = store.run_detail(r.bench).expect("bench run");
    let load = store.run_detail(r.load).expect("load run");
    let cells = compare::cells(&bench);
    Expected {
        config_labels: vec![
            "-ctk f16 -ctv f16".into(),
            "-ctk q8_0 -ctv q8_0".into(),
            "-t 2".into(),
        ],
        cells: cells
            .iter()
            .map(|c| (c.kind.clone(), c.summary().median))
            .collect(),
        steps: load.trials.iter().map(StepTable::from_trial).collect(),
        model_sha256: bench.trials[0].model_sha256.clone().expect("model hash"),
    }
}

#[test]
fn html_report_has_every_section_and_the_stored_numbers() {
    let html = report("report.html", &[]);
    let want = expected();
    for (id, title) in SECTIONS {
        assert!(
            html.contains(&format!("<section id=\"{id}\">\n<h2>{title}</h2>")),
            "section {id}"
        );
    }
    for label in &want.config_labels {
        assert!(
            html.contains(&format!("<td>{label}</td>")),
            "config {label}"
        );
    }
    assert_eq!(want.cells.len(), 8, "2 KV types × (pp16, tg8) × 2 depths");
    for (_, median) in &want.cells {
        assert!(
            html.contains(&format!("<td class=\"num\">{median:.2}</td>")),
            "{median:.2}"
        );
    }
    for step in &want.steps {
        let p99 = format!("<td class=\"num\">{:.1}</td>", step.ttft_ms.p("p99"));
        assert!(html.contains(&p99), "TTFT p99 of {}: {p99}", step.step);
    }
    assert!(html.contains(&want.model_sha256), "model sha256");
    assert!(html.contains("llama-server"), "engine");
    // The KLD stored for q8_0 reaches the pareto table; the failed canary its fidelity row.
    assert!(html.contains("<td class=\"num\">0.00512</td>"));
    assert!(html.contains("<tr class=\"fail\">"));
    // Self-contained: no script, no fetch, nothing external.
    for forbidden in ["<script", "<img", "<link", "<iframe", "http://", "https://"] {
        assert!(!html.contains(forbidden), "{forbidden} in the report");
    }
    assert!(html.contains("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
}

#[test]
fn markdown_report_has_the_same_content_as_tables() {
    let md = report("report.md", &[]);
    let want = expected();
    for (_, title) in SECTIONS {
        assert!(md.contains(&format!("\n## {title}\n")), "section {title}");
    }
    for label in &want.config_labels {
        assert!(md.contains(&format!("| {label} |")), "config {label}");
    }
    for (_, median) in &want.cells {
        assert!(md.contains(&format!("| {median:.2} |")), "{median:.2}");
    }
    assert!(md.contains(&want.model_sha256));
    // Charts become tables: the tg line chart gives one row per depth.
    assert!(md.contains("**tg t/s against context depth**"));
    assert!(md.contains("| depth (tokens already in the context) |"));
    assert!(
        !md.contains("<script") && !md.contains("<img"),
        "raw markup"
    );
    assert!(md.contains("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    // The same report on stdout: `-o md` (the format), and `-o -` (the older file spelling).
    let r = runs();
    for dash_o in ["md", "-"] {
        let mut cmd = r.sandbox.cmd();
        cmd.args([
            "report",
            &r.bench.to_string(),
            &r.load.to_string(),
            "-o",
            dash_o,
        ]);
        let (status, stdout, _) = run(cmd, Duration::from_secs(60));
        assert!(status.success());
        assert_eq!(stdout, md, "-o {dash_o}");
    }
}

#[test]
fn dash_o_with_a_file_name_still_writes_the_file() {
    // Regression guard for the README and scripts: `report -o r.html` meant the file before
    // -o became the format.
    let r = runs();
    let path = r.sandbox.dir.path().join("old-spelling.html");
    let mut cmd = r.sandbox.cmd();
    cmd.args(["report", "last", "-o"]).arg(&path);
    let (status, _, stderr) = run(cmd, Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    let html = std::fs::read_to_string(&path).expect("report written");
    assert!(
        html.starts_with("<!DOCTYPE html>"),
        "{}",
        &html[..80.min(html.len())]
    );
}

#[test]
fn unknown_extension_is_refused_with_a_hint() {
    let r = runs();
    let mut cmd = r.sandbox.cmd();
    cmd.args(["report", "last", "-o"])
        .arg(r.sandbox.dir.path().join("report.txt"));
    let (status, _, stderr) = run(cmd, Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("report.txt: cannot tell the format"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: name the file .html, .md or .json"),
        "{stderr}"
    );
}

/// Headless Chromium, or a failure saying how to install it.
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-prereqs (it installs Debian's chromium), or set CHROMIUM",
        path.display()
    );
    path
}

/// A page that loads the report in a frame, measures every chart there and writes the result
/// into its own DOM (the report itself runs no script).
const CHECK_PAGE: &str = r#"<!DOCTYPE html><html><body>
<iframe id="report" src="REPORT" style="width:1400px;height:1000px"></iframe>
<script>
var frame = document.getElementById('report');
frame.addEventListener('load', function () {
  var result = { charts: [] };
  try {
    var doc = frame.contentDocument;
    result.sections = doc.querySelectorAll('section').length;
    result.active = doc.querySelectorAll('script, img, iframe, object, embed, [onerror], [onload]').length;
    doc.querySelectorAll('svg.chart').forEach(function (svg) {
      var box = svg.getBoundingClientRect();
      var drawn = 0;
      svg.querySelectorAll('.mark').forEach(function (m) {
        var b = m.getBoundingClientRect();
        if (b.width > 0 && b.height > 0) { drawn++; }
      });
      result.charts.push({ id: svg.id, width: box.width, height: box.height, drawn: drawn,
        expected: Number(svg.getAttribute('data-marks')) });
    });
  } catch (e) { result.error = String(e); }
  document.body.setAttribute('data-result', JSON.stringify(result));
});
</script></body></html>"#;

/// Load `page` in headless Chromium; returns (dumped DOM, console lines). The browser runs in its
/// own process group, killed whole when it exits or overruns, so no renderer is left behind.
fn chromium_dump(page: &Path, profile: &Path) -> (String, Vec<String>) {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args([
            "--allow-file-access-from-files",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let group = child.id() as i32;
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: signals only the process group this test created for the browser.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let _ = child.wait();
    let (dom, log) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.is_some(),
        "chromium did not finish within 90 s; log:\n{log}"
    );
    let console = log
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (dom, console)
}

fn unescape_attribute(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

#[test]
fn chromium_draws_every_chart_with_a_clean_console() {
    let html = report("report-browser.html", &[]);
    let dir = runs().sandbox.dir.path();
    let page = dir.join("check.html");
    std::fs::write(&page, CHECK_PAGE.replace("REPORT", "report-browser.html")).unwrap();
    let (dom, console) = chromium_dump(&page, &dir.join("chromium-profile"));
    assert!(console.is_empty(), "console messages: {console:#?}");
    let attribute = dom
        .split("data-result=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the check page wrote no result; DOM:\n{dom}"));
    let result: serde_json::Value =
        serde_json::from_str(&unescape_attribute(attribute)).expect("result JSON");
    assert!(result["error"].is_null(), "{result}");
    assert_eq!(result["sections"], 9);
    assert_eq!(
        result["active"], 0,
        "script or image elements in the report"
    );
    let charts = result["charts"].as_array().expect("charts");
    let want = expected();
    let tg = want.cells.iter().filter(|c| c.0 == "tg").count() as u64;
    let expected_marks = [
        ("depth-tg", tg),
        ("depth-pp", want.cells.len() as u64 - tg),
        ("kv-tg", tg),
        ("kv-pp", want.cells.len() as u64 - tg),
        // Two steps × p50/p90/p99.
        ("latency-concurrency-ttft", 6),
        ("latency-concurrency-itl", 6),
        ("latency-concurrency-tpot", 6),
        ("latency-concurrency-e2e", 6),
        // One point per KV config.
        ("pareto", 2),
    ];
    let ids: Vec<&str> = charts.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, expected_marks.map(|e| e.0), "charts drawn");
    assert_eq!(html.matches("<svg class=\"chart\"").count(), charts.len());
    for (chart, (id, marks)) in charts.iter().zip(expected_marks) {
        assert!(
            chart["width"].as_f64() > Some(100.0),
            "{id} has no width: {chart}"
        );
        assert!(
            chart["height"].as_f64() > Some(100.0),
            "{id} has no height: {chart}"
        );
        assert_eq!(chart["expected"], marks, "{id}: marks the report declares");
        assert_eq!(chart["drawn"], marks, "{id}: marks with a visible box");
    }
}
