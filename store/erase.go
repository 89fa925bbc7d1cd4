package store

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErasureReport says what an erasure removed, what proof it kept and why.
type ErasureReport struct {
	Email        string    `json:"email"`       // the address erased, "" when the person had none
	VisitorIDs   []string  `json:"visitor_ids"` // the visitor ids erased with it
	Records      int       `json:"records"`     // records of the person (tombstones not counted)
	Removed      []string  `json:"removed"`
	Kept         []string  `json:"kept"`
	Reason       string    `json:"reason"`
	SuppressedAt time.Time `json:"suppressed_at"`
}

const erasureReason = "Art. 17(3)(e) GDPR: the non-personal proof of consent (times, purposes and their states, " +
	"the notice version and the hash of the exact texts shown) is kept because it is necessary for the establishment, " +
	"exercise or defence of legal claims: Art. 7(1) requires the controller to demonstrate consent. The address and " +
	"visitor ids are kept only as keyed digests on the suppression list, so that they are never silently added again."

var (
	erasedFields = []string{"email", "name", "visitor_id", "ip", "user_agent", "double-opt-in IP addresses"}
	keptFields   = []string{"id", "recorded_at", "site", "event", "source", "basis", "choices", "country", "regime",
		"geo_db", "notice_version", "notice_hash", "widget_build", "locale", "page_url", "gpc", "dnt",
		"prev_hash", "hash", "keyed digests of the removed fields (so each hash chain still verifies)",
		"double-opt-in times", "suppression entries: keyed digests of the address and visitor ids, date, reason"}
)

type suppression struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// SubjectRef names a person in a look-up or an erasure: by address, by a
// visitor id, or by the id of a record (a receipt's record id). Exactly one
// is set.
type SubjectRef struct {
	Email     string
	VisitorID string
	RecordID  string
}

func (ref SubjectRef) check() error {
	n := 0
	for _, v := range []string{ref.Email, ref.VisitorID, ref.RecordID} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return invalid("subject", "give exactly one of email, visitor_id, record id")
	}
	return nil
}

// personRecord is one record of a person and where it is stored.
type personRecord struct {
	site string
	id   []byte
	rec  *storedRecord
}

// person is everything the ledger links to one person.
type person struct {
	email    string   // the address in clear, when a record still holds it or it was given
	emails   [][]byte // address digests
	visitors [][]byte // visitor id digests
	records  []personRecord
	found    bool // a record id look-up found its record
}

// resolve finds a person's records: those of their addresses and of every
// visitor id used with one of those addresses. By address, that address; by
// visitor id, the addresses used with that visitor id (and the visitor id's
// own records, also when it never came with an address); by record id, as
// by its address, or by its visitor id when it has none. It goes no
// further: the other addresses of those visitor ids (a shared browser) are
// another person. Records come oldest first.
func (s *Store) resolve(tx *bolt.Tx, ref SubjectRef) (*person, error) {
	return s.Keyring.resolve(ref, boltIndex{tx})
}

// personIndex is how resolve reads a backend: the records an index
// (bucketSubjects: address digests, bucketVisitors: visitor id digests)
// links to a digest, in id order and without tombstones, and one record by
// id on any site (nil when there is none).
type personIndex interface {
	indexRecords(index, digest []byte) ([]personRecord, error)
	findRecord(id []byte) (*personRecord, error)
}

type boltIndex struct{ tx *bolt.Tx }

func (b boltIndex) indexRecords(index, digest []byte) ([]personRecord, error) {
	return indexRecords(b.tx, index, digest)
}
func (b boltIndex) findRecord(id []byte) (*personRecord, error) { return findRecord(b.tx, id) }

func (s *Keyring) resolve(ref SubjectRef, ix personIndex) (*person, error) {
	p := &person{}
	seen := map[string]bool{}
	add := func(list *[][]byte, d []byte) bool {
		if d == nil || seen[string(d)] {
			return false
		}
		seen[string(d)] = true
		*list = append(*list, d)
		return true
	}
	byIDs := map[string]bool{}
	collect := func(index []byte, digest []byte) error {
		recs, err := ix.indexRecords(index, digest)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if !byIDs[string(r.id)] {
				byIDs[string(r.id)] = true
				p.records = append(p.records, r)
			}
		}
		return nil
	}
	switch {
	case ref.Email != "":
		p.email = NormalizeEmail(ref.Email)
		add(&p.emails, s.subjectDigest(p.email))
	case ref.VisitorID != "":
		add(&p.visitors, s.digester.sum(nil, "visitor_id", ref.VisitorID))
	default:
		id, err := parseID(strings.TrimSpace(ref.RecordID))
		if err != nil {
			return nil, invalid("receipt", "%v", err)
		}
		r, err := ix.findRecord(id)
		if err != nil || r == nil {
			return p, err
		}
		p.found = true
		switch {
		case r.rec.digests.email != nil:
			add(&p.emails, r.rec.digests.email)
		case r.rec.digests.visitorID != nil:
			add(&p.visitors, r.rec.digests.visitorID)
		default:
			p.records = []personRecord{*r}
			return p, nil
		}
	}
	// A visitor id leads to the addresses used with it; each address to
	// every visitor id used with it.
	if len(p.emails) == 0 {
		if err := collect(bucketVisitors, p.visitors[0]); err != nil {
			return nil, err
		}
		for _, r := range slices.Clone(p.records) {
			add(&p.emails, r.rec.digests.email)
		}
	}
	// Each address leads, through the rectify records filed under it, to
	// the address it was corrected from or to (rights.go).
	for i := 0; i < len(p.emails); i++ {
		if err := collect(bucketSubjects, p.emails[i]); err != nil {
			return nil, err
		}
		for _, r := range p.records {
			if r.rec.digests.newEmail != nil {
				add(&p.emails, r.rec.digests.email)
				add(&p.emails, r.rec.digests.newEmail)
			}
		}
	}
	for _, r := range slices.Clone(p.records) {
		if add(&p.visitors, r.rec.digests.visitorID) {
			if err := collect(bucketVisitors, r.rec.digests.visitorID); err != nil {
				return nil, err
			}
		}
	}
	slices.SortFunc(p.records, func(a, b personRecord) int { return bytes.Compare(a.id, b.id) })
	if to := currentEmail(p.records); to != "" {
		p.email = to
	}
	if p.email == "" {
		for i := len(p.records) - 1; i >= 0 && p.email == ""; i-- {
			p.email = p.records[i].rec.Email
		}
	}
	return p, nil
}

// indexRecords reads the records an index (subjects/ or visitors/) links to
// a digest, in id order.
func indexRecords(tx *bolt.Tx, index, digest []byte) ([]personRecord, error) {
	var out []personRecord
	records := tx.Bucket(bucketRecords)
	c := tx.Bucket(index).Cursor()
	for k, v := c.Seek(digest); k != nil && bytes.HasPrefix(k, digest); k, v = c.Next() {
		id, site := k[len(digest):], string(v)
		b := records.Bucket(v)
		if b == nil {
			return nil, fmt.Errorf("%w: %s index names site %q that has no records", ErrCorrupt, index, site)
		}
		val := b.Get(id)
		if val == nil {
			continue // purged since; Purge removes index entries too
		}
		r, err := decodeRecord(site, id, val)
		if err != nil {
			return nil, fmt.Errorf("%w: record %s of site %s: %v", ErrCorrupt, formatID(id), site, err)
		}
		if r.Tombstone {
			continue
		}
		out = append(out, personRecord{site: site, id: bytes.Clone(id), rec: r})
	}
	return out, nil
}

// findRecord finds a record by id on any site, or nil.
func findRecord(tx *bolt.Tx, id []byte) (*personRecord, error) {
	var found *personRecord
	err := tx.Bucket(bucketRecords).ForEachBucket(func(site []byte) error {
		if found != nil {
			return nil
		}
		val := tx.Bucket(bucketRecords).Bucket(site).Get(id)
		if val == nil {
			return nil
		}
		r, err := decodeRecord(string(site), id, val)
		if err != nil {
			return fmt.Errorf("%w: record %s of site %s: %v", ErrCorrupt, formatID(id), site, err)
		}
		if !r.Tombstone {
			found = &personRecord{site: string(site), id: bytes.Clone(id), rec: r}
		}
		return nil
	})
	return found, err
}

// Erase erases a person (see SubjectRef and resolve for which records
// that covers): it removes the email, name, visitor id, IP and user agent
// from each of their records (marking it Erased) and from their
// double-opt-in state, and puts the keyed digests of their address and
// visitor ids on the suppression list, so that the writer refuses or erases
// every later record naming them. The records' hashes cover digests of
// those fields, so every chain still verifies. Erasing an address with no
// records still suppresses it. The audit entry (actor, counts only) is
// written in the same transaction. A record id that names no record gives
// ErrNotFound.
func (s *Store) Erase(actor string, ref SubjectRef) (ErasureReport, error) {
	rep, _, err := s.EraseWith(context.Background(), actor, ref, EraseOptions{})
	return rep, err
}

// EraseWith is Erase plus what opts commits in the same transaction: the
// outbox items made from what was erased (EraseOptions.Outbox), such as
// the subject.erased webhook events. It returns the items as stored.
func (s *Store) EraseWith(ctx context.Context, actor string, ref SubjectRef, opts EraseOptions) (ErasureReport, []OutboxItem, error) {
	if err := ref.check(); err != nil {
		return ErasureReport{}, nil, err
	}
	var rep ErasureReport
	var queued []OutboxItem
	var entry journalEntry
	err := guard(func() error {
		return s.update(func(tx *bolt.Tx) error {
			var err error
			rep, queued, entry, err = s.eraseTx(tx, actor, ref, opts)
			return err
		})
	})
	if err != nil {
		return ErasureReport{}, nil, err
	}
	if len(queued) > 0 {
		s.notifyOutbox()
	}
	// The erasure is durable; it is acknowledged only once the journal
	// that re-applies it after a restore holds it too.
	if err := s.appendJournal(entry); err != nil {
		return ErasureReport{}, nil, fmt.Errorf("the erasure is stored but its erasure journal entry was not written (a restore would not re-apply it): %w", err)
	}
	return rep, queued, nil
}

// eraseTx is the erasure in tx; it returns what the erasure journal
// records of it.
func (s *Store) eraseTx(tx *bolt.Tx, actor string, ref SubjectRef, opts EraseOptions) (rep ErasureReport, queued []OutboxItem, entry journalEntry, err error) {
	err = func() error {
		p, err := s.resolve(tx, ref)
		if err != nil {
			return err
		}
		if ref.RecordID != "" && !p.found {
			return fmt.Errorf("record %s: %w", ref.RecordID, ErrNotFound)
		}
		changed, r := (&Person{p: p}).Erase(ref)
		rep = r
		records := tx.Bucket(bucketRecords)
		for _, sr := range changed {
			id, err := parseID(sr.r.ID)
			if err != nil {
				return err
			}
			b := records.Bucket([]byte(sr.r.Site))
			b.FillPercent = appendFill
			if err := b.Put(id, encodeRecord(sr.r)); err != nil {
				return err
			}
		}
		for _, e := range p.emails {
			if err := eraseOptIn(tx, e); err != nil {
				return err
			}
			if err := eraseOutbox(tx, e, s.now()); err != nil {
				return err
			}
		}
		now := s.now().UTC()
		rep.SuppressedAt = now
		sup := tx.Bucket(bucketSuppression)
		for i, d := range append(slices.Clone(p.emails), p.visitors...) {
			if v := sup.Get(d); v != nil {
				var old suppression
				if i == 0 && json.Unmarshal(v, &old) == nil {
					rep.SuppressedAt = old.At
				}
				continue
			}
			v, err := json.Marshal(suppression{At: now, Reason: "erasure request (Art. 17 GDPR)"})
			if err != nil {
				return err
			}
			if err := sup.Put(d, v); err != nil {
				return err
			}
		}
		if opts.Outbox != nil {
			erased := ErasedSubject{Email: rep.Email, VisitorIDs: rep.VisitorIDs, ErasedAt: now, Sites: []string{}}
			for _, pr := range p.records {
				if !slices.Contains(erased.Sites, pr.site) {
					erased.Sites = append(erased.Sites, pr.site)
				}
			}
			items, err := opts.Outbox(erased)
			if err != nil {
				return fmt.Errorf("outbox items of an erasure: %w", err)
			}
			if queued, err = addOutboxItems(tx, items, now); err != nil {
				return err
			}
		}
		entry = newJournalEntry(now, p)
		return putAudit(tx, s.now(), actor, "erase", ErasureAuditDetail(rep))
	}()
	return rep, queued, entry, err
}

// Suppressed tells whether an address was erased and may not be re-added.
func (s *Store) Suppressed(email string) (bool, error) {
	subject := s.subjectDigest(email)
	found := false
	err := s.view(func(tx *bolt.Tx) error {
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
	return s.update(func(tx *bolt.Tx) error {
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
	d, err := parseOptIn(v)
	if err != nil {
		return err
	}
	change(&d.optIn)
	if v, err := json.Marshal(d); err != nil {
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

// UnsubscribeRecord is the withdraw record an unsubscribe asks for on site,
// given every record of the person (oldest first) and what the server knows
// of the request (meta); its Erased is set when no record still holds the
// address, so that it names the person by digest only.
func UnsubscribeRecord(site Site, recs []Record, meta Record) Record {
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
	return rec
}

// Unsubscribe checks an unsubscribe token (ErrBadToken; ErrNotFound for a
// site that is gone) and appends a "withdraw" record, source "unsubscribe",
// denying the site's signup purposes for the person it names. meta carries
// what the server knows of the request (IP, user agent, page, country,
// regime, …). The record carries the address from the person's latest record
// on the site; when none holds it any more (erased or purged) the record
// names the person by digest only and is marked erased. When the person's
// signup purposes on the site are all withdrawn already, nothing new is
// stored and the latest record is returned (decided in the writer's
// transaction, so two concurrent unsubscribes store one record).
func (s *Store) Unsubscribe(ctx context.Context, token string, meta Record) (Record, error) {
	rec, _, err := s.UnsubscribeWith(ctx, token, meta, AppendOptions{})
	return rec, err
}

// UnsubscribeWith is Unsubscribe plus what opts commits in the record's
// transaction (its webhook events), like AppendWith; when nothing new is
// stored, nothing is queued.
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
	rec := UnsubscribeRecord(site, recs, meta)
	req := s.newAppendReq(ctx, rec, subject)
	req.unsubscribe = true
	req.outbox = opts.Outbox
	res := s.enqueue(req)
	return res.rec, res.outbox, res.err
}
