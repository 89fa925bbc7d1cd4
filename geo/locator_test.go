package geo

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter/mmdbtype"
)

func TestLookupBothLayouts(t *testing.T) {
	dir := t.TempDir()
	layouts := []struct {
		name   string
		path   string
		layout layout
	}{
		{"maxmind", writeDB(t, filepath.Join(dir, "maxmind.mmdb"), true, maxMindNets), layoutMaxMind},
		{"ip-location-db", writeDB(t, filepath.Join(dir, "iplocation.mmdb"), false, ipLocationNets), layoutIPLocation},
	}
	geoip := func(country string, eu bool) Result {
		return Result{Country: country, EU: eu, Source: SourceGeoIP, BuildDate: "2024-05-17"}
	}
	notFound := Result{Source: SourceUnknown, BuildDate: "2024-05-17"}
	tests := []struct {
		addr          string
		maxmind, iplo Result
	}{
		{"85.214.132.117", geoip("DE", true), geoip("DE", true)},
		{"::ffff:85.214.132.117", geoip("DE", true), geoip("DE", true)},
		{"81.2.69.142", geoip("GB", false), geoip("GB", false)},
		{"8.8.8.8", geoip("US", false), geoip("US", false)},
		{"41.0.0.1", geoip("ZA", false), geoip("ZA", false)},
		// registered_country is the fallback for MaxMind.
		{"1.0.0.1", geoip("AU", false), geoip("AU", false)},
		// A record without a country.
		{"5.5.5.5", notFound, notFound},
		// A bad code falls back to registered_country; a withdrawn one is unknown.
		{"46.0.1.1", geoip("FR", true), notFound},
		// An outermost region: EU for MaxMind when its record says so,
		// never from the EU27 list.
		{"31.0.0.1", geoip("RE", true), geoip("RE", false)},
		// IPv6.
		{"2a00:1450:4001::1", geoip("IE", true), geoip("IE", true)},
		{"2001:4860:4860::8888", geoip("US", false), geoip("US", false)},
		{"2003:e0::1", geoip("DE", true), geoip("DE", true)},
		// Not in the database.
		{"9.9.9.9", notFound, notFound},
		{"2400::1", notFound, notFound},
		// Reserved ranges the databases wrongly map are unknown before the lookup.
		{"192.168.1.1", unknown, unknown},
		{"172.16.5.4", unknown, unknown},
		{"198.51.100.7", unknown, unknown},
		{"2001:db8::1", unknown, unknown},
		{"::ffff:192.168.1.1", unknown, unknown},
		{"10.0.0.1", unknown, unknown},
		{"127.0.0.1", unknown, unknown},
		{"::1", unknown, unknown},
	}
	for _, lay := range layouts {
		t.Run(lay.name, func(t *testing.T) {
			l := openTestLocator(t, lay.path)
			if got := l.cur.Load().layout; got != lay.layout {
				t.Fatalf("detected layout %s, want %s", got, lay.layout)
			}
			if got := l.BuildDate(); got != "2024-05-17" {
				t.Errorf("BuildDate = %q", got)
			}
			if l.Path() != lay.path {
				t.Errorf("Path = %q", l.Path())
			}
			for _, tt := range tests {
				want := tt.maxmind
				if lay.layout == layoutIPLocation {
					want = tt.iplo
				}
				// Twice: the first decodes the record, the second reads the cache.
				for range 2 {
					if got := l.Lookup(netip.MustParseAddr(tt.addr)); got != want {
						t.Errorf("Lookup(%s) = %+v, want %+v", tt.addr, got, want)
					}
				}
			}
		})
	}
}

func TestLookupWithoutDatabase(t *testing.T) {
	l := openTestLocator(t, "")
	for _, s := range []string{"85.214.132.117", "2a00:1450:4001::1", "10.0.0.1"} {
		if got := l.Lookup(netip.MustParseAddr(s)); got != unknown {
			t.Errorf("Lookup(%s) = %+v, want unknown", s, got)
		}
	}
	if l.BuildDate() != "" || l.Path() != "" {
		t.Errorf("BuildDate %q, Path %q", l.BuildDate(), l.Path())
	}
	if err := l.Reload(); err != nil {
		t.Errorf("Reload: %v", err)
	}
	var nilLocator *Locator
	if got := nilLocator.Lookup(netip.MustParseAddr("85.214.132.117")); got != unknown {
		t.Errorf("nil Locator: %+v", got)
	}
	if got := l.Lookup(netip.Addr{}); got != unknown {
		t.Errorf("zero Addr: %+v", got)
	}
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte("this is not a MaxMind DB file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A valid .mmdb whose records name no country: an ASN database.
	asn := writeDB(t, filepath.Join(dir, "asn.mmdb"), false, []network{
		{"85.214.0.0/15", mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(6724)}},
		{"2a00:1450::/32", mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(15169)}},
	})
	// Country as a plain string is neither layout.
	plain := writeDB(t, filepath.Join(dir, "plain.mmdb"), false, []network{
		{"85.214.0.0/15", mmdbtype.Map{"country": mmdbtype.String("DE")}},
	})
	// A truncated copy of a good database, as a half-finished download.
	good := writeDB(t, filepath.Join(dir, "good.mmdb"), false, ipLocationNets)
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.mmdb")
	if err := os.WriteFile(truncated, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{garbage, "not a readable .mmdb"},
		{truncated, "not a readable .mmdb"},
		{asn, "neither a MaxMind"},
		{plain, "neither a MaxMind"},
		{filepath.Join(dir, "missing.mmdb"), "no such file"},
		{dir, "not a readable .mmdb"},
	}
	for _, tt := range tests {
		l, err := Open(tt.path)
		if err == nil {
			l.Close()
			t.Errorf("Open(%s) succeeded", tt.path)
			continue
		}
		if !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%s): %v; want the path and %q", tt.path, err, tt.want)
		}
	}
}

func TestDetectLayoutSkipsRecordsWithoutCountry(t *testing.T) {
	// The first networks in tree order carry no country.
	nets := []network{
		{"1.0.0.0/24", mmdbtype.Map{"continent": mmdbtype.Map{"code": mmdbtype.String("OC")}}},
		{"1.0.1.0/24", mmdbtype.Map{}},
		{"85.214.0.0/15", maxMindRec("DE", true, "DE", true)},
	}
	l := openTestLocator(t, writeDB(t, filepath.Join(t.TempDir(), "db.mmdb"), true, nets))
	if got := l.cur.Load().layout; got != layoutMaxMind {
		t.Fatalf("layout %s", got)
	}
	if got := l.Lookup(netip.MustParseAddr("1.0.0.1")); got.Country != "" || got.Source != SourceUnknown {
		t.Errorf("record without country: %+v", got)
	}
}

func TestLookupAfterClose(t *testing.T) {
	l, err := Open(writeDB(t, filepath.Join(t.TempDir(), "db.mmdb"), false, ipLocationNets))
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("85.214.132.117")
	if got := l.Lookup(addr); got.Country != "DE" {
		t.Fatalf("before Close: %+v", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := l.Lookup(addr); got != unknown {
		t.Errorf("after Close: %+v", got)
	}
	if err := l.Reload(); err != ErrClosed {
		t.Errorf("Reload after Close: %v", err)
	}
}

// TestManyRecords checks lookups on a database with more distinct records
// than the cache holds, like a City database.
func TestManyRecords(t *testing.T) {
	const n = 3 * cacheSize
	countries := []string{"DE", "US", "FR", "JP", "BR", "ZA", "GB", "CH"}
	var nets []network
	for i := range n {
		c := countries[i%len(countries)]
		rec := maxMindRec(c, euCodes[mustIndex(c)], c, false)
		rec["city"] = mmdbtype.Map{"geoname_id": mmdbtype.Uint32(i)} // makes every record distinct
		nets = append(nets, network{fmt.Sprintf("%d.%d.%d.0/24", 20+i>>16, i>>8&255, i&255), rec})
	}
	l := openTestLocator(t, writeDB(t, filepath.Join(t.TempDir(), "city.mmdb"), true, nets))
	for round := range 2 {
		for i := range n {
			addr := netip.AddrFrom4([4]byte{byte(20 + i>>16), byte(i >> 8), byte(i), 9})
			c := countries[i%len(countries)]
			want := Result{Country: c, EU: euCodes[mustIndex(c)], Source: SourceGeoIP, BuildDate: "2024-05-17"}
			if got := l.Lookup(addr); got != want {
				t.Fatalf("round %d: Lookup(%s) = %+v, want %+v", round, addr, got, want)
			}
		}
	}
}

func mustIndex(c string) int {
	i, ok := countryIndex(c)
	if !ok {
		panic(c)
	}
	return i
}

func TestLookupDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		// sync.Pool drops values at random under the race detector, so the
		// decode path allocates there; the cached path is still checked.
		t.Log("race detector on: checking cached lookups only")
	}
	dir := t.TempDir()
	for _, path := range []string{
		writeDB(t, filepath.Join(dir, "maxmind.mmdb"), true, maxMindNets),
		writeDB(t, filepath.Join(dir, "iplocation.mmdb"), false, ipLocationNets),
	} {
		l := openTestLocator(t, path)
		addrs := []netip.Addr{
			netip.MustParseAddr("85.214.132.117"),
			netip.MustParseAddr("::ffff:8.8.8.8"),
			netip.MustParseAddr("2a00:1450:4001::1"),
			netip.MustParseAddr("5.5.5.5"),
			netip.MustParseAddr("9.9.9.9"),
			netip.MustParseAddr("192.168.1.1"),
		}
		for _, a := range addrs {
			l.Lookup(a) // fill the cache
		}
		allocs := testing.AllocsPerRun(200, func() {
			for _, a := range addrs {
				l.Lookup(a)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per round of lookups", filepath.Base(path), allocs)
		}
	}
	if raceEnabled {
		return
	}
	// The decode path, with the cache bypassed.
	l := openTestLocator(t, filepath.Join(dir, "maxmind.mmdb"))
	d := l.cur.Load()
	r := d.reader.Lookup(netip.MustParseAddr("85.214.132.117"))
	d.decode(r)
	if allocs := testing.AllocsPerRun(200, func() { d.decode(r) }); allocs != 0 {
		t.Errorf("decoding a record allocates %.1f times", allocs)
	}
}
