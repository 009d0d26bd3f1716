package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// frameReader reads the frames of a /stream response one at a time.
type frameReader struct {
	r    *bufio.Reader
	body io.Closer
}

func (fr *frameReader) next() (Frame, error) {
	n, err := binary.ReadUvarint(fr.r)
	if err != nil {
		return Frame{}, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(fr.r, b); err != nil {
		return Frame{}, err
	}
	var f Frame
	err = Decode(b, &f)
	return f, err
}

func postStream(t *testing.T, ctx context.Context, url string, unit []byte) *frameReader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/stream", bytes.NewReader(unit))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &frameReader{r: bufio.NewReader(resp.Body), body: resp.Body}
}

// A stream the session left for a newer one (the client rebinds because
// it took the old one for dead) must not take the frames the rebind is to
// replay: ServeStream calls fill before it checks conn.closed(), and
// Session.Take does not ask who is taking, so the old stream takes the
// replay and throws it away. The new stream's BOUND says "replay from 4",
// and frames 4.. never arrive (and the client's count is off from then on).
func TestRebindReplayNotStolenByOldStream(t *testing.T) {
	m, err := session.NewManager(session.Config{SessionTimeout: time.Minute, Heartbeat: time.Minute, MaxMessageSize: 1 << 20,
		MaxPendingFrames: 1000, MaxPendingBytes: 1 << 20, ReplayFrames: 1000, ReplayBytes: 1 << 20, ConflateAfter: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	srv := &Server{Manager: m}
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) { srv.ServeStream(w, r) })
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	lost := 0
	const rounds = 50
	for round := 0; round < rounds; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		a := postStream(t, ctx, hs.URL, AppendOpen(nil, "", nil, nil))
		opened, err := a.next()
		if err != nil || opened.Type != TypeOpened {
			t.Fatalf("OPENED: %v %+v", err, opened)
		}
		sess, serr := m.Lookup(opened.Session, opened.Secret)
		if serr != nil {
			t.Fatal(serr)
		}
		// Frames 1..3 reach the client; 4..8 go out on the old stream too,
		// but the client never reads them (its connection is half dead).
		for req := uint64(1); req <= 3; req++ {
			sess.Bandwidth(req, 0)
		}
		for i := 0; i < 3; i++ {
			if f, err := a.next(); err != nil || f.Type != TypeResult {
				t.Fatalf("frame %d on A: %v %+v", i+1, err, f)
			}
		}
		for req := uint64(4); req <= 8; req++ {
			sess.Bandwidth(req, 0)
		}
		time.Sleep(20 * time.Millisecond) // A writes them out
		// The client gives up on A and rebinds with what it has: 3 frames.
		b := postStream(t, ctx, hs.URL, AppendBind(nil, opened.Session, opened.Secret, 3))
		bound, err := b.next()
		if err != nil || bound.Type != TypeBound || bound.Value != 4 {
			t.Fatalf("BOUND: %v %+v", err, bound)
		}
		got := make(chan uint64, 8)
		go func() {
			for {
				f, err := b.next()
				if err != nil {
					close(got)
					return
				}
				if f.Type == TypeResult {
					got <- f.Req
				}
			}
		}()
		var reqs []uint64
		timeout := time.After(time.Second)
	collect:
		for len(reqs) < 5 {
			select {
			case r, ok := <-got:
				if !ok {
					break collect
				}
				reqs = append(reqs, r)
			case <-timeout:
				break collect
			}
		}
		if len(reqs) != 5 || reqs[0] != 4 {
			lost++
			t.Logf("round %d: BOUND said replay from frame 4, the new stream got RESULTs %v (want [4 5 6 7 8])", round, reqs)
		}
		sess.Close(&session.Error{Code: session.CodeOK, Message: "done"})
		cancel()
	}
	if lost > 0 {
		t.Fatalf("%d of %d rebinds lost their replay to the old stream", lost, rounds)
	}
}
