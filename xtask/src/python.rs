//! Python tools from PyPI in their own virtual environments: the Python original for the bench,
//! schemathesis for CI's API conformance run.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::util::{Error, Result, display, quiet_output, run};

/// Creates the venv `dir` if needed and installs `package` (`name==version`) into it unless that
/// version is there already; returns the venv's python. Each command run is pushed on `commands`.
pub(crate) fn ensure_venv(
    dir: &Path,
    package: &str,
    commands: &mut Vec<String>,
) -> Result<PathBuf> {
    let python = dir.join("bin/python");
    if !python.is_file() {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv"]).arg(dir);
        commands.push(display(&cmd));
        run(&mut cmd)
            .map_err(|e| Error::new(format!("{e} (is python3 with the venv module installed?)")))?;
    }
    let (name, wanted) = package.split_once("==").unwrap_or((package, ""));
    let installed = quiet_output(Command::new(&python).args([
        "-c",
        &format!("import importlib.metadata as m; print(m.version({name:?}))"),
    ]));
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "-q",
        package,
    ]);
    commands.push(display(&cmd));
    if installed.as_deref() == Some(wanted) {
        println!("{package} is already installed in {}", dir.display());
    } else {
        run(&mut cmd).map_err(|e| Error::new(format!("{e} (is PyPI reachable?)")))?;
    }
    Ok(python)
}
