package geo

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzClientAddr feeds arbitrary peers and X-Forwarded-For values to
// ClientAddr. Whatever comes in, it must not panic, an untrusted peer must
// win over any header, and any other answer must be the peer or an address
// written in the header to the right of any garbage — never one made up,
// and never one the walk should have stopped before.
// The seeds run in every plain `go test`.
func FuzzClientAddr(f *testing.F) {
	seeds := []struct{ peer, xff string }{
		{"85.214.132.117", "8.8.8.8"},
		{"10.0.0.1", "85.214.132.117"},
		{"10.0.0.1", "8.8.8.8, 85.214.132.117, 192.168.1.5"},
		{"10.0.0.1", "[2a00:1450:4001::1]:443, 10.0.0.7"},
		{"10.0.0.1", "85.214.132.117:80"},
		{"::ffff:10.0.0.1", "::ffff:85.214.132.117"},
		{"fd00::1", "2a00:1450:4001::1"},
		{"10.0.0.1", "unknown, 10.0.0.7"},
		{"10.0.0.1", ",,,"},
		{"10.0.0.1", "fe80::1%eth0"},
		{"10.0.0.1", "[::1"},
		{"10.0.0.1", "[]:"},
		{"10.0.0.1", "1.2.3.4:"},
		{"10.0.0.1", "1.2.3.4:99999999"},
		{"10.0.0.1", `"1.2.3.4"`},
		{"10.0.0.1", strings.Repeat("10.0.0.2,", 100)},
		{"", "1.2.3.4"},
		{"not an address", ""},
	}
	for _, s := range seeds {
		f.Add(s.peer, s.xff)
	}
	f.Fuzz(func(t *testing.T, peerText, xff string) {
		peer, _ := netip.ParseAddr(peerText)
		got := ClientAddr(peer, xff, testTrusted)
		want := peer.Unmap().WithZone("")
		if !IsTrusted(want, testTrusted) {
			if got != want {
				t.Fatalf("untrusted peer %s with header %q gave %s", peerText, xff, got)
			}
			return
		}
		if got == want {
			return
		}
		if got.Zone() != "" || got.Is4In6() {
			t.Fatalf("ClientAddr returned %s with a zone or mapped", got)
		}
		// It must be an entry right of the right-most garbage entry and
		// within the last maxHops entries.
		entries := strings.Split(xff, ",")
		for i := len(entries) - 1; i >= 0 && i >= len(entries)-maxHops; i-- {
			a, ok := parseForwarded(entries[i])
			if !ok {
				break
			}
			if a == got {
				return
			}
		}
		t.Fatalf("ClientAddr(%s, %q) = %s, which is not an entry it may use", peerText, xff, got)
	})
}
