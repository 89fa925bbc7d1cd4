package geo

import (
	"net/netip"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2"
)

// The tests in this file run on the pinned default database,
// @ip-location-db/geo-whois-asn-country-mmdb@2.3.2026061719, fetched by
// `make geodb`. Every address below was checked against it.

func TestRealDatabase(t *testing.T) {
	l := openTestLocator(t, realDBPath(t))
	if got := l.cur.Load().layout; got != layoutIPLocation {
		t.Fatalf("layout %s, want ip-location-db", got)
	}
	if got := l.BuildDate(); got != "2026-06-17" {
		t.Errorf("BuildDate = %q, want 2026-06-17", got)
	}
	tests := []struct {
		addr, country string
		regime        Regime
	}{
		{"85.214.132.117", "DE", OptIn}, // Strato
		{"2003::1", "DE", OptIn},        // Deutsche Telekom
		{"212.27.48.10", "FR", OptIn},   // Free
		{"2001:41d0::1", "FR", OptIn},   // OVH
		{"193.0.6.139", "NL", OptIn},    // RIPE NCC
		{"2001:67c:2e8:22::c100:68b", "NL", OptIn},
		{"212.58.244.20", "GB", OptIn}, // BBC
		{"2a00:1098::1", "GB", OptIn},
		{"130.59.31.80", "CH", OptIn}, // SWITCH
		{"2001:620::1", "CH", OptIn},
		{"8.8.8.8", "US", Notice},
		{"2001:4860:4860::8888", "US", Notice},
		{"133.11.0.1", "JP", Notice}, // University of Tokyo
		{"2001:240::1", "JP", Notice},
		{"200.160.2.3", "BR", Notice}, // NIC.br
		{"2804:14c::1", "BR", Notice},
		{"196.25.1.1", "ZA", Notice}, // Telkom SA
		{"2001:4200::1", "ZA", Notice},
		// IPv4-mapped IPv6 is unmapped first; the database itself has no
		// entry for ::ffff:0:0/96.
		{"::ffff:85.214.132.117", "DE", OptIn},
		{"::ffff:8.8.8.8", "US", Notice},
	}
	for _, tt := range tests {
		got := l.Lookup(netip.MustParseAddr(tt.addr))
		want := Result{Country: tt.country, EU: euCodes[mustIndex(tt.country)], Source: SourceGeoIP, BuildDate: "2026-06-17"}
		if got != want {
			t.Errorf("Lookup(%s) = %+v, want %+v", tt.addr, got, want)
		}
		if r := Decide(got.Country, nil); r != tt.regime {
			t.Errorf("%s: regime %s, want %s", tt.addr, r, tt.regime)
		}
	}
}

func TestRealDatabaseReservedAreUnknown(t *testing.T) {
	path := realDBPath(t)
	l := openTestLocator(t, path)
	raw, err := maxminddb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tests := []struct {
		addr       string
		wronglyMap bool // the database gives a country for it
	}{
		{"172.16.0.1", true},
		{"172.31.255.254", true},
		{"192.168.1.1", true},
		{"198.51.100.7", true},
		{"203.0.113.9", true},
		{"2001:db8::1", true},
		{"::ffff:192.168.1.1", false}, // only after unmapping
		{"10.0.0.1", false},
		{"100.64.0.1", false},
		{"127.0.0.1", false},
		{"169.254.1.1", false},
		{"::1", false},
		{"fe80::1", false},
		{"fc00::1", false},
	}
	for _, tt := range tests {
		addr := netip.MustParseAddr(tt.addr)
		if got := l.Lookup(addr); got != unknown {
			t.Errorf("Lookup(%s) = %+v, want unknown", tt.addr, got)
		}
		if got := Decide(l.Lookup(addr).Country, nil); got != OptIn {
			t.Errorf("%s: regime %s, want opt-in", tt.addr, got)
		}
		var rec ipLocationRecord
		if err := raw.Lookup(addr).Decode(&rec); err != nil {
			t.Fatal(err)
		}
		if (rec.CountryCode != "") != tt.wronglyMap {
			t.Errorf("the raw database maps %s to %q; the test's premise changed", tt.addr, rec.CountryCode)
		}
	}
}

// TestRealDatabaseCodes checks that every code in the default database is
// one ValidCountry accepts, except the withdrawn AN, which is unknown.
func TestRealDatabaseCodes(t *testing.T) {
	raw, err := maxminddb.Open(realDBPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	seen := map[uintptr]bool{}
	codes := 0
	for res := range raw.Networks() {
		if seen[res.Offset()] {
			continue
		}
		seen[res.Offset()] = true
		var rec ipLocationRecord
		if err := res.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		codes++
		if !ValidCountry(rec.CountryCode) && rec.CountryCode != "AN" {
			t.Errorf("the database has %q (%s), which ValidCountry rejects", rec.CountryCode, res.Prefix())
		}
	}
	if codes < 240 {
		t.Errorf("only %d distinct records", codes)
	}
}

func TestRealDatabaseDoesNotAllocate(t *testing.T) {
	l := openTestLocator(t, realDBPath(t))
	addrs := benchAddrs(t, l, false)
	for _, a := range addrs {
		l.Lookup(a)
	}
	allocs := testing.AllocsPerRun(10, func() {
		for _, a := range addrs {
			l.Lookup(a)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per %d lookups", allocs, len(addrs))
	}
}
