// Package geo decides which consent experience a visitor gets: it finds the
// client address of a request, looks its country up in an .mmdb country
// database, and maps that country to a [Regime] — opt-in or notice.
//
// The flow is
//
//	addr := geo.ClientAddr(peer, xForwardedFor, trustedProxies)
//	res := locator.Lookup(addr)                 // country, EU flag, source
//	regime := geo.Decide(res.Country, site.OptInCountries)
//
// Every path that does not end in a known country ends in [OptIn]: no
// database, a reserved address (private, loopback, documentation, CGNAT, …,
// checked before the database is asked because the default database maps
// some private ranges to real countries), a failed lookup, a record without
// a country, or a code that is not an assigned ISO 3166-1 country. The
// package never fails open.
//
// Two database layouts are read, both with maxminddb-golang v2:
//
//   - ip-location-db's geo-whois-asn-country.mmdb (the default), whose
//     records are {"country_code": "DE"};
//   - MaxMind GeoIP2/GeoLite2 Country and City, whose records carry
//     country.iso_code and country.is_in_european_union, with
//     registered_country as the fallback.
//
// The layout is detected when a file is opened. A [Locator] can be reloaded
// while lookups run; a lookup always sees one whole database, never half of
// one.
//
// What geo is not for: it does not store or log addresses (an address is
// personal data; callers truncate it before storing), it does not read
// request headers itself (the server passes the peer and X-Forwarded-For
// in), it does not trust CDN country headers on its own ([ValidCountry] only
// checks the value; the server decides whether the peer may send one), and
// it does not give city, region or ASN data.
package geo
