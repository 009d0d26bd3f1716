package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"

	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// embeddedLog makes an embedded broker's log part of Caddy's: its lines go
// through the gateway's logger, named embedded_broker, at Caddy's level and
// in Caddy's format, instead of plain text on stderr.
func embeddedLog(z *zap.Logger) *slog.Logger {
	name := z.Named("embedded_broker").Name() // a core has no name of its own
	return slog.New(connectionEnds{zapslog.NewHandler(z.Core(), zapslog.WithName(name))})
}

// connectionEnds words what mochi's listeners log without a message: a
// client connection that failed. One that merely ended (a device that lost
// power or network, a client gone without DISCONNECT) is everyday MQTT,
// not a warning: it becomes a debug line. So is a DISCONNECT asking for the
// will (reason 0x04), which the gateway sends for each dedicated client of
// an expired session: mochi returns it as an error, and would log it as
// two warnings, "error processing packet" with the whole packet and the
// listener's line; the first goes, the second is the debug line.
type connectionEnds struct{ slog.Handler }

func (h connectionEnds) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "error processing packet" && leftWithWill(r) {
		return nil
	}
	if r.Message == "" {
		r.Message = "client connection failed"
		if endedByPeer(r) || leftWithWill(r) {
			r.Message, r.Level = "client connection ended", slog.LevelDebug
			if !h.Handler.Enabled(ctx, r.Level) {
				return nil
			}
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h connectionEnds) WithAttrs(attrs []slog.Attr) slog.Handler {
	return connectionEnds{h.Handler.WithAttrs(attrs)}
}

func (h connectionEnds) WithGroup(name string) slog.Handler {
	return connectionEnds{h.Handler.WithGroup(name)}
}

// endedByPeer reports whether the record's error is the other side
// closing or resetting the connection.
func endedByPeer(r slog.Record) bool {
	ended := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "error" {
			ended = errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
				errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET)
			return false
		}
		return true
	})
	return ended
}

// leftWithWill reports whether the record's error is a client's DISCONNECT
// with reason 0x04, disconnect with will message.
func leftWithWill(r slog.Record) bool {
	will := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "error" {
			var code packets.Code
			will = errors.As(err, &code) && code == packets.CodeDisconnectWillMessage
			return false
		}
		return true
	})
	return will
}
