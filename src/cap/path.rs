//! Where the cap runs: the host loop or a ggml graph on the tensor's own backend.

use std::fmt;
use std::str::FromStr;

/// The environment variable that picks the [`CapPath`] of sessions that do not set one.
pub const CAP_PATH_ENV: &str = "ACAP_CAP_PATH";

/// How the eval callback applies the cap to a block's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapPath {
    /// A block output in host memory is capped by the host loop; one in device memory (a GPU)
    /// by a small ggml graph on that device, so activations never travel to the host.
    #[default]
    Auto,
    /// Always the host loop: device tensors are copied to the host, capped and copied back.
    Host,
    /// Always the ggml graph, on the backend of the tensor's device (the CPU backend for host
    /// memory): the GPU path, testable without a GPU.
    Graph,
}

impl CapPath {
    /// The path named by `ACAP_CAP_PATH`, `None` when it is unset or empty.
    ///
    /// # Errors
    /// The variable's value when it is not `auto`, `host` or `graph` (or not Unicode).
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(CAP_PATH_ENV) {
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => v.parse().map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(v)) => Err(format!("{v:?}")),
        }
    }

    /// The name `ACAP_CAP_PATH` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Host => "host",
            Self::Graph => "graph",
        }
    }
}

impl FromStr for CapPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "host" => Ok(Self::Host),
            "graph" => Ok(Self::Graph),
            other => Err(other.to_owned()),
        }
    }
}

impl fmt::Display for CapPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::CapPath;

    #[test]
    fn parses_the_three_names_only() {
        for p in [CapPath::Auto, CapPath::Host, CapPath::Graph] {
            assert_eq!(p.name().parse::<CapPath>(), Ok(p));
        }
        for bad in ["", "GRAPH", "gpu", "host "] {
            assert_eq!(bad.parse::<CapPath>(), Err(bad.to_owned()));
        }
    }
}
