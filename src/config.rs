//! One configuration for every face of Headroom, from four places in this
//! order of precedence: a command-line flag, a `HEADROOM_*` environment
//! variable, the TOML config file, the built-in default.
//!
//! Keys are flat and spelled the same everywhere: the file's `docker_root` is
//! the flag `--docker-root` and the variable `HEADROOM_DOCKER_ROOT`. Every
//! value from every place is checked before anything starts (even one that a
//! higher place overrides, so that it cannot fail later when the override
//! goes), and each problem names the place, the key and the value, e.g.
//! `HEADROOM_RESCAN_INTERVAL="5 parsecs": not a duration (e.g. 30s, 5m)`.
//!
//! One function, `resolve`, names every key with its type, default, rule and
//! help; the flags, their `--help` text and the file's list of known keys are
//! all derived from it, so the places cannot drift apart.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches};

use crate::layout::{LayoutSettings, NodeLayout, Setting as PathSetting};

/// The config file read when neither `--config` nor `HEADROOM_CONFIG` names
/// one; unlike a named file, it may be missing.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/headroom/config.toml";

/// Prefix of the environment variables that set keys.
const ENV_PREFIX: &str = "HEADROOM_";

/// The flag (and argument id) that names the config file.
const CONFIG_FLAG: &str = "config";

/// Where `--help` lists the configuration flags.
const HELP_HEADING: &str = "Configuration (flag > HEADROOM_* variable > config file > default)";

/// The shortest interval or deadline the agent accepts.
const ONE_SECOND: Duration = Duration::from_secs(1);

/// The fully resolved configuration of one run.
///
/// Every key, with its default, as shipped in `deploy/config.toml` (a test
/// checks that this file lists every key with its default):
///
/// ```toml
#[doc = include_str!("../deploy/config.toml")]
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `host_root`: where the host's root is mounted; every face that reads
    /// the node chroots into it first, unless it is `/`.
    pub host_root: PathBuf,
    /// Where the runtimes, the kubelet and the pod logs live. As loaded,
    /// only Headroom's own settings and the defaults;
    /// [`crate::layout::root::on_node`] adds what the node says.
    pub layout: NodeLayout,
    /// How `headroom agent` serves and keeps its inventory current.
    pub agent: AgentSettings,
    /// How `headroom status` reaches the agent.
    pub status: StatusSettings,
    /// How `headroom check-pull` reaches registries.
    pub check_pull: CheckPullSettings,
    /// Where logs go and how many.
    pub log: LogSettings,
}

/// Settings of `headroom agent`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    /// `listen`: the HTTP server's address. Loopback by default: on a host
    /// network (the systemd unit) any other address exposes the node's
    /// inventory to whoever reaches the host, so opening it is the
    /// operator's choice; the DaemonSet sets `0.0.0.0`, which in its own
    /// network namespace is only the pod's IP (docs/http.md).
    pub listen: SocketAddr,
    /// `rescan_interval`: how often writable layers, logs and emptyDirs are
    /// measured again (at least 1s).
    pub rescan_interval: Duration,
    /// `rescan_jitter`: random spread of each rescan as a fraction of the
    /// interval, 0.0 to 0.5.
    pub rescan_jitter: f64,
    /// `scan_deadline`: a longer scan is abandoned (at least 1s).
    pub scan_deadline: Duration,
    /// `max_concurrent_walks`: directory walks at the same time, 1 to 64.
    pub max_concurrent_walks: usize,
    /// `resync_interval`: full resync against the runtimes even without
    /// events (at least 1s).
    pub resync_interval: Duration,
    /// `top_n`: images and containers with their own metric series, 1 to
    /// 1000; the rest are summed.
    pub top_n: usize,
    /// `walk_threads`: threads of one walk, 0 for one per core, at most
    /// [`crate::walk::MAX_THREADS`].
    pub walk_threads: usize,
    /// `audit_cpu_percent`: the share of one core the layer audit may use,
    /// 0 (no audit) to 100.
    pub audit_cpu_percent: usize,
}

/// Settings of `headroom status` as a client of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSettings {
    /// `agent_address`: where the local agent answers.
    pub agent_address: SocketAddr,
    /// `agent_timeout`: how long to wait for it (more than 0s).
    pub agent_timeout: Duration,
    /// `local`: scan here without asking the agent.
    pub local: bool,
}

/// Settings of `headroom check-pull`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckPullSettings {
    /// `plain_http`: speak plain HTTP to the registry. Honoured for a
    /// loopback registry only; any other is refused before connecting.
    pub plain_http: bool,
    /// `certs_d`: containerd's hosts directory, whose `<host:port>/`
    /// CA certificates are trusted for that registry.
    pub certs_d: PathBuf,
    /// `fleet_timeout`: how long `--fleet` waits for each agent's answer
    /// (more than 0s); one that takes longer is unknown.
    pub fleet_timeout: Duration,
    /// `fleet_concurrency`: agents `--fleet` asks at the same time, 1 to
    /// [`MAX_FLEET_CONCURRENCY`].
    pub fleet_concurrency: usize,
}

/// The most agents `check-pull --fleet` asks at the same time (a thread
/// each).
pub const MAX_FLEET_CONCURRENCY: usize = 256;

/// containerd's usual hosts directory (its CRI `config_path`).
const DEFAULT_CERTS_D: &str = "/etc/containerd/certs.d";

impl Default for CheckPullSettings {
    /// HTTPS; CAs from `/etc/containerd/certs.d`.
    fn default() -> Self {
        CheckPullSettings {
            plain_http: false,
            certs_d: PathBuf::from(DEFAULT_CERTS_D),
            fleet_timeout: Duration::from_secs(5),
            fleet_concurrency: 32,
        }
    }
}

/// Logging settings (logs go to standard error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `log_format`: text or JSON lines.
    pub format: LogFormat,
    /// `log_level`: a `tracing_subscriber::EnvFilter` directive. Defaults to
    /// `info` for the agent and `warn` for the command-line faces.
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A subcommand of `headroom`; some keys (and their flags) belong to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// `headroom agent`, the daemon.
    Agent,
    /// `headroom status`, the on-call screen and client of the agent.
    Status,
    /// `headroom du`, the walker on arbitrary paths.
    Du,
    /// `headroom check-pull`, the verdict on a pull before it starts.
    CheckPull,
    /// `headroom audit`, where the images' bytes are wasted; a client of
    /// the agent as `status` is.
    Audit,
}

impl Face {
    /// Every face, in the order `--help` lists them.
    pub const ALL: [Face; 5] = [
        Face::Agent,
        Face::Status,
        Face::Du,
        Face::CheckPull,
        Face::Audit,
    ];

    /// The subcommand's name.
    pub fn name(self) -> &'static str {
        match self {
            Face::Agent => "agent",
            Face::Status => "status",
            Face::Du => "du",
            Face::CheckPull => "check-pull",
            Face::Audit => "audit",
        }
    }

    /// The log level when none is configured: the daemon says what it does,
    /// the command-line faces only warn (their output is the answer).
    pub fn default_log_level(self) -> &'static str {
        match self {
            Face::Agent => "info",
            Face::Status | Face::Du | Face::CheckPull | Face::Audit => "warn",
        }
    }

    fn from_name(name: &str) -> Option<Face> {
        Face::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 9847)),
            rescan_interval: Duration::from_secs(60),
            rescan_jitter: 0.1,
            scan_deadline: Duration::from_secs(120),
            max_concurrent_walks: 2,
            resync_interval: Duration::from_secs(300),
            top_n: 20,
            audit_cpu_percent: 25,
            walk_threads: 0,
        }
    }
}

impl Default for StatusSettings {
    fn default() -> Self {
        StatusSettings {
            agent_address: SocketAddr::from(([127, 0, 0, 1], 9847)),
            agent_timeout: Duration::from_secs(2),
            local: false,
        }
    }
}

impl Config {
    /// The built-in defaults as `face` sees them.
    pub fn defaults(face: Face) -> Config {
        Config {
            host_root: PathBuf::from("/"),
            layout: NodeLayout::default(),
            agent: AgentSettings::default(),
            status: StatusSettings::default(),
            check_pull: CheckPullSettings::default(),
            log: LogSettings {
                format: LogFormat::Text,
                level: face.default_log_level().to_string(),
            },
        }
    }

    /// Resolves the configuration of `face` from what the process was given
    /// and the config file; every problem found is in the error.
    pub fn load(given: &Given, face: Face) -> Result<Config, ConfigError> {
        Config::load_with_settings(given, face).map(|(config, _)| config)
    }

    /// [`Config::load`], with the layout paths Headroom was given explicitly
    /// (they beat what discovery finds on the node).
    pub fn load_with_settings(
        given: &Given,
        face: Face,
    ) -> Result<(Config, LayoutSettings), ConfigError> {
        Config::load_from(given, face, Path::new(DEFAULT_CONFIG_PATH))
    }

    /// [`Config::load`] with another default config file (for tests).
    #[cfg(test)]
    fn load_with_default(
        given: &Given,
        face: Face,
        default_file: &Path,
    ) -> Result<Config, ConfigError> {
        Config::load_from(given, face, default_file).map(|(config, _)| config)
    }

    fn load_from(
        given: &Given,
        face: Face,
        default_file: &Path,
    ) -> Result<(Config, LayoutSettings), ConfigError> {
        let mut problems = Vec::new();
        let file = read_file(given, default_file, &mut problems);
        let mut resolver = Resolver::new(given, file.as_ref(), &mut problems);
        let config = resolve(&mut resolver, face);
        let known = resolver.known;
        if let Some(file) = &file {
            problems.extend(unknown_keys(file, &known));
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// What the process was given: the flags typed on its command line and its
/// `HEADROOM_*` environment variables.
#[derive(Debug, Clone, Default)]
pub struct Given {
    /// Raw values by argument id (the key), only those typed by the user.
    flags: BTreeMap<String, OsString>,
    /// `HEADROOM_*` variables; an empty one counts as unset.
    env: BTreeMap<String, OsString>,
}

impl Given {
    /// Takes the flags from the face's `matches` (see [`with_flags`]) and
    /// the `HEADROOM_*` variables from `env`.
    pub fn new(matches: &ArgMatches, env: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        let flags = matches
            .ids()
            .map(|id| id.as_str())
            .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
            .filter_map(|id| {
                let value = matches.get_raw(id)?.next_back()?;
                Some((id.to_string(), value.to_os_string()))
            })
            .collect();
        let env = env
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        Given { flags, env }
    }
}

/// Everything wrong with a configuration, one problem a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.problems))]
pub struct ConfigError {
    /// Each problem, never empty.
    pub problems: Vec<Invalid>,
}

/// One bad setting, file or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct Invalid {
    /// Where: `--key="value"`, `HEADROOM_KEY="value"`, `FILE: key = value`
    /// or the file itself.
    pub at: String,
    /// What is wrong.
    pub reason: String,
}

fn lines(problems: &[Invalid]) -> String {
    let lines: Vec<String> = problems.iter().map(Invalid::to_string).collect();
    lines.join("\n")
}

/// Adds every face's configuration flags (and `--config`) to the
/// subcommands of `cmd` named after a [`Face`].
pub fn with_flags(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommands(|sub| match Face::from_name(sub.get_name()) {
        Some(face) => sub.arg(config_flag()).args(flags(face)),
        None => sub,
    })
}

fn config_flag() -> Arg {
    Arg::new(CONFIG_FLAG)
        .long(CONFIG_FLAG)
        .help_heading(HELP_HEADING)
        .value_name("PATH")
        .value_parser(clap::value_parser!(OsString))
        .help(format!(
            "TOML config file; the default one may be missing [env: {}] [default: {DEFAULT_CONFIG_PATH}]",
            env_name(CONFIG_FLAG)
        ))
}

/// The flags of the keys `face` takes.
fn flags(face: Face) -> Vec<Arg> {
    registry(face)
        .into_iter()
        .filter(|k| k.key.faces.is_empty() || k.key.faces.contains(&face))
        .map(Known::flag)
        .collect()
}

/// Every key with its default as `face` sees it: what `resolve` meets.
fn registry(face: Face) -> Vec<Known> {
    let (given, mut problems) = (Given::default(), Vec::new());
    let mut resolver = Resolver::new(&given, None, &mut problems);
    resolve(&mut resolver, face);
    resolver.known
}

/// One key: its name in the file and the faces that take its flag (none
/// named: every face).
#[derive(Debug, Clone, Copy)]
struct Key {
    name: &'static str,
    faces: &'static [Face],
    help: &'static str,
}

const fn every(name: &'static str, help: &'static str) -> Key {
    Key {
        name,
        faces: &[],
        help,
    }
}

const fn only(face: Face, name: &'static str, help: &'static str) -> Key {
    let faces: &'static [Face] = match face {
        Face::Agent => &[Face::Agent],
        Face::Status => &[Face::Status],
        Face::Du => &[Face::Du],
        Face::CheckPull => &[Face::CheckPull],
        Face::Audit => &[Face::Audit],
    };
    Key { name, faces, help }
}

/// A key of the agent's clients: `status` and `audit`.
const fn client(name: &'static str, help: &'static str) -> Key {
    Key {
        name,
        faces: &[Face::Status, Face::Audit],
        help,
    }
}

/// A key as the resolver met it, with what its flag needs.
#[derive(Debug, Clone)]
struct Known {
    key: Key,
    value_name: &'static str,
    switch: bool,
    default: String,
}

impl Known {
    fn flag(self) -> Arg {
        let Key { name, help, .. } = self.key;
        let env = env_name(name);
        let arg = Arg::new(name)
            .long(name.replace('_', "-"))
            .help_heading(HELP_HEADING);
        if self.switch {
            arg.action(ArgAction::SetTrue)
                .help(format!("{help} [env: {env}]"))
        } else {
            arg.value_name(self.value_name)
                .value_parser(clap::value_parser!(OsString))
                .help(format!("{help} [env: {env}] [default: {}]", self.default))
        }
    }
}

fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_uppercase())
}

/// Every key: name, face, help, default and rule. The only list of keys.
fn resolve(r: &mut Resolver<'_>, face: Face) -> (Config, LayoutSettings) {
    let d = Config::defaults(face);
    let host_root = r.get(
        every(
            "host_root",
            "Where the host's / is mounted; chroot there to read the node (needs CAP_SYS_CHROOT)",
        ),
        d.host_root,
        absolute,
    );
    let (layout, settings) = resolve_layout(r, d.layout);
    let config = Config {
        host_root,
        layout,
        agent: resolve_agent(r, d.agent),
        status: resolve_status(r, d.status),
        check_pull: resolve_check_pull(r),
        log: resolve_log(r, d.log),
    };
    (config, settings)
}

#[allow(clippy::ptr_arg)] // A rule takes the key's own type.
fn absolute(value: &PathBuf) -> Result<(), String> {
    if !value.is_absolute() {
        return Err("must be an absolute path".to_string());
    }
    Ok(())
}

/// The layout keys: the paths Headroom was given explicitly (discovery fills
/// the others, [`NodeLayout::resolve`]), and the layout they make alone.
fn resolve_layout(r: &mut Resolver<'_>, d: NodeLayout) -> (NodeLayout, LayoutSettings) {
    let mut path =
        |key: Key, default: PathBuf| r.get_at(key, default, any).1.map(PathSetting::from);
    let settings = LayoutSettings {
        docker_root: path(
            every(
                "docker_root",
                "Docker's data root; found on the node unless set",
            ),
            d.docker_root,
        ),
        containerd_address: path(
            every(
                "containerd_address",
                "containerd's gRPC socket; found on the node unless set",
            ),
            d.containerd_address,
        ),
        containerd_root: path(
            every(
                "containerd_root",
                "containerd's root directory; found on the node unless set",
            ),
            d.containerd_root,
        ),
        containers_storage_conf: path(
            every(
                "containers_storage_conf",
                "containers-storage's storage.conf (CRI-O, Podman): graph root, run root, driver, additional image stores",
            ),
            d.containers_storage_conf,
        ),
        // Its default (or unset): crio --root, else storage.conf's graphroot.
        containers_storage_root: path(
            every(
                "containers_storage_root",
                "containers-storage's graph root; crio --root, else storage.conf's graphroot, unless set",
            ),
            PathBuf::from(crate::runtime::crio::DEFAULT_GRAPH_ROOT),
        )
        .filter(|s| s.path != Path::new(crate::runtime::crio::DEFAULT_GRAPH_ROOT)),
        kubelet_root: path(
            every(
                "kubelet_root",
                "The kubelet's root directory (nodefs); found on the node unless set",
            ),
            d.kubelet_root,
        ),
        kubelet_config: path(
            every(
                "kubelet_config",
                "The kubelet's config file (thresholds); found on the node unless set",
            ),
            d.kubelet_config,
        ),
        pod_logs: path(
            every(
                "pod_logs",
                "Where the kubelet writes pod logs; found on the node unless set",
            ),
            d.pod_logs,
        ),
    };
    let timeout = r.get(
        every("containerd_timeout", "How long to wait for containerd"),
        d.containerd_timeout,
        more_than_zero,
    );
    (NodeLayout::resolve(&settings, None, timeout), settings)
}

fn resolve_agent(r: &mut Resolver<'_>, d: AgentSettings) -> AgentSettings {
    use Face::Agent;
    AgentSettings {
        listen: r.get(
            only(Agent, "listen", "Address of the HTTP server"),
            d.listen,
            any,
        ),
        rescan_interval: r.get(
            only(
                Agent,
                "rescan_interval",
                "How often writable layers and logs are measured",
            ),
            d.rescan_interval,
            at_least_one_second,
        ),
        rescan_jitter: r.get(
            only(
                Agent,
                "rescan_jitter",
                "Random spread of rescans, a fraction of the interval",
            ),
            d.rescan_jitter,
            |v| within(v, 0.0, 0.5),
        ),
        scan_deadline: r.get(
            only(Agent, "scan_deadline", "A longer scan is abandoned"),
            d.scan_deadline,
            at_least_one_second,
        ),
        max_concurrent_walks: r.get(
            only(
                Agent,
                "max_concurrent_walks",
                "Directory walks at the same time",
            ),
            d.max_concurrent_walks,
            |v| within(v, 1, 64),
        ),
        resync_interval: r.get(
            only(
                Agent,
                "resync_interval",
                "Full resync against the runtimes, even without events",
            ),
            d.resync_interval,
            at_least_one_second,
        ),
        top_n: r.get(
            only(
                Agent,
                "top_n",
                "Images and containers with their own metric series",
            ),
            d.top_n,
            |v| within(v, 1, 1000),
        ),
        walk_threads: r.get(
            only(
                Agent,
                "walk_threads",
                "Threads of one walk (0: one per core)",
            ),
            d.walk_threads,
            |v| within(v, 0, crate::walk::MAX_THREADS),
        ),
        audit_cpu_percent: r.get(
            only(
                Agent,
                "audit_cpu_percent",
                "Share of one core the layer audit may use (0: no audit)",
            ),
            d.audit_cpu_percent,
            |v| within(v, 0, 100),
        ),
    }
}

fn resolve_status(r: &mut Resolver<'_>, d: StatusSettings) -> StatusSettings {
    StatusSettings {
        agent_address: r.get(
            client("agent_address", "Where the local agent answers"),
            d.agent_address,
            any,
        ),
        agent_timeout: r.get(
            client("agent_timeout", "How long to wait for the agent"),
            d.agent_timeout,
            more_than_zero,
        ),
        local: r.get(
            client("local", "Read this node here; do not ask the agent"),
            d.local,
            any,
        ),
    }
}

fn resolve_check_pull(r: &mut Resolver<'_>) -> CheckPullSettings {
    let d = CheckPullSettings::default();
    CheckPullSettings {
        plain_http: r.get(
            only(
                Face::CheckPull,
                "plain_http",
                "Plain HTTP to the registry (loopback registries only)",
            ),
            d.plain_http,
            any,
        ),
        certs_d: r.get(
            only(
                Face::CheckPull,
                "certs_d",
                "containerd's hosts directory: CAs per registry (<host:port>/)",
            ),
            d.certs_d,
            any,
        ),
        fleet_timeout: r.get(
            only(
                Face::CheckPull,
                "fleet_timeout",
                "With --fleet: how long to wait for each agent",
            ),
            d.fleet_timeout,
            more_than_zero,
        ),
        fleet_concurrency: r.get(
            only(
                Face::CheckPull,
                "fleet_concurrency",
                "With --fleet: agents asked at the same time",
            ),
            d.fleet_concurrency,
            |v| within(v, 1, MAX_FLEET_CONCURRENCY),
        ),
    }
}

fn resolve_log(r: &mut Resolver<'_>, d: LogSettings) -> LogSettings {
    LogSettings {
        format: r.get(
            every("log_format", "Log format: text or json (lines)"),
            d.format,
            any,
        ),
        level: r.get(
            every("log_level", "Log filter, e.g. info or warn,headroom=debug"),
            d.level,
            log_filter,
        ),
    }
}

fn any<T>(_: &T) -> Result<(), String> {
    Ok(())
}

fn at_least_one_second(value: &Duration) -> Result<(), String> {
    if *value < ONE_SECOND {
        return Err(format!("must be at least {}", ONE_SECOND.show()));
    }
    Ok(())
}

fn more_than_zero(value: &Duration) -> Result<(), String> {
    if value.is_zero() {
        return Err("must be more than 0s".to_string());
    }
    Ok(())
}

fn within<T: PartialOrd + Copy + fmt::Display>(value: &T, min: T, max: T) -> Result<(), String> {
    if !(min..=max).contains(value) {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(())
}

fn log_filter(value: &String) -> Result<(), String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map(drop)
        .map_err(|e| format!("not a log filter: {e}"))
}

/// The config file, parsed.
#[derive(Debug)]
struct File {
    path: PathBuf,
    table: toml::Table,
}

/// Reads the config file named by `--config`, `HEADROOM_CONFIG` or else
/// `default_file`; a missing default file means no file.
fn read_file(given: &Given, default_file: &Path, problems: &mut Vec<Invalid>) -> Option<File> {
    let (at, path, explicit) = match named_file(given) {
        Some(Ok((at, path))) => (at, path, true),
        Some(Err(invalid)) => {
            problems.push(invalid);
            return None;
        }
        None => {
            let at = default_file.display().to_string();
            (at, default_file.to_path_buf(), false)
        }
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return None,
        Err(e) => {
            let reason = format!("cannot read the config file: {e}");
            problems.push(Invalid { at, reason });
            return None;
        }
    };
    match toml::from_str(&text) {
        Ok(table) => Some(File { path, table }),
        Err(e) => {
            let at = path.display().to_string();
            let reason = format!("not valid TOML: {}", e.to_string().trim_end());
            problems.push(Invalid { at, reason });
            None
        }
    }
}

/// The config file the flag or else the variable names, with where.
fn named_file(given: &Given) -> Option<Result<(String, PathBuf), Invalid>> {
    let env = env_name(CONFIG_FLAG);
    let (at, value) = match given.flags.get(CONFIG_FLAG) {
        Some(value) => (flag_at(CONFIG_FLAG, value), value),
        None => given
            .env
            .get(&env)
            .map(|value| (env_at(&env, value), value))?,
    };
    Some(match PathBuf::from_os(value) {
        Ok(path) => Ok((at, path)),
        Err(reason) => Err(Invalid { at, reason }),
    })
}

/// A problem for each key of `file` that no [`Known`] key has.
fn unknown_keys(file: &File, known: &[Known]) -> Vec<Invalid> {
    file.table
        .iter()
        .filter(|(key, _)| !known.iter().any(|k| k.key.name == key.as_str()))
        .map(|(key, value)| Invalid {
            at: file_at(&file.path, key, value),
            reason: match closest(key, known) {
                Some(name) => format!("unknown key (did you mean `{name}`?)"),
                None => "unknown key".to_string(),
            },
        })
        .collect()
}

/// The known key a typo most likely meant, if any is close.
fn closest<'k>(typo: &str, known: &'k [Known]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(typo, k.key.name), k.key.name))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, name)| name)
}

fn flag_at(key: &str, value: &OsStr) -> String {
    format!("--{}={:?}", key.replace('_', "-"), value.to_string_lossy())
}

fn env_at(name: &str, value: &OsStr) -> String {
    format!("{name}={:?}", value.to_string_lossy())
}

fn file_at(path: &Path, key: &str, value: &toml::Value) -> String {
    format!("{}: {key} = {value}", path.display())
}

/// Looks keys up in every place, records problems and the keys it met.
struct Resolver<'a> {
    given: &'a Given,
    file: Option<&'a File>,
    problems: &'a mut Vec<Invalid>,
    known: Vec<Known>,
}

impl<'a> Resolver<'a> {
    fn new(given: &'a Given, file: Option<&'a File>, problems: &'a mut Vec<Invalid>) -> Self {
        Resolver {
            given,
            file,
            problems,
            known: Vec::new(),
        }
    }

    /// The value of `key` from the highest place that sets it, else
    /// `default`. Every value set anywhere must parse and pass `check`.
    fn get<T: Setting + Clone>(
        &mut self,
        key: Key,
        default: T,
        check: impl Fn(&T) -> Result<(), String>,
    ) -> T {
        self.get_at(key, default, check).0
    }

    /// [`Resolver::get`], with the value and the place (`--key`,
    /// `HEADROOM_KEY` or the file) when some place set it.
    fn get_at<T: Setting + Clone>(
        &mut self,
        key: Key,
        default: T,
        check: impl Fn(&T) -> Result<(), String>,
    ) -> (T, Option<Placed<T>>) {
        self.known.push(Known {
            key,
            value_name: T::VALUE_NAME,
            switch: T::SWITCH,
            default: default.show(),
        });
        let mut chosen = None;
        for (at, place, parsed) in self.values::<T>(key.name) {
            match parsed.and_then(|v| check(&v).map(|()| v)) {
                Ok(value) => chosen = Some(Placed { value, place }),
                Err(reason) => self.problems.push(Invalid { at, reason }),
            }
        }
        let value = chosen.as_ref().map_or(default, |c| c.value.clone());
        (value, chosen)
    }

    /// Every value set for `key` with where (the problem's words and the
    /// bare place), lowest precedence first: file, environment, flag.
    fn values<T: Setting>(&self, key: &str) -> Vec<(String, String, Result<T, String>)> {
        let mut values = Vec::new();
        if let Some((file, value)) = self.file.and_then(|f| Some((f, f.table.get(key)?))) {
            let place = file.path.display().to_string();
            values.push((file_at(&file.path, key, value), place, T::from_toml(value)));
        }
        let env = env_name(key);
        if let Some(value) = self.given.env.get(&env) {
            values.push((env_at(&env, value), env.clone(), T::from_os(value)));
        }
        if let Some(value) = self.given.flags.get(key) {
            let place = format!("--{}", key.replace('_', "-"));
            values.push((flag_at(key, value), place, T::from_os(value)));
        }
        values
    }
}

/// A value and the place that set it.
struct Placed<T> {
    value: T,
    place: String,
}

impl From<Placed<PathBuf>> for PathSetting {
    fn from(p: Placed<PathBuf>) -> Self {
        PathSetting {
            path: p.value,
            at: p.place,
        }
    }
}

/// A type a key can have, read from text (flags, environment) or TOML.
trait Setting: Sized {
    /// Its placeholder in `--help`.
    const VALUE_NAME: &'static str;
    /// What the file must hold, for a value of the wrong TOML type.
    const EXPECTED: &'static str;
    /// A flag without a value (`--local`).
    const SWITCH: bool = false;

    /// Parses text, already trimmed.
    fn parse(text: &str) -> Result<Self, String>;

    /// Shows a value as `--help` and the sample file do.
    fn show(&self) -> String;

    fn from_os(text: &OsStr) -> Result<Self, String> {
        let text = text.to_str().ok_or("not valid UTF-8")?;
        Self::parse(text.trim())
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value.as_str() {
            Some(text) => Self::parse(text.trim()),
            None => Err(format!("expected {}", Self::EXPECTED)),
        }
    }
}

impl Setting for PathBuf {
    const VALUE_NAME: &'static str = "PATH";
    const EXPECTED: &'static str = "a path (a string)";

    fn parse(text: &str) -> Result<Self, String> {
        Self::from_os(OsStr::new(text))
    }

    fn show(&self) -> String {
        self.display().to_string()
    }

    /// Paths are taken as they are: not trimmed, not necessarily UTF-8.
    fn from_os(text: &OsStr) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".to_string());
        }
        Ok(PathBuf::from(text))
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value.as_str() {
            Some(text) => Self::parse(text),
            None => Err(format!("expected {}", Self::EXPECTED)),
        }
    }
}

impl Setting for Duration {
    const VALUE_NAME: &'static str = "DURATION";
    const EXPECTED: &'static str = "a duration string (e.g. \"30s\", \"5m\")";

    fn parse(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text).map_err(|_| "not a duration (e.g. 30s, 5m)".to_string())
    }

    fn show(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

impl Setting for SocketAddr {
    const VALUE_NAME: &'static str = "ADDRESS";
    const EXPECTED: &'static str = "an address string (e.g. \"127.0.0.1:9847\")";

    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|_| "not an IP address with a port (e.g. 127.0.0.1:9847)".to_string())
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl Setting for f64 {
    const VALUE_NAME: &'static str = "FRACTION";
    const EXPECTED: &'static str = "a number";

    fn parse(text: &str) -> Result<Self, String> {
        text.parse().map_err(|_| "not a number".to_string())
    }

    fn show(&self) -> String {
        self.to_string()
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        match value {
            toml::Value::Float(v) => Ok(*v),
            // An integer is exact as a fraction here (0 or out of range).
            toml::Value::Integer(v) => Ok(*v as f64),
            _ => Err(format!("expected {}", Self::EXPECTED)),
        }
    }
}

impl Setting for usize {
    const VALUE_NAME: &'static str = "N";
    const EXPECTED: &'static str = "a whole number";

    fn parse(text: &str) -> Result<Self, String> {
        text.parse().map_err(|_| "not a whole number".to_string())
    }

    fn show(&self) -> String {
        self.to_string()
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        value
            .as_integer()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| format!("expected {}", Self::EXPECTED))
    }
}

impl Setting for bool {
    const VALUE_NAME: &'static str = "BOOL";
    const EXPECTED: &'static str = "true or false";
    const SWITCH: bool = true;

    fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err("not a boolean (true, false, 1, 0, yes, no, on, off)".to_string()),
        }
    }

    fn show(&self) -> String {
        self.to_string()
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        value
            .as_bool()
            .ok_or_else(|| format!("expected {}", Self::EXPECTED))
    }
}

impl Setting for LogFormat {
    const VALUE_NAME: &'static str = "FORMAT";
    const EXPECTED: &'static str = "\"text\" or \"json\"";

    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("not a log format (text or json)".to_string()),
        }
    }

    fn show(&self) -> String {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
        .to_string()
    }
}

/// The one free-text key is `log_level`, hence its placeholder.
impl Setting for String {
    const VALUE_NAME: &'static str = "FILTER";
    const EXPECTED: &'static str = "a string";

    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }

    fn show(&self) -> String {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use tempfile::TempDir;

    use super::*;

    /// `headroom` with every face and their configuration flags.
    fn command() -> clap::Command {
        let faces = Face::ALL.map(|f| clap::Command::new(f.name()));
        with_flags(clap::Command::new("headroom").subcommands(faces))
    }

    /// One test's world: its own config file, never /etc/headroom.
    struct World {
        dir: TempDir,
        file: PathBuf,
    }

    impl World {
        /// A world whose config file holds `toml`.
        fn with_file(toml: &str) -> World {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("config.toml");
            std::fs::write(&file, toml).unwrap();
            World { dir, file }
        }

        /// What `headroom FACE ARGS…` with `env` gives, reading this
        /// world's file (by `HEADROOM_CONFIG` unless `env` or `args` name
        /// another) and a missing default file.
        fn given(&self, face: Face, args: &[&OsStr], env: &[(&str, &str)]) -> Given {
            let argv = [OsStr::new("headroom"), OsStr::new(face.name())];
            let matches = command()
                .try_get_matches_from(argv.iter().chain(args))
                .unwrap();
            let (_, face_matches) = matches.subcommand().unwrap();
            // This world's file first: a later duplicate wins, so a test
            // may name another.
            let own = ("HEADROOM_CONFIG", self.file.to_str().unwrap());
            let vars = std::iter::once(&own)
                .chain(env)
                .map(|(k, v)| (OsString::from(k), OsString::from(v)));
            Given::new(face_matches, vars)
        }

        fn load(
            &self,
            face: Face,
            args: &[&str],
            env: &[(&str, &str)],
        ) -> Result<Config, ConfigError> {
            let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
            let given = self.given(face, &args, env);
            Config::load_with_default(&given, face, &self.dir.path().join("absent.toml"))
        }

        /// The single problem a load must report.
        fn problem(&self, face: Face, args: &[&str], env: &[(&str, &str)]) -> String {
            let err = self.load(face, args, env).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            err.to_string()
        }

        fn path(&self) -> String {
            self.file.display().to_string()
        }
    }

    /// A key set to a non-default value: as text (flag, environment), as a
    /// TOML value, and the change it makes to the defaults.
    struct Sample {
        key: &'static str,
        text: &'static str,
        toml: &'static str,
        apply: fn(&mut Config),
    }

    fn samples() -> Vec<Sample> {
        let s = |key, text, toml, apply| Sample {
            key,
            text,
            toml,
            apply,
        };
        vec![
            s("host_root", "/host", "\"/host\"", |c| {
                c.host_root = "/host".into()
            }),
            s("docker_root", "/d", "\"/d\"", |c| {
                c.layout.docker_root = "/d".into()
            }),
            s("containerd_address", "/c.sock", "\"/c.sock\"", |c| {
                c.layout.containerd_address = "/c.sock".into()
            }),
            s("containerd_root", "/c", "\"/c\"", |c| {
                c.layout.containerd_root = "/c".into()
            }),
            s("containers_storage_conf", "/s.conf", "\"/s.conf\"", |c| {
                c.layout.containers_storage_conf = "/s.conf".into()
            }),
            s("containers_storage_root", "/s", "\"/s\"", |c| {
                c.layout.containers_storage_root = Some("/s".into())
            }),
            s("containerd_timeout", "750ms", "\"750ms\"", |c| {
                c.layout.containerd_timeout = Duration::from_millis(750)
            }),
            s("kubelet_root", "/k", "\"/k\"", |c| {
                c.layout.kubelet_root = "/k".into()
            }),
            s("kubelet_config", "/k.yaml", "\"/k.yaml\"", |c| {
                c.layout.kubelet_config = "/k.yaml".into()
            }),
            s("pod_logs", "/p", "\"/p\"", |c| {
                c.layout.pod_logs = "/p".into()
            }),
            s("listen", "127.0.0.1:1", "\"127.0.0.1:1\"", |c| {
                c.agent.listen = "127.0.0.1:1".parse().unwrap()
            }),
            s("rescan_interval", "90s", "\"90s\"", |c| {
                c.agent.rescan_interval = Duration::from_secs(90)
            }),
            s("rescan_jitter", "0.25", "0.25", |c| {
                c.agent.rescan_jitter = 0.25
            }),
            s("scan_deadline", "1h", "\"1h\"", |c| {
                c.agent.scan_deadline = Duration::from_secs(3600)
            }),
            s("max_concurrent_walks", "64", "64", |c| {
                c.agent.max_concurrent_walks = 64
            }),
            s("resync_interval", "1s", "\"1s\"", |c| {
                c.agent.resync_interval = Duration::from_secs(1)
            }),
            s("top_n", "1000", "1000", |c| c.agent.top_n = 1000),
            s("walk_threads", "3", "3", |c| c.agent.walk_threads = 3),
            s("audit_cpu_percent", "0", "0", |c| {
                c.agent.audit_cpu_percent = 0
            }),
            s("agent_address", "[::1]:9", "\"[::1]:9\"", |c| {
                c.status.agent_address = "[::1]:9".parse().unwrap()
            }),
            s("agent_timeout", "100ms", "\"100ms\"", |c| {
                c.status.agent_timeout = Duration::from_millis(100)
            }),
            s("local", "true", "true", |c| c.status.local = true),
            s("plain_http", "yes", "true", |c| {
                c.check_pull.plain_http = true
            }),
            s("certs_d", "/c.d", "\"/c.d\"", |c| {
                c.check_pull.certs_d = "/c.d".into()
            }),
            s("fleet_timeout", "2s", "\"2s\"", |c| {
                c.check_pull.fleet_timeout = Duration::from_secs(2)
            }),
            s("fleet_concurrency", "8", "8", |c| {
                c.check_pull.fleet_concurrency = 8
            }),
            s("log_format", "json", "\"json\"", |c| {
                c.log.format = LogFormat::Json
            }),
            s("log_level", "debug,h2=warn", "\"debug,h2=warn\"", |c| {
                c.log.level = "debug,h2=warn".into()
            }),
        ]
    }

    /// The face whose subcommand has `key`'s flag.
    fn face_of(key: &str) -> Face {
        let known = registry(Face::Agent);
        let k = known.iter().find(|k| k.key.name == key).unwrap();
        k.key.faces.first().copied().unwrap_or(Face::Agent)
    }

    #[test]
    fn the_samples_cover_every_key() {
        let mut sampled: Vec<&str> = samples().iter().map(|s| s.key).collect();
        let mut known: Vec<&str> = registry(Face::Agent).iter().map(|k| k.key.name).collect();
        sampled.sort_unstable();
        known.sort_unstable();
        assert_eq!(sampled, known);
    }

    #[test]
    fn every_key_is_read_from_a_flag() {
        let world = World::with_file("");
        for s in samples() {
            let face = face_of(s.key);
            let flag = format!("--{}", s.key.replace('_', "-"));
            let args: Vec<&str> = match s.key {
                "local" | "plain_http" => vec![&flag],
                _ => vec![&flag, s.text],
            };
            let mut expected = Config::defaults(face);
            (s.apply)(&mut expected);
            assert_eq!(world.load(face, &args, &[]).unwrap(), expected, "{flag}");
        }
    }

    #[test]
    fn every_key_is_read_from_the_environment() {
        let world = World::with_file("");
        for s in samples() {
            let var = format!("HEADROOM_{}", s.key.to_uppercase());
            for face in Face::ALL {
                let mut expected = Config::defaults(face);
                (s.apply)(&mut expected);
                let loaded = world.load(face, &[], &[(&var, s.text)]).unwrap();
                assert_eq!(loaded, expected, "{var} for {}", face.name());
            }
        }
    }

    #[test]
    fn every_key_is_read_from_the_file() {
        for s in samples() {
            let world = World::with_file(&format!("{} = {}\n", s.key, s.toml));
            for face in Face::ALL {
                let mut expected = Config::defaults(face);
                (s.apply)(&mut expected);
                let loaded = world.load(face, &[], &[]).unwrap();
                assert_eq!(loaded, expected, "{} for {}", s.key, face.name());
            }
        }
    }

    #[test]
    fn flag_beats_environment_beats_file_beats_default() {
        let world = World::with_file("top_n = 5\nkubelet_root = \"/file\"\n");
        let env = [("HEADROOM_TOP_N", "6"), ("HEADROOM_KUBELET_ROOT", "/env")];
        let flags = ["--top-n", "7", "--kubelet-root", "/flag"];
        let top_and_root = |args: &[&str], env: &[(&str, &str)]| {
            let c = world.load(Face::Agent, args, env).unwrap();
            (c.agent.top_n, c.layout.kubelet_root.display().to_string())
        };
        assert_eq!(top_and_root(&flags, &env), (7, "/flag".into()));
        assert_eq!(top_and_root(&[], &env), (6, "/env".into()));
        assert_eq!(top_and_root(&[], &[]), (5, "/file".into()));
        let empty = World::with_file("");
        let defaults = empty.load(Face::Agent, &[], &[]).unwrap();
        assert_eq!(defaults, Config::defaults(Face::Agent));
        assert_eq!(defaults.agent.top_n, 20);
    }

    #[test]
    fn an_overridden_bad_value_is_still_an_error() {
        let world = World::with_file("top_n = 0\n");
        let err = world.problem(Face::Agent, &["--top-n", "5"], &[]);
        assert_eq!(
            err,
            format!("{}: top_n = 0: must be between 1 and 1000", world.path())
        );
    }

    #[test]
    fn each_place_is_named_in_its_own_way() {
        let world = World::with_file("rescan_interval = \"0s\"\n");
        assert_eq!(
            world.problem(Face::Agent, &[], &[]),
            format!(
                "{}: rescan_interval = \"0s\": must be at least 1s",
                world.path()
            )
        );
        let world = World::with_file("");
        assert_eq!(
            world.problem(Face::Du, &[], &[("HEADROOM_RESCAN_INTERVAL", "5 parsecs")]),
            "HEADROOM_RESCAN_INTERVAL=\"5 parsecs\": not a duration (e.g. 30s, 5m)"
        );
        assert_eq!(
            world.problem(Face::Agent, &["--rescan-interval", "5 parsecs"], &[]),
            "--rescan-interval=\"5 parsecs\": not a duration (e.g. 30s, 5m)"
        );
    }

    /// Each rule, from the environment: the variable, then the message.
    #[test]
    fn every_rule_says_what_is_wrong() {
        let cases = [
            ("RESCAN_INTERVAL", "999ms", "must be at least 1s"),
            ("SCAN_DEADLINE", "0s", "must be at least 1s"),
            ("RESYNC_INTERVAL", "500ms", "must be at least 1s"),
            ("CONTAINERD_TIMEOUT", "0s", "must be more than 0s"),
            ("AGENT_TIMEOUT", "0ms", "must be more than 0s"),
            ("AGENT_TIMEOUT", "2", "not a duration (e.g. 30s, 5m)"),
            ("RESCAN_JITTER", "0.51", "must be between 0 and 0.5"),
            ("RESCAN_JITTER", "-0.1", "must be between 0 and 0.5"),
            ("RESCAN_JITTER", "NaN", "must be between 0 and 0.5"),
            ("RESCAN_JITTER", "a bit", "not a number"),
            ("MAX_CONCURRENT_WALKS", "0", "must be between 1 and 64"),
            ("MAX_CONCURRENT_WALKS", "65", "must be between 1 and 64"),
            ("TOP_N", "0", "must be between 1 and 1000"),
            ("TOP_N", "1001", "must be between 1 and 1000"),
            ("TOP_N", "-3", "not a whole number"),
            ("WALK_THREADS", "1025", "must be between 0 and 1024"),
            (
                "LISTEN",
                "localhost:9847",
                "not an IP address with a port (e.g. 127.0.0.1:9847)",
            ),
            (
                "AGENT_ADDRESS",
                "127.0.0.1",
                "not an IP address with a port (e.g. 127.0.0.1:9847)",
            ),
            ("LOG_FORMAT", "xml", "not a log format (text or json)"),
            (
                "LOCAL",
                "maybe",
                "not a boolean (true, false, 1, 0, yes, no, on, off)",
            ),
        ];
        let world = World::with_file("");
        for (var, value, reason) in cases {
            let var = format!("HEADROOM_{var}");
            assert_eq!(
                world.problem(Face::Agent, &[], &[(&var, value)]),
                format!("{var}={value:?}: {reason}")
            );
        }
    }

    #[test]
    fn the_bounds_themselves_are_accepted() {
        let world = World::with_file(
            "rescan_interval = \"1s\"\nrescan_jitter = 0\nmax_concurrent_walks = 1\n\
             top_n = 1\nwalk_threads = 1024\nscan_deadline = \"1s\"\n",
        );
        let agent = world.load(Face::Agent, &[], &[]).unwrap().agent;
        assert_eq!(agent.rescan_interval, ONE_SECOND);
        assert_eq!(agent.rescan_jitter, 0.0);
        assert_eq!((agent.max_concurrent_walks, agent.top_n), (1, 1));
        assert_eq!(agent.walk_threads, 1024);
    }

    #[test]
    fn a_bad_log_filter_is_named() {
        let world = World::with_file("");
        let err = world.problem(Face::Status, &["--log-level", "headroom=loud"], &[]);
        assert!(
            err.starts_with("--log-level=\"headroom=loud\": not a log filter: "),
            "{err}"
        );
    }

    #[test]
    fn an_empty_path_is_refused_but_any_bytes_are_a_path() {
        let world = World::with_file("");
        assert_eq!(
            world.problem(Face::Du, &["--docker-root", ""], &[]),
            "--docker-root=\"\": must not be empty"
        );
        let odd = OsString::from_vec(b"/var/lib/d\xffcker".to_vec());
        let args = [OsStr::new("--pod-logs"), odd.as_os_str()];
        let given = world.given(Face::Du, &args, &[]);
        let config = Config::load_with_default(&given, Face::Du, &world.file).unwrap();
        assert_eq!(config.layout.pod_logs, PathBuf::from(odd));
    }

    #[test]
    fn fault_the_agent_listens_on_loopback_unless_told_otherwise() {
        // On a host network any other default would serve the node's
        // inventory to every network the host is on (docs/http.md).
        assert!(AgentSettings::default().listen.ip().is_loopback());
    }

    #[test]
    fn text_values_are_trimmed_and_empty_variables_are_unset() {
        let world = World::with_file("top_n = 3\n");
        let env = [("HEADROOM_TOP_N", " 5\n"), ("HEADROOM_LISTEN", "")];
        let config = world.load(Face::Agent, &[], &env).unwrap();
        assert_eq!(config.agent.top_n, 5);
        assert_eq!(config.agent.listen, AgentSettings::default().listen);
    }

    #[test]
    fn a_wrong_type_in_the_file_names_key_and_value() {
        let cases = [
            ("top_n = \"20\"", "expected a whole number"),
            ("top_n = -1", "expected a whole number"),
            ("top_n = 2.5", "expected a whole number"),
            (
                "rescan_interval = 60",
                "expected a duration string (e.g. \"30s\", \"5m\")",
            ),
            ("docker_root = 5", "expected a path (a string)"),
            ("rescan_jitter = \"0.1\"", "expected a number"),
            ("local = \"yes\"", "expected true or false"),
            ("log_format = true", "expected \"text\" or \"json\""),
            (
                "listen = 9847",
                "expected an address string (e.g. \"127.0.0.1:9847\")",
            ),
            ("log_level = [\"info\"]", "expected a string"),
        ];
        for (line, reason) in cases {
            let world = World::with_file(line);
            assert_eq!(
                world.problem(Face::Agent, &[], &[]),
                format!("{}: {line}: {reason}", world.path())
            );
        }
    }

    #[test]
    fn an_unknown_key_is_an_error_with_a_suggestion() {
        let world = World::with_file("rescan_intreval = \"5m\"\n");
        assert_eq!(
            world.problem(Face::Agent, &[], &[]),
            format!(
                "{}: rescan_intreval = \"5m\": unknown key (did you mean `rescan_interval`?)",
                world.path()
            )
        );
        let world = World::with_file("docker-root = \"/d\"\n");
        let err = world.problem(Face::Agent, &[], &[]);
        assert!(
            err.ends_with("unknown key (did you mean `docker_root`?)"),
            "{err}"
        );
        // Keys are flat: no sections, and the file cannot name another file.
        let world = World::with_file("config = \"/x.toml\"\n[agent]\ntop_n = 5\n");
        let err = world.load(Face::Agent, &[], &[]).unwrap_err();
        let reasons: Vec<&str> = err.problems.iter().map(|p| p.reason.as_str()).collect();
        assert_eq!(reasons, ["unknown key", "unknown key"], "{err}");
        assert!(
            err.problems[0].at.ends_with(": agent = { top_n = 5 }"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let world = World::with_file("top_n = 0\ntypo = 1\n");
        let env = [("HEADROOM_LISTEN", "nowhere")];
        let err = world
            .load(Face::Agent, &["--rescan-jitter", "1"], &env)
            .unwrap_err();
        let ats: Vec<&str> = err.problems.iter().map(|p| p.at.as_str()).collect();
        let path = world.path();
        assert_eq!(
            ats,
            [
                "HEADROOM_LISTEN=\"nowhere\"",
                "--rescan-jitter=\"1\"",
                &format!("{path}: top_n = 0"),
                &format!("{path}: typo = 1"),
            ]
        );
        assert_eq!(err.to_string().lines().count(), 4);
    }

    #[test]
    fn a_missing_named_file_is_an_error() {
        let world = World::with_file("");
        let missing = world.dir.path().join("nope.toml");
        let missing = missing.to_str().unwrap();
        let err = world.problem(Face::Agent, &["--config", missing], &[]);
        assert_eq!(
            err,
            format!(
                "--config={missing:?}: cannot read the config file: No such file or directory (os error 2)"
            )
        );
        assert_eq!(
            world.problem(Face::Agent, &["--config", ""], &[]),
            "--config=\"\": must not be empty"
        );
        let err = world.problem(Face::Agent, &[], &[("HEADROOM_CONFIG", missing)]);
        assert!(err.starts_with(&format!("HEADROOM_CONFIG={missing:?}: cannot read")));
    }

    #[test]
    fn the_config_flag_beats_the_variable() {
        let world = World::with_file("top_n = 4\n");
        let other = world.dir.path().join("other.toml");
        std::fs::write(&other, "top_n = 9\n").unwrap();
        let other = other.to_str().unwrap();
        let config = world.load(Face::Agent, &["--config", other], &[]).unwrap();
        assert_eq!(config.agent.top_n, 9);
    }

    #[test]
    fn an_absent_config_file_is_fine_an_unreadable_one_is_not() {
        let world = World::with_file("");
        let given = Given::default();
        let missing = world.dir.path().join("absent.toml");
        let config = Config::load_with_default(&given, Face::Status, &missing).unwrap();
        assert_eq!(config, Config::defaults(Face::Status));

        std::fs::write(&missing, "top_n = 3\n").unwrap();
        let config = Config::load_with_default(&given, Face::Status, &missing).unwrap();
        assert_eq!(config.agent.top_n, 3);

        let dir = world.dir.path();
        let err = Config::load_with_default(&given, Face::Status, dir).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read the config file: ", dir.display())),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_toml_is_named() {
        let world = World::with_file("top_n = \n");
        let err = world.problem(Face::Agent, &[], &[]);
        assert!(
            err.starts_with(&format!("{}: not valid TOML: ", world.path())),
            "{err}"
        );
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn flags_belong_to_their_face() {
        let parse = |argv: &[&str]| command().try_get_matches_from(argv).map(drop);
        assert!(parse(&["headroom", "status", "--local"]).is_ok());
        assert!(parse(&["headroom", "du", "--local"]).is_err());
        assert!(parse(&["headroom", "status", "--listen", "0.0.0.0:1"]).is_err());
        assert!(parse(&["headroom", "agent", "--agent-address", "0.0.0.0:1"]).is_err());
        assert!(parse(&[
            "headroom",
            "du",
            "--docker-root",
            "/d",
            "--log-level",
            "info"
        ])
        .is_ok());
    }

    #[test]
    fn only_headroom_variables_are_taken() {
        let matches = command().try_get_matches_from(["headroom", "du"]).unwrap();
        let (_, du) = matches.subcommand().unwrap();
        let env = [("HOME", "/root"), ("HEADROOM_TOP_N", "4")]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let given = Given::new(du, env);
        assert_eq!(given.env.keys().collect::<Vec<_>>(), ["HEADROOM_TOP_N"]);
        assert!(given.flags.is_empty());
    }

    /// `deploy/config.toml` with its `# key = value` lines uncommented.
    fn sample_uncommented() -> String {
        let sample = include_str!("../deploy/config.toml");
        let mut out = String::new();
        for line in sample.lines() {
            let setting = line.strip_prefix("# ").filter(|rest| {
                rest.split_once(" = ").is_some_and(|(key, _)| {
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
            });
            out.push_str(setting.unwrap_or(line));
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_sample_file_lists_every_key_with_its_default() {
        let uncommented = sample_uncommented();
        let table: toml::Table = toml::from_str(&uncommented).unwrap();
        let mut listed: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut known: Vec<&str> = registry(Face::Agent).iter().map(|k| k.key.name).collect();
        listed.sort_unstable();
        known.sort_unstable();
        assert_eq!(listed, known);

        let world = World::with_file(&uncommented);
        assert_eq!(
            world.load(Face::Agent, &[], &[]).unwrap(),
            Config::defaults(Face::Agent)
        );
        // As shipped (all commented out) it changes nothing either.
        let world = World::with_file(include_str!("../deploy/config.toml"));
        assert_eq!(
            world.load(Face::Agent, &[], &[]).unwrap(),
            Config::defaults(Face::Agent)
        );
    }

    #[test]
    fn help_shows_each_variable_and_default() {
        let mut cmd = command();
        let mut help = |face: Face| {
            let sub = cmd.find_subcommand_mut(face.name()).unwrap();
            let text = sub.render_help().to_string();
            // Undo the wrapping.
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        let agent = help(Face::Agent);
        assert!(
            agent.contains("--rescan-interval <DURATION> How often writable layers and logs are measured [env: HEADROOM_RESCAN_INTERVAL] [default: 1m]"),
            "{agent}"
        );
        assert!(agent.contains("[env: HEADROOM_CONFIG]"), "{agent}");
        assert!(
            agent.contains("[env: HEADROOM_LOG_LEVEL] [default: info]"),
            "{agent}"
        );
        let status = help(Face::Status);
        assert!(
            status.contains("[env: HEADROOM_LOG_LEVEL] [default: warn]"),
            "{status}"
        );
        assert!(
            status.contains(
                "--local Read this node here; do not ask the agent [env: HEADROOM_LOCAL]"
            ),
            "{status}"
        );
    }
}
