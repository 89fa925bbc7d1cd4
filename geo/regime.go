package geo

import (
	"fmt"
	"slices"
	"strings"
)

// Regime is the consent experience a visitor gets.
type Regime string

const (
	// OptIn: nothing non-necessary runs before an explicit choice.
	OptIn Regime = "opt-in"
	// Notice: a notice with an opt-out.
	Notice Regime = "notice"
)

// EU27 lists the member states of the European Union, sorted.
var EU27 = []string{
	"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
	"IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
}

// DefaultOptIn lists the countries whose visitors get the opt-in regime
// unless a site configures its own list: the EU27; the rest of the EEA (IS,
// LI, NO); GB and CH; and the parts of the EU with codes of their own (AX,
// and the outermost regions GF, GP, MQ, RE, YT, MF). Sorted.
//
// Decide reads its own copy, so changing this slice changes nothing.
var DefaultOptIn = []string{
	"AT", "AX", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR",
	"GB", "GF", "GP", "GR", "HR", "HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV",
	"MF", "MQ", "MT", "NL", "NO", "PL", "PT", "RE", "RO", "SE", "SI", "SK", "YT",
}

// assigned holds the officially assigned ISO 3166-1 alpha-2 codes, plus XK
// (Kosovo), which is user-assigned but used by MaxMind, ip-location-db and
// the CDNs. Anything else — XX and T1 from Cloudflare, ZZ, EU, AP, UK, the
// withdrawn AN — is not a country here and so means "unknown".
const assigned = "" +
	"AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ " +
	"BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ " +
	"CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ " +
	"DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR " +
	"GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY " +
	"HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP " +
	"KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY " +
	"MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ " +
	"NA NC NE NF NG NI NL NO NP NR NU NZ OM " +
	"PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW " +
	"SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ " +
	"TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ " +
	"UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW"

// A country is kept as its index aa=0 … zz=675 so that the lookup path can
// test membership in a table and return a string without allocating.
const numCodes = 26 * 26

type codeSet [numCodes]bool

var (
	validCodes   = setOf(strings.Fields(assigned))
	euCodes      = setOf(EU27)
	defaultCodes = setOf(DefaultOptIn)

	// codeStrings holds "AA".."ZZ" back to back; codeString slices it.
	codeStrings = func() string {
		b := make([]byte, 0, 2*numCodes)
		for a := byte('A'); a <= 'Z'; a++ {
			for c := byte('A'); c <= 'Z'; c++ {
				b = append(b, a, c)
			}
		}
		return string(b)
	}()
)

func setOf(codes []string) *codeSet {
	var s codeSet
	for _, c := range codes {
		i, ok := codeIndex(c)
		if !ok {
			panic("geo: bad built-in country code " + c)
		}
		s[i] = true
	}
	return &s
}

// codeIndex maps two ASCII letters of either case to 0..675.
func codeIndex(s string) (int, bool) {
	if len(s) != 2 {
		return 0, false
	}
	a, b := s[0]|0x20, s[1]|0x20 // lower-case; non-letters stay out of range
	if a < 'a' || a > 'z' || b < 'a' || b > 'z' {
		return 0, false
	}
	return int(a-'a')*26 + int(b-'a'), true
}

// countryIndex is codeIndex restricted to the codes in validCodes.
func countryIndex(s string) (int, bool) {
	i, ok := codeIndex(s)
	return i, ok && validCodes[i]
}

func codeString(i int) string { return codeStrings[2*i : 2*i+2] }

// ValidCountry reports whether s can be taken as a visitor's country, as
// sent in a CDN header such as CF-IPCountry: exactly two upper-case ASCII
// letters forming an assigned ISO 3166-1 alpha-2 code, or XK (Kosovo).
// It rejects the CDNs' placeholders (XX unknown, T1 Tor), user-assigned
// codes (AA, QM–QZ, XA–XZ but XK, ZZ), pseudo-codes such as EU and AP, the
// reserved UK (the United Kingdom is GB) and lower case. A rejected value
// must be treated as unknown, which is opt-in.
func ValidCountry(s string) bool {
	if len(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' {
		return false
	}
	_, ok := countryIndex(s)
	return ok
}

// Decide maps a country to its regime. The country "" (unknown) and
// anything that is not a valid country give OptIn. Otherwise the country
// gets OptIn when it is in optIn — nil or empty means DefaultOptIn — and
// Notice when it is not. Codes compare without regard to case, and in optIn
// the common mistakes UK and EL are read as GB and GR, so that a slip in a
// site's list widens opt-in rather than narrowing it.
func Decide(country string, optIn []string) Regime {
	i, ok := countryIndex(country)
	if !ok {
		return OptIn
	}
	if len(optIn) == 0 {
		if defaultCodes[i] {
			return OptIn
		}
		return Notice
	}
	for _, c := range optIn {
		if j, ok := optInIndex(c); ok && j == i {
			return OptIn
		}
	}
	return Notice
}

var (
	ukIndex, _ = codeIndex("UK")
	gbIndex, _ = codeIndex("GB")
	elIndex, _ = codeIndex("EL")
	grIndex, _ = codeIndex("GR")
)

// optInIndex reads one entry of a site's opt-in list.
func optInIndex(c string) (int, bool) {
	j, ok := codeIndex(strings.TrimSpace(c))
	switch {
	case !ok:
		return 0, false
	case j == ukIndex:
		return gbIndex, true
	case j == elIndex:
		return grIndex, true
	}
	return j, validCodes[j]
}

// NormalizeCountries checks a site's opt-in list and returns it upper-cased,
// with UK and EL read as GB and GR, sorted and without duplicates. The error
// names the first entry that is not a country. Use it where a site's
// configuration is saved, so that Decide never meets a list it would
// silently partly ignore.
func NormalizeCountries(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, c := range list {
		i, ok := optInIndex(c)
		if !ok {
			return nil, fmt.Errorf("geo: %q is not an ISO 3166-1 alpha-2 country code", c)
		}
		out = append(out, codeString(i))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
