//! Crash points for the fault tests (docs/CHAOS.md): places where a node stops dead, as a power
//! cut or kill -9 would stop it, so that a test can prove nothing acknowledged is lost when it
//! happens exactly there.
//!
//! Compiled in only with the `failpoints` feature, and armed only by the `FAILPOINTS`
//! environment variable of the `fail` crate: `FAILPOINTS='log_after_fsync_before_ack=50*off->return'`
//! passes the point 50 times, then aborts the process at it.

/// Arms the points named in `FAILPOINTS` for as long as the value lives (the node's `main`
/// holds it). Without the feature it does nothing.
#[must_use = "the crash points are disarmed when this is dropped"]
pub struct CrashPoints {
    #[cfg(feature = "failpoints")]
    _scenario: fail::FailScenario<'static>,
}

impl CrashPoints {
    pub fn from_env() -> CrashPoints {
        CrashPoints {
            #[cfg(feature = "failpoints")]
            _scenario: fail::FailScenario::setup(),
        }
    }
}

impl std::fmt::Debug for CrashPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if cfg!(feature = "failpoints") {
            "CrashPoints(armed from FAILPOINTS)"
        } else {
            "CrashPoints(off)"
        })
    }
}

/// Aborts the process here when the point `name` is armed with the `return` action.
#[inline]
pub fn crash_point(name: &str) {
    #[cfg(feature = "failpoints")]
    if fail::eval(name, |_| ()).is_some() {
        eprintln!("crash point {name}: aborting");
        std::process::abort();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Every crash point in the code (CHAOS.md §4.1).
pub const CRASH_POINTS: [&str; 5] = [
    "log_before_fsync",
    "log_after_fsync_before_ack",
    "sm_apply_before_commit_offset",
    "snapshot_before_install",
    "meta_before_assign",
];

/// Why a crash point could not be armed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrashPointError {
    #[error("no crash point {0}; there are {CRASH_POINTS:?}")]
    Unknown(String),
    #[error("this node was built without the failpoints feature")]
    NotBuilt,
    #[error("crash point {name}: bad action: {reason}")]
    BadAction { name: String, reason: String },
}

/// Arms (or, with `off`, disarms) a crash point while the node runs; `action` is a `fail`
/// action such as `return` (crash at the next pass) or `20*off->return`.
pub fn arm_crash_point(name: &str, action: &str) -> Result<(), CrashPointError> {
    if !CRASH_POINTS.contains(&name) {
        return Err(CrashPointError::Unknown(name.to_string()));
    }
    #[cfg(feature = "failpoints")]
    return fail::cfg(name, action)
        .map_err(|reason| CrashPointError::BadAction { name: name.to_string(), reason });
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = action;
        Err(CrashPointError::NotBuilt)
    }
}
