//! `bakeoff doctor`: engines, models and the machine fingerprint; `--audit`: the settings
//! checklist and deployment readiness.

use crate::cli::{DoctorArgs, Global};
use crate::printer::Printer;
use bakeoff::domain::units::human_bytes;
use bakeoff::engines::{build, discovery};
use bakeoff::report::audit as report;
use bakeoff::store::{ModelRow, Store};
use bakeoff::system::audit;
use bakeoff::system::bandwidth::Bandwidth;
use bakeoff::system::Fingerprint;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(global: &Global, args: &DoctorArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    if args.audit {
        return audit(global, args, printer);
    }
    let engines = discovery::discover(global.engine_path.as_deref());
    let identities: Vec<_> = engines.iter().map(build::identify_install).collect();
    let store = super::open_store(global)?;
    let models_dir = bakeoff::system::paths::models_dir();
    let models = installed_models(&store, &models_dir, printer)?;
    let fingerprint = Fingerprint::collect();
    let bandwidth = match args.bandwidth {
        true => Some(measure_bandwidth(
            &store,
            store.system_id(&fingerprint)?,
            printer,
        )?),
        false => None,
    };
    let found = Found {
        server: engines
            .iter()
            .any(|e| e.tools.iter().any(|t| t == "llama-server")),
        models: !models.is_empty(),
    };
    if args.json {
        let doc = json!({
            "engines": engines,
            "builds": identities.iter().flatten().flatten().collect::<Vec<_>>(),
            "models": models,
            "models_dir": models_dir,
            "database": store.path(),
            "system": fingerprint,
            "bandwidth": bandwidth,
            "ok": found.server && found.models,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_engines(&engines, &identities);
        print_models(&models, &models_dir);
        print_system(&fingerprint);
        print_bandwidth(bandwidth.as_ref());
        println!("\nDatabase: {}", store.path().display());
    }
    Ok(verdict(&found, &models_dir))
}

/// `doctor --audit`: the settings checklist and deployment readiness. Information, so exit 0.
fn audit(global: &Global, args: &DoctorArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let checklist = audit::collect_system();
    printer.status("checking saved profiles' model files, the port and other processes…");
    let readiness = bakeoff::serve::deployment::collect(&store, args.port)?;
    match args.json {
        true => {
            let doc = json!({ "audit": checklist, "readiness": readiness });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        false => print!(
            "{}{}",
            report::audit_markdown(&checklist),
            report::readiness_markdown(&readiness)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the two things every measurement needs are present.
struct Found {
    server: bool,
    models: bool,
}

/// The GGUF files in the model cache, hashed into the store (once per file version).
fn installed_models(store: &Store, dir: &Path, printer: Printer) -> bakeoff::Result<Vec<ModelRow>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    paths.sort();
    let hash = |path: &PathBuf| {
        let shown = path.display();
        printer.status(format!("hashing {shown} (cached after the first time)"));
        store.model(path)
    };
    paths.iter().map(hash).collect()
}

/// Measure and store this machine's memory bandwidth (the roofline's denominator), under the
/// machine-wide lock: the copy uses every core and would disturb (and be disturbed by) a bench.
fn measure_bandwidth(
    store: &Store,
    system_id: i64,
    printer: Printer,
) -> bakeoff::Result<Bandwidth> {
    let _lock = bakeoff::session::take_lock(&super::command_line())?;
    printer.status("measuring memory bandwidth (in-process copy, all cores)…");
    let measured = bakeoff::system::bandwidth::measure();
    store.system_measurement(system_id, "memory_bandwidth", measured.gb_per_s, "GB/s")?;
    Ok(measured)
}

fn print_bandwidth(bandwidth: Option<&Bandwidth>) {
    if let Some(b) = bandwidth {
        println!("  bandwidth  {:.1} GB/s (copy, read+write, {} threads, best of {}; stored for the roofline)", b.gb_per_s, b.threads, b.passes);
    }
}

/// Exit 1 with an error and a hint when no llama-server or no model was found.
fn verdict(found: &Found, models_dir: &Path) -> ExitCode {
    let engines = bakeoff::system::paths::engines_dir();
    let problem = match (found.server, found.models) {
        (false, _) => (
            "no usable engine: llama-server was not found".to_string(),
            format!(
                "run scripts/setup (builds llama.cpp into {}), or pass --engine-path",
                engines.display()
            ),
        ),
        (true, false) => (
            format!("no model found in {}", models_dir.display()),
            "run scripts/setup to install SmolLM2-135M and Gemma 3 270M".to_string(),
        ),
        (true, true) => return ExitCode::SUCCESS,
    };
    eprintln!("error: {}\nhint: {}", problem.0, problem.1);
    ExitCode::from(1)
}

fn print_engines(engines: &[discovery::LlamaCppInstall], identities: &[Identity]) {
    println!("Engines:");
    if engines.is_empty() {
        println!("  (none found)");
    }
    for (engine, identity) in engines.iter().zip(identities) {
        let build = engine
            .build_number
            .map(|b| format!("build {b}"))
            .unwrap_or_else(|| "build ?".into());
        println!(
            "  llama.cpp {} ({build}, commit {}) [{}]\n    {}\n    tools: {}",
            engine.version.as_deref().unwrap_or("?"),
            engine.commit.as_deref().unwrap_or("?"),
            engine.source,
            engine.bin_dir.display(),
            engine.tools.join(", ")
        );
        if let Some(built) = &engine.built_with {
            println!("    {built}");
        }
        print_identity(identity);
    }
}

/// A discovered build's identity, as `--build` would record it (absent without a llama-server).
type Identity = Option<bakeoff::Result<build::BuildIdentity>>;

/// `    backends: CPU  devices: (none)  sha256 1eb6c007e1a7`, or why the build could not be read.
fn print_identity(identity: &Identity) {
    let list = |items: &[String]| match items.is_empty() {
        true => "(none)".to_string(),
        false => items.join(", "),
    };
    match identity {
        Some(Ok(i)) => println!(
            "    backends: {}  devices: {}  sha256 {}",
            list(&i.backends),
            list(&i.devices),
            &i.binary_sha256[..i.binary_sha256.len().min(12)]
        ),
        Some(Err(e)) => println!("    identity: {e}"),
        None => {}
    }
}

fn print_models(models: &[ModelRow], dir: &Path) {
    println!("\nModels ({}):", dir.display());
    if models.is_empty() {
        println!("  (none)");
    }
    for model in models {
        let name = Path::new(&model.path)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let arch = model
            .summary
            .get("architecture")
            .and_then(|a| a.as_str())
            .unwrap_or("?");
        let params = model
            .summary
            .get("parameters")
            .and_then(|p| p.as_u64())
            .map(|p| format!("{:.0}M params", p as f64 / 1e6))
            .unwrap_or_default();
        println!(
            "  {name}\n    {}  {arch}  {params}\n    sha256 {}",
            human_bytes(model.size),
            model.sha256
        );
    }
}

fn print_system(fp: &Fingerprint) {
    println!("\nSystem ({}):", fp.hash());
    println!("  CPU        {} ({} cores)", fp.cpu_model, fp.cpu_cores);
    println!("  RAM        {}", human_bytes(fp.ram_bytes));
    if fp.gpus.is_empty() {
        println!("  GPUs       none found (nvidia-smi, amdgpu sysfs)");
    }
    for gpu in &fp.gpus {
        let memory = gpu
            .memory_bytes
            .map(human_bytes)
            .unwrap_or_else(|| "?".into());
        println!("  GPU        {} ({memory}, via {})", gpu.name, gpu.source);
    }
    if let Some(topology) = &fp.gpu_topology {
        println!("  GPU links  {}", topology.describe());
    }
    println!("  OS         {} (kernel {}, {})", fp.os, fp.kernel, fp.arch);
    println!(
        "  governor   {}",
        fp.cpu_governor.as_deref().unwrap_or("n/a")
    );
    println!(
        "  THP        {}",
        fp.transparent_hugepages.as_deref().unwrap_or("n/a")
    );
    println!(
        "  swappiness {}",
        fp.swappiness
            .map(|s| s.to_string())
            .unwrap_or_else(|| "n/a".into())
    );
}
