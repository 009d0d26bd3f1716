package transport

import (
	"runtime"
	"sync"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// writerPool runs the writers of plain-TCP WebSocket connections on at most
// GOMAXPROCS goroutines instead of one goroutine per flush. A broker
// message fanned out to thousands of sessions wakes thousands of
// connections at once; starting a goroutine for each costs more than the
// bookkeeping of the write itself. The pool's writes never block (a full
// socket hands the connection to a goroutine of its own, see
// wsConn.flushPooled), so one slow client cannot hold up the others, and
// the workers exit when the queue is empty: an idle gateway runs none.
type writerPool struct {
	mu      sync.Mutex
	ring    []*wsConn // FIFO of connections waiting for a worker
	head, n int
	workers int
	limit   int // GOMAXPROCS, read when a burst starts (reading it takes a global lock)
}

// poolWorker is what a writer writes with: the frames taken from a
// session and the buffer they are encoded into. Pool
// workers and writers on goroutines of their own (full sockets, large TLS
// writes) borrow one from spareWorkers for as long as they write, so
// sessions keep no write buffers of their own (after a burst, each would
// keep its largest).
type poolWorker struct {
	events []session.Event
	buf    []byte
}

// maxWorkerBuf is the largest buffer a worker keeps after a write.
const maxWorkerBuf = 1 << 20

var pool writerPool

// submit queues c. Each connection is queued at most once at a time: its
// writing flag, set by the caller, says a writer owns it.
func (p *writerPool) submit(c *wsConn) {
	p.mu.Lock()
	if p.n == len(p.ring) {
		p.grow()
	}
	p.ring[(p.head+p.n)%len(p.ring)] = c
	p.n++
	if p.workers == 0 {
		p.limit = runtime.GOMAXPROCS(0)
	}
	start := p.workers < p.limit
	if start {
		p.workers++
	}
	p.mu.Unlock()
	if start {
		go p.work()
	}
}

func (p *writerPool) grow() {
	ring := make([]*wsConn, max(64, 2*len(p.ring)))
	for i := 0; i < p.n; i++ {
		ring[i] = p.ring[(p.head+i)%len(p.ring)]
	}
	p.ring, p.head = ring, 0
}

func (p *writerPool) work() {
	w := getWorker()
	defer putWorker(w)
	for {
		p.mu.Lock()
		if p.n == 0 {
			p.workers--
			if p.workers == 0 && len(p.ring) > 4096 {
				p.ring, p.head = nil, 0 // after a burst, do not pin a large queue
			}
			p.mu.Unlock()
			return
		}
		c := p.ring[p.head]
		p.ring[p.head] = nil
		p.head = (p.head + 1) % len(p.ring)
		p.n--
		p.mu.Unlock()
		c.flushPooled(w)
	}
}

var spareWorkers = sync.Pool{New: func() any { return &poolWorker{} }}

func getWorker() *poolWorker  { return spareWorkers.Get().(*poolWorker) }
func putWorker(w *poolWorker) { spareWorkers.Put(w) }

// trim drops a buffer grown past maxWorkerBuf by a large message. (The
// frame list needs no trimming: fill takes at most batchFrames at a time.)
func (w *poolWorker) trim() {
	if cap(w.buf) > maxWorkerBuf {
		w.buf = nil
	}
}

// frameBuf is the worker's buffer with room for the WebSocket header.
func (w *poolWorker) frameBuf() []byte {
	if cap(w.buf) < wsHeaderRoom {
		w.buf = make([]byte, 0, 4096)
	}
	return w.buf[:wsHeaderRoom]
}
