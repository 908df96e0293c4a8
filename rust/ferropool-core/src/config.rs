//! Pool configuration and its validation.
//!
//! Validation lives here so every front end (the Python binding today) gets
//! the same rules and the same messages: each error names the parameter and
//! the value that was refused. Defaults do not: the front end owns them
//! (psycopg_pool's, in Python), so `Config` has no `Default` and every
//! setting is spelled out where a pool is built. This module must never
//! pick a value the caller did not give.

use std::fmt;
use std::time::Duration;

/// Sizes and lifetimes of one pool. Every optional duration is an
/// `Option<Duration>`, `None` meaning "off" (the one convention, also in
/// Python, where it is `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Used in error messages only.
    pub name: String,
    /// Connections kept open even when idle.
    pub min_size: usize,
    /// Upper bound on idle + in use + being created. `0` means no bound
    /// (only meaningful for null pools, as in psycopg_pool).
    pub max_size: usize,
    /// Requests allowed to queue; `0` means no bound.
    pub max_waiting: usize,
    /// A connection is retired after this long (minus up to
    /// `lifetime_jitter` of it, so connections do not all expire together).
    pub max_lifetime: Duration,
    /// Fraction of `max_lifetime` removed at random from each connection's
    /// lifetime, in [0, 1).
    pub lifetime_jitter: f64,
    /// An idle connection above `min_size` is closed after this long unused.
    pub max_idle: Duration,
    /// How long failed connection attempts are retried before giving up.
    pub reconnect_timeout: Duration,
    /// A connection is retired after this many checkouts; `0` means no bound.
    pub max_uses: u64,
    /// How many connections may be opened at once to serve waiting requests.
    pub max_connecting: usize,
    /// Checkout order among idle connections: `false` spreads use over them
    /// (each checkout starts looking after the slot lent last, so sequential
    /// requests rotate as with psycopg_pool's FIFO deque); `true` lends the
    /// lowest idle slot first (the connection used last is reused: hot
    /// caches, and idle surplus above min_size ages out under light load,
    /// as SQLAlchemy's `pool_use_lifo`).
    pub lifo: bool,
    /// Null pool: connections are not kept after use; the requesting thread
    /// opens its own connection when there is capacity.
    pub null: bool,
    /// Liveness check on checkout: a connection idle for longer than this
    /// has its socket polled (no query); `None` turns the check off.
    pub liveness_bypass: Option<Duration>,
    /// Idle connections unused for this long are pinged in the background;
    /// `None` turns keepalive pings off.
    pub keepalive_interval: Option<Duration>,
    /// A lease held longer than this is reported once as a leak; `None`
    /// turns leak detection off.
    pub leak_timeout: Option<Duration>,
}

/// A refused configuration value: which parameter, which value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub param: &'static str,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}, got {}", self.param, self.reason, self.value)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(param: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Self {
            param,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// "Never" as a duration: what `+inf` seconds saturate to, and with them any
/// span the core's nanosecond clock cannot reach (about 584 years). One
/// nanosecond short of `u64::MAX` nanoseconds, so that a setting of "never"
/// is never mistaken for the `u64::MAX` some settings use for "off": a
/// liveness window that never ends still leaves the hang-up watch on.
pub const FOREVER: Duration = Duration::from_nanos(u64::MAX - 1);

/// Seconds as given by a user (a float) to a `Duration`, refusing NaN and
/// negative values with a message naming the parameter. `+inf` means
/// "never" (psycopg_pool takes it for "no limit"): it and any span longer
/// than the clock reaches become [`FOREVER`].
pub fn seconds(param: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if value.is_nan() {
        return Err(ConfigError::new(
            param,
            value,
            "must be a number of seconds",
        ));
    }
    if value < 0.0 {
        return Err(ConfigError::new(param, value, "cannot be negative"));
    }
    Ok(Duration::try_from_secs_f64(value).map_or(FOREVER, |d| d.min(FOREVER)))
}

/// A duration as seconds for a user: [`FOREVER`] reads back as `+inf`.
pub fn as_seconds(d: Duration) -> f64 {
    if d >= FOREVER {
        f64::INFINITY
    } else {
        d.as_secs_f64()
    }
}

/// Like [`seconds`] but also refusing zero.
pub fn positive_seconds(param: &'static str, value: f64) -> Result<Duration, ConfigError> {
    let d = seconds(param, value)?;
    if d.is_zero() {
        return Err(ConfigError::new(param, value, "must be greater than 0"));
    }
    Ok(d)
}

/// The largest pool the core accepts; far above any server's
/// max_connections, and it keeps slot indexes within 32 bits.
pub const MAX_POOL_SIZE: usize = 1 << 24;

impl Config {
    /// Check sizes against each other, with psycopg_pool's rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_sizes(self.min_size, self.max_size, self.null)?;
        positive("max_lifetime", self.max_lifetime)?;
        positive("max_idle", self.max_idle)?;
        if !(0.0..1.0).contains(&self.lifetime_jitter) {
            return Err(ConfigError::new(
                "lifetime_jitter",
                self.lifetime_jitter,
                "must be in [0, 1)",
            ));
        }
        positive_or_off("keepalive_interval", self.keepalive_interval)?;
        positive_or_off("leak_timeout", self.leak_timeout)?;
        if self.max_connecting == 0 {
            return Err(ConfigError::new("max_connecting", 0, "must be at least 1"));
        }
        if self.max_waiting > MAX_POOL_SIZE * 64 {
            return Err(ConfigError::new(
                "max_waiting",
                self.max_waiting,
                "is too large",
            ));
        }
        Ok(())
    }

    /// The bound on idle + in use + being created, with "no bound" spelled
    /// as the largest pool the core can hold.
    pub fn capacity(&self) -> usize {
        capacity_of(self.max_size)
    }
}

/// max_size as a bound: 0 ("no bound") is the largest pool the core holds.
pub fn capacity_of(max_size: usize) -> usize {
    if max_size == 0 {
        MAX_POOL_SIZE
    } else {
        max_size
    }
}

/// A duration that must be greater than zero.
pub fn positive(param: &'static str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::new(param, 0, "must be greater than 0"));
    }
    Ok(d)
}

/// An optional duration: `None` turns the feature off; zero is refused.
pub fn positive_or_off(
    param: &'static str,
    d: Option<Duration>,
) -> Result<Option<Duration>, ConfigError> {
    if d.is_some_and(|d| d.is_zero()) {
        return Err(ConfigError::new(
            param,
            0,
            "must be greater than 0 (or None)",
        ));
    }
    Ok(d)
}

/// psycopg_pool's size rules, with the offending values in the messages.
pub fn validate_sizes(min_size: usize, max_size: usize, null: bool) -> Result<(), ConfigError> {
    if null && min_size != 0 {
        return Err(ConfigError::new(
            "min_size",
            min_size,
            "must be 0 for null pools",
        ));
    }
    if max_size > MAX_POOL_SIZE {
        return Err(ConfigError::new(
            "max_size",
            max_size,
            format!("must be at most {MAX_POOL_SIZE}"),
        ));
    }
    if !null && max_size < min_size {
        return Err(ConfigError::new(
            "max_size",
            max_size,
            format!("must be greater or equal than min_size ({min_size})"),
        ));
    }
    if !null && min_size == 0 && max_size == 0 {
        return Err(ConfigError::new(
            "max_size",
            0,
            "must be greater than 0 if min_size is 0",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            name: "test".into(),
            min_size: 1,
            max_size: 2,
            max_waiting: 0,
            max_lifetime: Duration::from_secs(60),
            lifetime_jitter: 0.05,
            max_idle: Duration::from_secs(60),
            reconnect_timeout: Duration::from_secs(60),
            max_uses: 0,
            max_connecting: 1,
            lifo: false,
            null: false,
            liveness_bypass: None,
            keepalive_interval: None,
            leak_timeout: None,
        }
    }

    #[test]
    fn validate_names_the_refused_setting() {
        config().validate().unwrap();
        let refused = |c: Config| c.validate().unwrap_err().param;
        assert_eq!(
            refused(Config {
                max_connecting: 0,
                ..config()
            }),
            "max_connecting"
        );
        assert_eq!(
            refused(Config {
                keepalive_interval: Some(Duration::ZERO),
                ..config()
            }),
            "keepalive_interval"
        );
        assert_eq!(
            refused(Config {
                lifetime_jitter: 1.0,
                ..config()
            }),
            "lifetime_jitter"
        );
        // liveness_bypass zero is meaningful: poll at every checkout.
        Config {
            liveness_bypass: Some(Duration::ZERO),
            ..config()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn errors_name_parameter_and_value() {
        let err = validate_sizes(5, 2, false).unwrap_err();
        assert_eq!(err.param, "max_size");
        assert_eq!(
            err.to_string(),
            "max_size must be greater or equal than min_size (5), got 2"
        );
        let err = seconds("timeout", -1.5).unwrap_err();
        assert_eq!(err.to_string(), "timeout cannot be negative, got -1.5");
        assert!(seconds("timeout", f64::NAN).is_err());
        assert_eq!(
            seconds("timeout", f64::NEG_INFINITY)
                .unwrap_err()
                .to_string(),
            "timeout cannot be negative, got -inf"
        );
        assert!(positive_seconds("timeout", 0.0).is_err());
        assert!(validate_sizes(0, 0, false).is_err());
        assert!(validate_sizes(0, 0, true).is_ok());
        assert!(validate_sizes(1, 3, true).is_err());
    }

    #[test]
    fn infinity_means_never() {
        assert_eq!(seconds("max_lifetime", f64::INFINITY), Ok(FOREVER));
        assert_eq!(positive_seconds("max_idle", f64::INFINITY), Ok(FOREVER));
        // Longer than the clock reaches is never too.
        assert_eq!(seconds("timeout", 1e300), Ok(FOREVER));
        assert_eq!(seconds("timeout", 1e12), Ok(FOREVER));
        assert_eq!(as_seconds(FOREVER), f64::INFINITY);
        assert_eq!(as_seconds(Duration::MAX), f64::INFINITY);
        assert_eq!(as_seconds(Duration::from_millis(1500)), 1.5);
        // Stored as nanoseconds, it is not the "off" sentinel u64::MAX.
        assert_ne!(crate::clock::saturating_nanos(FOREVER), u64::MAX);
    }
}
