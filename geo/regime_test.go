package geo

import (
	"slices"
	"strings"
	"testing"
)

func TestDefaultOptInIsTheStandardsList(t *testing.T) {
	want := slices.Concat(EU27,
		[]string{"IS", "LI", "NO"}, // rest of the EEA
		[]string{"GB", "CH"},
		[]string{"AX", "GF", "GP", "MQ", "RE", "YT", "MF"}, // EU parts with codes of their own
	)
	slices.Sort(want)
	if !slices.Equal(DefaultOptIn, want) {
		t.Errorf("DefaultOptIn = %v\nwant %v", DefaultOptIn, want)
	}
	if len(EU27) != 27 || !slices.IsSorted(EU27) || len(slices.Compact(slices.Clone(EU27))) != 27 {
		t.Errorf("EU27 has %d entries, sorted %v", len(EU27), slices.IsSorted(EU27))
	}
	if len(DefaultOptIn) != 39 {
		t.Errorf("DefaultOptIn has %d entries, want 39", len(DefaultOptIn))
	}
	for _, c := range DefaultOptIn {
		if !ValidCountry(c) {
			t.Errorf("DefaultOptIn holds %q, which ValidCountry rejects", c)
		}
	}
}

func TestDecideDefaultOptIn(t *testing.T) {
	for _, c := range DefaultOptIn {
		if got := Decide(c, nil); got != OptIn {
			t.Errorf("Decide(%q, nil) = %s, want opt-in", c, got)
		}
		if got := Decide(c, []string{}); got != OptIn {
			t.Errorf("Decide(%q, []) = %s, want opt-in", c, got)
		}
	}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		country string
		optIn   []string
		want    Regime
	}{
		// Notice countries under the default list, including the overseas
		// countries and territories that are not EU.
		{"US", nil, Notice},
		{"CA", nil, Notice},
		{"BR", nil, Notice},
		{"JP", nil, Notice},
		{"ZA", nil, Notice},
		{"IN", nil, Notice},
		{"AU", nil, Notice},
		{"TR", nil, Notice},
		{"RU", nil, Notice},
		{"BL", nil, Notice},
		{"PF", nil, Notice},
		{"NC", nil, Notice},
		{"GL", nil, Notice},
		{"AW", nil, Notice},
		{"XK", nil, Notice},
		{"us", nil, Notice},
		// Case does not matter.
		{"de", nil, OptIn},
		{"De", nil, OptIn},
		// Unknown and not-a-country: opt-in, never fail open.
		{"", nil, OptIn},
		{"", []string{"US"}, OptIn},
		{"XX", nil, OptIn},
		{"XX", []string{"DE"}, OptIn},
		{"T1", nil, OptIn},
		{"ZZ", nil, OptIn},
		{"EU", nil, OptIn},
		{"AP", nil, OptIn},
		{"UK", nil, OptIn},
		{"AN", nil, OptIn},
		{"D", nil, OptIn},
		{"DEU", nil, OptIn},
		{" DE", []string{"US"}, OptIn},
		{"\x00\x00", nil, OptIn},
		// A site's own list replaces the default.
		{"US", []string{"US", "CA"}, OptIn},
		{"DE", []string{"US", "CA"}, Notice},
		{"CA", []string{"us", " ca "}, OptIn},
		{"GB", []string{"UK"}, OptIn},
		{"GR", []string{"EL"}, OptIn},
		{"US", []string{"XX", "not a code"}, Notice},
		{"ZA", []string{"DE"}, Notice},
	}
	for _, tt := range tests {
		if got := Decide(tt.country, tt.optIn); got != tt.want {
			t.Errorf("Decide(%q, %q) = %s, want %s", tt.country, tt.optIn, got, tt.want)
		}
	}
}

func TestDecideIgnoresChangesToDefaultOptIn(t *testing.T) {
	saved := slices.Clone(DefaultOptIn)
	t.Cleanup(func() { copy(DefaultOptIn, saved) })
	for i := range DefaultOptIn {
		DefaultOptIn[i] = "US"
	}
	if got := Decide("DE", nil); got != OptIn {
		t.Errorf("after overwriting DefaultOptIn, Decide(DE) = %s", got)
	}
	if got := Decide("US", nil); got != Notice {
		t.Errorf("after overwriting DefaultOptIn, Decide(US) = %s", got)
	}
}

func TestValidCountry(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"DE", true}, {"GB", true}, {"US", true}, {"AX", true}, {"XK", true}, {"ZW", true}, {"AD", true},
		{"", false}, {"D", false}, {"DEU", false}, {"de", false}, {"De", false},
		{"XX", false}, {"T1", false}, {"ZZ", false}, {"AA", false}, {"QM", false}, {"XA", false},
		{"EU", false}, {"AP", false}, {"UK", false}, {"AN", false}, {"A1", false}, {"O1", false},
		{" D", false}, {"D ", false}, {"@A", false}, {"[A", false}, {"\xc3\x9c", false},
	}
	for _, tt := range tests {
		if got := ValidCountry(tt.in); got != tt.want {
			t.Errorf("ValidCountry(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	// 249 assigned ISO 3166-1 codes, plus XK.
	n := 0
	for _, ok := range validCodes {
		if ok {
			n++
		}
	}
	if n != 250 {
		t.Errorf("%d valid codes, want 250", n)
	}
	if f := strings.Fields(assigned); !slices.IsSorted(f) || len(slices.Compact(f)) != 250 {
		t.Errorf("the assigned list is not sorted or has duplicates")
	}
}

func TestNormalizeCountries(t *testing.T) {
	got, err := NormalizeCountries([]string{"us", " CA", "UK", "el", "US"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"CA", "GB", "GR", "US"}; !slices.Equal(got, want) {
		t.Errorf("NormalizeCountries = %v, want %v", got, want)
	}
	for _, bad := range []string{"XX", "", "DEU", "E1", "EU"} {
		_, err := NormalizeCountries([]string{"DE", bad})
		if err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("NormalizeCountries(%q): err = %v, want one naming it", bad, err)
		}
	}
}
