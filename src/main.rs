use clap::Parser;

fn main() {
    let cli = aisbf::cli::Cli::parse();
    std::process::exit(aisbf::app::run(cli));
}
