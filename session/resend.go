package session

import (
	"bytes"
	"context"
	"io"
	"sync"
	"sync/atomic"

	"github.com/eclipse/paho.golang/packets"
	pahosession "github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
	"github.com/eclipse/paho.golang/paho/store/memory"
)

// resendingSession is paho's session state with a repair for a race in
// paho.golang v0.23.0 (its issue 343): a QoS 1/2 publish that the paho
// client of a connection began can be stored only after the CONNACK of the
// next connection resent what was stored. That client then writes it to its
// own connection, which is closed, and nothing sends it until the next
// reconnect, which may never come: the publish times out (4044) and the
// message is lost, or arrives at some later cut.
//
// A CONNACK waits for the publishes being stored (AddToSession), so that
// none is stored after the resend by a client whose connection was up when
// it began. A client that autopaho handed the publish before a cut may
// still begin it only after the CONNACK: brokerConn reports every QoS 1/2
// PUBLISH whose write failed, and if the connection now up is another one
// and its CONNACK's resend did not have the packet, resendingSession writes
// it there, from the store.
//
// It also keeps a PUBREC from meeting a connection change (PacketReceived),
// and answers the publishes paho drops when the broker did not keep the
// session (see discardUnsent).
type resendingSession struct {
	*state.State
	store *listedStore
	adds  sync.RWMutex // read by AddToSession, written by ConAckReceived

	// answers guards the records a publish's last answer ends: waiting and
	// resent. It is taken after mu where both are.
	answers  sync.Mutex
	waiting  map[uint16]chan<- packets.ControlPacket // publishes stored and not yet answered
	resent   map[uint16]bool                         // sent again on current and not yet answered
	discards atomic.Uint64                           // CONNACKs that dropped some

	mu      sync.RWMutex // held to read while answering a PUBREC
	up      bool
	current *brokerConn // the connection of the last CONNACK, nil once lost

	// farewell is the DISCONNECT the broker ended the last connection
	// with, nil if it just went away. paho hands it here before it tells
	// anyone the connection is down (autopaho's OnServerDisconnect may
	// run after OnConnectionDown), so the hub can say why: a dedicated
	// client whose ID another connection took is told so (4045), not that
	// the broker is unavailable.
	farewell atomic.Pointer[packets.Disconnect]
}

func newResendingSession() *resendingSession {
	store := &listedStore{Store: memory.New()}
	return &resendingSession{State: state.New(store, memory.New()), store: store,
		waiting: map[uint16]chan<- packets.ControlPacket{}}
}

// AddToSession stores a packet while no CONNACK is being handled. paho
// reads the connection's send quota outside its lock here, which a CONNACK
// replaces (a data race its issue 343 names too).
func (s *resendingSession) AddToSession(ctx context.Context, packet pahosession.Packet, resp chan<- packets.ControlPacket) error {
	s.adds.RLock()
	defer s.adds.RUnlock()
	if err := s.State.AddToSession(ctx, packet, resp); err != nil {
		return err
	}
	if p, ok := packet.(*packets.Publish); ok {
		s.answers.Lock()
		s.waiting[p.PacketID] = resp
		s.answers.Unlock()
	}
	return nil
}

func (s *resendingSession) ConAckReceived(conn io.Writer, cp *packets.Connect, ca *packets.Connack) error {
	// Publishes waiting for send quota end when the connection they began
	// on is lost; paho's state assumes that loss if it was not told of it.
	// Here it must be before waiting for them.
	s.ConnectionLost(nil)
	s.farewell.Store(nil) // a new connection: the last one's end is past
	s.adds.Lock()
	defer s.adds.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var dropped []uint16
	if !ca.SessionPresent {
		dropped, _ = s.store.Store.List()
	}
	err := s.State.ConAckReceived(conn, cp, ca) // lists the store, resends
	s.discardUnsent(dropped)
	resent := s.store.lastListed()
	s.answers.Lock()
	s.resent = resent
	s.answers.Unlock()
	if err == nil {
		s.up = true
		s.current, _ = conn.(*brokerConn)
	}
	return err
}

func (s *resendingSession) ConnectionLost(dp *packets.Disconnect) error {
	if dp != nil {
		s.farewell.Store(dp)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up, s.current = false, nil
	return s.State.ConnectionLost(dp)
}

// Close ends the state as paho's does, after which a PUBREC is dropped as
// while down.
func (s *resendingSession) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up, s.current = false, nil
	return s.State.Close()
}

// discardUnsent answers the publishes a CONNACK without a session made
// paho drop: their acknowledgment can never come, and paho would leave
// them waiting until they time out. Each gets what paho gives a publish
// ended by a shutdown, and discards counts the event for the hub to tell
// it from one (Hub.publish).
func (s *resendingSession) discardUnsent(dropped []uint16) {
	if len(dropped) == 0 {
		return
	}
	s.discards.Add(1)
	s.answers.Lock()
	defer s.answers.Unlock()
	for _, id := range dropped {
		if resp := s.waiting[id]; resp != nil {
			select {
			case resp <- packets.ControlPacket{}:
			default: // answered already
			}
			delete(s.waiting, id)
		}
	}
}

// PacketReceived passes packets on to paho's state, a PUBREC only while a
// connection is up. paho answers a PUBREC with a PUBREL written to its
// current connection without a lock or a look whether there is one (its
// issue 343 again): once a connection was lost, that is a nil dereference,
// which would end the process. A PUBREC that comes too late is dropped:
// the next connection sends the PUBLISH again, and the broker answers it
// with a PUBREC again.
func (s *resendingSession) PacketReceived(recv *packets.ControlPacket, pubChan chan<- *packets.Publish) error {
	switch recv.Type {
	case packets.PUBACK, packets.PUBCOMP:
		return s.lastAnswer(recv, pubChan)
	case packets.PUBREC:
		s.mu.RLock()
		defer s.mu.RUnlock()
		if !s.up {
			return nil
		}
		if recv.Content.(*packets.Pubrec).ReasonCode >= 0x80 { // refused
			return s.lastAnswer(recv, pubChan)
		}
	}
	return s.State.PacketReceived(recv, pubChan)
}

// lastAnswer passes on a publish's last answer, which frees its identifier
// for another publish, and ends the publish's records around it: waiting
// before paho answers the caller (after, it could be the next publish's),
// resent after paho forgot the packet (before, unsent could find it stored
// and not resent, and send a copy the broker has answered).
func (s *resendingSession) lastAnswer(recv *packets.ControlPacket, pubChan chan<- *packets.Publish) error {
	id := recv.PacketID()
	s.answers.Lock()
	delete(s.waiting, id)
	s.answers.Unlock()
	err := s.State.PacketReceived(recv, pubChan)
	s.answers.Lock()
	delete(s.resent, id)
	s.answers.Unlock()
	return err
}

// unsent hears from a brokerConn that writing packet, a PUBLISH with
// identifier id, failed on conn.
func (s *resendingSession) unsent(conn *brokerConn, id uint16, packet []byte) {
	s.mu.Lock()
	to := s.current
	if to == nil || to == conn || s.wasResent(id) {
		// Down, the next CONNACK sends it; or sent again already.
		s.mu.Unlock()
		return
	}
	stored, err := s.store.packet(id)
	if err != nil || !bytes.Equal(stored, packet) {
		// Acknowledged, or gone with a session the broker did not keep.
		s.mu.Unlock()
		return
	}
	s.answers.Lock()
	s.resent[id] = true
	s.answers.Unlock()
	s.mu.Unlock()
	to.Lock()
	to.Write(packet) // a failure here is the next connection's to resend
	to.Unlock()
}

func (s *resendingSession) wasResent(id uint16) bool {
	s.answers.Lock()
	defer s.answers.Unlock()
	return s.resent[id]
}

// listedStore is paho's memory store for packets the client sent, keeping
// what it listed last: paho lists it only to resend it after a CONNACK.
type listedStore struct {
	*memory.Store
	listMu sync.Mutex
	listed map[uint16]bool
}

func (l *listedStore) List() ([]uint16, error) {
	ids, err := l.Store.List()
	listed := make(map[uint16]bool, len(ids))
	for _, id := range ids {
		listed[id] = true
	}
	l.listMu.Lock()
	l.listed = listed
	l.listMu.Unlock()
	return ids, err
}

// lastListed is what the last List returned, once.
func (l *listedStore) lastListed() map[uint16]bool {
	l.listMu.Lock()
	defer l.listMu.Unlock()
	listed := l.listed
	l.listed = nil
	if listed == nil {
		listed = map[uint16]bool{}
	}
	return listed
}

func (l *listedStore) packet(id uint16) ([]byte, error) {
	r, err := l.Get(id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}
