//! Links libcpuslab.so with `-z now` (every symbol bound at load time: no lazy
//! binding, and so no dynamic-linker work, inside malloc) and `-z relro`. That is
//! all it does. No version script of ours: for a cdylib, rustc passes the linker
//! its own, which exports only the `#[no_mangle] extern "C"` items (the malloc
//! API in `src/api.rs` and `src/info.rs`) and hides every Rust symbol; the
//! exported symbols carry no version (`nm -D --defined-only` lists exactly those).

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,relro");
}
