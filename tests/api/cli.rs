//! The command line documents itself: every flag and environment variable that
//! `--help` shows is in the README's configuration, and the other way round.

use std::collections::BTreeSet;

use crate::helpers::BINARY;
const README: &str = include_str!("../../README.md");

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

#[test]
fn every_flag_and_variable_of_help_is_in_the_readme() {
    let serve = help(&["serve", "--help"]);
    let token = help(&["token", "--help"]);
    let (flags, envs) = named(&serve);
    let (token_flags, _) = named(&token);
    assert!(flags.len() > 15, "{flags:?}");
    let section = README
        .split("## Configuration")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Configuration section");
    let rows: Vec<&str> = section
        .lines()
        .filter(|line| line.starts_with("| "))
        .collect();
    for flag in &flags {
        let row = rows
            .iter()
            .find(|row| row.starts_with(&format!("| `{flag}` |")))
            .unwrap_or_else(|| panic!("{flag} has no row in the README's configuration table"));
        let env = serve
            .split(&format!("{flag} "))
            .nth(1)
            .and_then(|after| after.split("[env: ").nth(1))
            .and_then(|env| env.split('=').next())
            .unwrap_or_else(|| panic!("{flag} has an env var in --help"));
        assert!(
            row.contains(&format!("`{env}`")),
            "{flag}'s row names {env}"
        );
    }
    for env in &envs {
        assert!(
            rows.iter().any(|row| row.contains(&format!("`{env}`"))),
            "{env} is not in the README's configuration table"
        );
    }
    for flag in &token_flags {
        assert!(
            section.contains(&format!("[{flag} ")),
            "token's {flag} is not in the README's configuration section"
        );
    }
    assert!(serve.contains("RUST_LOG"), "--help names RUST_LOG");
    assert!(rows.iter().any(|row| row.contains("`RUST_LOG`")));

    // And the README's configuration table names no flag that does not exist.
    for row in rows.iter().filter(|line| line.starts_with("| `--")) {
        let flag = row[3..].split('`').next().unwrap();
        assert!(
            flags.contains(flag),
            "the README names {flag}, --help does not"
        );
    }
}
