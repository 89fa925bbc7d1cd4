package store

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenRecord is a fixed record with a fixed digest key and id, so that its
// canonical encoding and hash never change unless the format does.
func goldenRecord() *storedRecord {
	key := bytes.Repeat([]byte{0x42}, 32)
	at := time.Date(2026, 11, 23, 10, 15, 4, 123456789, time.UTC)
	r := &storedRecord{Record: Record{
		ID: formatID(makeID(at.UnixNano(), 0x0123456789abcdef)), RecordedAt: at, Site: "shop",
		Event: "partial", Source: "banner", Basis: "explicit", Email: "ada@example.org", Name: "Ada \"Countess\" Lovelace",
		VisitorID: "v_5rj2k8", Country: "DE", Regime: "opt-in", GeoDB: "2026-06-17", NoticeVersion: "7\t\"x\"\\\x01",
		NoticeHash:  "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		WidgetBuild: "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", Locale: "de-AT",
		// Keys that sort differently by UTF-16 than by UTF-8 (RFC 8785 §3.2.3),
		// and values with characters JSON must escape.
		Choices: map[string]string{"necessary": "granted", "analytics": "granted", "marketing": "denied",
			"\U0001F600": "granted", "\uFB33": "denied"},
		PageURL: "https://shop.example/cart?a=1&b=<2>\u2028", IP: "85.214.132.0",
		UserAgent: "Mozilla/5.0 (X11)", GPC: true,
	}}
	r.digests = newDigester(key).digests(&r.Record)
	r.prevHash = bytes.Repeat([]byte{0xab}, 32)
	r.hash = recordHash(r)
	r.PrevHash, r.Hash = hexOrEmpty(r.prevHash), hex.EncodeToString(r.hash)
	return r
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./store -run Golden -update once to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed: the stored format or the hash of every record would change.\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestCanonicalEncodingGolden(t *testing.T) {
	r := goldenRecord()
	c := canonical(r)
	golden(t, "canonical.golden", append(append(c, '\n'), "sha256 "+r.Hash+"\n"...))

	// It is JSON, with its keys in sorted order, holding the record's values.
	var m map[string]any
	if err := json.Unmarshal(c, &m); err != nil {
		t.Fatalf("canonical encoding is not JSON: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(c))
	dec.Token()
	var keys []string
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	if !sort.StringsAreSorted(keys) {
		t.Errorf("keys not sorted: %v", keys)
	}
	if m["user_agent_digest"] == r.UserAgent || strings.Contains(string(c), "ada@example.org") {
		t.Errorf("personal data in the canonical encoding: %s", c)
	}
	if m["page_url"] != r.PageURL || m["id"] != r.ID || m["recorded_at"] != "2026-11-23T10:15:04.123456789Z" {
		t.Errorf("values do not round-trip: %v", m)
	}
	// RFC 8785 escapes only what JSON requires: U+2028, <, > and & stay.
	if !strings.Contains(string(c), "<2>\u2028") || !strings.Contains(string(c), `\t\"x\"\\\u0001`) {
		t.Errorf("escaping is not RFC 8785's: %s", c)
	}
	if i, j := strings.Index(string(c), "\uFB33"), strings.Index(string(c), "\U0001F600"); i < 0 || j < 0 || j > i {
		t.Errorf("choice keys not in UTF-16 order: %s", c)
	}
}

func TestStoredEncodingGolden(t *testing.T) {
	r := goldenRecord()
	v := encodeRecord(r)
	golden(t, "stored.golden", []byte(hex.Dump(v)))
	id, _ := parseID(r.ID)
	back, err := decodeRecord("shop", id, v)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Fatalf("decode(encode(r)) =\n%+v\nwant\n%+v", back, r)
	}
}

func TestIDs(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 15, 4, 123456789, time.UTC).UnixNano()
	id := makeID(at, 1<<60-1)
	if got := idTime(id); got != at {
		t.Fatalf("idTime = %d, want %d", got, at)
	}
	s := formatID(id)
	back, err := parseID(strings.ToLower(s))
	if err != nil || !bytes.Equal(back, id) {
		t.Fatalf("parseID(formatID) = %x, %v; want %x", back, err, id)
	}
	// A ULID parser reads the first ten characters as the millisecond.
	var ms uint64
	for _, c := range s[:10] {
		ms = ms<<5 | uint64(strings.IndexRune(crockford, c))
	}
	if int64(ms) != at/1e6 {
		t.Errorf("ULID time %d, want %d", ms, at/1e6)
	}
	prev := ""
	for _, ns := range []int64{0, 1, 999_999, 1_000_000, at, at + 1, at + 1_000_000} {
		for _, rnd := range []uint64{0, 1<<60 - 1} {
			s := formatID(makeID(ns, rnd))
			if len(s) != 26 || s <= prev {
				t.Fatalf("id %q for %d not after %q", s, ns, prev)
			}
			prev = s
		}
	}
	for _, bad := range []string{"", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01JD!XXXXXXXXXXXXXXXXXXXXX", "01JD"} {
		if _, err := parseID(bad); err == nil {
			t.Errorf("parseID(%q) accepted", bad)
		}
	}
}

// FuzzDecodeRecord feeds the decoder of stored values arbitrary bytes: it
// must never panic, and whatever it accepts must encode back to the very
// same bytes (the decoder accepts only what the encoder writes).
func FuzzDecodeRecord(f *testing.F) {
	r := goldenRecord()
	f.Add(encodeRecord(r))
	erased := *r
	erased.Erased, erased.Email, erased.IP = true, "", ""
	f.Add(encodeRecord(&erased))
	f.Add(encodeRecord(&storedRecord{Record: Record{Tombstone: true}, prevHash: r.prevHash, hash: r.hash}))
	f.Add(encodeRecord(&storedRecord{hash: r.hash}))
	f.Add([]byte{})
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 2, 0x80, 0})
	f.Add([]byte{1, 0xff, 1, 2, 3})
	id, _ := parseID(r.ID)
	f.Fuzz(func(t *testing.T, val []byte) {
		got, err := decodeRecord("shop", id, val)
		if err != nil {
			return
		}
		if again := encodeRecord(got); !bytes.Equal(again, val) {
			t.Fatalf("decode then encode changed the bytes:\n%x\n%x", val, again)
		}
	})
}
