package geo

import (
	"net/netip"
	"strings"
	"testing"
)

func TestIsReserved(t *testing.T) {
	reserved := []string{
		"0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.255",
		"127.0.0.1", "169.254.10.1", "172.16.0.1", "172.31.255.254", "192.0.0.8", "192.0.2.1",
		"192.31.196.1", "192.52.193.1", "192.88.99.1", "192.168.1.1", "192.175.48.1",
		"198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9", "224.0.0.1",
		"239.255.255.250", "240.0.0.1", "255.255.255.255",
		"::", "::1", "::ffff:10.0.0.1", "::ffff:192.168.0.1", "::1.2.3.4", "64:ff9b::1.2.3.4",
		"64:ff9b:1::1", "100::1", "2001::1", "2001:1::1", "2001:2::1", "2001:1ff::1", "2001:db8::1",
		"2001:db8:ffff::1", "2002:c000:204::1", "3fff::1", "3fff:fff::1", "5f00::1", "fc00::1",
		"fd12:3456::1", "fe80::1", "fe80::1%eth0", "fec0::1", "ff02::1", "4000::1", "e000::1",
	}
	public := []string{
		"1.1.1.1", "8.8.8.8", "85.214.132.117", "100.63.255.255", "100.128.0.0", "172.15.255.255",
		"172.32.0.0", "192.0.1.1", "192.0.3.1", "192.167.1.1", "192.169.0.1", "198.17.255.255",
		"198.20.0.0", "198.51.99.1", "198.51.101.1", "203.0.112.1", "203.0.114.1", "223.255.255.255",
		"169.253.0.1", "11.0.0.1", "126.0.0.1", "128.0.0.1",
		"::ffff:85.214.132.117", "2000::1", "2001:200::1", "2001:db7::1", "2001:db9::1",
		"2001:4860:4860::8888", "2003::1", "2a00:1450:4001::1", "3ffe::1", "3fff:1000::1",
	}
	for _, s := range reserved {
		if !IsReserved(netip.MustParseAddr(s)) {
			t.Errorf("IsReserved(%s) = false, want true", s)
		}
	}
	for _, s := range public {
		if IsReserved(netip.MustParseAddr(s)) {
			t.Errorf("IsReserved(%s) = true, want false", s)
		}
	}
	if !IsReserved(netip.Addr{}) {
		t.Error("the zero Addr is not reserved")
	}
}

var testTrusted = mustPrefixes("10.0.0.0/8, 192.168.0.0/16, 127.0.0.1, fd00::/8, ::1")

func mustPrefixes(s string) []netip.Prefix {
	p, err := ParsePrefixes(s)
	if err != nil {
		panic(err)
	}
	return p
}

func TestClientAddr(t *testing.T) {
	tests := []struct {
		name, peer, xff, want string
		trusted               []netip.Prefix
	}{
		// Untrusted peers: the header changes nothing, whatever it says.
		{"no proxy", "85.214.132.117", "", "85.214.132.117", testTrusted},
		{"forged from untrusted peer", "85.214.132.117", "8.8.8.8", "85.214.132.117", testTrusted},
		{"forged trusted chain from untrusted peer", "85.214.132.117", "8.8.8.8, 10.0.0.1", "85.214.132.117", testTrusted},
		{"forged garbage from untrusted peer", "85.214.132.117", "garbage,,,", "85.214.132.117", testTrusted},
		{"nothing trusted", "10.0.0.1", "8.8.8.8", "10.0.0.1", nil},
		{"mapped untrusted peer", "::ffff:85.214.132.117", "8.8.8.8", "85.214.132.117", testTrusted},

		// Trusted peers.
		{"one proxy", "10.0.0.1", "85.214.132.117", "85.214.132.117", testTrusted},
		{"one proxy with spaces", "10.0.0.1", "  85.214.132.117\t", "85.214.132.117", testTrusted},
		{"client forged the left part", "10.0.0.1", "8.8.8.8, 85.214.132.117", "85.214.132.117", testTrusted},
		{"two proxies", "10.0.0.1", "85.214.132.117, 192.168.1.5", "85.214.132.117", testTrusted},
		{"forged trusted entry left of client", "10.0.0.1", "10.9.9.9, 85.214.132.117, 192.168.1.5", "85.214.132.117", testTrusted},
		{"headers joined", "10.0.0.1", "8.8.8.8,85.214.132.117,10.1.1.1", "85.214.132.117", testTrusted},
		{"IPv6 client", "10.0.0.1", "2a00:1450:4001::1", "2a00:1450:4001::1", testTrusted},
		{"IPv6 proxy", "fd00::5", "2a00:1450:4001::1", "2a00:1450:4001::1", testTrusted},
		{"loopback proxy", "::1", "85.214.132.117", "85.214.132.117", testTrusted},
		{"mapped trusted peer", "::ffff:10.0.0.1", "85.214.132.117", "85.214.132.117", testTrusted},
		{"mapped entry", "10.0.0.1", "::ffff:85.214.132.117", "85.214.132.117", testTrusted},
		{"entry with port", "10.0.0.1", "85.214.132.117:4711", "85.214.132.117", testTrusted},
		{"bracketed IPv6", "10.0.0.1", "[2a00:1450:4001::1]", "2a00:1450:4001::1", testTrusted},
		{"bracketed IPv6 with port", "10.0.0.1", "[2a00:1450:4001::1]:443", "2a00:1450:4001::1", testTrusted},
		{"entry with zone", "10.0.0.1", "fe80::1%eth0", "fe80::1", testTrusted},
		{"no header", "10.0.0.1", "", "10.0.0.1", testTrusted},
		{"all trusted: left-most", "10.0.0.1", "192.168.0.9, 10.0.0.7", "192.168.0.9", testTrusted},
		{"mapped trusted prefix", "10.0.0.1", "85.214.132.117", "85.214.132.117", mustPrefixes("::ffff:10.0.0.0/104")},

		// Garbage ends the walk at the nearest address we can vouch for.
		{"garbage only", "10.0.0.1", "unknown", "10.0.0.1", testTrusted},
		{"empty entry", "10.0.0.1", "85.214.132.117,", "10.0.0.1", testTrusted},
		{"blank header", "10.0.0.1", "   ", "10.0.0.1", testTrusted},
		{"garbage behind a trusted hop", "10.0.0.1", "85.214.132.117, unknown, 192.168.0.9", "192.168.0.9", testTrusted},
		{"garbage left of the client", "10.0.0.1", "garbage, 85.214.132.117", "85.214.132.117", testTrusted},
		{"quoted", "10.0.0.1", `"85.214.132.117"`, "10.0.0.1", testTrusted},
		{"obfuscated (RFC 7239 style)", "10.0.0.1", "_hidden", "10.0.0.1", testTrusted},
		{"bad port", "10.0.0.1", "85.214.132.117:http", "10.0.0.1", testTrusted},
		{"bracketed IPv4", "10.0.0.1", "[85.214.132.117]", "10.0.0.1", testTrusted},
		{"bracket unclosed", "10.0.0.1", "[2a00:1450:4001::1", "10.0.0.1", testTrusted},
		{"bracketed port too big", "10.0.0.1", "[2a00:1450:4001::1]:65536", "10.0.0.1", testTrusted},
		{"bracket trailing junk", "10.0.0.1", "[2a00:1450:4001::1]x", "10.0.0.1", testTrusted},
		{"CIDR", "10.0.0.1", "85.214.132.0/24", "10.0.0.1", testTrusted},
		{"too many hops", "10.0.0.1", "85.214.132.117" + strings.Repeat(",10.0.0.2", 40), "10.0.0.2", testTrusted},

		// An invalid peer is passed through.
		{"invalid peer", "", "85.214.132.117", "invalid IP", testTrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var peer netip.Addr
			if tt.peer != "" {
				peer = netip.MustParseAddr(tt.peer)
			}
			got := ClientAddr(peer, tt.xff, tt.trusted)
			if got.String() != tt.want {
				t.Errorf("ClientAddr(%s, %q) = %s, want %s", tt.peer, tt.xff, got, tt.want)
			}
		})
	}
}

func TestClientAddrDoesNotAllocate(t *testing.T) {
	peer := netip.MustParseAddr("10.0.0.1")
	xff := "8.8.8.8, [2a00:1450:4001::1]:443, 85.214.132.117:80, 192.168.0.4"
	var got netip.Addr
	allocs := testing.AllocsPerRun(1000, func() { got = ClientAddr(peer, xff, testTrusted) })
	if got != netip.MustParseAddr("85.214.132.117") {
		t.Fatalf("ClientAddr = %s", got)
	}
	if allocs != 0 {
		t.Errorf("ClientAddr allocates %.1f times per call", allocs)
	}
}

func TestIsTrusted(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"10.1.2.3", true}, {"::ffff:10.1.2.3", true}, {"192.168.255.255", true}, {"127.0.0.1", true},
		{"127.0.0.2", false}, {"::1", true}, {"fd00::1", true}, {"fe80::1", false}, {"11.0.0.1", false},
		{"8.8.8.8", false},
	}
	for _, tt := range tests {
		if got := IsTrusted(netip.MustParseAddr(tt.addr), testTrusted); got != tt.want {
			t.Errorf("IsTrusted(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if IsTrusted(netip.Addr{}, mustPrefixes("0.0.0.0/0, ::/0")) {
		t.Error("the zero Addr is trusted")
	}
	if IsTrusted(netip.MustParseAddr("8.8.8.8"), nil) {
		t.Error("nil trusts something")
	}
	// A mapped prefix built by hand, not by ParsePrefixes.
	mapped := []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}
	if !IsTrusted(netip.MustParseAddr("10.2.3.4"), mapped) {
		t.Error("::ffff:10.0.0.0/104 does not trust 10.2.3.4")
	}
	if IsTrusted(netip.MustParseAddr("11.2.3.4"), mapped) {
		t.Error("::ffff:10.0.0.0/104 trusts 11.2.3.4")
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes("10.0.0.0/8, 127.0.0.1 ,::1, 192.168.1.7/16,,::ffff:172.16.0.0/108, 2001:db8::/32 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "127.0.0.1/32", "::1/128", "192.168.0.0/16", "172.16.0.0/12", "2001:db8::/32"}
	if len(got) != len(want) {
		t.Fatalf("ParsePrefixes = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("entry %d = %s, want %s", i, got[i], want[i])
		}
	}
	if p, err := ParsePrefixes(""); err != nil || len(p) != 0 {
		t.Errorf(`ParsePrefixes("") = %v, %v`, p, err)
	}

	for _, bad := range []string{"10.0.0.0/33", "banana", "10.0.0", "10.0.0.0/", "::1/129", "fe80::1%eth0", "10.0.0.0/8/8", "1.2.3.4:80", "*"} {
		_, err := ParsePrefixes("127.0.0.1, " + bad + ", ::1")
		if err == nil {
			t.Errorf("ParsePrefixes accepted %q", bad)
			continue
		}
		if !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("error %q does not name %q", err, bad)
		}
	}
}
