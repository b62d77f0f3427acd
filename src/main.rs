fn main() {
    std::process::exit(turnbench::cli::main());
}
