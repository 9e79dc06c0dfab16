//! `kimaki completions <shell>`

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::output::{exit, Failure};
use super::Cli;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  kimaki completions bash > ~/.local/share/bash-completion/completions/kimaki\n  kimaki completions zsh > \"${fpath[1]}/_kimaki\"\n  kimaki completions fish > ~/.config/fish/completions/kimaki.fish"
)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: &CompletionsArgs) -> Result<u8, Failure> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "kimaki", &mut std::io::stdout());
    Ok(exit::OK)
}
