//! Dependency-free ELF64 (x86-64, little-endian) checker for the rseq
//! critical-section tables emitted by rseq-core's inline asm:
//!
//! * `__rseq_cs`: 32-byte `struct rseq_cs { u32 version; u32 flags;
//!   u64 start_ip; u64 post_commit_offset; u64 abort_ip; }` descriptors;
//! * `__rseq_cs_ptr_array`: one u64 address per descriptor;
//! * `__rseq_exit_point_array`: u64 `(start_ip, exit_ip)` pairs.
//!
//! Address fields are resolved the way the dynamic loader would: through an
//! `R_X86_64_RELATIVE` entry of an allocated `SHT_RELA` section (lld leaves
//! the on-disk bytes zero, GNU ld writes the value too), through `SHT_RELR`
//! packed relocations (the value stays in place), or from the bytes as-is in
//! a non-PIE executable. Include with
//! `#[path = "support/elf_tables.rs"] mod elf_tables;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

/// `ud1 0x53053053(%rip), %edi`: the bytes that must precede every abort_ip.
const SIGNATURE: [u8; 7] = [0x0f, 0xb9, 0x3d, 0x53, 0x30, 0x05, 0x53];
const DESCRIPTOR_SIZE: u64 = 32;
const MAX_POST_COMMIT_OFFSET: u64 = 4096;

const EM_X86_64: u16 = 62;
const ET_DYN: u16 = 3;
const SHT_RELA: u32 = 4;
const SHT_NOBITS: u32 = 8;
const SHT_RELR: u32 = 19;
const SHF_ALLOC: u64 = 0x2;
const SHF_EXECINSTR: u64 = 0x4;
const R_X86_64_RELATIVE: u32 = 8;

/// What a successful check covered.
#[derive(Debug)]
pub struct Report {
    /// Descriptors in `__rseq_cs`.
    pub descriptors: usize,
    /// `(start_ip, exit_ip)` pairs in `__rseq_exit_point_array`.
    pub exit_points: usize,
    /// Abort-signature bytes compared (7 per descriptor).
    pub failure_bytes_checked: usize,
}

/// Checks the rseq tables of the ELF file at `path`. Structural problems (not
/// an x86-64 ELF64, a missing section) fail at once; otherwise every failed
/// check is collected, one line each, naming the descriptor's address.
pub fn check_rseq_tables(path: &Path) -> Result<Report, String> {
    let mut fails = Vec::new();
    let checked = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|data| Elf::parse(&data)?.check(&mut fails));
    let report = checked.map_err(|e| format!("{}: {e}", path.display()))?;
    if fails.is_empty() {
        return Ok(report);
    }
    let (n, list) = (fails.len(), fails.join("\n  "));
    Err(format!(
        "{}: {n} rseq table check(s) failed:\n  {list}",
        path.display()
    ))
}

#[derive(Debug)]
struct Section {
    name: String,
    kind: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
}

impl Section {
    fn contains(&self, addr: u64) -> bool {
        self.contains_range(addr, 1)
    }

    /// Whether `[addr, addr + len)` lies inside the section.
    fn contains_range(&self, addr: u64, len: u64) -> bool {
        addr >= self.addr
            && (addr - self.addr)
                .checked_add(len)
                .is_some_and(|end| end <= self.size)
    }
}

/// How the loader fills an 8-byte field.
#[derive(Debug, Clone, Copy)]
enum Reloc {
    /// `R_X86_64_RELATIVE` with this addend (base 0).
    Relative(u64),
    /// A `SHT_RELR` entry: the value already sits in the file.
    Packed,
    /// Any other relocation type: not a plain link-time address.
    Other(u32),
}

struct Elf<'a> {
    data: &'a [u8],
    pie: bool,
    sections: Vec<Section>,
    relocs: HashMap<u64, Reloc>,
}

/// Reads `N` bytes at file offset `off`, or fails naming the offset.
fn bytes<const N: usize>(data: &[u8], off: u64) -> Result<[u8; N], String> {
    let start = usize::try_from(off).map_err(|_| format!("offset {off:#x} too large"))?;
    let slice = start.checked_add(N).and_then(|end| data.get(start..end));
    slice
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("file truncated at offset {off:#x}"))
}
fn u16_at(data: &[u8], off: u64) -> Result<u16, String> {
    bytes(data, off).map(u16::from_le_bytes)
}
fn u32_at(data: &[u8], off: u64) -> Result<u32, String> {
    bytes(data, off).map(u32::from_le_bytes)
}
fn u64_at(data: &[u8], off: u64) -> Result<u64, String> {
    bytes(data, off).map(u64::from_le_bytes)
}

impl<'a> Elf<'a> {
    /// Parses the ELF header, the section headers with their names, and the
    /// dynamic relocations.
    fn parse(data: &'a [u8]) -> Result<Self, String> {
        if data.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
            return Err("not a little-endian ELF64 file".into());
        }
        if u16_at(data, 18)? != EM_X86_64 {
            return Err("not an x86-64 ELF file".into());
        }
        let pie = u16_at(data, 16)? == ET_DYN;
        let (shoff, shentsize) = (u64_at(data, 0x28)?, u64::from(u16_at(data, 0x3a)?));
        let header = |i: u64, field: u64| shoff + i * shentsize + field;
        // Extended numbering: counts that do not fit live in section 0.
        let mut shnum = u64::from(u16_at(data, 0x3c)?);
        if shnum == 0 && shoff != 0 {
            shnum = u64_at(data, header(0, 32))?;
        }
        let mut shstrndx = u64::from(u16_at(data, 0x3e)?);
        if shstrndx == 0xffff {
            shstrndx = u64::from(u32_at(data, header(0, 40))?);
        }
        if shentsize != 64 || shstrndx == 0 || shstrndx >= shnum {
            return Err("no usable section headers or section-name table".into());
        }
        let strtab = u64_at(data, header(shstrndx, 24))?;
        let mut sections = Vec::new();
        for i in 0..shnum {
            // Names are NUL-terminated strings in the section-name table.
            let off = strtab + u64::from(u32_at(data, header(i, 0))?);
            let name = usize::try_from(off).ok().and_then(|off| data.get(off..));
            let name = name.and_then(|n| n.split(|&b| b == 0).next());
            sections.push(Section {
                name: String::from_utf8_lossy(name.ok_or("bad section name")?).into_owned(),
                kind: u32_at(data, header(i, 4))?,
                flags: u64_at(data, header(i, 8))?,
                addr: u64_at(data, header(i, 16))?,
                offset: u64_at(data, header(i, 24))?,
                size: u64_at(data, header(i, 32))?,
            });
        }
        let mut relocs = HashMap::new();
        for s in sections.iter().filter(|s| s.flags & SHF_ALLOC != 0) {
            if s.kind == SHT_RELA {
                // Elf64_Rela { r_offset, r_info, r_addend }, 24 bytes each.
                for e in (0..s.size / 24).map(|i| s.offset + i * 24) {
                    let kind = u64_at(data, e + 8)? as u32; // ELF64_R_TYPE
                    let reloc = match kind {
                        R_X86_64_RELATIVE => Reloc::Relative(u64_at(data, e + 16)?),
                        _ => Reloc::Other(kind),
                    };
                    relocs.insert(u64_at(data, e)?, reloc);
                }
            } else if s.kind == SHT_RELR {
                // An even word is an address (and moves the base past it); an
                // odd word is a bitmap over the next 63 words from the base.
                let mut base = 0;
                for e in (0..s.size / 8).map(|i| s.offset + i * 8) {
                    let word = u64_at(data, e)?;
                    if word & 1 == 0 {
                        relocs.insert(word, Reloc::Packed);
                        base = word + 8;
                    } else {
                        for bit in (1..64).filter(|bit| word >> bit & 1 != 0) {
                            relocs.insert(base + (bit - 1) * 8, Reloc::Packed);
                        }
                        base += 63 * 8;
                    }
                }
            }
        }
        Ok(Elf {
            data,
            pie,
            sections,
            relocs,
        })
    }

    fn section(&self, name: &str) -> Result<&Section, String> {
        let found = self.sections.iter().find(|s| s.name == name);
        found.ok_or_else(|| {
            let why = "no operation linked in, or --gc-sections dropped it: no \"R\" flag?";
            format!("section `{name}` is missing ({why})")
        })
    }

    /// The executable section holding `addr`, if any.
    fn exec_section(&self, addr: u64) -> Option<&Section> {
        let exec = SHF_ALLOC | SHF_EXECINSTR;
        self.sections
            .iter()
            .find(|s| s.flags & exec == exec && s.contains(addr))
    }

    /// File bytes at virtual address `addr`, from the section mapping it.
    fn read<const N: usize>(&self, addr: u64) -> Result<[u8; N], String> {
        let s = self.sections.iter().find(|s| {
            s.flags & SHF_ALLOC != 0 && s.kind != SHT_NOBITS && s.contains_range(addr, N as u64)
        });
        let s = s.ok_or_else(|| format!("address {addr:#x} (+{N}) is not file-backed"))?;
        bytes(self.data, s.offset + (addr - s.addr))
    }

    /// The value the loader leaves in the 8-byte address field at `addr`.
    fn address(&self, addr: u64) -> Result<u64, String> {
        match self.relocs.get(&addr) {
            Some(Reloc::Relative(addend)) => Ok(*addend),
            Some(Reloc::Packed) => self.read(addr).map(u64::from_le_bytes),
            Some(Reloc::Other(kind)) => Err(format!(
                "field at {addr:#x} has relocation type {kind}, not RELATIVE"
            )),
            None if self.pie => Err(format!(
                "field at {addr:#x} has no dynamic relocation in a PIE"
            )),
            None => self.read(addr).map(u64::from_le_bytes),
        }
    }

    /// Runs checks 2 to 6 on the tables, pushing each failure onto `fails`.
    fn check(&self, fails: &mut Vec<String>) -> Result<Report, String> {
        // `fail!(at; ...)` records a failure of the descriptor at `at`.
        macro_rules! fail {
            ($at:expr; $($msg:tt)+) => {
                fails.push(format!("descriptor at {:#x}: {}", $at, format_args!($($msg)+)))
            };
            ($($msg:tt)+) => { fails.push(format!($($msg)+)) };
        }
        let cs = self.section("__rseq_cs")?;
        let ptrs = self.section("__rseq_cs_ptr_array")?;
        let exits = self.section("__rseq_exit_point_array")?;
        if cs.addr % DESCRIPTOR_SIZE != 0 || cs.size % DESCRIPTOR_SIZE != 0 {
            return Err(format!(
                "__rseq_cs ({:#x}, {:#x} bytes) is misaligned",
                cs.addr, cs.size
            ));
        }
        if exits.size % 16 != 0 || ptrs.size % 8 != 0 {
            fail!("__rseq_cs_ptr_array or __rseq_exit_point_array ends mid-entry");
        }

        // Check 2: every pointer is a descriptor's address; count each one.
        let mut listed: HashMap<u64, usize> = HashMap::new();
        for field in (0..ptrs.size / 8).map(|i| ptrs.addr + i * 8) {
            match self.address(field) {
                Ok(p) if cs.contains(p) && (p - cs.addr) % DESCRIPTOR_SIZE == 0 => {
                    *listed.entry(p).or_default() += 1;
                }
                Ok(p) => fail!("__rseq_cs_ptr_array entry at {field:#x}: {p:#x} is no descriptor"),
                Err(e) => fail!("__rseq_cs_ptr_array: {e}"),
            }
        }

        let mut signature_bytes = 0;
        // (descriptor address, start_ip, start_ip + post_commit_offset)
        let mut ranges: Vec<(u64, u64, u64)> = Vec::new();
        for at in (0..cs.size / DESCRIPTOR_SIZE).map(|i| cs.addr + i * DESCRIPTOR_SIZE) {
            let times = listed.get(&at).copied().unwrap_or(0);
            if times != 1 {
                fail!(at; "listed {times} times in __rseq_cs_ptr_array, expected once");
            }
            let version = u32::from_le_bytes(self.read(at)?);
            let flags = u32::from_le_bytes(self.read(at + 4)?);
            let pco = u64::from_le_bytes(self.read(at + 16)?);
            let (start, abort) = match (self.address(at + 8), self.address(at + 24)) {
                (Ok(start), Ok(abort)) => (start, abort),
                (Err(e), _) | (_, Err(e)) => {
                    fail!(at; "{e}");
                    continue;
                }
            };
            let end = start.saturating_add(pco);

            // Check 3: header fields and code ranges.
            if version != 0 || flags != 0 {
                fail!(at; "version {version}, flags {flags:#x}; both must be 0");
            }
            if !(1..MAX_POST_COMMIT_OFFSET).contains(&pco) {
                fail!(at; "post_commit_offset {pco:#x} not in 1..{MAX_POST_COMMIT_OFFSET:#x}");
            }
            match self.exec_section(start) {
                Some(s) if end - s.addr <= s.size => {}
                Some(s) => fail!(at; "[{start:#x}, {end:#x}) runs out of `{}`", s.name),
                None => fail!(at; "start_ip {start:#x} is not in an executable section"),
            }
            if self.exec_section(abort).is_none() {
                fail!(at; "abort_ip {abort:#x} is not in an executable section");
            }
            if (start..end).contains(&abort) {
                fail!(at; "abort_ip {abort:#x} is inside [{start:#x}, {end:#x})");
            }

            // Check 4: the signature right before the abort handler.
            match abort
                .checked_sub(SIGNATURE.len() as u64)
                .map(|a| self.read::<7>(a))
            {
                Some(Ok(found)) => {
                    signature_bytes += SIGNATURE.len();
                    if found != SIGNATURE {
                        let want = SIGNATURE;
                        fail!(at; "bad signature before abort_ip {abort:#x}: {found:02x?}, \
                                   want {want:02x?}");
                    }
                }
                _ => fail!(at; "cannot read the signature before abort_ip {abort:#x}"),
            }

            // Check 6: no two descriptors guard the same code.
            if let Some(&(other, ..)) = ranges.iter().find(|r| r.1 == start) {
                fail!(at; "start_ip {start:#x} is also that of the descriptor at {other:#x}");
            }
            ranges.push((at, start, end));
        }

        // Check 5: each exit point leaves a known critical section.
        for pair in (0..exits.size / 16).map(|i| exits.addr + i * 16) {
            let (start, exit) = match (self.address(pair), self.address(pair + 8)) {
                (Ok(start), Ok(exit)) => (start, exit),
                (Err(e), _) | (_, Err(e)) => {
                    fail!("__rseq_exit_point_array: {e}");
                    continue;
                }
            };
            let Some(&(at, _, end)) = ranges.iter().find(|r| r.1 == start) else {
                fail!("exit point at {pair:#x}: no descriptor has start_ip {start:#x}");
                continue;
            };
            if (start..end).contains(&exit) {
                fail!(at; "exit_ip {exit:#x} (at {pair:#x}) is inside [{start:#x}, {end:#x})");
            }
            if self.exec_section(exit).is_none() {
                fail!(at; "exit_ip {exit:#x} (at {pair:#x}) is not in an executable section");
            }
        }
        Ok(Report {
            descriptors: (cs.size / DESCRIPTOR_SIZE) as usize,
            exit_points: (exits.size / 16) as usize,
            failure_bytes_checked: signature_bytes,
        })
    }
}

/// Checks the checker on tiny C programs that emit one descriptor the way
/// rseq-core does; each test is skipped, with a note, where `cc` is missing.
#[cfg(test)]
mod fixture_tests {
    use super::check_rseq_tables;
    use std::path::PathBuf;
    use std::process::Command;

    /// One critical section [1, 2) with an exit point to 5 and its abort
    /// handler 4 in `__rseq_failure`; the -D macros break one thing each.
    const FIXTURE: &str = r#"
#define STR_(x) #x
#define STR(x) STR_(x)
#ifndef SIG
#define SIG 0x53053053
#endif
#ifndef FLAGS
#define FLAGS 0
#endif
#ifndef EXIT
#define EXIT 5f
#endif
int main(void) {
    int x = 0;
    __asm__ volatile(
        ".pushsection __rseq_cs, \"aw\"\n\t"
        ".balign 32\n\t"
        "3: .long 0, " STR(FLAGS) "\n\t"
        ".quad 1f, (2f - 1f), 4f\n\t"
        ".popsection\n\t"
        ".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"
        ".quad 3b\n\t"
        ".popsection\n\t"
        ".pushsection __rseq_exit_point_array, \"aw\"\n\t"
        ".quad 1f, " STR(EXIT) "\n\t"
        ".popsection\n\t"
        "1: cmpl $0, %0\n\t"
        "jne 5f\n\t"
        "6: addl $1, %0\n\t"
        "2:\n\t"
        ".pushsection __rseq_failure, \"ax\"\n\t"
        ".byte 0x0f, 0xb9, 0x3d\n\t"
        ".long " STR(SIG) "\n\t"
        "4: jmp 5f\n\t"
        ".popsection\n\t"
        "5:\n\t"
        : "+m"(x));
    return x - 1;
}
"#;

    /// Builds the fixture with `flags` into a fresh temporary directory.
    /// `None` (after a note) when `cc` cannot run, or when the build fails
    /// and `optional` says the flags may be unsupported here.
    fn build(tag: &str, flags: &[&str], optional: bool) -> Option<PathBuf> {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("rseq-elf-tables-{pid}-{tag}"));
        std::fs::create_dir_all(&dir).expect("create the fixture directory");
        let (src, exe) = (dir.join("fixture.c"), dir.join("fixture"));
        std::fs::write(&src, FIXTURE).expect("write the fixture source");
        let mut cc = Command::new("cc");
        cc.args(["-O1", "-fPIE", "-pie"])
            .args(flags)
            .arg(&src)
            .arg("-o")
            .arg(&exe);
        let out = match cc.output() {
            Ok(out) => out,
            Err(e) => {
                println!("note: skipping the {tag} fixture, cannot run cc: {e}");
                return None;
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        match (out.status.success(), optional) {
            (true, _) => Some(exe),
            (false, true) => {
                println!("note: skipping the {tag} fixture, cc {flags:?} failed: {stderr}");
                None
            }
            (false, false) => panic!("cc {flags:?} failed on the {tag} fixture: {stderr}"),
        }
    }

    /// Builds, checks and cleans up one fixture.
    fn check(tag: &str, flags: &[&str], optional: bool) -> Option<Result<super::Report, String>> {
        let exe = build(tag, flags, optional)?;
        let result = check_rseq_tables(&exe);
        println!("{tag} fixture: {result:?}");
        if let Some(dir) = exe.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        Some(result)
    }

    fn sysroot_lld_dir() -> Option<String> {
        let out = Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .ok()?;
        let sysroot = String::from_utf8(out.stdout).ok()?;
        Some(format!(
            "-B{}/lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld",
            sysroot.trim()
        ))
    }

    #[test]
    fn valid_fixtures_pass() {
        let lld = sysroot_lld_dir().unwrap_or_default();
        let variants: [(&str, &[&str], bool); 4] = [
            ("pie", &[], false),
            ("no-pie", &["-fno-PIE", "-no-pie"], false),
            ("relr", &["-Wl,-z,pack-relative-relocs"], true),
            ("lld", &["-fuse-ld=lld", &lld], true),
        ];
        for (tag, flags, optional) in variants {
            let Some(result) = check(tag, flags, optional) else {
                continue;
            };
            let report = result.unwrap_or_else(|e| panic!("{tag} fixture rejected: {e}"));
            assert_eq!((report.descriptors, report.exit_points), (1, 1), "{tag}");
            assert_eq!(report.failure_bytes_checked, 7, "{tag}");
        }
    }

    #[test]
    fn broken_fixtures_fail() {
        let variants = [
            (
                "bad-signature",
                "-DSIG=0x53053054",
                "bad signature before abort_ip",
            ),
            ("bad-flags", "-DFLAGS=1", "flags 0x1"),
            ("bad-exit", "-DEXIT=6f", "is inside ["),
            (
                "gc-sections",
                "-Wl,--gc-sections",
                "section `__rseq_cs` is missing",
            ),
        ];
        for (tag, flag, expected) in variants {
            let Some(result) = check(tag, &[flag], false) else {
                return;
            };
            let err = result.expect_err(tag);
            assert!(err.contains(expected), "{tag}: {err:?} lacks {expected:?}");
            let named = err.contains("descriptor at 0x") || tag == "gc-sections";
            assert!(named, "{tag}: {err:?} names no descriptor");
        }
    }
}
