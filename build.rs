//! Copies uap-core's `regexes.yaml`, which the `ua-parser` crate's published package carries,
//! into OUT_DIR so the binary embeds exactly the rules of the locked crate version.
//! (The crate deliberately ships no loader; see its docs.)

use std::path::PathBuf;

fn main() -> Result<(), String> {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed=RAMPART_UAP_REGEXES");
    let out_dir = std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    let out = PathBuf::from(out_dir).join("uap-regexes.yaml");
    let source = std::env::var_os("RAMPART_UAP_REGEXES")
        .map(PathBuf::from)
        .or_else(find_in_registry)
        .ok_or(
            "cannot find ua-parser's uap-core/regexes.yaml; set RAMPART_UAP_REGEXES to its path",
        )?;
    std::fs::copy(&source, &out).map_err(|e| format!("copy {}: {e}", source.display()))?;
    Ok(())
}

fn find_in_registry() -> Option<PathBuf> {
    let lock = std::fs::read_to_string("Cargo.lock").ok()?;
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"ua-parser\""))?
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))?
        .trim_end_matches('"')
        .to_owned();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let src = cargo_home.join("registry").join("src");
    std::fs::read_dir(src).ok()?.flatten().find_map(|index| {
        let p = index
            .path()
            .join(format!("ua-parser-{version}"))
            .join("uap-core")
            .join("regexes.yaml");
        p.exists().then_some(p)
    })
}
