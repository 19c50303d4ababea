//! The service's life as systemd and an operator see it: `sd_notify` (READY, RELOADING,
//! STOPPING, the watchdog) and, started as root, the switch to an unprivileged user once every
//! listener is bound (docs/design/0023-packaging-and-lifecycle.md).
//!
//! ```text
//!  serve: open store, load orders, bind every listener ─► give_data_dir (chown DATA_DIR and
//!         what root wrote there) ─► drop_to (setgroups, setgid, setuid) ─► READY=1 ─► watchdog
//!  SIGHUP: RELOADING=1 + MONOTONIC_USEC ─► reloads ─► READY=1
//!  SIGTERM/SIGINT: STOPPING=1 ─► drain ─► exit
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use nix::unistd::{Gid, Uid, User};
use sd_notify::NotifyState;
use tracing::{debug, info, warn};

/// The user `juris serve` switches to, started as root without `--user`, when it exists.
pub const DEFAULT_USER: &str = "juris";

/// Tells the service manager (when `NOTIFY_SOCKET` is set; nothing otherwise).
fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!(%error, "sd_notify failed");
    }
}

/// Startup is done: listeners bound, policy loaded.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A SIGHUP reload begins (`Type=notify-reload` wants the monotonic time with it).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

/// Shutdown begins.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, when the manager set one for us.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| (timeout / 2).max(Duration::from_millis(10)))
}

/// One watchdog ping.
pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// An account to run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Looks an account up in the system's user database.
pub fn lookup(name: &str) -> anyhow::Result<Option<Account>> {
    let user = User::from_name(name).with_context(|| format!("cannot look user {name:?} up"))?;
    Ok(user.map(|user| Account {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

/// Whom to switch to after binding: `--user NAME` (`root`, or any account of uid 0, keeps
/// root); without it, [`DEFAULT_USER`] when running as root and that account exists. `None`:
/// stay as we are. Switching needs root; asking for another user without it is an error.
pub fn plan(
    requested: Option<&str>,
    euid: u32,
    lookup: impl Fn(&str) -> anyhow::Result<Option<Account>>,
) -> anyhow::Result<Option<Account>> {
    match requested {
        Some(name) => {
            let account =
                lookup(name)?.ok_or_else(|| anyhow::anyhow!("--user {name}: no such user"))?;
            if account.uid == euid || account.uid == 0 {
                Ok(None)
            } else if euid != 0 {
                Err(anyhow::anyhow!(
                    "--user {name}: only root can switch users (running as uid {euid})"
                ))
            } else {
                Ok(Some(account))
            }
        }
        None if euid == 0 => match lookup(DEFAULT_USER)? {
            Some(account) if account.uid != 0 => Ok(Some(account)),
            _ => {
                warn!(
                    "running as root: there is no user {DEFAULT_USER:?} to switch to after \
                     binding (create it, or pass --user NAME)"
                );
                Ok(None)
            }
        },
        None => Ok(None),
    }
}

/// Before the switch: the state directory and what root wrote in it become the account's (not
/// recursive: the store, its WAL files and status.json live at the top).
pub fn give_data_dir(account: &Account, data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let chown = |path: &Path| {
        std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)).with_context(|| {
            format!(
                "server.data_dir: cannot give {} to user {}",
                path.display(),
                account.name
            )
        })
    };
    chown(data_dir)?;
    let entries = std::fs::read_dir(data_dir)
        .with_context(|| format!("server.data_dir: cannot read {}", data_dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("server.data_dir: cannot read {}", data_dir.display()))?
            .path();
        let metadata = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if metadata.uid() == 0 && !metadata.file_type().is_symlink() {
            debug!(path = %path.display(), "giving to {}", account.name);
            chown(&path)?;
        }
    }
    Ok(())
}

/// Switches every thread of the process to `account` for good (supplementary groups, group,
/// user), then checks that root cannot be regained.
pub fn drop_to(account: &Account) -> anyhow::Result<()> {
    let gid = Gid::from_raw(account.gid);
    let uid = Uid::from_raw(account.uid);
    let context = |what: &str| format!("cannot switch to user {} ({what})", account.name);
    nix::unistd::setgroups(&[gid]).with_context(|| context("setgroups"))?;
    nix::unistd::setgid(gid).with_context(|| context("setgid"))?;
    nix::unistd::setuid(uid).with_context(|| context("setuid"))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() || nix::unistd::geteuid() != uid {
        anyhow::bail!("{}: root could be regained", context("check"));
    }
    info!(
        user = %account.name,
        uid = account.uid,
        gid = account.gid,
        "listeners bound; running as {} from here on",
        account.name
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    fn accounts(name: &str) -> anyhow::Result<Option<Account>> {
        let account = |uid| {
            Some(Account {
                name: name.to_owned(),
                uid,
                gid: uid,
            })
        };
        Ok(match name {
            "root" => account(0),
            "juris" => account(120),
            "nobody" => account(65534),
            _ => None,
        })
    }

    fn no_juris(name: &str) -> anyhow::Result<Option<Account>> {
        if name == "juris" {
            Ok(None)
        } else {
            accounts(name)
        }
    }

    #[test]
    fn root_without_user_switches_to_juris_when_it_exists() {
        assert_eq!(plan(None, 0, accounts).unwrap().unwrap().uid, 120);
        assert_eq!(plan(None, 0, no_juris).unwrap(), None);
    }

    #[test]
    fn an_unprivileged_start_stays_as_it_is() {
        assert_eq!(plan(None, 1000, accounts).unwrap(), None);
        // Already the user asked for (systemd's User=juris with --user juris).
        assert_eq!(plan(Some("juris"), 120, accounts).unwrap(), None);
    }

    #[test]
    fn user_flag_is_obeyed_or_refused_with_the_reason() {
        assert_eq!(
            plan(Some("nobody"), 0, accounts).unwrap().unwrap().uid,
            65534
        );
        assert_eq!(plan(Some("root"), 0, accounts).unwrap(), None);
        let error = plan(Some("nobody"), 1000, accounts)
            .unwrap_err()
            .to_string();
        assert!(error.contains("only root can switch users"), "{error}");
        let error = plan(Some("ghost"), 0, accounts).unwrap_err().to_string();
        assert!(error.contains("--user ghost: no such user"), "{error}");
    }
}
