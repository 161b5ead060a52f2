//! Puts torch's library folder into the `mer` binary's rpath (when built with the `worker` feature), so
//! that it runs with no LD_LIBRARY_PATH. torch-sys exports that folder as DEP_TCH_LIBTORCH_LIB.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
