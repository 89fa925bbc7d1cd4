package store

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErasureReport says what an erasure removed, what proof it kept and why.
type ErasureReport struct {
	Email        string    `json:"email"`
	Records      int       `json:"records"` // records of the person (tombstones not counted)
	Removed      []string  `json:"removed"`
	Kept         []string  `json:"kept"`
	Reason       string    `json:"reason"`
	SuppressedAt time.Time `json:"suppressed_at"`
}

const erasureReason = "Art. 17(3)(e) GDPR: the non-personal proof of consent (times, purposes and their states, " +
	"the notice version and the hash of the exact texts shown) is kept because it is necessary for the establishment, " +
	"exercise or defence of legal claims: Art. 7(1) requires the controller to demonstrate consent. The address is kept " +
	"only as a keyed digest on the suppression list, so that it is never silently added again."

var (
	erasedFields = []string{"email", "name", "visitor_id", "ip", "user_agent", "double-opt-in IP addresses"}
	keptFields   = []string{"id", "recorded_at", "site", "event", "source", "basis", "choices", "country", "regime",
		"geo_db", "notice_version", "notice_hash", "widget_build", "locale", "page_url", "gpc", "dnt",
		"prev_hash", "hash", "keyed digests of the removed fields (so each hash chain still verifies)",
		"double-opt-in times", "suppression entry: keyed digest of the address, date, reason"}
)

type suppression struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Erase removes the person's email, name, visitor id, IP and user agent from
// every record about them (marking each Erased) and from their double-opt-in
// state, and puts the keyed digest of the address on the suppression list.
// The records' hashes cover digests of those fields, so every chain still
// verifies. Erasing an address with no records still suppresses it. The
// caller writes the audit entry (it knows the admin token).
func (s *Store) Erase(email string) (ErasureReport, error) {
	rep, _, err := s.EraseWith(context.Background(), email, EraseOptions{})
	return rep, err
}

// EraseWith is Erase plus what opts commits in the same transaction: the
// outbox items made from what was erased (EraseOptions.Outbox), such as
// the subject.erased webhook events. It returns the items as stored.
func (s *Store) EraseWith(ctx context.Context, email string, opts EraseOptions) (ErasureReport, []OutboxItem, error) {
	email = NormalizeEmail(email)
	subject := s.subjectDigest(email)
	rep := ErasureReport{Email: email, Removed: erasedFields, Kept: keptFields, Reason: erasureReason}
	var queued []OutboxItem
	err := s.db.Update(func(tx *bolt.Tx) error {
		rep.Records = 0
		erased := ErasedSubject{Email: email, VisitorIDs: []string{}, Sites: []string{}, ErasedAt: s.now().UTC()}
		records := tx.Bucket(bucketRecords)
		c := tx.Bucket(bucketSubjects).Cursor()
		for k, v := c.Seek(subject); k != nil && bytes.HasPrefix(k, subject); k, v = c.Next() {
			id, site := k[len(subject):], string(v)
			b := records.Bucket(v)
			val := b.Get(id)
			if val == nil {
				continue
			}
			r, err := decodeRecord(site, id, val)
			if err != nil {
				return fmt.Errorf("%w: record %s of site %s: %v", ErrCorrupt, formatID(id), site, err)
			}
			if r.Tombstone {
				continue
			}
			rep.Records++
			erased.Sites = appendUnique(erased.Sites, site)
			if r.Erased {
				continue
			}
			erased.VisitorIDs = appendUnique(erased.VisitorIDs, r.VisitorID)
			r.Erased = true
			r.Email, r.Name, r.VisitorID, r.IP, r.UserAgent = "", "", "", "", ""
			if err := b.Put(bytes.Clone(id), encodeRecord(r)); err != nil {
				return err
			}
		}
		if err := updateOptIn(tx, subject, func(o *optIn) { o.PendingIP, o.ConfirmedIP = "", "" }); err != nil {
			return err
		}
		if err := eraseOutbox(tx, subject, s.now()); err != nil {
			return err
		}
		queued = nil
		if opts.Outbox != nil {
			items, err := opts.Outbox(erased)
			if err != nil {
				return fmt.Errorf("outbox items of an erasure: %w", err)
			}
			if queued, err = addOutboxItems(tx, items, s.now()); err != nil {
				return err
			}
		}
		sup := tx.Bucket(bucketSuppression)
		if v := sup.Get(subject); v != nil {
			var old suppression
			if err := json.Unmarshal(v, &old); err == nil {
				rep.SuppressedAt = old.At
				return nil
			}
		}
		rep.SuppressedAt = s.now().UTC()
		v, err := json.Marshal(suppression{At: rep.SuppressedAt, Reason: "erasure request (Art. 17 GDPR)"})
		if err != nil {
			return err
		}
		return sup.Put(subject, v)
	})
	if err != nil {
		return ErasureReport{}, nil, err
	}
	if len(queued) > 0 {
		s.notifyOutbox()
	}
	return rep, queued, nil
}

// Suppressed tells whether an address was erased and may not be re-added.
func (s *Store) Suppressed(email string) (bool, error) {
	subject := s.subjectDigest(email)
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketSuppression).Get(subject) != nil
		return nil
	})
	return found, err
}

// SetDoubleOptIn records a step of double opt-in: state "pending" (the
// confirmation mail was sent after a signup from ip) or "confirmed" (the
// person confirmed from ip), or "none" to reset. The IP is truncated.
func (s *Store) SetDoubleOptIn(email, state, ip string) error {
	now, ip := s.now().UTC(), truncateIPString(ip)
	set := map[string]func(*optIn){
		"none":      func(o *optIn) { *o = optIn{} },
		"pending":   func(o *optIn) { o.PendingAt, o.PendingIP = now, ip },
		"confirmed": func(o *optIn) { o.ConfirmedAt, o.ConfirmedIP = now, ip },
	}[state]
	if set == nil {
		return invalid("double_opt_in", "%q is not one of none, pending, confirmed", state)
	}
	subject := s.subjectDigest(email)
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketOptIn).Get(subject) == nil {
			if err := tx.Bucket(bucketOptIn).Put(subject, []byte(`{"state":"none"}`)); err != nil {
				return err
			}
		}
		return updateOptIn(tx, subject, func(o *optIn) { set(o); o.State = state })
	})
}

// updateOptIn changes a person's double-opt-in state, if they have one.
func updateOptIn(tx *bolt.Tx, subject []byte, change func(*optIn)) error {
	b := tx.Bucket(bucketOptIn)
	v := b.Get(subject)
	if v == nil {
		return nil
	}
	var o optIn
	if err := json.Unmarshal(v, &o); err != nil {
		return fmt.Errorf("%w: double-opt-in state: %v", ErrCorrupt, err)
	}
	change(&o)
	if v, err := json.Marshal(o); err != nil {
		return err
	} else {
		return b.Put(subject, v)
	}
}

// Unsubscribe tokens are base64url of
//
//	version 1 | site length (1 byte) | site | email digest (32) | MAC (16)
//
// where MAC is HMAC-SHA256 with the ledger's unsubscribe key over what comes
// before it, cut to 16 bytes. They name the person by keyed digest only, so
// a link in a mail or a log does not carry the address.
const unsubscribeVersion = 1

// UnsubscribeToken makes the token of an unsubscribe link for a person's
// signup on a site.
func (s *Keyring) UnsubscribeToken(site, email string) string {
	b := append([]byte{unsubscribeVersion, byte(len(site))}, site...)
	b = append(b, s.subjectDigest(email)...)
	return base64.RawURLEncoding.EncodeToString(append(b, s.unsubscribeMAC(b)...))
}

func (s *Keyring) unsubscribeMAC(b []byte) []byte {
	m := hmac.New(sha256.New, s.unsubscribeKey)
	m.Write(b)
	return m.Sum(nil)[:16]
}

// ParseUnsubscribeToken checks a token and returns the site it names and
// the hex keyed digest of the address (never the address); a forged or
// damaged token gives ErrBadToken.
func (s *Keyring) ParseUnsubscribeToken(token string) (site, subject string, err error) {
	site, digest, err := s.parseUnsubscribeToken(token)
	return site, hexOrEmpty(digest), err
}

func (s *Keyring) parseUnsubscribeToken(token string) (string, []byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 2 || b[0] != unsubscribeVersion || len(b) != 2+int(b[1])+32+16 {
		return "", nil, ErrBadToken
	}
	body, mac := b[:len(b)-16], b[len(b)-16:]
	if !hmac.Equal(mac, s.unsubscribeMAC(body)) {
		return "", nil, ErrBadToken
	}
	return string(body[2 : 2+int(b[1])]), bytes.Clone(body[2+int(b[1]):]), nil
}

// Unsubscribe checks an unsubscribe token (ErrBadToken; ErrNotFound for a
// site that is gone) and appends a "withdraw" record, source "unsubscribe",
// denying the site's signup purposes for the person it names. meta carries
// what the server knows of the request (IP, user agent, page, country,
// regime, …). The record carries the address from the person's latest record
// on the site; when none holds it any more (erased or purged) the record
// names the person by digest only and is marked erased.
func (s *Store) Unsubscribe(ctx context.Context, token string, meta Record) (Record, error) {
	rec, _, err := s.UnsubscribeWith(ctx, token, meta, AppendOptions{})
	return rec, err
}

// UnsubscribeWith is Unsubscribe plus what opts commits in the record's
// transaction (its webhook events), like AppendWith.
func (s *Store) UnsubscribeWith(ctx context.Context, token string, meta Record, opts AppendOptions) (Record, []OutboxItem, error) {
	siteID, subject, err := s.parseUnsubscribeToken(token)
	if err != nil {
		return Record{}, nil, err
	}
	site, err := s.Site(siteID)
	if err != nil {
		return Record{}, nil, fmt.Errorf("site %q: %w", siteID, err)
	}
	recs, err := s.subjectRecords(subject)
	if err != nil {
		return Record{}, nil, err
	}
	rec := meta
	rec.Site, rec.Event, rec.Source, rec.Basis = site.ID, "withdraw", "unsubscribe", "explicit"
	rec.Email, rec.Erased = "", false
	for i := len(recs) - 1; i >= 0 && rec.Email == ""; i-- {
		if recs[i].Site == site.ID {
			rec.Email = recs[i].Email
		}
	}
	if rec.Email == "" {
		rec.Erased = true
	}
	if rec.NoticeVersion == "" {
		rec.NoticeVersion = site.PolicyVersion
	}
	rec.Choices = map[string]string{}
	for _, p := range site.Purposes {
		if p.Signup {
			rec.Choices[p.ID] = "denied"
		}
	}
	req := s.newAppendReq(ctx, rec, subject)
	req.outbox = opts.Outbox
	res := s.enqueue(req)
	return res.rec, res.outbox, res.err
}
