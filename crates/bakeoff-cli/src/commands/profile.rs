//! `bakeoff profile save|list|show|delete|export`: a run's winning configuration under a name,
//! exported as the llama-server command line or a systemd unit.

use crate::cli::{Global, ProfileCommand};
use crate::printer::Printer;
use bakeoff::engines::discovery;
use bakeoff::serve::profile as serving;
use bakeoff::store::{Profile, Store};
use bakeoff::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(global: &Global, command: ProfileCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    let store = match command {
        ProfileCommand::Save { .. } => super::open_store(global)?,
        _ => super::open_existing_store(global)?,
    };
    match command {
        ProfileCommand::Save {
            name,
            from,
            fallback,
            force,
            json,
            engine_args,
        } => {
            let draft = Draft {
                name: &name,
                from: &from,
                fallback: fallback.as_deref(),
                engine_args: &engine_args,
            };
            save(&store, &draft, force, printer)?;
            print_profile(&store.profile(&name)?, json)
        }
        ProfileCommand::List { json } => list(&store, json, printer),
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
            let binary = engine_binary(global, &profile, printer)?;
            let argv = serving::command(&profile, &binary, &host, port);
            let text = if systemd {
                serving::systemd_unit(&profile, &argv)
            } else {
                format!("{}\n", serving::shell_command(&argv))
            };
            write_or_print(output.as_deref(), &text, printer)
        }
    }
}

/// What `profile save` drafts a profile from.
struct Draft<'a> {
    name: &'a str,
    from: &'a str,
    fallback: Option<&'a str>,
    engine_args: &'a [String],
}

fn save(store: &Store, draft: &Draft, force: bool, printer: Printer) -> anyhow::Result<()> {
    let (run_id, selector) = super::resolve_run_and_suffix(store, draft.from)?;
    let (name, args) = (draft.name, draft.engine_args);
    let drafted = serving::draft(
        store,
        name,
        run_id,
        selector.as_deref(),
        args,
        draft.fallback,
    )?;
    store.save_profile(&drafted.profile, force)?;
    let (config, label) = (drafted.chosen.config.config_id, &drafted.chosen.label);
    let line = format!(
        "saved profile '{name}': config {config} of run {run_id} ({label}), {}",
        drafted.reason
    );
    printer.status(line);
    notes(&drafted, printer);
    Ok(())
}

/// What the profile leaves out, and a missing engine.
fn notes(drafted: &serving::Draft, printer: Printer) {
    if !drafted.bench_only.is_empty() {
        printer.status(format!(
            "not stored: {} (added by bakeoff to measure one request at a time); add serving values after `--`, e.g. -- -c 8192 -np 2",
            drafted.bench_only.join(", ")
        ));
    }
    if drafted.profile.engine_path.is_none() {
        printer.warn("no llama-server beside the run's engine; `serve` will use the one it finds");
    }
}

fn list(store: &Store, json: bool, printer: Printer) -> anyhow::Result<ExitCode> {
    let profiles = store.profiles()?;
    let path = store.path().display();
    if json {
        println!("{}", serde_json::to_string_pretty(&profiles)?);
    } else if profiles.is_empty() {
        printer.status(format!(
            "no profiles in {path}; `bakeoff profile save NAME --from RUN` saves one"
        ));
    } else {
        print_list(&profiles);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_list(profiles: &[Profile]) {
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

fn write_or_print(output: Option<&Path>, text: &str, printer: Printer) -> anyhow::Result<ExitCode> {
    match output {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
            printer.status(format!("wrote {}", path.display()));
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
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
    } else {
        profile_lines(profile)
            .iter()
            .for_each(|line| println!("{line}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `profile NAME` and one indented line per field, `-` for what is not recorded.
fn profile_lines(profile: &Profile) -> Vec<String> {
    let p = profile;
    vec![
        format!("profile {}", p.name),
        format!(
            "  from      run {}, config {} ({})",
            or_dash(&p.run_id),
            or_dash(&p.config_id),
            or_dash(&p.config_hash)
        ),
        format!(
            "  model     {} (sha256 {})",
            p.model_path,
            or_dash(&p.model_sha256)
        ),
        format!(
            "  engine    {} ({})",
            or_dash(&p.engine_path),
            or_dash(&p.engine_version)
        ),
        format!("  flags     {}", serving::shell_command(&p.flags)),
        format!("  fallback  {}", or_dash(&p.fallback)),
        canaries_line(p),
        format!("  saved     {} (updated {})", p.created_at, p.updated_at),
    ]
}

fn or_dash<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map_or("-".into(), T::to_string)
}

fn canaries_line(profile: &Profile) -> String {
    match &profile.canary_reference {
        Some(names) => format!(
            "  canaries  {} in the reference: {}",
            names.len(),
            names.join(", ")
        ),
        None => "  canaries  no reference yet (the first ready `bakeoff serve` records one)".into(),
    }
}
