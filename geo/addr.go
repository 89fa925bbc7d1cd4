package geo

import (
	"fmt"
	"net/netip"
	"strings"
)

// IsReserved reports whether addr is not a public unicast address that a
// country database can place: unspecified, "this network", private,
// loopback, link-local, CGNAT, documentation, benchmarking, IETF protocol
// assignments, multicast, 240/4 and broadcast; for IPv6 everything outside
// 2000::/3 (so ::, ::1, ULA fc00::/7, link-local, multicast, NAT64, discard)
// plus 2001::/23, 2001:db8::/32, 6to4 2002::/16 and 3fff::/20. An invalid
// addr is reserved. IPv4-mapped IPv6 addresses are judged as IPv4.
//
// NAT64, Teredo and 6to4 addresses embed an IPv4 address; they are treated
// as unknown rather than decoded, which gives opt-in.
func IsReserved(addr netip.Addr) bool {
	addr = addr.Unmap()
	switch {
	case !addr.IsValid():
		return true
	case addr.Is4():
		return reserved4(addr.As4())
	}
	a := addr.As16()
	switch {
	case a[0]&0xe0 != 0x20: // not in 2000::/3, global unicast
		return true
	case a[0] == 0x20 && a[1] == 0x01 && a[2] <= 0x01: // 2001::/23
		return true
	case a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8: // 2001:db8::/32
		return true
	case a[0] == 0x20 && a[1] == 0x02: // 2002::/16
		return true
	case a[0] == 0x3f && a[1] == 0xff && a[2] <= 0x0f: // 3fff::/20
		return true
	}
	return false
}

func reserved4(a [4]byte) bool {
	switch a[0] {
	case 0, 10, 127: // this network, private, loopback
		return true
	case 100:
		return a[1]&0xc0 == 64 // 100.64.0.0/10 CGNAT
	case 169:
		return a[1] == 254 // link-local
	case 172:
		return a[1]&0xf0 == 16 // 172.16.0.0/12
	case 192:
		switch {
		case a[1] == 168: // 192.168.0.0/16
			return true
		case a[1] == 0 && (a[2] == 0 || a[2] == 2): // protocol assignments, TEST-NET-1
			return true
		case a[1] == 88 && a[2] == 99: // 6to4 relay anycast, deprecated
			return true
		case a[1] == 31 && a[2] == 196, a[1] == 175 && a[2] == 48: // AS112
			return true
		case a[1] == 52 && a[2] == 193: // AMT
			return true
		}
	case 198:
		return a[1]&0xfe == 18 || // 198.18.0.0/15 benchmarking
			a[1] == 51 && a[2] == 100 // TEST-NET-2
	case 203:
		return a[1] == 0 && a[2] == 113 // TEST-NET-3
	}
	return a[0] >= 224 // multicast 224/4, reserved 240/4, broadcast
}

// IsTrusted reports whether addr is inside one of the trusted prefixes.
// IPv4-mapped addresses are unmapped first; an IPv4-mapped prefix of at
// least /96 (::ffff:10.0.0.0/104) is read as its IPv4 prefix.
func IsTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return false
	}
	for _, p := range trusted {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// maxHops bounds the walk through X-Forwarded-For. Real chains are a few
// proxies long; a longer one is a forged or broken header.
const maxHops = 32

// ClientAddr returns the address a request comes from. It is peer, the TCP
// peer, unless peer is inside trusted. Then X-Forwarded-For (xff, its header
// values joined by ",") is walked from right to left, skipping entries that
// are themselves trusted, and the first untrusted entry is the client: every
// entry to its right was written by a proxy we trust, while everything to
// its left may be forged. If every entry is trusted the left-most one is
// returned.
//
// An entry that is not an address (empty, "unknown", quoted, obfuscated)
// or a walk longer than 32 hops ends the walk: the result is then the
// nearest address we can vouch for — the last trusted entry passed, or the
// peer — never anything from the garbage or to its left. Trusted proxies are
// usually private addresses, which geo treats as unknown, so a broken chain
// ends in opt-in.
//
// Entries may carry a port ("1.2.3.4:80", "[2001:db8::1]:80") or brackets;
// zones are dropped and IPv4-mapped addresses unmapped. An invalid peer is
// returned as is. ClientAddr does not allocate and does not panic.
func ClientAddr(peer netip.Addr, xff string, trusted []netip.Prefix) netip.Addr {
	peer = peer.Unmap().WithZone("")
	if !IsTrusted(peer, trusted) {
		return peer
	}
	nearest := peer
	rest := xff
	for hop := 0; hop < maxHops && rest != ""; hop++ {
		entry := rest
		if i := strings.LastIndexByte(rest, ','); i >= 0 {
			entry, rest = rest[i+1:], rest[:i]
		} else {
			rest = ""
		}
		a, ok := parseForwarded(entry)
		if !ok {
			return nearest
		}
		if !IsTrusted(a, trusted) {
			return a
		}
		nearest = a
	}
	return nearest
}

// parseForwarded reads one X-Forwarded-For entry.
func parseForwarded(s string) (netip.Addr, bool) {
	s = strings.Trim(s, " \t")
	var a netip.Addr
	var err error
	switch {
	case s == "":
		return netip.Addr{}, false
	case s[0] == '[': // [v6] or [v6]:port
		end := strings.IndexByte(s, ']')
		if end < 0 || !validPortSuffix(s[end+1:]) {
			return netip.Addr{}, false
		}
		a, err = netip.ParseAddr(s[1:end])
		if err == nil && !a.Is6() {
			return netip.Addr{}, false
		}
	case strings.Count(s, ":") == 1: // v4:port
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	default:
		a, err = netip.ParseAddr(s)
	}
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func validPortSuffix(s string) bool {
	if s == "" {
		return true
	}
	if s[0] != ':' || len(s) < 2 || len(s) > 6 {
		return false
	}
	port := 0
	for _, c := range []byte(s[1:]) {
		if c < '0' || c > '9' {
			return false
		}
		port = port*10 + int(c-'0')
	}
	return port <= 65535
}

// ParsePrefixes parses a comma-separated list of CIDR prefixes and bare
// addresses, such as the --trusted-proxies flag:
// "10.0.0.0/8, 127.0.0.1 ,::1". A bare address becomes a /32 or /128,
// host bits are masked off, IPv4-mapped entries become IPv4, and empty
// entries are skipped. The error names the first bad entry.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(entry, "/") {
			var err error
			if p, err = netip.ParsePrefix(entry); err != nil {
				return nil, fmt.Errorf("geo: bad trusted proxy %q: %w", entry, err)
			}
		} else {
			a, err := netip.ParseAddr(entry)
			if err != nil {
				return nil, fmt.Errorf("geo: bad trusted proxy %q: %w", entry, err)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("geo: bad trusted proxy %q: zones are not allowed", entry)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
