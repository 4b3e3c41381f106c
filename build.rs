//! Bundles the power's steering guides (`steering/*.md`) into the binary.
//!
//! The documentation tools fall back to these guides when the knowledge server cannot be
//! reached, and the MCP resources serve them. The set of guides keeps growing, so the
//! folder is enumerated here rather than listed by hand: this writes
//! `$OUT_DIR/steering_guides.rs`, a sorted array of `(name, include_str!(path))`, which
//! `src/knowledge/guides.rs` includes.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dir = root.join("steering");
    // A directory here makes cargo re-run the script when any file in it changes,
    // including a guide being added or removed.
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut guides: Vec<(String, PathBuf)> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "md"))
            .filter_map(|p| {
                let name = p.file_stem()?.to_str()?.to_owned();
                Some((name, p))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    guides.sort();

    let mut out = String::from("&[\n");
    for (name, path) in &guides {
        writeln!(
            out,
            "    ({name:?}, include_str!({path:?})),",
            path = path.display().to_string()
        )
        .expect("writing to a String");
    }
    out.push(']');
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"))
        .join("steering_guides.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
