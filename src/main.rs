use std::process::ExitCode;

fn main() -> ExitCode {
    // The process ends when the command returns: what it built need not be freed first.
    rehearsal::cli::exits_after_run();
    // Unlocked handles: a command's helper threads may write too, and must not block.
    let status = rehearsal::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(status)
}
