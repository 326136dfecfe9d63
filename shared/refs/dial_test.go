package refs

import (
	"net/netip"
	"testing"

	"github.com/matryer/is"
)

func TestRefusal(t *testing.T) {
	tests := []struct {
		addr    string
		refused bool
	}{
		// The metadata server and its disguises.
		{"169.254.169.254", true},
		{"::ffff:169.254.169.254", true},
		{"64:ff9b::a9fe:a9fe", true},   // NAT64 of 169.254.169.254
		{"2002:a9fe:a9fe::1", true},    // 6to4 of 169.254.169.254
		{"2001:0:a9fe:a9fe::1", true},  // Teredo
		{"::a9fe:a9fe", true},          // IPv4-compatible
		{"::ffff:0:a9fe:a9fe", true},   // IPv4-translated
		{"64:ff9b:1::a9fe:a9fe", true}, // local-use NAT64
		// Loopback.
		{"127.0.0.1", true},
		{"127.0.0.2", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		// Private, CGNAT, link-local.
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"100.64.0.1", true},
		{"100.127.255.254", true},
		{"::ffff:10.0.0.1", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"fec0::1", true},
		// Unspecified, multicast, broadcast, reserved.
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"::", true},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"ff02::1", true},
		{"255.255.255.255", true},
		{"240.0.0.1", true},
		{"192.0.0.170", true},
		{"198.18.0.1", true},
		{"192.0.2.1", true},
		{"2001:db8::1", true},
		{"100::1", true},
		{"4000::1", true}, // outside 2000::/3
		// Public.
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"172.32.0.1", false},
		{"100.128.0.1", false},
		{"2606:4700::1111", false},
		{"2001:4860:4860::8888", false},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::808:808", false}, // NAT64 of 8.8.8.8
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			is := is.New(t)
			why := refusal(netip.MustParseAddr(tt.addr), false)
			is.Equal(why != "", tt.refused) // refused? (reason in why)
		})
	}
}

func TestRefusalAllowLoopback(t *testing.T) {
	tests := []struct {
		addr    string
		refused bool
	}{
		{"127.0.0.1", false},
		{"127.0.0.2", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false}, // the kernel dials 127.0.0.1
		{"64:ff9b::7f00:1", true},   // NAT64 of loopback is not loopback
		{"2002:7f00:1::1", true},    // nor is 6to4
		{"10.0.0.1", true},          // loopback only
		{"169.254.169.254", true},   // never the metadata server
		{"::ffff:169.254.169.254", true},
		{"fe80::1", true},
		{"0.0.0.0", true},
		{"8.8.8.8", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			is := is.New(t)
			why := refusal(netip.MustParseAddr(tt.addr), true)
			is.Equal(why != "", tt.refused) // refused with loopback allowed?
		})
	}
}

func TestControl(t *testing.T) {
	tests := []struct {
		network, address string
		allowLoopback    bool
		refused          bool
	}{
		{"tcp4", "8.8.8.8:443", false, false},
		{"tcp6", "[2606:4700::1111]:443", false, false},
		{"tcp4", "169.254.169.254:80", false, true},
		{"tcp6", "[::1]:443", false, true},
		{"tcp6", "[::1]:443", true, false},
		{"tcp6", "[fe80::1%eth0]:443", true, true},
		{"udp4", "8.8.8.8:53", false, true},
		{"tcp", "not-an-address", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.network+" "+tt.address, func(t *testing.T) {
			is := is.New(t)
			err := control(tt.allowLoopback)(tt.network, tt.address, nil)
			is.Equal(err != nil, tt.refused) // refused?
			if err != nil {
				is.True(isRefused(err)) // a policy refusal
			}
		})
	}
}
