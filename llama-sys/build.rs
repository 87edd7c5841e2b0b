//! Compiles the `mmap` interposer (src/mmap_shim.c) on 64-bit Linux.
//!
//! llama.cpp maps models with `MAP_POPULATE`; a streaming load must not fault the whole file in.
//! `-Wl,--wrap=mmap` would do it too, but a build script's `rustc-link-arg` only reaches this
//! package's own binaries and tests, not the binaries of crates that depend on it. A strong `mmap`
//! definition in an object of this crate's static library reaches every binary that links it.

fn main() {
    println!("cargo:rerun-if-changed=src/mmap_shim.c");
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let width = std::env::var("CARGO_CFG_TARGET_POINTER_WIDTH").unwrap_or_default();
    println!("cargo::rustc-check-cfg=cfg(llama_rs_mmap_shim)");
    if os == "linux" && width == "64" {
        cc::Build::new()
            .file("src/mmap_shim.c")
            .warnings(true)
            .compile("llama_rs_mmap_shim");
        println!("cargo:rustc-cfg=llama_rs_mmap_shim");
    }
}
