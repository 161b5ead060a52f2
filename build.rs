//! Puts torch's library folder into the `mer` binary's rpath (when built with the `worker` feature), so
//! that it runs with no LD_LIBRARY_PATH. torch-sys exports that folder as DEP_TCH_LIBTORCH_LIB. Also records
//! the commit the binary is built from (`mer --version`), `unknown` outside a git checkout.
fn main() {
    commit();
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}

/// Sets MER_GIT_COMMIT to the checkout's HEAD commit (short), rebuilding when HEAD moves.
fn commit() {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    let commit = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=MER_GIT_COMMIT={commit}");
    if let Ok(o) = std::process::Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
    {
        let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && !dir.is_empty() {
            println!("cargo:rerun-if-changed={dir}/HEAD");
            println!("cargo:rerun-if-changed={dir}/refs/heads");
            println!("cargo:rerun-if-changed={dir}/packed-refs");
        }
    }
}
