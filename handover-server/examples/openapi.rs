//! Prints the service's OpenAPI 3.1 document (`cargo xtask openapi` writes it to
//! `handover-server/openapi.json`).

#![allow(clippy::print_stdout)]

fn main() {
    print!("{}", handover_server::openapi::document());
}
