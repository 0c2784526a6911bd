use std::process::ExitCode;

fn main() -> ExitCode {
    // Unlocked handles: a command's helper threads may write too, and must not block.
    let status = rehearsal::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(status)
}
