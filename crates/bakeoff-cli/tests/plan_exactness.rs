//! The KV planner against llama-server's own allocation log, for both installed models at several
//! context sizes, slot counts and cache types. llama-server logs each cache as
//! `llama_kv_cache: size = X MiB (N cells, L layers, a/b seqs), K (t): k MiB, V (t): v MiB`;
//! cells and layers must match exactly and sizes to the log's resolution (0.01 MiB).

use crate::common;

use bakeoff::engines::llama_server::{LlamaServer, ServerSpec};
use bakeoff::formats::gguf::{GgmlType, GgufFile};
use bakeoff::model::plan::{plan_kv, KvSettings};
use bakeoff::model::ModelFacts;
use common::*;
use std::time::Duration;

#[derive(Debug, PartialEq)]
struct Logged {
    cells: u64,
    layers: u64,
    k_mib: String,
    v_mib: String,
}

fn parse_log(text: &str) -> Vec<Logged> {
    text.lines()
        .filter(|l| l.contains("llama_kv_cache: size ="))
        .map(|l| {
            let inner = &l[l.find('(').unwrap() + 1..];
            let cells = inner.split_whitespace().next().unwrap().parse().unwrap();
            let layers = inner
                .split(',')
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let mib = |label: &str| {
                let at = l.find(label).unwrap();
                l[at..]
                    .split(':')
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string()
            };
            Logged {
                cells,
                layers,
                k_mib: mib("K ("),
                v_mib: mib("V ("),
            }
        })
        .collect()
}

fn mib(bytes: u64) -> String {
    // llama.cpp divides in single precision before printing.
    format!("{:.2}", bytes as f32 / (1024.0f32 * 1024.0f32))
}

fn check(model: std::path::PathBuf, ctx: u64, parallel: u64, cache: &str) {
    let facts = ModelFacts::from_gguf(&GgufFile::open(&model).unwrap());
    let ty = GgmlType::from_name(cache).unwrap();
    let plan = plan_kv(
        &facts,
        &KvSettings {
            parallel,
            ..KvSettings::new(ctx, ty, ty)
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let args: Vec<String> = [
        "-lv",
        "4",
        "-fa",
        "on",
        "-c",
        &ctx.to_string(),
        "-np",
        &parallel.to_string(),
        "-ctk",
        cache,
        "-ctv",
        cache,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut server = LlamaServer::launch(ServerSpec {
        binary: llama_bin("llama-server"),
        model: model.clone(),
        host: "127.0.0.1".into(),
        port: None,
        args,
        health_timeout: Duration::from_secs(120),
        log_path: log.clone(),
    })
    .unwrap_or_else(|e| panic!("{} ctx {ctx} np {parallel} {cache}: {e}", model.display()));
    server.stop();
    let logged = parse_log(&std::fs::read_to_string(&log).unwrap());
    let planned: Vec<Logged> = plan
        .caches
        .iter()
        .map(|c| Logged {
            cells: c.cells,
            layers: c.layers,
            k_mib: mib(c.k_bytes),
            v_mib: mib(c.v_bytes),
        })
        .collect();
    assert_eq!(
        planned,
        logged,
        "{} ctx {ctx} np {parallel} {cache}",
        model.file_name().unwrap().to_string_lossy()
    );
}

#[test]
fn smollm2_plan_matches_llama_server() {
    for (ctx, parallel, cache) in [
        (1000, 1, "f16"),
        (4096, 1, "q8_0"),
        (5000, 2, "q4_0"),
        (2048, 3, "q5_1"),
    ] {
        check(smollm(), ctx, parallel, cache);
    }
}

#[test]
fn gemma3_sliding_window_plan_matches_llama_server() {
    for (ctx, parallel, cache) in [
        (4096, 1, "f16"),
        (8192, 2, "q8_0"),
        (1000, 1, "q4_0"),
        (32768, 1, "f16"),
    ] {
        check(gemma(), ctx, parallel, cache);
    }
}
