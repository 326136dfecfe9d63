package refs

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// The address policy. It runs in net.Dialer.Control, after DNS resolution and
// before connect(2), for every address the dialer tries and on every redirect
// hop: a name that resolves to the metadata server, a redirect to a private
// address and DNS rebinding all meet the same check, and no packet leaves for a
// refused destination.

// rule refuses one range of addresses, and says why.
type rule struct {
	prefix netip.Prefix
	why    string
}

// v4Rules are the IPv4 ranges that are not public unicast destinations.
var v4Rules = []rule{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified (this network)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"}, // the metadata server is 169.254.169.254
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
}

// v6Rules are the IPv6 ranges that are not public unicast destinations. The
// deprecated IPv4-embedding forms (IPv4-compatible, SIIT, 6to4, Teredo) are
// refused outright: no image host needs them, and each would otherwise need its
// own unwrapping to be judged.
var v6Rules = []rule{
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible IPv6"},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "IPv4-translated IPv6"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/32"), "Teredo (embeds IPv4)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("2002::/16"), "6to4 (embeds IPv4)"},
	{netip.MustParsePrefix("fc00::/7"), "private (unique local)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var (
	// nat64 is the well-known NAT64 prefix (RFC 6052): its last 32 bits are an
	// IPv4 address, judged by the IPv4 rules so that an IPv6-only network with
	// DNS64 still reaches public hosts and never private ones.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	// globalUnicast6 is the only IPv6 space allocated for global unicast; the
	// rest is refused even where no rule above names it.
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
)

// refusal returns why the fetcher must not connect to ip, or "" when it may.
// allowLoopback admits 127.0.0.0/8 and ::1 (local demos and tests) and nothing
// else: an address that merely embeds a loopback one stays refused.
func refusal(ip netip.Addr, allowLoopback bool) string {
	if !ip.IsValid() {
		return "invalid address"
	}
	if ip.Zone() != "" {
		return "scoped IPv6 address"
	}
	// An IPv4-mapped address is an IPv4 address: the kernel connects to it as one.
	ip = ip.Unmap()
	if ip.IsLoopback() && allowLoopback {
		return ""
	}
	if ip.Is6() && nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
		if why := match(ip, v4Rules); why != "" {
			return why + " (via NAT64)"
		}
		return ""
	}
	if ip.Is4() {
		return match(ip, v4Rules)
	}
	if why := match(ip, v6Rules); why != "" {
		return why
	}
	if !globalUnicast6.Contains(ip) {
		return "not global unicast"
	}
	return ""
}

func match(ip netip.Addr, rules []rule) string {
	for _, r := range rules {
		if r.prefix.Contains(ip) {
			return r.why
		}
	}
	return ""
}

// refusedError is a dial the policy stopped. Its message names the address and
// is for logs only: clients are told no more than that the address is refused.
type refusedError struct {
	addr string
	why  string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("refs: refused to dial %s: %s address", e.addr, e.why)
}

// control is the net.Dialer.Control hook that enforces the policy on the
// resolved address of every connection attempt.
func control(allowLoopback bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		switch network {
		case "tcp", "tcp4", "tcp6":
		default:
			return &refusedError{addr: address, why: "non-TCP (" + network + ")"}
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &refusedError{addr: address, why: "unparseable"}
		}
		if why := refusal(ap.Addr(), allowLoopback); why != "" {
			return &refusedError{addr: address, why: why}
		}
		return nil
	}
}

// newDialer returns the dialer every fetch connects through. The policy guards
// the connections to reference hosts only: the resolver keeps its own dialer,
// because in Google Cloud the DNS server itself is 169.254.169.254.
func newDialer(o Options) *net.Dialer {
	return &net.Dialer{
		Timeout:   o.Timeout,
		KeepAlive: 30 * time.Second,
		Resolver:  o.Resolver,
		Control:   control(o.AllowLoopback),
	}
}
