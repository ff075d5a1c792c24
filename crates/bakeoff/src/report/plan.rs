//! The KV-type table `bakeoff model plan` prints: per-token and total KV cache for each cache
//! type at the planned context, and the largest context each fits in a memory budget.

use super::render::{Column, Table};
use crate::domain::units::human_bytes;
pub use crate::model::plan::KvTypeRow;
use crate::model::plan::MemoryPlan;
use crate::model::split::DevicePlan;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

/// What the plan was asked for, as `bakeoff plan` echoes it.
pub struct PlanRequest<'a> {
    pub path: &'a Path,
    pub parallel: u64,
    pub ctk: &'a str,
    pub ctv: &'a str,
    /// GB/s, when given.
    pub bandwidth_gbs: Option<f64>,
}

/// `bakeoff plan --json`.
pub fn plan_json(request: &PlanRequest, plan: &MemoryPlan) -> Value {
    json!({
        "model": request.path, "ctx": plan.kv.ctx, "parallel": request.parallel, "ctk": request.ctk,
        "ctv": request.ctv, "kv": plan.kv, "weights_bytes": plan.weights_bytes,
        "compute_buffer_estimate": plan.compute_bytes, "total_bytes": plan.total_bytes,
        "budget_bytes": plan.budget_bytes, "fits": plan.fits(), "largest_context": plan.largest_context,
        "bytes_read_per_token": plan.bytes_read_per_token, "roofline_tg": plan.roofline_tg,
        "depth": plan.depth, "table": plan.by_type,
    })
}

/// `bakeoff plan`'s text: the caches, weights, compute, total, budget verdict, roofline, then
/// the KV-type table.
pub fn plan_text(request: &PlanRequest, plan: &MemoryPlan) -> String {
    let mut out = String::new();
    let kv = &plan.kv;
    let (path, parallel) = (request.path.display(), request.parallel);
    let _ = writeln!(
        out,
        "{path} at ctx {} × {parallel} sequence(s), K {} / V {}",
        kv.ctx, request.ctk, request.ctv
    );
    let _ = writeln!(
        out,
        "  KV per token   {} (while inside every window)",
        human_bytes(kv.bytes_per_token)
    );
    for c in &kv.caches {
        let (k, v, total) = (
            human_bytes(c.k_bytes),
            human_bytes(c.v_bytes),
            human_bytes(c.bytes()),
        );
        let _ = writeln!(
            out,
            "  {:<4} cache     {} cells × {} stream(s), {} layers: K {k} + V {v} = {total}",
            c.kind, c.cells, c.streams, c.layers
        );
    }
    if kv.recurrent_bytes > 0 {
        let _ = writeln!(out, "  recurrent      {}", human_bytes(kv.recurrent_bytes));
    }
    let _ = writeln!(out, "  weights        {}", human_bytes(plan.weights_bytes));
    let _ = writeln!(out, "  compute (est.) {}", human_bytes(plan.compute_bytes));
    let _ = writeln!(out, "  total          {}", human_bytes(plan.total_bytes));
    budget_line(&mut out, plan);
    if let Some(r) = plan.roofline_tg {
        let (depth, read) = (plan.depth, human_bytes(plan.bytes_read_per_token));
        let gbs = request.bandwidth_gbs.unwrap_or(0.0);
        let _ = writeln!(out, "  roofline       {r:.1} t/s upper bound for tg at depth {depth} ({read} read per token at {gbs:.1} GB/s)");
    }
    let table = kv_types_table(&plan.by_type, kv.ctx, plan.budget_bytes.is_some());
    let _ = write!(out, "\n{}", table.markdown());
    out
}

/// Each GPU's share (`bakeoff plan --gpus`): layers, weights, KV, compute, total against its
/// memory, and what stays on the host.
pub fn devices_text(plan: &DevicePlan) -> String {
    let mode = serde_json::to_value(plan.mode).unwrap_or_default();
    let mut out = format!("-sm {}\n", mode.as_str().unwrap_or("?"));
    for d in &plan.devices {
        let output = if d.output { " + output" } else { "" };
        let verdict = if d.fits() { "fits" } else { "does NOT fit" };
        let _ = writeln!(
            out,
            "  GPU {}  {} layers{output}: weights {} + KV {} + compute {} = {} of {} → {verdict}",
            d.device,
            d.layers,
            human_bytes(d.weights_bytes),
            human_bytes(d.kv_bytes),
            human_bytes(d.compute_bytes),
            human_bytes(d.total_bytes),
            human_bytes(d.memory_bytes),
        );
    }
    let _ = writeln!(
        out,
        "  host   input embeddings {}",
        human_bytes(plan.host_bytes)
    );
    out
}

fn budget_line(out: &mut String, plan: &MemoryPlan) {
    let Some(budget) = plan.budget_bytes else {
        return;
    };
    let verdict = if plan.fits() == Some(true) {
        "fits"
    } else {
        "does NOT fit"
    };
    let largest = plan
        .largest_context
        .map_or_else(|| "none".into(), |c| c.to_string());
    let _ = writeln!(
        out,
        "  budget         {} → {verdict}; largest context that fits: {largest}",
        human_bytes(budget)
    );
}

/// The table at context `ctx`; the budget column only when a budget was given.
pub fn kv_types_table(rows: &[KvTypeRow], ctx: u64, with_budget: bool) -> Table {
    let mut columns = vec![
        Column::left("type", "KV type"),
        Column::right("bytes_per_token", "per token"),
        Column::right("total_bytes", format!("total at ctx {ctx}")),
    ];
    if with_budget {
        columns.push(Column::right("largest_context", "largest ctx in budget"));
    }
    let mut table = Table::new(columns);
    for row in rows {
        let mut cells = vec![
            row.kind.clone(),
            human_bytes(row.bytes_per_token),
            human_bytes(row.total_bytes),
        ];
        if with_budget {
            let largest = row.largest_context.map(|c| c.to_string());
            cells.push(largest.unwrap_or_else(|| "none".into()));
        }
        table.push(cells);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_column_only_with_a_budget() {
        let rows = [KvTypeRow {
            kind: "q8_0".into(),
            bytes_per_token: 2048,
            total_bytes: 8 << 20,
            largest_context: None,
        }];
        let md = kv_types_table(&rows, 4096, false).markdown();
        assert_eq!(
            md,
            "| KV type | per token | total at ctx 4096 |\n| ------- | --------: | ----------------: |\n| q8_0 | 2.00 KiB | 8.00 MiB |\n"
        );
        let md = kv_types_table(&rows, 4096, true).markdown();
        assert!(md.ends_with("| 8.00 MiB | none |\n"), "{md}");
        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(json["type"], "q8_0");
        assert!(json["largest_context"].is_null());
    }
}
