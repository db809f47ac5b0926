package collector

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// gobgpLogger hands GoBGP's log lines to the collector's slog.Logger.
// GoBGP's Info lines (every state change of every peer, every config
// step) are logged at Debug: the collector logs the session events that
// matter itself. Warn and Error stay. Fatal is logged at Error and does
// not exit: the collector must not take the controller down with it.
// Panic panics, as GoBGP expects (it marks its own logic bugs).
type gobgpLogger struct {
	log *slog.Logger
}

func (l gobgpLogger) emit(level slog.Level, msg string, fields gobgplog.Fields) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, fields[k]))
	}
	l.log.LogAttrs(ctx, level, msg, attrs...)
}

func (l gobgpLogger) Panic(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
	panic(fmt.Sprintf("gobgp: %s %v", msg, fields))
}

func (l gobgpLogger) Fatal(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
}

func (l gobgpLogger) Error(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelError, msg, fields)
}

func (l gobgpLogger) Warn(msg string, fields gobgplog.Fields) { l.emit(slog.LevelWarn, msg, fields) }
func (l gobgpLogger) Info(msg string, fields gobgplog.Fields) { l.emit(slog.LevelDebug, msg, fields) }

func (l gobgpLogger) Debug(msg string, fields gobgplog.Fields) {
	l.emit(slog.LevelDebug-4, msg, fields)
}

// SetLevel is a no-op: the slog handler decides.
func (l gobgpLogger) SetLevel(gobgplog.LogLevel) {}

// GetLevel tells GoBGP whether its debug lines would be kept, so it can
// skip building them.
func (l gobgpLogger) GetLevel() gobgplog.LogLevel {
	switch ctx := context.Background(); {
	case l.log.Enabled(ctx, slog.LevelDebug-4):
		return gobgplog.DebugLevel
	case l.log.Enabled(ctx, slog.LevelDebug):
		return gobgplog.InfoLevel
	case l.log.Enabled(ctx, slog.LevelWarn):
		return gobgplog.WarnLevel
	}
	return gobgplog.ErrorLevel
}
