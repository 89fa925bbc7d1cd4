package store

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"
)

// receiptClaims follow the Kantara Consent Receipt v1.1 names where they fit
// (camelCase, as that specification spells them), plus Assent's own.
type receiptClaims struct {
	Version          string           `json:"version"`
	ConsentReceiptID string           `json:"consentReceiptID"`
	ConsentTimestamp int64            `json:"consentTimestamp"`
	Jurisdiction     string           `json:"jurisdiction"`
	CollectionMethod string           `json:"collectionMethod"`
	Language         string           `json:"language,omitempty"`
	PIIPrincipalID   string           `json:"piiPrincipalId,omitempty"`
	PublicKey        string           `json:"publicKey"` // the key id in /.well-known/jwks.json
	Services         []receiptService `json:"services"`
	Sensitive        bool             `json:"sensitive"`
	SPICat           []string         `json:"spiCat"`

	Site          string `json:"site"`
	RecordedAt    string `json:"recorded_at"`
	Event         string `json:"event"`
	Basis         string `json:"basis"`
	Regime        string `json:"regime"`
	NoticeVersion string `json:"notice_version"`
	NoticeHash    string `json:"notice_hash"`
	Hash          string `json:"hash"`
	IssuedAt      int64  `json:"iat"`
}

type receiptService struct {
	Service  string           `json:"service"`
	Purposes []receiptPurpose `json:"purposes"`
}

type receiptPurpose struct {
	Purpose     string `json:"purpose"`
	ConsentType string `json:"consentType"` // granted or denied
}

// Receipt signs a stored record's proof as a compact JWS (EdDSA, Ed25519)
// for the visitor to keep. Its claims name the record (consentReceiptID,
// recorded_at, hash), the site, the country and regime, the notice, and each
// purpose's state; piiPrincipalId is the email, else the visitor id.
func (s *Keyring) Receipt(rec Record) (string, error) {
	principal := rec.Email
	if principal == "" {
		principal = rec.VisitorID
	}
	svc := receiptService{Service: rec.Site, Purposes: []receiptPurpose{}}
	for _, id := range sortedKeys(rec.Choices) {
		svc.Purposes = append(svc.Purposes, receiptPurpose{Purpose: id, ConsentType: rec.Choices[id]})
	}
	claims := receiptClaims{
		Version: "KI-CR-v1.1.0", ConsentReceiptID: rec.ID, ConsentTimestamp: rec.RecordedAt.Unix(),
		Jurisdiction: rec.Country, CollectionMethod: rec.Source, Language: rec.Locale,
		PIIPrincipalID: principal, PublicKey: s.kid, Services: []receiptService{svc}, SPICat: []string{},
		Site: rec.Site, RecordedAt: rec.RecordedAt.UTC().Format(time.RFC3339Nano), Event: rec.Event,
		Basis: rec.Basis, Regime: rec.Regime, NoticeVersion: rec.NoticeVersion, NoticeHash: rec.NoticeHash,
		Hash: rec.Hash, IssuedAt: s.now().Unix(),
	}
	header, err := json.Marshal(map[string]string{"alg": "EdDSA", "kid": s.kid, "typ": "JWT"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	return signing + "." + enc.EncodeToString(ed25519.Sign(s.signingKey, []byte(signing))), nil
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS is the JSON Web Key Set of the receipt-signing key, for
// /.well-known/jwks.json.
func (s *Keyring) JWKS() ([]byte, error) {
	pub := s.signingKey.Public().(ed25519.PublicKey)
	return json.Marshal(map[string][]jwk{"keys": {{
		Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub),
		Kid: s.kid, Use: "sig", Alg: "EdDSA",
	}}})
}

// jwkThumbprint is the RFC 7638 thumbprint of an Ed25519 public key: the
// base64url SHA-256 of its required members in lexical order.
func jwkThumbprint(pub ed25519.PublicKey) string {
	members := []byte(`{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`)
	sum := sha256.Sum256(members)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
