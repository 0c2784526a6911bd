//! Builds the C shim of the DPDK transport when the `dpdk` feature is on; does nothing
//! otherwise, so that the crate builds on machines without DPDK.

fn main() {
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::process::Command;

    const SHIM: &str = "csrc/rehearsal_dpdk.c";

    /// Compiles the shim with DPDK's own compiler flags and links DPDK dynamically.
    pub fn build() {
        println!("cargo:rerun-if-changed={SHIM}");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");
        let cflags = pkg_config("--cflags");
        let libs = pkg_config("--libs");

        let mut shim = cc::Build::new();
        shim.file(SHIM);
        // Verbatim and in order: the flags include `-include rte_config.h`, and the
        // `-march` DPDK was built for, which its inline functions assume.
        for flag in cflags.split_whitespace() {
            shim.flag(flag);
        }
        // rte_thread_register is still marked experimental in DPDK 22.11.
        shim.define("ALLOW_EXPERIMENTAL_API", None);
        shim.warnings(true);
        shim.compile("rehearsal_dpdk");

        // After the shim, so that the linker sees the shim's references to DPDK first.
        let mut tokens = libs.split_whitespace();
        while let Some(token) = tokens.next() {
            if let Some(dir) = token.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            } else if let Some(lib) = token.strip_prefix("-l") {
                println!("cargo:rustc-link-lib=dylib={lib}");
            } else if token == "-pthread" || token.starts_with("-Wl,") {
                println!("cargo:rustc-link-arg={token}");
            } else if token == "-Xlinker" {
                if let Some(arg) = tokens.next() {
                    println!("cargo:rustc-link-arg=-Wl,{arg}");
                }
            }
        }
        // `rte_eth_from_rings` lives in the ring driver, which `libdpdk.pc` leaves out
        // (drivers are plugins, loaded by the EAL at run time).
        println!("cargo:rustc-link-lib=dylib=rte_net_ring");
        println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");
    }

    fn pkg_config(what: &str) -> String {
        let failure = match Command::new("pkg-config").args([what, "libdpdk"]).output() {
            Ok(output) if output.status.success() => {
                return String::from_utf8_lossy(&output.stdout).trim().to_owned();
            }
            Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            Err(error) => format!("cannot run pkg-config: {error}"),
        };
        eprintln!(
            "error: the `dpdk` feature of rehearsal-hardware needs DPDK's development files, \
             but `pkg-config {what} libdpdk` failed: {failure}\n\
             Install them (Debian/Ubuntu: `apt-get install -y libdpdk-dev pkg-config`), \
             or point PKG_CONFIG_PATH at the directory holding libdpdk.pc, \
             or build without `--features dpdk`."
        );
        std::process::exit(1);
    }
}
