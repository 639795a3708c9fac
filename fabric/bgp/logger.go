package bgp

import (
	"context"
	"log/slog"
	"slices"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// gobgpLogger hands gobgp's logging to slog. gobgp asks GetLevel before building costly debug
// messages, so the level is read from the handler rather than stored.
type gobgpLogger struct{ l *slog.Logger }

func newGobgpLogger(l *slog.Logger) gobgplog.Logger {
	return gobgpLogger{l.With(slog.String("component", "gobgp"))}
}

func (g gobgpLogger) log(level slog.Level, msg string, fields gobgplog.Fields) {
	ctx := context.Background()
	if !g.l.Enabled(ctx, level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys) // map order would shuffle the attributes on every line
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, fields[k]))
	}
	g.l.LogAttrs(ctx, level, msg, attrs...)
}

// Panic and Fatal only log: a library must not end the process, and gobgp uses Fatal only
// for its gRPC listener, which the speaker never starts.
func (g gobgpLogger) Panic(msg string, f gobgplog.Fields) { g.log(slog.LevelError, msg, f) }
func (g gobgpLogger) Fatal(msg string, f gobgplog.Fields) { g.log(slog.LevelError, msg, f) }
func (g gobgpLogger) Error(msg string, f gobgplog.Fields) { g.log(slog.LevelError, msg, f) }
func (g gobgpLogger) Warn(msg string, f gobgplog.Fields)  { g.log(slog.LevelWarn, msg, f) }
func (g gobgpLogger) Info(msg string, f gobgplog.Fields)  { g.log(slog.LevelInfo, msg, f) }
func (g gobgpLogger) Debug(msg string, f gobgplog.Fields) { g.log(slog.LevelDebug, msg, f) }

// SetLevel is ignored: the level belongs to the slog handler the caller configured.
func (g gobgpLogger) SetLevel(gobgplog.LogLevel) {}

func (g gobgpLogger) GetLevel() gobgplog.LogLevel {
	ctx := context.Background()
	switch {
	case g.l.Enabled(ctx, slog.LevelDebug):
		return gobgplog.DebugLevel
	case g.l.Enabled(ctx, slog.LevelInfo):
		return gobgplog.InfoLevel
	case g.l.Enabled(ctx, slog.LevelWarn):
		return gobgplog.WarnLevel
	default:
		return gobgplog.ErrorLevel
	}
}
