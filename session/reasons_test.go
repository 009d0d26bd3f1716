package session

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"
)

func TestReasonNamesTheCode(t *testing.T) {
	for _, tc := range []struct {
		code byte
		text string
		want string
	}{
		{0x87, "", "0x87 not authorized"},
		{0x86, "", "0x86 bad user name or password"},
		{0x97, "too many", "0x97 quota exceeded: too many"},
		{0xfe, "", "0xfe"},
	} {
		if got := reason(tc.code, tc.text); got != tc.want {
			t.Errorf("reason(0x%02x, %q) = %q, want %q", tc.code, tc.text, got, tc.want)
		}
	}
}

func TestTrimTextKeepsValidUTF8(t *testing.T) {
	if got := TrimText("short"); got != "short" {
		t.Fatalf("trimmed a short text: %q", got)
	}
	long := strings.Repeat("é", maxEchoed) // 2 bytes each: the cut falls inside one
	got := TrimText("x" + long)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "…") || len(got) > maxEchoed+len("…") {
		t.Fatalf("TrimText gave %d bytes, valid UTF-8 %v: %q", len(got), utf8.ValidString(got), got)
	}
}

// A TLS alert from the broker (no client certificate, one of an unknown
// CA) is named, as crypto/tls reports it over TCP.
func TestDialCauseNamesTLSAlerts(t *testing.T) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errors.New("no certificate here") },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake() // fails: the server sends an alert
			c.Close()
		}
	}()
	_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		t.Fatal("the handshake succeeded")
	}
	if got := dialCause(err); !strings.HasPrefix(got, "TLS: the broker refused the handshake (tls: ") {
		t.Fatalf("dialCause(%v) = %q, want the alert named", err, got)
	}
}

// A gateway out of file descriptors says so, not "connection failed": the
// limit to raise is its own, not the broker's. The error is the one
// net.Dial returns when socket(2) fails so (EMFILE per process, ENFILE per
// system).
func TestDialCauseNamesTheGatewaysOpenFileLimit(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE} {
		err := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)}
		if got := dialCause(err); !strings.Contains(got, "too many open files") {
			t.Errorf("dialCause(%v) = %q, want the open-file limit named", err, got)
		}
	}
}

// TLS failures the next attempt meets again are told to waiting clients
// at once; an alert that says the broker's side is in trouble is not one.
func TestLastingTLS(t *testing.T) {
	remote := func(text string) error {
		return &net.OpError{Op: "remote error", Net: "tcp", Err: errors.New(text)}
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{x509.UnknownAuthorityError{}, true},
		{x509.HostnameError{Host: "broker"}, true},
		{fmt.Errorf("dial: %w", remote("tls: certificate required")), true},
		{fmt.Errorf("dial: %w", remote("tls: bad certificate")), true},
		{fmt.Errorf("dial: %w", remote("tls: internal error")), false},
		{syscall.ECONNRESET, false},
		{syscall.ECONNREFUSED, false},
		{&net.DNSError{Err: "no such host", Name: "broker", IsNotFound: true}, false},
	} {
		if got := lastingTLS(c.err); got != c.want {
			t.Errorf("lastingTLS(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
