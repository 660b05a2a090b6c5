//! A load-balancing test backend: `lb-backend NAME ADDR:PORT [DOWN_FILE]` (see
//! `lab::serve_backend`).

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(listen)) = (args.first(), args.get(1)) else {
        eprintln!("usage: lb-backend NAME ADDR:PORT [DOWN_FILE]");
        return std::process::ExitCode::from(2);
    };
    let Ok(listen) = listen.parse() else {
        eprintln!("lb-backend: {listen:?} is not ADDR:PORT");
        return std::process::ExitCode::from(2);
    };
    match lab::serve_backend(name, listen, args.get(2).map(Into::into)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-backend: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
