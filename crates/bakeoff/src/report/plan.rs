//! The KV-type table `bakeoff model plan` prints: per-token and total KV cache for each cache
//! type at the planned context, and the largest context each fits in a memory budget.

use super::render::{Column, Table};
use crate::domain::units::human_bytes;
use serde::Serialize;

/// One cache type's plan; serialized as `model plan --json` lists it under `table`.
#[derive(Debug, Clone, Serialize)]
pub struct KvTypeRow {
    #[serde(rename = "type")]
    pub kind: String,
    pub bytes_per_token: u64,
    pub total_bytes: u64,
    /// The largest context that fits the budget (`None` without a budget or when none fits).
    pub largest_context: Option<u64>,
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
