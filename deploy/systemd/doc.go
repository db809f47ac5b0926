// Package systemd holds the systemd units that run vantage on a host. It has
// no Go code of its own: it exists so that `go test ./deploy/systemd` checks
// the units' hardening and flags whenever they (or the binaries' flags)
// change, instead of a typo surfacing on a production host.
package systemd
