package geo

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// testBuildEpoch is the build time written into test databases.
var testBuildEpoch = time.Date(2024, 5, 17, 23, 30, 0, 0, time.UTC)

// network is one entry of a test database.
type network struct {
	cidr string
	rec  mmdbtype.Map
}

// writeDB writes an .mmdb file with mmdbwriter and returns its path.
// maxMindStyle picks MaxMind's conventions (IPv4 aliased into IPv6, a
// GeoLite2 database type); otherwise ip-location-db's.
func writeDB(t testing.TB, path string, maxMindStyle bool, nets []network) string {
	t.Helper()
	return writeDBBuilt(t, path, maxMindStyle, testBuildEpoch, nets)
}

// writeDBBuilt is writeDB with a build time.
func writeDBBuilt(t testing.TB, path string, maxMindStyle bool, built time.Time, nets []network) string {
	t.Helper()
	opts := mmdbwriter.Options{
		BuildEpoch:              built.Unix(),
		DatabaseType:            "country ipvAll",
		IncludeReservedNetworks: true, // to reproduce the default database's mistakes
		DisableIPv4Aliasing:     true,
		RecordSize:              24,
	}
	if maxMindStyle {
		opts.DatabaseType = "GeoLite2-Country"
		opts.DisableIPv4Aliasing = false
		opts.RecordSize = 28
	}
	tree, err := mmdbwriter.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		if err := tree.Insert(ipNet(netip.MustParsePrefix(n.cidr)), n.rec); err != nil {
			t.Fatalf("insert %s: %v", n.cidr, err)
		}
	}
	writeAtomically(t, path, func(f *os.File) error {
		_, err := tree.WriteTo(f)
		return err
	})
	return path
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// writeAtomically writes a sibling temporary file and renames it over
// path, the way geoipupdate replaces a database.
func writeAtomically(t testing.TB, path string, write func(*os.File) error) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	if err := write(f); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// maxMindCountryMap builds a GeoLite2-style country map.
func maxMindCountryMap(code string, eu bool) mmdbtype.Map {
	m := mmdbtype.Map{
		"geoname_id": mmdbtype.Uint32(2921044),
		"iso_code":   mmdbtype.String(code),
		"names":      mmdbtype.Map{"en": mmdbtype.String("Country " + code), "de": mmdbtype.String("Land " + code)},
	}
	if eu {
		m["is_in_european_union"] = mmdbtype.Bool(true)
	}
	return m
}

func maxMindRec(country string, eu bool, registered string, regEU bool) mmdbtype.Map {
	rec := mmdbtype.Map{"continent": mmdbtype.Map{"code": mmdbtype.String("EU")}}
	if country != "" {
		rec["country"] = maxMindCountryMap(country, eu)
	}
	if registered != "" {
		rec["registered_country"] = maxMindCountryMap(registered, regEU)
	}
	return rec
}

func ipLocationRec(code string) mmdbtype.Map {
	return mmdbtype.Map{"country_code": mmdbtype.String(code)}
}

// The networks of the two small test databases. Both put a wrong country
// on private and documentation ranges, as the default database does.
var (
	maxMindNets = []network{
		{"85.214.0.0/15", maxMindRec("DE", true, "DE", true)},
		{"81.2.69.0/24", maxMindRec("GB", false, "GB", false)},
		{"8.8.8.0/24", maxMindRec("US", false, "US", false)},
		{"1.0.0.0/24", maxMindRec("", false, "AU", false)},    // registered_country only
		{"5.5.5.0/24", maxMindRec("", false, "", false)},      // no country at all
		{"46.0.0.0/16", maxMindRec("XX", false, "FR", true)},  // bad code: fall back
		{"31.0.0.0/16", maxMindRec("RE", true, "FR", true)},   // outermost region
		{"41.0.0.0/16", maxMindRec("ZA", false, "ZA", false)}, // notice
		{"2a00:1450::/32", maxMindRec("IE", true, "US", false)},
		{"2001:4860::/32", maxMindRec("US", false, "US", false)},
		{"2003::/19", maxMindRec("DE", true, "DE", true)},
		{"192.168.0.0/16", maxMindRec("AU", false, "AU", false)},
		{"172.16.0.0/12", maxMindRec("AU", false, "AU", false)},
		{"198.51.100.0/24", maxMindRec("AU", false, "AU", false)},
		{"2001:db8::/32", maxMindRec("JP", false, "JP", false)},
	}
	ipLocationNets = []network{
		{"85.214.0.0/15", ipLocationRec("DE")},
		{"81.2.69.0/24", ipLocationRec("GB")},
		{"8.8.8.0/24", ipLocationRec("US")},
		{"1.0.0.0/24", ipLocationRec("AU")},
		{"5.5.5.0/24", mmdbtype.Map{"asn": mmdbtype.Uint32(3320)}}, // no country
		{"46.0.0.0/16", ipLocationRec("AN")},                       // withdrawn code
		{"31.0.0.0/16", ipLocationRec("RE")},
		{"41.0.0.0/16", ipLocationRec("ZA")},
		{"2a00:1450::/32", ipLocationRec("IE")},
		{"2001:4860::/32", ipLocationRec("US")},
		{"2003::/19", ipLocationRec("DE")},
		{"192.168.0.0/16", ipLocationRec("AU")},
		{"172.16.0.0/12", ipLocationRec("AU")},
		{"198.51.100.0/24", ipLocationRec("AU")},
		{"2001:db8::/32", ipLocationRec("JP")},
	}
)

// openTestLocator opens path and closes it when the test ends.
func openTestLocator(t testing.TB, path string) *Locator {
	t.Helper()
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// realDBPath finds the default database fetched by `make geodb`.
func realDBPath(t testing.TB) string {
	t.Helper()
	path := os.Getenv("ASSENT_TEST_GEOIP")
	if path == "" {
		path = filepath.Join("..", "data", "geo-whois-asn-country.mmdb")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the default country database is missing (%v): run `make geodb` in the repository root, or set ASSENT_TEST_GEOIP", err)
	}
	return path
}
