//! The `surefoot` process the demo runs, and what it asks of its API.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Limit of one API request.
const REQUEST_LIMIT: Duration = Duration::from_secs(5);

/// A running `surefoot run`.
pub(crate) struct Surefoot {
    child: Child,
    api: String,
    token: String,
    client: reqwest::Client,
}

impl Surefoot {
    /// Starts `binary run -c config` with `env`, its log into `log`.
    pub(crate) fn start(
        binary: &Path,
        config: &Path,
        env: &[(&str, String)],
        log: &Path,
        api: String,
        token: String,
    ) -> Result<Self, String> {
        let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(binary)
            .args(["run", "-c"])
            .arg(config)
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            // A group of its own: Ctrl-C reaches the demo, which stops surefoot in its turn.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let client = reqwest::Client::builder()
            .timeout(REQUEST_LIMIT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            child,
            api,
            token,
            client,
        })
    }

    /// `GET path` with the token, as JSON; `None` when it does not answer 200.
    pub(crate) async fn get(&self, path: &str) -> Option<serde_json::Value> {
        let response = self
            .client
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Whether `/health/ready` answers 200.
    pub(crate) async fn ready(&self) -> bool {
        let url = format!("{}/health/ready", self.api);
        matches!(self.client.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// The component's `detail` and `processed`, from `/api/v1/components`.
    pub(crate) async fn component(&self, id: &str) -> Option<(Option<String>, u64)> {
        let views = self.get("/api/v1/components").await?;
        let view = views.as_array()?.iter().find(|view| view["id"] == id)?;
        let detail = view["detail"].as_str().map(str::to_owned);
        Some((detail, view["processed"].as_u64().unwrap_or(0)))
    }

    /// Whether the process has exited, and how.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then waits up to `bound` for the exit.
    pub(crate) async fn stop(
        mut self,
        bound: Duration,
    ) -> Result<std::process::ExitStatus, String> {
        let pid = self.child.id().ok_or("surefoot has already exited")?;
        let pid = Pid::from_raw(i32::try_from(pid).map_err(|e| e.to_string())?);
        kill(pid, Signal::SIGTERM).map_err(|e| format!("SIGTERM: {e}"))?;
        match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(status) => status.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "surefoot did not exit within {} s",
                bound.as_secs()
            )),
        }
    }
}
