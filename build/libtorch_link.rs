//! Shared build script of every package that links libtorch (engine, worker,
//! server): gives its binaries and tests an rpath to the libtorch that
//! torch-sys found, so they run without LD_LIBRARY_PATH, and keeps the CUDA
//! library linked even though no symbol of it is referenced directly (without
//! `--no-as-needed` the linker drops it and CUDA silently disappears).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let dir = std::path::Path::new(&lib);
    if dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
