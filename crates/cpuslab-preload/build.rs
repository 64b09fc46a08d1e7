//! Links libcpuslab.so with `-z now` (every symbol bound at load time: no lazy
//! binding, and so no dynamic-linker work, inside malloc) and `-z relro`. (No
//! version script: a cdylib exports only its `#[no_mangle] extern "C"` items,
//! which are the malloc API.)

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,relro");
}
