package session

import (
	"slices"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A gateway outlives config reloads, and so do its sessions and broker
// connections, which keep the loggers they were given. Caddy gives each
// config a logger of its own: a reload that changes the log's output,
// level or format would leave every session, hub and "session opened"
// line writing through the first config's. So the manager's logger writes
// through a core that Reconfigure points at the running config's, and
// every logger derived from it follows.

// reloadableCore is a zapcore.Core that writes to the core of the current
// config's logger, with the fields its loggers added (With).
type reloadableCore struct {
	current *atomic.Pointer[zapcore.Core] // shared by every core derived by With
	fields  []zapcore.Field
}

// newReloadableLogger returns l (its name and options: caller,
// stacktrace) writing through l's core until set is given another
// logger's.
func newReloadableLogger(l *zap.Logger) (log *zap.Logger, set func(*zap.Logger)) {
	current := &atomic.Pointer[zapcore.Core]{}
	set = func(l *zap.Logger) {
		core := l.Core()
		current.Store(&core)
	}
	set(l)
	reloadable := &reloadableCore{current: current}
	return l.WithOptions(zap.WrapCore(func(zapcore.Core) zapcore.Core { return reloadable })), set
}

func (c *reloadableCore) core() zapcore.Core {
	core := *c.current.Load()
	if len(c.fields) > 0 {
		core = core.With(c.fields)
	}
	return core
}

func (c *reloadableCore) Enabled(l zapcore.Level) bool { return (*c.current.Load()).Enabled(l) }

func (c *reloadableCore) With(fields []zapcore.Field) zapcore.Core {
	return &reloadableCore{current: c.current, fields: append(slices.Clip(c.fields), fields...)}
}

// Check hands the entry to the current core, which writes it itself.
func (c *reloadableCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return c.core().Check(e, ce)
}

func (c *reloadableCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	return c.core().Write(e, fields)
}

func (c *reloadableCore) Sync() error { return (*c.current.Load()).Sync() }
