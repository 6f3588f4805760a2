//! Builds libzmq 4.3.5 from the `zeromq-src` crate's source with the patches in `patches/`.
//!
//! Why not `zeromq_src::Build`: it compiles from its own directory, so there is no way to
//! patch the source first. This script copies that source into OUT_DIR, applies every
//! `patches/*.patch` (in name order, with `diffy`, so no `patch`/`git` is needed), and
//! compiles it with the settings `zeromq-src` 0.3.6 uses on Linux, macOS and FreeBSD, plus
//! CURVE on libsodium.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// The `zeromq-src` release whose libzmq the patches apply to (pinned with `=` in Cargo.toml).
const ZEROMQ_SRC: &str = "zeromq-src-0.3.6+4.3.5";
/// Overrides where that crate's source is (for `cargo vendor` or unusual cargo homes).
const SRC_ENV: &str = "PIRATE_ZEROMQ_SRC_DIR";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=patches");
    println!("cargo:rerun-if-env-changed={SRC_ENV}");

    let vendor = zeromq_src_dir().join("vendor");
    let source = out.join("libzmq");
    copy_source(&vendor, &source);
    apply_patches(&manifest.join("patches"), &source);
    compile(&source, &out);
}

/// The unpacked `zeromq-src` crate. It is a build-dependency, so cargo has downloaded and
/// unpacked it before running this script; cargo only does not say where. Registry crates
/// are unpacked to `$CARGO_HOME/registry/src/<index>/<name>-<version>`.
fn zeromq_src_dir() -> PathBuf {
    if let Some(dir) = env::var_os(SRC_ENV) {
        return PathBuf::from(dir);
    }
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("neither CARGO_HOME nor HOME is set");
    let registry = cargo_home.join("registry").join("src");
    let found = fs::read_dir(&registry).ok().and_then(|indexes| {
        indexes
            .filter_map(Result::ok)
            .map(|index| index.path().join(ZEROMQ_SRC))
            .find(|dir| dir.join("vendor/src/router.cpp").is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{ZEROMQ_SRC} not found under {}: set {SRC_ENV} to the directory holding it",
            registry.display()
        )
    })
}

/// Copies what the build reads (headers, sources, the bundled SHA-1) into `to`, afresh.
fn copy_source(vendor: &Path, to: &Path) {
    if to.exists() {
        fs::remove_dir_all(to).unwrap();
    }
    for part in ["include", "src", "external/sha1"] {
        copy_dir(&vendor.join(part), &to.join(part));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Applies each `*.patch` (unified diff, paths `a/…` `b/…` relative to libzmq's root).
/// A patch that does not apply fails the build: it was written for another source.
fn apply_patches(dir: &Path, source: &Path) {
    use diffy::patch_set::{FileOperation, ParseOptions, PatchSet};
    let mut patches: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    patches.sort();
    for patch in patches {
        let text = fs::read_to_string(&patch).unwrap();
        for file in PatchSet::parse(&text, ParseOptions::unidiff()) {
            let file = file.unwrap_or_else(|e| panic!("{}: {e}", patch.display()));
            let path = match file.operation().strip_prefix(1) {
                FileOperation::Modify { modified, .. } => modified.into_owned(),
                other => panic!("{}: only modifies files, not {other:?}", patch.display()),
            };
            let hunks = file.patch().as_text().expect("text patches only");
            let target = source.join(&path);
            let before = fs::read_to_string(&target).unwrap();
            let after = diffy::apply(&before, hunks)
                .unwrap_or_else(|e| panic!("{} does not apply to {path}: {e}", patch.display()));
            fs::write(&target, after).unwrap();
        }
    }
}

/// Compiles libzmq as `zeromq-src` 0.3.6 does (`Build::build`), minus Windows.
fn compile(source: &Path, out: &Path) {
    let target = env::var("TARGET").unwrap();
    let src = source.join("src");

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .define("ZMQ_BUILD_TESTS", "OFF")
        .include(source.join("include"))
        .include(&src)
        .include(out) // the empty platform.hpp: every setting is a -D below
        .warnings(false);
    fs::write(out.join("platform.hpp"), "").unwrap();

    // CURVE on libsodium (not libzmq's unaudited tweetnacl); the libsodium-sys-stable
    // dependency built it and links it.
    let sodium = env::var("DEP_SODIUM_INCLUDE").expect("libsodium-sys-stable gives its headers");
    build
        .include(sodium)
        .define("ZMQ_USE_LIBSODIUM", "1")
        .define("ZMQ_HAVE_CURVE", "1");

    // Every source but the WSS transport, which needs GnuTLS (as zeromq-src).
    let mut files: Vec<PathBuf> = fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cpp"))
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with("wss_"))
        .collect();
    files.sort();
    build.files(files);
    build.file(source.join("external/sha1/sha1.c"));

    for define in [
        "ZMQ_USE_CV_IMPL_STL11",
        "ZMQ_STATIC",
        "ZMQ_USE_BUILTIN_SHA1",
        "ZMQ_HAVE_WS",
        "ZMQ_POLL_BASED_ON_POLL",
        "ZMQ_HAVE_IPC",
        "HAVE_STRNLEN",
        "ZMQ_HAVE_UIO",
        "ZMQ_HAVE_STRUCT_SOCKADDR_UN",
    ] {
        build.define(define, "1");
    }
    let has_strlcpy;
    if target.contains("linux") {
        build.define("ZMQ_HAVE_LINUX", "1");
        build.define("ZMQ_IOTHREAD_POLLER_USE_EPOLL", "1");
        // What libzmq's CMake finds on every Linux since 2.6.27 and zeromq-src leaves out
        // (its platform.hpp is empty). eventfd: a thread wakes another by bumping a counter,
        // not by sending a byte through a socket pair, on every hand-off between a socket's
        // application thread and its I/O thread. CLOEXEC and accept4: libzmq's descriptors
        // are closed in `--exec` children atomically, with no window after fork. Keepalive
        // options: ZMQ_TCP_KEEPALIVE_* take effect instead of being ignored. SO_PEERCRED:
        // IPC peer credentials. getifaddrs and if_nametoindex: interface names in endpoints.
        for define in [
            "ZMQ_HAVE_EVENTFD",
            "ZMQ_HAVE_EVENTFD_CLOEXEC",
            "ZMQ_HAVE_SOCK_CLOEXEC",
            "ZMQ_HAVE_O_CLOEXEC",
            "HAVE_ACCEPT4",
            "HAVE_CLOCK_GETTIME",
            "ZMQ_HAVE_SO_KEEPALIVE",
            "ZMQ_HAVE_TCP_KEEPCNT",
            "ZMQ_HAVE_TCP_KEEPIDLE",
            "ZMQ_HAVE_TCP_KEEPINTVL",
            "ZMQ_HAVE_SO_PEERCRED",
            "ZMQ_HAVE_IFADDRS",
            "HAVE_IF_NAMETOINDEX",
        ] {
            build.define(define, "1");
        }
        has_strlcpy = target.contains("android") || target.contains("musl");
    } else if target.contains("apple") || target.contains("freebsd") {
        build.define("ZMQ_IOTHREAD_POLLER_USE_KQUEUE", "1");
        has_strlcpy = true;
    } else {
        panic!("pirate's libzmq build supports Linux, macOS and FreeBSD, not {target}");
    }
    // glibc gained strlcpy in 2.38; libzmq must not define its own then.
    if has_strlcpy || compiles(out, "strlcpy", STRLCPY_PROBE, false) {
        build.define("ZMQ_HAVE_STRLCPY", "1");
    }
    if compiles(out, "cxx11", "int main(void) { return 0; }\n", true) {
        build.std("c++11");
    }

    let lib_dir = out.join("lib");
    build.out_dir(&lib_dir);
    build.compile("zmq");

    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=static=zmq");
    println!("cargo:include={}", source.join("include").display());
    println!("cargo:lib={}", lib_dir.display());
    println!("cargo:out={}", out.display());
}

const STRLCPY_PROBE: &str = "#include <string.h>\n\
    int main() { char buf[1]; (void)strlcpy(buf, \"a\", 1); return 0; }\n";

/// Whether `program` compiles and links (as C, or as C++11 when `cxx11`).
fn compiles(out: &Path, name: &str, program: &str, cxx11: bool) -> bool {
    let file = out.join(format!("probe_{name}.c"));
    fs::write(&file, program).unwrap();
    let mut probe = cc::Build::new();
    probe.warnings(false);
    if cxx11 {
        probe
            .cpp(true)
            .warnings(true)
            .warnings_into_errors(true)
            .std("c++11");
    }
    probe
        .get_compiler()
        .to_command()
        .arg(&file)
        .arg("-o")
        .arg(out.join(format!("probe_{name}")))
        .status()
        .is_ok_and(|s| s.success())
}
