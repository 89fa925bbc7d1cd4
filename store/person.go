package store

import (
	"bytes"
	"fmt"
	"slices"
)

// This file exports, for backends other than the bbolt file, the person
// rules of erase.go: whom a look-up or an erasure covers (resolve), the
// state shown, and what the writer does with records that name a
// suppressed address or visitor id. The rules stay written once.

// PersonIndex is what FindPerson reads from a backend.
type PersonIndex interface {
	// RecordsByEmail and RecordsByVisitor return the live (not tombstone)
	// records filed under an address or visitor id digest, in id order.
	RecordsByEmail(digest []byte) ([]*StoredRecord, error)
	RecordsByVisitor(digest []byte) ([]*StoredRecord, error)
	// RecordByID returns the live record with this id on any site, or nil.
	RecordByID(id []byte) (*StoredRecord, error)
}

type exportedIndex struct{ ix PersonIndex }

func toPersonRecords(list []*StoredRecord, err error) ([]personRecord, error) {
	if err != nil {
		return nil, err
	}
	out := make([]personRecord, 0, len(list))
	for _, r := range list {
		id, err := parseID(r.r.ID)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		out = append(out, personRecord{site: r.r.Site, id: id, rec: r.r})
	}
	return out, nil
}

func (e exportedIndex) indexRecords(index, digest []byte) ([]personRecord, error) {
	if bytes.Equal(index, bucketVisitors) {
		return toPersonRecords(e.ix.RecordsByVisitor(digest))
	}
	return toPersonRecords(e.ix.RecordsByEmail(digest))
}

func (e exportedIndex) findRecord(id []byte) (*personRecord, error) {
	r, err := e.ix.RecordByID(id)
	if err != nil || r == nil {
		return nil, err
	}
	return &personRecord{site: r.r.Site, id: bytes.Clone(id), rec: r.r}, nil
}

// Person is whom a look-up or an erasure covers (see Store.Lookup).
type Person struct{ p *person }

// FindPerson resolves ref as Store.Lookup and Store.Erase do; a record id
// that names no record gives ErrNotFound.
func (k *Keyring) FindPerson(ref SubjectRef, ix PersonIndex) (*Person, error) {
	if err := ref.check(); err != nil {
		return nil, err
	}
	p, err := k.resolve(ref, exportedIndex{ix})
	if err != nil {
		return nil, err
	}
	if ref.RecordID != "" && !p.found {
		return nil, fmt.Errorf("record %s: %w", ref.RecordID, ErrNotFound)
	}
	return &Person{p: p}, nil
}

// Records are the person's records, oldest first.
func (p *Person) Records() []Record {
	recs := make([]Record, len(p.p.records))
	for i, r := range p.p.records {
		recs[i] = r.rec.Record
	}
	return recs
}

// EmailDigests and VisitorDigests are the digests of the person's
// addresses and visitor ids: the suppression keys. The first address digest
// keys the double-opt-in state shown.
func (p *Person) EmailDigests() [][]byte   { return p.p.emails }
func (p *Person) VisitorDigests() [][]byte { return p.p.visitors }

// State is the person's state as Lookup shows it: the address's own
// records folded, optIn the stored double-opt-in state of the first address
// digest (or nil), suppressed whether any of their digests is suppressed.
func (p *Person) State(optIn []byte, suppressed bool) (SubjectState, error) {
	var own []Record
	for _, r := range p.p.records {
		if r.rec.digests.email != nil {
			own = append(own, r.rec.Record)
		}
	}
	return FoldSubject(p.p.email, own, optIn, suppressed)
}

// Erase erases the person's records in memory as Store.Erase does and
// returns those that changed, for the backend to write, and the report
// (SuppressedAt is the backend's to set).
func (p *Person) Erase(ref SubjectRef) ([]*StoredRecord, ErasureReport) {
	rep := ErasureReport{Email: p.p.email, Removed: erasedFields, Kept: keptFields, Reason: erasureReason, VisitorIDs: []string{}}
	visitorIDs := map[string]bool{}
	if ref.VisitorID != "" {
		visitorIDs[ref.VisitorID] = true
	}
	var changed []*StoredRecord
	for _, pr := range p.p.records {
		rep.Records++
		if pr.rec.VisitorID != "" {
			visitorIDs[pr.rec.VisitorID] = true
		}
		sr := &StoredRecord{r: pr.rec}
		if sr.Erase() {
			changed = append(changed, sr)
		}
	}
	for v := range visitorIDs {
		rep.VisitorIDs = append(rep.VisitorIDs, v)
	}
	slices.Sort(rep.VisitorIDs)
	return changed, rep
}

// ErasureAuditDetail is the audit entry's detail of an erasure: counts only.
func ErasureAuditDetail(rep ErasureReport) string {
	return fmt.Sprintf("erased a subject: %d records, %d visitor ids", rep.Records, len(rep.VisitorIDs))
}

// VisitorDigest is the digest the visitor index files the record under, or
// nil.
func (p *PendingRecord) VisitorDigest() []byte { return p.req.rec.digests.visitorID }

// EmailDigest of a stored record's visitor id, for the visitor index.
func (s *StoredRecord) VisitorDigest() []byte { return s.r.digests.visitorID }

// Suppress applies the suppression list to a record about to be sealed, as
// the bbolt writer does: a signup of a suppressed address gives
// ErrSuppressed (store nothing; the backend writes the "suppressed_signup"
// audit entry), a signup from a suppressed visitor id loses the visitor id,
// and any other record naming a suppressed address or visitor id is stored
// already erased.
func (p *PendingRecord) Suppress(emailSuppressed, visitorSuppressed bool) error {
	r := &p.req.rec
	switch {
	case r.Source == "signup" && emailSuppressed:
		return ErrSuppressed
	case r.Source == "signup" && visitorSuppressed:
		p.req.dropVisitor()
	case (emailSuppressed || visitorSuppressed) && !r.Erased:
		p.req.eraseFields()
	}
	return nil
}

// Choices are the states the record sets.
func (p *PendingRecord) Choices() map[string]string { return p.req.rec.Choices }

// LatestIfSet tells whether a person's records (oldest first) on site
// already hold every state in choices, and returns the latest of them: an
// unsubscribe that would change nothing stores nothing.
func LatestIfSet(recs []Record, site string, choices map[string]string) (Record, bool) {
	state := map[string]string{}
	var last *Record
	for i := range recs {
		if recs[i].Site != site || recs[i].Tombstone {
			continue
		}
		for k, v := range recs[i].Choices {
			state[k] = v
		}
		last = &recs[i]
	}
	if last == nil {
		return Record{}, false
	}
	for k, v := range choices {
		if state[k] != v {
			return Record{}, false
		}
	}
	return *last, true
}

// Confirms is the signup id a confirm record confirms, or "".
func (p *PendingRecord) Confirms() string { return p.req.rec.Confirms }

// Check validates a withdrawal on request before a backend looks the
// person up.
func (w *Withdrawal) Check() error { return w.check() }

// Check validates a rectification before a backend looks the person up.
func (r *Rectification) Check() error { return r.check() }
