//! A Go program's flags as its command line holds them: `--name=value`,
//! `--name value`, `-name value` (Go's flag package takes one dash or two),
//! a flag alone as a switch. Names are normalized as the kubelet's pflag
//! set does (`WordSepNormalizeFunc`: `_` reads as `-`). Parsing stops at
//! `--`. A flag without `=` takes the next argument as its value unless
//! that one starts with `-` (none of the daemons read takes positional
//! arguments, so a word after a flag is its value).

/// The flags of one command line, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    flags: Vec<(String, Option<String>)>,
}

impl Flags {
    /// Parses `args` (the command line after the program).
    pub fn parse(args: &[String]) -> Flags {
        let mut flags = Vec::new();
        let mut rest = args.iter().peekable();
        while let Some(arg) = rest.next() {
            if arg == "--" {
                break;
            }
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                continue;
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => {
                    let takes_next = rest.peek().is_some_and(|next| !next.starts_with('-'));
                    (body, takes_next.then(|| rest.next().cloned()).flatten())
                }
            };
            if !name.is_empty() {
                flags.push((name.replace('_', "-"), value));
            }
        }
        Flags { flags }
    }

    /// The last value given to any of `names` (a later flag wins, as in Go).
    pub fn last(&self, names: &[&str]) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, v)| v.is_some() && names.contains(&n.as_str()))
            .and_then(|(_, v)| v.as_deref())
    }

    /// Every value given to `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags
            .iter()
            .filter(move |(n, _)| n == name)
            .filter_map(|(_, v)| v.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Flags::parse(&args)
    }

    #[test]
    fn both_forms_one_or_two_dashes_and_underscores() {
        let f = flags(&[
            "--config=/a.yaml",
            "--fail-swap-on",
            "--root-dir",
            "/r",
            "-c",
            "/c.toml",
            "--eviction_hard=nodefs.available<5%",
            "--v",
            "2",
            "--config",
            "/b.yaml",
            "--",
            "--root-dir=/ignored",
        ]);
        assert_eq!(f.last(&["config"]), Some("/b.yaml"));
        assert_eq!(f.last(&["root-dir"]), Some("/r"));
        assert_eq!(f.last(&["c", "config"]), Some("/b.yaml"));
        assert_eq!(f.last(&["c"]), Some("/c.toml"));
        assert_eq!(f.last(&["fail-swap-on"]), None);
        assert_eq!(
            f.all("eviction-hard").collect::<Vec<_>>(),
            ["nodefs.available<5%"]
        );
    }

    #[test]
    fn fault_garbage_arguments_are_skipped() {
        let f = flags(&["", "-", "--", "x"]);
        assert_eq!(f, Flags::default());
        let f = flags(&["--=v", "word", "--root-dir="]);
        assert_eq!(f.last(&["root-dir"]), Some(""));
    }
}
