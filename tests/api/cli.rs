//! The command line documents itself: every flag and environment variable that
//! `--help` shows is in `docs/configuration.md`, with its default, and the other
//! way round.

use std::collections::BTreeSet;

use crate::helpers::BINARY;
const CONFIGURATION: &str = include_str!("../../docs/configuration.md");

fn help(args: &[&str]) -> String {
    let output = std::process::Command::new(BINARY)
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{args:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The `--long-flags` and `[env: NAME=]` variables a help text names.
fn named(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let flags = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == '`' || c == '|')
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| {
            word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .split('=')
                .next()
                .unwrap()
                .to_owned()
        })
        .filter(|flag| flag != "--help" && flag != "--version")
        .collect();
    let envs = text
        .match_indices("env: ")
        .map(|(at, _)| text[at + 5..].split(['=', ']']).next().unwrap().to_owned())
        .collect();
    (flags, envs)
}

/// The text of the section under `heading`, up to the next `## ` heading.
fn section<'a>(document: &'a str, heading: &str) -> &'a str {
    document
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("docs/configuration.md has a section {heading}"))
}

/// The table rows (`| ...`) of a section.
fn rows(section: &str) -> Vec<&str> {
    section
        .lines()
        .filter(|line| line.starts_with("| "))
        .collect()
}

/// Whether a help line starts an option (`  -h, --help`, `      --role <ROLE>`),
/// rather than continuing one (its description, `- all: ...` values are indented
/// further).
fn starts_option(line: &str) -> bool {
    let indent = line.len() - line.trim_start().len();
    (1..=6).contains(&indent) && line.trim_start().starts_with('-')
}

/// The help text of one flag: its line and the lines that continue it.
fn block(help: &str, flag: &str) -> String {
    let mut lines = help.lines().skip_while(|line| {
        !(starts_option(line)
            && line
                .trim_start()
                .split(|c: char| c.is_whitespace() || c == ',')
                .any(|word| word == flag))
    });
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("--help has an option line for {flag}"));
    std::iter::once(first)
        .chain(lines.take_while(|line| !starts_option(line)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `[env: NAME=]` and `[default: VALUE]` of a flag's help, when it has them.
fn env_and_default(help: &str, flag: &str) -> (Option<String>, Option<String>) {
    let block = block(help, flag);
    let env = block
        .split("[env: ")
        .nth(1)
        .map(|env| env.split(['=', ']']).next().unwrap().to_owned());
    let default = block
        .split("[default: ")
        .nth(1)
        .map(|default| default.split(']').next().unwrap().to_owned());
    (env, default)
}

/// Checks one command's flag table against its `--help`: every flag has a row
/// naming its variable and its default, and every row's flag exists.
fn check_table(command: &str, help: &str, flags: &BTreeSet<String>, rows: &[&str]) {
    for flag in flags {
        let row = rows
            .iter()
            .find(|row| row.starts_with(&format!("| `{flag}` |")))
            .unwrap_or_else(|| {
                panic!("{command}'s {flag} has no row in docs/configuration.md's table")
            });
        let (env, default) = env_and_default(help, flag);
        if let Some(env) = env {
            assert!(
                row.contains(&format!("`{env}`")),
                "{command}'s {flag}: its row names {env}"
            );
        }
        if let Some(default) = default {
            assert!(
                row.contains(&format!("`{default}`")),
                "{command}'s {flag}: its row names the default `{default}`: {row}"
            );
        }
    }
    // And the table names no flag that does not exist.
    for row in rows.iter().filter(|line| line.starts_with("| `--")) {
        let flag = row[3..].split('`').next().unwrap();
        assert!(
            flags.contains(flag),
            "docs/configuration.md names {command}'s {flag}, --help does not"
        );
    }
}

#[test]
fn every_flag_and_variable_of_help_is_in_docs_configuration() {
    let serve = help(&["serve", "--help"]);
    let token = help(&["token", "--help"]);
    let (flags, envs) = named(&serve);
    let (token_flags, token_envs) = named(&token);
    assert!(flags.len() > 15, "{flags:?}");
    assert!(token_flags.len() >= 4, "{token_flags:?}");

    // serve: one table row per flag, with its variable and default.
    let serve_section = section(CONFIGURATION, "## `serve`");
    let serve_rows = rows(serve_section);
    for flag in &flags {
        let (env, _) = env_and_default(&serve, flag);
        assert!(env.is_some(), "serve's {flag} has an env var in --help");
    }
    check_table("serve", &serve, &flags, &serve_rows);
    for env in &envs {
        assert!(
            serve_rows
                .iter()
                .any(|row| row.contains(&format!("`{env}`"))),
            "{env} is not in docs/configuration.md's serve table"
        );
    }
    assert!(serve.contains("RUST_LOG"), "--help names RUST_LOG");
    assert!(serve_rows.iter().any(|row| row.contains("`RUST_LOG`")));

    // token: in the usage line, and one table row per flag.
    let token_section = section(CONFIGURATION, "## `token`");
    for flag in &token_flags {
        assert!(
            token_section.contains(&format!("[{flag} ")),
            "token's {flag} is not in docs/configuration.md's token usage line"
        );
    }
    let token_rows = rows(token_section);
    check_table("token", &token, &token_flags, &token_rows);
    for env in &token_envs {
        assert!(
            token_rows
                .iter()
                .any(|row| row.contains(&format!("`{env}`"))),
            "{env} is not in docs/configuration.md's token table"
        );
    }
}
