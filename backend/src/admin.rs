//! `hearth admin …`: what an operator does straight on the database, before
//! anyone can log in (the first admin) or when nobody can.

use std::io::BufRead as _;

use clap::{Parser, Subcommand};
use hearth_runtime::Clock;

use crate::{
    access,
    domain::{HomeId, Role, Username},
    settings::DEFAULT_DATABASE_URL,
    storage,
};

#[derive(Debug, Parser)]
#[command(
    name = "hearth admin",
    about = "Administration straight on Hearth's database"
)]
struct AdminCli {
    /// The database Hearth uses.
    #[arg(long, env = "HEARTH_DATABASE_URL", hide_env_values = true,
        default_value = DEFAULT_DATABASE_URL)]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates a user with a role in a home (the home too, if missing),
    /// reading the password (at least 12 characters) from the first line of
    /// standard input. For an existing user, only the role changes.
    CreateUser {
        username: String,
        #[arg(long)]
        home: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "admin", value_parser = role)]
        role: Role,
    },
}

fn role(value: &str) -> Result<Role, String> {
    Role::parse(value)
        .filter(|r| *r != Role::Ingest)
        .ok_or_else(|| format!("{value:?} is not viewer, operator or admin"))
}

/// Runs `hearth admin ARGS…`.
pub async fn run(args: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    let cli = AdminCli::parse_from(std::iter::once("hearth admin".to_owned()).chain(args));
    match cli.command {
        Command::CreateUser {
            username,
            home,
            role,
        } => {
            let user = Username::parse(&username, "USERNAME")?;
            let home = HomeId::parse(&home, "--home")?;
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']);
            let storage = storage::connect(&cli.database_url).await?;
            access::add_user(&storage, &user, password, &home, role, &Clock::system()).await?;
            println!("user {user} is {role} of home {home}");
            Ok(())
        }
    }
}
