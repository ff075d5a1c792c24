//! `bakeoff profile save|list|show|delete|export`: a run's winning configuration under a name,
//! exported as the llama-server command line or a systemd unit.

use crate::cli::{Global, ProfileCommand};
use crate::printer::Printer;
use bakeoff::engines::discovery;
use bakeoff::serve::profile as serving;
use bakeoff::store::Profile;
use bakeoff::Error;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(global: &Global, command: ProfileCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    match command {
        ProfileCommand::Save {
            name,
            from,
            fallback,
            force,
            json,
            engine_args,
        } => {
            let (run_id, selector) = super::resolve_run_and_suffix(&store, &from)?;
            let draft = serving::draft(
                &store,
                &name,
                run_id,
                selector.as_deref(),
                &engine_args,
                fallback.as_deref(),
            )?;
            store.save_profile(&draft.profile, force)?;
            printer.status(format!(
                "saved profile '{name}': config {} of run {run_id} ({}), {}",
                draft.chosen.config.config_id, draft.chosen.label, draft.reason
            ));
            if !draft.bench_only.is_empty() {
                printer.status(format!(
                    "not stored: {} (added by bakeoff to measure one request at a time); add serving values after `--`, e.g. -- -c 8192 -np 2",
                    draft.bench_only.join(", ")
                ));
            }
            if draft.profile.engine_path.is_none() {
                printer.warn(
                    "no llama-server beside the run's engine; `serve` will use the one it finds",
                );
            }
            print_profile(&store.profile(&name)?, json)
        }
        ProfileCommand::List { json } => {
            let profiles = store.profiles()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&profiles)?);
            } else if profiles.is_empty() {
                printer.status(format!(
                    "no profiles in {}; `bakeoff profile save NAME --from RUN` saves one",
                    store.path().display()
                ));
            } else {
                println!(
                    "{:<20} {:>5} {:>7}  {:<12} FLAGS",
                    "NAME", "RUN", "CONFIG", "FALLBACK"
                );
                for p in profiles {
                    println!(
                        "{:<20} {:>5} {:>7}  {:<12} {}",
                        p.name,
                        p.run_id.map(|r| r.to_string()).unwrap_or_default(),
                        p.config_id.map(|c| c.to_string()).unwrap_or_default(),
                        p.fallback.as_deref().unwrap_or("-"),
                        serving::shell_command(&p.flags)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ProfileCommand::Show { name, json } => print_profile(&store.profile(&name)?, json),
        ProfileCommand::Delete { name } => {
            store.delete_profile(&name)?;
            printer.status(format!("deleted profile '{name}'"));
            Ok(ExitCode::SUCCESS)
        }
        ProfileCommand::Export {
            name,
            systemd,
            command: _,
            output,
            port,
            host,
            build: _,
        } => {
            let profile = store.profile(&name)?;
            let argv = serving::command(
                &profile,
                &engine_binary(global, &profile, printer)?,
                &host,
                port,
            );
            let text = if systemd {
                serving::systemd_unit(&profile, &argv)
            } else {
                format!("{}\n", serving::shell_command(&argv))
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
                    printer.status(format!("wrote {}", path.display()));
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The absolute llama-server to run a profile with: `--engine-path`, else the profile's own,
/// else whatever discovery finds (with a warning).
pub fn engine_binary(
    global: &Global,
    profile: &Profile,
    printer: Printer,
) -> bakeoff::Result<PathBuf> {
    if global.engine_path.is_none() {
        if let Some(binary) = serving::stored_binary(profile) {
            return Ok(binary.canonicalize().unwrap_or(binary));
        }
    }
    let (_, binary) = discovery::find_tool(global.engine_path.as_deref(), "llama-server")?;
    if global.engine_path.is_none() {
        printer.warn(format!(
            "profile '{}': its engine {} is gone; using {}",
            profile.name,
            profile.engine_path.as_deref().unwrap_or("(none recorded)"),
            binary.display()
        ));
    }
    Ok(binary.canonicalize().unwrap_or(binary))
}

fn print_profile(profile: &Profile, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(profile)?);
        return Ok(ExitCode::SUCCESS);
    }
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!("profile {}", profile.name);
    println!(
        "  from      run {}, config {} ({})",
        or_dash(profile.run_id.map(|r| r.to_string())),
        or_dash(profile.config_id.map(|c| c.to_string())),
        or_dash(profile.config_hash.clone())
    );
    println!(
        "  model     {} (sha256 {})",
        profile.model_path,
        or_dash(profile.model_sha256.clone())
    );
    println!(
        "  engine    {} ({})",
        or_dash(profile.engine_path.clone()),
        or_dash(profile.engine_version.clone())
    );
    println!("  flags     {}", serving::shell_command(&profile.flags));
    println!("  fallback  {}", or_dash(profile.fallback.clone()));
    match &profile.canary_reference {
        Some(names) => println!(
            "  canaries  {} in the reference: {}",
            names.len(),
            names.join(", ")
        ),
        None => {
            println!("  canaries  no reference yet (the first ready `bakeoff serve` records one)")
        }
    }
    println!(
        "  saved     {} (updated {})",
        profile.created_at, profile.updated_at
    );
    Ok(ExitCode::SUCCESS)
}
