package geo

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// How the comparison with geoip2-golang is made fair:
//
// geoip2-golang refuses the default database (its database_type is
// "country ipvAll", and its records have no country.iso_code for Country
// to return). So maxMindCopy rewrites the default database in MaxMind's
// GeoLite2-Country layout with mmdbwriter: the same 1,010,885 networks,
// each with a GeoLite2-shaped record (continent, country and
// registered_country with geoname_id, iso_code, is_in_european_union and
// names in GeoLite2's eight languages). geoip2's Country and this
// package's Lookup then run on that one file, with the same addresses, in
// the same process. BenchmarkLookupIPv4/IPv6 measure Lookup on the default
// database itself.
//
// Addresses are 1,024 per family, spread over the database's networks,
// and the benchmarks cycle through them, so the tree walk is not a
// single cached path.

const benchAddrCount = 1024

// benchAddrs picks addresses that the database at l places in a country:
// one in every k-th network of the family, in tree order.
func benchAddrs(tb testing.TB, l *Locator, ipv6 bool) []netip.Addr {
	tb.Helper()
	raw, err := maxminddb.Open(l.Path())
	if err != nil {
		tb.Fatal(err)
	}
	defer raw.Close()
	var all []netip.Addr
	for res := range raw.Networks() {
		a := res.Prefix().Addr()
		if a.Is6() != ipv6 {
			continue
		}
		a = a.Next() // not the network address itself
		if l.Lookup(a).Country != "" {
			all = append(all, a)
		}
	}
	if len(all) < benchAddrCount {
		tb.Fatalf("only %d usable networks", len(all))
	}
	out := make([]netip.Addr, 0, benchAddrCount)
	for i := range benchAddrCount {
		out = append(out, all[i*len(all)/benchAddrCount])
	}
	return out
}

var sinkResult Result

func benchLookup(b *testing.B, path string, ipv6 bool) {
	l, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	addrs := benchAddrs(b, l, ipv6)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkResult = l.Lookup(addrs[i%benchAddrCount])
		i++
	}
}

var sinkCountry *geoip2.Country

func benchGeoip2Country(b *testing.B, path string, ipv6 bool) {
	l, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	addrs := benchAddrs(b, l, ipv6)
	l.Close()
	db, err := geoip2.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	// The two readers must agree, or the comparison would be of different work.
	for _, a := range addrs[:64] {
		c, err := db.Country(a)
		if err != nil || c.Country.ISOCode == "" {
			b.Fatalf("geoip2 Country(%s) = %+v, %v", a, c, err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkCountry, err = db.Country(addrs[i%benchAddrCount])
		if err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkLookupIPv4(b *testing.B) { benchLookup(b, realDBPath(b), false) }
func BenchmarkLookupIPv6(b *testing.B) { benchLookup(b, realDBPath(b), true) }

func BenchmarkLookupMaxMindLayoutIPv4(b *testing.B) { benchLookup(b, maxMindCopy(b), false) }
func BenchmarkLookupMaxMindLayoutIPv6(b *testing.B) { benchLookup(b, maxMindCopy(b), true) }

func BenchmarkGeoip2CountryIPv4(b *testing.B) { benchGeoip2Country(b, maxMindCopy(b), false) }
func BenchmarkGeoip2CountryIPv6(b *testing.B) { benchGeoip2Country(b, maxMindCopy(b), true) }

// BenchmarkLookupParallel shows the cost of the shared reference count
// when every CPU looks up at once.
func BenchmarkLookupParallel(b *testing.B) {
	l, err := Open(realDBPath(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	addrs := benchAddrs(b, l, false)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		var r Result
		for pb.Next() {
			r = l.Lookup(addrs[i%benchAddrCount])
			i++
		}
		_ = r
	})
}

// BenchmarkRatio measures Lookup and geoip2's Country on the
// MaxMind-layout copy in alternating rounds, so that a change in the
// machine's load hits both alike, and reports Lookup's time as a fraction
// of Country's (the target is at most 0.6). Its own ns/op, B/op and
// allocs/op cover the whole measurement, geoip2's part included, and mean
// nothing.
func BenchmarkRatio(b *testing.B) {
	path := maxMindCopy(b)
	for _, fam := range []struct {
		name string
		ipv6 bool
	}{{"IPv4", false}, {"IPv6", true}} {
		b.Run(fam.name, func(b *testing.B) {
			l, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			db, err := geoip2.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			addrs := benchAddrs(b, l, fam.ipv6)
			const rounds, perRound = 20, 50_000
			for b.Loop() {
				var ours, theirs time.Duration
				for range rounds {
					start := time.Now()
					for i := range perRound {
						sinkResult = l.Lookup(addrs[i%benchAddrCount])
					}
					ours += time.Since(start)
					start = time.Now()
					for i := range perRound {
						sinkCountry, _ = db.Country(addrs[i%benchAddrCount])
					}
					theirs += time.Since(start)
				}
				b.ReportMetric(float64(ours.Nanoseconds())/(rounds*perRound), "lookup-ns")
				b.ReportMetric(float64(theirs.Nanoseconds())/(rounds*perRound), "geoip2-ns")
				b.ReportMetric(float64(ours)/float64(theirs), "ratio")
			}
		})
	}
}

var (
	maxMindCopyOnce sync.Once
	maxMindCopyPath string
	maxMindCopyErr  error
)

// maxMindCopy returns the default database rewritten in the GeoLite2
// Country layout, built once per test binary into a directory that
// TestMain removes.
func maxMindCopy(tb testing.TB) string {
	src := realDBPath(tb)
	maxMindCopyOnce.Do(func() {
		maxMindCopyPath, maxMindCopyErr = writeMaxMindCopy(src)
	})
	if maxMindCopyErr != nil {
		tb.Fatal(maxMindCopyErr)
	}
	return maxMindCopyPath
}

var benchTempDir string

func writeMaxMindCopy(src string) (string, error) {
	raw, err := maxminddb.Open(src)
	if err != nil {
		return "", err
	}
	defer raw.Close()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "GeoLite2-Country",
		Languages:               []string{"de", "en", "es", "fr", "ja", "pt-BR", "ru", "zh-CN"},
		IncludeReservedNetworks: true, // copy the source as it is
		DisableIPv4Aliasing:     true, // as in the source
	})
	if err != nil {
		return "", err
	}
	records := map[string]mmdbtype.Map{}
	for res := range raw.Networks() {
		var rec ipLocationRecord
		if err := res.Decode(&rec); err != nil {
			return "", err
		}
		m, ok := records[rec.CountryCode]
		if !ok {
			m = geoLite2Record(rec.CountryCode, len(records))
			records[rec.CountryCode] = m
		}
		p := res.Prefix()
		if err := tree.Insert(ipNet(p), m); err != nil {
			return "", fmt.Errorf("insert %s: %w", p, err)
		}
	}
	benchTempDir, err = os.MkdirTemp("", "assent-geo-bench-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(benchTempDir, "GeoLite2-Country-layout.mmdb")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// geoLite2Record builds a record shaped like GeoLite2-Country's, with
// names of typical lengths.
func geoLite2Record(code string, n int) mmdbtype.Map {
	names := func(base string) mmdbtype.Map {
		return mmdbtype.Map{
			"de": mmdbtype.String(base + " (de)"), "en": mmdbtype.String(base),
			"es": mmdbtype.String(base + " (es)"), "fr": mmdbtype.String(base + " (fr)"),
			"ja": mmdbtype.String("国" + base), "pt-BR": mmdbtype.String(base + " (pt)"),
			"ru": mmdbtype.String("Страна " + base), "zh-CN": mmdbtype.String("国家" + base),
		}
	}
	country := mmdbtype.Map{
		"geoname_id": mmdbtype.Uint32(2_000_000 + n),
		"iso_code":   mmdbtype.String(code),
		"names":      names("Country " + code),
	}
	if i, ok := countryIndex(code); ok && euCodes[i] {
		country["is_in_european_union"] = mmdbtype.Bool(true)
	}
	return mmdbtype.Map{
		"continent": mmdbtype.Map{
			"code":       mmdbtype.String("EU"),
			"geoname_id": mmdbtype.Uint32(6255148),
			"names":      names("Europe"),
		},
		"country":            country,
		"registered_country": country,
	}
}
