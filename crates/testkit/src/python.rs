//! Python tools from PyPI, pinned, each in a virtual environment of its own
//! under the cache directory (`$HOOKLINE_CACHE_DIR`, else
//! `~/.cache/hookline`): the official Standard Webhooks verifier, and the
//! AWS CLI that runs the LocalStack init hook against DynamoDB Local.
//!
//! Installed on first use, in place: a venv cannot be moved once made (its
//! entry-point scripts, `bin/aws` among them, name the interpreter by its
//! absolute path in their first line), so concurrent test processes take
//! turns under a lock file beside it instead of building in a staging
//! directory and renaming it. Needs `python3` (3.8+) with the `venv` module
//! and network access to PyPI the first time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Overrides the interpreter environments are made with (default
/// `python3`); the test container's reaper runs on it too.
pub(crate) const PYTHON_VAR: &str = "HOOKLINE_TEST_PYTHON";

/// One pinned tool and how to tell it is installed.
#[derive(Debug, Clone, Copy)]
pub struct PipTool {
    /// The environment's directory name in the cache; carries the version,
    /// so a new pin gets a new environment.
    pub cache_name: &'static str,
    /// The pip requirement, pinned (`name==version`).
    pub requirement: &'static str,
    /// Arguments to the environment's Python that succeed once the tool
    /// works (`-c "import x"`).
    pub probe: &'static [&'static str],
}

/// The AWS CLI (v1, the one on PyPI), which honours `AWS_ENDPOINT_URL`.
pub const AWS_CLI: PipTool = PipTool {
    cache_name: "python-awscli-1.46.3",
    requirement: "awscli==1.46.3",
    probe: &["-m", "awscli", "--version"],
};

impl PipTool {
    /// The tool's environment directory, made on first use (once per
    /// machine unless the cache is removed).
    pub fn install(&self) -> Result<PathBuf, String> {
        let python = std::env::var(PYTHON_VAR).unwrap_or_else(|_| "python3".to_owned());
        self.install_into(&dynamodb_local::cache_dir(), &python)
    }

    fn install_into(&self, cache: &Path, python: &str) -> Result<PathBuf, String> {
        let target = cache.join(self.cache_name);
        if self.works(&target) {
            return Ok(target);
        }
        let python_ok = Command::new(python)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !python_ok {
            return Err(format!(
                "`{python}` was not found: the tests need Python 3 with the venv module and pip \
                 (for example `apt-get install python3 python3-venv`), or set {PYTHON_VAR} to an interpreter"
            ));
        }
        std::fs::create_dir_all(cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
        // Held until this function returns; the OS drops it if we die.
        let lock_path = cache.join(format!("{}.lock", self.cache_name));
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
        if self.works(&target) {
            // Another process built it while we waited.
            return Ok(target);
        }
        let _ = std::fs::remove_dir_all(&target);
        if let Err(message) = self.build(python, &target) {
            let _ = std::fs::remove_dir_all(&target);
            return Err(message);
        }
        if self.works(&target) {
            Ok(target)
        } else {
            Err(format!(
                "{} does not work after installing {}",
                target.display(),
                self.requirement
            ))
        }
    }

    fn build(&self, python: &str, dir: &Path) -> Result<(), String> {
        let venv = Command::new(python)
            .args(["-m", "venv"])
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running `{python} -m venv`: {e}"))?;
        if !venv.status.success() {
            return Err(format!(
                "`{python} -m venv` failed; the venv module and ensurepip are needed \
                 (on Debian or Ubuntu: `apt-get install python3-venv`): {}",
                String::from_utf8_lossy(&venv.stderr).trim()
            ));
        }
        let pip = Command::new(venv_python(dir))
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                self.requirement,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running pip in {}: {e}", dir.display()))?;
        if !pip.status.success() {
            return Err(format!(
                "`pip install {}` failed (PyPI must be reachable the first time): {}",
                self.requirement,
                String::from_utf8_lossy(&pip.stderr).trim()
            ));
        }
        Ok(())
    }

    fn works(&self, venv: &Path) -> bool {
        let python = venv_python(venv);
        python.is_file()
            && scripts_name_this_venv(venv)
            && Command::new(&python)
                .arg("-I")
                .args(self.probe)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }
}

/// Whether the venv's entry-point scripts (`bin/pip`, which every venv has)
/// start their interpreter from this venv. One built elsewhere and moved
/// here (earlier releases of this harness did that) names the old place:
/// its Python works, its scripts do not.
fn scripts_name_this_venv(venv: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(venv.join("bin").join("pip")) else {
        return false;
    };
    let named = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("#!"))
        .and_then(|interpreter| Path::new(interpreter.trim()).parent())
        .and_then(|bin| std::fs::canonicalize(bin).ok());
    named.is_some() && named == std::fs::canonicalize(venv.join("bin")).ok()
}

/// The `bin` directory of the environment holding the AWS CLI (put it first
/// on `PATH` to run scripts that call `aws`), installed on first use.
pub fn aws_cli_bin() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| AWS_CLI.install().map(|venv| venv.join("bin")))
        .clone()
}

pub(crate) fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_python_says_what_to_install() {
        let cache = std::env::temp_dir().join(format!("hookline-no-python-{}", std::process::id()));
        let err = AWS_CLI
            .install_into(&cache, "/nonexistent/python3")
            .expect_err("no python");
        assert!(err.contains("apt-get install python3 python3-venv"), "{err}");
        assert!(!cache.join(AWS_CLI.cache_name).exists());
    }

    /// A venv's entry-point scripts name their interpreter by absolute path,
    /// so one built elsewhere and moved into place fails on a fresh cache
    /// (`bin/aws: cannot execute: required file not found`). pip ships with
    /// every venv, so this needs no download.
    #[test]
    fn the_entry_point_scripts_of_a_fresh_install_run() {
        let cache = tempfile::tempdir().expect("temp dir");
        let python = std::env::var(PYTHON_VAR).unwrap_or_else(|_| "python3".to_owned());
        let pip = PipTool {
            cache_name: "python-pip-only",
            requirement: "pip",
            probe: &["-m", "pip", "--version"],
        };
        let venv = pip.install_into(cache.path(), &python).expect("install");
        let script = venv.join("bin").join("pip");
        let out = Command::new(&script)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} --version: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // A second install finds it working and keeps it.
        assert_eq!(pip.install_into(cache.path(), &python).expect("again"), venv);

        // One moved into place from elsewhere (as this harness once staged
        // them) is not taken for working: it is built again, in place.
        let moved = PipTool {
            cache_name: "python-pip-moved",
            ..pip
        };
        std::fs::rename(&venv, cache.path().join(moved.cache_name)).expect("move the venv");
        let rebuilt = moved.install_into(cache.path(), &python).expect("install");
        let out = Command::new(rebuilt.join("bin").join("pip"))
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .expect("run pip");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
