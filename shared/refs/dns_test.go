package refs

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// startDNS serves a tiny authoritative DNS on 127.0.0.1 (UDP) that answers A and
// AAAA queries from records (names without the trailing dot) and NXDOMAIN for
// the rest, and returns a pure-Go resolver that asks only it, and the number of
// questions it answered.
func startDNS(t *testing.T, records map[string]netip.Addr) (*net.Resolver, *atomic.Int32) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var queries atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			msg, ok := dnsAnswer(buf[:n], records)
			if !ok {
				continue
			}
			queries.Add(1)
			_, _ = pc.WriteTo(msg, from)
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	addr := pc.LocalAddr().String()
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
	return r, &queries
}

// dnsAnswer builds the response to one query, or reports it unparseable.
func dnsAnswer(query []byte, records map[string]netip.Addr) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	addr, known := records[strings.TrimSuffix(strings.ToLower(q.Name.String()), ".")]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	res := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	switch {
	case known && q.Type == dnsmessage.TypeA && addr.Is4():
		err = b.AResource(res, dnsmessage.AResource{A: addr.As4()})
	case known && q.Type == dnsmessage.TypeAAAA && addr.Is6():
		err = b.AAAAResource(res, dnsmessage.AAAAResource{AAAA: addr.As16()})
	}
	if err != nil {
		return nil, false
	}
	msg, err := b.Finish()
	return msg, err == nil
}
