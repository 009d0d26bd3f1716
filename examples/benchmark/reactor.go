package main

import (
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The subscribers' data path: a few reactor threads (-readers, default
// GOMAXPROCS), each an OS thread of its own with its own epoll instance,
// serve every subscriber socket, spread round-robin. Per delivery a
// reactor pays its share of an epoll_wait, one read(2) and the parsing;
// a goroutine per connection reading through the net package paid, on top,
// the netpoller's wake-up, the goroutine's unpark and park and a second
// read returning EAGAIN, which made the load generator dearer per delivery
// than the servers it measures, and its backlog the bulk of the latency.
//
// A socket belongs to its reactor's thread from registration on: the
// reactor alone reads and writes it, removes it from epoll and closes it,
// so it never touches a closed descriptor (descriptor numbers are reused
// at once). Other goroutines talk to a reactor through a queue and an
// eventfd that wakes it.

// pollee is a set-up connection a reactor serves; its methods run on the
// reactor's thread. A non-nil error from start, readable or tick ends the
// connection: the reactor records it as the end reason and closes it.
type pollee interface {
	sockp() *sock
	start() error         // handle what the set-up left in the buffer
	readable() error      // the socket is readable (or failed)
	tick(now int64) error // every tickEvery, with the time (UnixNano)
	end(reason string)    // subBase.end: the first reason is kept
}

// sock is a pollee's socket and its registration.
type sock struct {
	fd     int
	nb     bool        // non-blocking: a reactor serves it
	r      *reactor    // set by register
	slot   int32       // in r.conns; the reactor's thread only
	closed atomic.Bool // r has closed fd: nothing is left to do
}

func (s *sock) sockp() *sock { return s }

// tickEvery is how often a reactor calls tick on its connections.
const tickEvery = time.Second

// yieldEvery is how often a reactor serving connections passes through
// the scheduler. A goroutine the scheduler has not seen for 10 ms counts
// as hogging its P: the runtime's monitor (sysmon) preempts it with a
// signal, takes its P back while it is in epoll_wait, and since that is
// work found, polls again after 20 µs instead of up to 10 ms; measured,
// that monitor then cost a tenth of the load generator's CPU. A yield of
// a locked thread costs a hand-off between two threads, 200 times a
// second; epoll_wait's timeout makes sure it comes.
const yieldEvery = 5 * time.Millisecond

// wakeSlot marks the eventfd's epoll events.
const wakeSlot = -1

type reactor struct {
	epfd, wakefd int
	// coalesce is a pause after each batch of readiness events, before
	// the next epoll_wait. On loopback the server's write runs our
	// socket's wake-up: when a reactor sleeps in epoll_wait, the server
	// pays for waking its thread, often on the other CPU (an IPI), once
	// per batch; a reactor faster than the server sleeps after nearly
	// every delivery, and measured, that cost the serving side 0.4 µs a
	// delivery more than the goroutine-per-connection reader did. During
	// the pause nobody waits on the epoll instance, a write only queues
	// its event, and the next batch is larger. The price: a delivery
	// arriving during a pause is read up to coalesce (plus the kernel's
	// timer slack, 50 µs) later.
	coalesce syscall.Timespec
	mu       sync.Mutex
	queue    []reactorReq // guarded by mu
	// The reactor's thread only:
	conns []pollee // by slot, nil when free
	free  []int32
	live  int
}

// reactorReq asks a reactor to serve p (add) or to close it.
type reactorReq struct {
	p    pollee
	add  bool
	done chan error
}

var (
	reactors    []*reactor
	nextReactor atomic.Uint64
)

// startReactors starts k reactor threads (k ≤ 0: GOMAXPROCS), each pinned
// to cpu when cpu ≥ 0, each pausing for coalesce after a batch of events
// (see reactor.coalesce).
//
// A reactor blocked in epoll_wait keeps its P (the scheduler's right to run
// Go code) until the runtime's monitor notices, 20 µs to 10 ms later, so k
// reactors could leave the publisher and its timers waiting that long for
// one. GOMAXPROCS grows by k so the rest of the process keeps as many Ps
// as before; with -pin every thread is still on the generator's CPU.
func startReactors(k, cpu int, coalesce time.Duration) error {
	if k <= 0 {
		k = runtime.GOMAXPROCS(0)
	}
	for range k {
		r, err := newReactor()
		if err != nil {
			return err
		}
		r.coalesce = syscall.NsecToTimespec(coalesce.Nanoseconds())
		ready := make(chan error)
		go r.run(cpu, ready)
		if err := <-ready; err != nil {
			return err
		}
		reactors = append(reactors, r)
	}
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + k)
	return nil
}

func newReactor() (*reactor, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wfd, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("eventfd2", e)
	}
	r := &reactor{epfd: epfd, wakefd: int(wfd)}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: wakeSlot}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, r.wakefd, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(r.wakefd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return r, nil
}

func (r *reactor) run(cpu int, ready chan<- error) {
	runtime.LockOSThread() // for good: the thread is the reactor
	if cpu >= 0 {
		// Threads inherit the mask of the thread that made them, pinned
		// by pinSelf already; this makes sure.
		if err := pinThread(0, cpu); err != nil {
			ready <- err
			return
		}
	}
	if err := schedBatch(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	events := make([]syscall.EpollEvent, 256)
	now := time.Now().UnixNano()
	nextTick, nextYield := now+int64(tickEvery), now+int64(yieldEvery)
	for {
		timeout := -1 // nothing served: sleep until woken
		if r.live > 0 {
			if now >= nextYield {
				runtime.Gosched()
				nextYield = now + int64(yieldEvery)
			}
			if now >= nextTick {
				for _, p := range r.conns {
					if p != nil {
						if err := p.tick(now); err != nil {
							r.drop(p, err.Error())
						}
					}
				}
				nextTick = now + int64(tickEvery)
			}
			timeout = int((min(nextTick, nextYield) - now + 999_999) / 1e6)
		}
		n, err := syscall.EpollWait(r.epfd, events, timeout)
		if err != nil && err != syscall.EINTR {
			fatalf("reactor: epoll_wait: %v", err)
		}
		woken := false
		for i := range events[:max(n, 0)] {
			slot := events[i].Fd
			if slot == wakeSlot {
				woken = true
				continue
			}
			// nil: dropped earlier in this batch. Slots are reused only
			// by serve, after the batch.
			if p := r.conns[slot]; p != nil {
				if err := p.readable(); err != nil {
					r.drop(p, err.Error())
				}
			}
		}
		if woken {
			r.serve()
		}
		// No pause after the wake-up alone (a request), nor after a full
		// batch: more events are waiting already.
		if n > 0 && n < len(events) && !(n == 1 && woken) && r.coalesce != (syscall.Timespec{}) {
			syscall.Nanosleep(&r.coalesce, nil)
		}
		now = time.Now().UnixNano()
	}
}

// schedBatch puts the calling thread in the SCHED_BATCH class: a thread
// of that class, woken, does not preempt the one running on its CPU; it
// runs at once on an idle CPU, else when the running one's slice ends. A
// reactor wakes thousands of times a second (after each pause, on each
// first event), and without -pin it shares the CPUs with the servers:
// measured at saturation, a normal thread's wake-ups took a fifth of
// Mosquitto's core from it and its throughput with it.
func schedBatch() error {
	const schedBatch = 3 // SCHED_BATCH, <linux/sched.h>
	var param struct{ priority int32 }
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, 0, schedBatch, uintptr(unsafe.Pointer(&param))); e != 0 {
		return os.NewSyscallError("sched_setscheduler", e)
	}
	return nil
}

// request queues req for r's thread and wakes it.
func (r *reactor) request(req reactorReq) {
	r.mu.Lock()
	r.queue = append(r.queue, req)
	r.mu.Unlock()
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, e := writeNB(r.wakefd, one[:]); e != 0 {
		fatalf("reactor: eventfd write: %v", e)
	}
}

// serve runs the queued requests.
func (r *reactor) serve() {
	var b [8]byte
	readNB(r.wakefd, b[:]) // resets the count
	r.mu.Lock()
	q := r.queue
	r.queue = nil
	r.mu.Unlock()
	for _, req := range q {
		if req.add {
			req.done <- r.add(req.p)
			continue
		}
		if !req.p.sockp().closed.Load() {
			r.drop(req.p, "closed") // ours: the run is over
		}
		req.done <- nil
	}
}

// add starts serving p; then p.start handles what the set-up left in its
// buffer, which no readiness event would announce.
func (r *reactor) add(p pollee) error {
	s := p.sockp()
	var slot int32
	if k := len(r.free); k > 0 {
		slot, r.free = r.free[k-1], r.free[:k-1]
	} else {
		slot = int32(len(r.conns))
		r.conns = append(r.conns, nil)
	}
	// Level-triggered: a socket not drained (only when the buffer
	// filled) is reported again.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: slot}
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		r.free = append(r.free, slot)
		return os.NewSyscallError("epoll_ctl", err)
	}
	s.slot = slot
	r.conns[slot] = p
	r.live++
	if err := p.start(); err != nil {
		r.drop(p, err.Error())
	}
	return nil
}

// drop ends p: the reason, then out of epoll, then the descriptor closed.
func (r *reactor) drop(p pollee, why string) {
	p.end(why)
	s := p.sockp()
	syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, s.fd, nil)
	syscall.Close(s.fd)
	r.conns[s.slot] = nil
	r.free = append(r.free, s.slot)
	r.live--
	s.closed.Store(true)
}

var errNoReactor = errors.New("no reactor running")

// register hands p, set up, to the next reactor, which serves it from
// then on. On error p's socket is still the caller's to close.
func register(p pollee) error {
	if len(reactors) == 0 {
		return errNoReactor
	}
	s := p.sockp()
	if err := syscall.SetNonblock(s.fd, true); err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	s.nb = true
	s.r = reactors[(nextReactor.Add(1)-1)%uint64(len(reactors))]
	done := make(chan error, 1)
	s.r.request(reactorReq{p: p, add: true, done: done})
	return <-done
}

// unregister closes p's connection from outside its reactor (the
// subscriber's close) and returns once the descriptor is closed.
func unregister(p pollee) {
	s := p.sockp()
	if s.closed.Load() {
		return
	}
	done := make(chan error, 1)
	s.r.request(reactorReq{p: p, done: done})
	<-done
}
