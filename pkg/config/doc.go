// Package config owns the daemon's TOML configuration: its schema, its
// defaults (printed by `cri-runtimed config default`) and validation with
// errors that name the offending key.
package config
