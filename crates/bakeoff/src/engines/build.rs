//! Engine builds as a matrix dimension: `--build NAME=PATH` names a directory of llama.cpp tools
//! (or one binary), and each build's identity (version, commit, backends, devices, binary hash)
//! is recorded so "b11434 vs b11000" or "Vulkan vs ROCm" is a column, not a guess. Flags a build
//! does not know are found from its `--help` before a sweep.

use super::discovery::{LlamaCppInstall, VersionInfo};
use super::process::{self, Supervised};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A named build as the user gave it: `NAME=PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRef {
    pub name: String,
    /// A directory of llama.cpp tools (its `bin/` is looked in too) or one tool's binary.
    pub path: PathBuf,
}

impl BuildRef {
    /// `NAME=PATH`.
    pub fn parse(text: &str) -> Result<BuildRef> {
        let (name, path) = text
            .split_once('=')
            .filter(|(name, path)| !name.trim().is_empty() && !path.trim().is_empty())
            .ok_or_else(|| Error::input(format!("--build {text}: expected NAME=PATH")))?;
        Ok(BuildRef {
            name: name.trim().to_string(),
            path: PathBuf::from(path.trim()),
        })
    }

    /// The binary of `tool` in this build: PATH itself when it is that tool, else PATH/tool or
    /// PATH/bin/tool.
    pub fn tool(&self, tool: &str) -> Result<PathBuf> {
        let path = &self.path;
        if !path.exists() {
            return Err(Error::input(format!(
                "build {}: {}: no such file or directory",
                self.name,
                path.display()
            )));
        }
        if path.is_file() {
            let sibling = path.with_file_name(tool);
            if path.file_name().is_some_and(|n| n == tool) || sibling.is_file() {
                return Ok(if sibling.is_file() {
                    sibling
                } else {
                    path.clone()
                });
            }
        }
        for candidate in [path.join(tool), path.join("bin").join(tool)] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        Err(Error::input(format!(
            "build {}: no {tool} in {}",
            self.name,
            path.display()
        )))
    }
}

/// What a build is, as recorded with every trial measured on it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildIdentity {
    pub name: String,
    pub binary: PathBuf,
    pub version: Option<String>,
    pub build_number: Option<u64>,
    pub commit: Option<String>,
    /// `built with ...` from `--version`.
    pub built_with: Option<String>,
    /// Backends compiled in (CPU, CUDA, Vulkan, BLAS...).
    pub backends: Vec<String>,
    /// Devices it sees (`--list-devices`), one line each.
    pub devices: Vec<String>,
    pub binary_sha256: String,
}

impl BuildIdentity {
    /// The build as discovery describes an install: its directory, version and the llama.cpp
    /// tools in it, without probing the binary again.
    pub fn install(&self) -> LlamaCppInstall {
        let bin_dir = self.binary.parent().unwrap_or(Path::new(".")).to_path_buf();
        let tools = super::discovery::TOOLS
            .iter()
            .filter(|t| bin_dir.join(t).is_file())
            .map(|t| t.to_string())
            .collect();
        LlamaCppInstall {
            bin_dir,
            source: format!("--build {}", self.name),
            version: self.version.clone(),
            build_number: self.build_number,
            commit: self.commit.clone(),
            built_with: self.built_with.clone(),
            tools,
        }
    }
}

/// How long `--version`, `--list-devices` or `--help` may take before the binary is killed (a
/// build that hangs there would hang the whole sweep).
pub const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// Run the build's `tool` with `--version` and `--list-devices` and hash it. A build without the
/// tool, or whose tool crashes, hangs or prints no version line, is an error naming the build.
pub fn identify(build: &BuildRef, tool: &str) -> Result<BuildIdentity> {
    identify_within(build, tool, PROBE_LIMIT)
}

fn identify_within(build: &BuildRef, tool: &str, limit: Duration) -> Result<BuildIdentity> {
    let binary = build.tool(tool)?;
    let fail = |what: &str, why: String| {
        Error::input(format!("build {}: {tool} {what} {why}", build.name))
            .with_hint(format!("check the build at {}", binary.display()))
    };
    let version = probe(&binary, "--version", limit).map_err(|why| fail("--version", why))?;
    let info = version
        .version_info()
        .map_err(|why| fail("--version", why))?;
    let devices = probe(&binary, "--list-devices", limit)
        .map_err(|why| fail("--list-devices", why))?
        .devices();
    Ok(BuildIdentity {
        name: build.name.clone(),
        binary_sha256: crate::formats::sha256_file(&binary)?,
        backends: backends(&binary, &devices)?,
        devices,
        version: info.version,
        build_number: info.build_number,
        commit: info.commit,
        built_with: info.built_with,
        binary,
    })
}

/// The identity of a discovered install's llama-server, the build named after its directory
/// (`llama.cpp-b11434-cpu` for `.../llama.cpp-b11434-cpu/bin`); `None` without a llama-server.
pub fn identify_install(install: &LlamaCppInstall) -> Option<Result<BuildIdentity>> {
    install.tool("llama-server")?;
    let dir = &install.bin_dir;
    let named = match dir.file_name().is_some_and(|n| n == "bin") {
        true => dir.parent().unwrap_or(dir),
        false => dir,
    };
    let name = named.file_name().unwrap_or_default().to_string_lossy();
    let build = BuildRef {
        name: name.into_owned(),
        path: dir.clone(),
    };
    Some(identify(&build, "llama-server"))
}

/// What a probed binary printed and how it ended.
struct Probe {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Probe {
    /// The `--version` lines, or why there are none: a crash, or an exit without a version line.
    fn version_info(&self) -> std::result::Result<VersionInfo, String> {
        if let Some(signal) = self.status.signal() {
            return Err(format!("crashed ({})", signal_label(signal)));
        }
        let info = VersionInfo::parse(&format!("{}\n{}", self.stdout, self.stderr));
        match (info.found(), self.status.code()) {
            (true, _) => Ok(info),
            (false, Some(0)) => Err("printed no version line".into()),
            (false, code) => Err(format!(
                "exited with status {} and printed no version line",
                code.unwrap_or(-1)
            )),
        }
    }

    /// `--list-devices`' device lines (`CUDA0: NVIDIA H200 (143771 MiB, 140000 MiB free)`) less
    /// the free memory, which changes from run to run and is no part of what the build is; none
    /// when the build has no such option or sees only the CPU.
    fn devices(&self) -> Vec<String> {
        let Some((_, list)) = self.stdout.split_once("Available devices:") else {
            return Vec::new();
        };
        list.lines()
            .map(str::trim)
            .filter(|line| line.contains(": "))
            .map(without_free_memory)
            .collect()
    }
}

/// `CUDA0: NVIDIA H200 (143771 MiB)` from `CUDA0: NVIDIA H200 (143771 MiB, 140000 MiB free)`.
fn without_free_memory(line: &str) -> String {
    match line
        .strip_suffix(" MiB free)")
        .and_then(|l| l.rsplit_once(", "))
    {
        Some((head, _)) => format!("{head})"),
        None => line.to_string(),
    }
}

/// Run `binary arg` as a supervised child with its output in temporary files; kill it after
/// `limit`. The error says what happened, without naming the binary (the caller does).
fn probe(binary: &Path, arg: &str, limit: Duration) -> std::result::Result<Probe, String> {
    let dir = ProbeDir::new().map_err(|e| e.to_string())?;
    let (stdout_path, stderr_path) = (dir.0.join("stdout"), dir.0.join("stderr"));
    let mut child =
        Supervised::spawn_with_stdout(binary, &[arg.to_string()], Some(&stdout_path), &stderr_path)
            .map_err(|e| e.to_string())?;
    let status = wait_within(&mut child, limit)?;
    let read = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    };
    Ok(Probe {
        status,
        stdout: read(&stdout_path),
        stderr: read(&stderr_path),
    })
}

fn wait_within(child: &mut Supervised, limit: Duration) -> std::result::Result<ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait() {
            return Ok(status);
        }
        if let Some(signal) = process::interrupted() {
            child.stop(process::SIGNAL_GRACE);
            return Err(format!(
                "was interrupted by {}",
                process::signal_name(signal)
            ));
        }
        if Instant::now() >= deadline {
            child.stop(process::SIGNAL_GRACE);
            return Err(format!(
                "did not finish within {} s and was killed",
                limit.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory for one probe's output, removed when dropped.
struct ProbeDir(PathBuf);

impl ProbeDir {
    fn new() -> Result<ProbeDir> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("bakeoff-probe-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(ProbeDir(dir))
    }
}

impl Drop for ProbeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn signal_label(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// ggml backends: the name in `libggml-NAME.so`, the registration symbol a static binary
/// carries (`None` where it is shared with another backend: HIP and MUSA reuse CUDA's), and the
/// label bakeoff records.
const BACKENDS: [(&str, Option<&str>, &str); 14] = [
    ("cpu", Some("ggml_backend_cpu_reg"), "CPU"),
    ("cuda", Some("ggml_backend_cuda_reg"), "CUDA"),
    ("hip", None, "ROCm"),
    ("musa", None, "MUSA"),
    ("vulkan", Some("ggml_backend_vk_reg"), "Vulkan"),
    ("blas", Some("ggml_backend_blas_reg"), "BLAS"),
    ("metal", Some("ggml_backend_metal_reg"), "Metal"),
    ("sycl", Some("ggml_backend_sycl_reg"), "SYCL"),
    ("opencl", Some("ggml_backend_opencl_reg"), "OpenCL"),
    ("cann", Some("ggml_backend_cann_reg"), "CANN"),
    ("rpc", Some("ggml_backend_rpc_reg"), "RPC"),
    ("webgpu", Some("ggml_backend_webgpu_reg"), "WebGPU"),
    ("zdnn", Some("ggml_backend_zdnn_reg"), "zDNN"),
    ("openvino", Some("ggml_backend_openvino_reg"), "OpenVINO"),
];

/// The backends a build was compiled with: `libggml-*.so` beside the binary (or in `../lib`),
/// registration symbols linked into it, and the backends of the devices it lists (the CPU is
/// never listed as a device).
fn backends(binary: &Path, devices: &[String]) -> Result<Vec<String>> {
    let mut found: BTreeSet<String> = libraries_beside(binary);
    found.extend(linked_backends(binary)?);
    found.extend(devices.iter().map(|d| device_backend(d)));
    Ok(found.into_iter().collect())
}

fn libraries_beside(binary: &Path) -> BTreeSet<String> {
    let dir = binary.parent().unwrap_or(Path::new("."));
    [dir.to_path_buf(), dir.join("../lib")]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| entries.flatten())
        .filter_map(|e| library_backend(&e.file_name().to_string_lossy()))
        .collect()
}

/// `CUDA` from `libggml-cuda.so`, `CPU` from `libggml-cpu-haswell.so`; `None` for `libggml-base.so`.
fn library_backend(file_name: &str) -> Option<String> {
    let stem = file_name.strip_prefix("libggml-")?.split(".so").next()?;
    let key = stem.split('-').next()?;
    BACKENDS
        .iter()
        .find(|(lib, _, _)| *lib == key)
        .map(|(_, _, label)| label.to_string())
}

/// `CUDA` from `CUDA0: NVIDIA H200 (...)`, `RPC` from `RPC[127.0.0.1:50052]: ...`.
fn device_backend(device: &str) -> String {
    let name = device.split(':').next().unwrap_or(device);
    let name = name.split('[').next().unwrap_or(name);
    name.trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string()
}

/// Backends whose registration symbol (NUL-terminated, as in a symbol table) is in the binary.
fn linked_backends(binary: &Path) -> Result<BTreeSet<String>> {
    let markers: Vec<(Vec<u8>, &str)> = BACKENDS
        .iter()
        .filter_map(|(_, symbol, label)| symbol.map(|s| ([s.as_bytes(), b"\0"].concat(), *label)))
        .collect();
    let mut found = BTreeSet::new();
    scan_chunks(binary, 64, |window| {
        for (marker, label) in &markers {
            if window.windows(marker.len()).any(|w| w == marker.as_slice()) {
                found.insert(label.to_string());
            }
        }
    })?;
    Ok(found)
}

/// Call `each` on the file's bytes in 1 MiB windows that overlap by `overlap` bytes, so a
/// marker shorter than that is never split between two windows.
fn scan_chunks(path: &Path, overlap: usize, mut each: impl FnMut(&[u8])) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; (1 << 20) + overlap];
    let mut kept = 0;
    loop {
        let n = file
            .read(&mut buf[kept..])
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        let end = kept + n;
        each(&buf[..end]);
        kept = overlap.min(end);
        buf.copy_within(end - kept..end, 0);
    }
}

/// The flags a binary's `--help` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownFlags(pub BTreeSet<String>);

impl KnownFlags {
    /// Read `binary --help` (killed after [`PROBE_LIMIT`]).
    pub fn of(binary: &Path) -> Result<KnownFlags> {
        KnownFlags::of_within(binary, PROBE_LIMIT)
    }

    fn of_within(binary: &Path, limit: Duration) -> Result<KnownFlags> {
        let fail = |why: String| Error::input(format!("{} --help {why}", binary.display()));
        let help = probe(binary, "--help", limit).map_err(fail)?;
        if let Some(signal) = help.status.signal() {
            return Err(fail(format!("crashed ({})", signal_label(signal))));
        }
        let flags = KnownFlags::parse_help(&format!("{}\n{}", help.stdout, help.stderr));
        if flags.0.is_empty() {
            return Err(fail(format!(
                "listed no options (exit status {})",
                help.status.code().unwrap_or(-1)
            )));
        }
        Ok(flags)
    }

    /// The options of llama.cpp's `--help`: each entry starts at column 0 (llama-server) or 2
    /// (llama-bench) with its flags, comma-separated (`-ctk,  --cache-type-k TYPE   help...`), and
    /// continues on lines indented further.
    /// Entries whose help says "the argument has been removed" are left out: the build still
    /// parses them, only to fail.
    pub fn parse_help(text: &str) -> KnownFlags {
        let mut known = BTreeSet::new();
        for entry in help_entries(text) {
            if entry.join(" ").contains("the argument has been removed") {
                continue;
            }
            known.extend(entry_flags(entry[0]));
        }
        KnownFlags(known)
    }

    /// The flags of an argument vector this build does not know (empty when all are known or
    /// when the help listed nothing). `--flag=value` is looked up as `--flag`; values such as
    /// `-1` are not flags.
    pub fn unknown<'a>(&self, args: &'a [String]) -> Vec<&'a str> {
        if self.0.is_empty() {
            return Vec::new();
        }
        args.iter()
            .map(|a| a.split_once('=').map_or(a.as_str(), |(flag, _)| flag))
            .filter(|a| is_flag(a))
            .filter(|a| !self.0.contains(*a))
            .collect()
    }

    pub fn knows(&self, flag: &str) -> bool {
        self.0.contains(flag)
    }
}

/// The text of `binary --help` (stdout then stderr; killed after [`PROBE_LIMIT`]), for readers
/// of more than its flags (allowed values, defaults).
pub fn help_text(binary: &Path) -> Result<String> {
    let help = probe(binary, "--help", PROBE_LIMIT)
        .map_err(|why| Error::input(format!("{} --help {why}", binary.display())))?;
    Ok(format!("{}\n{}", help.stdout, help.stderr))
}

/// Lines grouped into entries: a line starting with `-` opens one, indented lines continue it.
fn help_entries(text: &str) -> Vec<Vec<&str>> {
    let mut entries: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        // llama-server's entries start at column 0, llama-bench's at column 2; continuation
        // lines are indented further.
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent <= 2 && line[indent..].starts_with('-') {
            entries.push(vec![&line[indent..]]);
        } else if line.starts_with(' ') {
            if let Some(entry) = entries.last_mut() {
                entry.push(line);
            }
        } else {
            entries.push(vec![""]); // a heading or a blank line ends the entry
        }
    }
    entries
}

/// `-n`, `--predict`, `--n-predict` from `-n,    --predict, --n-predict N    number of...`.
fn entry_flags(line: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for token in line.split_whitespace() {
        let flag = token.trim_end_matches(',');
        if !is_flag(flag) {
            break;
        }
        flags.push(flag.to_string());
        if !token.ends_with(',') {
            break;
        }
    }
    flags
}

/// `-x` or `--long-name`: not `-1`, `-0.5`, `-----` or `-`.
fn is_flag(text: &str) -> bool {
    let name = text
        .strip_prefix("--")
        .or_else(|| text.strip_prefix('-'))
        .unwrap_or("");
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Trimmed from the real `llama-server --help` of b11434.
    const HELP: &str = include_str!("../../tests/fixtures/llama-server-b11434-help.txt");

    /// A directory holding a `llama-server` that is this shell script.
    fn fake_build(script: &str) -> (tempfile::TempDir, BuildRef) {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("llama-server");
        std::fs::write(&tool, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let build = BuildRef {
            name: "fake".into(),
            path: dir.path().to_path_buf(),
        };
        (dir, build)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn help_lists_every_alias_of_an_option() {
        let flags = KnownFlags::parse_help(HELP);
        for flag in [
            "-h",
            "--usage",
            "--version",
            "-ctk",
            "--cache-type-k",
            "-kvo",
            "-nkvo",
            "--no-kv-offload",
            "-nr",
            "--no-repack",
            "-lm",
            "--load-mode",
            "-ngl",
            "--n-gpu-layers",
            "-hfr",
            "--spec-draft-n-max",
            "--spec-type",
            "-no-kvu",
            "-np",
        ] {
            assert!(flags.knows(flag), "{flag} missing from {:?}", flags.0);
        }
    }

    /// llama-bench indents its entries by two spaces (b11434's `llama-bench --help`, trimmed).
    #[test]
    fn llama_bench_help_entries_are_indented_by_two() {
        let help = "usage: llama-bench [options]\n\noptions:\n  -h, --help\n  -r, --repetitions <n>                       number of times to repeat each test (default: 5)\n\ntest parameters:\n  -m, --model <filename>                            (default: models/7B/ggml-model-q4_0.gguf)\n  -hf, -hfr, --hf-repo <user>/<model>[:quant]       Hugging Face model repository\n                                                    -1 = default (default: unused)\n  -ctk, --cache-type-k <t>                          (default: f16)\n";
        let flags = KnownFlags::parse_help(help);
        for flag in [
            "-h",
            "--help",
            "-r",
            "-m",
            "--model",
            "-hfr",
            "-ctk",
            "--cache-type-k",
        ] {
            assert!(flags.knows(flag), "{flag} missing from {:?}", flags.0);
        }
        assert!(!flags.knows("-1"));
    }

    #[test]
    fn help_leaves_out_removed_options_headings_values_and_prose() {
        let flags = KnownFlags::parse_help(HELP);
        // `--no-mmproj` appears only inside another option's help text.
        for not_a_flag in [
            "--draft-max",
            "--draft",
            "--draft-n-min",
            "--no-mmproj",
            "-----",
            "N",
            "TYPE",
        ] {
            assert!(!flags.knows(not_a_flag), "{not_a_flag} should not be known");
        }
    }

    #[test]
    fn unknown_names_only_the_flags_the_build_lacks() {
        let flags = KnownFlags::parse_help(HELP);
        let args = strings(&[
            "-ctk",
            "q8_0",
            "--draft-max",
            "3",
            "-ngl",
            "-1",
            "--no-mmap",
            "--load-mode=none",
            "-np",
            "-0.5",
        ]);
        assert_eq!(flags.unknown(&args), ["--draft-max", "--no-mmap"]);
        assert!(KnownFlags::default().unknown(&args).is_empty());
    }

    #[test]
    fn identity_reads_version_devices_and_backends() {
        let (dir, build) = fake_build(
            r#"case "$1" in
  --version) echo "version: 0.6.0-dev (build 10798, commit 1a2b3c4)" >&2; echo "built with GNU 12.2.0 for Linux x86_64" >&2 ;;
  --list-devices) printf 'Available devices:\n  Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits) (7930 MiB, 7930 MiB free)\n' ;;
esac"#,
        );
        std::fs::write(dir.path().join("libggml-blas.so"), b"").unwrap();
        let identity = identify(&build, "llama-server").unwrap();
        assert_eq!(identity.build_number, Some(10798));
        assert_eq!(identity.commit.as_deref(), Some("1a2b3c4"));
        assert_eq!(
            identity.built_with.as_deref(),
            Some("built with GNU 12.2.0 for Linux x86_64")
        );
        assert_eq!(
            identity.devices,
            ["Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits) (7930 MiB)"]
        );
        assert_eq!(identity.backends, ["BLAS", "Vulkan"]);
        assert_eq!(identity.binary_sha256.len(), 64);
    }

    #[test]
    fn a_build_that_crashes_on_version_is_named_with_its_signal() {
        let (_dir, build) = fake_build("kill -SEGV $$");
        let error = identify(&build, "llama-server").unwrap_err().to_string();
        assert_eq!(
            error,
            "build fake: llama-server --version crashed (SIGSEGV)"
        );
    }

    #[test]
    fn a_build_that_prints_no_version_line_is_named_with_its_status() {
        let (_dir, build) = fake_build("echo 'error: unknown argument' >&2; exit 3");
        let error = identify(&build, "llama-server").unwrap_err().to_string();
        assert_eq!(
            error,
            "build fake: llama-server --version exited with status 3 and printed no version line"
        );
    }

    #[test]
    fn a_build_that_hangs_is_killed_after_the_limit() {
        let (_dir, build) = fake_build("sleep 60");
        let error = identify_within(&build, "llama-server", Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "build fake: llama-server --version did not finish within 0.2 s and was killed"
        );
    }

    #[test]
    fn a_build_without_the_tool_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let build = BuildRef {
            name: "old".into(),
            path: dir.path().to_path_buf(),
        };
        let error = identify(&build, "llama-server").unwrap_err().to_string();
        assert_eq!(
            error,
            format!("build old: no llama-server in {}", dir.path().display())
        );
        let missing = BuildRef::parse("gone=/nonexistent/llama.cpp/bin").unwrap();
        let error = identify(&missing, "llama-server").unwrap_err().to_string();
        assert_eq!(
            error,
            "build gone: /nonexistent/llama.cpp/bin: no such file or directory"
        );
    }

    #[test]
    fn a_help_that_crashes_or_lists_nothing_is_an_error() {
        let (dir, _) = fake_build("kill -ABRT $$");
        let tool = dir.path().join("llama-server");
        let error = KnownFlags::of(&tool).unwrap_err().to_string();
        assert!(
            error.ends_with("llama-server --help crashed (SIGABRT)"),
            "{error}"
        );
        let (dir, _) = fake_build("echo no options here");
        let error = KnownFlags::of(&dir.path().join("llama-server"))
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with("--help listed no options (exit status 0)"),
            "{error}"
        );
    }

    #[test]
    fn backends_come_from_library_names_and_device_names() {
        assert_eq!(library_backend("libggml-cuda.so").as_deref(), Some("CUDA"));
        assert_eq!(
            library_backend("libggml-cpu-haswell.so").as_deref(),
            Some("CPU")
        );
        assert_eq!(library_backend("libggml-hip.so.0").as_deref(), Some("ROCm"));
        assert_eq!(library_backend("libggml-base.so"), None);
        assert_eq!(library_backend("libllama.so"), None);
        assert_eq!(
            device_backend("CUDA0: NVIDIA H200 (143771 MiB, 140000 MiB free)"),
            "CUDA"
        );
        assert_eq!(
            device_backend("RPC[127.0.0.1:50052]: RPC (1 MiB, 1 MiB free)"),
            "RPC"
        );
    }

    #[test]
    fn a_symbol_split_across_two_read_windows_is_found() {
        // Regression guard for the window overlap: the marker straddles the 1 MiB boundary.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("binary");
        let mut bytes = vec![0u8; (1 << 20) - 8];
        bytes.extend_from_slice(b"ggml_backend_cuda_reg\0ggml_backend_cpu_reg_get_device\0");
        std::fs::write(&path, bytes).unwrap();
        let found = linked_backends(&path).unwrap();
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["CUDA"]);
    }
}
