//! The closed choices of the command line as clap `ValueEnum`s (so `--help` lists them and a typo is
//! an argument error), each mapped onto the library's own type, which knows nothing of clap.

use bakeoff::analysis::journal::Verdict;
use bakeoff::chat::ToolCallFormat;
use bakeoff::formats::gguf::GgmlType;
use bakeoff::measure::experiment::BenchEngine;
use bakeoff::quality::toolcall::ForceTools;
use bakeoff::report::{table, ReportFormat};
use clap::ValueEnum;

/// Output format of a results table (bench, load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TableFormat {
    #[default]
    #[value(alias = "markdown")]
    Md,
    Csv,
    Json,
    Jsonl,
}

impl From<TableFormat> for table::Format {
    fn from(format: TableFormat) -> Self {
        match format {
            TableFormat::Md => table::Format::Markdown,
            TableFormat::Csv => table::Format::Csv,
            TableFormat::Json => table::Format::Json,
            TableFormat::Jsonl => table::Format::Jsonl,
        }
    }
}

/// Output format of `bakeoff gate`: the readiness table or every figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum GateFormat {
    #[default]
    #[value(alias = "markdown")]
    Md,
    Json,
}

/// Output of the commands that print text for people or JSON for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TextFormat {
    Text,
    Json,
}

/// Output of `bakeoff compare`: the Markdown table or every figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    #[value(alias = "markdown")]
    Md,
    Json,
}

/// Output of `bakeoff journal show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JournalFormat {
    Text,
    #[value(alias = "markdown")]
    Md,
    Json,
}

impl JournalFormat {
    /// `-o FORMAT`, else the `--md` / `--json` shorthands, else text.
    pub fn resolve(given: Option<JournalFormat>, md: bool, json: bool) -> JournalFormat {
        match (given, md, json) {
            (Some(format), _, _) => format,
            (None, true, _) => JournalFormat::Md,
            (None, false, true) => JournalFormat::Json,
            (None, false, false) => JournalFormat::Text,
        }
    }
}

/// Format of `bakeoff report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormatArg {
    #[value(alias = "htm")]
    Html,
    #[value(alias = "markdown")]
    Md,
    Json,
    Csv,
}

impl From<ReportFormatArg> for ReportFormat {
    fn from(format: ReportFormatArg) -> Self {
        match format {
            ReportFormatArg::Html => ReportFormat::Html,
            ReportFormatArg::Md => ReportFormat::Markdown,
            ReportFormatArg::Json => ReportFormat::Json,
            ReportFormatArg::Csv => ReportFormat::Csv,
        }
    }
}

/// `report -o`: a format name, or (the older spelling) the file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatOrFile {
    Format(ReportFormatArg),
    File(std::path::PathBuf),
}

/// Parse `report -o VALUE`: a format name when it is one, else a path (as `--out`).
pub fn format_or_file(value: &str) -> Result<FormatOrFile, String> {
    Ok(match ReportFormatArg::from_str(value, true) {
        Ok(format) => FormatOrFile::Format(format),
        Err(_) => FormatOrFile::File(value.into()),
    })
}

/// The engine `bakeoff bench` measures with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    LlamaServer,
    LlamaBench,
}

impl From<EngineArg> for BenchEngine {
    fn from(engine: EngineArg) -> Self {
        match engine {
            EngineArg::LlamaServer => BenchEngine::LlamaServer,
            EngineArg::LlamaBench => BenchEngine::LlamaBench,
        }
    }
}

/// When a tool call is forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ForceToolsArg {
    #[default]
    #[value(alias = "no")]
    Never,
    First,
    Always,
}

impl ForceToolsArg {
    /// The name stored in run parameters.
    pub fn name(self) -> &'static str {
        match self {
            ForceToolsArg::Never => "never",
            ForceToolsArg::First => "first",
            ForceToolsArg::Always => "always",
        }
    }
}

impl From<ForceToolsArg> for ForceTools {
    fn from(force: ForceToolsArg) -> Self {
        match force {
            ForceToolsArg::Never => ForceTools::Never,
            ForceToolsArg::First => ForceTools::First,
            ForceToolsArg::Always => ForceTools::Always,
        }
    }
}

/// The path an arm takes: the engine's tools API or the model's native format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArmPath {
    Json,
    Native,
}

impl ArmPath {
    pub fn name(self) -> &'static str {
        match self {
            ArmPath::Json => "json",
            ArmPath::Native => "native",
        }
    }
}

/// A native tool-call format, spelled as the library names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ToolFormatArg {
    Hermes,
    #[value(name = "llama3_json")]
    Llama3Json,
    Mistral,
    Gemma4,
    Pythonic,
}

impl From<ToolFormatArg> for ToolCallFormat {
    fn from(format: ToolFormatArg) -> Self {
        match format {
            ToolFormatArg::Hermes => ToolCallFormat::Hermes,
            ToolFormatArg::Llama3Json => ToolCallFormat::Llama3Json,
            ToolFormatArg::Mistral => ToolCallFormat::Mistral,
            ToolFormatArg::Gemma4 => ToolCallFormat::Gemma4,
            ToolFormatArg::Pythonic => ToolCallFormat::Pythonic,
        }
    }
}

/// Tensor type `model synth` writes before any `--quantize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DtypeArg {
    #[default]
    F16,
    F32,
    /// Random Q8_0 blocks, written directly.
    #[value(name = "q8_0")]
    Q8_0,
    /// Random Q4_K blocks, written directly (a 70B shape in ~40 GB).
    #[value(name = "q4_k")]
    Q4K,
}

impl DtypeArg {
    /// The GGML type name.
    pub fn name(self) -> &'static str {
        match self {
            DtypeArg::F16 => "F16",
            DtypeArg::F32 => "F32",
            DtypeArg::Q8_0 => "Q8_0",
            DtypeArg::Q4K => "Q4_K",
        }
    }

    /// The GGML type (clap admits only these names; `model synth` checks what it can write).
    pub fn ggml_type(self) -> GgmlType {
        GgmlType::from_name(self.name()).expect("every DtypeArg names a GGML type")
    }
}

/// A journal verdict set by hand; any case, and `no impact`, `no_impact` for no-impact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerdictArg {
    #[value(name = "KEEP")]
    Keep,
    #[value(name = "REVERTED")]
    Reverted,
    #[value(name = "NO-IMPACT", alias = "NO IMPACT", alias = "NO_IMPACT")]
    NoImpact,
    #[value(name = "PENDING")]
    Pending,
    #[value(name = "BLOCKED")]
    Blocked,
}

impl From<VerdictArg> for Verdict {
    fn from(verdict: VerdictArg) -> Self {
        match verdict {
            VerdictArg::Keep => Verdict::Keep,
            VerdictArg::Reverted => Verdict::Reverted,
            VerdictArg::NoImpact => Verdict::NoImpact,
            VerdictArg::Pending => Verdict::Pending,
            VerdictArg::Blocked => Verdict::Blocked,
        }
    }
}

/// Architectures `model synth` builds from dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    Llama,
}

/// `--arms json,native`: checked here so that a misspelt arm is an argument error.
pub fn arm_list(value: &str) -> Result<String, String> {
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        ArmPath::from_str(name, false)
            .map_err(|_| format!("'{name}' is not an arm (expected json, native)"))?;
    }
    Ok(value.to_string())
}

/// A count that must be at least one (requests per step, requests in flight): zero would measure
/// nothing, or wait forever.
pub fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_format_maps_to_the_library_name() {
        for arg in ToolFormatArg::value_variants() {
            let name = arg.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name.as_deref(), Some(ToolCallFormat::from(*arg).name()));
        }
        assert_eq!(
            ToolFormatArg::value_variants().len(),
            ToolCallFormat::ALL.len()
        );
    }

    #[test]
    fn journal_format_prefers_o_then_the_shorthands() {
        use JournalFormat::*;
        assert_eq!(JournalFormat::resolve(Some(Json), false, false), Json);
        assert_eq!(JournalFormat::resolve(None, true, false), Md);
        assert_eq!(JournalFormat::resolve(None, false, true), Json);
        assert_eq!(JournalFormat::resolve(None, false, false), Text);
    }

    #[test]
    fn verdicts_parse_in_any_case_and_spelling() {
        for text in ["NO IMPACT", "no-impact", "No_Impact"] {
            assert_eq!(VerdictArg::from_str(text, true), Ok(VerdictArg::NoImpact));
        }
        assert_eq!(VerdictArg::from_str("KEEP", true), Ok(VerdictArg::Keep));
        assert!(VerdictArg::from_str("maybe", true).is_err());
    }

    #[test]
    fn arm_lists_name_the_bad_arm() {
        assert_eq!(arm_list("json,native"), Ok("json,native".into()));
        assert!(arm_list("json,nativ").unwrap_err().contains("'nativ'"));
    }

    #[test]
    fn report_o_takes_a_format_name_or_a_path() {
        assert_eq!(
            format_or_file("html"),
            Ok(FormatOrFile::Format(ReportFormatArg::Html))
        );
        assert_eq!(
            format_or_file("r.html"),
            Ok(FormatOrFile::File("r.html".into()))
        );
        assert_eq!(format_or_file("-"), Ok(FormatOrFile::File("-".into())));
    }
}
