package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file is what every backend shares beyond the types: the ledger's
// keys, the sealing of a record onto a chain (canonical encoding and hash),
// the stored record format, record ids and admin token secrets. A backend
// stores bytes; the proof is made here, once, so a record hashed by one
// backend gives the same bytes on another.

// Errors of the backends that are not bbolt files.
var (
	// ErrNotSupported: the backend cannot do this (a backup of a PostgreSQL
	// ledger is its own tools' job).
	ErrNotSupported = errors.New("not supported by this ledger backend")
	// ErrUnavailable: the database did not answer, or (bbolt) a write or
	// sync of the file failed and the ledger stopped acknowledging writes
	// until restarted (see FailedError); nothing more is stored.
	ErrUnavailable = errors.New("ledger database unavailable")
)

// Keys are a ledger's three secrets, made once when the ledger is created
// and never changed: every digest, receipt and unsubscribe token depends
// on them, so a copy of the ledger to another backend copies them too.
type Keys struct {
	Digest      []byte // 32 bytes: HMAC-SHA256 key of personal-field digests
	Signing     []byte // 32-byte Ed25519 seed: signs receipts
	Unsubscribe []byte // 32 bytes: HMAC key of unsubscribe tokens
}

// GenerateKeys makes a new ledger's keys.
func GenerateKeys() (Keys, error) {
	k := Keys{Digest: make([]byte, 32), Signing: make([]byte, ed25519.SeedSize), Unsubscribe: make([]byte, 32)}
	for _, b := range [][]byte{k.Digest, k.Signing, k.Unsubscribe} {
		if _, err := rand.Read(b); err != nil {
			return Keys{}, err
		}
	}
	return k, nil
}

// Keyring does what needs a ledger's keys and no storage: digests, the
// sealing of records, receipts, the JWKS and unsubscribe tokens. It is safe
// for concurrent use.
type Keyring struct {
	keys           Keys
	digester       *digester // keyed digests of personal fields and addresses
	unsubscribeKey []byte
	signingKey     ed25519.PrivateKey
	kid            string
	now            func() time.Time
}

// NewKeyring checks the keys and prepares them; now is the clock of
// receipts' iat (nil: time.Now).
func NewKeyring(k Keys, now func() time.Time) (*Keyring, error) {
	if len(k.Digest) != 32 || len(k.Unsubscribe) != 32 || len(k.Signing) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w (missing or short keys)", ErrCorrupt)
	}
	if now == nil {
		now = time.Now
	}
	k = Keys{Digest: bytes.Clone(k.Digest), Signing: bytes.Clone(k.Signing), Unsubscribe: bytes.Clone(k.Unsubscribe)}
	signing := ed25519.NewKeyFromSeed(k.Signing)
	return &Keyring{keys: k, digester: newDigester(k.Digest), unsubscribeKey: k.Unsubscribe,
		signingKey: signing, kid: jwkThumbprint(signing.Public().(ed25519.PublicKey)), now: now}, nil
}

// Keys returns a copy of the keys, for copying a ledger to another backend.
func (k *Keyring) Keys() Keys {
	return Keys{Digest: bytes.Clone(k.keys.Digest), Signing: bytes.Clone(k.keys.Signing), Unsubscribe: bytes.Clone(k.keys.Unsubscribe)}
}

// SubjectDigest is the keyed digest of an address after NormalizeEmail: the
// key of the subject index, the suppression list and double-opt-in state.
func (k *Keyring) SubjectDigest(email string) []byte { return k.subjectDigest(email) }

// ParseUnsubscribeTokenDigest is ParseUnsubscribeToken with the raw digest.
func (k *Keyring) ParseUnsubscribeTokenDigest(token string) (site string, subject []byte, err error) {
	return k.parseUnsubscribeToken(token)
}

// PendingRecord is a record made ready for a chain by Prepare: normalised,
// its personal fields digested and its canonical encoding laid out, so that
// sealing it under a chain's lock costs one hash.
type PendingRecord struct{ req *appendReq }

// Prepare readies a record for Seal as Append does: it normalises Email,
// truncates IP, replaces invalid UTF-8 and digests the personal fields.
// subject, for a record that names an erased person by digest only
// (rec.Erased set, by Unsubscribe), is that digest; otherwise nil.
func (k *Keyring) Prepare(rec Record, subject []byte) *PendingRecord {
	if subject == nil {
		rec.Erased = false
	}
	return &PendingRecord{req: k.newAppendReq(context.Background(), rec, subject)}
}

// Site is the record's site.
func (p *PendingRecord) Site() string { return p.req.rec.Site }

// Source is the record's source ("signup", "banner", …).
func (p *PendingRecord) Source() string { return p.req.rec.Source }

// Subject is the email digest the subject index files it under, or nil.
func (p *PendingRecord) Subject() []byte { return p.req.subject }

// Seal links the record after a chain whose last hash is prev (nil for the
// first record), with the time ns (Unix nanoseconds, strictly after the
// chain's last record) and 60 random bits rnd in its id. It returns the
// record as stored, its 16-byte id and its stored encoding.
func (p *PendingRecord) Seal(ns int64, rnd uint64, prev []byte) (Record, []byte, []byte) {
	id := makeID(ns, rnd)
	r := p.req.rec // a copy: sealing twice (a retried transaction) starts afresh
	r.ID = formatID(id)
	r.RecordedAt = time.Unix(0, idTime(id)).UTC()
	r.prevHash = prev
	r.hash = p.req.tmpl.hash(r.ID, r.prevHash, r.RecordedAt)
	r.PrevHash, r.Hash = hexOrEmpty(r.prevHash), hex.EncodeToString(r.hash)
	return r.Record, id, appendTail(p.req.body, r.prevHash, r.hash)
}

// StoredRecord is a record in its stored encoding, decoded: what a backend
// reads back to verify, erase or purge it.
type StoredRecord struct{ r *storedRecord }

// DecodeRecord reads a stored encoding; site and id come from where the
// backend keeps it. It copies what it keeps out of blob.
func DecodeRecord(site string, id, blob []byte) (*StoredRecord, error) {
	r, err := decodeRecord(site, id, blob)
	if err != nil {
		return nil, err
	}
	return &StoredRecord{r: r}, nil
}

// Record is the record as the API shows it.
func (s *StoredRecord) Record() Record { return s.r.Record }

// Hash is the record's hash, 32 bytes.
func (s *StoredRecord) Hash() []byte { return s.r.hash }

// EmailDigest is the digest the subject index files the record under, or nil.
func (s *StoredRecord) EmailDigest() []byte { return s.r.digests.email }

// Erase removes the personal fields and marks the record erased, as
// Store.Erase does; it tells whether anything changed (tombstones and
// records erased before are left).
func (s *StoredRecord) Erase() bool {
	if s.r.Tombstone || s.r.Erased {
		return false
	}
	s.r.Erased = true
	s.r.Email, s.r.Name, s.r.VisitorID, s.r.IP, s.r.UserAgent, s.r.NewEmail = "", "", "", "", "", ""
	return true
}

// Tombstone turns the record into what retention leaves: id, time,
// prev_hash and hash.
func (s *StoredRecord) Tombstone() {
	s.r = &storedRecord{Record: Record{ID: s.r.ID, Site: s.r.Site, RecordedAt: s.r.RecordedAt, Tombstone: true},
		prevHash: s.r.prevHash, hash: s.r.hash}
}

// Encode is the stored encoding.
func (s *StoredRecord) Encode() []byte { return encodeRecord(s.r) }

// CheckRecord returns why r does not verify after a record whose hash is
// prev (and, with afterLive, after a live record), or "".
func (k *Keyring) CheckRecord(r *StoredRecord, prev []byte, afterLive bool) string {
	return k.checkRecord(r.r, prev, afterLive)
}

// ParseID reads a record id's 26 characters as its 16 bytes.
func ParseID(id string) ([]byte, error) { return parseID(id) }

// FormatID writes a 16-byte record id as its 26 characters.
func FormatID(id []byte) string { return formatID(id) }

// IDFloor is the smallest id at or after t, for range scans.
func IDFloor(t time.Time) []byte { return idFloor(t) }

// IDTime is the Unix nanosecond time a 16-byte id carries.
func IDTime(id []byte) int64 { return idTime(id) }

// NewToken makes a new admin token and the hash that is stored of it.
func NewToken() (token, hash string, err error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", "", err
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(secret)
	return token, tokenHash(token), nil
}

// TokenHash is the stored hash of a token: hex SHA-256.
func TokenHash(token string) string { return tokenHash(token) }

// CheckTokenName validates a token name ("" is allowed: the backend picks
// "admin-<n>").
func CheckTokenName(name string) error {
	if name != "" && !reTokenName.MatchString(name) {
		return invalid("name", "%q must be 1-64 characters of letters, digits, '.', '_' and '-'", name)
	}
	return nil
}

// LooksLikeToken tells whether s could be an admin token at all.
func LooksLikeToken(s string) bool { return strings.HasPrefix(s, tokenPrefix) }

// NoticeKey is the SHA-256 of a notice's texts and its "sha256:<hex>" name;
// ParseNoticeName reads the name back (ErrNotFound if it is not one).
func NoticeKey(texts []byte) ([]byte, string) {
	sum := sha256.Sum256(texts)
	return sum[:], "sha256:" + hex.EncodeToString(sum[:])
}

// NewErasureReport is the report of erasing email, before counting records.
func NewErasureReport(email string) ErasureReport {
	return ErasureReport{Email: NormalizeEmail(email), Removed: erasedFields, Kept: keptFields, Reason: erasureReason}
}

// SuppressionReason is the reason stored with an erased address.
const SuppressionReason = "erasure request (Art. 17 GDPR)"

// SystemActor is the Token of audit entries the ledger writes itself.
const SystemActor = systemActor

// OptInChange returns a person's double-opt-in state (stored JSON, nil for
// none) after the step state ("none", "pending", "confirmed") from ip at
// now, as SetDoubleOptIn stores it.
func OptInChange(old []byte, state, ip string, now time.Time) ([]byte, error) {
	ip = truncateIPString(ip)
	d, err := parseOptIn(old)
	if err != nil {
		return nil, err
	}
	o := &d.optIn
	switch state {
	case "none":
		d = optInDoc{}
	case "pending":
		o.PendingAt, o.PendingIP = now.UTC(), ip
	case "confirmed":
		o.ConfirmedAt, o.ConfirmedIP = now.UTC(), ip
	default:
		return nil, invalid("double_opt_in", "%q is not one of none, pending, confirmed", state)
	}
	d.State = state
	return json.Marshal(d)
}

// OptInErased is a double-opt-in state after erasure: its addresses gone.
func OptInErased(old []byte) ([]byte, error) {
	d, err := parseOptIn(old)
	if err != nil {
		return nil, err
	}
	d.PendingIP, d.ConfirmedIP = "", ""
	for _, so := range d.Sites {
		so.PendingIP, so.ConfirmedIP = "", ""
	}
	return json.Marshal(d)
}

// Match tells whether q selects r, apart from its time range and email,
// which a backend's index selects.
func (q Query) Match(r *Record) bool { return q.match(r) }

// Validate checks an outbox item before it is stored.
func (it *OutboxItem) Validate() error { return it.validate() }

// TruncateUTF8 cuts s to at most n bytes without splitting a character.
func TruncateUTF8(s string, n int) string { return truncateUTF8(s, n) }

// CheckUserEmail normalises a console user's address, or says why it is
// not one.
func CheckUserEmail(email string) (string, error) { return checkUserEmail(email) }

// HashPassword checks a new console password (length) and hashes it with
// argon2id.
func HashPassword(pw string) (string, error) {
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	return hashPassword(pw)
}

// PasswordMatches tells whether pw matches the stored hash; an empty hash
// (an unknown user) costs the same work and never matches.
func PasswordMatches(hash, pw string) bool {
	if hash == "" {
		passwordMatches(dummyHash(), pw)
		return false
	}
	return passwordMatches(hash, pw)
}

// SessionKey is what is stored of a session id: its SHA-256.
func SessionKey(id string) []byte { return sessionKey(id) }

// NewSecret is 32 random bytes in base64url: session ids, CSRF tokens.
func NewSecret() (string, error) { return randomString() }

// CheckRole accepts admin and viewer.
func CheckRole(r Role) error {
	if r != RoleAdmin && r != RoleViewer {
		return invalid("role", "%q: want admin or viewer", r)
	}
	return nil
}

// Validate checks a webhook endpoint before it is stored.
func (ep WebhookEndpoint) Validate() error { return ep.validate() }
