//! Compiles llama-sys's two shims:
//!
//! - `src/mmap_shim.c` (64-bit Linux): the `mmap` interposer. llama.cpp maps models with
//!   `MAP_POPULATE`; a streaming load must not fault the whole file in. `-Wl,--wrap=mmap` would do
//!   it too, but a build script's `rustc-link-arg` only reaches this package's own binaries and
//!   tests, not the binaries of crates that depend on it. A strong `mmap` definition in an object
//!   of this crate's static library reaches every binary that links it.
//! - `src/buffers_shim.cpp`: C entry points for llama.cpp's C++-only memory breakdown and for the
//!   CPU backend's extra weight buffer types. It includes llama.cpp's headers from the source tree
//!   llama-cpp-sys-2 built, found through the CMake cache of that build.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src/mmap_shim.c");
    println!("cargo:rerun-if-changed=src/buffers_shim.cpp");
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
    let source = llama_cpp_source().unwrap_or_else(|why| {
        panic!("llama-sys: cannot find the llama.cpp source tree that llama-cpp-sys-2 built: {why}")
    });
    cc::Build::new()
        .cpp(true)
        .file("src/buffers_shim.cpp")
        .include(source.join("include"))
        .include(source.join("ggml/include"))
        .include(source.join("src"))
        .flag_if_supported("-std=c++17")
        .warnings(true)
        .pic(true)
        .compile("llama_rs_buffers_shim");
}

/// The llama.cpp source directory of llama-cpp-sys-2's CMake build: its build script exports
/// `<out>/lib/cmake` as `DEP_LLAMA_GGML_CMAKE_DIR`, and `<out>/build/CMakeCache.txt` records the
/// source directory as `CMAKE_HOME_DIRECTORY`.
fn llama_cpp_source() -> Result<PathBuf, String> {
    let cmake_dir = std::env::var("DEP_LLAMA_GGML_CMAKE_DIR")
        .map_err(|_| "DEP_LLAMA_GGML_CMAKE_DIR is not set".to_string())?;
    let out = Path::new(&cmake_dir)
        .ancestors()
        .nth(2)
        .ok_or_else(|| format!("{cmake_dir} has no build directory above it"))?;
    let cache = out.join("build").join("CMakeCache.txt");
    let text = std::fs::read_to_string(&cache)
        .map_err(|e| format!("cannot read {}: {e}", cache.display()))?;
    let home = text
        .lines()
        .find_map(|line| line.strip_prefix("CMAKE_HOME_DIRECTORY:INTERNAL="))
        .ok_or_else(|| format!("{} has no CMAKE_HOME_DIRECTORY", cache.display()))?;
    let source = PathBuf::from(home.trim());
    if !source.join("src").join("llama-ext.h").is_file() {
        return Err(format!("{} has no src/llama-ext.h", source.display()));
    }
    println!("cargo:rerun-if-changed={}", cache.display());
    Ok(source)
}
