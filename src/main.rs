use std::process::ExitCode;

fn main() -> ExitCode {
    let status = rehearsal::cli::run(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(status)
}
