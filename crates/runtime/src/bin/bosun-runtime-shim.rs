//! Stand-alone shim executable (tests; the bosun binary dispatches its
//! hidden shim subcommand to the same [`bosun_runtime::shim_main`]).

fn main() {
    bosun_runtime::shim_main(std::env::args_os().skip(1).collect())
}
