package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Query selects records. Zero fields select everything.
type Query struct {
	From, To time.Time // recorded_at in [From, To); zero is open
	Purpose  string    // records granting this purpose
	Country  string
	Regime   string
	Email    string // records of this person (normalised here)
	// Tombstones includes the tombstones retention left (id, time and
	// hashes only); they are skipped by default.
	Tombstones bool
}

func (q Query) match(r *Record) bool {
	switch {
	case r.Tombstone:
		return q.Tombstones && q.Purpose == "" && q.Country == "" && q.Regime == "" && q.Email == ""
	case q.Purpose != "" && r.Choices[q.Purpose] != "granted",
		q.Country != "" && r.Country != q.Country,
		q.Regime != "" && r.Regime != q.Regime,
		!q.From.IsZero() && r.RecordedAt.Before(q.From),
		!q.To.IsZero() && !r.RecordedAt.Before(q.To):
		return false
	}
	return true
}

// chunkKeys is how many keys one read transaction visits. Long read
// transactions hold bbolt's pages and would block a writer that must grow
// the file; chunks keep memory constant for any number of records.
const chunkKeys = 2048

// scanChunks calls fn, outside any transaction, for every item decode keeps
// from the bucket's keys in [start, end) (nil is open), in key order, visiting
// at most chunkKeys keys per read transaction. decode must copy what it keeps.
// A damaged page gives ErrCorrupt, not a crash.
func scanChunks[T any](db *bolt.DB, bucket func(*bolt.Tx) *bolt.Bucket, start, end []byte,
	decode func(k, v []byte) (T, bool, error), fn func(T) error) error {
	items := make([]T, 0, chunkKeys)
	next := start
	for {
		items = items[:0]
		var resume []byte
		err := guard(func() error {
			return db.View(func(tx *bolt.Tx) error {
				b := bucket(tx)
				if b == nil {
					return nil
				}
				c := b.Cursor()
				k, v := c.First()
				if next != nil {
					k, v = c.Seek(next)
				}
				for n := 0; k != nil; k, v = c.Next() {
					if end != nil && bytes.Compare(k, end) >= 0 {
						return nil
					}
					if n == chunkKeys {
						resume = bytes.Clone(k)
						return nil
					}
					n++
					item, keep, err := decode(k, v)
					if err != nil {
						return err
					}
					if keep {
						items = append(items, item)
					}
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := fn(it); err != nil {
				return err
			}
		}
		if resume == nil {
			return nil
		}
		next = resume
	}
}

func siteRecords(site string) func(*bolt.Tx) *bolt.Bucket {
	return func(tx *bolt.Tx) *bolt.Bucket { return tx.Bucket(bucketRecords).Bucket([]byte(site)) }
}

// Records calls fn for each of the site's records that q selects, oldest
// first, streaming in bounded read transactions; fn runs outside them. An
// unknown site gives ErrNotFound.
func (s *Store) Records(site string, q Query, fn func(Record) error) error {
	if _, err := s.Site(site); err != nil {
		return err
	}
	if q.Email != "" {
		recs, err := s.subjectRecords(s.subjectDigest(q.Email))
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Site == site && q.match(&r) {
				if err := fn(r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var start, end []byte
	if !q.From.IsZero() {
		start = idFloor(q.From)
	}
	if !q.To.IsZero() {
		end = idFloor(q.To)
	}
	return scanChunks(s.db, siteRecords(site), start, end, func(k, v []byte) (Record, bool, error) {
		r, err := decodeRecord(site, k, v)
		if err != nil {
			return Record{}, false, fmt.Errorf("%w: record %s of site %s: %v", ErrCorrupt, formatID(k), site, err)
		}
		return r.Record, q.match(&r.Record), nil
	}, fn)
}

// subjectDigest is the keyed digest of a normalised address: the subject
// index and suppression key.
func (s *Keyring) subjectDigest(email string) []byte {
	return s.digester.sum(nil, "email", NormalizeEmail(email))
}

// subjectRecords reads every record the subject index links to a digest,
// oldest first. A person has few records, so one transaction suffices.
func (s *Store) subjectRecords(subject []byte) ([]Record, error) {
	var recs []Record
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		recs, err = getSubjectRecords(tx, subject)
		return err
	})
	return recs, err
}

func getSubjectRecords(tx *bolt.Tx, subject []byte) ([]Record, error) {
	var recs []Record
	records := tx.Bucket(bucketRecords)
	c := tx.Bucket(bucketSubjects).Cursor()
	for k, v := c.Seek(subject); k != nil && bytes.HasPrefix(k, subject); k, v = c.Next() {
		id := k[len(subject):]
		site := string(v)
		b := records.Bucket(v)
		if b == nil {
			return nil, fmt.Errorf("%w: subject index names site %q that has no records", ErrCorrupt, site)
		}
		val := b.Get(id)
		if val == nil {
			continue // purged since; Purge removes index entries too
		}
		r, err := decodeRecord(site, id, val)
		if err != nil {
			return nil, fmt.Errorf("%w: record %s of site %s: %v", ErrCorrupt, formatID(id), site, err)
		}
		recs = append(recs, r.Record)
	}
	// Index keys sort by id within a digest, and ids by time.
	return recs, nil
}

// SubjectState is what the ledger knows of one person now.
type SubjectState struct {
	Email         string                       `json:"email"`
	FirstSignupAt time.Time                    `json:"first_signup_at"`
	LastChangeAt  time.Time                    `json:"last_change_at"`
	DoubleOptIn   string                       `json:"double_opt_in"` // none, pending, confirmed, expired
	PendingAt     time.Time                    `json:"pending_at"`
	ConfirmedAt   time.Time                    `json:"confirmed_at"`
	PendingIP     string                       `json:"pending_ip"`
	ConfirmedIP   string                       `json:"confirmed_ip"`
	Suppressed    bool                         `json:"suppressed"`
	Purposes      map[string]map[string]string `json:"purposes"` // site -> purpose -> current state
}

// optIn is the optin/ bucket's value.
type optIn struct {
	State       string    `json:"state"`
	PendingAt   time.Time `json:"pending_at,omitzero"`
	PendingIP   string    `json:"pending_ip,omitempty"`
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	ConfirmedIP string    `json:"confirmed_ip,omitempty"`
}

// Subject returns every record about a person, on any site, oldest first,
// and their current state: Lookup by address.
func (s *Store) Subject(email string) ([]Record, SubjectState, error) {
	return s.Lookup(SubjectRef{Email: email})
}

// Lookup returns every record about the person ref names (the records of
// the address and of every visitor id used with it, or of the visitor id and
// every address used with it; see resolve), on any site, oldest first, and
// their current state. A person with no record and no state gives empty
// records, not an error; a record id that names no record gives ErrNotFound.
func (s *Store) Lookup(ref SubjectRef) ([]Record, SubjectState, error) {
	if err := ref.check(); err != nil {
		return nil, SubjectState{}, err
	}
	var recs []Record
	var st SubjectState
	err := guard(func() error {
		return s.view(func(tx *bolt.Tx) error {
			p, err := s.resolve(tx, ref)
			if err != nil {
				return err
			}
			if ref.RecordID != "" && !p.found {
				return fmt.Errorf("record %s: %w", ref.RecordID, ErrNotFound)
			}
			recs = make([]Record, len(p.records))
			for i, r := range p.records {
				recs[i] = r.rec.Record
			}
			var subject []byte
			if len(p.emails) > 0 {
				subject = p.emails[0]
			}
			// After a rectification the double opt-in state stays filed
			// under the address that made it.
			for _, d := range p.emails {
				if tx.Bucket(bucketOptIn).Get(subject) == nil && tx.Bucket(bucketOptIn).Get(d) != nil {
					subject = d
				}
			}
			// The state is the address's, as in the signups export: the
			// records that name it, not the banner choices of its browsers.
			var own []Record
			for _, r := range p.records {
				if r.rec.digests.email != nil {
					own = append(own, r.rec.Record)
				}
			}
			if st, err = subjectState(tx, p.email, subject, own); err != nil {
				return err
			}
			for _, d := range append(slices.Clone(p.emails), p.visitors...) {
				st.Suppressed = st.Suppressed || tx.Bucket(bucketSuppression).Get(d) != nil
			}
			return nil
		})
	})
	return recs, st, err
}

// subjectState folds a person's records, oldest first, into their state:
// each record's choices replace the states it names.
func subjectState(tx *bolt.Tx, email string, subject []byte, recs []Record) (SubjectState, error) {
	return FoldSubject(email, recs, tx.Bucket(bucketOptIn).Get(subject), tx.Bucket(bucketSuppression).Get(subject) != nil)
}

// siteOptIn puts the person's double-opt-in state on site into st, where
// the stored state has entries per site.
func siteOptIn(st *SubjectState, v []byte, site string) error {
	d, err := parseOptIn(v)
	if err != nil || d.Sites == nil {
		return err
	}
	so := d.Sites[site]
	if so == nil {
		so = &SiteOptIn{State: "none"}
	}
	st.DoubleOptIn, st.PendingAt, st.PendingIP, st.ConfirmedAt, st.ConfirmedIP = so.State, so.PendingAt, so.PendingIP, so.ConfirmedAt, so.ConfirmedIP
	return nil
}

// FoldSubject folds a person's records, oldest first, their stored
// double-opt-in state (JSON, or nil) and whether they are suppressed into
// their state: each record's choices replace the states it names.
func FoldSubject(email string, recs []Record, optInState []byte, suppressed bool) (SubjectState, error) {
	st := SubjectState{Email: email, DoubleOptIn: "none", Purposes: map[string]map[string]string{}}
	for _, r := range recs {
		if r.Source == "signup" && st.FirstSignupAt.IsZero() {
			st.FirstSignupAt = r.RecordedAt
		}
		st.LastChangeAt = r.RecordedAt
		p := st.Purposes[r.Site]
		if p == nil {
			p = map[string]string{}
			st.Purposes[r.Site] = p
		}
		for k, v := range r.Choices {
			p[k] = v
		}
	}
	if v := optInState; v != nil {
		var o optIn
		if err := json.Unmarshal(v, &o); err != nil {
			return st, fmt.Errorf("%w: double-opt-in state: %v", ErrCorrupt, err)
		}
		st.DoubleOptIn, st.PendingAt, st.PendingIP, st.ConfirmedAt, st.ConfirmedIP = o.State, o.PendingAt, o.PendingIP, o.ConfirmedAt, o.ConfirmedIP
	}
	st.Suppressed = suppressed
	return st, nil
}

// SubjectRow is one person's row of a site's signups export, from all of
// their records (oldest first), their double-opt-in state and whether they
// are suppressed; ok is false when q does not select them (see Subjects).
func SubjectRow(site string, q Query, all []Record, optInState []byte, suppressed bool) (st SubjectState, ok bool, err error) {
	var recs []Record
	var first *Record
	for i := range all {
		r := &all[i]
		if r.Site != site || (!q.To.IsZero() && !r.RecordedAt.Before(q.To)) {
			continue
		}
		if first == nil && r.Source == "signup" {
			first = r
		}
		recs = append(recs, *r)
	}
	if first == nil ||
		(!q.From.IsZero() && first.RecordedAt.Before(q.From)) ||
		(q.Country != "" && first.Country != q.Country) ||
		(q.Regime != "" && first.Regime != q.Regime) {
		return st, false, nil
	}
	email := rectifiedTo(all) // a corrected address is shown on every site
	for i := len(recs) - 1; i >= 0 && email == ""; i-- {
		email = recs[i].Email
	}
	st, err = FoldSubject(email, recs, optInState, suppressed)
	if err != nil {
		return st, false, err
	}
	if err := siteOptIn(&st, optInState, site); err != nil {
		return st, false, err
	}
	if q.Purpose != "" && st.Purposes[site][q.Purpose] != "granted" {
		return st, false, nil
	}
	return st, true, nil
}

// Subjects calls fn once for each person with a signup on the site, for the
// signups export. A person's state counts their records on this site before
// q.To (all when zero); q.From and q.To select people by their first signup
// there, q.Country and q.Regime by that signup's, q.Purpose those whose state
// grants it, q.Email one person. People come in the order of their keyed
// digest (an arbitrary but stable order), read in bounded transactions.
func (s *Store) Subjects(site string, q Query, fn func(SubjectState) error) error {
	if _, err := s.Site(site); err != nil {
		return err
	}
	var start, end []byte
	if q.Email != "" {
		start = s.subjectDigest(q.Email)
		// An address corrected since is shown under its newest address.
		err := s.view(func(tx *bolt.Tx) error {
			_, _, current, err := linkedAddresses(tx, start)
			start = current
			return err
		})
		if err != nil {
			return err
		}
		end = append(bytes.Clone(start), 0xff)
	}
	// Group the index by digest: each chunk ends at a digest boundary so a
	// person is never split across two transactions.
	const perChunk = 256
	for {
		var states []SubjectState
		var resume []byte
		visited := 0
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketSubjects).Cursor()
			k, _ := c.First()
			if start != nil {
				k, _ = c.Seek(start)
			}
			for k != nil && (end == nil || bytes.Compare(k, end) < 0) {
				if visited == perChunk {
					resume = bytes.Clone(k)
					return nil
				}
				visited++
				if len(k) != 32+idLen {
					return fmt.Errorf("%w: subject index key of %d bytes", ErrCorrupt, len(k))
				}
				subject := bytes.Clone(k[:32])
				for k != nil && bytes.HasPrefix(k, subject) {
					k, _ = c.Next()
				}
				all, err := getSubjectRecords(tx, subject)
				if err != nil {
					return err
				}
				optInState, suppressed := tx.Bucket(bucketOptIn).Get(subject), tx.Bucket(bucketSuppression).Get(subject) != nil
				if hasRectify(all) {
					// One row per person, under their newest address, with
					// the records of every address they had (rights.go).
					linked, digests, current, err := linkedAddresses(tx, subject)
					if err != nil {
						return err
					}
					if !bytes.Equal(current, subject) {
						continue
					}
					all = linked
					for _, d := range digests {
						if optInState == nil {
							optInState = tx.Bucket(bucketOptIn).Get(d)
						}
						suppressed = suppressed || tx.Bucket(bucketSuppression).Get(d) != nil
					}
				}
				st, ok, err := SubjectRow(site, q, all, optInState, suppressed)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				states = append(states, st)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, st := range states {
			if err := fn(st); err != nil {
				return err
			}
		}
		if resume == nil {
			return nil
		}
		start = resume
	}
}
