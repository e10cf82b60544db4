//! The Prometheus source: the agents a Prometheus server scrapes, from its
//! active targets (`/api/v1/targets?state=active`), the way most clusters
//! already know every agent. A target that is down is asked too: it is
//! then unknown, which is the point.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::Agent;

/// The job regex of the alerts (deploy/prometheus/headroom.rules.yml).
pub const DEFAULT_JOB: &str = ".*headroom.*";

/// The largest targets document read.
pub const MAX_TARGETS_BYTES: u64 = 64 << 20;

/// Why the targets cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    /// The job regex does not compile.
    #[error("--prometheus-job {job:?} is not a regex: {source}")]
    Job {
        /// The regex as given.
        job: String,
        /// Why.
        source: Box<regex::Error>,
    },
    /// The server could not be asked.
    #[error("cannot ask Prometheus at {url}: {message}")]
    Request {
        /// The targets URL.
        url: String,
        /// Why.
        message: String,
    },
    /// Its answer is not a targets document.
    #[error("Prometheus at {url} answered no targets document: {message}")]
    Document {
        /// The targets URL.
        url: String,
        /// Why.
        message: String,
    },
    /// No active target's job matches.
    #[error("no active target of Prometheus at {url} has a job matching {job:?}")]
    NoTarget {
        /// The targets URL.
        url: String,
        /// The job regex.
        job: String,
    },
}

/// The part of the targets document read.
#[derive(Debug, Deserialize)]
struct Document {
    data: Data,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "activeTargets", default)]
    active_targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
struct Target {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(rename = "scrapeUrl", default)]
    scrape_url: String,
}

/// The job regex as Prometheus matches labels: anchored at both ends.
pub fn job_regex(job: &str) -> Result<Regex, TargetsError> {
    Regex::new(&format!("^(?:{job})$")).map_err(|e| TargetsError::Job {
        job: job.to_string(),
        source: Box::new(e),
    })
}

/// The agents of the Prometheus server at `base` (its URL, e.g.
/// `http://prometheus:9090`) whose job matches `job`.
pub fn agents(base: &str, job: &str, timeout: Duration) -> Result<Vec<Agent>, TargetsError> {
    let regex = job_regex(job)?;
    let url = targets_url(base);
    let request = |message: String| TargetsError::Request {
        url: url.clone(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut response = agent.get(&url).call().map_err(|e| request(e.to_string()))?;
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_TARGETS_BYTES)
        .read_to_vec()
        .map_err(|e| request(e.to_string()))?;
    let found = from_document(&body, &regex).map_err(|message| TargetsError::Document {
        url: url.clone(),
        message,
    })?;
    if found.is_empty() {
        return Err(TargetsError::NoTarget {
            url,
            job: job.to_string(),
        });
    }
    Ok(found)
}

/// `base`'s targets endpoint, active targets only.
fn targets_url(base: &str) -> String {
    format!("{}/api/v1/targets?state=active", base.trim_end_matches('/'))
}

/// The agents in a targets document: every active target whose `job`
/// matches, reached at its scrape URL's `host:port`, named by its `node`
/// label, else its `instance`. A target whose scrape URL names no host is
/// left out; one scraped twice is asked once.
pub fn from_document(body: &[u8], job: &Regex) -> Result<Vec<Agent>, String> {
    let document: Document = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut agents: Vec<Agent> = Vec::new();
    for target in document.data.active_targets {
        let matches = target.labels.get("job").is_some_and(|j| job.is_match(j));
        let Some(address) = host_port(&target.scrape_url).filter(|_| matches) else {
            continue;
        };
        if agents.iter().any(|a| a.address == address) {
            continue;
        }
        let node = ["node", "instance"]
            .iter()
            .find_map(|key| target.labels.get(*key))
            .cloned()
            .unwrap_or_else(|| address.to_string());
        agents.push(Agent {
            node,
            address: address.to_string(),
        });
    }
    Ok(agents)
}

/// The `host:port` of a scrape URL (`http://10.0.0.7:9847/metrics`).
fn host_port(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    authority.contains(':').then_some(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGETS: &str = r#"{"status":"success","data":{"activeTargets":[
      {"labels":{"job":"headroom","instance":"10.0.0.1:9847","node":"node-a"},
       "scrapeUrl":"http://10.0.0.1:9847/metrics","health":"up"},
      {"labels":{"job":"monitoring/headroom-agent","instance":"10.0.0.2:9847"},
       "scrapeUrl":"http://10.0.0.2:9847/metrics","health":"down"},
      {"labels":{"job":"node-exporter","instance":"10.0.0.1:9100"},
       "scrapeUrl":"http://10.0.0.1:9100/metrics","health":"up"},
      {"labels":{"job":"headroom","instance":"dup"},
       "scrapeUrl":"http://10.0.0.1:9847/metrics","health":"up"}
    ],"droppedTargets":[]}}"#;

    #[test]
    fn every_active_target_of_the_job_is_an_agent_up_or_down() {
        let agents = from_document(TARGETS.as_bytes(), &job_regex(DEFAULT_JOB).unwrap()).unwrap();
        assert_eq!(
            agents,
            [
                Agent {
                    node: "node-a".into(),
                    address: "10.0.0.1:9847".into()
                },
                Agent {
                    node: "10.0.0.2:9847".into(),
                    address: "10.0.0.2:9847".into()
                },
            ]
        );
    }

    #[test]
    fn the_job_regex_is_anchored_like_prometheus() {
        let agents = from_document(TARGETS.as_bytes(), &job_regex("headroom").unwrap()).unwrap();
        assert_eq!(agents.len(), 1);
        assert!(job_regex("(").is_err());
    }

    #[test]
    fn fault_a_document_that_is_not_one_is_an_error() {
        let job = job_regex(DEFAULT_JOB).unwrap();
        assert!(from_document(b"<html>", &job).is_err());
        assert!(from_document(br#"{"data":{}}"#, &job).unwrap().is_empty());
    }

    #[test]
    fn scrape_urls_give_host_and_port() {
        assert_eq!(host_port("http://a:1/metrics"), Some("a:1"));
        assert_eq!(host_port("https://u:p@[::1]:9/x?y"), Some("[::1]:9"));
        assert_eq!(host_port("no-scheme"), None);
        assert_eq!(
            targets_url("http://p:9090/"),
            "http://p:9090/api/v1/targets?state=active"
        );
    }
}
