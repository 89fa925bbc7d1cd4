package server

import (
	"net/netip"
	"testing"
	"time"
)

func TestRateLimiter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newRateLimiter(2) // 2 a second, bursts of 5
	l.now = func() time.Time { return now }
	take := func(a string) bool { ok, _ := l.allow(netip.MustParseAddr(a)); return ok }

	for i := 0; i < 5; i++ {
		if !take("203.0.113.7") {
			t.Fatalf("write %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow(netip.MustParseAddr("203.0.113.7"))
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("over the burst: ok %t, wait %s", ok, wait)
	}
	if !take("203.0.113.8") {
		t.Error("another IPv4 address shares the first one's bucket")
	}
	now = now.Add(time.Second)
	first, second, third := take("203.0.113.7"), take("203.0.113.7"), take("203.0.113.7")
	if !first || !second || third {
		t.Error("a second refills two writes, no more")
	}

	// IPv6: one /64 is one client, however many addresses it uses.
	for i := 0; i < 5; i++ {
		take("2001:db8:1:2::" + string(rune('a'+i)))
	}
	if take("2001:db8:1:2:ffff::1") {
		t.Error("hopping within a /64 escaped the limit")
	}
	if !take("2001:db8:1:3::1") {
		t.Error("the next /64 shares the bucket")
	}
	off := newRateLimiter(0)
	for i := 0; i < 100; i++ {
		if ok, _ := off.allow(netip.MustParseAddr("203.0.113.7")); !ok {
			t.Fatal("a zero rate limits")
		}
	}
}
