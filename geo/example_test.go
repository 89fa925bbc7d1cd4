package geo_test

import (
	"fmt"
	"net/netip"

	"github.com/assent/assent/geo"
)

func Example() {
	trusted, err := geo.ParsePrefixes("10.0.0.0/8")
	if err != nil {
		panic(err)
	}
	// The peer is our load balancer; the visitor forged the left entry.
	client := geo.ClientAddr(netip.MustParseAddr("10.1.2.3"), "8.8.8.8, 85.214.132.117", trusted)
	fmt.Println(client)

	loc, err := geo.Open("") // no database: every lookup is unknown
	if err != nil {
		panic(err)
	}
	defer loc.Close()
	res := loc.Lookup(client)
	fmt.Println(res.Source, geo.Decide(res.Country, nil))

	fmt.Println(geo.Decide("DE", nil), geo.Decide("US", nil), geo.Decide("US", []string{"US"}), geo.Decide("XX", nil))
	// Output:
	// 85.214.132.117
	// unknown opt-in
	// opt-in notice opt-in opt-in
}
