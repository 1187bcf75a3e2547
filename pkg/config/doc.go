// Package config owns the daemon's TOML configuration: its schema, its
// defaults (printed by `cri-runtimed config default`), validation with
// errors that name the offending key, and the table of keys (keys.go)
// saying which ones SIGHUP applies to the running daemon, in which group,
// and why the others need a restart.
package config
