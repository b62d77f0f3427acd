// glibc's malloc took a sixth of the client's CPU at a thousand streams (per-request
// bodies, chunks and headers freed on another thread than they were made on), and
// musl's, in the container's static build, is slower still; mimalloc's thread-local
// heaps make those allocations cheap. In the binary only: the library leaves the
// choice to whoever links it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(turnbench::cli::main());
}
