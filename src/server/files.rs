//! File descriptors: every connection a listener holds is one, so the caps must fit under the
//! process's limit. At start the soft `RLIMIT_NOFILE` is raised to the hard one, and caps that
//! cannot fit under it are refused, naming the settings, rather than found out as "Too many
//! open files" when a flood arrives.

use tracing::{info, warn};

use super::ServerError;
use crate::config::{invalid, Config};

/// Descriptors kept for everything but the listeners' connections: Kafka's sockets, snapshot
/// and state files, the replicas' channels, outgoing alert deliveries, the runtime.
pub(super) const RESERVED_FILES: u64 = 256;

/// Raises the soft limit on open files to the hard one; refuses caps that need more.
pub(super) fn fit_open_files(config: &Config) -> Result<(), ServerError> {
    let limit = raise_to_hard_limit();
    let http_listeners = 1 + u64::from(config.ops_addr.is_some());
    let grpc = config.max_grpc_connections as u64;
    let http = config.max_http_connections as u64;
    let needed = grpc + http * http_listeners + RESERVED_FILES;
    if needed > limit {
        return Err(ServerError::Config(invalid(
            "max_grpc_connections",
            format!(
                "max_grpc_connections ({grpc}) and max_http_connections ({http} on each of \
                 {http_listeners} HTTP listeners), with {RESERVED_FILES} descriptors kept for \
                 the rest, need {needed} open files, but the limit (RLIMIT_NOFILE) is {limit}: \
                 lower the caps, or raise the limit (ulimit -n, LimitNOFILE=)"
            ),
        )));
    }
    Ok(())
}

/// The soft limit after raising it as far as allowed.
#[allow(unsafe_code)]
fn raise_to_hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        warn!("cannot read the open-files limit; assuming the connection caps fit");
        return u64::MAX;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            info!(
                from = limit.rlim_cur,
                to = limit.rlim_max,
                "raised the open-files limit"
            );
            return limit.rlim_max;
        }
        warn!(
            soft = limit.rlim_cur,
            hard = limit.rlim_max,
            "cannot raise the open-files limit"
        );
    }
    limit.rlim_cur
}
