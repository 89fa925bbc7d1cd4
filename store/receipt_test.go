package store

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

func TestReceiptVerifiesAgainstJWKS(t *testing.T) {
	s := newTestStore(t)
	rec := mustAppend(t, s, signupRecord("shop", "ada@example.org"))
	jws, err := s.Receipt(rec)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", jws)
	}
	var header struct{ Alg, Kid string }
	decodeSegment(t, parts[0], &header)

	var set struct {
		Keys []struct{ Kty, Crv, X, Kid, Use, Alg string }
	}
	raw, err := s.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", raw, err)
	}
	k := set.Keys[0]
	if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Use != "sig" || k.Alg != "EdDSA" || k.Kid != header.Kid || header.Alg != "EdDSA" {
		t.Fatalf("key %+v, header %+v", k, header)
	}
	pub, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("x %q: %v", k.X, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatal("signature does not verify with the JWKS key")
	}
	forged := []byte(parts[0] + "." + strings.Replace(parts[1], parts[1][10:12], "AA", 1))
	if ed25519.Verify(pub, forged, sig) {
		t.Fatal("a changed receipt verifies")
	}

	var claims map[string]any
	decodeSegment(t, parts[1], &claims)
	want := map[string]any{
		"version": "KI-CR-v1.1.0", "consentReceiptID": rec.ID, "consentTimestamp": float64(rec.RecordedAt.Unix()),
		"jurisdiction": "DE", "collectionMethod": "signup", "language": "de", "piiPrincipalId": "ada@example.org",
		"site": "shop", "hash": rec.Hash, "event": "grant", "notice_hash": rec.NoticeHash,
		"recorded_at": rec.RecordedAt.Format("2006-01-02T15:04:05.999999999Z07:00"),
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	purposes := claims["services"].([]any)[0].(map[string]any)["purposes"].([]any)
	states := map[string]any{}
	for _, p := range purposes {
		p := p.(map[string]any)
		states[p["purpose"].(string)] = p["consentType"]
	}
	if states["newsletter"] != "granted" || states["marketing"] != "denied" || len(states) != 4 {
		t.Errorf("purposes %v", states)
	}
}

func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}
